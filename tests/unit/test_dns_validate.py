"""The rules of a customer's zone (issue 7), each accepted and refused: zone names, owner names,
types, TTLs, the records of every type, the rules between sets, and a fuzzed parser that lets
no exception but FieldErrors out."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from abusedesk.dns import validate
from abusedesk.dns.serial import next_serial, serial_gt
from abusedesk.dns.service import read_zone_file
from abusedesk.dns.settings import DnsSettings
from abusedesk.dns.validate import RRSetData, check_zone, rrset, subname, zone_name
from abusedesk.errors import FieldErrors

DNS = DnsSettings()
ZONE = "shop-example.net"
REVERSE = "12.44.185.in-addr.arpa"


def refused(call: Callable[..., object], *args: object, **kwargs: object) -> dict[str, list[str]]:
    with pytest.raises(FieldErrors) as exc:
        call(*args, **kwargs)
    return exc.value.by_field()


def one(owner: str, rtype: str, *records: str, ttl: int | None = 300, zone: str = ZONE):
    return rrset(zone, owner, rtype, ttl, list(records), DNS)


def zone_of(*sets: RRSetData) -> dict[tuple[str, str], RRSetData]:
    return {s.key: s for s in sets}


def messages(problems: Iterable[validate.Problem]) -> list[str]:
    return [p.message for p in problems]


# -- zone names -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_name", "canonical"),
    [
        ("Shop-Example.NET.", "shop-example.net"),
        ("  shop.example.co.uk ", "shop.example.co.uk"),
        ("bücher-laden.de", "xn--bcher-laden-thb.de"),
        ("x.github.io", "x.github.io"),  # under a private-section suffix: a customer's own
        ("12.44.185.in-addr.arpa", "12.44.185.in-addr.arpa"),
        ("44.185.in-addr.arpa", "44.185.in-addr.arpa"),
        ("2.1.0.0.0.c.5.e.a.0.a.2.ip6.arpa", "2.1.0.0.0.c.5.e.a.0.a.2.ip6.arpa"),
    ],
)
def test_zone_names_accepted(given_name: str, canonical: str) -> None:
    assert zone_name(given_name) == canonical


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("", "give the zone's name"),
        (".", "root zone"),
        ("net", "top-level domain"),
        ("localhost", "top-level domain"),
        ("www.localhost", "special-use"),
        ("shop.test", "special-use"),
        ("example.com", "special-use"),
        ("a.b.example.org", "special-use"),
        ("printer.local", "special-use"),
        ("hidden.onion", "special-use"),
        ("box.home.arpa", "special-use"),
        ("x.invalid", "special-use"),
        ("x.alt", "special-use"),
        ("corp.internal", "special-use"),
        ("co.uk", "public suffix"),
        ("github.io", "public suffix"),  # the list's private section
        ("blogspot.com", "public suffix"),
        ("shop.nosuchtld", "not a known top-level domain"),
        ("under_score.net", "letters, digits and hyphens"),
        ("-lead.net", "letters, digits and hyphens"),
        ("a" * 64 + ".net", "not a domain name"),
        ("a.b.c.d.e.f.g.h.i.j.k.net", "at most 10 labels"),
        ("e164.arpa", "only reverse zones"),
        ("in-addr.arpa", "one to four octets"),
        ("300.1.in-addr.arpa", "one to four octets"),
        ("1.2.3.4.5.in-addr.arpa", "one to four octets"),
        ("10.in-addr.arpa", "not global unicast"),
        ("168.192.in-addr.arpa", "not global unicast"),
        ("127.in-addr.arpa", "not global unicast"),
        ("2.0.192.in-addr.arpa", "not global unicast"),  # documentation
        ("8.b.d.0.1.0.0.2.ip6.arpa", "not global unicast"),  # documentation
        ("d.f.ip6.arpa", "not global unicast"),  # unique local
        ("g.ip6.arpa", "hexadecimal nibbles"),
    ],
)
def test_zone_names_refused(bad: str, why: str) -> None:
    assert why in refused(zone_name, bad)["name"][0]


def test_reverse_network() -> None:
    assert str(validate.reverse_network(REVERSE)) == "185.44.12.0/24"
    assert str(validate.reverse_network("2.1.0.0.0.c.5.e.a.0.a.2.ip6.arpa")) == "2a0a:e5c0:12::/48"


# -- owner names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_name", "canonical"),
    [
        ("", ""),
        ("@", ""),
        (f"{ZONE}.", ""),
        ("WWW", "www"),
        ("www.shop-example.net.", "www"),
        ("_dmarc", "_dmarc"),
        ("*", "*"),
        ("*.dev", "*.dev"),
        ("a.b.c", "a.b.c"),
    ],
)
def test_owner_names_accepted(given_name: str, canonical: str) -> None:
    assert subname(ZONE, given_name) == canonical


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("www.other.org.", "not inside the zone"),
        ("a*.dev", "wildcard"),
        ("dev.*", "wildcard"),
        ("*.*", "wildcard"),
        ("a" * 64, "63 octets"),
        (".".join(["a" * 60] * 4), "255 octets"),
        ("sp ace", "may hold letters"),
        ("-x", "may hold letters"),
        ("a..b", "not a name"),
    ],
)
def test_owner_names_refused(bad: str, why: str) -> None:
    assert why in refused(subname, ZONE, bad)["subname"][0]


# -- one set --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("owner", "rtype", "records", "stored"),
    [
        ("www", "a", ["192.0.2.1", "192.0.2.2"], ["192.0.2.1", "192.0.2.2"]),
        ("www", "AAAA", ["2001:DB8::1"], ["2001:db8::1"]),
        ("www", "CNAME", ["shop.example.org."], ["shop.example.org."]),
        ("@", "MX", ["10 mail", "20 mx.example.org."], [f"10 mail.{ZONE}.", "20 mx.example.org."]),
        ("@", "MX", ["0 ."], ["0 ."]),  # null MX, RFC 7505
        ("@", "TXT", ['"v=spf1 -all"'], ['"v=spf1 -all"']),
        ("@", "TXT", ['"' + "a" * 255 + '" "b"'], ['"' + "a" * 255 + '" "b"']),
        ("_sip._tcp", "SRV", ["0 5 5060 sip"], [f"0 5 5060 sip.{ZONE}."]),
        ("@", "CAA", ['0 issue "letsencrypt.org"'], ['0 issue "letsencrypt.org"']),
        ("lab", "NS", ["ns.example.org."], ["ns.example.org."]),
        ("lab", "DS", ["12345 13 2 " + "ab" * 32], ["12345 13 2 " + "ab" * 32]),
        ("old", "DNAME", ["new.example.org."], ["new.example.org."]),
        ("_443._tcp.www", "TLSA", ["3 1 1 " + "cd" * 32], ["3 1 1 " + "cd" * 32]),
        ("www", "SSHFP", ["4 2 " + "ef" * 32], ["4 2 " + "ef" * 32]),
        ("@", "HTTPS", ["1 . alpn=h2"], ['1 . alpn="h2"']),
        ("_x.www", "SVCB", ["1 svc.example.org."], ["1 svc.example.org."]),
        ("*.dev", "A", ["192.0.2.9"], ["192.0.2.9"]),
        ("www", "A", ["\\# 4 c0000201"], ["192.0.2.1"]),  # RFC 3597 form
    ],
)
def test_record_sets_accepted_and_made_canonical(
    owner: str, rtype: str, records: list[str], stored: list[str]
) -> None:
    data = one(owner, rtype, *records)
    assert list(data.records) == stored
    assert data.type == rtype.upper()


def test_ptr_only_in_reverse_zones() -> None:
    assert one("7", "PTR", "mail.example.org.", zone=REVERSE).records == ("mail.example.org.",)
    assert "reverse zones" in refused(one, "7", "PTR", "mail.example.org.")["type"][0]


@pytest.mark.parametrize(
    ("owner", "rtype", "records", "field", "why"),
    [
        ("@", "SOA", ["a. b. 1 2 3 4 5"], "type", "provider's"),
        ("@", "NS", ["ns.example.org."], "type", "provider's"),
        ("", "CNAME", ["x.example.org."], "type", "apex"),
        ("@", "DS", ["12345 13 2 " + "ab" * 32], "type", "below the apex"),
        ("*", "NS", ["ns.example.org."], "type", "wildcard"),
        ("*.x", "DNAME", ["y.example.org."], "type", "wildcard"),
        ("sip", "SRV", ["0 5 5060 sip"], "type", "_service._proto"),
        ("www", "TLSA", ["3 1 1 " + "cd" * 32], "type", "_port._proto"),
        ("www", "HINFO", ['"pc" "dos"'], "type", "not offered"),
        ("www", "BOGUS", ["x"], "type", "not a record type"),
        ("www", "A", ["192.0.2.300"], "records[0]", "not a valid A record"),
        ("www", "A", ["192.0.2.1 extra"], "records[0]", "not a valid A record"),
        ("www", "A", ["192.0.2.1", "192.0.2.1"], "records[1]", "repeats records[0]"),
        ("www", "AAAA", ["192.0.2.1"], "records[0]", "not a valid AAAA record"),
        ("www", "CNAME", ["a.example.org.", "b.example.org."], "records", "one CNAME"),
        ("www", "CNAME", ["www"], "records[0]", "its own name"),
        ("old", "DNAME", ["x.old"], "records[0]", "below itself"),
        ("@", "MX", ["mail"], "records[0]", "not a valid MX record"),
        ("@", "MX", ["0 .", "10 mail"], "records", "null MX"),
        ("@", "MX", ["10 " + "a" * 64], "records[0]", "63 octets"),
        ("@", "MX", ["10 " + ("a" * 60 + ".") * 5], "records[0]", "255 octets"),
        ("@", "TXT", ['"' + "a" * 256 + '"'], "records[0]", "255 octets"),
        ("lab", "NS", ["."], "records[0]", "root"),
        ("@", "CAA", ['0 is-sue "x"'], "records[0]", "not a valid CAA record"),
        ("www", "A", [""], "records[0]", "empty"),
        ("www", "A", ["192.0.2.1\n192.0.2.2"], "records[0]", "one line"),
        ("www", "A", ["1" * 5000], "records[0]", "at most"),
        ("www", "A", [], "records", "at least one"),
    ],
)
def test_record_sets_refused(
    owner: str, rtype: str, records: list[str], field: str, why: str
) -> None:
    found = refused(one, owner, rtype, *records)
    assert field in found, found
    assert any(why in message for message in found[field]), found


@pytest.mark.parametrize(
    ("ttl", "ok"),
    [(60, True), (86400, True), ("300", True), (59, False), (86401, False), (-1, False)],
)
def test_ttl_within_the_provider_bounds(ttl: object, ok: bool) -> None:
    if ok:
        assert one("www", "A", "192.0.2.1", ttl=ttl).ttl == int(ttl)  # type: ignore[arg-type]
    else:
        assert "from 60 to 86400" in refused(one, "www", "A", "192.0.2.1", ttl=ttl)["ttl"][0]


def test_ttl_never_past_rfc_2181_whatever_the_settings() -> None:
    wide = DnsSettings(min_ttl=0, max_ttl=2**31 - 1)
    assert rrset(ZONE, "www", "A", 0, ["192.0.2.1"], wide).ttl == 0
    assert rrset(ZONE, "www", "A", 2**31 - 1, ["192.0.2.1"], wide).ttl == 2**31 - 1
    assert "ttl" in refused(rrset, ZONE, "www", "A", 2**31, ["192.0.2.1"], wide)
    assert "ttl" in refused(rrset, ZONE, "www", "A", True, ["192.0.2.1"], wide)
    assert "ttl" in refused(rrset, ZONE, "www", "A", "soon", ["192.0.2.1"], wide)


def test_default_ttl_and_record_cap() -> None:
    assert one("www", "A", "192.0.2.1", ttl=None).ttl == DNS.default_ttl
    many = [f"192.0.2.{n}" for n in range(1, 102)]
    assert "at most 100" in refused(one, "www", "A", *many)["records"][0]


def test_every_error_of_a_set_at_once() -> None:
    found = refused(rrset, ZONE, "a*", "A", 5, ["192.0.2.1", "x", "192.0.2.1"], DNS)
    assert set(found) == {"subname", "ttl", "records[1]", "records[2]"}


# -- the zone as a whole --------------------------------------------------------------------


def test_cname_alone_at_its_name() -> None:
    cname = one("www", "CNAME", "shop.example.org.")
    txt = one("www", "TXT", '"x"')
    problems = check_zone(ZONE, zone_of(cname, txt), DNS)
    assert messages(problems) == ["www has a CNAME: a CNAME is alone at its name (RFC 2181 §10.1)"]
    assert problems[0].key == ("www", "TXT")
    # Reported on the set being changed, whichever it is.
    focused = check_zone(ZONE, zone_of(cname, txt), DNS, focus={("www", "CNAME")})
    assert focused[0].key == ("www", "CNAME")
    assert check_zone(ZONE, zone_of(cname, one("web", "TXT", '"x"')), DNS) == []


@pytest.mark.parametrize("rtype", ["NS", "MX", "SRV"])
def test_targets_are_not_cnames(rtype: str) -> None:
    alias = one("alias", "CNAME", "host.example.org.")
    owner, record = {
        "NS": ("lab", "alias"),
        "MX": ("@", "10 alias"),
        "SRV": ("_sip._tcp", "0 5 5060 alias"),
    }[rtype]
    problems = check_zone(ZONE, zone_of(alias, one(owner, rtype, record)), DNS)
    assert any("is a CNAME" in m for m in messages(problems))
    host = one("host", "A", "192.0.2.1")
    fine = one(owner, rtype, record.replace("alias", "host"))
    assert check_zone(ZONE, zone_of(alias, host, fine), DNS) == []


def test_a_wildcard_cname_counts_for_targets_without_data() -> None:
    wild = one("*.cdn", "CNAME", "edge.example.org.")
    problems = check_zone(ZONE, zone_of(wild, one("@", "MX", "10 mx.cdn")), DNS)
    assert any("is a CNAME" in m for m in messages(problems))


def test_cname_loops_are_refused() -> None:
    sets = zone_of(one("a", "CNAME", "b"), one("b", "CNAME", "c"), one("c", "CNAME", "a"))
    assert any("loop" in m for m in messages(check_zone(ZONE, sets, DNS)))
    chain = zone_of(one("a", "CNAME", "b"), one("b", "CNAME", "c"), one("c", "A", "192.0.2.1"))
    assert check_zone(ZONE, chain, DNS) == []


def test_dname_rules() -> None:
    dname = one("old", "DNAME", "new.example.org.")
    assert check_zone(ZONE, zone_of(dname, one("old", "A", "192.0.2.1")), DNS) == []
    beside = check_zone(ZONE, zone_of(dname, one("old", "CNAME", "x.example.org.")), DNS)
    assert any("no DNAME beside it" in m for m in messages(beside))
    below = check_zone(ZONE, zone_of(dname, one("www.old", "A", "192.0.2.1")), DNS)
    assert any("nothing exists below it" in m for m in messages(below))


def test_delegations_glue_and_occlusion() -> None:
    ns = one("lab", "NS", "ns1.lab", "ns.example.org.")
    glue = one("ns1.lab", "A", "192.0.2.53")
    assert any("glue" in m for m in messages(check_zone(ZONE, zone_of(ns), DNS)))
    assert check_zone(ZONE, zone_of(ns, glue), DNS) == []
    occluded = check_zone(ZONE, zone_of(ns, glue, one("www.lab", "TXT", '"x"')), DNS)
    assert any("below it only glue" in m for m in messages(occluded))
    beside = check_zone(ZONE, zone_of(ns, glue, one("lab", "MX", "10 mx.example.org.")), DNS)
    assert any("only NS, DS and glue" in m for m in messages(beside))
    ds = one("lab", "DS", "12345 13 2 " + "ab" * 32)
    assert check_zone(ZONE, zone_of(ns, glue, ds), DNS) == []
    lonely = check_zone(ZONE, zone_of(ds), DNS)
    assert any("beside NS records" in m for m in messages(lonely))


def test_rrset_cap_per_zone() -> None:
    small = DnsSettings(max_rrsets_per_zone=2)
    sets = zone_of(*(one(name, "A", "192.0.2.1") for name in ("a", "b", "c")))
    problems = check_zone(ZONE, sets, small, focus={("c", "A")})
    assert [p.key for p in problems] == [("c", "A")]
    assert "at most 2 record sets" in problems[0].message


def test_focus_leaves_old_problems_out() -> None:
    sets = zone_of(one("www", "CNAME", "x.example.org."), one("www", "TXT", '"x"'))
    sets[("mail", "A")] = one("mail", "A", "192.0.2.1")
    assert check_zone(ZONE, sets, DNS, focus={("mail", "A")}) == []


def test_problems_as_errors_prefixed_for_an_import() -> None:
    problems = check_zone(ZONE, zone_of(one("@", "MX", "10 a"), one("a", "CNAME", "b.org.")), DNS)
    errors = validate.problems_as_errors(problems, prefix=True)
    assert [e.field for e in errors] == ["@/MX records[0]"]


# -- serials --------------------------------------------------------------------------------


def test_serials_follow_rfc_1982() -> None:
    assert serial_gt(1, 0)
    assert serial_gt(0, 2**32 - 1)  # wrapped
    assert not serial_gt(2**31, 0)  # undefined: neither after
    day = date(2026, 3, 2)
    assert next_serial(0, day) == 2026030200
    assert next_serial(2026030200, day) == 2026030201
    assert next_serial(2026030299, day) == 2026030300  # past 99 changes: still after
    assert next_serial(2026030105, day) == 2026030200  # a new day
    assert next_serial(4000000000, day) == 4000000001  # set far ahead elsewhere
    assert next_serial(2**32 - 1, day) == 2026030200  # wrapped: the dated form is after
    for current in (0, 1, 2026030200, 2**31, 2**32 - 1, 4000000000):
        assert serial_gt(next_serial(current, day), current)


# -- fuzzed: nothing but FieldErrors escapes ------------------------------------------------

_TYPES = st.sampled_from(
    sorted(validate.CUSTOMER_TYPES | {"SOA", "HINFO", "TYPE65534", "", "a", "Mx", "NOPE"})
)
_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=80
) | st.from_regex(r"[0-9a-z .\\\"();*@_-]{0,60}", fullmatch=True)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    owner=_TEXT,
    rtype=_TYPES,
    ttl=st.one_of(st.none(), st.integers(), _TEXT),
    records=st.lists(_TEXT, max_size=4),
)
def test_fuzzed_record_sets_raise_only_field_errors(
    owner: str, rtype: str, ttl: object, records: list[str]
) -> None:
    try:
        data = rrset(ZONE, owner, rtype, ttl, records, DNS)
    except FieldErrors as exc:
        errors = exc.errors
    else:
        errors = []
    if errors:
        return
    # What passes is stable: its canonical text reads back to itself.
    again = rrset(ZONE, data.subname or "@", data.type, data.ttl, list(data.records), DNS)
    assert again == data
    check_zone(ZONE, {data.key: data}, DNS)


@settings(max_examples=300, deadline=None)
@given(name=_TEXT)
def test_fuzzed_zone_names_raise_only_field_errors(name: str) -> None:
    try:
        canonical = zone_name(name)
    except FieldErrors as exc:
        fields = {e.field for e in exc.errors}
    else:
        fields = set()
    if fields:
        assert fields == {"name"}
        return
    assert zone_name(canonical) == canonical


_LINE = st.from_regex(
    r"(\$ORIGIN [a-z.-]{0,20}|\$TTL [0-9a-z]{0,6}|[a-z*@_.-]{0,12} ([0-9]{1,6} )?(IN )?"
    r"(A|AAAA|MX|TXT|CNAME|NS|SRV|CAA|SOA|PTR|HINFO|TYPE99) [0-9a-z .\"();\\-]{0,30})",
    fullmatch=True,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(_LINE | _TEXT, max_size=8))
def test_fuzzed_zone_files_raise_only_field_errors(lines: list[str]) -> None:
    try:
        sets, _notes = read_zone_file(ZONE, "\n".join(lines) + "\n", DNS)
    except FieldErrors as exc:
        errors = exc.errors
    else:
        errors = []
    if errors:
        return
    for data in sets.values():
        assert (
            rrset(ZONE, data.subname or "@", data.type, data.ttl, list(data.records), DNS) == data
        )
