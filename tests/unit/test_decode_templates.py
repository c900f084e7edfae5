"""NetFlow v9 and IPFIX templates, built here: compile once, refresh, expire, withdraw, hold data
that comes early, variable-length and enterprise fields, reduced-size and odd encodings, times,
both address families, sampling from options records, and NetFlow v5."""

from __future__ import annotations

import ipaddress
import struct

import numpy as np
import pytest

from abusedesk.traffic.choices import Direction, FlowFormat
from abusedesk.traffic.decode import (
    FLOW_DTYPE,
    BadVersion,
    DecodeErrorKind,
    FlowDecoder,
    Malformed,
    TemplateCache,
    Truncated,
    UnknownTemplate,
    address_text,
    detect,
    ipfix,
    netflow_v5,
    netflow_v9,
)
from tests.flow_fixtures import (
    ipfix_message,
    ipfix_options_template,
    ipfix_set,
    ipfix_template,
    v9_datagram,
    v9_options_template,
    varlen,
)

EXPORTER = "192.0.2.1"
V4_FIELDS = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (6, 1), (2, 4), (1, 4), (152, 8), (153, 8)]


def v4_record(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    proto: int = 6,
    flags: int = 0x12,
    packets: int = 3,
    octets: int = 180,
    start: int = 1_700_000_000_000,
    end: int = 1_700_000_001_000,
) -> bytes:
    return (
        ipaddress.IPv4Address(src).packed
        + ipaddress.IPv4Address(dst).packed
        + struct.pack("!HHBBIIQQ", sport, dport, proto, flags, packets, octets, start, end)
    )


def text(flows: np.ndarray, i: int, side: str) -> str:
    row = flows[i]
    return address_text(row[f"{side}_hi"], row[f"{side}_lo"], row["ip_version"])


def test_ipfix_template_then_data_in_one_message() -> None:
    message = ipfix_message(
        [
            ipfix_set(2, ipfix_template(300, V4_FIELDS)),
            ipfix_set(
                300,
                v4_record("198.51.100.7", "203.0.113.9", 40000, 25)
                + v4_record("198.51.100.7", "203.0.113.10", 40001, 25),
            ),
        ]
    )
    result = FlowDecoder().decode(message, EXPORTER, now=0.0)
    assert result.format is FlowFormat.IPFIX
    assert result.templates == 1
    flows = result.flows
    assert flows.dtype == FLOW_DTYPE
    assert [text(flows, i, "dst") for i in range(2)] == ["203.0.113.9", "203.0.113.10"]
    assert text(flows, 0, "src") == "198.51.100.7"
    assert flows["src_lo"][0] & 0xFFFF_FFFF == int(ipaddress.IPv4Address("198.51.100.7"))
    assert flows["src_lo"][0] >> 32 == 0xFFFF  # IPv4-mapped
    assert list(flows["dst_port"]) == [25, 25]
    assert list(flows["packets"]) == [3, 3]
    assert list(flows["bytes"]) == [180, 180]
    assert list(flows["tcp_flags"]) == [0x12, 0x12]
    assert list(flows["first_ms"]) == [1_700_000_000_000] * 2
    assert list(flows["last_ms"]) == [1_700_000_001_000] * 2
    assert list(flows["sampling_rate"]) == [0, 0]  # nobody said


def test_data_before_template_is_held_then_recovered() -> None:
    decoder = FlowDecoder()
    data = ipfix_message([ipfix_set(300, v4_record("192.0.2.7", "192.0.2.8", 1, 2))])
    early = decoder.decode(data, EXPORTER, now=10.0)
    assert early.flows.shape == (0,)
    [problem] = early.problems
    assert isinstance(problem, UnknownTemplate)
    assert problem.kind is DecodeErrorKind.UNKNOWN_TEMPLATE
    assert (problem.template_id, problem.held) == (300, True)
    later = decoder.decode(
        ipfix_message([ipfix_set(2, ipfix_template(300, V4_FIELDS))]), EXPORTER, now=11.0
    )
    assert later.recovered == 1
    assert text(later.flows, 0, "src") == "192.0.2.7"
    # The other exporter's template does not serve this one's data.
    again = decoder.decode(data, "198.51.100.1", now=12.0)
    assert again.flows.shape == (0,)
    assert again.problems


def test_hold_is_bounded() -> None:
    decoder = FlowDecoder(TemplateCache(hold_sets=2, hold_s=60.0))
    data = ipfix_message([ipfix_set(300, v4_record("192.0.2.7", "192.0.2.8", 1, 2))])
    held = [decoder.decode(data, EXPORTER, now=float(i)).problems[0].held for i in range(3)]
    assert held == [True, True, False]
    later = decoder.decode(
        ipfix_message([ipfix_set(2, ipfix_template(300, V4_FIELDS))]), EXPORTER, now=100.0
    )
    assert later.recovered == 0  # too old by then


def test_template_refresh_reuses_the_compiled_template_and_changes_recompile() -> None:
    cache = TemplateCache()
    decoder = FlowDecoder(cache)
    definition = ipfix_set(2, ipfix_template(300, V4_FIELDS))
    decoder.decode(ipfix_message([definition]), EXPORTER, now=0.0)
    state = cache.domain(EXPORTER, 10, 1)
    first = state.templates[300]
    decoder.decode(ipfix_message([definition]), EXPORTER, now=5.0)
    assert state.templates[300] is first
    assert first.refreshed == 5.0
    decoder.decode(
        ipfix_message([ipfix_set(2, ipfix_template(300, [(8, 4), (12, 4)]))]), EXPORTER, now=6.0
    )
    assert state.templates[300] is not first
    result = decoder.decode(
        ipfix_message([ipfix_set(300, bytes([10, 0, 0, 1, 10, 0, 0, 2]))]), EXPORTER, now=7.0
    )
    assert text(result.flows, 0, "dst") == "10.0.0.2"


def test_templates_expire() -> None:
    decoder = FlowDecoder(TemplateCache(ttl_s=60.0))
    decoder.decode(ipfix_message([ipfix_set(2, ipfix_template(300, V4_FIELDS))]), EXPORTER, 0.0)
    data = ipfix_message([ipfix_set(300, v4_record("192.0.2.7", "192.0.2.8", 1, 2))])
    assert decoder.decode(data, EXPORTER, now=59.0).flows.shape == (1,)
    late = decoder.decode(data, EXPORTER, now=61.0)
    assert late.flows.shape == (0,)
    assert isinstance(late.problems[0], UnknownTemplate)
    decoder.decode(ipfix_message([ipfix_set(2, ipfix_template(301, V4_FIELDS))]), EXPORTER, 0.0)
    assert decoder.cache.expire(now=1000.0) >= 1
    assert len(decoder.cache) == 0


def test_template_withdrawal() -> None:
    decoder = FlowDecoder()
    decoder.decode(ipfix_message([ipfix_set(2, ipfix_template(300, V4_FIELDS))]), EXPORTER, 0.0)
    decoder.decode(ipfix_message([ipfix_set(2, struct.pack("!HH", 300, 0))]), EXPORTER, 1.0)
    data = ipfix_message([ipfix_set(300, v4_record("192.0.2.7", "192.0.2.8", 1, 2))])
    assert decoder.decode(data, EXPORTER, now=2.0).flows.shape == (0,)


def test_variable_length_and_enterprise_fields() -> None:
    fields = [(8, 4), (96, 65535), (12, 4), (100, 2, 9), (7, 2), (82, 65535), (11, 2)]
    record_a = (
        bytes([10, 0, 0, 1])
        + varlen(b"http")
        + bytes([10, 0, 0, 2])
        + b"\xaa\xbb"
        + struct.pack("!H", 1234)
        + varlen(b"x" * 300)
        + struct.pack("!H", 80)
    )
    record_b = (
        bytes([10, 0, 0, 3])
        + varlen(b"")
        + bytes([10, 0, 0, 4])
        + b"\x00\x00"
        + struct.pack("!H", 5)
        + varlen(b"eth0")
        + struct.pack("!H", 443)
    )
    message = ipfix_message(
        [ipfix_set(2, ipfix_template(400, fields)), ipfix_set(400, record_a + record_b + b"\0")]
    )
    flows = FlowDecoder().decode(message, EXPORTER, now=0.0).flows
    assert [text(flows, i, "src") for i in range(2)] == ["10.0.0.1", "10.0.0.3"]
    assert [text(flows, i, "dst") for i in range(2)] == ["10.0.0.2", "10.0.0.4"]
    assert list(flows["src_port"]) == [1234, 5]
    assert list(flows["dst_port"]) == [80, 443]


def test_variable_length_record_that_overruns_its_set_is_malformed() -> None:
    fields = [(8, 4), (96, 65535)]
    message = ipfix_message(
        [ipfix_set(2, ipfix_template(400, fields)), ipfix_set(400, bytes(4) + b"\x09abc")]
    )
    with pytest.raises(Malformed):
        FlowDecoder().decode(message, EXPORTER, now=0.0)


def test_reduced_size_and_odd_length_integers_and_ntp_times() -> None:
    fields = [(8, 4), (12, 4), (2, 3), (1, 5), (10, 2), (14, 2), (61, 1), (154, 8), (155, 8)]
    ntp_start = ((1_700_000_000 + 2_208_988_800) << 32) | (1 << 31)  # .5 s
    ntp_end = (1_700_000_002 + 2_208_988_800) << 32
    record = (
        bytes([10, 0, 0, 1, 10, 0, 0, 2])
        + (70000).to_bytes(3, "big")
        + (2**36 + 5).to_bytes(5, "big")
        + struct.pack("!HHB", 7, 9, 1)
        + struct.pack("!QQ", ntp_start, ntp_end)
    )
    message = ipfix_message([ipfix_set(2, ipfix_template(500, fields)), ipfix_set(500, record)])
    flow = FlowDecoder().decode(message, EXPORTER, now=0.0).flows[0]
    assert int(flow["packets"]) == 70000
    assert int(flow["bytes"]) == 2**36 + 5
    assert (int(flow["in_if"]), int(flow["out_if"])) == (7, 9)
    assert int(flow["direction"]) == Direction.EGRESS
    assert int(flow["first_ms"]) == 1_700_000_000_500
    assert int(flow["last_ms"]) == 1_700_000_002_000


def test_ipv6_and_mixed_family_templates() -> None:
    src = ipaddress.IPv6Address("2001:db8::1")
    dst = ipaddress.IPv6Address("2001:db8:ffff::2")
    fields = [(27, 16), (28, 16), (7, 2), (11, 2), (4, 1)]
    v6 = src.packed + dst.packed + struct.pack("!HHB", 53, 5353, 17)
    mixed_fields = [(8, 4), (12, 4), (27, 16), (28, 16), (60, 1)]
    mixed_v4 = bytes([192, 0, 2, 1, 192, 0, 2, 2]) + bytes(32) + b"\x04"
    mixed_v6 = bytes(8) + src.packed + dst.packed + b"\x06"
    message = ipfix_message(
        [
            ipfix_set(2, ipfix_template(600, fields) + ipfix_template(601, mixed_fields)),
            ipfix_set(600, v6),
            ipfix_set(601, mixed_v4 + mixed_v6),
        ]
    )
    flows = FlowDecoder().decode(message, EXPORTER, now=0.0).flows
    assert list(flows["ip_version"]) == [6, 4, 6]
    assert [text(flows, i, "src") for i in range(3)] == ["2001:db8::1", "192.0.2.1", "2001:db8::1"]
    assert text(flows, 2, "dst") == "2001:db8:ffff::2"
    assert int(flows["src_hi"][0]) == int(src) >> 64


def test_ipfix_sampling_from_options_records() -> None:
    cache = TemplateCache()
    decoder = FlowDecoder(cache)
    options = ipfix_options_template(700, 1, [(302, 4), (305, 4), (306, 4), (160, 8)])
    sampled = [*V4_FIELDS, (302, 4)]
    record = v4_record("192.0.2.7", "192.0.2.8", 1, 2)
    first = decoder.decode(
        ipfix_message(
            [
                ipfix_set(3, options),
                ipfix_set(2, ipfix_template(300, V4_FIELDS) + ipfix_template(301, sampled)),
                ipfix_set(300, record),  # before the options data: not known yet
                ipfix_set(301, record + struct.pack("!I", 9)),  # nor is sampler 9's rate
                ipfix_set(700, struct.pack("!IIIQ", 9, 1, 99, 1_600_000_000_000)),
                ipfix_set(301, record + struct.pack("!I", 9) + record + struct.pack("!I", 8)),
            ]
        ),
        EXPORTER,
        now=0.0,
    )
    # Sampler 9 selects 1 packet in 100; sampler 8 is unknown, so the domain's rate (none).
    assert first.flows["sampling_rate"].tolist() == [0, 0, 100, 0]
    assert first.options[0].uint(302) == 9
    domain_wide = ipfix_options_template(701, 1, [(149, 4), (34, 4)])
    second = decoder.decode(
        ipfix_message(
            [
                ipfix_set(3, domain_wide),
                ipfix_set(701, struct.pack("!II", 1, 512)),
                ipfix_set(300, record),
            ]
        ),
        EXPORTER,
        now=1.0,
    )
    assert second.flows["sampling_rate"].tolist() == [512]
    assert cache.domain(EXPORTER, 10, 1).init_ms == 1_600_000_000_000


def test_v9_sampling_uptime_times_and_scope_types() -> None:
    decoder = FlowDecoder()
    fields = [(8, 4), (12, 4), (2, 4), (1, 4), (22, 4), (21, 4), (48, 1)]
    options = v9_options_template(260, [(1, 4)], [(48, 1), (49, 1), (50, 4)])
    record = bytes([10, 0, 0, 1, 10, 0, 0, 2]) + struct.pack("!IIIIB", 5, 500, 95_000, 99_000, 3)
    datagram = v9_datagram(
        [
            struct.pack("!HH", 1, 4 + len(options) + 2) + options + b"\0\0",
            struct.pack("!HH", 0, 4 + 4 + 4 * len(fields))
            + struct.pack("!HH", 256, len(fields))
            + b"".join(struct.pack("!HH", *f) for f in fields),
            struct.pack("!HH", 260, 4 + 10) + struct.pack("!IBBI", 0x0A000001, 3, 2, 1000),
            struct.pack("!HH", 256, 4 + len(record)) + record,
        ],
        uptime_ms=100_000,
        secs=1_700_000_000,
    )
    result = decoder.decode(datagram, EXPORTER, now=0.0)
    assert result.format is FlowFormat.NETFLOW_V9
    flow = result.flows[0]
    assert int(flow["sampling_rate"]) == 1000
    assert int(flow["first_ms"]) == 1_700_000_000_000 - 5_000
    assert int(flow["last_ms"]) == 1_700_000_000_000 - 1_000
    [options_record] = result.options
    assert options_record.scope == {1: bytes([10, 0, 0, 1])}  # v9 scope type 1: system
    assert options_record.uint(50) == 1000


def test_v9_uptime_wrap_and_header_checks() -> None:
    fields = [(8, 4), (22, 4), (21, 4)]
    template = struct.pack("!HH", 256, 3) + b"".join(struct.pack("!HH", *f) for f in fields)
    record = bytes(4) + struct.pack("!II", 2**32 - 1000, 500)
    datagram = v9_datagram(
        [
            struct.pack("!HH", 0, 4 + len(template)) + template,
            struct.pack("!HH", 256, 4 + len(record)) + record,
        ],
        uptime_ms=1000,
        secs=1_700_000_000,
    )
    flow = FlowDecoder().decode(datagram, EXPORTER, now=0.0).flows[0]
    assert int(flow["first_ms"]) == 1_700_000_000_000 - 2000  # across the 2**32 wrap
    assert int(flow["last_ms"]) == 1_700_000_000_000 - 500
    with pytest.raises(Truncated):
        netflow_v9.decode(datagram[:-3], TemplateCache(), EXPORTER, 0.0)
    with pytest.raises(Malformed):  # a zero-length flowset would never end
        netflow_v9.decode(v9_datagram([struct.pack("!HH", 256, 0)]), TemplateCache(), EXPORTER, 0.0)
    # Zero padding to the end of the datagram is padding, not a zero-length flowset.
    padded = netflow_v9.decode(datagram + bytes(8), TemplateCache(), EXPORTER, 0.0)
    assert padded.flows.shape == (1,)


def test_ipfix_structural_errors() -> None:
    cache = TemplateCache()
    good = ipfix_message([ipfix_set(2, ipfix_template(300, V4_FIELDS))])
    with pytest.raises(Truncated):
        ipfix.decode(good[:10], cache, EXPORTER, 0.0)
    with pytest.raises(Truncated):  # the header says longer than the datagram
        ipfix.decode(good[:-4], cache, EXPORTER, 0.0)
    with pytest.raises(BadVersion):
        ipfix.decode(b"\x00\x0b" + good[2:], cache, EXPORTER, 0.0)
    with pytest.raises(Malformed):  # a field count larger than the set
        ipfix.decode(
            ipfix_message([ipfix_set(2, struct.pack("!HH", 300, 50) + bytes(8))]),
            cache,
            EXPORTER,
            0.0,
        )
    with pytest.raises(Malformed):  # a zero-length set
        ipfix.decode(ipfix_message([struct.pack("!HH", 300, 0)]), cache, EXPORTER, 0.0)
    with pytest.raises(Malformed):  # template ids below 256 are reserved
        ipfix.decode(
            ipfix_message([ipfix_set(2, ipfix_template(5, V4_FIELDS))]), cache, EXPORTER, 0.0
        )
    with pytest.raises(Malformed):  # an options template with no scope
        ipfix.decode(
            ipfix_message([ipfix_set(3, ipfix_options_template(301, 0, [(34, 4)]))]),
            cache,
            EXPORTER,
            0.0,
        )


def test_a_rejected_datagram_contributes_nothing_to_a_batch() -> None:
    decoder = FlowDecoder()
    define = ipfix_message([ipfix_set(2, ipfix_template(300, V4_FIELDS))])
    record = v4_record("192.0.2.7", "192.0.2.8", 1, 2)
    broken = ipfix_message([ipfix_set(300, record), struct.pack("!HH", 301, 2)])
    fine = ipfix_message([ipfix_set(300, record + record)])
    result = decoder.decode_many(
        [(define, EXPORTER), (broken, EXPORTER), (fine, EXPORTER), (b"\x00\x07junk", EXPORTER)],
        now=0.0,
    )
    assert result.datagrams == 2
    assert [(i, type(e)) for i, e in result.failed] == [(1, Malformed), (3, BadVersion)]
    assert result.flows.shape == (2,)
    assert result.origin.tolist() == [2, 2]  # both flows came from the third datagram


def test_a_rejected_datagram_holds_nothing() -> None:
    decoder = FlowDecoder()
    record = v4_record("192.0.2.7", "192.0.2.8", 1, 2)
    early_then_broken = ipfix_message([ipfix_set(300, record), struct.pack("!HH", 301, 2)])
    early = ipfix_message([ipfix_set(300, record + record)])
    first = decoder.decode_many([(early_then_broken, EXPORTER), (early, EXPORTER)], now=0.0)
    assert [i for i, _ in first.failed] == [0]
    assert len(first.problems) == 1  # only the second datagram's set is held
    define = ipfix_message([ipfix_set(2, ipfix_template(300, V4_FIELDS))])
    assert decoder.decode(define, EXPORTER, now=1.0).recovered == 2


def test_origin_tells_the_datagrams_of_a_batch_apart() -> None:
    record = v4_record("192.0.2.7", "192.0.2.8", 1, 2)
    define = ipfix_set(2, ipfix_template(300, V4_FIELDS))
    items = [
        (ipfix_message([define, ipfix_set(300, record)]), "a"),
        (v5_datagram([v5_record("192.0.2.1", "198.51.100.1", 1, 2)] * 3), "b"),
        (ipfix_message([define, ipfix_set(300, record * 2)]), "c"),
    ]
    result = FlowDecoder().decode_many(items, now=0.0)
    assert result.format is None  # mixed
    assert sorted(result.origin.tolist()) == [0, 1, 1, 1, 2, 2]
    assert result.origin.shape == result.flows.shape
    assert (result.flows["ip_version"] == 4).all()


def test_detect() -> None:
    assert detect(b"\x00\x05\x00\x01") is FlowFormat.NETFLOW_V5
    assert detect(b"\x00\x09\x00\x01") is FlowFormat.NETFLOW_V9
    assert detect(b"\x00\x0a\x00\x10") is FlowFormat.IPFIX
    assert detect(b"\x00\x00\x00\x05") is FlowFormat.SFLOW_V5
    with pytest.raises(BadVersion):
        detect(b"\x00\x00\x00\x04")
    with pytest.raises(Truncated):
        detect(b"\x00")


def v5_datagram(
    records: list[bytes], uptime: int = 90_000, secs: int = 1_700_000_000, sampling: int = 0
) -> bytes:
    header = struct.pack(
        "!HHIIIIBBH", 5, len(records), uptime, secs, 250_000_000, 7, 0, 0, sampling
    )
    return header + b"".join(records)


def v5_record(src: str, dst: str, first: int, last: int) -> bytes:
    return (
        ipaddress.IPv4Address(src).packed
        + ipaddress.IPv4Address(dst).packed
        + bytes(4)
        + struct.pack(
            "!HHIIIIHHBBBBHHBBH",
            3,
            4,
            10,
            1000,
            first,
            last,
            1025,
            80,
            0,
            0x02,
            6,
            0,
            0,
            0,
            24,
            24,
            0,
        )
    )


def test_netflow_v5() -> None:
    datagram = v5_datagram(
        [v5_record("192.0.2.1", "198.51.100.1", 80_000, 89_000)] * 2, sampling=0x4000 | 64
    )
    result = netflow_v5.decode(datagram)
    assert result.format is FlowFormat.NETFLOW_V5
    flow = result.flows[1]
    assert text(result.flows, 1, "dst") == "198.51.100.1"
    assert (int(flow["in_if"]), int(flow["out_if"])) == (3, 4)
    assert (int(flow["packets"]), int(flow["bytes"])) == (10, 1000)
    assert int(flow["first_ms"]) == 1_700_000_000_250 - 10_000
    assert int(flow["last_ms"]) == 1_700_000_000_250 - 1_000
    assert int(flow["sampling_rate"]) == 64
    assert (int(flow["protocol"]), int(flow["tcp_flags"])) == (6, 0x02)
    with pytest.raises(Truncated):  # the count says two records, one is there
        netflow_v5.decode(datagram[:-48])
    with pytest.raises(BadVersion):
        netflow_v5.decode(b"\x00\x06" + datagram[2:])
