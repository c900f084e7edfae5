"""sFlow v5, built here: the sampled header decoded as a matrix agrees with a plain reading of
each packet (VLAN tags, IPv4 options, IPv6 extension headers, fragments, ICMP, cut-short
headers), sampled-IP records, interfaces and direction, and interface counters."""

from __future__ import annotations

import ipaddress
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from abusedesk.traffic.choices import Direction, FlowFormat
from abusedesk.traffic.decode import DecodeError, FlowDecoder, address_text, sflow
from tests.flow_fixtures import read_header

MAC = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02"


def ipv4(
    proto: int,
    payload: bytes,
    src: str = "192.0.2.1",
    dst: str = "198.51.100.2",
    options: bytes = b"",
    fragment: int = 0,
    tos: int = 0,
) -> bytes:
    ihl = 5 + len(options) // 4
    head = struct.pack(
        "!BBHHHBBH4s4s",
        0x40 | ihl,
        tos,
        20 + len(options) + len(payload),
        1,
        fragment,
        64,
        proto,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    return head + options + payload


def ipv6(
    next_header: int,
    payload: bytes,
    src: str = "2001:db8::1",
    dst: str = "2001:db8::2",
    traffic_class: int = 0,
) -> bytes:
    first = (6 << 28) | (traffic_class << 20)
    return (
        struct.pack(
            "!IHBB16s16s",
            first,
            len(payload),
            next_header,
            64,
            ipaddress.IPv6Address(src).packed,
            ipaddress.IPv6Address(dst).packed,
        )
        + payload
    )


def tcp(sport: int, dport: int, flags: int) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, flags, 1024, 0, 0)


def udp(sport: int, dport: int) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8, 0)


def ethernet(packet: bytes, ethertype: int, tags: int = 0) -> bytes:
    vlans = b"".join(struct.pack("!HH", 0x8100 if i else 0x88A8, 10 + i) for i in range(tags))
    return MAC + vlans + struct.pack("!H", ethertype) + packet


def flow_sample(
    header: bytes,
    protocol: int = 1,
    rate: int = 512,
    source: int = 3,
    input_if: int = 3,
    output_if: int = 7,
    frame_length: int = 0,
    extra_records: bytes = b"",
    records: int | None = None,
) -> bytes:
    padded = header + b"\0" * (-len(header) % 4)
    raw = struct.pack("!IIII", protocol, frame_length or len(header) + 4, 4, len(header)) + padded
    body_records = struct.pack("!II", 1, len(raw)) + raw + extra_records
    count = records if records is not None else 1 + (1 if extra_records else 0)
    body = struct.pack("!IIIIIIII", 1, source, rate, 10_000, 0, input_if, output_if, count)
    return struct.pack("!II", 1, len(body + body_records)) + body + body_records


def datagram(samples: list[bytes]) -> bytes:
    head = struct.pack("!II4sIIII", 5, 1, bytes([192, 0, 2, 100]), 0, 1, 1000, len(samples))
    return head + b"".join(samples)


def decoded(rows: object) -> list[dict[str, object]]:
    out = []
    for row in rows:  # type: ignore[attr-defined]
        version = int(row["ip_version"])
        item: dict[str, object] = {"ip_version": version}
        if version:
            item |= {
                "src": address_text(row["src_hi"], row["src_lo"], version),
                "dst": address_text(row["dst_hi"], row["dst_lo"], version),
                "protocol": int(row["protocol"]),
                "src_port": int(row["src_port"]),
                "dst_port": int(row["dst_port"]),
                "tcp_flags": int(row["tcp_flags"]),
                "tos": int(row["tos"]),
            }
        out.append(item)
    return out


HOP_BY_HOP = bytes([17, 0]) + bytes(6)  # next: UDP
ROUTING = bytes([44, 1]) + bytes(14)  # next: fragment
FIRST_FRAGMENT = struct.pack("!BBHI", 6, 0, 0x0001, 7)  # next: TCP, offset 0, more fragments
LATER_FRAGMENT = struct.pack("!BBHI", 17, 0, 0x0100, 7)  # offset 32

PACKETS = [
    ethernet(ipv4(6, tcp(40000, 25, 0x02), tos=0x20), 0x0800),
    ethernet(ipv4(17, udp(5353, 53)), 0x0800, tags=1),
    ethernet(ipv6(6, tcp(443, 50000, 0x12), traffic_class=0xB8), 0x86DD, tags=2),
    ethernet(ipv4(6, tcp(1, 2, 0x10), options=b"\x01\x01\x01\x00"), 0x0800),
    ethernet(ipv4(17, udp(123, 123), fragment=0x0010), 0x0800),  # a later fragment
    ethernet(ipv4(1, bytes([8, 0, 0, 0])), 0x0800),  # ICMP echo request
    ethernet(ipv6(0, HOP_BY_HOP + udp(546, 547)), 0x86DD),
    ethernet(ipv6(43, ROUTING + FIRST_FRAGMENT + tcp(22, 60000, 0x18)), 0x86DD),
    ethernet(ipv6(44, LATER_FRAGMENT + udp(9, 9)), 0x86DD),
    ethernet(ipv6(58, bytes([128, 0, 0, 0])), 0x86DD),  # ICMPv6 echo request
    ethernet(b"\x00\x01\x00\x02" + ipv4(6, tcp(1, 2, 3)), 0x8847),  # MPLS: not read
    ethernet(ipv4(6, tcp(80, 8080, 0x11)), 0x0800)[:40],  # cut short before the ports
]


def test_sampled_headers_agree_with_a_plain_reading() -> None:
    result = sflow.decode(datagram([flow_sample(p) for p in PACKETS]))
    assert result.format is FlowFormat.SFLOW_V5
    assert decoded(result.flows) == [read_header(p) for p in PACKETS]
    assert decoded(result.flows)[5]["dst_port"] == 8 * 256  # ICMP type 8, as NetFlow puts it


def test_bare_ip_headers() -> None:
    v4 = ipv4(17, udp(1, 2))
    v6 = ipv6(6, tcp(3, 4, 2))
    result = sflow.decode(datagram([flow_sample(v4, protocol=11), flow_sample(v6, protocol=12)]))
    assert decoded(result.flows) == [
        read_header(ethernet(v4, 0x0800)),
        read_header(ethernet(v6, 0x86DD)),
    ]


def test_interfaces_direction_rate_and_bytes() -> None:
    packet = ethernet(ipv4(6, tcp(1, 2, 2)), 0x0800)
    samples = [
        flow_sample(packet, source=3, input_if=3, output_if=7, rate=2048, frame_length=1518),
        flow_sample(packet, source=7, input_if=3, output_if=7),
        flow_sample(packet, source=9, input_if=3, output_if=0x8000_0002),  # several outputs
    ]
    flows = sflow.decode(datagram(samples)).flows
    assert flows["direction"].tolist() == [Direction.INGRESS, Direction.EGRESS, Direction.UNKNOWN]
    assert flows["out_if"].tolist() == [7, 7, 0]
    assert flows["sampling_rate"].tolist() == [2048, 512, 512]
    assert flows["bytes"].tolist()[0] == 1518
    assert flows["packets"].tolist() == [1, 1, 1]
    assert flows["first_ms"].tolist() == [0, 0, 0]


def test_sampled_ipv4_record_without_a_header() -> None:
    record = struct.pack(
        "!II4s4sIIII", 1200, 6, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), 1234, 25, 0x02, 0
    )
    body = struct.pack("!IIIIIIII", 1, 3, 100, 0, 0, 3, 4, 1)
    body += struct.pack("!II", 3, len(record)) + record
    flows = sflow.decode(datagram([struct.pack("!II", 1, len(body)) + body])).flows
    assert decoded(flows) == [
        {
            "ip_version": 4,
            "src": "10.0.0.1",
            "dst": "10.0.0.2",
            "protocol": 6,
            "src_port": 1234,
            "dst_port": 25,
            "tcp_flags": 2,
            "tos": 0,
        }
    ]
    assert flows["bytes"].tolist() == [1200]


def test_lies_are_typed_errors() -> None:
    packet = ethernet(ipv4(6, tcp(1, 2, 2)), 0x0800)
    good = datagram([flow_sample(packet)])
    decoder = FlowDecoder()
    cases = {
        "more samples than bytes": good[:24] + struct.pack("!I", 1000) + good[28:],
        "sample longer than the datagram": good[:-8],
        "more records than the sample holds": datagram([flow_sample(packet, records=400)]),
        "header longer than its record": good[:28]
        + good[28:88]
        + struct.pack("!I", 999)
        + good[92:],
        "agent address type": good[:4] + struct.pack("!I", 7) + good[8:],
    }
    for name, data in cases.items():
        try:
            decoder.decode(data, "x", now=0.0)
        except DecodeError:
            continue
        raise AssertionError(f"{name}: decoded without an error")


def test_agent() -> None:
    assert sflow.agent(datagram([])) == ("192.0.2.100", 0, 1, 1000)


_PORTS = st.integers(min_value=0, max_value=65535)


@st.composite
def packets(draw: st.DrawFn) -> bytes:
    proto = draw(st.sampled_from([6, 17, 1, 58, 132, 47]))
    sport, dport = draw(_PORTS), draw(_PORTS)
    l4 = tcp(sport, dport, draw(st.integers(0, 255))) if proto == 6 else udp(sport, dport)
    if draw(st.booleans()):
        options = b"\x01" * 4 * draw(st.integers(0, 10))
        fragment = draw(st.sampled_from([0, 0, 0x2000, 0x0001]))
        packet = ethernet(
            ipv4(proto, l4, options=options, fragment=fragment),
            0x0800,
            tags=draw(st.integers(0, 2)),
        )
    else:
        chain = draw(st.lists(st.sampled_from([0, 43, 60, 44]), max_size=3))
        payload = l4
        next_header = proto
        for ext in reversed(chain):
            if ext == 44:
                payload = (
                    struct.pack("!BBHI", next_header, 0, draw(st.sampled_from([0, 8])), 1) + payload
                )
            else:
                payload = bytes([next_header, 0]) + bytes(6) + payload
            next_header = ext
        packet = ethernet(ipv6(next_header, payload), 0x86DD, tags=draw(st.integers(0, 2)))
    return packet[: draw(st.integers(min_value=14, max_value=len(packet)))]


@settings(max_examples=150, deadline=None)
@given(st.lists(packets(), min_size=1, max_size=8))
def test_matrix_decode_equals_plain_decode(frames: list[bytes]) -> None:
    flows = sflow.decode(datagram([flow_sample(f) for f in frames])).flows
    for frame, ours in zip(frames, decoded(flows), strict=True):
        try:
            reference = read_header(frame)
        except (struct.error, IndexError, ValueError):
            continue  # cut inside the IP header: the plain reader cannot say; ours gives 0s
        if ours["ip_version"] == 0:
            continue
        assert ours == reference
