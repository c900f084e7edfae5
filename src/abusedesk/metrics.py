"""Prometheus metrics, one registry for the process; `/metrics` serves it."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

cases_opened = Counter("abusedesk_cases_opened", "Cases opened", ["category"], registry=REGISTRY)
reports_attached = Counter(
    "abusedesk_reports_attached",
    "Findings attached to an open case",
    ["category"],
    registry=REGISTRY,
)
case_transitions = Counter(
    "abusedesk_case_transitions", "Case events applied", ["event"], registry=REGISTRY
)
sweeper_actions = Counter(
    "abusedesk_sweeper_actions", "What the deadline sweeper did", ["action"], registry=REGISTRY
)
sweep_seconds = Histogram("abusedesk_sweep_seconds", "Duration of one sweep", registry=REGISTRY)
mail_outcomes = Counter(
    "abusedesk_mail_outcomes",
    "Outbox delivery attempts by template and outcome (sent, failed, gave_up)",
    ["template", "outcome"],
    registry=REGISTRY,
)
enforcement_outcomes = Counter(
    "abusedesk_enforcement_outcomes",
    "Enforcement attempts by driver, kind and outcome (applied, failed)",
    ["driver", "kind", "outcome"],
    registry=REGISTRY,
)
enforcement_reconcile_failures = Counter(
    "abusedesk_enforcement_reconcile_failures",
    "Reconciliations a driver failed",
    ["driver"],
    registry=REGISTRY,
)
