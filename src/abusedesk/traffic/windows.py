"""Per customer server, what its traffic looked like in the last few minutes. Pure.

Flows are folded into buckets of ``bucket_seconds`` (60 s) of *arrival time* (the time the
caller passes in, not the exporter's flow timestamps, which active timeouts and clock skew
make unreliable), and a window is the last ``buckets`` buckets. Everything is numpy; Python
only loops over measures and buckets, never over flows.

Direction comes from the address that is ours. The caller passes, per flow, the server id that
holds the source address and the one that holds the destination address (-1: not ours), from a
vectorised prefix lookup. A flow from one of our servers counts as *outbound* for it; a flow to
one of our servers as *inbound* for it; a flow between two of our servers counts both ways (each
from its own side); a flow where neither side is ours (transit) is counted in ``foreign`` and
otherwise ignored. The exporter's own direction flag is not used.

Volumes (packets, bytes, flows) are multiplied by the flow's sampling rate (a rate the exporter
has not said, 0, is taken as the caller's default). Distinct counts (destination addresses,
ports, SMTP destinations, reflectors) are *not* scaled: one sampled flow shows that the
destination was contacted, but an unsampled destination says nothing, and no factor turns the
seen ones into the true number. They are lower bounds: under 1:N sampling a server contacting
few destinations many times is still seen whole, one contacting many destinations once each is
undercounted. Thresholds on distinct counts should be set with that in mind.

Per bucket, a server's *contacts* are kept exactly, one row per (kind, protocol, remote address,
port) with summed volumes, up to ``contact_cap`` rows per server and kind; beyond the cap the
heaviest rows are kept and the window is marked ``saturated``: distinct counts are then lower
bounds even without sampling. A few raw flows per server and class (the first ones to arrive)
are kept as samples for the evidence.

Folding is lazy, because it is on the hot path and reading is not: :meth:`Windows.add` only
files the batch whole (its flows, their owners and default rates; transit flows are left out
when it is settled) under its bucket, a few array operations whatever its size. The bucket is
*settled* — measures, contacts and samples computed for every server at once — when read
(:meth:`Windows.servers`, :meth:`Windows.view`, i.e. when the detectors run, every
``detect_every`` seconds) or when ``pending_flows`` flows wait in it, which bounds the memory
held (about 100 bytes a flow). Settling goes ``_CHUNK`` flows at a time, so that its arrays stay
small and their memory is reused (fresh pages cost more than the arithmetic): per chunk the rows
of ours are grouped by server (one sort of a packed word; each server's rows keep their order),
then one ``bincount`` per weight over (server, class of flow) gives the measures, the first flows
of each (server, class) still short of samples are kept, and the contact rows are kept as a run,
not yet added up. The runs are merged with the rows settled before when the bucket is read, or
once they outnumber those rows, so that a bucket settled many times before it is read does not
sort its old rows again each time: one sort of a single 64-bit key (the server in the high bits,
then a hash of the contact's key, then the row: the rows come out grouped by server and then by
key, which a run already grouped by server makes cheap to gather), then the rows of one key are
added up and each server's capped. Merged contacts are kept as columns; the ``CONTACT_DTYPE``
rows a view returns are built for the whole bucket at its first view after a merge. Two different
keys of one server whose hashes agree (about one pair in a billion) would only keep one key on
two rows; every figure the detectors read is the same either way.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from abusedesk.traffic.decode.records import (
    FLOW_DTYPE,
    V4_MAPPED,
    FlowArray,
    concat_rows,
    raw_rows,
)

AMPLIFICATION_PORTS = (19, 53, 123, 161, 389, 1900, 3702, 11211)
BRUTE_FORCE_PORTS = (21, 22, 23, 3389)
SMTP_PORT = 25
TCP, UDP, ICMP, ICMP6 = 6, 17, 1, 58
SYN, ACK = 0x02, 0x10

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

# Kinds of contact rows.
OUT = 1  # outbound: remote = destination, port = destination port
AMP_FROM = 2  # outbound UDP from an amplification port: remote = destination, port = source port
IN = 3  # inbound: remote = source, port = destination port (ours)

CONTACT_DTYPE = np.dtype(
    [
        ("server", np.int64),
        ("hi", np.uint64),
        ("lo", np.uint64),
        ("flows", np.float64),
        ("packets", np.float64),
        ("bytes", np.float64),
        ("short", np.float64),  # short flows (see WindowSettings.short_flow_packets), scaled
        ("probe", np.float64),  # flows that look like probes (see _Edges), scaled
        ("bucket", np.int64),  # bucket start, epoch seconds
        ("port", np.uint16),
        ("kind", np.uint8),
        ("proto", np.uint8),
    ]
)

_SUMS = ("flows", "packets", "bytes", "short", "probe")
Columns = dict[str, npt.NDArray[Any]]
# Contact rows as a merge works on them, one array per column: "kpp" packs kind << 24 |
# proto << 16 | port, the key words it sorts on.
_CONTACT_COLUMNS: dict[str, type[np.generic]] = {
    "server": np.int64,
    "kpp": np.uint64,
    "hi": np.uint64,
    "lo": np.uint64,
    **{what: np.float64 for what in _SUMS},
}


def _no_contacts() -> Columns:
    return {k: np.zeros(0, t) for k, t in _CONTACT_COLUMNS.items()}


def _contact_records(c: Columns, start: int) -> npt.NDArray[np.void]:
    """Contact columns as CONTACT_DTYPE rows of the bucket starting at ``start``."""
    kpp = c["kpp"]
    out = np.empty(len(kpp), CONTACT_DTYPE)  # every field is set below
    for k in ("server", "hi", "lo", *_SUMS):
        out[k] = c[k]
    out["kind"] = kpp >> np.uint64(24)
    out["proto"] = (kpp >> np.uint64(16)) & np.uint64(0xFF)
    out["port"] = kpp & np.uint64(0xFFFF)
    out["bucket"] = start
    return out


def _contact_columns(records: npt.NDArray[np.void]) -> Columns:
    kpp = records["kind"].astype(np.uint64) << np.uint64(24)
    kpp |= records["proto"].astype(np.uint64) << np.uint64(16)
    kpp |= records["port"]
    return {"kpp": kpp, **{k: records[k] for k in ("server", "hi", "lo", *_SUMS)}}


# Classes of sample flows.
SAMPLE_CLASSES = ("other_out", "syn", "amp_to", "amp_from", "smtp", "short_bf", "inbound")
SAMPLE_DTYPE = np.dtype(
    [("server", np.int64), ("rate", np.uint32), ("cls", np.uint8), ("flow", FLOW_DTYPE)]
)

# SAMPLE_DTYPE with its flow (the last field) as plain bytes
_SAMPLE_BYTES = np.dtype(
    {
        "names": ["flow"],
        "formats": [f"V{FLOW_DTYPE.itemsize}"],
        "offsets": [SAMPLE_DTYPE.itemsize - FLOW_DTYPE.itemsize],
        "itemsize": SAMPLE_DTYPE.itemsize,
    }
)

_PROTOS = {"tcp": TCP, "udp": UDP, "icmp": ICMP}


def _measure_names() -> tuple[str, ...]:
    names = []
    for side in ("out", "in"):
        for what in ("packets", "bytes", "flows"):
            names.append(f"{side}_{what}")
        for proto in (*_PROTOS, "other"):
            for what in ("packets", "bytes", "flows"):
                names.append(f"{side}_{proto}_{what}")
        names += [f"{side}_syn_flows", f"{side}_syn_packets"]
        for what in ("packets", "bytes", "flows"):
            names += [f"{side}_amp_to_{what}", f"{side}_amp_from_{what}"]
    names += ["out_smtp_flows", "out_short_bf_flows"]
    return tuple(names)


MEASURES: tuple[str, ...] = _measure_names()
MEASURE_INDEX = {name: i for i, name in enumerate(MEASURES)}


@dataclass(frozen=True, slots=True)
class WindowSettings:
    bucket_seconds: int = 60
    buckets: int = 5
    contact_cap: int = 20_000  # rows kept per server, kind and bucket
    samples_per_class: int = 5  # raw flows kept per server, sample class and bucket
    short_flow_packets: int = 30  # a flow of at most this many packets (as exported) is short
    default_sampling_rate: int = 1  # for flows whose exporter has not said its rate
    pending_flows: int = 1_000_000  # a bucket is settled once this many flows wait in it

    def __post_init__(self) -> None:
        if self.bucket_seconds <= 0 or self.buckets <= 0:
            raise ValueError("bucket_seconds and buckets must be positive")
        if self.contact_cap <= 0 or self.samples_per_class < 0:
            raise ValueError("contact_cap must be positive, samples_per_class not negative")
        if self.pending_flows <= 0:
            raise ValueError("pending_flows must be positive")


@dataclass(frozen=True, slots=True)
class _Batch:
    """Flows filed by :meth:`Windows.add`, not yet settled."""

    flows: FlowArray
    src: I64
    dst: I64
    default_rates: F64 | None


@dataclass(slots=True)
class _Bucket:
    """One bucket: settled figures, sorted by server, plus the batches waiting to be settled."""

    start: int
    servers: I64 = field(default_factory=lambda: np.zeros(0, np.int64))  # sorted ids
    measures: F64 = field(default_factory=lambda: np.zeros((0, len(MEASURES))))
    # Merged contact rows, grouped by server, in one of two forms: columns as a merge leaves
    # them, or CONTACT_DTYPE rows from the first view on, built then for the whole bucket at
    # once (per server, as views ask, the numpy calls would cost several times more).
    contacts: Columns | None = field(default_factory=_no_contacts)
    contact_records: npt.NDArray[np.void] | None = None
    contact_ends: I64 = field(default_factory=lambda: np.zeros(0, np.int64))  # per server
    samples: npt.NDArray[np.void] = field(default_factory=lambda: np.zeros(0, SAMPLE_DTYPE))
    sample_ends: I64 = field(default_factory=lambda: np.zeros(0, np.int64))  # per server
    saturated: set[int] = field(default_factory=set)
    pending: list[_Batch] = field(default_factory=list)
    pending_flows: int = 0
    # Contact rows settled but not yet merged into ``contacts`` (columns as there, not yet
    # added up nor grouped): merged when the bucket is read, or once they outnumber it.
    runs: list[Columns] = field(default_factory=list)
    run_rows: int = 0

    def records(self) -> npt.NDArray[np.void]:
        """The merged contacts as CONTACT_DTYPE rows."""
        if self.contact_records is None:
            assert self.contacts is not None
            self.contact_records, self.contacts = _contact_records(self.contacts, self.start), None
        return self.contact_records

    def columns(self) -> Columns:
        """The merged contacts as columns."""
        if self.contacts is None:
            assert self.contact_records is not None
            self.contacts, self.contact_records = _contact_columns(self.contact_records), None
        return self.contacts

    def contact_servers(self) -> I64:
        if self.contacts is None:
            assert self.contact_records is not None
            return self.contact_records["server"]
        return self.contacts["server"]

    def rows_of(self, server_id: int) -> tuple[int, slice, slice] | None:
        """(index into servers, contact rows, sample rows) of a server, or None."""
        i = int(np.searchsorted(self.servers, server_id))
        if i >= len(self.servers) or self.servers[i] != server_id:
            return None
        c0 = int(self.contact_ends[i - 1]) if i else 0
        s0 = int(self.sample_ends[i - 1]) if i else 0
        return i, slice(c0, int(self.contact_ends[i])), slice(s0, int(self.sample_ends[i]))


@dataclass(frozen=True, slots=True)
class ServerWindow:
    """One server's figures over the window: per bucket, oldest first, empty buckets included."""

    server_id: int
    bucket_seconds: int
    starts: I64  # bucket starts, epoch seconds
    measures: F64  # (buckets, len(MEASURES)), summed over each bucket
    contacts: npt.NDArray[np.void]  # CONTACT_DTYPE rows of this server, all buckets
    samples: npt.NDArray[np.void]  # SAMPLE_DTYPE rows of this server
    saturated: bool  # some bucket hit contact_cap: distinct counts are lower bounds

    def total(self, measure: str) -> F64:
        """Per bucket, the sum of ``measure``."""
        return self.measures[:, MEASURE_INDEX[measure]]

    def rate(self, measure: str) -> F64:
        """Per bucket, ``measure`` per second."""
        return self.total(measure) / self.bucket_seconds

    def bucket_of(self, contacts: npt.NDArray[np.void]) -> I64:
        """Index into ``starts`` of each contact row."""
        return np.searchsorted(self.starts, contacts["bucket"]).astype(np.int64)


@dataclass(slots=True)
class Windows:
    """The sliding windows of every server seen. Not thread-safe: the sink holds a lock.

    :meth:`add` keeps references to the arrays it is given until their bucket is settled: the
    caller must not change them afterwards (the collector never does; it decodes every batch
    into new arrays).
    """

    settings: WindowSettings = field(default_factory=WindowSettings)
    allow_destinations: Sequence[str] = ()  # remote prefixes whose traffic is not counted
    buckets: dict[int, _Bucket] = field(default_factory=dict)
    foreign: int = 0  # flows where neither address is ours
    flows_seen: int = 0

    def bucket_start(self, now: float) -> int:
        size = self.settings.bucket_seconds
        return int(now // size) * size

    def expire(self, now: float) -> None:
        oldest = self.bucket_start(now) - (self.settings.buckets - 1) * self.settings.bucket_seconds
        for start in [s for s in self.buckets if s < oldest]:
            del self.buckets[start]

    def add(
        self,
        flows: FlowArray,
        src_server: npt.ArrayLike,
        dst_server: npt.ArrayLike,
        now: float,
        default_rates: npt.ArrayLike | None = None,
    ) -> None:
        """Fold a decoded batch in, at ``now`` (epoch seconds).

        ``src_server`` / ``dst_server``: per flow, the server holding that address, -1 if none.
        ``default_rates``: per flow, the sampling rate to assume where the flow says 0.
        """
        self.expire(now)
        src = np.asarray(src_server, dtype=np.int64)
        dst = np.asarray(dst_server, dtype=np.int64)
        n = len(flows)
        if not (len(src) == len(dst) == n):
            raise ValueError("src_server and dst_server need one entry per flow")
        self.flows_seen += n
        if not n:
            return
        defaults = None
        if default_rates is not None:
            defaults = np.broadcast_to(np.asarray(default_rates, dtype=np.float64), (n,))
        ours = (src >= 0) | (dst >= 0)
        kept = int(np.count_nonzero(ours))
        self.foreign += n - kept
        if not kept:
            return
        # Filed whole: settling looks at each side's owner anyway, and a copy of the rows of
        # ours would cost more here than the transit rows cost there.
        start = self.bucket_start(now)
        bucket = self.buckets.get(start)
        if bucket is None:
            bucket = self.buckets[start] = _Bucket(start)
        bucket.pending.append(_Batch(flows, src, dst, defaults))
        bucket.pending_flows += n
        if bucket.pending_flows >= self.settings.pending_flows:
            self._settle(bucket)

    def servers(self, now: float) -> list[int]:
        """The servers with traffic in the window ending at ``now``."""
        self.expire(now)
        seen: set[int] = set()
        for bucket in self.buckets.values():
            self._settle(bucket, read=True)
            seen.update(bucket.servers.tolist())
        return sorted(seen)

    def view(self, server_id: int, now: float) -> ServerWindow:
        """``server_id``'s figures in the window ending at ``now``."""
        self.expire(now)
        size = self.settings.bucket_seconds
        last = self.bucket_start(now)
        starts = np.arange(
            last - (self.settings.buckets - 1) * size, last + 1, size, dtype=np.int64
        )
        measures = np.zeros((len(starts), len(MEASURES)))
        contacts, samples = [], []
        saturated = False
        for i, start in enumerate(starts):
            bucket = self.buckets.get(int(start))
            if bucket is None:
                continue
            self._settle(bucket, read=True)
            found = bucket.rows_of(server_id)
            if found is None:
                continue
            row, contact_rows, sample_rows = found
            measures[i] = bucket.measures[row]
            contacts.append(bucket.records()[contact_rows])
            samples.append(bucket.samples[sample_rows])
            saturated |= server_id in bucket.saturated
        return ServerWindow(
            server_id,
            size,
            starts,
            measures,
            concat_rows(contacts) if contacts else np.zeros(0, CONTACT_DTYPE),
            concat_rows(samples) if samples else np.zeros(0, SAMPLE_DTYPE),
            saturated,
        )

    def _settle(self, bucket: _Bucket, read: bool = False) -> None:
        """Fold the bucket's pending batches into its figures; when it is to be ``read``, also
        merge its contact runs."""
        if bucket.pending:
            batches, bucket.pending, bucket.pending_flows = bucket.pending, [], 0
            _Settler(bucket, batches, self.settings, self.allow_destinations).run()
        merged = len(bucket.contact_servers())
        if bucket.runs and (read or bucket.run_rows >= max(merged, _MERGE_ROWS)):
            _merge_runs(bucket, self.settings.contact_cap)


# --------------------------------------------------------------------------- settling

# Classes of a flow for the measures, as bits of one code: bit 0 outbound, bits 1-2 the
# protocol (tcp, udp, icmp, other), then SYN-only, to an amplification port, from one, to
# SMTP, short to a brute-force port.
_OUT_BIT, _SYN_BIT, _AMP_TO_BIT, _AMP_FROM_BIT, _SMTP_BIT, _BF_BIT = 1, 8, 16, 32, 64, 128
_PROTO_CLASS = np.full(256, 3, np.uint8)
for _i, _number in enumerate(_PROTOS.values()):
    _PROTO_CLASS[_number] = _i
_AMP_PORT = np.zeros(65536, bool)
_AMP_PORT[list(AMPLIFICATION_PORTS)] = True
_BF_PORT = np.zeros(65536, bool)
_BF_PORT[list(BRUTE_FORCE_PORTS)] = True
_WEIGHTS = ("packets", "bytes", "flows")


def _code_measures() -> F64:
    """(code, weight) -> the measures a flow of that class adds that weight to."""
    names = [*_PROTOS, "other"]
    table = np.zeros((256, len(_WEIGHTS), len(MEASURES)))
    for code in range(256):
        side = "out" if code & _OUT_BIT else "in"
        proto = names[(code >> 1) & 3]
        for w, what in enumerate(_WEIGHTS):
            hit = [f"{side}_{what}", f"{side}_{proto}_{what}"]
            if code & _SYN_BIT and what != "bytes":
                hit.append(f"{side}_syn_{what}")
            if code & _AMP_TO_BIT:
                hit.append(f"{side}_amp_to_{what}")
            if code & _AMP_FROM_BIT:
                hit.append(f"{side}_amp_from_{what}")
            if side == "out" and what == "flows":
                hit += ["out_smtp_flows"] * bool(code & _SMTP_BIT)
                hit += ["out_short_bf_flows"] * bool(code & _BF_BIT)
            for name in hit:
                table[code, w, MEASURE_INDEX[name]] = 1.0
    return table


def _code_classes() -> npt.NDArray[np.uint8]:
    """code -> sample class: the first of syn, amp_to, amp_from, smtp, short_bf that holds."""
    out = np.zeros(256, np.uint8)
    bits = (_SYN_BIT, _AMP_TO_BIT, _AMP_FROM_BIT, _SMTP_BIT, _BF_BIT)
    for code in range(256):
        if not code & _OUT_BIT:
            out[code] = SAMPLE_CLASSES.index("inbound")
            continue
        out[code] = next((k for k, bit in enumerate(bits, start=1) if code & bit), 0)
    return out


def _possible_codes() -> list[int]:
    """The codes a flow can have: SYN-only, SMTP and brute force are TCP's, the amplification
    bits UDP's, and no port is both SMTP's and a brute-force one."""
    codes = []
    for out in (0, _OUT_BIT):
        codes += [
            out | 0 << 1 | syn | extra for syn in (0, _SYN_BIT) for extra in (0, _SMTP_BIT, _BF_BIT)
        ]
        codes += [out | 1 << 1 | to | frm for to in (0, _AMP_TO_BIT) for frm in (0, _AMP_FROM_BIT)]
        codes += [out | 2 << 1, out | 3 << 1]
    return codes


_CODE_MEASURES = _code_measures()
_CODE_CLASS = _code_classes()
_CODES = _possible_codes()
_SLOTS = len(_CODES)
_SLOT = np.zeros(256, np.int64)
_SLOT[_CODES] = np.arange(_SLOTS)
# (slot, weight) -> measures, in the layout _Settler adds up
_SLOT_MEASURES = _CODE_MEASURES[_CODES].reshape(_SLOTS * len(_WEIGHTS), len(MEASURES))


def _stable_order(keys: I64, top: int) -> tuple[I64, I64]:
    """``keys`` (each 0..``top``) sorted, and their rows in that order, ties in row order: one
    sort of key and row packed in a word, of 32 bits where they fit (it sorts twice as fast)."""
    n = len(keys)
    ibits = max(1, (n - 1).bit_length())
    bits = max(1, top.bit_length()) + ibits
    if bits > 64:
        order = np.argsort(keys, kind="stable")
        return np.take(keys, order), order
    packed: npt.NDArray[np.unsignedinteger[Any]] = keys.astype(
        np.uint32 if bits <= 32 else np.uint64
    )
    packed <<= ibits
    packed |= np.arange(n).astype(packed.dtype)
    packed.sort()
    sorted_keys = (packed >> ibits).astype(np.int64)
    packed &= (1 << ibits) - 1
    return sorted_keys, packed.astype(np.int64)


class _Edges:
    """Pending batches seen from our side: one row per (flow, our server, direction), grouped
    by server in id order, each server's rows in the order of the batches: outbound rows
    first, each part in arrival order.

    Grouped so that the merge, which orders every contact row by server, reads each server's
    rows from a few short stretches rather than from all over: gathering through that order
    costs a fraction of a random one. What is added up comes out the same either way: rows of
    one server keep their order."""

    def __init__(
        self,
        flows: FlowArray,
        server: I64,
        d: I64,
        outbound: npt.NDArray[np.bool_],
        rates: F64,
        short_packets: int,
    ) -> None:
        """``flows``: the flow of each row; ``d``: the dense index of its server."""
        self.flows, self.server, self.d, self.rates = flows, server, d, rates
        self.outbound = outbound
        proto = self.proto = flows["protocol"].copy()
        src_port = self.src_port = flows["src_port"].copy()
        dst_port = self.dst_port = flows["dst_port"].copy()
        packets = flows["packets"]
        tcp, udp = proto == TCP, proto == UDP
        syn_only = tcp & ((flows["tcp_flags"] & (SYN | ACK)) == SYN)
        amp_from = udp & _AMP_PORT[src_port]
        self.short = packets <= short_packets
        self.probe = syn_only | (udp & (src_port >= 1024)) | (proto == ICMP) | (proto == ICMP6)
        code = _PROTO_CLASS[proto] << 1
        code |= outbound.view(np.uint8)  # _OUT_BIT
        code |= syn_only.view(np.uint8) * np.uint8(_SYN_BIT)
        code |= (udp & _AMP_PORT[dst_port]).view(np.uint8) * np.uint8(_AMP_TO_BIT)
        code |= amp_from.view(np.uint8) * np.uint8(_AMP_FROM_BIT)
        code |= (tcp & (dst_port == SMTP_PORT)).view(np.uint8) * np.uint8(_SMTP_BIT)
        code |= (tcp & _BF_PORT[dst_port] & self.short).view(np.uint8) * np.uint8(_BF_BIT)
        self.code = code
        amp_from &= outbound
        self.amp_from = amp_from
        self.packets = packets * rates
        self.bytes = flows["bytes"] * rates
        # the remote address: the destination of an outbound row, the source of an inbound one
        self.hi = np.where(outbound, flows["dst_hi"], flows["src_hi"])
        self.lo = np.where(outbound, flows["dst_lo"], flows["src_lo"])

    @classmethod
    def of(
        cls,
        batches: list[_Batch],
        settings: WindowSettings,
        allow: Sequence[str],
        ids: _ServerMap,
    ) -> _Edges | None:
        if len(batches) == 1:
            flows, src, dst = batches[0].flows, batches[0].src, batches[0].dst
        else:
            flows = concat_rows([b.flows for b in batches])
            src = np.concatenate([b.src for b in batches])
            dst = np.concatenate([b.dst for b in batches])
        out_ok = src >= 0
        in_ok = dst >= 0
        if allow:
            out_ok &= ~in_prefixes(flows["dst_hi"], flows["dst_lo"], allow)
            in_ok &= ~in_prefixes(flows["src_hi"], flows["src_lo"], allow)
        out_rows, in_rows = np.flatnonzero(out_ok), np.flatnonzero(in_ok)
        n_out, n = len(out_rows), len(out_rows) + len(in_rows)
        if not n:
            return None
        server = np.concatenate([src[out_rows], dst[in_rows]])
        d, at = _stable_order(ids.dense(server), len(ids.servers))
        rows = np.concatenate([out_rows, in_rows])
        np.take(rows, at, out=rows)
        server = np.take(server, at)
        outbound = at < n_out
        # rows taken whole, as bytes, and their fields read in order: cheaper than a gather
        # per field
        edge_flows = np.take(raw_rows(flows), rows).view(FLOW_DTYPE)
        said = edge_flows["sampling_rate"]
        unsaid = said == 0
        if not unsaid.any():
            rates = said.astype(np.float64)
        else:
            fallback = np.concatenate(
                [
                    np.full(len(b.flows), float(settings.default_sampling_rate))
                    if b.default_rates is None
                    else b.default_rates
                    for b in batches
                ]
            )
            rates = np.maximum(fallback[rows], 1.0)
            if not unsaid.all():
                rates = np.where(unsaid, rates, said)
        return cls(edge_flows, server, d, outbound, rates, settings.short_flow_packets)

    def contacts(self) -> Columns:
        """Contact rows, not yet added up: each row as OUT or IN, and the outbound UDP rows
        from an amplification port once more as AMP_FROM (port: the source port)."""
        rates = self.rates
        kpp = self.proto.astype(np.uint64)
        kpp <<= np.uint64(16)
        kpp |= self.dst_port
        kind = np.where(self.outbound, np.uint64(OUT << 24), np.uint64(IN << 24))
        kpp |= kind
        run = {
            "server": self.server,
            "kpp": kpp,
            "hi": self.hi,
            "lo": self.lo,
            "flows": rates,
            "packets": self.packets,
            "bytes": self.bytes,
            "short": self.short * rates,
            "probe": self.probe * rates,
        }
        amp = np.flatnonzero(self.amp_from)
        if not len(amp):  # the usual case, and then no column is copied
            return run
        amp_kpp = self.proto[amp].astype(np.uint64) << np.uint64(16)
        amp_kpp |= self.src_port[amp]
        amp_kpp |= np.uint64(AMP_FROM << 24)
        return {k: np.concatenate([v, amp_kpp if k == "kpp" else v[amp]]) for k, v in run.items()}


def _ends(servers_of_rows: I64, servers: I64) -> I64:
    """Per server, one past its last row, for rows grouped by server in ``servers``' order."""
    return np.searchsorted(servers_of_rows, servers, side="right").astype(np.int64)


class _ServerMap:
    """Server ids to dense indices 0..S-1, in id order."""

    def __init__(self, servers: I64, rows: int) -> None:
        """``servers``: sorted distinct ids; ``rows``: about how many ids will be looked up."""
        self.servers = servers
        top = int(servers[-1]) if len(servers) else -1
        self._index: I64 | None = None
        if top < 4 * rows + 65536:  # a table is cheaper than a search
            self._index = np.zeros(top + 1, np.int64)
            self._index[servers] = np.arange(len(servers))

    @classmethod
    def of(cls, arrays: Sequence[I64]) -> _ServerMap:
        """The ids found in ``arrays``, where -1 (not ours) is left out."""
        top = max((int(a.max()) for a in arrays if len(a)), default=-1)
        rows = sum(len(a) for a in arrays)
        if top < 4 * rows + 65536:
            # marked one place up, -1 at 0: several times faster than a[a >= 0] or a
            # negative index
            present = np.zeros(top + 2, bool)
            for a in arrays:
                present[a + 1] = True
            servers = np.flatnonzero(present[1:]).astype(np.int64)
        else:
            servers = np.unique(np.concatenate([np.unique(a) for a in arrays]))
            servers = servers[servers >= 0].astype(np.int64)
        return cls(servers, rows)

    def dense(self, ids: I64) -> I64:
        if self._index is not None:
            return self._index[ids]
        return np.searchsorted(self.servers, ids).astype(np.int64)


_MIX = (
    np.uint64(0x9E3779B97F4A7C15),
    np.uint64(0xC2B2AE3D27D4EB4F),
    np.uint64(0x165667B19E3779F9),
    np.uint64(0xFF51AFD7ED558CCD),
)


def _hash(
    k1: npt.NDArray[np.uint64], hi: npt.NDArray[np.uint64], lo: npt.NDArray[np.uint64]
) -> npt.NDArray[np.uint64]:
    h = k1 * _MIX[0]
    h ^= hi * _MIX[1]
    h ^= lo * _MIX[2]
    h ^= h >> np.uint64(31)
    h *= _MIX[3]
    h ^= h >> np.uint64(29)
    return h


_KPP_BITS = 26  # kind, protocol, port


def _reduce(c: Columns, d: I64) -> tuple[Columns, I64]:
    """One row per (server, kpp, hi, lo) with the sums added up, grouped by server (``d``, its
    dense index) in increasing order; and the dense index of each row."""
    n = len(d)
    if not n:
        return c, d
    kpp, hi, lo = c["kpp"], c["hi"], c["lo"]
    k1 = d.astype(np.uint64)
    k1 <<= np.uint64(_KPP_BITS)
    k1 |= kpp
    dbits = max(1, int(d[-1] if _ascending(d) else d.max()).bit_length())
    ibits = max(1, (n - 1).bit_length())
    hbits = 64 - dbits - ibits
    if hbits >= 20:
        # server in the high bits, then the key's hash, then the row: one sort of one word
        key = _hash(k1, hi, lo)
        key >>= np.uint64(64 - hbits)
        key <<= np.uint64(ibits)
        key |= np.arange(n, dtype=np.uint64)
        key |= d.astype(np.uint64) << np.uint64(64 - dbits)
        key.sort()
        key &= np.uint64((1 << ibits) - 1)
        order = key.view(np.int64)
    else:  # too many rows or servers for a packed key: sort exactly
        low = kpp & np.uint64((1 << 24) - 1)  # proto, port
        order = np.lexsort([low, lo, hi, kpp >> np.uint64(24), d])
    # k1 holds the server too, so rows of two servers never look alike; np.take rather than
    # fancy indexing, which is slower
    k1s, his, los = np.take(k1, order), np.take(hi, order), np.take(lo, order)
    new = np.empty(n, bool)
    new[0] = True
    new[1:] = k1s[1:] != k1s[:-1]
    new[1:] |= his[1:] != his[:-1]
    new[1:] |= los[1:] != los[:-1]
    starts = np.flatnonzero(new)
    if len(starts) == n:  # nothing to add up
        out = {"hi": his, "lo": los, **{what: np.take(c[what], order) for what in _SUMS}}
    else:
        group = np.empty(n, np.int64)
        group[order] = np.cumsum(new) - 1
        k1s = k1s[starts]
        out = {"hi": his[starts], "lo": los[starts]}
        for what in _SUMS:
            out[what] = np.bincount(group, weights=c[what], minlength=len(starts))
    out["kpp"] = k1s & np.uint64((1 << _KPP_BITS) - 1)
    k1s >>= np.uint64(_KPP_BITS)
    return out, k1s.view(np.int64)


def _ranks(sorted_keys: I64) -> I64:
    """Each item's place (0, 1, …) among the items of its key, for keys in sorted order."""
    n = len(sorted_keys)
    at = np.arange(n)
    if not n:
        return at
    # the place of each run's first item, carried forward over the run
    first = np.empty(n, np.int64)
    first[0] = 0
    np.multiply(at[1:], sorted_keys[1:] != sorted_keys[:-1], out=first[1:])
    np.maximum.accumulate(first, out=first)
    at -= first
    return at


def _ascending(values: I64) -> bool:
    return bool(len(values) < 2 or (values[1:] >= values[:-1]).all())


def _cap(c: Columns, d: I64, cap: int) -> tuple[Columns, I64, I64]:
    """At most ``cap`` rows per (server, kind), the heaviest; the rows are grouped by server
    (``d``, its dense index) in increasing order, and stay so. Also the dense indices of the
    servers that had more."""
    kind = (c["kpp"] >> np.uint64(24)).astype(np.int64)
    group = d * 4 + kind
    over = np.flatnonzero(np.bincount(group) > cap)
    if not len(over):
        return c, d, over
    crowded = np.flatnonzero(np.isin(group, over))
    proto_port = c["kpp"][crowded] & np.uint64((1 << 24) - 1)
    flows, hi, lo = c["flows"][crowded], c["hi"][crowded], c["lo"][crowded]
    # heaviest first, ties by key, as a reduction over all the rows would rank them
    order = np.lexsort([proto_port, lo, hi, -flows, group[crowded]])
    rank = _ranks(group[crowded][order])
    keep = np.ones(len(d), bool)
    keep[crowded[order[rank >= cap]]] = False
    return {k: v[keep] for k, v in c.items()}, d[keep], np.unique(over // 4)


_CHUNK = 1 << 16  # flows settled at a time: their arrays stay small and their memory reused


class _Settler:
    """Settles one bucket's pending batches, a chunk of flows at a time: measures and samples
    are added up as it goes, contacts left as runs, added up when merged (see _merge_runs)."""

    def __init__(
        self,
        bucket: _Bucket,
        batches: list[_Batch],
        settings: WindowSettings,
        allow: Sequence[str],
    ) -> None:
        self.bucket, self.batches, self.settings, self.allow = bucket, batches, settings, allow
        self.map = _ServerMap.of(
            [b.src for b in batches] + [b.dst for b in batches] + [bucket.servers]
        )
        n = len(self.map.servers)
        self.seen = np.zeros(n, bool)
        self.seen[self.map.dense(bucket.servers)] = True
        self.sums = np.zeros((len(_WEIGHTS), n * _SLOTS))
        self.runs: list[Columns] = []
        old = bucket.samples
        self.taken = np.bincount(self.map.dense(old["server"]) * 8 + old["cls"], minlength=n * 8)
        self.samples: list[npt.NDArray[np.void]] = [old]
        self.sample_keys: list[I64] = [self.map.dense(old["server"]) * 8 + old["cls"]]

    def run(self) -> None:
        group: list[_Batch] = []
        size = 0
        for batch in self.batches:
            group.append(batch)
            size += len(batch.flows)
            if size >= _CHUNK:
                self._chunk(group)
                group, size = [], 0
        if group:
            self._chunk(group)
        self._finish()

    def _chunk(self, group: list[_Batch]) -> None:
        edges = _Edges.of(group, self.settings, self.allow, self.map)
        if edges is None:
            return
        d = edges.d
        self.seen[d] = True
        key = d * _SLOTS + _SLOT[edges.code]
        size = self.sums.shape[1]
        for i, w in enumerate((edges.packets, edges.bytes, edges.rates)):
            self.sums[i] += np.bincount(key, weights=w, minlength=size)
        self.runs.append(edges.contacts())  # added up once, when merged
        self._sample(edges, d)

    def _sample(self, edges: _Edges, d: I64) -> None:
        """The first flows of each (server, class) while it has fewer than samples_per_class."""
        per_class = self.settings.samples_per_class
        keys = d * 8 + _CODE_CLASS[edges.code]
        wanted = np.flatnonzero(self.taken[keys] < per_class)
        if not len(wanted):
            return
        sorted_keys, by_key = _stable_order(keys[wanted], len(self.taken))
        # each row's place among the samples of its (server, class), those taken before first
        at = _ranks(sorted_keys)
        at += self.taken[sorted_keys]
        e = wanted[by_key[at < per_class]]
        chosen = keys[e]
        np.add.at(self.taken, chosen, 1)
        rows = np.empty(len(e), SAMPLE_DTYPE)  # every byte is set below
        rows["server"] = edges.server[e]
        rows["cls"] = chosen % 8
        rows["rate"] = edges.rates[e].astype(np.uint32)
        # as bytes: numpy copies a structured field into another one field by field, far slower
        rows.view(_SAMPLE_BYTES)["flow"] = np.take(raw_rows(edges.flows), e)
        self.samples.append(rows)
        self.sample_keys.append(chosen)

    def _finish(self) -> None:
        bucket, servers = self.bucket, self.map.servers
        n = len(servers)
        matrix = self.sums.reshape(len(_WEIGHTS), n, _SLOTS).transpose(1, 2, 0).reshape(n, -1)
        measures = matrix @ _SLOT_MEASURES
        if len(bucket.servers):
            measures[self.map.dense(bucket.servers)] += bucket.measures
        for run in self.runs:
            bucket.runs.append(run)
            bucket.run_rows += len(run["server"])
        keys = np.concatenate(self.sample_keys)
        # by server, class, arrival
        _, order = _stable_order(keys, len(self.taken))
        samples = np.take(raw_rows(concat_rows(self.samples)), order).view(SAMPLE_DTYPE)
        keep = self.seen
        bucket.servers, bucket.measures = servers[keep], measures[keep]
        bucket.samples = samples
        bucket.contact_ends = _ends(bucket.contact_servers(), bucket.servers)
        bucket.sample_ends = _ends(samples["server"], bucket.servers)


_MERGE_ROWS = 1 << 20  # unmerged contact rows a bucket holds at least before merging unread


def _merge_runs(bucket: _Bucket, cap: int) -> None:
    """Merge the bucket's contact runs into its contacts, at most ``cap`` rows per server and
    kind. Merging only when read, or when the runs outnumber the merged rows, keeps each row's
    share of the sorting bounded however many times the bucket is settled before it is read."""
    runs = bucket.runs
    if len(bucket.contact_servers()):
        runs = [bucket.columns(), *runs]
    bucket.runs, bucket.run_rows = [], 0
    if len(runs) == 1:
        cols = runs[0]
    else:
        cols = {k: np.concatenate([r[k] for r in runs]) for k in _CONTACT_COLUMNS}
    # every server with a contact row is in bucket.servers, and every one there has one
    ids = _ServerMap(bucket.servers, len(cols["server"]))
    contacts, d = _reduce(cols, ids.dense(cols["server"]))
    ends = np.cumsum(np.bincount(d, minlength=len(bucket.servers)))
    if len(ends) and int(np.diff(ends, prepend=0).max()) > cap:
        contacts, d, over = _cap(contacts, d, cap)
        bucket.saturated.update(bucket.servers[over].tolist())
        ends = np.cumsum(np.bincount(d, minlength=len(bucket.servers)))
    contacts["server"] = bucket.servers[d]
    bucket.contacts, bucket.contact_records = contacts, None
    bucket.contact_ends = ends


def _bounds(prefix: str) -> tuple[int, int]:
    network = ipaddress.ip_network(prefix)
    first, last = int(network.network_address), int(network.broadcast_address)
    if network.version == 4:
        first, last = V4_MAPPED | first, V4_MAPPED | last
    return first, last


def in_prefixes(
    hi: npt.NDArray[np.uint64], lo: npt.NDArray[np.uint64], prefixes: Sequence[str]
) -> npt.NDArray[np.bool_]:
    """Whether each 128-bit address (as the decoders store it) lies in one of ``prefixes``."""
    found = np.zeros(len(hi), bool)
    for prefix in prefixes:
        first, last = _bounds(prefix)
        f_hi, f_lo = np.uint64(first >> 64), np.uint64(first & 0xFFFF_FFFF_FFFF_FFFF)
        l_hi, l_lo = np.uint64(last >> 64), np.uint64(last & 0xFFFF_FFFF_FFFF_FFFF)
        above = (hi > f_hi) | ((hi == f_hi) & (lo >= f_lo))
        below = (hi < l_hi) | ((hi == l_hi) & (lo <= l_lo))
        found |= above & below
    return found


def is_v4(hi: npt.ArrayLike, lo: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Whether 128-bit addresses are IPv4-mapped."""
    hi, lo = np.asarray(hi, np.uint64), np.asarray(lo, np.uint64)
    return (hi == 0) & ((lo >> np.uint64(32)) == np.uint64(V4_MAPPED >> 32))


def address_of(hi: int, lo: int) -> str:
    """A 128-bit address of a contact row as text."""
    if bool(is_v4(hi, lo)):
        return str(ipaddress.IPv4Address(int(lo) & 0xFFFF_FFFF))
    return str(ipaddress.IPv6Address((int(hi) << 64) | int(lo)))
