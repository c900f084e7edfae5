"""The AUP as data: categories, severities, response windows, reminders and repeat rules."""

from abusedesk.policy.choices import Category, RepeatAction, Severity
from abusedesk.policy.loader import PolicyError, load_policy, parse_policy
from abusedesk.policy.model import (
    CategoryRule,
    Policy,
    Reminder,
    RepeatRule,
    SeverityRule,
    TrafficPolicy,
    TrafficThresholds,
)

__all__ = [
    "Category",
    "CategoryRule",
    "Policy",
    "PolicyError",
    "Reminder",
    "RepeatAction",
    "RepeatRule",
    "Severity",
    "SeverityRule",
    "TrafficPolicy",
    "TrafficThresholds",
    "load_policy",
    "parse_policy",
]
