"""Per customer server, what its traffic looked like in the last few minutes. Pure.

Flows are folded into buckets of ``bucket_seconds`` (60 s) of *arrival time* (the time the
caller passes in, not the exporter's flow timestamps, which active timeouts and clock skew
make unreliable), and a window is the last ``buckets`` buckets. Everything is numpy: a batch is
grouped with ``np.unique`` / ``np.lexsort`` / ``np.bincount``; Python only loops over measures
and buckets, never over flows.

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
bounds even without sampling. A few raw flows per server and class are kept as samples for the
evidence.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from abusedesk.traffic.decode.records import FLOW_DTYPE, V4_MAPPED, FlowArray

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

# Classes of sample flows.
SAMPLE_CLASSES = ("other_out", "syn", "amp_to", "amp_from", "smtp", "short_bf", "inbound")
SAMPLE_DTYPE = np.dtype(
    [("server", np.int64), ("rate", np.uint32), ("cls", np.uint8), ("flow", FLOW_DTYPE)]
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

    def __post_init__(self) -> None:
        if self.bucket_seconds <= 0 or self.buckets <= 0:
            raise ValueError("bucket_seconds and buckets must be positive")
        if self.contact_cap <= 0 or self.samples_per_class < 0:
            raise ValueError("contact_cap must be positive, samples_per_class not negative")


@dataclass(slots=True)
class _Bucket:
    start: int
    servers: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    measures: F64 = field(default_factory=lambda: np.zeros((0, len(MEASURES))))
    contacts: npt.NDArray[np.void] = field(default_factory=lambda: np.zeros(0, CONTACT_DTYPE))
    samples: npt.NDArray[np.void] = field(default_factory=lambda: np.zeros(0, SAMPLE_DTYPE))
    saturated: set[int] = field(default_factory=set)


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
    """The sliding windows of every server seen. Not thread-safe: the sink holds a lock."""

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
        if not (len(src) == len(dst) == len(flows)):
            raise ValueError("src_server and dst_server need one entry per flow")
        self.flows_seen += len(flows)
        if not len(flows):
            return
        self.foreign += int(np.count_nonzero((src < 0) & (dst < 0)))
        rates = flows["sampling_rate"].astype(np.float64)
        fallback = (
            np.full(len(flows), float(self.settings.default_sampling_rate))
            if default_rates is None
            else np.broadcast_to(np.asarray(default_rates, dtype=np.float64), (len(flows),))
        )
        rates = np.where(rates == 0, np.maximum(fallback, 1.0), rates)
        out_rows = np.flatnonzero(
            (src >= 0) & ~in_prefixes(flows["dst_hi"], flows["dst_lo"], self.allow_destinations)
        )
        in_rows = np.flatnonzero(
            (dst >= 0) & ~in_prefixes(flows["src_hi"], flows["src_lo"], self.allow_destinations)
        )
        rows = np.concatenate([out_rows, in_rows])
        if not len(rows):
            return
        edge = _Edges(
            flows[rows],
            np.concatenate([src[out_rows], dst[in_rows]]),
            np.concatenate([np.ones(len(out_rows), bool), np.zeros(len(in_rows), bool)]),
            rates[rows],
            self.settings.short_flow_packets,
        )
        start = self.bucket_start(now)
        bucket = self.buckets.setdefault(start, _Bucket(start))
        servers, matrix = edge.measures()
        bucket.servers, bucket.measures = _merge_measures(
            bucket.servers, bucket.measures, servers, matrix
        )
        contacts = np.concatenate([bucket.contacts, edge.contacts(start)])
        bucket.contacts, saturated = _reduce_contacts(contacts, self.settings.contact_cap)
        bucket.saturated |= saturated
        bucket.samples = _keep_samples(
            np.concatenate([bucket.samples, edge.samples()]), self.settings.samples_per_class
        )

    def servers(self, now: float) -> list[int]:
        """The servers with traffic in the window ending at ``now``."""
        self.expire(now)
        seen: set[int] = set()
        for bucket in self.buckets.values():
            seen.update(int(s) for s in bucket.servers)
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
            hit = np.flatnonzero(bucket.servers == server_id)
            if len(hit):
                measures[i] = bucket.measures[hit[0]]
            contacts.append(bucket.contacts[bucket.contacts["server"] == server_id])
            samples.append(bucket.samples[bucket.samples["server"] == server_id])
            saturated |= server_id in bucket.saturated
        return ServerWindow(
            server_id,
            size,
            starts,
            measures,
            np.concatenate(contacts) if contacts else np.zeros(0, CONTACT_DTYPE),
            np.concatenate(samples) if samples else np.zeros(0, SAMPLE_DTYPE),
            saturated,
        )


class _Edges:
    """A batch seen from our side: one row per (flow, our server, direction)."""

    def __init__(
        self,
        flows: FlowArray,
        server: I64,
        outbound: npt.NDArray[np.bool_],
        rates: F64,
        short_packets: int,
    ) -> None:
        self.flows, self.server, self.outbound, self.rates = flows, server, outbound, rates
        self.proto = flows["protocol"]
        flags = flows["tcp_flags"]
        self.tcp = self.proto == TCP
        self.udp = self.proto == UDP
        self.syn_only = self.tcp & ((flags & SYN) != 0) & ((flags & ACK) == 0)
        self.amp_to = self.udp & np.isin(flows["dst_port"], AMPLIFICATION_PORTS)
        self.amp_from = self.udp & np.isin(flows["src_port"], AMPLIFICATION_PORTS)
        self.smtp = self.tcp & (flows["dst_port"] == SMTP_PORT)
        self.short = flows["packets"] <= short_packets
        self.short_bf = self.tcp & np.isin(flows["dst_port"], BRUTE_FORCE_PORTS) & self.short
        # A probe opens nothing: a SYN without ACK, UDP from an ephemeral port, or ICMP. Replies
        # of a server (ACK set, or UDP from its service port) are not probes, so a busy web or
        # DNS server talking to many clients on their ephemeral ports does not look like a scan.
        self.probe = (
            self.syn_only
            | (self.udp & (flows["src_port"] >= 1024))
            | (self.proto == ICMP)
            | (self.proto == ICMP6)
        )
        self.weights = {
            "packets": flows["packets"].astype(np.float64) * rates,
            "bytes": flows["bytes"].astype(np.float64) * rates,
            "flows": rates,
        }

    def measures(self) -> tuple[I64, F64]:
        servers, inverse = np.unique(self.server, return_inverse=True)
        n = len(servers)
        matrix = np.zeros((n, len(MEASURES)))
        known = np.zeros(len(self.proto), bool)
        masks: dict[str, npt.NDArray[np.bool_]] = {"": np.ones(len(self.proto), bool)}
        for name, number in _PROTOS.items():
            masks[f"{name}_"] = self.proto == number
            known |= masks[f"{name}_"]
        masks["other_"] = ~known
        masks["amp_to_"], masks["amp_from_"] = self.amp_to, self.amp_from
        for side, on_side in (("out", self.outbound), ("in", ~self.outbound)):
            for prefix, mask in masks.items():
                for what, weight in self.weights.items():
                    column = MEASURE_INDEX[f"{side}_{prefix}{what}"]
                    matrix[:, column] = np.bincount(
                        inverse, weights=weight * (mask & on_side), minlength=n
                    )
            for what in ("flows", "packets"):
                matrix[:, MEASURE_INDEX[f"{side}_syn_{what}"]] = np.bincount(
                    inverse, weights=self.weights[what] * (self.syn_only & on_side), minlength=n
                )
        for name, mask in (("out_smtp_flows", self.smtp), ("out_short_bf_flows", self.short_bf)):
            matrix[:, MEASURE_INDEX[name]] = np.bincount(
                inverse, weights=self.rates * (mask & self.outbound), minlength=n
            )
        return servers, matrix

    def contacts(self, start: int) -> npt.NDArray[np.void]:
        f = self.flows
        parts = []
        for kind, rows, use_src, port in (
            (OUT, self.outbound, False, f["dst_port"]),
            (AMP_FROM, self.outbound & self.amp_from, False, f["src_port"]),
            (IN, ~self.outbound, True, f["dst_port"]),
        ):
            idx = np.flatnonzero(rows)
            c = np.zeros(len(idx), CONTACT_DTYPE)
            c["server"] = self.server[idx]
            c["hi"] = f["src_hi" if use_src else "dst_hi"][idx]
            c["lo"] = f["src_lo" if use_src else "dst_lo"][idx]
            c["port"] = port[idx]
            c["proto"] = self.proto[idx]
            c["kind"] = kind
            c["bucket"] = start
            for what in ("flows", "packets", "bytes"):
                c[what] = self.weights[what][idx]
            c["short"] = self.short[idx] * self.rates[idx]
            c["probe"] = self.probe[idx] * self.rates[idx]
            parts.append(c)
        return np.concatenate(parts)

    def samples(self) -> npt.NDArray[np.void]:
        cls = np.zeros(len(self.proto), np.uint8)  # other_out
        for number, mask in enumerate(
            (self.syn_only, self.amp_to, self.amp_from, self.smtp, self.short_bf), start=1
        ):
            cls = np.where((cls == 0) & mask, number, cls).astype(np.uint8)
        cls = np.where(self.outbound, cls, SAMPLE_CLASSES.index("inbound")).astype(np.uint8)
        s = np.zeros(len(cls), SAMPLE_DTYPE)
        s["server"], s["cls"], s["flow"] = self.server, cls, self.flows
        s["rate"] = self.rates.astype(np.uint32)
        return s


def _merge_measures(a_ids: I64, a: F64, b_ids: I64, b: F64) -> tuple[I64, F64]:
    ids = np.concatenate([a_ids, b_ids])
    servers, inverse = np.unique(ids, return_inverse=True)
    out = np.zeros((len(servers), len(MEASURES)))
    np.add.at(out, inverse, np.concatenate([a, b]))
    return servers, out


_CONTACT_KEY = ("port", "proto", "lo", "hi", "kind", "server")


def _run_starts(rows: npt.NDArray[np.void], keys: Sequence[str]) -> npt.NDArray[np.intp]:
    """Indices where a run of equal ``keys`` begins, in rows already sorted by them."""
    if not len(rows):
        return np.zeros(0, np.intp)
    change = np.zeros(len(rows), bool)
    change[0] = True
    for key in keys:
        change[1:] |= rows[key][1:] != rows[key][:-1]
    return np.flatnonzero(change)


def _reduce_contacts(
    contacts: npt.NDArray[np.void], cap: int
) -> tuple[npt.NDArray[np.void], set[int]]:
    """One row per key with summed volumes; at most ``cap`` rows per (server, kind)."""
    if not len(contacts):
        return contacts, set()
    ordered = contacts[np.lexsort([contacts[k] for k in _CONTACT_KEY])]
    starts = _run_starts(ordered, _CONTACT_KEY)
    reduced = ordered[starts]
    for what in ("flows", "packets", "bytes", "short", "probe"):
        reduced[what] = np.add.reduceat(ordered[what], starts)
    # heaviest first within each (server, kind), then keep the first `cap` of each group
    order = np.lexsort([-reduced["flows"], reduced["kind"], reduced["server"]])
    reduced = reduced[order]
    groups = _run_starts(reduced, ("server", "kind"))
    sizes = np.diff(np.append(groups, len(reduced)))
    rank = np.arange(len(reduced)) - np.repeat(groups, sizes)
    saturated = {int(s) for s in reduced["server"][groups[sizes > cap]]}
    return reduced[rank < cap], saturated


def _keep_samples(samples: npt.NDArray[np.void], per_class: int) -> npt.NDArray[np.void]:
    """The first ``per_class`` samples of each (server, class), in arrival order."""
    if not len(samples):
        return samples
    ordered = samples[np.lexsort([np.arange(len(samples)), samples["cls"], samples["server"]])]
    groups = _run_starts(ordered, ("server", "cls"))
    sizes = np.diff(np.append(groups, len(ordered)))
    rank = np.arange(len(ordered)) - np.repeat(groups, sizes)
    return ordered[rank < per_class]


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
