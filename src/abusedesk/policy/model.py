"""The policy as immutable values, and the arithmetic of its clocks. Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta

from abusedesk.policy.choices import Category, RepeatAction, Severity


@dataclass(frozen=True, slots=True)
class SeverityRule:
    severity: Severity
    window: timedelta | None  # None: notify only, no deadline, no enforcement
    disconnect_at_once: bool


@dataclass(frozen=True, slots=True)
class CategoryRule:
    category: Category
    label: str
    severity: Severity
    zero_tolerance: bool = False  # disconnect at once, never reconnect without legal review
    hide_complainant: bool = True  # DMCA notices must name the complainant to the customer
    repeat_action: RepeatAction | None = None  # None: the policy-wide repeat action


@dataclass(frozen=True, slots=True)
class RepeatRule:
    window: timedelta
    action: RepeatAction
    shortened_window: timedelta


@dataclass(frozen=True, slots=True)
class Reminder:
    """A reminder before a deadline: at a fraction of the window, or a fixed time before it."""

    fraction: float | None = None
    before: timedelta | None = None

    def moment(self, start: datetime, deadline: datetime) -> datetime:
        if self.fraction is not None:
            return start + (deadline - start) * self.fraction
        assert self.before is not None
        return deadline - self.before

    def __str__(self) -> str:
        if self.fraction is not None:
            return f"{self.fraction:.0%} of the window"
        return f"{self.before} before the deadline"


@dataclass(frozen=True, slots=True)
class TrafficThresholds:
    """When a server's traffic is abuse. Rates are per second, peaks over one window bucket;
    distinct counts are per bucket (one minute by default) and, under sampling, lower bounds."""

    flood_pps: float = 50_000  # outbound packets/s
    flood_bps: float = 500_000_000  # outbound bits/s
    flood_syn_pps: float = 2_000  # outbound SYN-only TCP packets/s ...
    flood_syn_share: float = 0.7  # ... that are at least this share of outbound TCP flows
    reflection_reflectors: float = 50  # distinct destinations of UDP to amplification ports
    reflection_pps: float = 100  # and at least this many packets/s of it
    amplifier_bps: float = 5_000_000  # outbound UDP from amplification ports, bits/s
    amplifier_ratio: float = 10.0  # bytes out of those ports per byte in to them
    spam_destinations: float = 100  # distinct SMTP (port 25) destinations
    scan_addresses: float = 256  # distinct addresses on one port (horizontal scan)
    scan_ports: float = 100  # distinct ports on one address (vertical scan)
    brute_force_flows: float = 60  # short flows to 22/3389/23/21 of one target
    inbound_pps: float = 200_000  # inbound packets/s to one server (NOC alert)
    inbound_bps: float = 2_000_000_000  # inbound bits/s to one server (NOC alert)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


@dataclass(frozen=True, slots=True)
class TrafficPolicy:
    """Thresholds per plan ("default" for plans not named), per-server overrides laid over
    their plan's, servers never flagged, and destinations whose traffic is not counted."""

    plans: Mapping[str, TrafficThresholds] = field(
        default_factory=lambda: {"default": TrafficThresholds()}
    )
    servers: Mapping[int, Mapping[str, float]] = field(default_factory=dict)
    allow_servers: frozenset[int] = frozenset()
    allow_destinations: tuple[str, ...] = ()  # prefixes, e.g. "192.0.2.0/24"

    def thresholds(self, server_id: int, plan: str | None = None) -> TrafficThresholds:
        base = self.plans.get(plan or "default") or self.plans["default"]
        override = self.servers.get(server_id)
        return replace(base, **override) if override else base

    def allowed(self, server_id: int) -> bool:
        return server_id in self.allow_servers


@dataclass(frozen=True, slots=True)
class DnsLoadPolicy:
    """When an account's zones draw a disproportionate share of the name servers (R11).

    Per five-minute bucket, an account is over when its zones' share of all queries, or their
    rate, reaches the limit; it is flagged when that holds for ``sustained_fraction`` of the
    buckets of the last ``sustained`` period. A bucket whose NXDOMAIN share reaches
    ``flood_nxdomain_share`` is a random-subdomain flood against the customer: its NXDOMAIN
    answers are not counted against them. A flagged account is told of a *potential*
    violation; still flagged ``notice_grace`` later, it gets a ``dns_overuse`` case.
    """

    share: float = 0.05  # of all queries the name servers answered
    qps: float = 500.0  # queries per second, averaged over a bucket
    min_total_qps: float = 50.0  # below this, all servers are idle: shares mean nothing
    sustained: timedelta = timedelta(hours=6)
    sustained_fraction: float = 0.9
    flood_nxdomain_share: float = 0.5
    notice_grace: timedelta = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Policy:
    aup_version: str
    severities: Mapping[Severity, SeverityRule]
    categories: Mapping[Category, CategoryRule]
    repeat: RepeatRule
    reminders: tuple[Reminder, ...]
    termination_grace: timedelta
    due_soon: timedelta
    traffic: TrafficPolicy = field(default_factory=TrafficPolicy)
    dns_load: DnsLoadPolicy = field(default_factory=DnsLoadPolicy)

    def rule(self, category: Category) -> CategoryRule:
        return self.categories[category]

    def severity_of(self, category: Category) -> Severity:
        return self.categories[category].severity

    def window(self, severity: Severity) -> timedelta | None:
        return self.severities[severity].window

    def disconnects_at_once(self, category: Category, severity: Severity) -> bool:
        return (
            self.categories[category].zero_tolerance or self.severities[severity].disconnect_at_once
        )

    def repeat_action(self, category: Category) -> RepeatAction:
        return self.categories[category].repeat_action or self.repeat.action

    def reminder_times(self, start: datetime, deadline: datetime) -> list[datetime]:
        """The reminders due strictly between `start` and `deadline`, earliest first, distinct."""
        moments = {r.moment(start, deadline) for r in self.reminders}
        return sorted(m for m in moments if start < m < deadline)
