"""Per customer server, what its traffic looked like in the last few minutes. Pure.

Flows are folded into buckets of ``bucket_seconds`` (60 s) of *arrival time* (the time the
caller passes in, not the exporter's flow timestamps, which active timeouts and clock skew
make unreliable), and a window is the last ``buckets`` buckets. Everything is numpy; Python
only loops over measures and buckets, never over flows.

Direction comes from the address that is ours. The caller passes, per flow, the server id that
holds the source address and the one that holds the destination address (-1: not ours), from a
vectorised prefix lookup. A flow from one of our servers counts as *outbound* for it; a flow to
one of our servers as *inbound* for it; a flow between two of our servers counts both ways (each
from its own side); a flow where neither side is ours (transit) is counted in ``foreign`` and
otherwise ignored. The exporter's own direction flag is not used.

Volumes (packets, bytes, flows) are multiplied by the flow's sampling rate (a rate the exporter
has not said, 0, is taken as the caller's default). Distinct counts (destination addresses,
ports, SMTP destinations, reflectors) are *not* scaled: one sampled flow shows that the
destination was contacted, but an unsampled destination says nothing, and no factor turns the
seen ones into the true number. They are lower bounds: under 1:N sampling a server contacting
few destinations many times is still seen whole, one contacting many destinations once each is
undercounted. Thresholds on distinct counts should be set with that in mind.

Per bucket, a server's *contacts* are kept exactly, one row per (kind, protocol, remote address,
port) with summed volumes, up to ``contact_cap`` rows per server and kind; beyond the cap the
heaviest rows are kept and the window is marked ``saturated``: distinct counts are then lower
bounds even without sampling. A few raw flows per server and class (the first ones to arrive)
are kept as samples for the evidence.

Folding is lazy, because it is on the hot path and reading is not: :meth:`Windows.add` only
files the batch whole (its flows, their owners and default rates; transit flows are left out
when it is settled) under its bucket, a few array operations whatever its size. The bucket is
*settled* — measures, contacts and samples computed for every server at once — when read
(:meth:`Windows.servers`, :meth:`Windows.view`, i.e. when the detectors run, every
``detect_every`` seconds) or when ``pending_flows`` flows wait in it, which bounds the memory
held (about 100 bytes a flow). Settling goes ``_CHUNK`` flows at a time, so that its arrays stay
small and their memory is reused (fresh pages cost more than the arithmetic): per chunk one
``bincount`` per weight over (server, class of flow) for the measures, one sort of a single
64-bit key for the contacts (the server in the high bits, then a hash of the contact's key,
then the row: the rows come out grouped by server and then by key), and the first flows of each
(server, class) still short of samples. Each chunk's contacts are kept as a run; the runs are
merged with the rows settled before (grouped once more, then capped) when the bucket is read, or
once they outnumber those rows, so that a bucket settled many times before it is read does not
sort its old rows again each time. Two different keys of one server whose hashes agree (about one
pair in a billion) would only keep one key on two rows; every figure the detectors read is the
same either way.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from abusedesk.traffic.decode.records import (
    FLOW_DTYPE,
    V4_MAPPED,
    FlowArray,
    concat_rows,
    take_rows,
)

AMPLIFICATION_PORTS = (19, 53, 123, 161, 389, 1900, 3702, 11211)
BRUTE_FORCE_PORTS = (21, 22, 23, 3389)
SMTP_PORT = 25
TCP, UDP, ICMP, ICMP6 = 6, 17, 1, 58
SYN, ACK = 0x02, 0x10

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

# Kinds of contact rows.
OUT = 1  # outbound: remote = destination, port = destination port
AMP_FROM = 2  # outbound UDP from an amplification port: remote = destination, port = source port
IN = 3  # inbound: remote = source, port = destination port (ours)

CONTACT_DTYPE = np.dtype(
    [
        ("server", np.int64),
        ("hi", np.uint64),
        ("lo", np.uint64),
        ("flows", np.float64),
        ("packets", np.float64),
        ("bytes", np.float64),
        ("short", np.float64),  # short flows (see WindowSettings.short_flow_packets), scaled
        ("probe", np.float64),  # flows that look like probes (see _Edges), scaled
        ("bucket", np.int64),  # bucket start, epoch seconds
        ("port", np.uint16),
        ("kind", np.uint8),
        ("proto", np.uint8),
    ]
)

# Classes of sample flows.
SAMPLE_CLASSES = ("other_out", "syn", "amp_to", "amp_from", "smtp", "short_bf", "inbound")
SAMPLE_DTYPE = np.dtype(
    [("server", np.int64), ("rate", np.uint32), ("cls", np.uint8), ("flow", FLOW_DTYPE)]
)

_PROTOS = {"tcp": TCP, "udp": UDP, "icmp": ICMP}


def _measure_names() -> tuple[str, ...]:
    names = []
    for side in ("out", "in"):
        for what in ("packets", "bytes", "flows"):
            names.append(f"{side}_{what}")
        for proto in (*_PROTOS, "other"):
            for what in ("packets", "bytes", "flows"):
                names.append(f"{side}_{proto}_{what}")
        names += [f"{side}_syn_flows", f"{side}_syn_packets"]
        for what in ("packets", "bytes", "flows"):
            names += [f"{side}_amp_to_{what}", f"{side}_amp_from_{what}"]
    names += ["out_smtp_flows", "out_short_bf_flows"]
    return tuple(names)


MEASURES: tuple[str, ...] = _measure_names()
MEASURE_INDEX = {name: i for i, name in enumerate(MEASURES)}


@dataclass(frozen=True, slots=True)
class WindowSettings:
    bucket_seconds: int = 60
    buckets: int = 5
    contact_cap: int = 20_000  # rows kept per server, kind and bucket
    samples_per_class: int = 5  # raw flows kept per server, sample class and bucket
    short_flow_packets: int = 30  # a flow of at most this many packets (as exported) is short
    default_sampling_rate: int = 1  # for flows whose exporter has not said its rate
    pending_flows: int = 1_000_000  # a bucket is settled once this many flows wait in it

    def __post_init__(self) -> None:
        if self.bucket_seconds <= 0 or self.buckets <= 0:
            raise ValueError("bucket_seconds and buckets must be positive")
        if self.contact_cap <= 0 or self.samples_per_class < 0:
            raise ValueError("contact_cap must be positive, samples_per_class not negative")
        if self.pending_flows <= 0:
            raise ValueError("pending_flows must be positive")


@dataclass(frozen=True, slots=True)
class _Batch:
    """Flows filed by :meth:`Windows.add`, not yet settled."""

    flows: FlowArray
    src: I64
    dst: I64
    default_rates: F64 | None


@dataclass(slots=True)
class _Bucket:
    """One bucket: settled figures, sorted by server, plus the batches waiting to be settled."""

    start: int
    servers: I64 = field(default_factory=lambda: np.zeros(0, np.int64))  # sorted ids
    measures: F64 = field(default_factory=lambda: np.zeros((0, len(MEASURES))))
    contacts: npt.NDArray[np.void] = field(default_factory=lambda: np.zeros(0, CONTACT_DTYPE))
    contact_ends: I64 = field(default_factory=lambda: np.zeros(0, np.int64))  # per server
    samples: npt.NDArray[np.void] = field(default_factory=lambda: np.zeros(0, SAMPLE_DTYPE))
    sample_ends: I64 = field(default_factory=lambda: np.zeros(0, np.int64))  # per server
    saturated: set[int] = field(default_factory=set)
    pending: list[_Batch] = field(default_factory=list)
    pending_flows: int = 0
    # Contact rows settled but not yet merged into ``contacts`` (each run reduced on its own,
    # "server" holding ids): merged when the bucket is read, or once they outnumber it.
    runs: list[Columns] = field(default_factory=list)
    run_rows: int = 0

    def rows_of(self, server_id: int) -> tuple[int, slice, slice] | None:
        """(index into servers, contact rows, sample rows) of a server, or None."""
        i = int(np.searchsorted(self.servers, server_id))
        if i >= len(self.servers) or self.servers[i] != server_id:
            return None
        c0 = int(self.contact_ends[i - 1]) if i else 0
        s0 = int(self.sample_ends[i - 1]) if i else 0
        return i, slice(c0, int(self.contact_ends[i])), slice(s0, int(self.sample_ends[i]))


@dataclass(frozen=True, slots=True)
class ServerWindow:
    """One server's figures over the window: per bucket, oldest first, empty buckets included."""

    server_id: int
    bucket_seconds: int
    starts: I64  # bucket starts, epoch seconds
    measures: F64  # (buckets, len(MEASURES)), summed over each bucket
    contacts: npt.NDArray[np.void]  # CONTACT_DTYPE rows of this server, all buckets
    samples: npt.NDArray[np.void]  # SAMPLE_DTYPE rows of this server
    saturated: bool  # some bucket hit contact_cap: distinct counts are lower bounds

    def total(self, measure: str) -> F64:
        """Per bucket, the sum of ``measure``."""
        return self.measures[:, MEASURE_INDEX[measure]]

    def rate(self, measure: str) -> F64:
        """Per bucket, ``measure`` per second."""
        return self.total(measure) / self.bucket_seconds

    def bucket_of(self, contacts: npt.NDArray[np.void]) -> I64:
        """Index into ``starts`` of each contact row."""
        return np.searchsorted(self.starts, contacts["bucket"]).astype(np.int64)


@dataclass(slots=True)
class Windows:
    """The sliding windows of every server seen. Not thread-safe: the sink holds a lock.

    :meth:`add` keeps references to the arrays it is given until their bucket is settled: the
    caller must not change them afterwards (the collector never does; it decodes every batch
    into new arrays).
    """

    settings: WindowSettings = field(default_factory=WindowSettings)
    allow_destinations: Sequence[str] = ()  # remote prefixes whose traffic is not counted
    buckets: dict[int, _Bucket] = field(default_factory=dict)
    foreign: int = 0  # flows where neither address is ours
    flows_seen: int = 0

    def bucket_start(self, now: float) -> int:
        size = self.settings.bucket_seconds
        return int(now // size) * size

    def expire(self, now: float) -> None:
        oldest = self.bucket_start(now) - (self.settings.buckets - 1) * self.settings.bucket_seconds
        for start in [s for s in self.buckets if s < oldest]:
            del self.buckets[start]

    def add(
        self,
        flows: FlowArray,
        src_server: npt.ArrayLike,
        dst_server: npt.ArrayLike,
        now: float,
        default_rates: npt.ArrayLike | None = None,
    ) -> None:
        """Fold a decoded batch in, at ``now`` (epoch seconds).

        ``src_server`` / ``dst_server``: per flow, the server holding that address, -1 if none.
        ``default_rates``: per flow, the sampling rate to assume where the flow says 0.
        """
        self.expire(now)
        src = np.asarray(src_server, dtype=np.int64)
        dst = np.asarray(dst_server, dtype=np.int64)
        n = len(flows)
        if not (len(src) == len(dst) == n):
            raise ValueError("src_server and dst_server need one entry per flow")
        self.flows_seen += n
        if not n:
            return
        defaults = None
        if default_rates is not None:
            defaults = np.broadcast_to(np.asarray(default_rates, dtype=np.float64), (n,))
        ours = (src >= 0) | (dst >= 0)
        kept = int(np.count_nonzero(ours))
        self.foreign += n - kept
        if not kept:
            return
        # Filed whole: settling looks at each side's owner anyway, and a copy of the rows of
        # ours would cost more here than the transit rows cost there.
        start = self.bucket_start(now)
        bucket = self.buckets.get(start)
        if bucket is None:
            bucket = self.buckets[start] = _Bucket(start)
        bucket.pending.append(_Batch(flows, src, dst, defaults))
        bucket.pending_flows += n
        if bucket.pending_flows >= self.settings.pending_flows:
            self._settle(bucket)

    def servers(self, now: float) -> list[int]:
        """The servers with traffic in the window ending at ``now``."""
        self.expire(now)
        seen: set[int] = set()
        for bucket in self.buckets.values():
            self._settle(bucket, read=True)
            seen.update(bucket.servers.tolist())
        return sorted(seen)

    def view(self, server_id: int, now: float) -> ServerWindow:
        """``server_id``'s figures in the window ending at ``now``."""
        self.expire(now)
        size = self.settings.bucket_seconds
        last = self.bucket_start(now)
        starts = np.arange(
            last - (self.settings.buckets - 1) * size, last + 1, size, dtype=np.int64
        )
        measures = np.zeros((len(starts), len(MEASURES)))
        contacts, samples = [], []
        saturated = False
        for i, start in enumerate(starts):
            bucket = self.buckets.get(int(start))
            if bucket is None:
                continue
            self._settle(bucket, read=True)
            found = bucket.rows_of(server_id)
            if found is None:
                continue
            row, contact_rows, sample_rows = found
            measures[i] = bucket.measures[row]
            contacts.append(bucket.contacts[contact_rows])
            samples.append(bucket.samples[sample_rows])
            saturated |= server_id in bucket.saturated
        return ServerWindow(
            server_id,
            size,
            starts,
            measures,
            concat_rows(contacts) if contacts else np.zeros(0, CONTACT_DTYPE),
            concat_rows(samples) if samples else np.zeros(0, SAMPLE_DTYPE),
            saturated,
        )

    def _settle(self, bucket: _Bucket, read: bool = False) -> None:
        """Fold the bucket's pending batches into its figures; when it is to be ``read``, also
        merge its contact runs."""
        if bucket.pending:
            batches, bucket.pending, bucket.pending_flows = bucket.pending, [], 0
            _Settler(bucket, batches, self.settings, self.allow_destinations).run()
        if bucket.runs and (read or bucket.run_rows >= max(len(bucket.contacts), _MERGE_ROWS)):
            _merge_runs(bucket, self.settings.contact_cap)


# --------------------------------------------------------------------------- settling

# Classes of a flow for the measures, as bits of one code: bit 0 outbound, bits 1-2 the
# protocol (tcp, udp, icmp, other), then SYN-only, to an amplification port, from one, to
# SMTP, short to a brute-force port.
_OUT_BIT, _SYN_BIT, _AMP_TO_BIT, _AMP_FROM_BIT, _SMTP_BIT, _BF_BIT = 1, 8, 16, 32, 64, 128
_PROTO_CLASS = np.full(256, 3, np.uint8)
for _i, _number in enumerate(_PROTOS.values()):
    _PROTO_CLASS[_number] = _i
_AMP_PORT = np.zeros(65536, bool)
_AMP_PORT[list(AMPLIFICATION_PORTS)] = True
_BF_PORT = np.zeros(65536, bool)
_BF_PORT[list(BRUTE_FORCE_PORTS)] = True
_WEIGHTS = ("packets", "bytes", "flows")


def _code_measures() -> F64:
    """(code, weight) -> the measures a flow of that class adds that weight to."""
    names = [*_PROTOS, "other"]
    table = np.zeros((256, len(_WEIGHTS), len(MEASURES)))
    for code in range(256):
        side = "out" if code & _OUT_BIT else "in"
        proto = names[(code >> 1) & 3]
        for w, what in enumerate(_WEIGHTS):
            hit = [f"{side}_{what}", f"{side}_{proto}_{what}"]
            if code & _SYN_BIT and what != "bytes":
                hit.append(f"{side}_syn_{what}")
            if code & _AMP_TO_BIT:
                hit.append(f"{side}_amp_to_{what}")
            if code & _AMP_FROM_BIT:
                hit.append(f"{side}_amp_from_{what}")
            if side == "out" and what == "flows":
                hit += ["out_smtp_flows"] * bool(code & _SMTP_BIT)
                hit += ["out_short_bf_flows"] * bool(code & _BF_BIT)
            for name in hit:
                table[code, w, MEASURE_INDEX[name]] = 1.0
    return table


def _code_classes() -> npt.NDArray[np.uint8]:
    """code -> sample class: the first of syn, amp_to, amp_from, smtp, short_bf that holds."""
    out = np.zeros(256, np.uint8)
    bits = (_SYN_BIT, _AMP_TO_BIT, _AMP_FROM_BIT, _SMTP_BIT, _BF_BIT)
    for code in range(256):
        if not code & _OUT_BIT:
            out[code] = SAMPLE_CLASSES.index("inbound")
            continue
        out[code] = next((k for k, bit in enumerate(bits, start=1) if code & bit), 0)
    return out


def _possible_codes() -> list[int]:
    """The codes a flow can have: SYN-only, SMTP and brute force are TCP's, the amplification
    bits UDP's, and no port is both SMTP's and a brute-force one."""
    codes = []
    for out in (0, _OUT_BIT):
        codes += [
            out | 0 << 1 | syn | extra for syn in (0, _SYN_BIT) for extra in (0, _SMTP_BIT, _BF_BIT)
        ]
        codes += [out | 1 << 1 | to | frm for to in (0, _AMP_TO_BIT) for frm in (0, _AMP_FROM_BIT)]
        codes += [out | 2 << 1, out | 3 << 1]
    return codes


_CODE_MEASURES = _code_measures()
_CODE_CLASS = _code_classes()
_CODES = _possible_codes()
_SLOTS = len(_CODES)
_SLOT = np.zeros(256, np.int64)
_SLOT[_CODES] = np.arange(_SLOTS)
# (slot, weight) -> measures, in the layout _Settler adds up
_SLOT_MEASURES = _CODE_MEASURES[_CODES].reshape(_SLOTS * len(_WEIGHTS), len(MEASURES))


class _Edges:
    """Pending batches seen from our side: one row per (flow, our server, direction), outbound
    rows first, each part in arrival order."""

    def __init__(
        self,
        flows: FlowArray,
        rows: npt.NDArray[np.intp],
        server: I64,
        n_out: int,
        rates: F64,
        short_packets: int,
    ) -> None:
        self.flows, self.rows, self.server, self.n_out = flows, rows, server, n_out
        out_rows, in_rows = rows[:n_out], rows[n_out:]
        self.rates = rates[rows]
        proto = self.proto = flows["protocol"][rows]
        self.src_port, self.dst_port = flows["src_port"][rows], flows["dst_port"][rows]
        outbound = np.zeros(len(rows), bool)
        outbound[:n_out] = True
        self.outbound = outbound
        flags = flows["tcp_flags"][rows]
        packets = flows["packets"][rows]
        tcp, udp = proto == TCP, proto == UDP
        syn_only = tcp & ((flags & (SYN | ACK)) == SYN)
        amp_from = udp & _AMP_PORT[self.src_port]
        self.short = packets <= short_packets
        self.probe = syn_only | (udp & (self.src_port >= 1024)) | (proto == ICMP) | (proto == ICMP6)
        code = _PROTO_CLASS[proto] << 1
        code |= outbound
        code |= syn_only.view(np.uint8) * np.uint8(_SYN_BIT)
        code |= (udp & _AMP_PORT[self.dst_port]).view(np.uint8) * np.uint8(_AMP_TO_BIT)
        code |= amp_from.view(np.uint8) * np.uint8(_AMP_FROM_BIT)
        code |= (tcp & (self.dst_port == SMTP_PORT)).view(np.uint8) * np.uint8(_SMTP_BIT)
        code |= (tcp & _BF_PORT[self.dst_port] & self.short).view(np.uint8) * np.uint8(_BF_BIT)
        self.code = code
        self.amp_from = amp_from & outbound
        self.packets = packets * self.rates
        self.bytes = flows["bytes"][rows] * self.rates
        # the remote address: the destination of an outbound row, the source of an inbound one
        self.hi = np.concatenate([flows["dst_hi"][out_rows], flows["src_hi"][in_rows]])
        self.lo = np.concatenate([flows["dst_lo"][out_rows], flows["src_lo"][in_rows]])

    @classmethod
    def of(
        cls, batches: list[_Batch], settings: WindowSettings, allow: Sequence[str]
    ) -> _Edges | None:
        if len(batches) == 1:
            flows, src, dst = batches[0].flows, batches[0].src, batches[0].dst
        else:
            flows = concat_rows([b.flows for b in batches])
            src = np.concatenate([b.src for b in batches])
            dst = np.concatenate([b.dst for b in batches])
        rates = flows["sampling_rate"].astype(np.float64)
        unsaid = rates == 0
        if unsaid.any():
            fallback = np.concatenate(
                [
                    np.full(len(b.flows), float(settings.default_sampling_rate))
                    if b.default_rates is None
                    else b.default_rates
                    for b in batches
                ]
            )
            rates[unsaid] = np.maximum(fallback[unsaid], 1.0)
        out_ok = src >= 0
        in_ok = dst >= 0
        if allow:
            out_ok &= ~in_prefixes(flows["dst_hi"], flows["dst_lo"], allow)
            in_ok &= ~in_prefixes(flows["src_hi"], flows["src_lo"], allow)
        out_rows, in_rows = np.flatnonzero(out_ok), np.flatnonzero(in_ok)
        if not len(out_rows) and not len(in_rows):
            return None
        rows = np.concatenate([out_rows, in_rows])
        server = np.concatenate([src[out_rows], dst[in_rows]])
        return cls(flows, rows, server, len(out_rows), rates, settings.short_flow_packets)

    def contacts(self, d: I64) -> Columns:
        """Contact rows, not yet added up: each row as OUT or IN, and the outbound UDP rows
        from an amplification port once more as AMP_FROM (port: the source port)."""
        amp = np.flatnonzero(self.amp_from)
        rates = self.rates
        short, probe = self.short * rates, self.probe * rates
        kind = np.full(len(d), IN, np.uint8)
        kind[: self.n_out] = OUT
        return {
            "d": np.concatenate([d, d[amp]]),
            "kind": np.concatenate([kind, np.full(len(amp), AMP_FROM, np.uint8)]),
            "proto": np.concatenate([self.proto, self.proto[amp]]),
            "port": np.concatenate([self.dst_port, self.src_port[amp]]),
            "hi": np.concatenate([self.hi, self.hi[amp]]),
            "lo": np.concatenate([self.lo, self.lo[amp]]),
            "flows": np.concatenate([rates, rates[amp]]),
            "packets": np.concatenate([self.packets, self.packets[amp]]),
            "bytes": np.concatenate([self.bytes, self.bytes[amp]]),
            "short": np.concatenate([short, short[amp]]),
            "probe": np.concatenate([probe, probe[amp]]),
        }


def _ends(servers_of_rows: I64, servers: I64) -> I64:
    """Per server, one past its last row, for rows grouped by server in ``servers``' order."""
    return np.searchsorted(servers_of_rows, servers, side="right").astype(np.int64)


class _ServerMap:
    """Server ids to dense indices 0..S-1, in id order."""

    def __init__(self, arrays: Sequence[I64]) -> None:
        parts = [a[a >= 0] for a in arrays]
        top = max((int(p.max()) for p in parts if len(p)), default=-1)
        self._index: I64 | None = None
        if top < 4 * sum(len(p) for p in parts) + 65536:  # a table is cheaper than a sort
            present = np.zeros(top + 1, bool)
            for p in parts:
                present[p] = True
            self.servers = np.flatnonzero(present).astype(np.int64)
            self._index = np.cumsum(present, dtype=np.int64) - 1
        else:
            distinct = [np.unique(p) for p in parts]
            self.servers = np.unique(np.concatenate(distinct)).astype(np.int64)

    def dense(self, ids: I64) -> I64:
        if self._index is not None:
            return self._index[ids]
        return np.searchsorted(self.servers, ids).astype(np.int64)


_MIX = (
    np.uint64(0x9E3779B97F4A7C15),
    np.uint64(0xC2B2AE3D27D4EB4F),
    np.uint64(0x165667B19E3779F9),
    np.uint64(0xFF51AFD7ED558CCD),
)


def _hash(
    k1: npt.NDArray[np.uint64], hi: npt.NDArray[np.uint64], lo: npt.NDArray[np.uint64]
) -> npt.NDArray[np.uint64]:
    h = k1 * _MIX[0]
    h ^= hi * _MIX[1]
    h ^= lo * _MIX[2]
    h ^= h >> np.uint64(31)
    h *= _MIX[3]
    h ^= h >> np.uint64(29)
    return h


_SUMS = ("flows", "packets", "bytes", "short", "probe")
_KEYS = ("d", "kind", "proto", "port", "hi", "lo")
Columns = dict[str, npt.NDArray[Any]]


def _reduce(c: Columns) -> Columns:
    """One row per (d, kind, proto, port, hi, lo) with the sums added up, grouped by ``d``
    (dense server) in increasing order."""
    n = len(c["d"])
    if not n:
        return c
    d = c["d"]
    k1 = d.astype(np.uint64) << np.uint64(26)
    k1 |= c["kind"].astype(np.uint64) << np.uint64(24)
    k1 |= c["proto"].astype(np.uint64) << np.uint64(16)
    k1 |= c["port"]
    dbits = max(1, int(d[-1] if _ascending(d) else d.max()).bit_length())
    ibits = max(1, (n - 1).bit_length())
    hbits = 64 - dbits - ibits
    if hbits >= 20:
        # server in the high bits, then the key's hash, then the row: one sort of one word
        key = d.astype(np.uint64) << np.uint64(64 - dbits)
        key |= (_hash(k1, c["hi"], c["lo"]) >> np.uint64(64 - hbits)) << np.uint64(ibits)
        key |= np.arange(n, dtype=np.uint64)
        key.sort()
        order = (key & np.uint64((1 << ibits) - 1)).astype(np.intp)
    else:  # too many rows or servers for a packed key: sort exactly
        order = np.lexsort([c["port"], c["proto"], c["lo"], c["hi"], c["kind"], d])
    k1s, his, los = k1[order], c["hi"][order], c["lo"][order]
    new = np.empty(n, bool)
    new[0] = True
    new[1:] = (k1s[1:] != k1s[:-1]) | (his[1:] != his[:-1]) | (los[1:] != los[:-1])
    starts = np.flatnonzero(new)
    if len(starts) == n:  # nothing to add up
        return {k: v[order] for k, v in c.items()}
    group = np.empty(n, np.int64)
    group[order] = np.cumsum(new) - 1
    first = order[starts]
    out = {k: c[k][first] for k in ("d", "kind", "proto", "port")}
    out["hi"], out["lo"] = his[starts], los[starts]
    for what in _SUMS:
        out[what] = np.bincount(group, weights=c[what], minlength=len(starts))
    return out


def _ascending(values: I64) -> bool:
    return bool(len(values) < 2 or (values[1:] >= values[:-1]).all())


def _cap(contacts: npt.NDArray[np.void], cap: int) -> tuple[npt.NDArray[np.void], set[int]]:
    """At most ``cap`` rows per (server, kind), the heaviest; ``contacts`` are grouped by
    server in increasing order, and stay so."""
    if not len(contacts):
        return contacts, set()
    server = contacts["server"]  # grouped by server, in increasing order
    new = np.empty(len(server), bool)
    new[0] = True
    np.not_equal(server[1:], server[:-1], out=new[1:])
    servers = server[new]
    group = (np.cumsum(new) - 1) * 4 + contacts["kind"]
    over = np.flatnonzero(np.bincount(group) > cap)
    if not len(over):
        return contacts, set()
    saturated = {int(s) for s in servers[over // 4]}
    crowded = np.flatnonzero(np.isin(group, over))
    c = contacts[crowded]
    # heaviest first, ties by key, as a reduction over all the rows would rank them
    order = np.lexsort([c["port"], c["proto"], c["lo"], c["hi"], -c["flows"], group[crowded]])
    g = group[crowded][order]
    begins = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    rank = np.arange(len(g)) - np.repeat(begins, np.diff(np.r_[begins, len(g)]))
    keep = np.ones(len(contacts), bool)
    keep[crowded[order[rank >= cap]]] = False
    return take_rows(contacts, keep), saturated


_CHUNK = 1 << 16  # flows settled at a time: their arrays stay small and their memory reused


class _Settler:
    """Settles one bucket's pending batches, a chunk of flows at a time: measures and samples
    are added up as it goes, contacts reduced per chunk and left as runs (see _merge_runs)."""

    def __init__(
        self,
        bucket: _Bucket,
        batches: list[_Batch],
        settings: WindowSettings,
        allow: Sequence[str],
    ) -> None:
        self.bucket, self.batches, self.settings, self.allow = bucket, batches, settings, allow
        self.map = _ServerMap(
            [b.src for b in batches] + [b.dst for b in batches] + [bucket.servers]
        )
        n = len(self.map.servers)
        self.seen = np.zeros(n, bool)
        self.seen[self.map.dense(bucket.servers)] = True
        self.sums = np.zeros((len(_WEIGHTS), n * _SLOTS))
        self.runs: list[Columns] = []
        old = bucket.samples
        self.taken = np.bincount(self.map.dense(old["server"]) * 8 + old["cls"], minlength=n * 8)
        self.samples: list[npt.NDArray[np.void]] = [old]
        self.sample_keys: list[I64] = [self.map.dense(old["server"]) * 8 + old["cls"]]

    def run(self) -> None:
        group: list[_Batch] = []
        size = 0
        for batch in self.batches:
            group.append(batch)
            size += len(batch.flows)
            if size >= _CHUNK:
                self._chunk(group)
                group, size = [], 0
        if group:
            self._chunk(group)
        self._finish()

    def _chunk(self, group: list[_Batch]) -> None:
        edges = _Edges.of(group, self.settings, self.allow)
        if edges is None:
            return
        d = self.map.dense(edges.server)
        self.seen[d] = True
        key = d * _SLOTS + _SLOT[edges.code]
        size = self.sums.shape[1]
        for i, w in enumerate((edges.packets, edges.bytes, edges.rates)):
            self.sums[i] += np.bincount(key, weights=w, minlength=size)
        self.runs.append(edges.contacts(d))  # added up once, when merged
        self._sample(edges, d)

    def _sample(self, edges: _Edges, d: I64) -> None:
        """The first flows of each (server, class) while it has fewer than samples_per_class."""
        per_class = self.settings.samples_per_class
        keys = d * 8 + _CODE_CLASS[edges.code]
        wanted = np.flatnonzero(self.taken[keys] < per_class)
        if not len(wanted):
            return
        k = keys[wanted]
        ibits = max(1, (len(k) - 1).bit_length())
        packed = (k.astype(np.uint64) << np.uint64(ibits)) | np.arange(len(k), dtype=np.uint64)
        packed.sort()
        sorted_keys = (packed >> np.uint64(ibits)).astype(np.int64)
        begins = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        rank = np.arange(len(k)) - np.repeat(begins, np.diff(np.r_[begins, len(k)]))
        keep = self.taken[sorted_keys] + rank < per_class
        e = wanted[(packed[keep] & np.uint64((1 << ibits) - 1)).astype(np.intp)]
        chosen = keys[e]
        np.add.at(self.taken, chosen, 1)
        rows = np.zeros(len(e), SAMPLE_DTYPE)
        rows["server"] = self.map.servers[d[e]]
        rows["cls"] = chosen % 8
        rows["rate"] = edges.rates[e].astype(np.uint32)
        rows["flow"] = take_rows(edges.flows, edges.rows[e])
        self.samples.append(rows)
        self.sample_keys.append(chosen)

    def _finish(self) -> None:
        bucket, servers = self.bucket, self.map.servers
        n = len(servers)
        matrix = self.sums.reshape(len(_WEIGHTS), n, _SLOTS).transpose(1, 2, 0).reshape(n, -1)
        measures = matrix @ _SLOT_MEASURES
        if len(bucket.servers):
            measures[self.map.dense(bucket.servers)] += bucket.measures
        for run in self.runs:
            run["server"] = servers[run.pop("d")]
            bucket.runs.append(run)
            bucket.run_rows += len(run["server"])
        keys = np.concatenate(self.sample_keys)
        # by server, class, arrival
        samples = take_rows(concat_rows(self.samples), np.argsort(keys, kind="stable"))
        keep = self.seen
        bucket.servers, bucket.measures = servers[keep], measures[keep]
        bucket.samples = samples
        bucket.contact_ends = _ends(bucket.contacts["server"], bucket.servers)
        bucket.sample_ends = _ends(samples["server"], bucket.servers)


_MERGE_ROWS = 1 << 20  # unmerged contact rows a bucket holds at least before merging unread


def _merge_runs(bucket: _Bucket, cap: int) -> None:
    """Merge the bucket's contact runs into its contacts, at most ``cap`` rows per server and
    kind. Merging only when read, or when the runs outnumber the merged rows, keeps each row's
    share of the sorting bounded however many times the bucket is settled before it is read."""
    old = bucket.contacts
    runs = bucket.runs
    if len(old):
        runs = [{"server": old["server"], **{k: old[k] for k in (*_KEYS[1:], *_SUMS)}}, *runs]
    bucket.runs, bucket.run_rows = [], 0
    ids = _ServerMap([r["server"] for r in runs])
    cols = {k: np.concatenate([r[k] for r in runs]) for k in (*_KEYS[1:], *_SUMS)}
    cols["d"] = ids.dense(np.concatenate([r["server"] for r in runs]))
    reduced = _reduce(cols)
    contacts = np.empty(len(reduced["d"]), CONTACT_DTYPE)  # every field is set below
    contacts["server"] = ids.servers[reduced["d"]]
    for k in (*_KEYS[1:], *_SUMS):
        contacts[k] = reduced[k]
    contacts["bucket"] = bucket.start
    contacts, saturated = _cap(contacts, cap)
    bucket.contacts = contacts
    bucket.contact_ends = _ends(contacts["server"], bucket.servers)
    bucket.saturated |= saturated


def _bounds(prefix: str) -> tuple[int, int]:
    network = ipaddress.ip_network(prefix)
    first, last = int(network.network_address), int(network.broadcast_address)
    if network.version == 4:
        first, last = V4_MAPPED | first, V4_MAPPED | last
    return first, last


def in_prefixes(
    hi: npt.NDArray[np.uint64], lo: npt.NDArray[np.uint64], prefixes: Sequence[str]
) -> npt.NDArray[np.bool_]:
    """Whether each 128-bit address (as the decoders store it) lies in one of ``prefixes``."""
    found = np.zeros(len(hi), bool)
    for prefix in prefixes:
        first, last = _bounds(prefix)
        f_hi, f_lo = np.uint64(first >> 64), np.uint64(first & 0xFFFF_FFFF_FFFF_FFFF)
        l_hi, l_lo = np.uint64(last >> 64), np.uint64(last & 0xFFFF_FFFF_FFFF_FFFF)
        above = (hi > f_hi) | ((hi == f_hi) & (lo >= f_lo))
        below = (hi < l_hi) | ((hi == l_hi) & (lo <= l_lo))
        found |= above & below
    return found


def is_v4(hi: npt.ArrayLike, lo: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Whether 128-bit addresses are IPv4-mapped."""
    hi, lo = np.asarray(hi, np.uint64), np.asarray(lo, np.uint64)
    return (hi == 0) & ((lo >> np.uint64(32)) == np.uint64(V4_MAPPED >> 32))


def address_of(hi: int, lo: int) -> str:
    """A 128-bit address of a contact row as text."""
    if bool(is_v4(hi, lo)):
        return str(ipaddress.IPv4Address(int(lo) & 0xFFFF_FFFF))
    return str(ipaddress.IPv6Address((int(hi) << 64) | int(lo)))
