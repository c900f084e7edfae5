"""Whether an account's zones draw a disproportionate share of the name servers (R11). Pure:
per-bucket counts and the policy in, an assessment out.

Buckets are the five-minute samples the `dns` role stores. In each bucket an account is *over*
when its counted queries reach the policy's share of all queries (while the servers are busy
enough for a share to mean something) or its absolute rate. A bucket whose NXDOMAIN share
reaches ``flood_nxdomain_share`` is a random-subdomain flood: an attack on the customer, so its
NXDOMAIN answers are not counted against them, and the bucket is marked as attacked. The account
is *flagged* when it was over in at least ``sustained_fraction`` of the buckets of the last
``sustained`` period (a bucket with no sample counts as not over: silence is not load).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from abusedesk.policy.model import DnsLoadPolicy

BUCKET = timedelta(minutes=5)


class LoadState(StrEnum):
    NORMAL = "normal"
    OVER = "over"  # sustained over the policy's share or rate: a potential violation
    ATTACKED = "attacked"  # a random-subdomain flood against the customer's zones

    @property
    def label(self) -> str:
        return {
            LoadState.NORMAL: "Normal",
            LoadState.OVER: "Over the policy's limits",
            LoadState.ATTACKED: "Under a random-subdomain flood",
        }[self]


@dataclass(frozen=True, slots=True)
class Sample:
    """One bucket's counts: of one account's zones, or of all zones (the total)."""

    start: datetime
    queries: int
    nxdomain: int = 0


@dataclass(frozen=True, slots=True)
class BucketLoad:
    start: datetime
    queries: int
    counted: int  # queries counted against the account
    qps: float
    share: float  # of all queries in the bucket (0 when the servers were idle)
    attacked: bool
    over: bool


@dataclass(frozen=True, slots=True)
class Assessment:
    state: LoadState
    buckets: tuple[BucketLoad, ...]  # the period assessed, oldest first
    over_fraction: float  # share of the period's buckets that were over
    peak_share: float
    peak_qps: float
    reason: str

    def series(self) -> list[dict[str, object]]:
        """The period in the shape the case page charts (``[{"at": ISO, …}, …]``)."""
        return [
            {
                "at": b.start.isoformat(),
                "queries_per_s": round(b.qps, 3),
                "share_percent": round(100 * b.share, 3),
                "attacked": b.attacked,
            }
            for b in self.buckets
        ]


def bucket_start(moment: datetime) -> datetime:
    """The start of the five-minute bucket holding ``moment``."""
    seconds = int(BUCKET.total_seconds())
    epoch = math.floor(moment.timestamp() / seconds) * seconds
    return datetime.fromtimestamp(epoch, moment.tzinfo)


def assess(
    account: Sequence[Sample],
    totals: Mapping[datetime, int],
    policy: DnsLoadPolicy,
    now: datetime,
) -> Assessment:
    """The account's load over the last ``policy.sustained`` before ``now``.

    ``account``: the account's per-bucket sums over its zones; ``totals``: all queries per
    bucket start, over every zone served.
    """
    period_start = bucket_start(now - policy.sustained)
    expected = max(1, round(policy.sustained / BUCKET))
    seconds = BUCKET.total_seconds()
    loads = []
    for sample in sorted(account, key=lambda s: s.start):
        if sample.start < period_start or sample.start > now:
            continue
        attacked = (
            sample.queries > 0 and sample.nxdomain / sample.queries >= policy.flood_nxdomain_share
        )
        counted = sample.queries - sample.nxdomain if attacked else sample.queries
        total = totals.get(sample.start, 0)
        busy = total / seconds >= policy.min_total_qps
        share = counted / total if busy and total else 0.0
        qps = counted / seconds
        over = share >= policy.share or qps >= policy.qps
        loads.append(BucketLoad(sample.start, sample.queries, counted, qps, share, attacked, over))
    over_fraction = sum(b.over for b in loads) / expected
    peak_share = max((b.share for b in loads), default=0.0)
    peak_qps = max((b.qps for b in loads), default=0.0)
    attacked_buckets = sum(b.attacked for b in loads)
    if over_fraction >= policy.sustained_fraction:
        state = LoadState.OVER
        reason = (
            f"over the policy in {over_fraction:.0%} of the last {_hours(policy.sustained)}: "
            f"peak {peak_share:.1%} of all queries, {peak_qps:,.0f} queries/s "
            f"(limits {policy.share:.1%} or {policy.qps:,.0f} queries/s)"
        )
    elif attacked_buckets:
        state = LoadState.ATTACKED
        reason = (
            f"a random-subdomain flood in {attacked_buckets} of the last {expected} five-minute "
            "buckets: NXDOMAIN answers not counted against the customer"
        )
    else:
        state = LoadState.NORMAL
        reason = f"within the policy: peak {peak_share:.1%} of all queries, {peak_qps:,.0f}/s"
    return Assessment(state, tuple(loads), over_fraction, peak_share, peak_qps, reason)


def _hours(period: timedelta) -> str:
    hours = period.total_seconds() / 3600
    return f"{hours:g} hours" if hours != 1 else "hour"
