"""The deadline sweeper at scale, on PostgreSQL: 1 000 000 open cases, 10 000 of them due.

Target (issue 2): all 10 000 acted on in under 10 s. Anchor, measured in the same run on the same
database: the bare SQL floor for the same work (one UPDATE of the due cases and one INSERT of
their timeline rows, set-based, no audit chain, no outbox, no enforcement records), so the
ratio shows what the full transition costs over the least any implementation could do.

    python bench/bench_sweeper.py [--cases 1000000] [--due 10000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import multiprocessing
import multiprocessing.synchronize
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from abusedesk.bootstrap import bootstrap
from abusedesk.cases.sweeper import sweep
from abusedesk.clock import FakeClock
from abusedesk.config import Settings
from abusedesk.store.engine import make_engine
from abusedesk.store.migrate import upgrade

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def fill(
    engine: sa.Engine, cases: int, due: int, accounts: int = 1000, per_account: int = 10
) -> None:
    """Set-based fill: the inventory, then `cases` open cases of which `due` are past deadline."""
    t = NOW - timedelta(hours=30)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO accounts (id, reference, name, status, language, billing_name, billing_address,"
                " billing_email, notes, created_at) SELECT g, 'B' || g, 'Bench ' || g, 'active', 'en', '', '',"
                " '', '', :t FROM generate_series(1, :n) g"
            ),
            {"t": t, "n": accounts},
        )
        conn.execute(
            sa.text(
                "INSERT INTO contacts (account_id, kind, name, email, phone) SELECT g, k, '',"
                " k || '@b' || g || '.example', '' FROM generate_series(1, :n) g,"
                " unnest(ARRAY['abuse', 'technical', 'billing']) k"
            ),
            {"n": accounts},
        )
        conn.execute(
            sa.text(
                "INSERT INTO servers (id, account_id, hostname, plan, kind, status, created_at)"
                " SELECT g, (g - 1) / :per + 1, 's' || g || '.bench.example', 'vps', 'dedicated',"
                " 'active', :t FROM generate_series(1, :n) g"
            ),
            {"per": per_account, "n": accounts * per_account, "t": t},
        )
        # Due cases: deadline passed an hour ago. The rest: deadlines days ahead.
        conn.execute(
            sa.text(
                "INSERT INTO cases (account_id, server_id, resource, category, severity, state,"
                " is_repeat, summary, plan, customer_contacted, opened_at, updated_at, window_start,"
                " deadline_at, reminders_sent, next_action_at)"
                " SELECT (s - 1) / :per + 1, s, 's' || s || '.bench.example', 'spam', 'normal', 'open',"
                " false, 'bench', '', false, :t, :t, :t,"
                " CASE WHEN g <= :due THEN :past ELSE :future END, 2,"
                " CASE WHEN g <= :due THEN :past ELSE :future END"
                " FROM (SELECT g, (g % :servers) + 1 AS s FROM generate_series(1, :n) g) x"
            ),
            {
                "per": per_account,
                "servers": accounts * per_account,
                "n": cases,
                "due": due,
                "t": t,
                "past": NOW - timedelta(hours=1),
                "future": NOW + timedelta(days=5),
            },
        )
        conn.execute(sa.text("SELECT setval('cases_id_seq', (SELECT max(id) FROM cases))"))
        conn.execute(
            sa.text("ANALYZE accounts, contacts, servers, cases")
        )  # not the whole database


def anchor(engine: sa.Engine) -> float:
    """The set-based floor, rolled back so the real sweep then finds the same work."""
    with engine.connect() as conn:
        tx = conn.begin()
        started = time.perf_counter()
        conn.execute(
            sa.text(
                "WITH due AS (UPDATE cases SET state = 'disconnected', next_action_at = :later,"
                " deadline_at = :later, updated_at = :now WHERE next_action_at <= :now RETURNING id)"
                " INSERT INTO case_events (case_id, at, kind, actor, from_state, to_state, note, data)"
                " SELECT id, :now, 'deadline_passed', 'sweeper', 'open', 'disconnected', '', '{}'"
                " FROM due"
            ),
            {"now": NOW, "later": NOW + timedelta(days=7)},
        )
        elapsed = time.perf_counter() - started
        tx.rollback()
    return elapsed


def _worker(
    url: str, start: multiprocessing.synchronize.Event, results: multiprocessing.Queue
) -> None:
    engine = make_engine(url)
    desk = bootstrap(Settings(database_url=url), clock=FakeClock(NOW), engine=engine)
    start.wait()
    results.put(sweep(desk.uow(), desk.policy).disconnected)
    engine.dispose()


def run_workers(url: str, workers: int) -> tuple[float, int]:
    """`workers` sweeper processes at once, as the worker role runs them: the wall time from
    the common start until the last has nothing left, and the cases they acted on together."""
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    procs = [context.Process(target=_worker, args=(url, start, results)) for _ in range(workers)]
    for proc in procs:
        proc.start()
    time.sleep(3)  # let each process import and connect before the clock starts
    started = time.perf_counter()
    start.set()
    acted = sum(results.get(timeout=600) for _ in procs)
    elapsed = time.perf_counter() - started
    for proc in procs:
        proc.join()
    return elapsed, acted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--due", type=int, default=10_000)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("ABUSEDESK_BENCH_DATABASE_URL", "postgresql://127.0.0.1:5432/test"),
    )
    parser.add_argument("--workers", type=int, default=1, help="sweeper processes at once")
    parser.add_argument("--markdown", help="also write the result table to this file")
    args = parser.parse_args()

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = make_engine(args.database_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in args.database_url else "?"
    engine = make_engine(f"{args.database_url}{sep}options=-csearch_path%3D{schema}")
    try:
        upgrade(engine)
        started = time.perf_counter()
        fill(engine, args.cases, args.due)
        fill_s = time.perf_counter() - started
        print(f"filled {args.cases:,} cases ({args.due:,} due) in {fill_s:.1f} s", file=sys.stderr)
        floor = anchor(engine)
        url = engine.url.render_as_string(hide_password=False)
        if args.workers == 1:
            desk = bootstrap(Settings(database_url=url), clock=FakeClock(NOW), engine=engine)
            started = time.perf_counter()
            acted = sweep(desk.uow(), desk.policy).disconnected
            elapsed = time.perf_counter() - started
        else:
            elapsed, acted = run_workers(url, args.workers)
        with engine.connect() as conn:
            left = conn.scalar(
                sa.text("SELECT count(*) FROM cases WHERE next_action_at <= :now"), {"now": NOW}
            )
            actions = conn.scalar(sa.text("SELECT count(*) FROM enforcement_actions"))
        assert acted == args.due, (acted, args.due)
        assert left == 0, left
        assert actions == args.due, actions
        workers = f"{args.workers} worker" + ("s" if args.workers > 1 else "")
        lines = [
            "| measurement | seconds | cases/s | ratio |",
            "|---|---:|---:|---:|",
            f"| abusedesk sweep, {workers}: {args.due:,} due of {args.cases:,} open, every record"
            f" | {elapsed:.2f} | {args.due / elapsed:,.0f} | 1.00 |",
            f"| anchor: the bare SQL floor (one set-based UPDATE + INSERT) | {floor:.2f}"
            f" | {args.due / floor:,.0f} | ours {elapsed / floor:.1f}× slower |",
            f"| target: all due cases in 10 s | 10.00 | {args.due / 10:,.0f}"
            f" | ours {10 / elapsed:.2f}× faster |",
        ]
        table = "\n".join(lines)
        print(table)
        if args.markdown:
            with open(args.markdown, "w") as out:
                out.write(table + "\n")
        return 0 if elapsed < 10 else 1
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
