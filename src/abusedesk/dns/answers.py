"""Authoritative answers, wire bytes in and wire bytes out, with no sockets: the heart of the
built-in data plane (:mod:`abusedesk.dns.server`).

How it is fast. A query is one question, uncompressed, with at most an OPT record, in nearly
every case; a hand-rolled parser reads exactly that shape from the bytes and anything else (a
compressed or second question, TSIG, a bad EDNS version, an opcode other than QUERY, trailing
bytes) falls back to dnspython. The answer to a question is prepared once per zone version with
dnspython, kept as the bytes after the question, and replayed by writing the query's ID, its RD
and CD bits, and its own question (so the 0x20 case of a resolver comes back as sent; owner names
in the answer point at the question). The key is the lower-case name, the type and the EDNS
flavour (none, EDNS, EDNS with DO); the requester's payload size only decides, per reply, whether
the prepared answer fits or a truncated one (TC) goes out instead.

Why a flood cannot grow it. Prepared answers live in two generations of at most ``cache_size``
entries: a hit in the old one moves to the new one, and a full new generation becomes the old
one and drops the previous old. Names that do not exist are never cached: an NXDOMAIN is the
question followed by the zone's prepared negative tail (a pointer to the apex inside the
question, the SOA with the negative TTL, the OPT), so a random-subdomain flood costs a few
dictionary look-ups per query and no memory. Answers synthesised from a wildcard are cached like
any other and bounded the same way.

Semantics (RFC 1034 4.3.2 and what came after): AA on authoritative data; NXDOMAIN versus NODATA,
both with the SOA in the authority section at the negative TTL of RFC 2308 (the smaller of the
SOA's TTL and its MINIMUM); CNAME chains followed inside the zone (the RCODE is the last link's,
RFC 6604) and DNAME substitution; referrals without AA, the delegation's NS in the authority
section and glue in the additional section (DS at a cut is answered by the parent); wildcards
(RFC 4592: only when the name does not exist, and an empty non-terminal blocks them); EDNS0 (the
OPT echoed with the DO bit, our payload size advertised, BADVERS for a version other than 0);
REFUSED outside the served zones; one record set for ANY (RFC 8482); FORMERR and NOTIMP for
malformed queries and other opcodes; responses are never answered. No input makes
:meth:`Answerer.answer` raise.

Counters: per zone, a one-element list per query type and one for NXDOMAIN, incremented in the
hot path; the total is their sum (:meth:`Answerer.counters`).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.node
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
import dns.zone

from abusedesk.dns.plane import ZoneCounters

log = logging.getLogger("abusedesk.dns")

UDP_PAYLOAD = 1232  # advertised, and the most sent over UDP (DNS flag day 2020: no fragments)
CACHE_SIZE = 50_000  # prepared answers per generation (two generations at most)
MAX_CHAIN = 12  # CNAME and DNAME links followed inside a zone

_IN = dns.rdataclass.IN
_SOA, _NS, _CNAME, _DNAME, _DS = (
    dns.rdatatype.SOA,
    dns.rdatatype.NS,
    dns.rdatatype.CNAME,
    dns.rdatatype.DNAME,
    dns.rdatatype.DS,
)
_A, _AAAA, _MX, _SRV, _ANY = (
    dns.rdatatype.A,
    dns.rdatatype.AAAA,
    dns.rdatatype.MX,
    dns.rdatatype.SRV,
    dns.rdatatype.ANY,
)
_XFR = frozenset((dns.rdatatype.AXFR, dns.rdatatype.IXFR))
_NOT_A_QUESTION = frozenset((dns.rdatatype.OPT, dns.rdatatype.TSIG, dns.rdatatype.TKEY))

# The EDNS flavour of a query, part of the cache key: none, EDNS, EDNS with DO.
_NO_EDNS, _EDNS, _EDNS_DO = 0, 1, 2
_FLAVOUR = (b"\x00", b"\x01", b"\x02")
_QD1 = b"\x00\x01\x00\x00\x00\x00\x00\x00"
_QD1_AR1 = b"\x00\x01\x00\x00\x00\x00\x00\x01"

_QR, _AA, _TC = 0x80, 0x04, 0x02  # flags, high byte
_NOERROR, _FORMERR, _SERVFAIL, _NXDOMAIN, _NOTIMP, _REFUSED = 0, 1, 2, 3, 4, 5

# An entry: flags high byte, low byte, the four counts, the bytes after the question, the
# type's counter cell, the NXDOMAIN cell (None unless the answer is NXDOMAIN), the zone.
Entry = tuple[int, int, bytes, bytes, "list[int] | None", "list[int] | None", "object"]
# An exact hit: the response after the ID, the type's cell, the NXDOMAIN cell, the zone.
Exact = tuple[bytes, "list[int]", "list[int] | None", "object"]


def serial_gt(a: int, b: int) -> bool:
    """RFC 1982: serial ``a`` is after ``b``."""
    return 0 < (a - b) % 2**32 < 2**31


def question_type(wire: bytes) -> int | None:
    """The type of a query's first question, read from the bytes; None when there is none
    that reads (the server uses it to pick zone transfers out of the TCP stream)."""
    if len(wire) < 17 or wire[4:6] == b"\x00\x00":
        return None
    i = 12
    n = len(wire)
    while i < n and 0 < wire[i] < 64:
        i += wire[i] + 1
    if i + 5 > n or wire[i]:
        return None
    return wire[i + 1] << 8 | wire[i + 2]


def _offsets(wire_name: bytes) -> list[int]:
    """Where each label of an uncompressed wire name starts (the root not included)."""
    offs = []
    i = 0
    ln = wire_name[0]
    while ln:
        offs.append(i)
        i += ln + 1
        ln = wire_name[i]
    return offs


def _key(name: dns.name.Name) -> bytes:
    return name.canonicalize().to_wire()  # type: ignore[return-value]


def _opt(flavour: int, payload: int) -> bytes:
    if flavour == _NO_EDNS:
        return b""
    return b"\x00\x00\x29" + struct.pack(
        "!HBBHH", payload, 0, 0, 0x8000 if flavour == _EDNS_DO else 0, 0
    )


class _Stats:
    """One zone's counters, kept across zone versions."""

    __slots__ = ("by_type", "nx")

    def __init__(self) -> None:
        self.by_type: dict[int, list[int]] = {}
        self.nx = [0]

    def cell(self, qtype: int) -> list[int]:
        cell = self.by_type.get(qtype)
        if cell is None:
            cell = self.by_type[qtype] = [0]
        return cell


class _Zone:
    """One zone version, indexed by lower-case wire names for the resolution walk."""

    def __init__(self, name: str, zone: dns.zone.Zone, stats: _Stats, payload: int) -> None:
        self.name = name
        self.zone = zone
        self.stats = stats
        self.origin: dns.name.Name = zone.origin  # type: ignore[assignment]
        self.origin_w = _key(self.origin)
        soa = zone.get_rdataset(self.origin, _SOA)
        if soa is None:
            raise ValueError(f"zone {name} has no SOA")
        self.serial: int = soa[0].serial  # type: ignore[attr-defined]
        neg_ttl = min(soa.ttl, soa[0].minimum)  # type: ignore[attr-defined]
        self.neg_soa = dns.rrset.from_rdata_list(self.origin, neg_ttl, list(soa))
        self.nodes: dict[bytes, tuple[dns.name.Name, dns.node.Node]] = {}
        self.existing: set[bytes] = set()  # names with data, and empty non-terminals
        self.cuts: set[bytes] = set()  # delegations below the apex
        self.dnames: set[bytes] = set()
        for rel, node in zone.nodes.items():
            if not node.rdatasets:
                continue
            absolute = rel.derelativize(self.origin)
            w = _key(absolute)
            self.nodes[w] = (absolute, node)
            if w != self.origin_w and node.get_rdataset(_IN, _NS) is not None:
                self.cuts.add(w)
            if node.get_rdataset(_IN, _DNAME) is not None:
                self.dnames.add(w)
            while w != self.origin_w and w not in self.existing:
                self.existing.add(w)
                w = w[w[0] + 1 :]
        self.existing.add(self.origin_w)
        rdata = soa[0].to_wire(origin=self.origin)
        assert rdata is not None
        soa_rr = struct.pack("!HHIH", _SOA, _IN, neg_ttl, len(rdata)) + rdata
        # The negative tail after the SOA owner (a pointer into the question), per flavour.
        self.nx_tail = tuple(soa_rr + _opt(f, payload) for f in (_NO_EDNS, _EDNS, _EDNS_DO))
        self.payload = payload
        # Wildcard answers, the owner a pointer to the question: (counts, tail), b"" for
        # NODATA, None when the wildcard holds a CNAME to follow (the prepared path then).
        self.wild_tails: dict[tuple[bytes, int, int], tuple[bytes, bytes] | bytes | None] = {}

    def lookup(self, w: bytes, qtype: int) -> tuple[str, bytes]:
        """Where the walk from the apex down to ``w`` ends: ("exact", w), ("cut", cut),
        ("dname", owner), ("wild", the wildcard's name) or ("nx", closest encloser)."""
        offs = _offsets(w)
        below = len(offs) - len(_offsets(self.origin_w))  # labels below the apex
        if below and self.origin_w in self.dnames:
            return "dname", self.origin_w
        encloser = self.origin_w
        for j in range(below - 1, -1, -1):
            s = w[offs[j] :]
            if s in self.cuts and not (j == 0 and qtype == _DS):
                return "cut", s
            if s not in self.existing:
                wild = b"\x01*" + encloser
                if wild in self.nodes:
                    return "wild", wild
                return "nx", encloser
            if j and s in self.dnames:
                return "dname", s
            encloser = s
        return "exact", w

    def wildcard(self, wild: bytes, qtype: int, flavour: int) -> tuple[bytes, bytes] | bytes | None:
        """The answer from a wildcard to any name it covers: (counts, tail after the
        question), b"" for NODATA, None when a CNAME is to be followed."""
        key = (wild, qtype, flavour)
        try:
            return self.wild_tails[key]
        except KeyError:
            pass
        node = self.nodes[wild][1]
        made: tuple[bytes, bytes] | bytes | None
        if qtype == _ANY:
            rds = min(node.rdatasets, key=lambda r: r.rdtype)
        else:
            rds = node.get_rdataset(_IN, dns.rdatatype.RdataType.make(qtype))
        if rds is None:
            made = None if node.get_rdataset(_IN, _CNAME) is not None else b""
        else:
            records = []
            for rd in rds:
                data = rd.to_wire(origin=self.origin)
                assert data is not None
                head = struct.pack("!HHIH", rds.rdtype, _IN, rds.ttl, len(data))
                records.append(b"\xc0\x0c" + head + data)  # owner: the question's name
            counts = struct.pack("!HHHH", 1, len(records), 0, 1 if flavour else 0)
            made = (counts, b"".join(records) + _opt(flavour, self.payload))
        if len(self.wild_tails) >= 4096:  # a flood of query types cannot grow it
            self.wild_tails.clear()
        self.wild_tails[key] = made
        return made

    def below_cut(self, w: bytes) -> bool:
        offs = _offsets(w)
        below = len(offs) - len(_offsets(self.origin_w))
        return any(w[offs[j] :] in self.cuts for j in range(below))

    def rrset(self, owner: dns.name.Name, rds: dns.rdataset.Rdataset) -> dns.rrset.RRset:
        rrset = dns.rrset.RRset(owner, rds.rdclass, rds.rdtype)
        rrset.update(rds)
        return rrset

    def addresses(
        self, targets: list[dns.name.Name], out: list[dns.rrset.RRset], glue: bool
    ) -> None:
        """A and AAAA of the targets inside the zone (glue below a cut only for a referral)."""
        have = {(r.name, r.rdtype) for r in out}
        for target in targets:
            absolute = target.derelativize(self.origin)
            if not absolute.is_subdomain(self.origin):
                continue
            w = _key(absolute)
            found = self.nodes.get(w)
            if found is None or (not glue and self.below_cut(w)):
                continue
            for rdtype in (_A, _AAAA):
                rds = found[1].get_rdataset(_IN, rdtype)
                if rds is not None and (found[0], rdtype) not in have:
                    have.add((found[0], rdtype))
                    out.append(self.rrset(found[0], rds))

    def resolve(self, qname: dns.name.Name, qtype: dns.rdatatype.RdataType) -> dns.message.Message:
        """The response to one question, built with dnspython (the slow, prepared path)."""
        answer: list[dns.rrset.RRset] = []
        authority: list[dns.rrset.RRset] = []
        additional: list[dns.rrset.RRset] = []
        rcode = dns.rcode.NOERROR
        aa = True
        name = qname
        seen: set[bytes] = set()
        for _ in range(MAX_CHAIN):
            w = _key(name)
            if w in seen:
                break  # a loop of aliases: answer what was followed
            seen.add(w)
            kind, at = self.lookup(w, qtype)
            if kind == "cut":
                owner, node = self.nodes[at]
                ns = node.get_rdataset(_IN, _NS)
                assert ns is not None
                authority.append(self.rrset(owner, ns))
                self.addresses([rd.target for rd in ns], additional, glue=True)  # type: ignore[attr-defined]
                aa = bool(answer)
                break
            if kind == "nx":
                rcode = dns.rcode.NXDOMAIN
                authority.append(self.neg_soa)
                break
            if kind == "dname":
                owner, node = self.nodes[at]
                dname = node.get_rdataset(_IN, _DNAME)
                assert dname is not None
                answer.append(self.rrset(owner, dname))
                target = dname[0].target.derelativize(self.origin)  # type: ignore[attr-defined]
                try:
                    new = name.relativize(owner).concatenate(target)
                except dns.name.NameTooLong:
                    rcode = dns.rcode.YXDOMAIN
                    break
                cname = dns.rdata.from_text(_IN, _CNAME, new.to_text())
                answer.append(dns.rrset.from_rdata_list(name, dname.ttl, [cname]))
                if not new.is_subdomain(self.origin):
                    break
                name = new
                continue
            found = self.nodes.get(at)
            if found is None:  # an empty non-terminal: the name exists, with no data
                authority.append(self.neg_soa)
                break
            node = found[1]
            if qtype == _ANY:  # RFC 8482: one record set is enough
                rds = min(node.rdatasets, key=lambda r: r.rdtype)
                answer.append(self.rrset(name, rds))
                break
            rds = node.get_rdataset(_IN, qtype)
            if rds is not None:
                answer.append(self.rrset(name, rds))
                if qtype in (_NS, _MX, _SRV):
                    targets = [
                        rd.target if qtype != _MX else rd.exchange  # type: ignore[attr-defined]
                        for rd in rds
                    ]
                    self.addresses(targets, additional, glue=False)
                break
            alias = node.get_rdataset(_IN, _CNAME)
            if alias is not None:
                answer.append(self.rrset(name, alias))
                target = alias[0].target.derelativize(self.origin)  # type: ignore[attr-defined]
                if not target.is_subdomain(self.origin):
                    break
                name = target
                continue
            authority.append(self.neg_soa)  # NODATA
            break
        msg = dns.message.Message(id=0)
        msg.flags = dns.flags.QR | (dns.flags.AA if aa else 0)
        msg.set_rcode(rcode)
        msg.question = [dns.rrset.RRset(qname, _IN, qtype)]
        msg.answer, msg.authority, msg.additional = answer, authority, additional
        return msg


class _State:
    """What is served: the zones by lower-case wire origin, and the prepared answers."""

    __slots__ = ("exact", "hot", "old", "zones")

    def __init__(
        self,
        zones: dict[bytes, _Zone],
        hot: dict[bytes, Entry] | None = None,
        exact: dict[bytes, Exact] | None = None,
    ) -> None:
        self.zones = zones
        self.hot: dict[bytes, Entry] = hot if hot is not None else {}
        self.old: dict[bytes, Entry] = {}
        # UDP responses by the query's bytes after the ID: one look-up for a repeated query.
        self.exact: dict[bytes, Exact] = exact if exact is not None else {}


class Answerer:
    """Answers queries for the zones last published. :meth:`publish` may run on another thread
    than :meth:`answer`: it builds the new state aside and swaps one reference."""

    def __init__(self, *, cache_size: int = CACHE_SIZE, udp_payload: int = UDP_PAYLOAD) -> None:
        self.cache_size = cache_size
        self.payload = udp_payload
        self.refused = 0  # queries for names outside every served zone
        self.malformed = 0  # FORMERR, NOTIMP and dropped messages
        self.internal_errors = 0  # bugs: answered SERVFAIL, and logged
        self._stats: dict[str, _Stats] = {}
        self._state = _State({})
        self._opts = tuple(_opt(f, udp_payload) for f in (_NO_EDNS, _EDNS, _EDNS_DO))

    # -- zones ------------------------------------------------------------------------------

    def publish(self, zones: Mapping[str, dns.zone.Zone]) -> list[str]:
        """Serves exactly these zones from now on. Returns the zones (``"example.com."``) that
        are new or whose SOA serial went up: the ones to NOTIFY. Raises ValueError for a zone
        without SOA, before anything changes."""
        old = self._state
        new: dict[bytes, _Zone] = {}
        changed: list[str] = []
        for zone in zones.values():
            name = zone.origin.to_text().lower()  # type: ignore[union-attr]
            w = _key(zone.origin)  # type: ignore[arg-type]
            prev = old.zones.get(w)
            stats = self._stats.setdefault(name, _Stats())
            zd = _Zone(name, zone, stats, self.payload)
            if prev is not None and (
                prev.zone is zone or (prev.serial == zd.serial and prev.zone == zone)
            ):
                zd = prev  # the same version: its prepared answers stay good
            new[w] = zd
            if prev is None or serial_gt(zd.serial, prev.serial):
                changed.append(name)
        hot: dict[bytes, Entry] = {}
        exact: dict[bytes, Exact] = {}
        if new.keys() == old.zones.keys():
            # Which zone answers a name depends on the set of zones; when it is the same,
            # the answers of unchanged zones carry over.
            for key, entry in old.hot.copy().items():
                if new.get(entry[6].origin_w) is entry[6]:  # type: ignore[attr-defined]
                    hot[key] = entry
            for key, hit in old.exact.copy().items():
                if new.get(hit[3].origin_w) is hit[3]:  # type: ignore[attr-defined]
                    exact[key] = hit
        self._state = _State(new, hot, exact)
        return changed

    def zone(self, origin: dns.name.Name | str) -> dns.zone.Zone | None:
        """The served zone with exactly this origin (for zone transfers)."""
        if isinstance(origin, str):
            origin = dns.name.from_text(origin)
        zd = self._state.zones.get(_key(origin))
        return zd.zone if zd is not None else None

    def zone_names(self) -> list[str]:
        return [zd.name for zd in self._state.zones.values()]

    def counters(self) -> dict[str, ZoneCounters]:
        """Cumulative counters of the served zones since this answerer was made."""
        out: dict[str, ZoneCounters] = {}
        for zd in self._state.zones.values():
            by_type = {
                dns.rdatatype.RdataType.to_text(t): cell[0]
                for t, cell in dict(zd.stats.by_type).items()
                if cell[0]
            }
            out[zd.name] = ZoneCounters(
                queries=sum(by_type.values()), nxdomain=zd.stats.nx[0], by_type=by_type
            )
        return out

    def cached(self) -> int:
        """How many prepared answers are held (both generations, and the exact-query map)."""
        st = self._state
        return len(st.hot) + len(st.old) + len(st.exact)

    # -- answering --------------------------------------------------------------------------

    def answer(self, wire: bytes, udp: bool = True) -> bytes | None:
        """The response to a query, or None when nothing should be sent (a response, or fewer
        than 12 bytes). Over UDP a response larger than the requester takes comes back
        truncated (TC). Never raises."""
        try:
            if udp:
                # The same bytes after the ID as an earlier query: the same response.
                hit = self._state.exact.get(wire[2:])
                if hit is not None:
                    hit[1][0] += 1
                    if hit[2] is not None:
                        hit[2][0] += 1
                    return wire[:2] + hit[0]
            return self._fast(wire, udp)
        except Exception:  # the promise of this module; the input is logged for a fix
            self.internal_errors += 1
            log.exception("dns: internal error answering %r", wire[:512])
            return _header_only(wire, _SERVFAIL)

    def _fast(self, wire: bytes, udp: bool) -> bytes | None:
        n = len(wire)
        if n < 17 or wire[2] & 0xF8 or wire[4:11] != b"\x00\x01\x00\x00\x00\x00\x00":
            return self._slow(wire, udp)
        i = 12
        ln = wire[12]
        while ln:
            if ln > 63:
                return self._slow(wire, udp)
            i += ln + 1
            if i >= n:
                return self._slow(wire, udp)
            ln = wire[i]
        qn = i + 1  # end of the name
        qend = qn + 4
        if qn > 267 or wire[qn + 2 : qend] != b"\x00\x01":  # over 255 bytes, or not class IN
            return self._slow(wire, udp)
        ar = wire[11]
        if ar == 0 and n == qend:
            flavour = _NO_EDNS
            limit = 512
        elif (
            ar == 1
            and n >= qend + 11
            and wire[qend : qend + 3] == b"\x00\x00\x29"
            and wire[qend + 6] == 0  # EDNS version 0; others get BADVERS on the slow path
            and qend + 11 + (wire[qend + 9] << 8 | wire[qend + 10]) == n
        ):
            flavour = _EDNS_DO if wire[qend + 7] & 0x80 else _EDNS
            limit = wire[qend + 3] << 8 | wire[qend + 4]
            if limit < 512:
                limit = 512
            elif limit > self.payload:
                limit = self.payload
        else:
            return self._slow(wire, udp)
        lname = wire[12:qn].lower()
        key = lname + wire[qn : qn + 2] + _FLAVOUR[flavour]
        st = self._state
        entry = st.hot.get(key)
        if entry is None:
            entry = self._lookup(st, key, lname, wire[qn] << 8 | wire[qn + 1], flavour)
            prepared = st.hot.get(key) is entry
        else:
            prepared = True
        hi, lo, counts, tail, cell, nx, zd = entry
        if cell is not None:
            cell[0] += 1
            if nx is not None:
                nx[0] += 1
        if udp and qend + len(tail) > limit:
            hi |= _TC
            counts = _QD1_AR1 if flavour else _QD1
            tail = self._opts[flavour]
        response = b"".join(
            (
                wire[:2],
                bytes((hi | (wire[2] & 1), lo | (wire[3] & 0x10))),
                counts,
                wire[12:qend],
                tail,
            )
        )
        if udp and prepared:
            exact = st.exact
            if len(exact) >= self.cache_size:
                exact.clear()  # resolvers that randomise case (0x20) fill it with variants
            exact[wire[2:]] = (response[2:], cell, nx, zd)  # type: ignore[assignment]
        return response

    def _lookup(self, st: _State, key: bytes, lname: bytes, qtype: int, flavour: int) -> Entry:
        """A cache miss in the new generation: the old one, or a new answer."""
        entry = st.old.get(key)
        cacheable = True
        if entry is None:
            entry, cacheable = self._prepare(st, lname, qtype, flavour)
        if cacheable:
            hot = st.hot
            if len(hot) >= self.cache_size:
                st.old = hot
                hot = st.hot = {}
            hot[key] = entry
        return entry

    def _prepare(self, st: _State, lname: bytes, qtype: int, flavour: int) -> tuple[Entry, bool]:
        opt = self._opts[flavour]
        counts = _QD1_AR1 if flavour else _QD1
        if qtype in _XFR:  # transfers are the server's, over TCP, to secondaries only
            return (_QR, _REFUSED, counts, opt, None, None, None), False
        if qtype in _NOT_A_QUESTION:
            self.malformed += 1
            return (_QR, _FORMERR, counts, opt, None, None, None), False
        # MAILA, MAILB. The ignore: dnspython annotates RdataType but takes any int, and making
        # the enum here would cost every NXDOMAIN query (they all come this way).
        if dns.rdatatype.is_metatype(qtype) and qtype != _ANY:  # type: ignore[arg-type]
            return (_QR, _NOTIMP, counts, opt, None, None, None), False
        zones = st.zones
        zd = None
        for off in [*_offsets(lname), len(lname) - 1]:  # the closest enclosing zone first
            zd = zones.get(lname[off:])
            if zd is not None:
                break
        if zd is None:
            self.refused += 1
            return (_QR, _REFUSED, counts, opt, None, None, None), False
        cell = zd.stats.cell(qtype)
        kind, at = zd.lookup(lname, qtype)
        # Names that do not exist, and names a wildcard covers, are answered from prepared
        # tails and not cached: a random-subdomain flood costs no memory.
        negative = b"\x00\x01\x00\x00\x00\x01\x00" + (b"\x01" if flavour else b"\x00")
        if kind == "nx":
            return (
                _QR | _AA,
                _NXDOMAIN,
                negative,
                self._soa(zd, lname, flavour),
                cell,
                zd.stats.nx,
                zd,
            ), False
        if kind == "wild":
            made = zd.wildcard(at, qtype, flavour)
            if made == b"":
                return (
                    _QR | _AA,
                    _NOERROR,
                    negative,
                    self._soa(zd, lname, flavour),
                    cell,
                    None,
                    zd,
                ), False
            if isinstance(made, tuple):  # None: a CNAME to follow on the prepared path
                return (_QR | _AA, _NOERROR, made[0], made[1], cell, None, zd), False
        qname, _ = dns.name.from_wire(lname, 0)
        msg = zd.resolve(qname, dns.rdatatype.RdataType.make(qtype))
        if flavour:
            msg.use_edns(0, dns.flags.DO if flavour == _EDNS_DO else 0, self.payload)
        try:
            out = msg.to_wire(origin=zd.origin, max_size=65535)
        except dns.exception.TooBig:  # beyond what a TCP message holds: not servable
            return (_QR, _SERVFAIL, counts, opt, cell, None, zd), True
        nx = zd.stats.nx if msg.rcode() == _NXDOMAIN else None
        return (out[2], out[3], out[4:12], out[12 + len(lname) + 4 :], cell, nx, zd), True

    @staticmethod
    def _soa(zd: _Zone, lname: bytes, flavour: int) -> bytes:
        """The negative tail: the SOA, its owner a pointer to the apex inside the question."""
        apex = 12 + len(lname) - len(zd.origin_w)
        return bytes((0xC0 | apex >> 8, apex & 0xFF)) + zd.nx_tail[flavour]

    def _slow(self, wire: bytes, udp: bool) -> bytes | None:
        """Everything the fast path does not read, through dnspython."""
        if len(wire) < 12 or wire[2] & 0x80:
            self.malformed += 1
            return None  # no ID to answer, or a response: never answer one (no loops)
        try:
            query = dns.message.from_wire(wire)
        except dns.message.UnknownTSIGKey:
            return _header_only(wire, dns.rcode.NOTAUTH)  # signed, outside a transfer
        except Exception:  # dnspython's many ways of saying "not a DNS message"
            self.malformed += 1
            return _header_only(wire, _FORMERR)
        if query.opcode() != dns.opcode.QUERY:
            self.malformed += 1
            return _plain(query, dns.rcode.NOTIMP)
        if len(query.question) != 1 or query.answer or query.authority:
            self.malformed += 1
            return _plain(query, dns.rcode.FORMERR)
        if query.edns > 0:
            response = dns.message.make_response(query, our_payload=self.payload)
            response.use_edns(0, 0, self.payload)
            response.set_rcode(dns.rcode.BADVERS)
            return response.to_wire()
        question = query.question[0]
        if question.rdclass != _IN:
            return _plain(query, dns.rcode.REFUSED)
        qtype = question.rdtype
        flavour = _NO_EDNS
        limit = 512
        if query.edns == 0:
            flavour = _EDNS_DO if query.ednsflags & dns.flags.DO else _EDNS
            limit = min(max(query.payload, 512), self.payload)
        lname = _key(question.name)
        key = lname + struct.pack("!H", qtype) + _FLAVOUR[flavour]
        st = self._state
        entry = st.hot.get(key)
        if entry is None:
            entry = self._lookup(st, key, lname, qtype, flavour)
        hi, lo, counts, tail, cell, nx, _ = entry
        if cell is not None:
            cell[0] += 1
            if nx is not None:
                nx[0] += 1
        qwire = question.name.to_wire()
        assert qwire is not None  # to_wire returns None only when given a file to write to
        qwire += struct.pack("!HH", qtype, _IN)
        rd_cd = (query.flags >> 8 & 1, query.flags & 0x10)
        if udp and 12 + len(qwire) + len(tail) > limit:
            hi |= _TC
            counts = _QD1_AR1 if flavour else _QD1
            tail = self._opts[flavour]
        head = struct.pack("!H", query.id) + bytes((hi | rd_cd[0], lo | rd_cd[1]))
        return head + counts + qwire + tail


def _header_only(wire: bytes, rcode: int) -> bytes | None:
    """A bare response header: the ID, the opcode and RD echoed, and the RCODE."""
    if len(wire) < 12:
        return None
    return wire[:2] + bytes((_QR | (wire[2] & 0x79), rcode)) + bytes(8)


def _plain(query: dns.message.Message, rcode: dns.rcode.Rcode) -> bytes:
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    response.flags &= ~dns.flags.AA
    return response.to_wire()
