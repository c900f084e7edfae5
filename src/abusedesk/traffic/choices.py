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


class Direction(IntEnum):
    """Which way the exporter saw the flow cross the interface, as the exporter says it.

    An integer enum because it is stored in a numpy column. It is what the router reported
    (IPFIX flowDirection, or the sFlow data source being the input or the output interface);
    detectors decide inbound and outbound from which address is ours, not from this.
    """

    UNKNOWN = 0
    INGRESS = 1
    EGRESS = 2
