"""The built-in server's answers, wire in and wire out, read back with dnspython: each
authoritative semantic, the prepared-answer cache and its bound, the counters, and fuzzed input
that never makes it raise."""

from __future__ import annotations

import random
import struct

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.zone
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from abusedesk.dns.answers import Answerer, question_type, serial_gt

ZONE = """$TTL 3600
@ 3600 SOA ns1.provider.example. hostmaster.provider.example. 2026010101 3600 600 1209600 300
@ NS ns1.provider.example.
@ NS ns2.provider.example.
@ A 192.0.2.1
@ MX 10 mail
@ TXT "v=spf1 -all"
mail A 192.0.2.25
mail AAAA 2001:db8::25
www CNAME web
web A 192.0.2.80
web AAAA 2001:db8::80
alias CNAME www
ext CNAME www.example.net.
dangling CNAME nothing
loop1 CNAME loop2
loop2 CNAME loop1
sub NS ns.sub
sub NS ns.elsewhere.example.
sub DS 12345 13 2 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
ns.sub A 192.0.2.53
*.wild TXT "wildcard"
*.deep A 192.0.2.99
a.b.deep A 192.0.2.9
red DNAME example.net.
big TXT "{a}" "{b}"
big TXT "{c}"
big TXT "{d}"
""".format(a="a" * 200, b="b" * 200, c="c" * 200, d="d" * 200)


def make_zone(text: str = ZONE, origin: str = "example.com.") -> dns.zone.Zone:
    return dns.zone.from_text(text, origin)


@pytest.fixture
def answerer() -> Answerer:
    a = Answerer()
    a.publish({"example.com.": make_zone()})
    return a


def ask(
    a: Answerer, name: str, rdtype: str = "A", udp: bool = True, **kw: object
) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]
    query.flags &= ~dns.flags.RD
    wire = a.answer(query.to_wire(), udp=udp)
    assert wire is not None
    response = dns.message.from_wire(wire)
    assert response.id == query.id
    assert response.question == query.question
    return response


def texts(section: list) -> list[str]:
    return [
        f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)} {rd}"
        for rrset in section
        for rd in rrset
    ]


def test_a_positive_answer_is_authoritative(answerer: Answerer) -> None:
    r = ask(answerer, "web.example.com")
    assert r.rcode() == dns.rcode.NOERROR
    assert r.flags & dns.flags.AA
    assert texts(r.answer) == ["web.example.com. A 192.0.2.80"]
    assert r.answer[0].ttl == 3600
    assert not r.authority


def test_nxdomain_carries_the_soa_at_the_negative_ttl(answerer: Answerer) -> None:
    r = ask(answerer, "nope.example.com")
    assert r.rcode() == dns.rcode.NXDOMAIN
    assert r.flags & dns.flags.AA
    assert not r.answer
    assert [(s.name.to_text(), s.rdtype) for s in r.authority] == [
        ("example.com.", dns.rdatatype.SOA)
    ]
    assert r.authority[0].ttl == 300  # min(SOA TTL 3600, MINIMUM 300)


def test_the_negative_ttl_is_the_soa_ttl_when_smaller() -> None:
    a = Answerer()
    a.publish({"example.com.": make_zone(ZONE.replace("@ 3600 SOA", "@ 120 SOA"))})
    assert ask(a, "nope.example.com").authority[0].ttl == 120
    assert ask(a, "web.example.com", "TXT").authority[0].ttl == 120


def test_nodata_is_noerror_with_the_soa(answerer: Answerer) -> None:
    r = ask(answerer, "web.example.com", "TXT")
    assert r.rcode() == dns.rcode.NOERROR
    assert r.flags & dns.flags.AA
    assert not r.answer
    assert r.authority[0].rdtype == dns.rdatatype.SOA
    assert r.authority[0].ttl == 300


def test_a_cname_chain_is_followed_inside_the_zone(answerer: Answerer) -> None:
    r = ask(answerer, "alias.example.com", "AAAA")
    assert texts(r.answer) == [
        "alias.example.com. CNAME www.example.com.",
        "www.example.com. CNAME web.example.com.",
        "web.example.com. AAAA 2001:db8::80",
    ]
    assert r.rcode() == dns.rcode.NOERROR


def test_a_cname_out_of_the_zone_is_not_followed(answerer: Answerer) -> None:
    r = ask(answerer, "ext.example.com")
    assert texts(r.answer) == ["ext.example.com. CNAME www.example.net."]
    assert r.rcode() == dns.rcode.NOERROR
    assert not r.authority


def test_a_cname_to_nothing_is_nxdomain_with_the_cname(answerer: Answerer) -> None:
    r = ask(answerer, "dangling.example.com")
    assert r.rcode() == dns.rcode.NXDOMAIN  # RFC 6604: the last link's
    assert [s.rdtype for s in r.answer] == [dns.rdatatype.CNAME]
    assert r.authority[0].rdtype == dns.rdatatype.SOA


def test_a_cname_loop_ends(answerer: Answerer) -> None:
    r = ask(answerer, "loop1.example.com")
    assert r.rcode() == dns.rcode.NOERROR
    assert [s.name.to_text() for s in r.answer] == ["loop1.example.com.", "loop2.example.com."]


def test_a_cname_asked_for_itself_is_not_followed(answerer: Answerer) -> None:
    r = ask(answerer, "www.example.com", "CNAME")
    assert len(r.answer) == 1
    assert r.answer[0].rdtype == dns.rdatatype.CNAME


def test_a_delegation_gives_a_referral_with_glue(answerer: Answerer) -> None:
    for name in ("x.sub.example.com", "sub.example.com", "ns.sub.example.com"):
        r = ask(answerer, name)
        assert r.rcode() == dns.rcode.NOERROR
        assert not r.flags & dns.flags.AA, name
        assert not r.answer
        assert [(s.name.to_text(), s.rdtype) for s in r.authority] == [
            ("sub.example.com.", dns.rdatatype.NS)
        ]
        assert texts(r.additional) == ["ns.sub.example.com. A 192.0.2.53"]


def test_ds_at_a_delegation_is_answered_by_the_parent(answerer: Answerer) -> None:
    r = ask(answerer, "sub.example.com", "DS")
    assert r.flags & dns.flags.AA
    assert [s.rdtype for s in r.answer] == [dns.rdatatype.DS]


def test_mx_answers_carry_the_target_addresses(answerer: Answerer) -> None:
    r = ask(answerer, "example.com", "MX")
    assert sorted(texts(r.additional)) == [
        "mail.example.com. A 192.0.2.25",
        "mail.example.com. AAAA 2001:db8::25",
    ]


def test_a_wildcard_answers_names_that_do_not_exist(answerer: Answerer) -> None:
    r = ask(answerer, "Anything.Wild.example.com", "TXT")
    assert r.flags & dns.flags.AA
    assert r.rcode() == dns.rcode.NOERROR
    assert [s.name.to_text() for s in r.answer] == ["Anything.Wild.example.com."]
    assert texts(r.answer)[0].endswith('TXT "wildcard"')
    nodata = ask(answerer, "anything.wild.example.com", "A")
    assert nodata.rcode() == dns.rcode.NOERROR
    assert not nodata.answer
    assert nodata.authority[0].rdtype == dns.rdatatype.SOA
    deeper = ask(answerer, "a.b.c.wild.example.com", "TXT")  # covers more than one label
    assert deeper.answer[0].name.to_text() == "a.b.c.wild.example.com."


def test_an_empty_non_terminal_exists_and_blocks_the_wildcard(answerer: Answerer) -> None:
    assert texts(ask(answerer, "x.deep.example.com").answer) == ["x.deep.example.com. A 192.0.2.99"]
    ent = ask(answerer, "b.deep.example.com")  # exists (a.b.deep below it), without data
    assert ent.rcode() == dns.rcode.NOERROR
    assert not ent.answer
    assert ent.authority[0].rdtype == dns.rdatatype.SOA
    blocked = ask(answerer, "x.b.deep.example.com")  # closest encloser b.deep: no *.b.deep
    assert blocked.rcode() == dns.rcode.NXDOMAIN
    assert ask(answerer, "*.deep.example.com").answer[0].name.to_text() == "*.deep.example.com."


def test_a_dname_is_substituted(answerer: Answerer) -> None:
    r = ask(answerer, "foo.red.example.com")
    assert [s.rdtype for s in r.answer] == [dns.rdatatype.DNAME, dns.rdatatype.CNAME]
    assert texts(r.answer)[1] == "foo.red.example.com. CNAME foo.example.net."


def test_edns_is_echoed_with_our_payload_and_the_do_bit(answerer: Answerer) -> None:
    plain = ask(answerer, "web.example.com")
    assert plain.edns == -1
    r = ask(answerer, "web.example.com", use_edns=0, payload=4096, want_dnssec=True)
    assert r.edns == 0
    assert r.payload == 1232
    assert r.ednsflags & dns.flags.DO
    no_do = ask(answerer, "web.example.com", use_edns=0, payload=4096)
    assert not no_do.ednsflags & dns.flags.DO


def test_an_unknown_edns_version_gets_badvers(answerer: Answerer) -> None:
    r = ask(answerer, "web.example.com", use_edns=1)
    assert r.rcode() == dns.rcode.BADVERS
    assert r.edns == 0


def test_a_large_answer_is_truncated_over_udp_only(answerer: Answerer) -> None:
    small = ask(answerer, "big.example.com", "TXT")  # no EDNS: 512 bytes
    assert small.flags & dns.flags.TC
    assert not small.answer
    assert ask(answerer, "big.example.com", "TXT", use_edns=0, payload=512).flags & dns.flags.TC
    fits = ask(answerer, "big.example.com", "TXT", use_edns=0, payload=1232)
    assert not fits.flags & dns.flags.TC
    assert len(fits.answer[0]) == 3
    tcp = ask(answerer, "big.example.com", "TXT", udp=False)
    assert not tcp.flags & dns.flags.TC
    assert len(tcp.answer[0]) == 3


def test_a_payload_above_ours_is_capped() -> None:
    a = Answerer(udp_payload=600)
    a.publish({"example.com.": make_zone()})
    assert ask(a, "big.example.com", "TXT", use_edns=0, payload=4096).flags & dns.flags.TC


def test_names_outside_the_served_zones_are_refused(answerer: Answerer) -> None:
    for name in ("example.org", "com", "notexample.com", "."):
        r = ask(answerer, name)
        assert r.rcode() == dns.rcode.REFUSED, name
        assert not r.flags & dns.flags.AA
    assert answerer.refused == 4


def test_any_gets_one_record_set(answerer: Answerer) -> None:
    r = ask(answerer, "example.com", "ANY")
    assert len(r.answer) == 1
    assert r.flags & dns.flags.AA
    assert ask(answerer, "nope.example.com", "ANY").rcode() == dns.rcode.NXDOMAIN


def test_the_question_keeps_its_case_and_the_id_is_patched(answerer: Answerer) -> None:
    first = ask(answerer, "web.example.com")
    for name in ("WeB.eXample.COM", "WEB.EXAMPLE.COM", "web.example.com"):
        r = ask(answerer, name)  # ask() checks the ID and the question, case included
        assert r.question[0].name.to_text() == name + "."
        assert r.answer[0].name.to_text() == name + "."  # a pointer to the question
        assert texts(r.answer)[0].lower() == texts(first.answer)[0].lower()


def test_rd_and_cd_are_copied(answerer: Answerer) -> None:
    query = dns.message.make_query("web.example.com", "A")
    query.flags = dns.flags.RD | dns.flags.CD
    for _ in range(2):  # prepared, then replayed
        r = dns.message.from_wire(answerer.answer(query.to_wire()))  # type: ignore[arg-type]
        assert r.flags & dns.flags.RD
        assert r.flags & dns.flags.CD
        assert r.flags & dns.flags.AA
    query.flags = 0
    r = dns.message.from_wire(answerer.answer(query.to_wire()))  # type: ignore[arg-type]
    assert not r.flags & (dns.flags.RD | dns.flags.CD)


def test_malformed_and_other_opcodes() -> None:
    a = Answerer()
    a.publish({"example.com.": make_zone()})
    assert a.answer(b"\x12\x34") is None
    query = dns.message.make_query("web.example.com", "A")
    response = dns.message.make_response(query).to_wire()
    assert a.answer(response) is None  # never answer a response
    garbage = a.answer(b"\x12\x34\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05abc")
    assert garbage is not None
    r = dns.message.from_wire(garbage)
    assert r.id == 0x1234
    assert r.rcode() == dns.rcode.FORMERR
    two = dns.message.make_query("web.example.com", "A")
    two.question.append(two.question[0])
    assert dns.message.from_wire(a.answer(two.to_wire())).rcode() == dns.rcode.FORMERR  # type: ignore[arg-type]
    notify = dns.message.make_query("example.com", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    r = dns.message.from_wire(a.answer(notify.to_wire()))  # type: ignore[arg-type]
    assert r.rcode() == dns.rcode.NOTIMP
    assert r.opcode() == dns.opcode.NOTIFY
    assert ask(a, "example.com", "AXFR").rcode() == dns.rcode.REFUSED  # the server's, on TCP
    assert ask(a, "example.com", "MAILB").rcode() == dns.rcode.NOTIMP
    assert ask(a, "example.com", "A", rdclass="CH").rcode() == dns.rcode.REFUSED
    assert a.internal_errors == 0


def test_a_compressed_question_takes_the_slow_path_and_the_same_answer(answerer: Answerer) -> None:
    # header, then "web.example.com" A IN, with a second copy of the name compressed into the
    # question of a hand-made message: QDCOUNT 1, the name written as a pointer is not possible
    # at offset 12, so a query with an EDNS option (a cookie) stands for the slow path instead.
    query = dns.message.make_query("web.example.com", "A", use_edns=0, payload=1232)
    query.use_edns(0, 0, 1232, options=[dns.edns.GenericOption(10, b"\x01" * 8)])
    r = dns.message.from_wire(answerer.answer(query.to_wire()))  # type: ignore[arg-type]
    assert texts(r.answer) == ["web.example.com. A 192.0.2.80"]
    trailing = dns.message.make_query("web.example.com", "A").to_wire() + b"\x00"
    assert dns.message.from_wire(answerer.answer(trailing)).rcode() == dns.rcode.FORMERR  # type: ignore[arg-type]


def test_question_type() -> None:
    assert question_type(dns.message.make_query("example.com", "AXFR").to_wire()) == 252
    assert question_type(b"\x00" * 12) is None
    assert question_type(b"") is None


def test_serial_arithmetic() -> None:
    assert serial_gt(2, 1)
    assert serial_gt(0, 2**32 - 1)  # wraps (RFC 1982)
    assert not serial_gt(1, 2)
    assert not serial_gt(5, 5)


def test_a_random_subdomain_flood_does_not_grow_the_cache() -> None:
    a = Answerer(cache_size=40)
    a.publish({"example.com.": make_zone()})
    rng = random.Random(7)
    for i in range(800):
        label = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(12))
        assert ask(a, f"{label}.example.com").rcode() == dns.rcode.NXDOMAIN
        assert ask(a, f"{label}.wild.example.com", "TXT").answer  # wildcard: not cached
        ask(a, "web.example.com", dns.rdatatype.to_text(1000 + i))  # NODATA per type: cached
    assert a.cached() <= 3 * 40
    counted = a.counters()["example.com."]
    assert counted.nxdomain == 800
    assert counted.queries == 2400


def test_counters_by_zone_and_type(answerer: Answerer) -> None:
    second = Answerer()
    second.publish({"example.com.": make_zone(), "example.net.": make_zone(origin="example.net.")})
    for _ in range(3):
        ask(second, "web.example.com")
        ask(second, "web.example.com", use_edns=0)
    ask(second, "web.example.com", "AAAA")
    ask(second, "nope.example.net")
    ask(second, "nope.example.net", "MX")
    ask(second, "example.org")  # refused: nobody's
    counted = second.counters()
    assert counted["example.com."].queries == 7
    assert counted["example.com."].by_type == {"A": 6, "AAAA": 1}
    assert counted["example.com."].nxdomain == 0
    assert counted["example.net."].queries == 2
    assert counted["example.net."].nxdomain == 2
    assert counted["example.net."].by_type == {"A": 1, "MX": 1}


def test_publish_swaps_zones_and_reports_serials_that_went_up() -> None:
    a = Answerer()
    zone = make_zone()
    assert a.publish({"example.com.": zone}) == ["example.com."]
    ask(a, "web.example.com")
    assert a.cached() > 0
    assert a.publish({"example.com.": zone}) == []  # the same version: answers kept
    assert a.cached() > 0
    changed = make_zone(
        ZONE.replace("2026010101", "2026010102").replace("192.0.2.80", "192.0.2.81")
    )
    assert a.publish({"example.com.": changed}) == ["example.com."]
    assert texts(ask(a, "web.example.com").answer) == ["web.example.com. A 192.0.2.81"]
    assert a.publish({"example.net.": make_zone(origin="example.net.")}) == ["example.net."]
    assert ask(a, "web.example.com").rcode() == dns.rcode.REFUSED
    assert "example.com." not in a.counters()
    with pytest.raises(ValueError, match="no SOA"):
        a.publish({"example.org.": dns.zone.Zone("example.org.")})


def test_a_served_child_zone_answers_for_its_names() -> None:
    a = Answerer()
    child = dns.zone.from_text(
        "@ 300 SOA ns1.provider.example. h.provider.example. 1 2 3 4 60\n"
        "@ 300 NS ns1.provider.example.\nx 300 A 198.51.100.1\n",
        "child.example.com.",
    )
    a.publish({"example.com.": make_zone(), "child.example.com.": child})
    assert texts(ask(a, "x.child.example.com").answer) == ["x.child.example.com. A 198.51.100.1"]
    assert ask(a, "y.child.example.com").authority[0].name.to_text() == "child.example.com."


VALID = [
    dns.message.make_query(name, rdtype, **kw).to_wire()  # type: ignore[arg-type]
    for name, rdtype, kw in [
        ("web.example.com", "A", {}),
        ("WWW.example.com", "AAAA", {"use_edns": 0}),
        ("nope.example.com", "MX", {"use_edns": 0, "want_dnssec": True}),
        ("x.sub.example.com", "A", {}),
        ("q.wild.example.com", "TXT", {"use_edns": 0, "payload": 512}),
        ("big.example.com", "TXT", {}),
        ("example.org", "A", {}),
    ]
]


def check_never_raises(a: Answerer, wire: bytes) -> None:
    for udp in (True, False):
        response = a.answer(wire, udp=udp)
        if response is not None:
            assert len(response) >= 12
            assert response[:2] == wire[:2]
            dns.message.from_wire(response)  # well formed whatever came in
            if udp:
                assert len(response) <= 1232
    assert a.internal_errors == 0


FUZZED = Answerer(cache_size=64)
FUZZED.publish({"example.com.": make_zone()})


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_random_bytes_never_raise(wire: bytes) -> None:
    check_never_raises(FUZZED, wire)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(VALID),
    st.lists(st.tuples(st.integers(0, 600), st.integers(0, 255)), max_size=6),
    st.integers(0, 600),
    st.binary(max_size=20),
)
def test_fuzz_mutated_queries_never_raise(
    base: bytes, flips: list[tuple[int, int]], cut: int, extra: bytes
) -> None:
    wire = bytearray(base)
    for pos, value in flips:
        if pos < len(wire):
            wire[pos] = value
    mutated = bytes(wire[: max(cut, 12)]) + extra if cut < len(wire) else bytes(wire) + extra
    check_never_raises(FUZZED, mutated)


def test_every_opt_shape_and_qtype_reads(answerer: Answerer) -> None:
    base = dns.message.make_query("web.example.com", "A").to_wire()
    for qtype in (0, 1, 41, 65, 97, 250, 251, 252, 253, 255, 65535):
        wire = base[:-4] + struct.pack("!HH", qtype, 1)
        check_never_raises(answerer, wire)
        opt = b"\x00\x00\x29\x02\x00\x00\x00\x80\x00\x00\x00"
        check_never_raises(answerer, wire[:11] + b"\x01" + wire[12:] + opt)
