"""The record layout every decoder produces, and what a decode returns.

One flow is one row of :data:`FLOW_DTYPE`, a native-endian, aligned numpy structured dtype, so
that windows and detectors work on columns without a Python object per flow:

==============  =======  =================================================================
column          type     meaning
==============  =======  =================================================================
src_hi, src_lo  uint64   source address as 128 bits, ``(hi << 64) | lo``; IPv4 is stored
dst_hi, dst_lo  uint64   IPv4-mapped (``::ffff:a.b.c.d``: hi 0, lo ``0xffff_xxxxxxxx``), so
                         ``lo & 0xffffffff`` is the uint32 that ``PrefixIndex.lookup_v4``
                         takes and ``[hi, lo]`` is what ``lookup_v6`` takes
packets         uint64   packets as exported: *not* multiplied by ``sampling_rate``
bytes           uint64   octets as exported (L3 for NetFlow/IPFIX, the frame for sFlow)
first_ms        int64    flow start, milliseconds since the Unix epoch; 0 when the
last_ms         int64    exporter did not say (sFlow: the collector stamps arrival time)
in_if, out_if   uint32   ingress and egress ifIndex (0: not given)
sampling_rate   uint32   1 in N; 0 when the exporter has not (yet) said, 1 for unsampled
src_port        uint16   transport ports (ICMP: type*256+code in dst_port, as NetFlow does)
dst_port        uint16
protocol        uint8    IP protocol number
tcp_flags       uint8    cumulative TCP flags (the low 8 bits of tcpControlBits)
ip_version      uint8    4, 6, or 0 for a flow without IP addresses
direction       uint8    :class:`~abusedesk.traffic.choices.Direction`
tos             uint8    IPv4 TOS / IPv6 traffic class
==============  =======  =================================================================

The exporter's address and the observation domain (source id) are not columns: a decode
call is made for one exporter, which the caller knows.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from abusedesk.traffic.choices import FlowFormat
from abusedesk.traffic.decode.errors import DecodeError

FLOW_DTYPE = np.dtype(
    [
        ("src_hi", np.uint64),
        ("src_lo", np.uint64),
        ("dst_hi", np.uint64),
        ("dst_lo", np.uint64),
        ("packets", np.uint64),
        ("bytes", np.uint64),
        ("first_ms", np.int64),
        ("last_ms", np.int64),
        ("in_if", np.uint32),
        ("out_if", np.uint32),
        ("sampling_rate", np.uint32),
        ("src_port", np.uint16),
        ("dst_port", np.uint16),
        ("protocol", np.uint8),
        ("tcp_flags", np.uint8),
        ("ip_version", np.uint8),
        ("direction", np.uint8),
        ("tos", np.uint8),
    ],
    align=True,
)

# sFlow generic interface counters (sFlow v5 counter record 0:1), one row per counter sample.
COUNTER_DTYPE = np.dtype(
    [
        ("if_speed", np.uint64),
        ("in_octets", np.uint64),
        ("out_octets", np.uint64),
        ("sequence", np.uint32),
        ("source_type", np.uint32),
        ("source_index", np.uint32),
        ("if_index", np.uint32),
        ("if_type", np.uint32),
        ("if_direction", np.uint32),
        ("if_status", np.uint32),
        ("in_ucast", np.uint32),
        ("in_mcast", np.uint32),
        ("in_bcast", np.uint32),
        ("in_discards", np.uint32),
        ("in_errors", np.uint32),
        ("in_unknown_protos", np.uint32),
        ("out_ucast", np.uint32),
        ("out_mcast", np.uint32),
        ("out_bcast", np.uint32),
        ("out_discards", np.uint32),
        ("out_errors", np.uint32),
        ("promiscuous", np.uint32),
    ],
    align=True,
)

V4_MAPPED = 0xFFFF_0000_0000  # the ::ffff:0:0/96 prefix, as it sits in the low 64 bits

FlowArray = npt.NDArray[np.void]

# A key of an options value: an IANA element id, or (enterprise number, element id).
ElementKey = int | tuple[int, int]


def empty_flows(n: int = 0) -> FlowArray:
    return np.zeros(n, dtype=FLOW_DTYPE)


def empty_counters(n: int = 0) -> FlowArray:
    return np.zeros(n, dtype=COUNTER_DTYPE)


def address_text(hi: int, lo: int, ip_version: int) -> str:
    """One address of a flow row as text (for evidence, logs and tests, not for bulk work)."""
    if ip_version == 4:
        return str(ipaddress.IPv4Address(int(lo) & 0xFFFF_FFFF))
    if ip_version == 6:
        return str(ipaddress.IPv6Address((int(hi) << 64) | int(lo)))
    return ""


@dataclass(frozen=True, slots=True)
class OptionsRecord:
    """One NetFlow v9 / IPFIX options data record, values raw as exported.

    ``scope`` keys are IPFIX element ids (or ``(pen, id)``); for NetFlow v9 they are the v9
    scope types (1 system, 2 interface, 3 line card, 4 cache, 5 template), which are not
    element ids. ``values`` are keyed by element id, enterprise ones by ``(pen, id)``.
    Variable-length values are given without their length prefix.
    """

    template_id: int
    domain: int
    scope: dict[ElementKey, bytes]
    values: dict[ElementKey, bytes]

    def uint(self, key: ElementKey) -> int | None:
        raw = self.values.get(key, self.scope.get(key))
        if raw is None or not 0 < len(raw) <= 8:
            return None
        return int.from_bytes(raw, "big")

    def text(self, key: ElementKey) -> str | None:
        raw = self.values.get(key, self.scope.get(key))
        if raw is None:
            return None
        return raw.rstrip(b"\0").decode("utf-8", errors="replace")


@dataclass(slots=True)
class DecodeResult:
    """What one decode call produced.

    ``flows`` and ``counters`` are arrays of :data:`FLOW_DTYPE` and :data:`COUNTER_DTYPE`.
    ``origin`` gives, for each flow, the index of the datagram it came from in the call's
    input (always 0 for ``decode``): with it a collector attributes a batch's flows to their
    exporters. ``problems`` holds the errors that did not stop the decode (data sets waiting
    for their template); ``failed`` (batch decodes only) pairs the index of each rejected
    datagram with the error that rejected it. ``recovered`` counts the flows, included in
    ``flows``, that came from data sets held earlier and decoded now that their template has
    arrived.
    """

    format: FlowFormat | None
    flows: FlowArray
    origin: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    counters: FlowArray = field(default_factory=empty_counters)
    options: list[OptionsRecord] = field(default_factory=list)
    problems: list[DecodeError] = field(default_factory=list)
    failed: list[tuple[int, DecodeError]] = field(default_factory=list)
    datagrams: int = 0
    templates: int = 0
    recovered: int = 0


def raw_rows(rows: npt.NDArray[np.void]) -> npt.NDArray[np.void]:
    """Structured rows as opaque bytes: numpy copies a structured dtype field by field (an
    aligned one about 1.5 µs a row), plain bytes at memory speed."""
    return rows.view(np.dtype((np.void, rows.dtype.itemsize)))


def take_rows(
    rows: npt.NDArray[np.void], index: npt.NDArray[np.integer] | npt.NDArray[np.bool_]
) -> npt.NDArray[np.void]:
    """``rows[index]`` (positions, or a mask) at memory speed."""
    return raw_rows(rows)[index].view(rows.dtype)


def concat_rows(parts: Sequence[npt.NDArray[np.void]]) -> npt.NDArray[np.void]:
    """Structured arrays of one dtype end to end, at memory speed."""
    return np.concatenate([raw_rows(p) for p in parts]).view(parts[0].dtype)
