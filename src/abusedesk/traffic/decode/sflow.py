"""sFlow v5 datagrams: flow samples become flows, generic interface counters become counter rows.

The XDR structure (datagram header, samples, records) is walked in Python, with every length
and count checked against what is left before it is used. Each flow sample, compact (0:1) or
expanded (0:3), becomes one flow of one packet with the sample's sampling rate, its frame
length as ``bytes``, and its input and output ifIndex (0 when the sample names no single
interface). The addresses, ports, protocol and TCP flags come from its raw packet header record
(0:1), decoded for all samples of the call at once as a matrix: Ethernet with up to two
802.1Q/802.1ad tags, or a bare IPv4/IPv6 header; IPv4 with options; IPv6 through its
hop-by-hop, routing, destination-options, fragment and AH extension headers to the upper-layer
protocol; ports for TCP, UDP, SCTP and UDP-Lite, and for ICMP/ICMPv6 ``type * 256 + code`` in
``dst_port``, as NetFlow exporters do; none for a fragment after the first. A sample without a
header record uses its sampled IPv4 (0:3) or IPv6 (0:4) record. MPLS and other link types yield
a flow without addresses (``ip_version`` 0).

Direction: the sample's data source being its input interface means ingress, being its output
interface egress; otherwise unknown. sFlow carries no flow times: ``first_ms`` and ``last_ms``
are 0 and the collector stamps arrival time. Discard samples (0:5), enterprise samples and
records, and counter records other than generic interface counters (0:1) are skipped.
"""

from __future__ import annotations

import socket
import struct

import numpy as np
import numpy.typing as npt

from abusedesk.traffic.choices import Direction, FlowFormat
from abusedesk.traffic.decode._batch import Batch
from abusedesk.traffic.decode.errors import BadVersion, Malformed, Truncated
from abusedesk.traffic.decode.records import FLOW_DTYPE, V4_MAPPED, DecodeResult, FlowArray

VERSION = 5
MAX_HEADER = 256  # bytes of each sampled header that are looked at (exporters send 128)

_U32 = struct.Struct("!I")
_PAIR = struct.Struct("!II")
_HEAD = struct.Struct("!IIII")  # sub-agent id, sequence, uptime, sample count
_FLOW = struct.Struct("!IIIIIIII")  # seq, source, rate, pool, drops, input, output, records
_EXPANDED = struct.Struct("!IIIIIIIIIII")  # seq, src type, src index, rate, pool, drops,
# input format, input value, output format, output value, records
_COUNTERS = struct.Struct("!III")  # seq, source, records
_EXPANDED_COUNTERS = struct.Struct("!IIII")  # seq, source type, source index, records
_RAW_HEADER = struct.Struct("!IIII")  # protocol, frame length, stripped, header length
_SAMPLED_V4 = struct.Struct("!II4s4sIIII")
_SAMPLED_V6 = struct.Struct("!II16s16sIIII")
_GENERIC = struct.Struct("!IIQIIQIIIIIIQIIIIII")  # 88 bytes

_FLOW_SAMPLE, _COUNTER_SAMPLE, _EXPANDED_FLOW, _EXPANDED_COUNTER = 1, 2, 3, 4
_RAW_PACKET, _SAMPLED_IPV4, _SAMPLED_IPV6 = 1, 3, 4
_GENERIC_COUNTERS = 1
_ETHERNET, _IPV4, _IPV6 = 1, 11, 12  # header protocols (sFlow v5 §5.2)
# Plain ints: an enum member lookup per sample costs more than the rest of its direction.
_UNKNOWN, _INGRESS, _EGRESS = int(Direction.UNKNOWN), int(Direction.INGRESS), int(Direction.EGRESS)

# A staged flow sample: rate, input, output, direction, frame length, header protocol, header
# bytes (or None), sampled-IP tuple (or None).
Sample = tuple[int, int, int, int, int, int, bytes | None, tuple[object, ...] | None]


def agent(datagram: bytes) -> tuple[str, int, int, int]:
    """The agent address, sub-agent id, sequence number and uptime of a datagram."""
    size = len(datagram)
    if size < 8:
        raise Truncated("sFlow header is shorter than 8 bytes")
    version, address_type = _PAIR.unpack_from(datagram)
    if version != VERSION:
        raise BadVersion(f"not sFlow v5 (version {version})")
    width = {1: 4, 2: 16}.get(address_type)
    if width is None:
        raise Malformed(f"sFlow agent address type {address_type}")
    if size < 8 + width + 16:
        raise Truncated("sFlow header is cut short")
    family = socket.AF_INET if width == 4 else socket.AF_INET6
    address = socket.inet_ntop(family, bytes(datagram[8 : 8 + width]))
    sub_agent, sequence, uptime, _count = _HEAD.unpack_from(datagram, 8 + width)
    return address, sub_agent, sequence, uptime


def walk(data: bytes | memoryview, batch: Batch) -> None:
    size = len(data)
    if size < 8:
        raise Truncated(f"sFlow header needs at least 28 bytes, got {size}")
    version, address_type = _PAIR.unpack_from(data)
    if version != VERSION:
        raise BadVersion(f"not sFlow v5 (version {version})")
    if address_type == 1:
        offset = 12
    elif address_type == 2:
        offset = 24
    else:
        raise Malformed(f"sFlow agent address type {address_type}")
    if size < offset + 16:
        raise Truncated(f"sFlow header needs {offset + 16} bytes, got {size}")
    _sub, _sequence, _uptime, samples = _HEAD.unpack_from(data, offset)
    offset += 16
    if samples * 8 > size - offset:
        raise Malformed(f"sFlow datagram says {samples} samples; it cannot hold them")
    view = data if isinstance(data, memoryview) else memoryview(data)
    for _ in range(samples):
        if size - offset < 8:
            raise Truncated("sFlow sample header runs past the datagram")
        sample_format, length = _PAIR.unpack_from(view, offset)
        start = offset + 8
        end = start + length
        if end > size:
            raise Truncated(f"sFlow sample of {length} bytes runs past the datagram")
        if sample_format in (_FLOW_SAMPLE, _EXPANDED_FLOW):
            batch.sflow.append(_flow_sample(view, start, end, sample_format == _EXPANDED_FLOW))
            batch.sflow_origin.append(batch.index)
        elif sample_format in (_COUNTER_SAMPLE, _EXPANDED_COUNTER):
            _counter_sample(view, start, end, sample_format == _EXPANDED_COUNTER, batch)
        offset = end


def _flow_sample(view: memoryview, start: int, end: int, expanded: bool) -> Sample:
    if expanded:
        if end - start < _EXPANDED.size:
            raise Malformed("expanded flow sample shorter than its fixed part")
        (
            _seq,
            _stype,
            source,
            rate,
            _pool,
            _drops,
            in_format,
            in_value,
            out_format,
            out_value,
            records,
        ) = _EXPANDED.unpack_from(view, start)
        in_if = in_value if in_format == 0 else 0
        out_if = out_value if out_format == 0 else 0
        offset = start + _EXPANDED.size
    else:
        if end - start < _FLOW.size:
            raise Malformed("flow sample shorter than its fixed part")
        _seq, source_id, rate, _pool, _drops, in_raw, out_raw, records = _FLOW.unpack_from(
            view, start
        )
        source = source_id & 0xFF_FFFF
        # Top two bits: the format (0 = one ifIndex, 1 = discarded, 2 = several interfaces).
        in_if = in_raw & 0x3FFF_FFFF if in_raw >> 30 == 0 else 0
        out_if = out_raw & 0x3FFF_FFFF if out_raw >> 30 == 0 else 0
        offset = start + _FLOW.size
    if records * 8 > end - offset:
        raise Malformed(f"flow sample says {records} records; it cannot hold them")
    direction = _UNKNOWN
    if source:
        if source == in_if:
            direction = _INGRESS
        elif source == out_if:
            direction = _EGRESS
    frame_length = 0
    protocol = 0
    header: bytes | None = None
    sampled: tuple[object, ...] | None = None
    pair = _PAIR.unpack_from
    for _ in range(records):
        if end - offset < 8:
            raise Truncated("flow record header runs past its sample")
        record_format, length = pair(view, offset)
        body = offset + 8
        offset = body + length
        if offset > end:
            raise Truncated(f"flow record of {length} bytes runs past its sample")
        if record_format == _RAW_PACKET and header is None:
            if length < _RAW_HEADER.size:
                raise Malformed("raw packet header record shorter than its fixed part")
            protocol, frame_length, _stripped, header_length = _RAW_HEADER.unpack_from(view, body)
            if header_length > length - _RAW_HEADER.size:
                raise Malformed(f"sampled header of {header_length} bytes overruns its record")
            at = body + _RAW_HEADER.size
            header = bytes(view[at : at + min(header_length, MAX_HEADER)])
        elif record_format == _SAMPLED_IPV4 and length >= _SAMPLED_V4.size:
            sampled = (4, *_SAMPLED_V4.unpack_from(view, body))
        elif record_format == _SAMPLED_IPV6 and length >= _SAMPLED_V6.size:
            sampled = (6, *_SAMPLED_V6.unpack_from(view, body))
    if header is None and sampled is not None:
        frame_length = int(sampled[1])  # type: ignore[call-overload]
    return (rate, in_if, out_if, direction, frame_length, protocol, header, sampled)


def _counter_sample(view: memoryview, start: int, end: int, expanded: bool, batch: Batch) -> None:
    if expanded:
        if end - start < _EXPANDED_COUNTERS.size:
            raise Malformed("expanded counter sample shorter than its fixed part")
        sequence, source_type, source_index, records = _EXPANDED_COUNTERS.unpack_from(view, start)
        offset = start + _EXPANDED_COUNTERS.size
    else:
        if end - start < _COUNTERS.size:
            raise Malformed("counter sample shorter than its fixed part")
        sequence, source_id, records = _COUNTERS.unpack_from(view, start)
        source_type, source_index = source_id >> 24, source_id & 0xFF_FFFF
        offset = start + _COUNTERS.size
    if records * 8 > end - offset:
        raise Malformed(f"counter sample says {records} records; it cannot hold them")
    for _ in range(records):
        if end - offset < 8:
            raise Truncated("counter record header runs past its sample")
        record_format, length = _PAIR.unpack_from(view, offset)
        body = offset + 8
        offset = body + length
        if offset > end:
            raise Truncated(f"counter record of {length} bytes runs past its sample")
        if record_format == _GENERIC_COUNTERS:
            if length < _GENERIC.size:
                raise Malformed("generic interface counters shorter than 88 bytes")
            g = _GENERIC.unpack_from(view, body)
            # In COUNTER_DTYPE's order: the 64-bit counters first, then the 32-bit fields.
            batch.counters.append(
                (
                    g[2],
                    g[5],
                    g[12],
                    sequence,
                    source_type,
                    source_index,
                    g[0],
                    g[1],
                    g[3],
                    g[4],
                    *g[6:12],
                    *g[13:19],
                )
            )


# ---------------------------------------------------------------------- to flows


def to_flows(samples: list[Sample]) -> FlowArray:
    n = len(samples)
    out = np.zeros(n, dtype=FLOW_DTYPE)
    columns = list(zip(*(s[:6] for s in samples), strict=True))
    out["sampling_rate"] = columns[0]
    out["in_if"] = columns[1]
    out["out_if"] = columns[2]
    out["direction"] = columns[3]
    out["bytes"] = columns[4]
    out["packets"] = 1
    with_header = [i for i, s in enumerate(samples) if s[6] is not None]
    if with_header:
        rows = np.asarray(with_header, dtype=np.intp)
        headers = [samples[i][6] for i in with_header]
        protocols = np.asarray([samples[i][5] for i in with_header], dtype=np.int64)
        _decode_headers(headers, protocols, out, rows)  # type: ignore[arg-type]
    for i, s in enumerate(samples):
        if s[6] is None and s[7] is not None:
            _sampled_ip(out, i, s[7])
    return out


def _sampled_ip(out: FlowArray, i: int, sampled: tuple[object, ...]) -> None:
    version, _length, protocol, src, dst, src_port, dst_port, flags, tos = sampled
    row = out[i : i + 1]
    for side, raw in (("src", src), ("dst", dst)):
        assert isinstance(raw, bytes)
        if version == 4:
            row[side + "_lo"] = int.from_bytes(raw, "big") | V4_MAPPED
        else:
            value = int.from_bytes(raw, "big")
            row[side + "_hi"] = value >> 64
            row[side + "_lo"] = value & 0xFFFF_FFFF_FFFF_FFFF
    row["ip_version"] = version
    row["protocol"] = int(protocol) & 0xFF  # type: ignore[call-overload]
    row["src_port"] = int(src_port) & 0xFFFF  # type: ignore[call-overload]
    row["dst_port"] = int(dst_port) & 0xFFFF  # type: ignore[call-overload]
    row["tcp_flags"] = int(flags) & 0xFF  # type: ignore[call-overload]
    row["tos"] = int(tos) & 0xFF  # type: ignore[call-overload]


class _Matrix:
    """Sampled headers as one zero-padded byte matrix; reads past a header's end give 0."""

    def __init__(self, headers: list[bytes]) -> None:
        # One spare column of padding, so that a clipped read of a runaway offset is 0.
        width = max(len(h) for h in headers) + 1
        self.width = width
        self.flat = np.frombuffer(b"".join(h.ljust(width, b"\0") for h in headers), np.uint8)
        self.lengths = np.fromiter((len(h) for h in headers), np.int64, len(headers))
        self.base = np.arange(len(headers), dtype=np.int64) * width

    def u8(self, at: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        return self.flat.take(self.base + np.minimum(at, self.width - 1)).astype(np.int64)

    def u16(self, at: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        return (self.u8(at) << 8) | self.u8(at + 1)

    def u32(self, at: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        return (self.u16(at) << 16) | self.u16(at + 2)

    def u64(self, at: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
        high = self.u32(at).astype(np.uint64)
        low = self.u32(at + 4).astype(np.uint64)
        return (high << np.uint64(32)) | low

    def has(self, at: npt.NDArray[np.int64], count: int) -> npt.NDArray[np.bool_]:
        return at + count <= self.lengths


_VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
_IPV6_EXTENSIONS = (0, 43, 60)  # hop-by-hop, routing, destination options
_PORTS = (6, 17, 132, 136)  # TCP, UDP, SCTP, UDP-Lite
_ICMP = (1, 58)


def _decode_headers(
    headers: list[bytes], protocols: npt.NDArray[np.int64], out: FlowArray, rows: np.ndarray
) -> None:
    m = _Matrix(headers)
    n = len(headers)
    zero = np.zeros(n, dtype=np.int64)
    ethernet = protocols == _ETHERNET
    ethertype = np.where(ethernet, m.u16(zero + 12), 0)
    ethertype = np.where(protocols == _IPV4, 0x0800, ethertype)
    ethertype = np.where(protocols == _IPV6, 0x86DD, ethertype)
    l3 = np.where(ethernet, 14, 0)
    for _ in range(2):
        tagged = ethernet & np.isin(ethertype, _VLAN_TPIDS)
        if not tagged.any():
            break
        l3 = l3 + 4 * tagged
        ethertype = np.where(tagged, m.u16(l3 - 2), ethertype)
    first = m.u8(l3)
    is4 = (ethertype == 0x0800) & (first >> 4 == 4) & m.has(l3, 20)
    is6 = (ethertype == 0x86DD) & (first >> 4 == 6) & m.has(l3, 40)

    proto = np.where(is4, m.u8(l3 + 9), np.where(is6, m.u8(l3 + 6), 0))
    tos = np.where(is4, m.u8(l3 + 1), np.where(is6, (m.u16(l3) >> 4) & 0xFF, 0))
    l4 = np.where(is4, l3 + 4 * (first & 0xF), l3 + 40)
    later_fragment = is4 & ((m.u16(l3 + 6) & 0x1FFF) != 0)
    for _ in range(4 if is6.any() else 0):
        extension = is6 & np.isin(proto, _IPV6_EXTENSIONS) & m.has(l4, 2)
        fragment = is6 & (proto == 44) & m.has(l4, 4)
        auth = is6 & (proto == 51) & m.has(l4, 2)
        if not (extension | fragment | auth).any():
            break
        later_fragment |= fragment & ((m.u16(l4 + 2) >> 3) != 0)
        step = np.where(
            extension,
            (m.u8(l4 + 1) + 1) * 8,
            np.where(fragment, 8, np.where(auth, (m.u8(l4 + 1) + 2) * 4, 0)),
        )
        proto = np.where(extension | fragment | auth, m.u8(l4), proto)
        l4 = l4 + step
    ip = is4 | is6
    ports = ip & ~later_fragment & np.isin(proto, _PORTS) & m.has(l4, 4)
    icmp = ip & ~later_fragment & np.isin(proto, _ICMP) & m.has(l4, 2)
    flags = ip & ~later_fragment & (proto == 6) & m.has(l4, 14)

    src4 = m.u32(l3 + 12).astype(np.uint64) | np.uint64(V4_MAPPED)
    dst4 = m.u32(l3 + 16).astype(np.uint64) | np.uint64(V4_MAPPED)
    zero64 = np.uint64(0)
    src_lo = np.where(is4, src4, zero64)
    dst_lo = np.where(is4, dst4, zero64)
    if is6.any():
        out["src_hi"][rows] = np.where(is6, m.u64(l3 + 8), zero64)
        out["dst_hi"][rows] = np.where(is6, m.u64(l3 + 24), zero64)
        src_lo = np.where(is6, m.u64(l3 + 16), src_lo)
        dst_lo = np.where(is6, m.u64(l3 + 32), dst_lo)
    out["src_lo"][rows] = src_lo
    out["dst_lo"][rows] = dst_lo
    out["ip_version"][rows] = np.where(is4, 4, np.where(is6, 6, 0))
    out["protocol"][rows] = np.where(ip, proto, 0)
    out["tos"][rows] = np.where(ip, tos, 0)
    out["src_port"][rows] = np.where(ports, m.u16(l4), 0)
    out["dst_port"][rows] = np.where(ports, m.u16(l4 + 2), np.where(icmp, m.u16(l4), 0))
    out["tcp_flags"][rows] = np.where(flags, m.u8(l4 + 13), 0)


def decode(datagram: bytes | memoryview) -> DecodeResult:
    """Decode one sFlow v5 datagram (stateless)."""
    batch = Batch()
    walk(datagram, batch)
    batch.datagrams = 1
    batch.formats.add(FlowFormat.SFLOW_V5)
    return batch.result()
