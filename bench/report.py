"""Writes docs/benchmarks.md from the tables that `bench/run` left in bench/results/."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

SECTIONS = [
    (
        "locate.md",
        "Locating owners: 1 000 000 prefixes, 1 000 000 lookups",
        "`bench/bench_locate.py`. Who owns each address, longest prefix, in bulk on one core "
        "(`PrefixIndex.lookup_v4` / `lookup_v6`), beside `pytricia` (a C Patricia trie) looking "
        "up the same addresses one `.get()` at a time, as it is used. Both answers are checked "
        "equal. Targets: ≥ 5 000 000 IPv4 and ≥ 2 000 000 IPv6 lookups/s, ≥ 5× pytricia.",
    ),
    (
        "sweeper.md",
        "The deadline sweeper: 1 000 000 open cases, 10 000 due, PostgreSQL, one worker",
        "`bench/bench_sweeper.py`. Every due case is disconnected with everything that entails: "
        "the case row, a timeline line, an audit entry (hash-chained), an outbox message, an "
        "enforcement action, the server's and the account's status. The anchor is the least any "
        "implementation could do for the same cases on the same database: one set-based UPDATE "
        "and one INSERT, with no audit, outbox or enforcement. Target: all 10 000 in under 10 s.",
    ),
    (
        "sweeper2.md",
        "The same, two workers at once",
        "Two sweeper processes started together, as `abusedesk run --role worker` twice; `SKIP "
        "LOCKED` shares the work between them. The count of enforcement actions is checked to "
        "equal the due cases: no case is acted on twice.",
    ),
]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        pg = subprocess.run(
            ["psql", "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        pg = "psql not found"
    return (
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
        f"{pg or 'PostgreSQL'}, {platform.system()} {platform.release()}"
    )


def main(results: Path) -> None:
    print("# Benchmarks\n")
    print(
        "Made by `bench/run`, which runs every benchmark and writes this page. Each figure "
        "stands beside its anchor, measured in the same run on the same machine; compare the "
        "ratios, since absolute times drift on shared machines.\n"
    )
    print(f"- run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"- machine: {machine()}\n")
    for name, title, explanation in SECTIONS:
        print(f"## {title}\n")
        print(explanation + "\n")
        table = results / name
        print(table.read_text() if table.exists() else "_not run (see bench/run's output)_\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
