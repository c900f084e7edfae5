"""Helpers for the flow decoder tests: the shared fixtures, telegraf's line protocol, classic
pcap files, tcpdump's sFlow text, and builders of NetFlow v9 / IPFIX datagrams."""

from __future__ import annotations

import ipaddress
import os
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

FLOWS = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "flows"
IN_CI = os.environ.get("CI", "").lower() == "true"


def flows_dir(relative: str) -> Path:
    """A folder of the shared flow fixtures; skips without them, fails without them in CI."""
    path = FLOWS / relative
    if not path.is_dir():
        if IN_CI:
            pytest.fail(
                f"fixture {path} is missing, and CI=true: the shared fixtures must be there"
            )
        pytest.skip(f"the shared fixtures are not here ({FLOWS})")
    return path


# --------------------------------------------------------------------------- line protocol


@dataclass(frozen=True)
class Line:
    measurement: str
    tags: dict[str, str]
    fields: dict[str, object]


def _split(text: str, separator: str) -> list[str]:
    """Split on a separator that is neither backslash-escaped nor inside double quotes."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    parts.append("".join(current))
    return parts


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _value(raw: str) -> object:
    if raw.startswith('"'):
        return _unescape(raw[1:-1])
    if raw.endswith(("u", "i")) and re.fullmatch(r"-?\d+[ui]", raw):
        return int(raw[:-1])
    if raw in ("true", "t", "T", "True", "TRUE"):
        return True
    if raw in ("false", "f", "F", "False", "FALSE"):
        return False
    return float(raw)


def parse_line(text: str) -> Line:
    """One line of InfluxDB line protocol: measurement,tags fields [timestamp]."""
    sections = [s for s in _split(text.strip(), " ") if s]
    head, field_text = sections[0], sections[1]
    names = _split(head, ",")
    tags = dict(_unescape(t).split("=", 1) for t in names[1:])
    fields: dict[str, object] = {}
    for item in _split(field_text, ","):
        key, raw = item.split("=", 1)
        fields[_unescape(key)] = _value(raw)
    return Line(_unescape(names[0]), tags, fields)


def read_lines(path: Path) -> list[Line]:
    return [parse_line(line) for line in path.read_text().splitlines() if line.strip()]


# --------------------------------------------------------------------------- pcap


def read_pcap(path: Path) -> list[bytes]:
    """Frames of a classic pcap file (either byte order, micro- or nanosecond)."""
    data = path.read_bytes()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        order = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        order = ">"
    else:
        raise ValueError(f"{path} is not a classic pcap file")
    linktype = struct.unpack_from(order + "I", data, 20)[0]
    assert linktype == 1, "only Ethernet captures are read here"
    frames: list[bytes] = []
    offset = 24
    while offset + 16 <= len(data):
        _sec, _frac, captured, _original = struct.unpack_from(order + "IIII", data, offset)
        offset += 16
        frames.append(data[offset : offset + captured])
        offset += captured
    return frames


def udp_payload(frame: bytes) -> bytes:
    """The UDP payload of an Ethernet/IPv4 frame, as long as the UDP header says (as a socket
    would deliver it; tcpdump reads it the same way), and never past the capture."""
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    offset = 14
    while ethertype == 0x8100:
        ethertype = struct.unpack_from("!H", frame, offset + 2)[0]
        offset += 4
    assert ethertype == 0x0800
    ihl = (frame[offset] & 0x0F) * 4
    assert frame[offset + 9] == 17
    udp = offset + ihl
    length = struct.unpack_from("!H", frame, udp + 4)[0]
    return frame[udp + 8 : udp + max(8, length)]


# --------------------------------------------------------------------------- tcpdump sFlow text


@dataclass
class TcpdumpSample:
    kind: str  # "flow", "expanded flow", "counter", "expanded counter"
    numbers: dict[str, int]
    counters: list[dict[str, int]]


@dataclass
class TcpdumpPacket:
    supported: bool
    version: int = 5  # what tcpdump read as the sFlow version
    agent: str = ""
    samples: list[TcpdumpSample] | None = None


_NUMBER = re.compile(r"([A-Za-z][A-Za-z ]*?)\s+(\d+)")


def _numbers(text: str) -> dict[str, int]:
    return {key.strip().lower(): int(value) for key, value in _NUMBER.findall(text)}


def read_tcpdump_sflow(path: Path) -> list[TcpdumpPacket]:
    """tcpdump -v's sFlow decode: per packet, its samples and their generic counters."""
    packets: list[TcpdumpPacket] = []
    counter: dict[str, int] | None = None
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if re.match(r"^\d+\s+\d{4}-\d\d-\d\d ", stripped):
            packets.append(TcpdumpPacket(supported=False))
            counter = None
            continue
        packet = packets[-1]
        unsupported = re.search(r"sFlow version (\d+) packet not supported", stripped)
        if unsupported:
            packet.version = int(unsupported.group(1))
            continue
        if "sFlowv5," in stripped and "agent" in stripped:
            packet.supported = True
            packet.agent = stripped.split(" agent ", 1)[1].split(",", 1)[0]
            packet.samples = []
            continue
        match = re.match(r"^(expanded )?(flow|counter) sample \(\d\), (.*)$", stripped)
        if match and packet.samples is not None:
            kind = (match.group(1) or "") + match.group(2)
            packet.samples.append(TcpdumpSample(kind, _numbers(match.group(3)), []))
            counter = None
            continue
        if stripped.startswith("protocol Ethernet") and packet.samples:
            packet.samples[-1].numbers.update(
                {f"frame {k}": v for k, v in _numbers(stripped.split(",", 1)[1]).items()}
            )
        if stripped.startswith("enterprise 0, Generic counter") and packet.samples:
            counter = {}
            packet.samples[-1].counters.append(counter)
            continue
        if stripped.startswith("enterprise"):
            counter = None
            continue
        if counter is not None:
            section = ""
            if stripped.startswith("In "):
                section = "in "
            elif stripped.startswith("Out "):
                section = "out "
            for key, value in _numbers(stripped).items():
                name = key.removeprefix("in ").removeprefix("out ")
                counter[section + name if section and name != "promisc mode" else name] = value
    return packets


# --------------------------------------------------------------------------- sampled headers


def first_sampled_header(payload: bytes) -> bytes:
    """The raw packet header of the first flow sample of an sFlow datagram (IPv4 agent)."""
    offset = 28
    sample_format, _length = struct.unpack_from("!II", payload, offset)
    offset += 8 + (44 if sample_format == 3 else 32)
    record_format, _length = struct.unpack_from("!II", payload, offset)
    assert record_format == 1
    header_length = struct.unpack_from("!I", payload, offset + 8 + 12)[0]
    start = offset + 8 + 16
    return payload[start : start + header_length]


def read_header(frame: bytes) -> dict[str, object]:
    """A plain, one-packet reading of an Ethernet frame: the reference for the vectorised one."""
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    offset = 14
    while ethertype in (0x8100, 0x88A8, 0x9100):
        ethertype = struct.unpack_from("!H", frame, offset + 2)[0]
        offset += 4
    out: dict[str, object] = {}
    if ethertype == 0x0800:
        ihl = (frame[offset] & 0x0F) * 4
        out["ip_version"] = 4
        out["tos"] = frame[offset + 1]
        protocol = frame[offset + 9]
        out["src"] = str(ipaddress.IPv4Address(frame[offset + 12 : offset + 16]))
        out["dst"] = str(ipaddress.IPv4Address(frame[offset + 16 : offset + 20]))
        first_fragment = struct.unpack_from("!H", frame, offset + 6)[0] & 0x1FFF == 0
        l4 = offset + ihl
    elif ethertype == 0x86DD:
        out["ip_version"] = 6
        out["tos"] = (struct.unpack_from("!H", frame, offset)[0] >> 4) & 0xFF
        protocol = frame[offset + 6]
        out["src"] = str(ipaddress.IPv6Address(frame[offset + 8 : offset + 24]))
        out["dst"] = str(ipaddress.IPv6Address(frame[offset + 24 : offset + 40]))
        l4 = offset + 40
        first_fragment = True
        while protocol in (0, 43, 60, 44, 51):
            if protocol == 44:
                first_fragment &= struct.unpack_from("!H", frame, l4 + 2)[0] >> 3 == 0
                protocol, l4 = frame[l4], l4 + 8
            elif protocol == 51:
                protocol, l4 = frame[l4], l4 + (frame[l4 + 1] + 2) * 4
            else:
                protocol, l4 = frame[l4], l4 + (frame[l4 + 1] + 1) * 8
    else:
        return {"ip_version": 0}
    out["protocol"] = protocol
    ports = first_fragment and protocol in (6, 17, 132, 136) and len(frame) >= l4 + 4
    icmp = first_fragment and protocol in (1, 58) and len(frame) >= l4 + 2
    out["src_port"] = struct.unpack_from("!H", frame, l4)[0] if ports else 0
    if ports or icmp:
        out["dst_port"] = struct.unpack_from("!H", frame, l4 + (2 if ports else 0))[0]
    else:
        out["dst_port"] = 0
    has_flags = first_fragment and protocol == 6 and len(frame) >= l4 + 14
    out["tcp_flags"] = frame[l4 + 13] if has_flags else 0
    return out


# --------------------------------------------------------------------------- builders


def field_specs(fields: Iterable[tuple[int, int] | tuple[int, int, int]]) -> bytes:
    out = b""
    for spec in fields:
        element, length, *rest = spec
        if rest and rest[0]:
            out += struct.pack("!HHI", element | 0x8000, length, rest[0])
        else:
            out += struct.pack("!HH", element, length)
    return out


def ipfix_set(set_id: int, body: bytes) -> bytes:
    return struct.pack("!HH", set_id, len(body) + 4) + body


def ipfix_template(template_id: int, fields: list[tuple[int, ...]]) -> bytes:
    return struct.pack("!HH", template_id, len(fields)) + field_specs(fields)  # type: ignore[arg-type]


def ipfix_options_template(template_id: int, scope: int, fields: list[tuple[int, ...]]) -> bytes:
    head = struct.pack("!HHH", template_id, len(fields), scope)
    return head + field_specs(fields)  # type: ignore[arg-type]


def ipfix_message(
    sets: list[bytes], export_s: int = 1_700_000_000, domain: int = 1, seq: int = 0
) -> bytes:
    body = b"".join(sets)
    return struct.pack("!HHIII", 10, 16 + len(body), export_s, seq, domain) + body


def v9_datagram(
    flowsets: list[bytes], uptime_ms: int = 100_000, secs: int = 1_700_000_000, source_id: int = 1
) -> bytes:
    head = struct.pack("!HHIIII", 9, len(flowsets), uptime_ms, secs, 0, source_id)
    return head + b"".join(flowsets)


def v9_options_template(
    template_id: int, scope: list[tuple[int, int]], options: list[tuple[int, int]]
) -> bytes:
    scope_bytes = field_specs(scope)
    option_bytes = field_specs(options)
    return (
        struct.pack("!HHH", template_id, len(scope_bytes), len(option_bytes))
        + scope_bytes
        + option_bytes
    )


def varlen(value: bytes) -> bytes:
    if len(value) < 255:
        return bytes([len(value)]) + value
    return b"\xff" + struct.pack("!H", len(value)) + value
