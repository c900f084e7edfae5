"""NetFlow v5: a 24-byte header and up to 30 fixed 48-byte records, read with one numpy call.

The header's sysUpTime and export time turn the records' sysUpTime-relative first/last
switched times into epoch milliseconds; its sampling field (2 bits of mode, 14 of interval)
gives the sampling rate of every record in the datagram. The header's count is trusted only as
far as the datagram holds that many records: more is ``Truncated``; bytes after the last record
are ignored. NetFlow v5 has no templates and no state.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

from abusedesk.traffic.choices import FlowFormat
from abusedesk.traffic.decode._batch import Batch, Chunk
from abusedesk.traffic.decode.errors import BadVersion, Truncated
from abusedesk.traffic.decode.records import FLOW_DTYPE, V4_MAPPED, DecodeResult, FlowArray

HEADER = struct.Struct("!HHIIIIBBH")
HEADER_LENGTH = HEADER.size  # 24
RECORD_LENGTH = 48
MAX_RECORDS = 30  # what the format allows; longer datagrams are read as long as the data lasts

RECORD_DTYPE = np.dtype(
    {
        "names": [
            "src",
            "dst",
            "nexthop",
            "input",
            "output",
            "packets",
            "octets",
            "first",
            "last",
            "src_port",
            "dst_port",
            "tcp_flags",
            "protocol",
            "tos",
            "src_as",
            "dst_as",
            "src_mask",
            "dst_mask",
        ],
        "formats": [
            ">u4",
            ">u4",
            ">u4",
            ">u2",
            ">u2",
            ">u4",
            ">u4",
            ">u4",
            ">u4",
            ">u2",
            ">u2",
            "u1",
            "u1",
            "u1",
            ">u2",
            ">u2",
            "u1",
            "u1",
        ],
        "offsets": [0, 4, 8, 12, 14, 16, 20, 24, 28, 32, 34, 37, 38, 39, 40, 42, 44, 45],
        "itemsize": RECORD_LENGTH,
    }
)

_U32 = 1 << 32


def walk(data: bytes | memoryview, batch: Batch) -> None:
    """Check one datagram's header and batch its records."""
    size = len(data)
    if size < HEADER_LENGTH:
        raise Truncated(f"NetFlow v5 header needs {HEADER_LENGTH} bytes, got {size}")
    version, count, uptime, secs, nsecs, sequence, _etype, _eid, sampling = HEADER.unpack_from(data)
    if version != 5:
        raise BadVersion(f"not NetFlow v5 (version {version})")
    need = HEADER_LENGTH + RECORD_LENGTH * count
    if size < need:
        raise Truncated(f"NetFlow v5 header says {count} records; the datagram holds fewer")
    if count:
        export_ms = secs * 1000 + min(nsecs, 999_999_999) // 1_000_000
        view = data if isinstance(data, memoryview) else memoryview(data)
        header = (export_ms, uptime, sampling, sequence)
        batch.v5.append((view[HEADER_LENGTH:need], count, header, batch.index))


def to_flows(
    chunks: Sequence[Chunk], counts: Sequence[int], headers: Sequence[tuple[int, int, int, int]]
) -> FlowArray:
    data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    raw = np.frombuffer(data, dtype=RECORD_DTYPE, count=sum(counts))
    out = np.zeros(raw.shape[0], dtype=FLOW_DTYPE)
    np.bitwise_or(raw["src"], np.uint64(V4_MAPPED), out=out["src_lo"])
    np.bitwise_or(raw["dst"], np.uint64(V4_MAPPED), out=out["dst_lo"])
    out["ip_version"] = 4
    out["packets"] = raw["packets"]
    out["bytes"] = raw["octets"]
    out["in_if"] = raw["input"]
    out["out_if"] = raw["output"]
    out["src_port"] = raw["src_port"]
    out["dst_port"] = raw["dst_port"]
    out["protocol"] = raw["protocol"]
    out["tcp_flags"] = raw["tcp_flags"]
    out["tos"] = raw["tos"]
    export_ms: np.ndarray | int
    uptime: np.ndarray | int
    rate: np.ndarray | int
    if len(headers) == 1:
        export_ms, uptime, sampling, _seq = headers[0]
        rate = sampling & 0x3FFF
    else:
        table = np.asarray(headers, dtype=np.int64)
        counts_array = np.asarray(counts)
        export_ms = np.repeat(table[:, 0], counts_array)
        uptime = np.repeat(table[:, 1], counts_array)
        rate = np.repeat(table[:, 2] & 0x3FFF, counts_array)
    out["first_ms"] = _absolute(raw["first"], export_ms, uptime)
    out["last_ms"] = _absolute(raw["last"], export_ms, uptime)
    out["sampling_rate"] = rate
    return out


def _absolute(
    ticks: np.ndarray, export_ms: np.ndarray | int, uptime: np.ndarray | int
) -> np.ndarray:
    """sysUpTime ms to epoch ms: how far back from the export, modulo the 32-bit wrap."""
    back = (np.asarray(uptime, dtype=np.int64) - ticks.astype(np.int64)) % _U32
    back = np.where(back >= _U32 // 2, back - _U32, back)
    return export_ms - back


def decode(datagram: bytes | memoryview) -> DecodeResult:
    """Decode one NetFlow v5 datagram (stateless)."""
    batch = Batch()
    walk(datagram, batch)
    batch.datagrams = 1
    batch.formats.add(FlowFormat.NETFLOW_V5)
    return batch.result()
