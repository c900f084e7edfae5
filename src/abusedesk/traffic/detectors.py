"""Detectors over one server's traffic window. Pure: figures and thresholds in, detections out.

Each detector looks at the per-bucket figures of :class:`~abusedesk.traffic.windows.ServerWindow`
and fires when a bucket's figure reaches its threshold (``>=``); the detection says which
measures fired, the threshold and the peak, and carries its evidence: the top destinations (or,
for an inbound attack, sources) and ports, a time series of the window in the shape the case
page charts (``[{"at": ISO, "<measure>": n}, ...]``), and a few sample flows.

Rates are per second over a bucket; distinct counts are per bucket and, under sampling, lower
bounds (see :mod:`abusedesk.traffic.windows`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from abusedesk.policy.choices import Category
from abusedesk.policy.model import TrafficPolicy, TrafficThresholds
from abusedesk.traffic.choices import DetectionKind
from abusedesk.traffic.decode.records import address_text
from abusedesk.traffic.windows import (
    AMP_FROM,
    AMPLIFICATION_PORTS,
    BRUTE_FORCE_PORTS,
    IN,
    OUT,
    SAMPLE_CLASSES,
    SMTP_PORT,
    TCP,
    UDP,
    ServerWindow,
    Windows,
    address_of,
)

CATEGORY_OF: Mapping[DetectionKind, Category | None] = {
    DetectionKind.OUTBOUND_FLOOD: Category.DENIAL_OF_SERVICE,
    DetectionKind.REFLECTION_TRIGGER: Category.DENIAL_OF_SERVICE,
    DetectionKind.AMPLIFIER: Category.DENIAL_OF_SERVICE,
    DetectionKind.SPAM: Category.SPAM,
    DetectionKind.HORIZONTAL_SCAN: Category.NETWORK_ABUSE,
    DetectionKind.VERTICAL_SCAN: Category.NETWORK_ABUSE,
    DetectionKind.BRUTE_FORCE: Category.NETWORK_ABUSE,
    DetectionKind.INBOUND_ATTACK: None,  # a NOC alert: the customer is the victim
}

TOP = 10
SAMPLES = 10

Contacts = npt.NDArray[np.void]


@dataclass(frozen=True, slots=True)
class Fired:
    measure: str
    threshold: float
    peak: float
    at: str  # ISO start of the bucket of the peak

    def as_dict(self) -> dict[str, Any]:
        return {
            "measure": self.measure,
            "threshold": self.threshold,
            "peak": self.peak,
            "at": self.at,
        }


@dataclass(frozen=True, slots=True)
class Detection:
    kind: DetectionKind
    server_id: int
    category: Category | None  # None: a NOC alert, not a case
    at: datetime  # when the detectors ran
    fired: tuple[Fired, ...]
    reason: str
    top_addresses: tuple[dict[str, Any], ...]
    addresses_are: str  # "destinations", or "sources" for an inbound attack
    top_ports: tuple[dict[str, Any], ...]
    series: tuple[dict[str, Any], ...]
    samples: tuple[dict[str, Any], ...]
    saturated: bool = False  # distinct counts hit the window's cap: lower bounds

    def evidence(self) -> dict[str, Any]:
        return {
            "source": "traffic",
            "kind": self.kind.value,
            "label": self.kind.label,
            "server_id": self.server_id,
            "at": self.at.isoformat(),
            "reason": self.reason,
            "fired": [f.as_dict() for f in self.fired],
            f"top_{self.addresses_are}": list(self.top_addresses),
            "top_ports": list(self.top_ports),
            "series": list(self.series),
            "sample_flows": list(self.samples),
            "distinct_counts_are_lower_bounds": True,
            "saturated": self.saturated,
        }


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(float(epoch), UTC).isoformat()


# --------------------------------------------------------------------------- figures


def _distinct(
    contacts: Contacts, buckets: npt.NDArray[np.int64], group: Iterable[str], count: Iterable[str]
) -> tuple[npt.NDArray[np.int64], Contacts, npt.NDArray[np.int64]]:
    """Per (bucket, group): how many distinct ``count`` values. Returns (bucket index, one row
    of each group, count), one entry per (bucket, group)."""
    group, count = list(group), list(count)
    if not len(contacts):
        return np.zeros(0, np.int64), contacts, np.zeros(0, np.int64)
    keys = [contacts[k] for k in reversed(count)] + [contacts[k] for k in reversed(group)]
    order = np.lexsort([*keys, buckets])
    rows, b = contacts[order], buckets[order]
    # a group starts where the bucket or a group key changes; a pair where a count key does too
    new_group = np.ones(len(rows), bool)
    new_group[1:] = b[1:] != b[:-1]
    for k in group:
        new_group[1:] |= rows[k][1:] != rows[k][:-1]
    new_pair = new_group.copy()
    for k in count:
        new_pair[1:] |= rows[k][1:] != rows[k][:-1]
    group_id = np.cumsum(new_group) - 1
    counts = np.bincount(group_id, weights=new_pair).astype(np.int64)
    starts = np.flatnonzero(new_group)
    return b[starts], rows[starts], counts


def _top_addresses(contacts: Contacts, weight: str = "packets") -> tuple[dict[str, Any], ...]:
    if not len(contacts):
        return ()
    pairs = np.stack([contacts["hi"], contacts["lo"]], axis=1)
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    sums = {w: np.bincount(inverse, weights=contacts[w]) for w in ("flows", "packets", "bytes")}
    order = np.argsort(-sums[weight], kind="stable")[:TOP]
    return tuple(
        {
            "address": address_of(int(unique[i, 0]), int(unique[i, 1])),
            "flows": round(float(sums["flows"][i])),
            "packets": round(float(sums["packets"][i])),
            "bytes": round(float(sums["bytes"][i])),
        }
        for i in order
    )


def _top_ports(contacts: Contacts, weight: str = "packets") -> tuple[dict[str, Any], ...]:
    if not len(contacts):
        return ()
    keys = contacts["proto"].astype(np.int64) * 65536 + contacts["port"]
    unique, inverse = np.unique(keys, return_inverse=True)
    sums = {w: np.bincount(inverse, weights=contacts[w]) for w in ("flows", "packets", "bytes")}
    order = np.argsort(-sums[weight], kind="stable")[:TOP]
    return tuple(
        {
            "port": int(unique[i] % 65536),
            "protocol": int(unique[i] // 65536),
            "flows": round(float(sums["flows"][i])),
            "packets": round(float(sums["packets"][i])),
            "bytes": round(float(sums["bytes"][i])),
        }
        for i in order
    )


def _series(
    window: ServerWindow, measure: str, values: npt.ArrayLike
) -> tuple[dict[str, Any], ...]:
    return tuple(
        {"at": iso(start), measure: round(float(v), 3)}
        for start, v in zip(window.starts, np.asarray(values, np.float64), strict=True)
    )


def _samples(window: ServerWindow, *classes: str) -> tuple[dict[str, Any], ...]:
    wanted = [SAMPLE_CLASSES.index(c) for c in classes]
    rows = window.samples[np.isin(window.samples["cls"], wanted)][:SAMPLES]
    out = []
    for row in rows:
        f = row["flow"]
        version = int(f["ip_version"])
        out.append(
            {
                "src": address_text(int(f["src_hi"]), int(f["src_lo"]), version),
                "dst": address_text(int(f["dst_hi"]), int(f["dst_lo"]), version),
                "src_port": int(f["src_port"]),
                "dst_port": int(f["dst_port"]),
                "protocol": int(f["protocol"]),
                "tcp_flags": int(f["tcp_flags"]),
                "packets": int(f["packets"]),
                "bytes": int(f["bytes"]),
                "sampling_rate": int(row["rate"]),
                "first_ms": int(f["first_ms"]),
            }
        )
    return tuple(out)


def _check(
    window: ServerWindow, measure: str, values: npt.ArrayLike, threshold: float
) -> Fired | None:
    """A ``Fired`` if some bucket's value reaches ``threshold``."""
    values = np.asarray(values, np.float64)
    if not len(values):
        return None
    i = int(np.argmax(values))
    if values[i] < threshold or values[i] <= 0:
        return None
    return Fired(measure, float(threshold), round(float(values[i]), 3), iso(window.starts[i]))


def _reason(kind: DetectionKind, fired: Iterable[Fired], detail: str = "") -> str:
    parts = [f"{f.measure} peaked at {f.peak:g} (threshold {f.threshold:g})" for f in fired]
    text = f"{kind.label}: " + "; ".join(parts)
    return f"{text}; {detail}" if detail else text


# --------------------------------------------------------------------------- detectors


class _Context:
    def __init__(self, window: ServerWindow, at: datetime) -> None:
        self.window, self.at = window, at
        c = window.contacts
        self.buckets = window.bucket_of(c)
        self.out = c["kind"] == OUT
        self.contacts = c

    def make(
        self,
        kind: DetectionKind,
        fired: list[Fired],
        contacts: Contacts,
        series: tuple[dict[str, Any], ...],
        samples: tuple[dict[str, Any], ...],
        detail: str = "",
        addresses_are: str = "destinations",
        weight: str = "packets",
    ) -> Detection:
        return Detection(
            kind=kind,
            server_id=self.window.server_id,
            category=CATEGORY_OF[kind],
            at=self.at,
            fired=tuple(fired),
            reason=_reason(kind, fired, detail),
            top_addresses=_top_addresses(contacts, weight),
            addresses_are=addresses_are,
            top_ports=_top_ports(contacts, weight),
            series=series,
            samples=samples,
            saturated=self.window.saturated,
        )


def _flood(ctx: _Context, t: TrafficThresholds) -> Detection | None:
    w = ctx.window
    pps, bps = w.rate("out_packets"), w.rate("out_bytes") * 8
    syn_pps = w.rate("out_syn_packets")
    tcp_flows = w.total("out_tcp_flows")
    share = np.divide(
        w.total("out_syn_flows"), tcp_flows, out=np.zeros_like(tcp_flows), where=tcp_flows > 0
    )
    fired = [
        f
        for f in (
            _check(w, "packets_per_s", pps, t.flood_pps),
            _check(w, "bits_per_s", bps, t.flood_bps),
        )
        if f
    ]
    syn = _check(
        w, "syn_packets_per_s", np.where(share >= t.flood_syn_share, syn_pps, 0), t.flood_syn_pps
    )
    if syn:
        i = int(np.argmax(np.where(share >= t.flood_syn_share, syn_pps, 0)))
        fired += [syn, Fired("syn_share", t.flood_syn_share, round(float(share[i]), 3), syn.at)]
    if not fired:
        return None
    measure, values = (
        ("syn_packets_per_s", syn_pps) if syn and len(fired) == 2 else ("packets_per_s", pps)
    )
    return ctx.make(
        DetectionKind.OUTBOUND_FLOOD,
        fired,
        ctx.contacts[ctx.out],
        _series(w, measure, values),
        _samples(w, "syn", "other_out", "amp_to"),
    )


def _reflection(ctx: _Context, t: TrafficThresholds) -> Detection | None:
    w, c = ctx.window, ctx.contacts
    mask = ctx.out & (c["proto"] == UDP) & np.isin(c["port"], AMPLIFICATION_PORTS)
    reflectors = _per_bucket_distinct(ctx, mask, ["hi", "lo"])
    pps = w.rate("out_amp_to_packets")
    both = np.where(pps >= t.reflection_pps, reflectors, 0)
    fired = _check(w, "reflectors", both, t.reflection_reflectors)
    if not fired:
        return None
    rate = Fired(
        "amplification_port_packets_per_s", t.reflection_pps, round(float(pps.max()), 3), fired.at
    )
    return ctx.make(
        DetectionKind.REFLECTION_TRIGGER,
        [fired, rate],
        c[mask],
        _series(w, "reflectors", reflectors),
        _samples(w, "amp_to"),
    )


def _amplifier(ctx: _Context, t: TrafficThresholds) -> Detection | None:
    w, c = ctx.window, ctx.contacts
    out_bytes, in_bytes = w.total("out_amp_from_bytes"), w.total("in_amp_to_bytes")
    bps = out_bytes * 8 / w.bucket_seconds
    ratio = out_bytes / np.maximum(in_bytes, 1.0)
    fired = _check(
        w, "amplified_bits_per_s", np.where(ratio >= t.amplifier_ratio, bps, 0), t.amplifier_bps
    )
    if not fired:
        return None
    i = int(np.argmax(np.where(ratio >= t.amplifier_ratio, bps, 0)))
    ratio_fired = Fired("out_in_byte_ratio", t.amplifier_ratio, round(float(ratio[i]), 3), fired.at)
    return ctx.make(
        DetectionKind.AMPLIFIER,
        [fired, ratio_fired],
        c[c["kind"] == AMP_FROM],
        _series(w, "amplified_bits_per_s", bps),
        _samples(w, "amp_from"),
        weight="bytes",
    )


def _per_bucket_distinct(
    ctx: _Context, mask: npt.NDArray[np.bool_], count: list[str]
) -> npt.NDArray[np.float64]:
    buckets, _, counts = _distinct(ctx.contacts[mask], ctx.buckets[mask], [], count)
    out = np.zeros(len(ctx.window.starts))
    out[buckets] = counts
    return out


def _spam(ctx: _Context, t: TrafficThresholds) -> Detection | None:
    w, c = ctx.window, ctx.contacts
    mask = ctx.out & (c["proto"] == TCP) & (c["port"] == SMTP_PORT)
    destinations = _per_bucket_distinct(ctx, mask, ["hi", "lo"])
    fired = _check(w, "smtp_destinations", destinations, t.spam_destinations)
    if not fired:
        return None
    return ctx.make(
        DetectionKind.SPAM,
        [fired],
        c[mask],
        _series(w, "smtp_destinations", destinations),
        _samples(w, "smtp"),
        weight="flows",
    )


def _scans(ctx: _Context, t: TrafficThresholds) -> list[Detection]:
    w, c = ctx.window, ctx.contacts
    amp = (c["proto"] == UDP) & np.isin(c["port"], AMPLIFICATION_PORTS)
    smtp = (c["proto"] == TCP) & (c["port"] == SMTP_PORT)
    mask = ctx.out & (c["probe"] > 0) & ~amp & ~smtp
    probes, buckets = c[mask], ctx.buckets[mask]
    found = []
    for kind, group, count, limit, measure in (
        (
            DetectionKind.HORIZONTAL_SCAN,
            ["proto", "port"],
            ["hi", "lo"],
            t.scan_addresses,
            "addresses_on_one_port",
        ),
        (
            DetectionKind.VERTICAL_SCAN,
            ["hi", "lo"],
            ["proto", "port"],
            t.scan_ports,
            "ports_on_one_address",
        ),
    ):
        b, rows, counts = _distinct(probes, buckets, group, count)
        if not len(counts) or counts.max() < max(limit, 1):
            continue
        best = int(np.argmax(counts))
        per_bucket = np.zeros(len(w.starts))
        np.maximum.at(per_bucket, b, counts)
        fired = Fired(measure, float(limit), float(counts[best]), iso(w.starts[b[best]]))
        row = rows[best]
        if kind is DetectionKind.HORIZONTAL_SCAN:
            chosen = (probes["proto"] == row["proto"]) & (probes["port"] == row["port"])
            detail = f"port {int(row['port'])}/{_proto_name(int(row['proto']))}"
        else:
            chosen = (probes["hi"] == row["hi"]) & (probes["lo"] == row["lo"])
            detail = f"target {address_of(int(row['hi']), int(row['lo']))}"
        found.append(
            ctx.make(
                kind,
                [fired],
                probes[chosen],
                _series(w, measure, per_bucket),
                _samples(w, "syn", "other_out"),
                detail,
                weight="flows",
            )
        )
    return found


def _brute_force(ctx: _Context, t: TrafficThresholds) -> Detection | None:
    w, c = ctx.window, ctx.contacts
    mask = ctx.out & (c["proto"] == TCP) & np.isin(c["port"], BRUTE_FORCE_PORTS) & (c["short"] > 0)
    rows, buckets = c[mask], ctx.buckets[mask]
    if not len(rows):
        return None
    b, heads, _ = _distinct(rows, buckets, ["hi", "lo", "port"], [])
    # sum of short flows per (bucket, target, port): rows are unique per key within a bucket
    order = np.lexsort([rows["port"], rows["lo"], rows["hi"], buckets])
    ordered, ob = rows[order], buckets[order]
    start = np.ones(len(ordered), bool)
    start[1:] = ob[1:] != ob[:-1]
    for k in ("hi", "lo", "port"):
        start[1:] |= ordered[k][1:] != ordered[k][:-1]
    sums = np.add.reduceat(ordered["short"], np.flatnonzero(start))
    best = int(np.argmax(sums))
    if sums[best] < max(t.brute_force_flows, 1):
        return None
    head = heads[best]
    per_bucket = np.zeros(len(w.starts))
    np.maximum.at(per_bucket, b, sums)
    fired = Fired(
        "short_flows_to_one_target",
        t.brute_force_flows,
        round(float(sums[best]), 3),
        iso(w.starts[b[best]]),
    )
    target = address_of(int(head["hi"]), int(head["lo"]))
    chosen = (rows["hi"] == head["hi"]) & (rows["lo"] == head["lo"])
    return ctx.make(
        DetectionKind.BRUTE_FORCE,
        [fired],
        rows[chosen],
        _series(w, "short_flows_to_one_target", per_bucket),
        _samples(w, "short_bf"),
        f"target {target} port {int(head['port'])}",
        weight="flows",
    )


def _inbound(ctx: _Context, t: TrafficThresholds) -> Detection | None:
    w, c = ctx.window, ctx.contacts
    pps, bps = w.rate("in_packets"), w.rate("in_bytes") * 8
    fired = [
        f
        for f in (
            _check(w, "packets_per_s", pps, t.inbound_pps),
            _check(w, "bits_per_s", bps, t.inbound_bps),
        )
        if f
    ]
    if not fired:
        return None
    return ctx.make(
        DetectionKind.INBOUND_ATTACK,
        fired,
        c[c["kind"] == IN],
        _series(w, "inbound_packets_per_s", pps),
        _samples(w, "inbound"),
        addresses_are="sources",
    )


def _proto_name(number: int) -> str:
    return {TCP: "tcp", UDP: "udp", 1: "icmp", 58: "icmpv6"}.get(number, str(number))


Detector = Callable[[_Context, TrafficThresholds], "Detection | list[Detection] | None"]
DETECTORS: tuple[Detector, ...] = (
    _flood,
    _reflection,
    _amplifier,
    _spam,
    _scans,
    _brute_force,
    _inbound,
)


def detect(window: ServerWindow, thresholds: TrafficThresholds, at: datetime) -> list[Detection]:
    """Every detection in one server's window."""
    ctx = _Context(window, at)
    found: list[Detection] = []
    for detector in DETECTORS:
        result = detector(ctx, thresholds)
        if isinstance(result, list):
            found += result
        elif result is not None:
            found.append(result)
    return found


def detect_all(
    windows: Windows, policy: TrafficPolicy, now: float, plan_of: Mapping[int, str] | None = None
) -> list[Detection]:
    """Every detection of every server in the windows at ``now`` (epoch seconds), skipping the
    allow-listed servers; ``plan_of`` gives each server's plan (missing: the default plan)."""
    at = datetime.fromtimestamp(now, UTC)
    plans = plan_of or {}
    found: list[Detection] = []
    for server_id in windows.servers(now):
        if policy.allowed(server_id):
            continue
        thresholds = policy.thresholds(server_id, plans.get(server_id))
        found += detect(windows.view(server_id, now), thresholds, at)
    return found
