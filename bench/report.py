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
    (
        "intake.md",
        "Intake: SMTP in → case, and a 100 000-row Shadowserver report → cases (SQLite)",
        "`bench/bench_intake.py`, on the demo provider (20 customers, 100 servers), the server side "
        "pinned to one CPU. (a) Complaints (half ARF feedback reports, half people's mail, about "
        "200 addresses of the demo servers, so some open a case and most join one) sent "
        "over four loopback SMTP sessions to the intake listener, which answers 250 once each is "
        "stored, while the worker's pipeline takes each to its case in the same process; the "
        "anchor is a bare aiosmtpd listener that accepts and discards, with the same client. "
        "(b) A zipped scan_redis CSV of 100 000 rows (a tenth of the addresses nobody's) stored "
        "and taken to one case per server: unzip, parse, verify, locate every row at its own time "
        "in one vectorised lookup, classify, open the cases; the anchor is Python's csv module "
        "reading the same rows from memory. Targets: ≥ 200 messages/s, ≥ 100 000 rows/s."
        " The table's last column says which are met. Where the time goes (profiled on "
        "SQLite): the listener commits in groups (the messages of the sessions waiting while a "
        "store runs are stored in one transaction, one audit seal, one commit, and each is "
        "answered 250 only after it). The worker claims ten reports in one query and takes them "
        "to their outcomes in one transaction, its statements built once, autoflush off, the "
        "report links and outbox rows written in one statement each; once warmed up it freezes "
        "what it keeps out of the cycle collector (`abusedesk.long_lived`, as the worker role "
        "does after its first tick: full collections had been a sixth of its time). Per message "
        "the listener takes about a fifth of the core and the worker the rest: about a third of "
        "the worker's time parsing (a third of that the standard library's MIME parser), a "
        "quarter the case service (loading the open case, opening the new ones with their "
        "ticket mail), a sixth locating (the server query), a tenth the commit (the report "
        "rows, the audit seal, the bulk inserts); "
        "the poll and claim the rest. A 100 000-row report is read by columns (pyarrow's CSV "
        "reader on one thread, conversions per column or per distinct value, cells made strings "
        "only for the rows a case shows), so its time is now spread over the store, the unzip, "
        "the read, locating the rows and the 100 cases.",
    ),
    (
        "intake_pg.md",
        "The same on PostgreSQL",
        "As above, each run in a fresh PostgreSQL schema.",
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
