"""The kinds the traffic feature names: wire formats and flow directions."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class FlowFormat(StrEnum):
    """The export formats a collector receives. Values are what metrics and the registry show."""

    NETFLOW_V5 = "netflow_v5"
    NETFLOW_V9 = "netflow_v9"
    IPFIX = "ipfix"
    SFLOW_V5 = "sflow_v5"

    @property
    def label(self) -> str:
        return _FORMAT_LABELS[self]


_FORMAT_LABELS = {
    FlowFormat.NETFLOW_V5: "NetFlow v5",
    FlowFormat.NETFLOW_V9: "NetFlow v9",
    FlowFormat.IPFIX: "IPFIX",
    FlowFormat.SFLOW_V5: "sFlow v5",
}


class AnalysisMode(StrEnum):
    """Where the `traffic` role analyses what its collector decodes."""

    PROCESS = "process"  # a child process (abusedesk.traffic.offload): the reader keeps its GIL
    THREAD = "thread"  # a thread beside the reader: one process, for small sites and tests


class Direction(IntEnum):
    """Which way the exporter saw the flow cross the interface, as the exporter says it.

    An integer enum because it is stored in a numpy column. It is what the router reported
    (IPFIX flowDirection, or the sFlow data source being the input or the output interface);
    detectors decide inbound and outbound from which address is ours, not from this.
    """

    UNKNOWN = 0
    INGRESS = 1
    EGRESS = 2


class DetectionKind(StrEnum):
    """What a detector found in a server's traffic window."""

    OUTBOUND_FLOOD = "outbound_flood"
    REFLECTION_TRIGGER = "reflection_trigger"
    AMPLIFIER = "amplifier"
    SPAM = "spam"
    HORIZONTAL_SCAN = "horizontal_scan"
    VERTICAL_SCAN = "vertical_scan"
    BRUTE_FORCE = "brute_force"
    INBOUND_ATTACK = "inbound_attack"

    @property
    def label(self) -> str:
        return _DETECTION_LABELS[self]


_DETECTION_LABELS = {
    DetectionKind.OUTBOUND_FLOOD: "Outbound flood",
    DetectionKind.REFLECTION_TRIGGER: "Triggering a reflection attack",
    DetectionKind.AMPLIFIER: "Acting as an amplifier",
    DetectionKind.SPAM: "SMTP fan-out (spam)",
    DetectionKind.HORIZONTAL_SCAN: "Horizontal scan",
    DetectionKind.VERTICAL_SCAN: "Vertical scan",
    DetectionKind.BRUTE_FORCE: "Brute force",
    DetectionKind.INBOUND_ATTACK: "Inbound attack on a customer (NOC alert)",
}
