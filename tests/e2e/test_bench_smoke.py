"""The benchmarks that write to a database still run against today's schema.

They fill their tables with raw SQL for speed, so a new NOT NULL column breaks them without any
other test noticing (the sweeper's did, on `accounts.language`). Each runs here at a toy size;
the figures are not judged (a toy size misses the targets), only that the run completes and
writes its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import IN_CI, PG_URL

ROOT = Path(__file__).resolve().parents[2]


def bench(script: str, *args: str, tmp_path: Path) -> str:
    table = tmp_path / "table.md"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args, "--markdown", str(table)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    # Exit 1 says a target was missed, which a toy size does; a crash also exits 1, with a
    # traceback.
    assert done.returncode in (0, 1), done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return table.read_text()


def test_the_intake_benchmark_runs(tmp_path: Path) -> None:
    table = bench(
        "bench_intake.py", "--messages", "20", "--rows", "2000", "--part", "all", tmp_path=tmp_path
    )
    assert "| (a) SMTP in → case" in table
    assert "| (b) Shadowserver report → cases" in table


def test_the_sweeper_benchmark_runs(tmp_path: Path) -> None:
    if not PG_URL:
        if IN_CI:
            pytest.fail("CI=true but ABUSEDESK_TEST_DATABASE_URL is unset")
        pytest.skip("the sweeper benchmark needs PostgreSQL (ABUSEDESK_TEST_DATABASE_URL)")
    table = bench(
        "bench_sweeper.py",
        "--cases",
        "2000",
        "--due",
        "100",
        "--database-url",
        PG_URL,
        tmp_path=tmp_path,
    )
    assert "| abusedesk sweep, 1 worker: 100 due of 2,000 open" in table
