"""Every shared flow fixture decodes to what its reference decoder says.

telegraf (``flows/telegraf/<case>/expected.out``, InfluxDB line protocol): every record it
reports is one of ours, field by field, for the fields our layout keeps. What telegraf reports
and abusedesk does not keep (``NOT_KEPT``), and where the two differ on purpose:

- Kept elsewhere, not in the flow layout: next hop, BGP AS numbers and next hop, prefix masks,
  MAC addresses, VLANs, engine type and id, sequence numbers, flow end reason, forwarding
  status, flow count, ICMP type and code (NetFlow puts them in ``dst_port``), application and
  TLS fields, enterprise and unknown elements (``type_<pen>_<id>``), and for sFlow the agent
  address and sub-agent, sample pool (``in_total_packets``), drops, TTL, IP id, fragment
  fields, IP lengths and the link-layer protocol names.
- telegraf's sFlow ``in_snmp`` is the sample's data source, written over the input interface;
  ours is the input interface, so the two are compared only when the data source *is* the
  input (direction ingress).
- telegraf calls every sFlow sample whose data source is not its input "egress"; ours says
  unknown unless the source is the output interface, so direction is compared where ours is
  known.
- For an IPv6 packet with extension headers telegraf reports the first next-header
  (``hopopt``); ours walks the extension headers to the upper-layer protocol (ICMPv6 here),
  and gives ICMP type and code in ``dst_port`` as NetFlow does. Such flows are compared
  without protocol and ports.
- NetFlow v9 options scope fields are scope types (type 1 is "system"); telegraf reads them as
  field types and so names the system scope ``in_bytes``.
- sFlow discard samples (``sflow_issue_15375``: a drop event with a reason code) are not
  traffic and produce no flow.

tcpdump (``flows/tcpdump/*.pcap`` with ``*.out``): every sFlow sample tcpdump prints is
one of ours, with its sampling rate, interfaces and frame length, and every generic
interface counter record it prints, value by value. The datagrams tcpdump calls "sFlow
version 327681/327682, not supported" are NetFlow v5 sent to the sFlow port, and decode as
such; the one it calls invalid (``sflow_print-segv``) is rejected with a typed error.
"""

from __future__ import annotations

import contextlib
import ipaddress
import struct

import numpy as np
import pytest

from abusedesk.traffic.choices import Direction, FlowFormat
from abusedesk.traffic.decode import (
    DecodeError,
    FlowDecoder,
    OptionsRecord,
    Truncated,
    address_text,
)
from tests.flow_fixtures import (
    FLOWS,
    IN_CI,
    Line,
    first_sampled_header,
    flows_dir,
    read_header,
    read_lines,
    read_pcap,
    read_tcpdump_sflow,
    udp_payload,
)

TELEGRAF_CASES = [
    "ipfix_example",
    "ipfix_options",
    "ipfix_pen_35632",
    "issue_13305",
    "issue_14370",
    "netflow_v5_example",
    "netflow_v9_example",
    "netflow_v9_options",
    "sflow_issue_15375",
    "sflow_issue_15918",
    "sflow_issue_18876",
    "sflow_v5_example",
]
TCPDUMP_CASES = ["sflow_expanded", "sflow_multiple_counter_30_pdus", "sflow_print-segv"]

PROTOCOLS = {"hopopt": 0, "icmp": 1, "tcp": 6, "udp": 17, "ipv6-icmp": 58}
TCP_FLAG_LETTERS = "CEUAPRSF"  # telegraf's order, most significant bit first

NOT_KEPT = {
    "agent_ip",
    "agent_subid",
    "bgp_dst_as",
    "bgp_next_hop",
    "bgp_src_as",
    "client_nw_latency_ms",
    "datalink_frame_type",
    "dst_mask",
    "dst_tos",
    "engine_id",
    "engine_type",
    "flows",
    "flow_end_reason",
    "fragment_flags",
    "fragment_offset",
    "fwd_reason",
    "fwd_status",
    "icmp_code",
    "icmp_type",
    "in_src_mac",
    "ip_total_len",
    "ipv4_id",
    "ipv4_inet_header_len",
    "ipv4_total_len",
    "ipv6_total_len",
    "l2_protocol",
    "l7_proto",
    "next_hop",
    "out_dst_mac",
    "sampling_drops",
    "seq_number",
    "src_mask",
    "sys_uptime",
    "ttl",
    "vlan_dst",
    "vlan_dst_priority",
    "vlan_src",
    "vlan_src_priority",
    "app_latency_ms",
    "ja3c_hash",
    "ja3s_hash",
    "retransmitted_in_bytes",
    "retransmitted_in_pkts",
    "retransmitted_out_bytes",
    "retransmitted_out_pkts",
    "server_nw_latency_ms",
    "ssl_cipher",
    "ssl_server_name",
    "ssl_unsafe_cipher",
    "ssl_version",
}
# Compared another way: uptime-relative times (v5) through the datagram's header; seconds
# only when there are no milliseconds.
SPECIAL = {"first_switched", "last_switched", "flow_start", "flow_end"}


def telegraf_case(name: str) -> tuple[list[bytes], list[Line]]:
    folder = flows_dir(f"telegraf/{name}")
    datagrams = [p.read_bytes() for p in sorted(folder.glob("*.bin"))]
    return datagrams, read_lines(folder / "expected.out")


def decode_all(datagrams: list[bytes]) -> tuple[FlowDecoder, list]:
    decoder = FlowDecoder()
    results = [decoder.decode(d, "127.0.0.1", now=1000.0 + i) for i, d in enumerate(datagrams)]
    return decoder, results


def test_every_fixture_is_covered() -> None:
    if not FLOWS.is_dir():
        if IN_CI:
            pytest.fail(f"the shared flow fixtures are missing ({FLOWS}), and CI=true")
        pytest.skip(f"the shared fixtures are not here ({FLOWS})")
    assert sorted(p.name for p in (FLOWS / "telegraf").iterdir()) == TELEGRAF_CASES
    assert sorted(p.stem for p in (FLOWS / "tcpdump").glob("*.pcap")) == TCPDUMP_CASES


# --------------------------------------------------------------------------- telegraf


def _tcp_flags(text: str) -> int:
    value = 0
    for i, char in enumerate(text):
        if char != ".":
            assert char == TCP_FLAG_LETTERS[i]
            value |= 1 << (7 - i)
    return value


def _ms_from_uptime(ticks: int, datagram: bytes) -> int:
    _v, _count, uptime, secs, nsecs = struct.unpack_from("!HHIII", datagram)
    return secs * 1000 + nsecs // 1_000_000 - ((uptime - ticks) % (1 << 32))


def expected_flow(line: Line, fmt: FlowFormat, datagram: bytes) -> dict[str, object]:
    """telegraf's fields as our columns; asserts that every field is known."""
    f = line.fields
    want: dict[str, object] = {}
    sflow = fmt is FlowFormat.SFLOW_V5
    for key, value in f.items():
        if key in NOT_KEPT or key in SPECIAL or key.startswith("type_"):
            continue
        if key in ("src", "dst"):
            want[key] = str(ipaddress.ip_address(str(value)))
        elif key in ("src_port", "dst_port"):
            want[key] = value
        elif key == "protocol":
            want["protocol"] = PROTOCOLS[str(value)]
        elif key in ("in_bytes", "in_total_bytes", "l2_bytes"):
            want["bytes"] = value
        elif key in ("in_packets", "in_total_packets") and not sflow:
            want["packets"] = value
        elif key == "in_total_packets":
            continue  # sFlow's sample pool
        elif key == "tcp_flags":
            want["tcp_flags"] = _tcp_flags(str(value))
        elif key == "src_tos":
            want["tos"] = int(str(value), 16) if isinstance(value, str) else value
        elif key == "in_snmp":
            want["in_if" if not sflow else "source"] = value
        elif key == "out_snmp":
            want["out_if"] = value
        elif key == "flow_start_ms":
            want["first_ms"] = value
        elif key == "flow_end_ms":
            want["last_ms"] = value
        elif key == "sampling_interval":
            want["sampling_rate"] = value
        elif key == "direction":
            want["direction"] = int(Direction.INGRESS if value == "ingress" else Direction.EGRESS)
        elif key == "ip_version":
            want["ip_version"] = {"IPv4": 4, "IPv6": 6}[str(value)]
        else:
            raise AssertionError(f"telegraf field {key!r} is neither compared nor listed")
    if "first_switched" in f and "first_ms" not in want and "sys_uptime" in f:
        want["first_ms"] = _ms_from_uptime(int(f["first_switched"]), datagram)  # type: ignore[arg-type]
        want["last_ms"] = _ms_from_uptime(int(f["last_switched"]), datagram)  # type: ignore[arg-type]
    if "flow_start" in f and "first_ms" not in want:
        want["first_ms"] = int(f["flow_start"]) * 1000  # type: ignore[call-overload]
        want["last_ms"] = int(f["flow_end"]) * 1000  # type: ignore[call-overload]
    return want


def our_flow(row: np.void) -> dict[str, object]:
    version = int(row["ip_version"])
    flow: dict[str, object] = {name: int(row[name]) for name in row.dtype.names or ()}
    flow["src"] = address_text(row["src_hi"], row["src_lo"], version)
    flow["dst"] = address_text(row["dst_hi"], row["dst_lo"], version)
    return flow


def _comparable(want: dict[str, object], ours: dict[str, object]) -> tuple[dict, dict]:
    want = dict(want)
    if "source" in want:  # sFlow: see the module docstring
        source = want.pop("source")
        if ours["direction"] == Direction.INGRESS:
            want["in_if"] = source
    if "direction" in want and ours["direction"] == Direction.UNKNOWN:
        del want["direction"]
    if want.get("protocol") == 0 and want.get("ip_version") == 6:
        del want["protocol"]  # extension headers: see the module docstring
        want.pop("src_port", None)
        want.pop("dst_port", None)
    return want, {k: ours[k] for k in want}


def _key(flow: dict[str, object]) -> tuple:
    return tuple(str(flow.get(k)) for k in ("src", "dst", "src_port", "dst_port", "bytes"))


@pytest.mark.parametrize("case", TELEGRAF_CASES)
def test_telegraf_flows(case: str) -> None:
    datagrams, lines = telegraf_case(case)
    _, results = decode_all(datagrams)
    fmt = results[0].format
    assert fmt is not None
    flows = [our_flow(row) for r in results for row in r.flows]
    flow_lines = [x for x in lines if x.measurement == "netflow" and "interface" not in x.fields]
    if case == "sflow_issue_15375":  # a discard sample: no traffic (see the docstring)
        assert [x.fields.get("reason") for x in flow_lines] == [1]
        assert flows == []
        return
    assert len(flows) == len(flow_lines), case
    wanted = sorted((expected_flow(x, fmt, datagrams[0]) for x in flow_lines), key=_key)
    ours = sorted(flows, key=_key)
    for want, got in zip(wanted, ours, strict=True):
        expected, actual = _comparable(want, got)
        assert actual == expected, case


OPTION_FIELDS: dict[str, tuple[object, str]] = {
    "app_desc": (94, "text"),
    "app_id": (95, "hex"),
    "app_name": (96, "text"),
    "dropped_packets_total": (135, "uint"),
    "event_time": (322, "uint"),
    "exporter": (130, "ip"),
    "exporting_pid": (144, "uint"),
    "ignored_packet_total": (164, "uint"),
    "in_total_packets": (86, "uint"),
    "notsent_packet_total": (167, "uint"),
    "observation_domain_id": (149, "uint"),
    "system_init_ms": (160, "uint"),
    "total_flows_exported": (42, "uint"),
    "padding": (210, "hex"),
    "in_snmp": (10, "uint"),
    "out_snmp": (14, "uint"),
    "interface": (82, "text"),
    "interface_desc": (83, "text"),
}


def _option_value(record: OptionsRecord, key: object, kind: str, v9: bool) -> object:
    if v9 and key == 1:  # telegraf's "in_bytes" is the v9 system scope (type 1)
        return int.from_bytes(record.scope[1], "big")
    raw = record.values.get(key, record.scope.get(key))  # type: ignore[arg-type]
    assert raw is not None, key
    if kind == "uint":
        return int.from_bytes(raw, "big")
    if kind == "hex":
        return "0x" + raw.hex()
    if kind == "ip":
        return str(ipaddress.ip_address(raw))
    return raw.rstrip(b"\0").decode()


@pytest.mark.parametrize("case", [c for c in TELEGRAF_CASES if not c.startswith("sflow")])
def test_telegraf_options(case: str) -> None:
    datagrams, lines = telegraf_case(case)
    _, results = decode_all(datagrams)
    v9 = results[0].format is FlowFormat.NETFLOW_V9
    records = [o for r in results for o in r.options]
    option_lines = [x for x in lines if x.measurement == "netflow_options"]
    assert len(records) == len(option_lines)
    for record, line in zip(records, option_lines, strict=True):
        for name, value in line.fields.items():
            if name.startswith("type_"):
                pen, element = name.removeprefix("type_").split("_")
                # telegraf leaves the enterprise bit (0x8000) in options element ids.
                key = (int(pen), int(element) & 0x7FFF)
                got = _option_value(record, key, "hex", v9)
            elif v9 and name == "in_bytes":
                got = _option_value(record, 1, "uint", v9)
            else:
                key, kind = OPTION_FIELDS[name]
                got = _option_value(record, key, kind, v9)
            assert got == value, (case, name)


COUNTER_FIELDS = {
    "interface": "if_index",
    "interface_type": "if_type",
    "speed": "if_speed",
    "in_bytes": "in_octets",
    "in_unicast_packets_total": "in_ucast",
    "in_mcast_packets_total": "in_mcast",
    "in_broadcast_packets_total": "in_bcast",
    "in_dropped_packets": "in_discards",
    "in_errors": "in_errors",
    "in_unknown_protocol": "in_unknown_protos",
    "out_bytes": "out_octets",
    "out_unicast_packets_total": "out_ucast",
    "out_mcast_packets_total": "out_mcast",
    "out_broadcast_packets_total": "out_bcast",
    "out_dropped_packets": "out_discards",
    "out_errors": "out_errors",
    "promiscuous": "promiscuous",
}


@pytest.mark.parametrize("case", [c for c in TELEGRAF_CASES if c.startswith("sflow")])
def test_telegraf_sflow_counters(case: str) -> None:
    datagrams, lines = telegraf_case(case)
    _, results = decode_all(datagrams)
    counters = [row for r in results for row in r.counters]
    counter_lines = [x for x in lines if "interface" in x.fields]
    assert len(counters) == len(counter_lines)
    for row, line in zip(counters, counter_lines, strict=True):
        for name, column in COUNTER_FIELDS.items():
            assert int(row[column]) == line.fields[name], (case, name)
        # telegraf: "down" when ifStatus is 0, else "up"; in_snmp is the data source.
        assert ("up" if row["if_status"] else "down") == line.fields["status"]
        assert int(row["source_index"]) == line.fields["in_snmp"]


# --------------------------------------------------------------------------- tcpdump


def tcpdump_case(name: str) -> tuple[list[bytes], list]:
    folder = flows_dir("tcpdump")
    frames = read_pcap(folder / f"{name}.pcap")
    packets = read_tcpdump_sflow(folder / f"{name}.out")
    assert len(frames) == len(packets)
    return [udp_payload(f) for f in frames], packets


@pytest.mark.parametrize("case", ["sflow_expanded", "sflow_multiple_counter_30_pdus"])
def test_tcpdump_sflow(case: str) -> None:
    payloads, packets = tcpdump_case(case)
    decoder = FlowDecoder()
    for payload, packet in zip(payloads, packets, strict=True):
        if not packet.supported:
            # tcpdump's "sFlow version 327681 (0x00050001) not supported" are NetFlow v5
            # datagrams sent to the sFlow port: version 5, then the record count.
            other = decoder.decode(payload, "192.0.2.1", now=0.0)
            assert other.format is FlowFormat.NETFLOW_V5
            assert packet.version >> 16 == 5
            assert len(other.flows) == packet.version & 0xFFFF
            assert (other.flows["first_ms"] // 1000 > 1301702400).all()  # 2011-04-02, as captured
            continue
        result = decoder.decode(payload, "192.0.2.1", now=0.0)
        assert packet.samples is not None
        flows = [s for s in packet.samples if s.kind.endswith("flow")]
        assert len(result.flows) == len(flows)
        for row, sample in zip(result.flows, flows, strict=True):
            assert int(row["sampling_rate"]) == sample.numbers["rate"]
            assert int(row["in_if"]) == sample.numbers["input"]
            assert int(row["out_if"]) == sample.numbers["output"]
            assert int(row["bytes"]) == sample.numbers["frame length"]
            assert int(row["packets"]) == 1
        generic = [c for s in packet.samples for c in s.counters]
        assert len(result.counters) == len(generic)
        for row, counter in zip(result.counters, generic, strict=True):
            assert _counter_as_tcpdump(row) == counter


def _counter_as_tcpdump(row: np.void) -> dict[str, int]:
    names = {
        "ifindex": "if_index",
        "iftype": "if_type",
        "ifspeed": "if_speed",
        "ifdirection": "if_direction",
        "ifstatus": "if_status",
        "in octets": "in_octets",
        "in unicast pkts": "in_ucast",
        "in multicast pkts": "in_mcast",
        "in broadcast pkts": "in_bcast",
        "in discards": "in_discards",
        "in errors": "in_errors",
        "in unknown protos": "in_unknown_protos",
        "out octets": "out_octets",
        "out unicast pkts": "out_ucast",
        "out multicast pkts": "out_mcast",
        "out broadcast pkts": "out_bcast",
        "out discards": "out_discards",
        "out errors": "out_errors",
        "promisc mode": "promiscuous",
    }
    return {key: int(row[column]) for key, column in names.items()}


def test_tcpdump_expanded_sample_header() -> None:
    """The sampled header of sflow_expanded.pcap, decoded by the vectorised path, agrees with a
    plain one-packet reading of the same bytes (tcpdump prints only the record's lengths)."""
    payloads, _ = tcpdump_case("sflow_expanded")
    flow = our_flow(FlowDecoder().decode(payloads[0], "192.0.2.1", now=0.0).flows[0])
    reference = read_header(first_sampled_header(payloads[0]))
    assert reference["src"] == "52.52.52.52"
    assert {k: flow[k] for k in reference} == reference


def test_tcpdump_malformed_capture_is_a_typed_error() -> None:
    payloads, packets = tcpdump_case("sflow_print-segv")
    assert not packets[0].supported  # tcpdump: "[length 8 < 28] (invalid)"
    with pytest.raises(Truncated):
        FlowDecoder().decode(payloads[0], "10.0.0.250", now=0.0)
    # The same frame read past its UDP length (what a careless reader would hand over) is
    # rejected or decoded, never a crash.
    frame = read_pcap(flows_dir("tcpdump") / "sflow_print-segv.pcap")[0]
    with contextlib.suppress(DecodeError):
        FlowDecoder().decode(frame[42:], "10.0.0.250", now=0.0)


def test_fixture_datagrams_decode_the_same_in_one_batch() -> None:
    """decode_many over every fixture datagram gives the same flows as decode, one by one."""
    items: list[tuple[bytes, str]] = []
    for case in TELEGRAF_CASES:
        folder = flows_dir(f"telegraf/{case}")
        items += [(p.read_bytes(), case) for p in sorted(folder.glob("*.bin"))]
    singles = FlowDecoder()
    one_by_one = np.concatenate([singles.decode(d, e, now=0.0).flows for d, e in items])
    batch = FlowDecoder().decode_many(items, now=0.0)
    assert batch.failed == []
    assert batch.datagrams == len(items)
    order = np.argsort(one_by_one, order=list(one_by_one.dtype.names or ()))
    other = np.argsort(batch.flows, order=list(batch.flows.dtype.names or ()))
    assert np.array_equal(one_by_one[order], batch.flows[other])
