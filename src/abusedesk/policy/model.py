"""The policy as immutable values, and the arithmetic of its clocks. Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
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
class Policy:
    aup_version: str
    severities: Mapping[Severity, SeverityRule]
    categories: Mapping[Category, CategoryRule]
    repeat: RepeatRule
    reminders: tuple[Reminder, ...]
    termination_grace: timedelta
    due_soon: timedelta

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
