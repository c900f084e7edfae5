"""The rules a customer's zone and its record sets keep (issue 7, AUP R10). Pure: texts in,
canonical values out, or every reason at once as :class:`~abusedesk.errors.FieldErrors`.

dnspython does the syntax: each record is read by ``dns.rdata.from_text`` with the zone as its
origin and written back as dnspython prints it, with names absolute, so what is stored is one
canonical text whatever the customer typed (``10 mail`` becomes ``10 mail.example.net.``), as
deSEC does. On top of the syntax come the rules of the RFCs that a server would otherwise only
discover when it answers, and the provider's bounds (DnsSettings):

- owner names: inside the zone; labels of at most 63 octets, names of at most 255 (RFC 1035
  §2.3.4); letters, digits, ``-`` and ``_``; a wildcard only as the whole leftmost label
  (RFC 4592), and never for NS, DS or DNAME (RFC 4592 §4.2, §4.4);
- types: the customers' set (:data:`CUSTOMER_TYPES`); the SOA and the apex NS are the
  provider's; PTR only in reverse zones; NS only below the apex (a delegation), DS only beside it;
- a CNAME alone at its name and never at the apex (RFC 1034 §3.6.2, RFC 2181 §10.1); no
  CNAME loop inside the zone; NS, MX and SRV targets not CNAMEs (RFC 2181 §10.3, RFC 2782) where
  the zone tells; one record in a CNAME or DNAME set; no CNAME beside a DNAME and nothing below
  a DNAME (RFC 6672 §2.3, §2.4); nothing below a delegation but glue, and glue for a name server
  inside the delegated zone;
- TTL from ``min_ttl`` to ``max_ttl`` (and 0…2^31−1, RFC 2181 §8), one per set (a set is one
  TTL by construction here); no record twice in a set; TXT strings of at most 255 octets;
  at most ``max_records_per_set`` records in a set and ``max_rrsets_per_zone`` sets in a zone.

Zone names: absolute, lower-case, letters, digits and hyphens; not a special-use name (RFC 6761
and IANA's registry) nor under one; not a public suffix (the Public Suffix List, its private
section too, so ``github.io`` is refused); under a known top-level domain; reverse zones under
``in-addr.arpa`` and ``ip6.arpa`` for global unicast space only.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
from publicsuffixlist import PublicSuffixList

from abusedesk.dns.settings import DnsSettings
from abusedesk.errors import FieldError, FieldErrors

# What a customer may put in a zone. Declared as sets, not scattered through the checks.
CUSTOMER_TYPES: frozenset[str] = frozenset(
    {
        "A",
        "AAAA",
        "CAA",
        "CNAME",
        "DNAME",
        "DS",
        "HTTPS",
        "MX",
        "NS",
        "PTR",
        "SRV",
        "SSHFP",
        "SVCB",
        "TLSA",
        "TXT",
    }
)
PROVIDER_TYPES: frozenset[str] = frozenset({"SOA"})  # and the NS at the apex
SINGLETON_TYPES: frozenset[str] = frozenset({"CNAME", "DNAME"})  # one record per set
GLUE_TYPES: frozenset[str] = frozenset({"A", "AAAA"})
NOT_AT_WILDCARD: frozenset[str] = frozenset({"NS", "DS", "DNAME"})

MAX_TTL = 2**31 - 1  # RFC 2181 §8
MAX_RECORD_TEXT = 4096  # characters of one record as typed; a TXT set of 16 full strings fits
MAX_ZONE_LABELS = 10  # a forward zone deeper than this is a mistake, not a customer's need
CNAME_CHAIN_LIMIT = 16

# RFC 6761 and the IANA special-use domain names registry, plus `internal` (ICANN, 2024):
# no zone at or under these.
SPECIAL_USE: frozenset[str] = frozenset(
    {
        "6tisch.arpa",
        "alt",
        "example",
        "example.com",
        "example.net",
        "example.org",
        "home.arpa",
        "internal",
        "invalid",
        "ipv4only.arpa",
        "local",
        "localhost",
        "onion",
        "resolver.arpa",
        "service.arpa",
        "test",
    }
)
REVERSE_V4 = "in-addr.arpa"
REVERSE_V6 = "ip6.arpa"

_LDH_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_OWNER_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_OCTET = re.compile(r"^(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$")
_NIBBLE = re.compile(r"^[0-9a-f]$")

# The exceptions dnspython raises on text it cannot read (its own tree, and a few built-ins
# its type modules let through on odd input: an int too large, a bad escape, a bad base64).
PARSE_ERRORS = (
    dns.exception.DNSException,
    ValueError,
    TypeError,
    UnicodeError,
    IndexError,
    KeyError,
    OverflowError,
)

RRSetKey = tuple[str, str]  # (subname, type); subname "" is the apex


@dataclass(frozen=True, slots=True)
class RRSetData:
    """A valid record set: owner relative to the zone ("" for the apex), type, one TTL, and
    each record as canonical text (names absolute)."""

    subname: str
    type: str
    ttl: int
    records: tuple[str, ...]

    @property
    def key(self) -> RRSetKey:
        return (self.subname, self.type)


@dataclass(frozen=True, slots=True)
class Problem:
    """A rule a zone as a whole breaks: the set it is reported on, the field there, and every
    set it involves (a CNAME beside an A involves both)."""

    key: RRSetKey
    field: str
    message: str
    # dataclasses.field: the attribute above, `field`, hides the bare name in this class body
    involves: frozenset[RRSetKey] = dataclasses.field(default_factory=frozenset)


# -- zone names -----------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _psl() -> PublicSuffixList:
    # The list ships inside the package; unknown top-level domains are not accepted.
    return PublicSuffixList(accept_unknown=False)


def zone_name(text: object, field: str = "name") -> str:
    """The canonical name of a zone customers may have (``"example.com"``: lower-case, no
    final dot, IDNs in their ``xn--`` form), or FieldErrors on `field`."""

    def refuse(message: str) -> FieldErrors:
        return FieldErrors([FieldError(field, message)])

    if not isinstance(text, str) or not text.strip():
        raise refuse("give the zone's name, e.g. example.com")
    raw = text.strip().rstrip(".").lower()
    if not raw:
        raise refuse("the root zone is the provider's")
    try:
        name = _name_from_text(raw + ".")
    except PARSE_ERRORS as exc:
        raise refuse(f"not a domain name: {_dns_message(exc)}") from exc
    labels = [label.decode("ascii").lower() for label in name.labels[:-1]]
    canonical = ".".join(labels)
    if len(canonical) > 253:
        raise refuse("a domain name has at most 253 characters")
    if len(labels) < 2:
        raise refuse(f"{canonical} is a top-level domain")
    bad = [label for label in labels if not _LDH_LABEL.match(label)]
    if bad:
        raise refuse(
            f"the label {bad[0]!r} is not a host name's: letters, digits and hyphens, "
            "not starting or ending with a hyphen"
        )
    for special in SPECIAL_USE:
        if canonical == special or canonical.endswith("." + special):
            raise refuse(f"{special} is a special-use domain name (RFC 6761): no zone under it")
    if labels[-1] == "arpa":
        reverse_network(canonical, field)  # raises for anything but global unicast space
        return canonical
    if len(labels) > MAX_ZONE_LABELS:
        raise refuse(f"a zone has at most {MAX_ZONE_LABELS} labels")
    psl = _psl()
    if psl.publicsuffix(canonical) is None:
        raise refuse(f"{labels[-1]} is not a known top-level domain")
    if psl.is_public(canonical):
        raise refuse(
            f"{canonical} is a public suffix (publicsuffix.org): register a domain under it"
        )
    return canonical


def _name_from_text(text: str) -> dns.name.Name:
    if text.isascii():
        return dns.name.from_text(text)
    return dns.name.from_unicode(text, idna_codec=dns.name.IDNA_2008_Practical)


def reverse_network(
    zone: str, field: str = "name"
) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The addresses a reverse zone (``2.0.192.in-addr.arpa``) answers for; FieldErrors when it
    is no reverse zone, or covers addresses that are not global unicast (private, loopback,
    link-local, documentation …: RFC 6303 has them served locally)."""

    def refuse(message: str) -> FieldErrors:
        return FieldErrors([FieldError(field, message)])

    labels = zone.lower().rstrip(".").split(".")
    suffix = ".".join(labels[-2:])
    digits = labels[:-2][::-1]
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    if suffix == REVERSE_V4:
        if not 1 <= len(digits) <= 4 or not all(_OCTET.match(d) for d in digits):
            raise refuse(
                "a reverse zone under in-addr.arpa names one to four octets, e.g. "
                "2.0.192.in-addr.arpa"
            )
        octets = [int(d) for d in digits] + [0] * (4 - len(digits))
        network = ipaddress.IPv4Network((bytes(octets), 8 * len(digits)))
    elif suffix == REVERSE_V6:
        if not 1 <= len(digits) <= 32 or not all(_NIBBLE.match(d) for d in digits):
            raise refuse(
                "a reverse zone under ip6.arpa names 1 to 32 hexadecimal nibbles, one a label"
            )
        nibbles = "".join(digits).ljust(32, "0")
        network = ipaddress.IPv6Network((int(nibbles, 16), 4 * len(digits)))
    else:
        raise refuse("under arpa, only reverse zones (in-addr.arpa, ip6.arpa) are served")
    if not _global_unicast(network):
        raise refuse(f"{network} is not global unicast address space")
    return network


def _global_unicast(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    first, last = network.network_address, network.broadcast_address
    if network.version == 6 and not network.subnet_of(ipaddress.IPv6Network("2000::/3")):  # type: ignore[arg-type]
        return False
    return first.is_global and last.is_global and not first.is_multicast


def is_reverse(zone: str) -> bool:
    return zone.endswith("." + REVERSE_V4) or zone.endswith("." + REVERSE_V6)


def origin_of(zone: str) -> dns.name.Name:
    """The zone's name as dnspython's absolute name."""
    return dns.name.from_text(zone.rstrip(".") + ".")


# -- owner names ----------------------------------------------------------------------------


def subname(zone: str, text: object, field: str = "subname") -> str:
    """An owner name relative to the zone, canonical (lower-case, "" for the apex). Accepts
    "" and "@" for the apex, a relative name (``www``), or an absolute one inside the zone
    (``www.example.net.``)."""
    errors = _subname_errors(zone, text, field)
    if isinstance(errors, list):
        raise FieldErrors(errors)
    return errors


def _subname_errors(zone: str, text: object, field: str) -> str | list[FieldError]:
    def refuse(message: str) -> list[FieldError]:
        return [FieldError(field, message)]

    if not isinstance(text, str):
        return refuse("give the name, or @ for the zone itself")
    raw = text.strip().lower()
    origin = origin_of(zone)
    if raw in ("", "@", origin.to_text().lower(), zone):
        return ""
    try:
        if raw.endswith("."):
            name = _name_from_text(raw)
            if not name.is_subdomain(origin):
                return refuse(f"{raw} is not inside the zone {zone}")
            relative = name.relativize(origin)
        else:
            relative = _name_from_text(raw).relativize(dns.name.root)
            if relative.labels and relative.labels[-1] == b"":
                return refuse("not a name")
            relative.derelativize(origin)  # raises NameTooLong past 255 octets
    except dns.name.NameTooLong:
        return refuse(f"the full name is longer than 255 octets (with {zone})")
    except dns.name.LabelTooLong:
        return refuse("a label has at most 63 octets")
    except PARSE_ERRORS as exc:
        return refuse(f"not a name: {_dns_message(exc)}")
    labels = [label.decode("ascii", "replace").lower() for label in relative.labels]
    for position, label in enumerate(labels):
        if label == "*":
            if position != 0:
                return refuse("a wildcard is the whole leftmost label only (RFC 4592): *.name")
            continue
        if "*" in label:
            return refuse("a wildcard is the whole leftmost label only (RFC 4592): *.name")
        if not _OWNER_LABEL.match(label):
            return refuse(
                f"the label {label!r} may hold letters, digits, - and _, and not start or "
                "end with a hyphen"
            )
    return ".".join(labels)


# -- record sets ----------------------------------------------------------------------------


def rrset(
    zone: str,
    owner: object,
    rtype: object,
    ttl: object,
    records: object,
    settings: DnsSettings,
) -> RRSetData:
    """One record set checked on its own (the zone-wide rules are :func:`check_zone`'s).
    Fields: ``subname``, ``type``, ``ttl``, ``records`` and ``records[i]``. A TTL of None
    takes the settings' default."""
    errors: list[FieldError] = []
    checked = _subname_errors(zone, owner, "subname")
    name: str | None
    if isinstance(checked, list):
        errors.extend(checked)
        name = None
    else:
        name = checked
    kind = _type_errors(zone, name, rtype, errors)
    the_ttl = _ttl(ttl, settings, errors)
    texts = _records(zone, name, kind, records, settings, errors)
    if errors:
        raise FieldErrors(errors)
    assert name is not None
    assert kind is not None
    assert the_ttl is not None
    return RRSetData(name, kind, the_ttl, tuple(texts))


def _type_errors(
    zone: str, name: str | None, rtype: object, errors: list[FieldError]
) -> str | None:
    def refuse(message: str) -> None:
        errors.append(FieldError("type", message))

    if not isinstance(rtype, str) or not rtype.strip():
        refuse("give the record type, e.g. A")
        return None
    kind = rtype.strip().upper()
    try:
        kind = dns.rdatatype.to_text(dns.rdatatype.from_text(kind))
    except PARSE_ERRORS:
        refuse(f"{rtype!r} is not a record type")
        return None
    if kind in PROVIDER_TYPES:
        refuse("the SOA is the provider's: the serial goes up by itself on every change")
        return None
    if kind not in CUSTOMER_TYPES:
        refuse(f"{kind} records are not offered; the types are {', '.join(sorted(CUSTOMER_TYPES))}")
        return None
    if name is None:
        return kind
    leftmost = name.split(".")[0]
    if kind == "NS" and name == "":
        refuse("the name servers of the zone itself are the provider's; NS below it delegate")
    elif kind == "DS" and name == "":
        refuse("a DS record belongs beside a delegation's NS, below the apex")
    elif kind == "CNAME" and name == "":
        refuse("a CNAME cannot be at the zone's apex, beside its SOA and NS (RFC 1034 §3.6.2)")
    elif kind == "PTR" and not is_reverse(zone):
        refuse("PTR records belong in reverse zones (in-addr.arpa, ip6.arpa)")
    elif kind in NOT_AT_WILDCARD and leftmost == "*":
        refuse(f"a wildcard name cannot hold {kind} records (RFC 4592 §4)")
    elif kind == "SRV" and not _service_name(name, port_first=False):
        refuse("an SRV record's name starts _service._proto, e.g. _sip._tcp (RFC 2782)")
    elif kind == "TLSA" and not _service_name(name, port_first=True):
        refuse("a TLSA record's name starts _port._proto, e.g. _443._tcp (RFC 6698)")
    else:
        return kind
    return None


def _service_name(name: str, port_first: bool) -> bool:
    labels = name.split(".")
    if len(labels) < 2 or not labels[0].startswith("_") or not labels[1].startswith("_"):
        return False
    return not port_first or labels[0][1:].isdigit()


def _ttl(ttl: object, settings: DnsSettings, errors: list[FieldError]) -> int | None:
    if ttl is None:
        return min(max(settings.default_ttl, settings.min_ttl), settings.max_ttl)
    if isinstance(ttl, bool) or not isinstance(ttl, int | str):
        errors.append(FieldError("ttl", "the TTL is a whole number of seconds"))
        return None
    try:
        value = int(ttl)
    except ValueError:
        errors.append(FieldError("ttl", "the TTL is a whole number of seconds"))
        return None
    low, high = max(settings.min_ttl, 0), min(settings.max_ttl, MAX_TTL)
    if not low <= value <= high:
        errors.append(FieldError("ttl", f"the TTL is from {low} to {high} seconds"))
        return None
    return value


def _records(
    zone: str,
    name: str | None,
    kind: str | None,
    records: object,
    settings: DnsSettings,
    errors: list[FieldError],
) -> list[str]:
    if isinstance(records, str) or not isinstance(records, Sequence):
        errors.append(FieldError("records", "give the records as a list"))
        return []
    if not records:
        errors.append(FieldError("records", "a record set has at least one record"))
        return []
    if len(records) > settings.max_records_per_set:
        errors.append(
            FieldError(
                "records", f"a record set has at most {settings.max_records_per_set} records"
            )
        )
        return []
    if kind in SINGLETON_TYPES and len(records) > 1:
        errors.append(FieldError("records", f"a name has one {kind} record, not {len(records)}"))
    if kind is None:
        return []
    origin = origin_of(zone)
    parsed: list[dns.rdata.Rdata] = []
    texts: list[str] = []
    for i, text in enumerate(records):
        here = f"records[{i}]"
        rdata = _rdata(origin, kind, text, here, errors)
        if rdata is None:
            continue
        if rdata in parsed:
            errors.append(FieldError(here, f"repeats records[{_index(parsed, rdata)}]"))
            continue
        problem = _rdata_problem(zone, name, rdata)
        if problem:
            errors.append(FieldError(here, problem))
            continue
        parsed.append(rdata)
        texts.append(rdata.to_text())
    if kind == "MX" and len(parsed) > 1 and any(_null_mx(r) for r in parsed):
        errors.append(
            FieldError("records", "a null MX (0 .) is the only MX of its name (RFC 7505)")
        )
    return texts


def _index(parsed: list[dns.rdata.Rdata], rdata: dns.rdata.Rdata) -> int:
    return next(i for i, seen in enumerate(parsed) if seen == rdata)


def _rdata(
    origin: dns.name.Name, kind: str, text: object, here: str, errors: list[FieldError]
) -> dns.rdata.Rdata | None:
    if not isinstance(text, str) or not text.strip():
        errors.append(FieldError(here, "an empty record"))
        return None
    if len(text) > MAX_RECORD_TEXT:
        errors.append(FieldError(here, f"a record is at most {MAX_RECORD_TEXT} characters"))
        return None
    if "\n" in text or "\r" in text:
        errors.append(FieldError(here, "a record is one line"))
        return None
    try:
        return dns.rdata.from_text(
            dns.rdataclass.IN, dns.rdatatype.from_text(kind), text, origin=origin, relativize=False
        )
    except dns.name.LabelTooLong:
        errors.append(FieldError(here, "a label has at most 63 octets"))
    except dns.name.NameTooLong:
        errors.append(FieldError(here, "a name has at most 255 octets"))
    except PARSE_ERRORS as exc:
        message = _dns_message(exc)
        if kind == "TXT" and "too long" in message:
            message = "a TXT string has at most 255 octets: split it into several quoted strings"
        errors.append(FieldError(here, f"not a valid {kind} record: {message}"))
    return None


def _rdata_problem(zone: str, name: str | None, rdata: dns.rdata.Rdata) -> str | None:
    kind = dns.rdatatype.to_text(rdata.rdtype)
    if kind == "NS" and rdata.target == dns.name.root:  # type: ignore[attr-defined]
        return "a name server cannot be the root"
    if kind in ("CNAME", "DNAME") and name is not None:
        owner = _absolute(zone, name)
        if rdata.target == owner:  # type: ignore[attr-defined]
            return f"a {kind} cannot point to its own name"
        if kind == "DNAME" and rdata.target.is_subdomain(owner):  # type: ignore[attr-defined]
            return "a DNAME cannot point below itself: every answer would loop"
    return None


def _null_mx(rdata: dns.rdata.Rdata) -> bool:
    return rdata.exchange == dns.name.root  # type: ignore[attr-defined,no-any-return]


def _absolute(zone: str, name: str) -> dns.name.Name:
    origin = origin_of(zone)
    return origin if name == "" else dns.name.from_text(name, origin=origin)


def _dns_message(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    # dnspython prefixes the input's name and line ("<string>:1: "); the field says where.
    return re.sub(r"^<[a-z]+>:\d+:\s*", "", text)


# -- the zone as a whole --------------------------------------------------------------------


def check_zone(
    zone: str,
    sets: Mapping[RRSetKey, RRSetData],
    settings: DnsSettings,
    focus: Collection[RRSetKey] | None = None,
) -> list[Problem]:
    """The rules between sets. With `focus` (the sets a change touches), only problems that
    involve one of them: a bound tightened since an old set was saved does not block an
    unrelated change."""
    problems = list(_zone_problems(zone, sets, settings))
    if focus is None:
        return problems
    wanted = set(focus)
    kept = []
    for problem in problems:
        touched = wanted & (problem.involves | {problem.key})
        if not touched:
            continue
        if problem.key not in wanted:  # report it where the change is
            problem = Problem(min(touched), problem.field, problem.message, problem.involves)
        kept.append(problem)
    return kept


def _zone_problems(
    zone: str, sets: Mapping[RRSetKey, RRSetData], settings: DnsSettings
) -> Iterable[Problem]:
    origin = origin_of(zone)
    if len(sets) > settings.max_rrsets_per_zone:
        first = max(sets)
        yield Problem(
            first,
            "subname",
            f"a zone has at most {settings.max_rrsets_per_zone} record sets",
            frozenset(sets),
        )
    by_name: dict[str, dict[str, RRSetData]] = {}
    for (owner, kind), data in sets.items():
        by_name.setdefault(owner, {})[kind] = data
    absolute = {owner: _absolute(zone, owner) for owner in by_name}
    cuts = {owner for owner, kinds in by_name.items() if "NS" in kinds and owner}
    dnames = {owner for owner, kinds in by_name.items() if "DNAME" in kinds}

    for owner, kinds in by_name.items():
        here = owner or "@"
        if "CNAME" in kinds:
            for kind in sorted(set(kinds) - {"CNAME"}):
                yield Problem(
                    (owner, kind),
                    "type",
                    f"{here} has a CNAME: a CNAME is alone at its name (RFC 2181 §10.1)",
                    frozenset({(owner, "CNAME"), (owner, kind)}),
                )
        if "DNAME" in kinds and "CNAME" in kinds:
            yield Problem(
                (owner, "DNAME"),
                "type",
                f"{here} has a CNAME: no DNAME beside it (RFC 6672 §2.4)",
                frozenset({(owner, "CNAME"), (owner, "DNAME")}),
            )
        if "DS" in kinds and owner not in cuts:
            yield Problem(
                (owner, "DS"),
                "type",
                f"a DS record belongs beside NS records that delegate {here}",
                frozenset({(owner, "DS"), (owner, "NS")}),
            )
        if owner in cuts:
            for kind in sorted(set(kinds) - {"NS", "DS"} - GLUE_TYPES):
                yield Problem(
                    (owner, kind),
                    "type",
                    f"{here} is delegated (NS): only NS, DS and glue (A, AAAA) stay here",
                    frozenset({(owner, "NS"), (owner, kind)}),
                )
        for above in _ancestors(owner, absolute, origin):
            if above in dnames:
                for kind in kinds:
                    yield Problem(
                        (owner, kind),
                        "subname",
                        f"{above or '@'} has a DNAME: nothing exists below it (RFC 6672 §2.3)",
                        frozenset({(above, "DNAME"), (owner, kind)}),
                    )
            if above in cuts:
                for kind in sorted(set(kinds) - GLUE_TYPES):
                    yield Problem(
                        (owner, kind),
                        "subname",
                        f"{above} is delegated (NS): below it only glue (A, AAAA) is served",
                        frozenset({(above, "NS"), (owner, kind)}),
                    )

    yield from _target_problems(zone, origin, sets, by_name, cuts)
    yield from _cname_loops(origin, sets, by_name)


def _ancestors(
    owner: str, absolute: Mapping[str, dns.name.Name], origin: dns.name.Name
) -> Iterable[str]:
    """The names in the zone strictly above `owner`, apex included, relative."""
    name = absolute[owner]
    while name != origin and len(name) > len(origin):
        name = name.parent()
        relative = name.relativize(origin)
        yield "" if relative == dns.name.empty else relative.to_text().lower()


def _relative(origin: dns.name.Name, name: dns.name.Name) -> str | None:
    """`name` relative to the zone, or None when it is outside."""
    if not name.is_subdomain(origin):
        return None
    relative = name.relativize(origin)
    return "" if relative == dns.name.empty else relative.to_text().lower()


def _target_problems(
    zone: str,
    origin: dns.name.Name,
    sets: Mapping[RRSetKey, RRSetData],
    by_name: Mapping[str, Mapping[str, RRSetData]],
    cuts: set[str],
) -> Iterable[Problem]:
    for (owner, kind), data in sets.items():
        if kind not in ("NS", "MX", "SRV"):
            continue
        for i, text in enumerate(data.records):
            target = _target(origin, kind, text)
            if target is None or target == dns.name.root:
                continue
            inside = _relative(origin, target)
            if inside is None:
                continue
            cname = _cname_at(inside, by_name)
            if cname is not None:
                yield Problem(
                    (owner, kind),
                    f"records[{i}]",
                    f"{target} is a CNAME: an {kind} target must be the host's own name "
                    "(RFC 2181 §10.3)",
                    frozenset({(owner, kind), (cname, "CNAME")}),
                )
            if kind == "NS" and owner in cuts and (inside == owner or inside.endswith("." + owner)):
                kinds = by_name.get(inside, {})
                if not GLUE_TYPES & set(kinds):
                    yield Problem(
                        (owner, kind),
                        f"records[{i}]",
                        f"{target} is inside the delegated zone: add its A or AAAA (glue)",
                        frozenset({(owner, kind), (inside, "A"), (inside, "AAAA")}),
                    )


def _target(origin: dns.name.Name, kind: str, text: str) -> dns.name.Name | None:
    rdata = dns.rdata.from_text(
        dns.rdataclass.IN, dns.rdatatype.from_text(kind), text, origin=origin, relativize=False
    )
    if kind == "NS":
        return rdata.target  # type: ignore[attr-defined,no-any-return]
    if kind == "MX":
        return rdata.exchange  # type: ignore[attr-defined,no-any-return]
    return rdata.target  # type: ignore[attr-defined,no-any-return]


def _cname_at(inside: str, by_name: Mapping[str, Mapping[str, RRSetData]]) -> str | None:
    """The owner of the CNAME the name `inside` finds: its own, or, when the name does not
    exist (not even as an empty non-terminal), the wildcard at its closest encloser's
    (RFC 4592 §3.3.1)."""
    if inside in by_name:
        return inside if "CNAME" in by_name[inside] else None
    existing = _existing_names(by_name)
    if inside in existing:
        return None  # an empty non-terminal: no wildcard applies
    labels = inside.split(".") if inside else []
    for start in range(1, len(labels) + 1):
        closer = ".".join(labels[start:])
        if closer in existing:
            wildcard = f"*.{closer}" if closer else "*"
            return wildcard if "CNAME" in by_name.get(wildcard, {}) else None
    return None


def _existing_names(by_name: Mapping[str, object]) -> set[str]:
    """The names with data and every name above them in the zone (empty non-terminals)."""
    existing = {""}
    for owner in by_name:
        labels = owner.split(".") if owner else []
        existing.update(".".join(labels[i:]) for i in range(len(labels)))
    return existing


def _cname_loops(
    origin: dns.name.Name,
    sets: Mapping[RRSetKey, RRSetData],
    by_name: Mapping[str, Mapping[str, RRSetData]],
) -> Iterable[Problem]:
    for (owner, kind), data in sets.items():
        if kind != "CNAME" or not data.records:
            continue
        seen = [owner]
        here = owner
        for _ in range(CNAME_CHAIN_LIMIT):
            target = _target_name(origin, by_name[here]["CNAME"].records[0])
            inside = _relative(origin, target)
            if inside is None or "CNAME" not in by_name.get(inside, {}):
                break
            if inside in seen:
                yield Problem(
                    (owner, "CNAME"),
                    "records[0]",
                    "the CNAMEs loop: " + " → ".join([*(s or "@" for s in seen), inside or "@"]),
                    frozenset((s, "CNAME") for s in seen),
                )
                break
            seen.append(inside)
            here = inside


def _target_name(origin: dns.name.Name, text: str) -> dns.name.Name:
    rdata = dns.rdata.from_text(
        dns.rdataclass.IN, dns.rdatatype.CNAME, text, origin=origin, relativize=False
    )
    return rdata.target  # type: ignore[attr-defined,no-any-return]


def problems_as_errors(problems: Iterable[Problem], prefix: bool = False) -> list[FieldError]:
    """Zone problems as field errors: bare fields for one set's form, or prefixed with the set
    (``www/MX records[0]``) where many sets are checked at once (an import)."""
    out: list[FieldError] = []
    for problem in problems:
        where = problem.field
        if prefix:
            owner, kind = problem.key
            where = f"{owner or '@'}/{kind} {problem.field}"
        error = FieldError(where, problem.message)
        if error not in out:
            out.append(error)
    return out
