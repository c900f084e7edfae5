"""Reading a policy file: the shipped defaults, with an operator's file laid over them.

Every mistake is reported with the file, the line and the reason, and the file is refused whole.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import replace
from datetime import timedelta
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from abusedesk.policy.choices import Category, RepeatAction, Severity
from abusedesk.policy.model import (
    CategoryRule,
    DnsLoadPolicy,
    Policy,
    Reminder,
    RepeatRule,
    SeverityRule,
    TrafficPolicy,
    TrafficThresholds,
)

E = TypeVar("E", bound=StrEnum)

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_PERCENT = re.compile(r"^(\d{1,3}(?:\.\d+)?)%$")

_TOP_KEYS = {
    "aup_version",
    "deadlines",
    "severities",
    "repeat",
    "categories",
    "traffic",
    "dns_load",
}
_DNS_LOAD_RATES = {"qps", "min_total_qps"}
_DNS_LOAD_SHARES = {"share", "sustained_fraction", "flood_nxdomain_share"}
_DNS_LOAD_DURATIONS = {"sustained", "notice_grace"}
_TRAFFIC_KEYS = {"allow_servers", "allow_destinations", "plans", "servers"}
_SHARES = {"flood_syn_share"}  # a fraction in (0, 1]
_DEADLINE_KEYS = {"termination_grace", "due_soon", "reminders"}
_SEVERITY_KEYS = {"window", "disconnect_at_once"}
_REPEAT_KEYS = {"window", "action", "shortened_window"}
_CATEGORY_KEYS = {"label", "severity", "zero_tolerance", "hide_complainant", "repeat_action"}


class PolicyError(ValueError):
    def __init__(self, source: str, line: int | None, reason: str) -> None:
        self.source, self.line, self.reason = source, line, reason
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {reason}")


def default_text() -> str:
    return resources.files("abusedesk.policy").joinpath("default.toml").read_text()


def load_policy(path: Path | None = None) -> Policy:
    if path is None:
        return parse_policy(default_text(), "default.toml")
    try:
        text = path.read_text()
    except OSError as exc:
        raise PolicyError(str(path), None, f"cannot read the file: {exc.strerror}") from exc
    return parse_policy(text, str(path))


def parse_policy(text: str, source: str = "policy.toml") -> Policy:
    """The defaults overlaid by `text` (when `text` is the defaults, simply the defaults)."""
    base = tomllib.loads(default_text())
    try:
        overlay = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        raise PolicyError(source, int(match.group(1)) if match else None, str(exc)) from exc
    return _Reader(text, source).read(_merge(base, overlay))


def _merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class _Reader:
    def __init__(self, text: str, source: str) -> None:
        self.lines = text.splitlines()
        self.source = source

    def fail(self, table: str, key: str | None, reason: str) -> PolicyError:
        return PolicyError(self.source, self.line_of(table, key), reason)

    def line_of(self, table: str, key: str | None) -> int | None:
        """Where `key` of `[table]` is written in the operator's text (None if it is not)."""
        current = ""
        header_line = None
        for number, raw in enumerate(self.lines, 1):
            line = raw.split("#", 1)[0].strip()
            header = re.match(r"^\[([^\]]+)\]$", line)
            if header:
                current = header.group(1).replace(" ", "")
                if current == table:
                    header_line = number
                continue
            if key and current == table and re.match(rf"^{re.escape(key)}\s*=", line):
                return number
        return header_line

    def read(self, data: dict[str, Any]) -> Policy:
        self.unknown(data, _TOP_KEYS, "")
        version = data.get("aup_version")
        if not isinstance(version, str) or not version:
            raise self.fail("", "aup_version", "aup_version must be a non-empty string")
        deadlines = self.table(data, "deadlines", _DEADLINE_KEYS)
        severities = self.severities(data)
        return Policy(
            aup_version=version,
            severities=severities,
            categories=self.categories(data),
            repeat=self.repeat(data),
            reminders=self.reminders(deadlines),
            termination_grace=self.duration(deadlines, "deadlines", "termination_grace"),
            due_soon=self.duration(deadlines, "deadlines", "due_soon"),
            traffic=self.traffic(data),
            dns_load=self.dns_load(data),
        )

    def dns_load(self, data: dict[str, Any]) -> DnsLoadPolicy:
        if "dns_load" not in data:
            return DnsLoadPolicy()
        table = self.table(
            data, "dns_load", _DNS_LOAD_RATES | _DNS_LOAD_SHARES | _DNS_LOAD_DURATIONS
        )
        values: dict[str, Any] = {}
        for key, value in table.items():
            if key in _DNS_LOAD_DURATIONS:
                values[key] = self.duration(table, "dns_load", key)
                continue
            number = (
                value if isinstance(value, int | float) and not isinstance(value, bool) else None
            )
            if number is None or number < 0 or number != number:
                raise self.fail("dns_load", key, f"{key} = {value!r} must be a number, 0 or more")
            if key in _DNS_LOAD_SHARES and not 0 < number <= 1:
                raise self.fail("dns_load", key, f"{key} = {value!r} must be a share in (0, 1]")
            values[key] = float(number)
        return DnsLoadPolicy(**values)

    def table(self, data: dict[str, Any], name: str, allowed: set[str]) -> dict[str, Any]:
        value = data.get(name)
        if not isinstance(value, dict):
            raise self.fail(name, None, f"[{name}] must be a table")
        self.unknown(value, allowed, name)
        return value

    def unknown(self, value: dict[str, Any], allowed: set[str], table: str) -> None:
        for key in value:
            if key not in allowed:
                expected = ", ".join(sorted(allowed))
                where = f"[{table}]" if table else "the top level"
                raise self.fail(table, key, f"unknown key {key!r} in {where} (expected {expected})")

    def duration(
        self, table: dict[str, Any], name: str, key: str, allow_none: bool = False
    ) -> timedelta:
        value = table.get(key)
        if value is None:
            raise self.fail(name, None, f"[{name}] needs {key}")
        parsed = parse_duration(value) if isinstance(value, str) else None
        if parsed is None:
            hint = ' or "none"' if allow_none else ""
            raise self.fail(
                name, key, f'{key} = {value!r} is not a duration like "24h", "90d", "1d12h"{hint}'
            )
        return parsed

    def severities(self, data: dict[str, Any]) -> dict[Severity, SeverityRule]:
        table = self.table(data, "severities", {s.value for s in Severity})
        rules = {}
        for severity in Severity:
            name = f"severities.{severity.value}"
            entry = table.get(severity.value)
            if not isinstance(entry, dict):
                raise self.fail("severities", None, f"[{name}] is missing")
            self.unknown(entry, _SEVERITY_KEYS, name)
            window = (
                None
                if entry.get("window") == "none"
                else self.duration(entry, name, "window", True)
            )
            at_once = entry.get("disconnect_at_once", False)
            if not isinstance(at_once, bool):
                raise self.fail(
                    name, "disconnect_at_once", "disconnect_at_once must be true or false"
                )
            rules[severity] = SeverityRule(severity, window, at_once)
        return rules

    def choice(self, enum: type[E], value: Any, table: str, key: str) -> E:
        try:
            return enum(value)
        except ValueError:
            options = ", ".join(m.value for m in enum)
            raise self.fail(table, key, f"{key} = {value!r} is not one of: {options}") from None

    def categories(self, data: dict[str, Any]) -> dict[Category, CategoryRule]:
        table = data.get("categories")
        if not isinstance(table, dict):
            raise self.fail("categories", None, "[categories] must be a table")
        for key in table:
            if key not in Category.__members__.values():
                known = ", ".join(c.value for c in Category)
                raise self.fail(
                    f"categories.{key}", None, f"unknown category {key!r} (known: {known})"
                )
        rules = {}
        for category in Category:
            name = f"categories.{category.value}"
            entry = table.get(category.value)
            if not isinstance(entry, dict):
                raise self.fail("categories", None, f"[{name}] is missing")
            self.unknown(entry, _CATEGORY_KEYS, name)
            flags = {}
            for flag in ("zero_tolerance", "hide_complainant"):
                if flag in entry and not isinstance(entry[flag], bool):
                    raise self.fail(name, flag, f"{flag} must be true or false")
                flags[flag] = entry.get(flag, flag == "hide_complainant")
            repeat = entry.get("repeat_action")
            rules[category] = CategoryRule(
                category=category,
                label=str(entry.get("label") or category.value.replace("_", " ").capitalize()),
                severity=self.choice(Severity, entry.get("severity"), name, "severity"),
                zero_tolerance=flags["zero_tolerance"],
                hide_complainant=flags["hide_complainant"],
                repeat_action=(
                    None
                    if repeat is None
                    else self.choice(RepeatAction, repeat, name, "repeat_action")
                ),
            )
        return rules

    def traffic(self, data: dict[str, Any]) -> TrafficPolicy:
        table = self.table(data, "traffic", _TRAFFIC_KEYS)
        plans_table = table.get("plans", {})
        if not isinstance(plans_table, dict) or not isinstance(plans_table.get("default"), dict):
            raise self.fail("traffic", "plans", "[traffic.plans.default] must be a table")
        default = TrafficThresholds(
            **self.thresholds(plans_table["default"], "plans.default", True)
        )
        plans = {"default": default}
        for plan, entry in plans_table.items():
            if plan != "default":
                plans[plan] = replace(default, **self.thresholds(entry, f"plans.{plan}"))
        servers_table = table.get("servers", {})
        if not isinstance(servers_table, dict):
            raise self.fail("traffic", "servers", "traffic.servers must be a table")
        servers = {}
        for key, entry in servers_table.items():
            if not str(key).isdigit():
                raise self.fail(
                    f"traffic.servers.{key}", None, f"traffic.servers.{key}: not a server id"
                )
            servers[int(key)] = self.thresholds(entry, f"servers.{key}")
        allow_servers = table.get("allow_servers", [])
        if not isinstance(allow_servers, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in allow_servers
        ):
            raise self.fail(
                "traffic", "allow_servers", "allow_servers must be a list of server ids"
            )
        destinations = table.get("allow_destinations", [])
        if not isinstance(destinations, list):
            raise self.fail(
                "traffic", "allow_destinations", "allow_destinations must be a list of prefixes"
            )
        for value in destinations:
            try:
                ipaddress.ip_network(str(value))
            except ValueError as exc:
                raise self.fail(
                    "traffic", "allow_destinations", f"allow_destinations: {value!r}: {exc}"
                ) from None
        return TrafficPolicy(
            plans=plans,
            servers=servers,
            allow_servers=frozenset(allow_servers),
            allow_destinations=tuple(str(v) for v in destinations),
        )

    def thresholds(self, entry: Any, name: str, complete: bool = False) -> dict[str, float]:
        table = f"traffic.{name}"
        if not isinstance(entry, dict):
            raise self.fail(table, None, f"[{table}] must be a table")
        allowed = set(TrafficThresholds.names())
        self.unknown(entry, allowed, table)
        if complete:
            missing = sorted(allowed - set(entry))
            if missing:
                raise self.fail(table, None, f"[{table}] needs {', '.join(missing)}")
        out = {}
        for key, value in entry.items():
            number = (
                value if isinstance(value, int | float) and not isinstance(value, bool) else None
            )
            if number is None or number < 0 or number != number:
                raise self.fail(table, key, f"{key} = {value!r} must be a number, 0 or more")
            if key in _SHARES and not 0 < number <= 1:
                raise self.fail(table, key, f"{key} = {value!r} must be a share in (0, 1]")
            out[key] = float(number)
        return out

    def repeat(self, data: dict[str, Any]) -> RepeatRule:
        table = self.table(data, "repeat", _REPEAT_KEYS)
        return RepeatRule(
            window=self.duration(table, "repeat", "window"),
            action=self.choice(RepeatAction, table.get("action"), "repeat", "action"),
            shortened_window=self.duration(table, "repeat", "shortened_window"),
        )

    def reminders(self, deadlines: dict[str, Any]) -> tuple[Reminder, ...]:
        values = deadlines.get("reminders", [])
        if not isinstance(values, list):
            raise self.fail("deadlines", "reminders", 'reminders must be a list like ["50%", "2h"]')
        out = []
        for value in values:
            text = str(value)
            percent = _PERCENT.match(text)
            if percent and 0 < float(percent.group(1)) < 100:
                out.append(Reminder(fraction=float(percent.group(1)) / 100))
                continue
            before = parse_duration(text)
            if before is None or before <= timedelta(0):
                raise self.fail(
                    "deadlines",
                    "reminders",
                    f"reminder {value!r} is neither a percentage of the window (1%…99%)"
                    " nor a time before the deadline",
                )
            out.append(Reminder(before=before))
        return tuple(out)


def parse_duration(text: str) -> timedelta | None:
    match = _DURATION.match(text.strip())
    if not match or not any(match.groups()):
        return None
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
