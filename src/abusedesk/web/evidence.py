"""A traffic detection's evidence, made readable: what fired and why, the top destinations and
ports, sample flows and a chart of the window; and the same tables as CSV for a spreadsheet or
a reply to the customer's upstream.

The evidence is what :meth:`abusedesk.traffic.detectors.Detection.evidence` recorded on the
case's timeline. Other evidence (a complaint's findings, a feed's rows) keeps its generic view.
Everything here reads a dict; nothing trusts it to be well formed, because the timeline also
holds evidence written by older versions.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from markupsafe import Markup

from abusedesk.web.staff import charts
from abusedesk.web.staff.charts import measure_words

PROTOCOLS = {1: "ICMP", 6: "TCP", 17: "UDP", 47: "GRE", 50: "ESP", 58: "ICMPv6", 132: "SCTP"}
TCP_FLAGS = (
    (0x01, "FIN"),
    (0x02, "SYN"),
    (0x04, "RST"),
    (0x08, "PSH"),
    (0x10, "ACK"),
    (0x20, "URG"),
    (0x40, "ECE"),
    (0x80, "CWR"),
)


class EvidenceTable(StrEnum):
    """The tables a traffic detection's evidence exports, one CSV each."""

    FIRED = "fired"
    DESTINATIONS = "destinations"
    PORTS = "ports"
    FLOWS = "flows"
    SERIES = "series"

    @property
    def label(self) -> str:
        return {
            EvidenceTable.FIRED: "What fired",
            EvidenceTable.DESTINATIONS: "Top addresses",
            EvidenceTable.PORTS: "Top ports",
            EvidenceTable.FLOWS: "Sample flows",
            EvidenceTable.SERIES: "The window, per bucket",
        }[self]


def is_traffic(evidence: Any) -> bool:
    return isinstance(evidence, dict) and evidence.get("source") == "traffic"


def protocol_name(number: Any) -> str:
    if not isinstance(number, int):
        return str(number)
    return PROTOCOLS.get(number, str(number))


def tcp_flags_text(flags: Any, protocol: Any = 6) -> str:
    if protocol != 6 or not isinstance(flags, int):
        return ""
    return " ".join(name for bit, name in TCP_FLAGS if flags & bit)


@dataclass(frozen=True, slots=True)
class TrafficEvidence:
    """One detection's evidence, as the case page shows it."""

    label: str
    reason: str
    at: str
    addresses_are: str  # "destinations", or "sources" for an inbound attack
    fired: list[dict[str, Any]]
    addresses: list[dict[str, Any]]
    ports: list[dict[str, Any]]
    flows: list[dict[str, Any]]
    series: list[dict[str, Any]]
    saturated: bool
    lower_bounds: bool
    chart: Markup | None


def _moment(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _rows(value: Any) -> list[dict[str, Any]]:
    return [row for row in value if isinstance(row, dict)] if isinstance(value, list) else []


def traffic_evidence(evidence: Mapping[str, Any]) -> TrafficEvidence:
    addresses_are = "sources" if "top_sources" in evidence else "destinations"
    fired = []
    for row in _rows(evidence.get("fired")):
        threshold, peak = row.get("threshold"), row.get("peak")
        times = (
            peak / threshold
            if isinstance(peak, int | float) and isinstance(threshold, int | float) and threshold
            else None
        )
        fired.append(
            {
                **row,
                "words": measure_words(str(row.get("measure", ""))),
                "times": times,
                "bucket": _moment(row.get("at")),
            }
        )
    ports = [
        {**row, "protocol_name": protocol_name(row.get("protocol"))}
        for row in _rows(evidence.get("top_ports"))
    ]
    flows = [
        {
            **row,
            "protocol_name": protocol_name(row.get("protocol")),
            "flags": tcp_flags_text(row.get("tcp_flags"), row.get("protocol")),
        }
        for row in _rows(evidence.get("sample_flows"))
    ]
    series = _rows(evidence.get("series"))
    return TrafficEvidence(
        label=str(evidence.get("label") or evidence.get("kind") or "Traffic detection"),
        reason=str(evidence.get("reason", "")),
        at=str(evidence.get("at", "")),
        addresses_are=addresses_are,
        fired=fired,
        addresses=_rows(evidence.get(f"top_{addresses_are}")),
        ports=ports,
        flows=flows,
        series=series,
        saturated=bool(evidence.get("saturated")),
        lower_bounds=bool(evidence.get("distinct_counts_are_lower_bounds")),
        chart=_chart(series, fired),
    )


def _chart(series: list[dict[str, Any]], fired: Sequence[Mapping[str, Any]]) -> Markup | None:
    found = charts.find_series(series, "series")
    if not found:
        return None
    thresholds = {
        str(f["measure"]): float(f["threshold"])
        for f in fired
        if isinstance(f.get("threshold"), int | float) and f.get("measure") in found[0].lines
    }
    return charts.traffic_window(found[0], thresholds)


# -- CSV ------------------------------------------------------------------------------------

_COLUMNS: dict[EvidenceTable, tuple[str, ...]] = {
    EvidenceTable.FIRED: ("measure", "threshold", "peak", "at"),
    EvidenceTable.DESTINATIONS: ("address", "flows", "packets", "bytes"),
    EvidenceTable.PORTS: ("protocol", "port", "flows", "packets", "bytes"),
    EvidenceTable.FLOWS: (
        "first_ms",
        "src",
        "src_port",
        "dst",
        "dst_port",
        "protocol",
        "tcp_flags",
        "packets",
        "bytes",
        "sampling_rate",
    ),
}


def table_rows(
    evidence: TrafficEvidence, table: EvidenceTable
) -> tuple[list[str], list[list[Any]]]:
    """The header and rows of one table, values as recorded (protocols by name, flags as
    letters: the CSV is read by people and by scripts alike)."""
    if table is EvidenceTable.SERIES:
        names = sorted({k for point in evidence.series for k in point if k != "at"})
        header = ["at", *names]
        return header, [[point.get(k, "") for k in header] for point in evidence.series]
    header = list(_COLUMNS[table])
    source: list[dict[str, Any]] = {
        EvidenceTable.FIRED: evidence.fired,
        EvidenceTable.DESTINATIONS: evidence.addresses,
        EvidenceTable.PORTS: evidence.ports,
        EvidenceTable.FLOWS: evidence.flows,
    }[table]
    rows = []
    for row in source:
        values = dict(row)
        if "protocol_name" in values:
            values["protocol"] = values["protocol_name"]
        if "flags" in values:
            values["tcp_flags"] = values["flags"]
        rows.append([values.get(k, "") for k in header])
    return header, rows


def to_csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """RFC 4180 CSV. A cell that a spreadsheet would run as a formula (=, +, -, @ first) is
    prefixed with a quote mark: these values come from the network, not from staff."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(v) for v in row])
    return out.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
