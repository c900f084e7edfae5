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

# The flow collector (the `traffic` role). `format` is a FlowFormat value, or "unknown" for a
# datagram that is none of them; `listener` is "netflow" or "sflow" (the socket).
traffic_datagrams = Counter(
    "abusedesk_traffic_datagrams",
    "Flow datagrams received, by format",
    ["format"],
    registry=REGISTRY,
)
traffic_records = Counter(
    "abusedesk_traffic_records",
    "Flow records decoded, by format",
    ["format"],
    registry=REGISTRY,
)
traffic_decode_errors = Counter(
    "abusedesk_traffic_decode_errors",
    "Flow datagrams rejected (or data sets held for their template), by format and kind",
    ["format", "kind"],
    registry=REGISTRY,
)
traffic_dropped = Counter(
    "abusedesk_traffic_datagrams_dropped",
    "Datagrams the kernel dropped because the socket's receive buffer was full",
    ["listener"],
    registry=REGISTRY,
)
traffic_sequence_gaps = Counter(
    "abusedesk_traffic_sequence_gaps",
    "Datagrams (sFlow, NetFlow v9) or records (NetFlow v5) missed, from exporters' sequences",
    ["format"],
    registry=REGISTRY,
)
traffic_batches_skipped = Counter(
    "abusedesk_traffic_batches_skipped",
    "Decoded batches the analysis could not keep up with (counted by the collector, not analysed)",
    registry=REGISTRY,
)
traffic_detections = Counter(
    "abusedesk_traffic_detections",
    "What the traffic detectors found, by kind",
    ["kind"],
    registry=REGISTRY,
)
noc_alerts = Counter(
    "abusedesk_noc_alerts",
    "NOC alerts raised (attacks on customers), by kind",
    ["kind"],
    registry=REGISTRY,
)
