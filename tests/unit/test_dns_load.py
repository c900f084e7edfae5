"""R11's arithmetic: an account's share and rate per bucket, sustained or not, and a
random-subdomain flood shown as an attack on the customer rather than load they caused."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from abusedesk.dns.load import BUCKET, LoadState, Sample, assess, bucket_start
from abusedesk.policy.model import DnsLoadPolicy

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
POLICY = DnsLoadPolicy(share=0.05, qps=500, min_total_qps=50, sustained=timedelta(hours=1))
SECONDS = int(BUCKET.total_seconds())


def period(queries: int, nxdomain: int = 0, buckets: int = 12) -> list[Sample]:
    return [Sample(bucket_start(NOW) - BUCKET * i, queries, nxdomain) for i in range(buckets)]


def totals(per_bucket: int, buckets: int = 13) -> dict[datetime, int]:
    return {bucket_start(NOW) - BUCKET * i: per_bucket for i in range(buckets)}


def test_a_sustained_share_over_the_limit_flags_the_account() -> None:
    # 10 % of 1000 queries/s, every bucket of the hour
    found = assess(period(100 * SECONDS), totals(1000 * SECONDS), POLICY, NOW)
    assert found.state is LoadState.OVER
    assert found.peak_share == pytest.approx(0.10)
    assert "10.0% of all queries" in found.reason


def test_a_share_under_the_limit_is_normal() -> None:
    found = assess(period(40 * SECONDS), totals(1000 * SECONDS), POLICY, NOW)
    assert found.state is LoadState.NORMAL
    assert found.peak_share == pytest.approx(0.04)


def test_an_absolute_rate_flags_even_a_small_share() -> None:
    found = assess(period(600 * SECONDS), totals(100_000 * SECONDS), POLICY, NOW)
    assert found.state is LoadState.OVER
    assert found.peak_qps == pytest.approx(600)


def test_a_short_burst_is_not_sustained() -> None:
    burst = period(100 * SECONDS, buckets=3) + [
        Sample(bucket_start(NOW) - BUCKET * i, 10 * SECONDS) for i in range(3, 12)
    ]
    found = assess(burst, totals(1000 * SECONDS), POLICY, NOW)
    assert found.state is LoadState.NORMAL
    assert found.over_fraction == pytest.approx(3 / 12)


def test_missing_buckets_count_as_quiet() -> None:
    found = assess(period(100 * SECONDS, buckets=6), totals(1000 * SECONDS), POLICY, NOW)
    assert found.state is LoadState.NORMAL


def test_idle_servers_make_no_share() -> None:
    # the account has all 10 queries/s, but the servers answer only 10/s in all: nobody is hurt
    found = assess(period(10 * SECONDS), totals(10 * SECONDS), POLICY, NOW)
    assert found.state is LoadState.NORMAL
    assert found.peak_share == 0


def test_a_random_subdomain_flood_is_an_attack_not_load() -> None:
    # 300 queries/s, 90 % NXDOMAIN: without the flood the account is 3 % of the servers
    flood = period(300 * SECONDS, nxdomain=270 * SECONDS)
    found = assess(flood, totals(1000 * SECONDS), POLICY, NOW)
    assert found.state is LoadState.ATTACKED
    assert all(b.attacked for b in found.buckets)
    assert found.peak_share == pytest.approx(0.03)


def test_a_flood_on_top_of_real_overuse_is_still_overuse() -> None:
    heavy = period(1000 * SECONDS, nxdomain=600 * SECONDS)  # 400/s of real answers
    found = assess(heavy, totals(2000 * SECONDS), POLICY, NOW)
    assert found.state is LoadState.OVER


def test_samples_outside_the_period_are_ignored() -> None:
    old = [Sample(bucket_start(NOW) - timedelta(hours=3), 10**9)]
    found = assess(old, totals(1000 * SECONDS), POLICY, NOW)
    assert found.buckets == ()
    assert found.state is LoadState.NORMAL


def test_the_series_is_in_the_shape_the_case_page_charts() -> None:
    found = assess(period(100 * SECONDS), totals(1000 * SECONDS), POLICY, NOW)
    series = found.series()
    assert len(series) == 12
    assert series[0]["at"] < series[-1]["at"]
    assert series[-1]["share_percent"] == pytest.approx(10.0)


def test_the_fraction_needed_is_the_policys() -> None:
    half = period(100 * SECONDS, buckets=6) + [
        Sample(bucket_start(NOW) - BUCKET * i, 0) for i in range(6, 12)
    ]
    strict = assess(half, totals(1000 * SECONDS), POLICY, NOW)
    lenient = assess(half, totals(1000 * SECONDS), replace(POLICY, sustained_fraction=0.5), NOW)
    assert strict.state is LoadState.NORMAL
    assert lenient.state is LoadState.OVER


def test_an_operator_sets_the_limits_in_the_policy_file() -> None:
    from abusedesk.policy.loader import parse_policy

    policy = parse_policy('[dns_load]\nshare = 0.2\nsustained = "2h"\n').dns_load
    assert policy.share == 0.2
    assert policy.sustained == timedelta(hours=2)
    assert policy.qps == 500  # the shipped default, not overlaid


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("share = 2", "must be a share"),
        ("qps = -1", "must be a number"),
        ('sustained = "soon"', "is not a duration"),
        ("burst = 3", "burst"),
    ],
)
def test_a_bad_limit_is_refused_with_its_line(line: str, reason: str) -> None:
    from abusedesk.policy.loader import PolicyError, parse_policy

    with pytest.raises(PolicyError, match=reason) as refused:
        parse_policy(f"[dns_load]\n{line}\n", "operator.toml")
    assert refused.value.line == 2
