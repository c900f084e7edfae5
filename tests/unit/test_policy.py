from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from abusedesk.policy import (
    Category,
    PolicyError,
    RepeatAction,
    Severity,
    load_policy,
    parse_policy,
)
from abusedesk.policy.loader import parse_duration


def test_shipped_policy_has_every_category_and_the_aup_defaults() -> None:
    policy = load_policy()
    assert set(policy.categories) == set(Category)
    assert policy.window(Severity.NORMAL) == timedelta(hours=24)  # R13
    assert policy.window(Severity.HIGH) == timedelta(hours=4)
    assert policy.window(Severity.LOW) == timedelta(hours=72)
    assert policy.window(Severity.INFO) is None
    assert policy.severities[Severity.CRITICAL].disconnect_at_once
    assert policy.rule(Category.CSAM).zero_tolerance
    assert policy.repeat.window == timedelta(days=90)
    assert policy.repeat.action is RepeatAction.SHORTEN
    assert not policy.rule(Category.COPYRIGHT).hide_complainant


def test_an_operator_file_overrides_only_what_it_names(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[categories.spam]\nseverity = "high"\n[repeat]\nwindow = "30d"\n')
    policy = load_policy(path)
    assert policy.severity_of(Category.SPAM) is Severity.HIGH
    assert policy.repeat.window == timedelta(days=30)
    assert policy.severity_of(Category.PHISHING) is Severity.HIGH  # untouched default


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ('\n[categories.spam]\nseverity = "hgh"\n', 3, "not one of"),
        ('[categories.spamm]\nseverity = "high"\n', 1, "unknown category 'spamm'"),
        ('[deadlines]\nreminders = ["150%"]\n', 2, "neither a percentage"),
        ('[severities.high]\n\nwindow = "4 hours"\n', 3, "not a duration"),
        ('[repeat]\naction = "shout"\n', 2, "not one of"),
        ("[repeat\n", 1, "Expected"),
        ('colour = "blue"\n', 1, "unknown key 'colour'"),
        ('[categories.spam]\nzero_tolerance = "yes"\n', 2, "true or false"),
    ],
)
def test_a_wrong_file_is_refused_with_its_line_and_reason(
    text: str, line: int, reason: str
) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "operator.toml")
    assert caught.value.line == line
    assert reason in caught.value.reason
    assert str(caught.value).startswith(f"operator.toml:{line}: ")


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "absent.toml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", timedelta(hours=24)),
        ("90d", timedelta(days=90)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("30m", timedelta(minutes=30)),
        ("0h", timedelta(0)),
        ("", None),
        ("h", None),
        ("12", None),
        ("-4h", None),
    ],
)
def test_durations(text: str, expected: timedelta | None) -> None:
    assert parse_duration(text) == expected


# --------------------------------------------------------------------------- [traffic]


def test_traffic_defaults_and_overrides():
    from abusedesk.policy.model import TrafficThresholds

    policy = parse_policy(
        "[traffic]\nallow_servers = [3]\nallow_destinations = ['192.0.2.0/24']\n"
        "[traffic.plans.small]\nflood_pps = 1000\n"
        "[traffic.servers.9]\nscan_ports = 20\n"
    )
    traffic = policy.traffic
    assert traffic.thresholds(1) == TrafficThresholds()
    assert traffic.thresholds(1, "small").flood_pps == 1000
    assert traffic.thresholds(1, "unknown-plan") == TrafficThresholds()
    assert traffic.thresholds(9, "small").scan_ports == 20
    assert traffic.thresholds(9, "small").flood_pps == 1000
    assert traffic.allowed(3)
    assert not traffic.allowed(9)
    assert traffic.allow_destinations == ("192.0.2.0/24",)


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("[traffic.plans.default]\nflood_pps = -1\n", 2, "0 or more"),
        ("[traffic.plans.default]\nflood_pps = 'fast'\n", 2, "must be a number"),
        ("[traffic.plans.small]\nflood_sps = 3\n", 2, "unknown key 'flood_sps'"),
        ("[traffic.plans.default]\nflood_syn_share = 1.5\n", 2, "share"),
        ("[traffic.servers.web1]\nflood_pps = 3\n", 1, "not a server id"),
        ("[traffic]\nallow_servers = ['web1']\n", 2, "server ids"),
        ("[traffic]\nallow_destinations = ['10.0.0.1/8']\n", 2, "host bits"),
        ("[traffic]\nbogus = 1\n", 2, "unknown key 'bogus'"),
    ],
)
def test_traffic_mistakes_are_reported_with_their_line(text: str, line: int, words: str):
    with pytest.raises(PolicyError) as caught:
        parse_policy(text)
    assert caught.value.line == line
    assert words in caught.value.reason
