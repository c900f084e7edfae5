"""The console's charts: pygal drawn on the server, inlined as SVG. Values in, markup out.

No script reaches the page: pygal's tooltips need its JavaScript, and the console works
without any, so the config script pygal always writes is taken out and the values are printed
on the chart or readable in the tables beside it. Labels and titles pass through pygal's XML
writer, which escapes them; what comes out is safe to inline.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pygal
from markupsafe import Markup
from pygal.graph.graph import Graph
from pygal.style import Style

from abusedesk.cases.choices import CaseState
from abusedesk.cases.stats import DeadlineCounts
from abusedesk.policy import Category

# The stylesheet's palette, so that a chart reads like the page around it.
INK = "#1d2430"
MUTED = "#6b7585"
LINE = "#dfe3ea"
OK = "#1d7a46"
BAD = "#b3261e"
SERIES = (
    "#1f5fbf",
    "#d9822b",
    "#1d7a46",
    "#b3261e",
    "#5b3fa3",
    "#0f8b8d",
    "#c2185b",
    "#7a6a00",
    "#4b5565",
    "#6ea8ff",
    "#8d6e63",
    "#2e7d32",
    "#ad1457",
    "#00838f",
    "#9a5b00",
)
STATE_COLOURS = {
    CaseState.OPEN: "#1f5fbf",
    CaseState.ACKNOWLEDGED: "#5b3fa3",
    CaseState.FIX_REPORTED: "#1d7a46",
    CaseState.DISCONNECTED: "#b3261e",
    CaseState.TERMINATED: "#2b2f36",
    CaseState.CLOSED: "#6b7585",
}
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Noto Sans', 'DejaVu Sans', sans-serif"

_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.DOTALL | re.IGNORECASE)


def _style(colours: Sequence[str] = SERIES) -> Style:
    return Style(
        background="transparent",
        plot_background="transparent",
        foreground=INK,
        foreground_strong=INK,
        foreground_subtle=MUTED,
        guide_stroke_color=LINE,
        major_guide_stroke_color=LINE,
        opacity=".9",
        opacity_hover="1",
        colors=tuple(colours),
        font_family=FONT,
        label_font_family=FONT,
        major_label_font_family=FONT,
        legend_font_family=FONT,
        value_font_family=FONT,
        value_label_font_family=FONT,
        title_font_family=FONT,
        tooltip_font_family=FONT,
        no_data_font_family=FONT,
        label_font_size=13,
        major_label_font_size=13,
        legend_font_size=14,
        value_font_size=13,
        no_data_font_size=18,
    )


def _config(**extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "disable_xml_declaration": True,
        "js": [],
        "width": 760,
        "height": 300,
        "margin": 12,
        "margin_bottom": 24,  # pygal places a bottom legend a little below its own box
        "legend_at_bottom": True,
        "legend_box_size": 10,
        "show_y_guides": True,
        "tooltip_border_radius": 4,
        "no_data_text": "Nothing yet",
        "style": _style(),
    }
    config.update(extra)
    return config


def _svg(chart: Graph) -> Markup:
    svg: str = chart.render(is_unicode=True)
    return Markup(_SCRIPT.sub("", svg))  # noqa: S704 - pygal escaped every text it wrote


def _count_axis(peak: int) -> dict[str, Any]:
    """Whole numbers on the value axis, at most six of them: these charts count cases."""
    top = max(1, peak)
    step = max(1, math.ceil(top / 5))
    labels = list(range(0, top + step, step))
    return {"y_labels": labels, "range": (0, labels[-1])}


def opened_by_category(rows: Sequence[tuple[datetime, Mapping[Category, int]]]) -> Markup:
    """Stacked bars: cases opened per day, one colour per category that occurs."""
    present = sorted({c for _, counts in rows for c in counts}, key=lambda c: c.value)
    peak = max((sum(counts.values()) for _, counts in rows), default=0)
    chart = pygal.StackedBar(
        **_config(
            width=1160,
            height=280,
            show_minor_x_labels=False,
            x_labels_major_every=max(1, len(rows) // 10),
            truncate_label=-1,
            truncate_legend=-1,
            legend_at_bottom_columns=6,
            # pygal cannot place value labels on a chart without series: it says "nothing yet".
            **(_count_axis(peak) if present else {}),
        )
    )
    chart.x_labels = [start.strftime("%d %b") for start, _ in rows]
    for category in present:
        chart.add(_words(category.value), [counts.get(category) or None for _, counts in rows])
    return _svg(chart)


def deadlines(rows: Sequence[tuple[datetime, DeadlineCounts]]) -> Markup:
    """Bars side by side per week: deadlines met (green) and missed (red)."""
    peak = max((max(c.met, c.missed) for _, c in rows), default=0)
    chart = pygal.Bar(
        **_config(
            style=_style((OK, BAD)),
            width=560,
            height=300,
            show_minor_x_labels=False,
            x_labels_major_every=max(1, len(rows) // 6),
            truncate_label=-1,
            legend_at_bottom_columns=4,
            **_count_axis(peak),
        )
    )
    chart.x_labels = [start.strftime("%d %b") for start, _ in rows]
    chart.add("Met", [counts.met for _, counts in rows])
    chart.add("Missed", [counts.missed for _, counts in rows])
    return _svg(chart)


def open_by_state(counts: Mapping[CaseState, int]) -> Markup:
    """One bar per active state, in the state's own colour."""
    chart = pygal.HorizontalBar(
        **_config(
            show_legend=False,
            width=560,
            height=240,
            truncate_label=-1,
            **_count_axis(max(counts.values(), default=0)),
        )
    )
    # Drawn from the bottom up: reversed, so that the list reads top-down as the machine goes.
    states = list(reversed(list(counts)))
    chart.x_labels = [_words(state.value) for state in states]
    chart.add(
        "Open cases",
        [{"value": counts[state], "color": STATE_COLOURS[state]} for state in states],
    )
    return _svg(chart)


# -- a case's own data --------------------------------------------------------------------------

TIME_KEYS = ("at", "time", "timestamp", "start", "minute", "window_start")
MAX_POINTS = 2000


@dataclass(frozen=True, slots=True)
class Series:
    """A numeric time series found in a case's evidence: where it was and its lines."""

    path: str
    times: list[datetime]
    lines: dict[str, list[float | None]]


def find_series(evidence: Any, path: str = "evidence", depth: int = 0) -> list[Series]:
    """Every time series in a case's evidence: a list of at least two points, each an object
    with a time (one of TIME_KEYS, ISO 8601) and numbers, such as
    `[{"at": "2026-03-02T09:00:00+00:00", "pps": 120000, "bps": 9.1e8}, …]`. Traffic and DNS
    load evidence written in that shape gets a chart on the case page; other evidence none."""
    if depth > 6:
        return []
    found: list[Series] = []
    if isinstance(evidence, list):
        series = _as_series(evidence, path)
        if series is not None:
            return [series]
        for index, item in enumerate(evidence[:50]):
            found += find_series(item, f"{path}[{index}]", depth + 1)
    elif isinstance(evidence, dict):
        for key, value in evidence.items():
            found += find_series(value, f"{path}.{key}", depth + 1)
    return found


def _as_series(points: list[Any], path: str) -> Series | None:
    if len(points) < 2 or not all(isinstance(p, dict) for p in points):
        return None
    times: list[datetime] = []
    lines: dict[str, list[float | None]] = {}
    for point in points[:MAX_POINTS]:
        moment = _moment(point)
        if moment is None:
            return None
        times.append(moment)
        for key, value in point.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                lines.setdefault(key, [None] * (len(times) - 1))
        for key, values in lines.items():
            value = point.get(key)
            values.append(
                float(value)
                if isinstance(value, int | float) and not isinstance(value, bool)
                else None
            )
    if not lines:
        return None
    return Series(path, times, lines)


def _moment(point: dict[str, Any]) -> datetime | None:
    for key in TIME_KEYS:
        value = point.get(key)
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value)
            except ValueError:
                return None
    return None


def _line_over_time(series: Series, **extra: Any) -> pygal.Line:
    """A line chart whose x axis is the series' times: clock times when they fall on one day,
    about six labels whatever the length."""
    chart = pygal.Line(
        **_config(
            show_dots=len(series.times) <= 60,
            dots_size=2.5,
            x_label_rotation=0,
            show_minor_x_labels=False,
            x_labels_major_every=max(1, len(series.times) // 6),
            **extra,
        )
    )
    same_day = len({t.date() for t in series.times}) == 1
    chart.x_labels = [t.strftime("%H:%M" if same_day else "%d %b %H:%M") for t in series.times]
    return chart


def time_series(series: Series) -> Markup:
    """A line per measure; measures of very different size (packets and bits per second) each
    keep a readable scale by going to a secondary axis when they dwarf the first."""
    chart = _line_over_time(series, stroke_style={"width": 2}, truncate_legend=30)
    peaks = {
        name: max((v for v in values if v is not None), default=0.0)
        for name, values in series.lines.items()
    }
    first = max(peaks.values()) or 1.0
    for name, values in series.lines.items():
        secondary = peaks[name] * 50 < first
        chart.add(_words(name), values, secondary=secondary)
    return _svg(chart)


def _words(value: str) -> str:
    return value.replace("_", " ").capitalize()


def measure_words(measure: str) -> str:
    """`syn_per_s` → `SYN per second`: the policy's measure names, as a person reads them."""
    words = measure.replace("_per_s", " per second").replace("_", " ")
    for short in ("syn", "smtp", "udp", "tcp"):
        words = words.replace(short, short.upper())
    return words[:1].upper() + words[1:]


def traffic_window(series: Series, thresholds: Mapping[str, float]) -> Markup:
    """A traffic detection's window: each measure per bucket, and beside the measures that fired
    their threshold as a dashed line, so the peak reads against the limit it crossed."""
    chart = _line_over_time(series, truncate_legend=40)
    for name, values in series.lines.items():
        chart.add(measure_words(name), values, stroke_style={"width": 2.5})
    for name, limit in thresholds.items():
        chart.add(
            f"{measure_words(name)}: threshold",
            [limit] * len(series.times),
            show_dots=False,
            stroke_style={"width": 1.5, "dasharray": "6, 4"},
        )
    return _svg(chart)
