"""Intake at scale, on one core, on the demo provider's inventory (20 customers, 100 servers).

(a) Messages/s, SMTP in → case: complaints sent over real loopback SMTP connections to the
    intake listener, stored (250 only once stored), and taken to their case by the worker's
    pipeline (parse, verify, locate, classify, open or attach the case) in the same process.
    Half are ARF feedback reports, half complaints written by people (those are acknowledged
    too), about 200 addresses of the demo servers, so some open a case and most join one. Target: ≥ 200 messages/s. Anchor, same client, same run: a bare aiosmtpd listener
    that accepts each message and throws it away.
(b) Rows/s, Shadowserver: a 100 000-row scan_redis report (zipped CSV, addresses spread over
    the demo inventory's prefixes, a tenth nobody's) stored and taken to its cases: one per
    server. Target: ≥ 100 000 rows/s. Anchor, same run: Python's csv module reading the same
    rows from memory and doing nothing with them.

The server side (listener, worker, pipeline) is pinned to one CPU; the SMTP client runs in a
process of its own, on another CPU when there is one.

    python bench/bench_intake.py [--messages 2000] [--rows 100000] [--database-url URL]
                                 [--part messages|rows|all] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import ipaddress
import multiprocessing
import multiprocessing.synchronize
import os
import random
import shutil
import smtplib
import statistics
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiosmtpd.smtp import SMTP

from abusedesk.bootstrap import Desk, bootstrap
from abusedesk.cases.models import Case
from abusedesk.clock import FakeClock
from abusedesk.config import Settings
from abusedesk.demo import seed
from abusedesk.intake.choices import ReportSource, ReportStatus
from abusedesk.intake.models import Report
from abusedesk.intake.pipeline import process, process_pending
from abusedesk.intake.receive import receive
from abusedesk.intake.settings import IntakeSettings, SmtpListen
from abusedesk.intake.smtp import serve_smtp
from abusedesk.inventory.locate import locate_addresses
from abusedesk.inventory.models import IPAssignment
from abusedesk.long_lived import freeze_long_lived
from abusedesk.store.engine import make_engine

REPEATS = 3
MESSAGES_TARGET = 200
ROWS_TARGET = 100_000
CONNECTIONS = 4  # the client's SMTP sessions at once, as an MTA delivers
BASE_URL = "https://desk.example"
TRUSTED = frozenset({"shadowserver.org"})
T0 = datetime(2026, 6, 1, tzinfo=UTC)
SERVER_CPU = 0

HEADER = (
    "timestamp,ip,protocol,port,hostname,tag,version,asn,geo,region,city,naics,sic,git_sha1,"
    "git_dirty_flag,build_id,mode,os,architecture,multiplexing_api,gcc_version,process_id,"
    "run_id,uptime,connected_clients"
)


# --------------------------------------------------------------------------- databases


@contextmanager
def fresh_desk(database_url: str | None, clock: Any = None) -> Iterator[Desk]:
    """A desk on an empty database (a new SQLite file, or a new PostgreSQL schema) holding the
    demo provider."""
    home = Path(tempfile.mkdtemp(prefix="abusedesk-bench-"))
    schema = None
    admin = None
    if database_url:
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        admin = make_engine(database_url)
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        sep = "&" if "?" in database_url else "?"
        url = f"{database_url}{sep}options=-csearch_path%3D{schema}"
    else:
        url = f"sqlite:///{home}/abusedesk.sqlite3"
    engine = make_engine(url)
    settings = Settings(home=home, database_url=url)
    desk = bootstrap(settings, clock=clock, engine=engine)
    try:
        desk.migrate()
        seed(desk)
        yield desk
    finally:
        engine.dispose()
        if admin is not None:
            with admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()
        shutil.rmtree(home, ignore_errors=True)


def demo_addresses(desk: Desk, rng: random.Random, n: int, others: float) -> list[str]:
    """`n` addresses inside the demo inventory's prefixes (IPv4 and IPv6), `others` of them
    from a range nobody holds."""
    with desk.uow().reading() as uow:
        prefixes = [
            ipaddress.ip_network(p) for p in uow.session.scalars(sa.select(IPAssignment.prefix))
        ]
    stranger = ipaddress.ip_network("203.0.113.0/24")
    out = []
    for _ in range(n):
        net = stranger if rng.random() < others else rng.choice(prefixes)
        out.append(str(net.network_address + rng.randrange(min(net.num_addresses, 1 << 32))))
    return out


def warm_index(desk: Desk) -> None:
    """The worker's prefix index is built once and then kept: not part of what is measured.
    Then what the worker keeps is frozen out of the cycle collector's reach, as the worker role
    does after its first tick (abusedesk.long_lived)."""
    with desk.uow().reading() as uow:
        locate_addresses(uow.session, ["198.18.1.1"])
    freeze_long_lived()


def median(values: list[float]) -> float:
    return statistics.median(values)


# --------------------------------------------------------------------------- (b) rows


def shadowserver_report(addresses: list[str], rng: random.Random) -> tuple[bytes, str]:
    """A Shadowserver scan_redis mail, zipped CSV attached; and the CSV's text."""
    lines = [HEADER]
    for address in addresses:
        when = T0 + timedelta(hours=1, seconds=rng.randrange(20 * 3600))
        lines.append(
            f'"{when:%Y-%m-%d %H:%M:%S}","{address}","tcp",6379,,"redis","2.8.14",64500,"US",'
            f'"CALIFORNIA","ORANGE",0,0,00000000,0,"fb6e288e5d94c23f","standalone",'
            f'"Linux 3.10.0 x86_64",,"epoll","4.4.7",{rng.randrange(1, 65535)},'
            f'"af9ee37a94c135db8c1b159a9c1afea8e8ef4132",{rng.randrange(10**7)},4'
        )
    text = "\n".join(lines) + "\n"
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("2026-06-01-scan_redis-asn.csv", text)
    message = EmailMessage()
    message["From"] = "Shadowserver <autoreports@shadowserver.org>"
    message["To"] = "abuse@provider.example"
    message["Subject"] = "Shadowserver scan_redis Report: 2026-06-01"
    message["Date"] = format_datetime(T0 + timedelta(days=1))
    message["Message-ID"] = f"<{uuid.uuid4().hex}@reports.shadowserver.org>"
    message.set_content("The report is attached.")
    message.add_attachment(
        archive.getvalue(),
        maintype="application",
        subtype="zip",
        filename="2026-06-01-scan_redis-asn.csv.zip",
    )
    return bytes(message), text


@dataclass
class RowsResult:
    rows: int
    raw_bytes: int
    ours: float  # seconds, median
    ours_cpu: float
    anchor: float
    cases: int
    servers_hit: int


def read_csv(text: str) -> int:
    count = 0
    for _ in csv.reader(io.StringIO(text)):
        count += 1
    return count - 1


def bench_rows(n_rows: int, database_url: str | None) -> RowsResult:
    rng = random.Random(20260601)
    ours: list[float] = []
    cpu: list[float] = []
    anchors: list[float] = []
    cases = servers_hit = 0
    raw = b""
    for repeat in range(REPEATS):
        clock = FakeClock(T0)
        with fresh_desk(database_url, clock) as desk:
            clock.advance(timedelta(days=1))
            addresses = demo_addresses(desk, rng, n_rows, others=0.1)
            raw, text = shadowserver_report(addresses, rng)
            warm_index(desk)
            started, started_cpu = time.perf_counter(), time.process_time()
            got = receive(desk.uow(), raw, ReportSource.SMTP)
            done = process(desk.uow, got.report_id, desk.policy, BASE_URL, TRUSTED)
            ours.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
            assert done.status is ReportStatus.ACCEPTED, done
            with desk.uow().reading() as uow:
                cases = uow.session.scalar(sa.select(sa.func.count()).select_from(Case)) or 0
            servers_hit = len(done.cases_opened) + len(done.cases_attached)
            started = time.perf_counter()
            assert read_csv(text) == n_rows
            anchors.append(time.perf_counter() - started)
        print(
            f"  rows, run {repeat + 1}: {ours[-1]:.2f} s, anchor {anchors[-1]:.2f} s",
            file=sys.stderr,
        )
    return RowsResult(
        n_rows, len(raw), median(ours), median(cpu), median(anchors), cases, servers_hit
    )


# --------------------------------------------------------------------------- (a) messages


def arf(n: int, address: str, now: datetime) -> bytes:
    boundary = f"arf-{n}"
    return (
        f"From: Mail Feedback Loop <fbl@mail.example>\r\n"
        f"To: abuse@provider.example\r\n"
        f"Subject: FW: complaint about message from {address}\r\n"
        f"Date: {format_datetime(now)}\r\n"
        f"Message-ID: <arf-{n}-{uuid.uuid4().hex[:8]}@fbl.mail.example>\r\n"
        f"MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=feedback-report; boundary="{boundary}"\r\n'
        f"\r\n"
        f"--{boundary}\r\n"
        f"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        f"This is an email abuse report for an email message received from IP {address}.\r\n"
        f"--{boundary}\r\n"
        f"Content-Type: message/feedback-report\r\n\r\n"
        f"Feedback-Type: abuse\r\nUser-Agent: MailFBL/2.1\r\nVersion: 1\r\n"
        f"Original-Mail-From: <bulk@sender.example>\r\nOriginal-Rcpt-To: <user{n}@mail.example>\r\n"
        f"Arrival-Date: {format_datetime(now)}\r\nSource-IP: {address}\r\n\r\n"
        f"--{boundary}\r\n"
        f"Content-Type: message/rfc822\r\n\r\n"
        f"From: <bulk@sender.example>\r\nTo: <user{n}@mail.example>\r\n"
        f"Subject: Cheap watches {n}\r\nMessage-ID: <spam-{n}@sender.example>\r\n\r\n"
        f"Buy now!\r\n"
        f"--{boundary}--\r\n"
    ).encode()


def person(n: int, address: str) -> bytes:
    message = EmailMessage()
    message["From"] = f"Pat Example {n} <pat{n}@isp.example>"
    message["To"] = "abuse@provider.example"
    message["Subject"] = "Spam from your network"
    message["Message-ID"] = f"<person-{n}-{uuid.uuid4().hex[:8]}@isp.example>"
    message.set_content(
        f"Hello,\n\nYour server {address} has been sending us unsolicited bulk e-mail since this "
        "morning, dozens of messages an hour. Please make it stop.\n\nPat\n"
    )
    return bytes(message)


def make_messages(n: int, addresses: list[str]) -> list[bytes]:
    now = datetime.now(UTC)
    return [arf(i, addresses[i], now) if i % 2 == 0 else person(i, addresses[i]) for i in range(n)]


def _client(
    port: int,
    messages: list[bytes],
    connections: int,
    ready: multiprocessing.synchronize.Event,
    go: multiprocessing.synchronize.Event,
    results: Any,
) -> None:
    """The sending MTA: `connections` SMTP sessions at once, each sending its share in turn."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        others = set(range(os.cpu_count() or 1)) - {SERVER_CPU}
        os.sched_setaffinity(0, others)
    shares = [messages[i::connections] for i in range(connections)]
    errors: list[str] = []

    def send(share: list[bytes]) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=120) as client:
                for raw in share:
                    client.sendmail("fbl@mail.example", ["abuse@provider.example"], raw)
        except Exception as exc:  # reported to the parent, which fails the run
            errors.append(f"{type(exc).__name__}: {exc}")

    ready.set()
    go.wait()
    started = time.perf_counter()
    threads = [threading.Thread(target=send, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put((time.perf_counter() - started, errors))


def send_all(port: int, messages: list[bytes]) -> tuple[float, float]:
    """Runs the client; returns (the moment the client was told to go, its sending time)."""
    context = multiprocessing.get_context("spawn")
    ready, go, results = context.Event(), context.Event(), context.Queue()
    proc = context.Process(target=_client, args=(port, messages, CONNECTIONS, ready, go, results))
    proc.start()
    if not ready.wait(60):
        raise RuntimeError("the SMTP client did not start")
    started = time.perf_counter()
    go.set()
    elapsed, errors = results.get(timeout=900)
    proc.join(60)
    if errors:
        raise RuntimeError(f"the client failed: {errors[:3]}")
    return started, elapsed


class Discard:
    """The anchor's handler: accept every message, keep nothing."""

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:  # noqa: N802
        return "250 2.0.0 OK"


class Loop:
    """An asyncio loop in a thread of its own, serving a coroutine until told to stop."""

    def __init__(self, serve: Callable[[asyncio.Event], Any]) -> None:
        self.loop = asyncio.new_event_loop()
        self.stop: asyncio.Event | None = None
        self.started = threading.Event()

        async def main() -> None:
            self.stop = asyncio.Event()
            self.started.set()
            await serve(self.stop)

        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(main(),))

    def __enter__(self) -> Loop:
        self.thread.start()
        self.started.wait(10)
        time.sleep(0.2)  # the server binds its port right after
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.stop is not None
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(30)
        self.loop.close()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def anchor_listener(messages: list[bytes]) -> float:
    port = free_port()

    async def serve(stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(Discard(), hostname="anchor", data_size_limit=25 * 1024 * 1024),
            "127.0.0.1",
            port,
        )
        await stop.wait()
        server.close()
        await server.wait_closed()

    with Loop(serve):
        _, elapsed = send_all(port, messages)
    return elapsed


@dataclass
class MessagesResult:
    messages: int
    pipeline: float  # seconds from the first message sent to the last one's case
    pipeline_cpu: float  # the server side's CPU seconds meanwhile (listener and worker)
    listener: float  # seconds the client took: every message stored (250)
    anchor: float
    cases: int
    outcomes: dict[str, int]


def bench_messages(n: int, database_url: str | None) -> MessagesResult:
    rng = random.Random(7)
    pipelines: list[float] = []
    cpus: list[float] = []
    listeners: list[float] = []
    anchors: list[float] = []
    outcomes: dict[str, int] = {}
    cases = 0
    for repeat in range(REPEATS):
        with fresh_desk(database_url) as desk:
            # Complaints come back to the same servers: 200 addresses for all the messages, so
            # that some open a case and most join one, as they do at a real desk.
            pool = demo_addresses(desk, rng, 200, others=0.0)
            messages = make_messages(n, [rng.choice(pool) for _ in range(n)])
            anchors.append(anchor_listener(messages))
            warm_index(desk)
            settings = IntakeSettings(
                smtp=SmtpListen(port=free_port()), recipients=["abuse@provider.example"]
            )
            done = threading.Event()
            counts: dict[str, int] = {}

            def work(
                desk: Desk = desk, counts: dict[str, int] = counts, done: threading.Event = done
            ) -> None:
                # The worker role's intake step, run as fast as it can rather than each tick.
                while not done.is_set():
                    got = process_pending(desk.uow, desk.policy, BASE_URL, TRUSTED, batch=100)
                    for key, value in got.items():
                        counts[key] = counts.get(key, 0) + value
                    if sum(counts.values()) >= n:
                        done.set()
                    elif not got:
                        time.sleep(0.002)

            with Loop(
                lambda stop, desk=desk, settings=settings: serve_smtp(desk.uow, settings, stop)
            ):
                worker = threading.Thread(target=work)
                worker.start()
                # The client is a process of its own: this process's CPU time is the server
                # side's alone (with the client's start-up wait, which costs next to nothing).
                started_cpu = time.process_time()
                started, sending = send_all(settings.smtp.port, messages)
                if not done.wait(900):
                    raise RuntimeError(f"the worker did not finish: {counts}")
                pipelines.append(time.perf_counter() - started)
                cpus.append(time.process_time() - started_cpu)
                listeners.append(sending)
                worker.join()
            with desk.uow().reading() as uow:
                waiting = uow.session.scalar(
                    sa.select(sa.func.count())
                    .select_from(Report)
                    .where(Report.status == ReportStatus.RECEIVED)
                )
                cases = uow.session.scalar(sa.select(sa.func.count()).select_from(Case)) or 0
            assert waiting == 0, waiting
            assert counts.get("accepted") == n, counts
            outcomes = counts
        print(
            f"  messages, run {repeat + 1}: pipeline {pipelines[-1]:.2f} s "
            f"(CPU {cpus[-1]:.2f} s), listener "
            f"{listeners[-1]:.2f} s, anchor {anchors[-1]:.2f} s",
            file=sys.stderr,
        )
    return MessagesResult(
        n, median(pipelines), median(cpus), median(listeners), median(anchors), cases, outcomes
    )


# --------------------------------------------------------------------------- report


def markdown(database: str, messages: MessagesResult | None, rows: RowsResult | None) -> str:
    lines = [
        f"Database: {database}. Median of {REPEATS} runs, each on a fresh database holding the "
        "demo provider; the server side pinned to one CPU.\n",
        "| measurement | count | seconds | per second | ratio to anchor | target met |",
        "|---|---:|---:|---:|---:|---|",
    ]
    if messages is not None:
        m = messages
        rate, listener, anchor = (
            m.messages / m.pipeline,
            m.messages / m.listener,
            m.messages / m.anchor,
        )
        lines += [
            f"| (a) SMTP in → case: listener stores, worker parses, verifies, locates, opens or "
            f"attaches ({m.cases} cases; CPU {m.pipeline_cpu:.2f} s, "
            f"{m.messages / m.pipeline_cpu:,.0f} messages per CPU second) "
            f"| {m.messages:,} messages | {m.pipeline:.2f} "
            f"| {rate:,.0f} | {rate / anchor:.2f} | {'yes' if rate >= MESSAGES_TARGET else 'NO'} "
            f"(≥ {MESSAGES_TARGET}/s) |",
            f"| (a) the intake listener alone: every message stored before its 250 "
            f"| {m.messages:,} messages | {m.listener:.2f} | {listener:,.0f} "
            f"| {listener / anchor:.2f} | |",
            f"| (a) anchor: bare aiosmtpd, accepts and discards, same client "
            f"| {m.messages:,} messages | {m.anchor:.2f} | {anchor:,.0f} | 1.00 | |",
        ]
    if rows is not None:
        r = rows
        rate, anchor = r.rows / r.ours, r.rows / r.anchor
        lines += [
            f"| (b) Shadowserver report → cases: store, unzip, parse, verify, locate every row "
            f"at its time, classify, {r.servers_hit} cases (CPU {r.ours_cpu:.2f} s) "
            f"| {r.rows:,} rows | {r.ours:.2f} | {rate:,.0f} | {rate / anchor:.2f} "
            f"| {'yes' if rate >= ROWS_TARGET else 'NO'} (≥ {ROWS_TARGET:,}/s) |",
            f"| (b) anchor: Python's csv module reading the same rows from memory "
            f"| {r.rows:,} rows | {r.anchor:.2f} | {anchor:,.0f} | 1.00 | |",
        ]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines.append(
        f"\nLoad average when the run ended (1, 5, 15 min): {load}, on {os.cpu_count()} cores; "
        "the anchors feel the same load."
    )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--database-url", default=None, help="PostgreSQL; default: SQLite")
    parser.add_argument("--part", choices=["messages", "rows", "all"], default="all")
    parser.add_argument("--markdown", help="also write the result table to this file")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        # Before any thread starts: threads inherit it.
        os.sched_setaffinity(0, {SERVER_CPU})
    database = "PostgreSQL" if args.database_url else "SQLite (the embedded default)"
    messages = rows = None
    if args.part in ("messages", "all"):
        messages = bench_messages(args.messages, args.database_url)
    if args.part in ("rows", "all"):
        rows = bench_rows(args.rows, args.database_url)
    table = markdown(database, messages, rows)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table)
    met = (messages is None or messages.messages / messages.pipeline >= MESSAGES_TARGET) and (
        rows is None or rows.rows / rows.ours >= ROWS_TARGET
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
