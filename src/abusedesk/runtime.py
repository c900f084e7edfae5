"""Runs the roles: all of them in one process (the embedded default) or one alone.

Roles: `web` (pages and API), `intake` (the SMTP listener and, when configured, the IMAP
poller), `worker` (new reports, the deadline sweeper, enforcement, outgoing mail), `traffic`
(the NetFlow/IPFIX and sFlow collector), `dns` (the data plane serving the customers' zones,
kept in step with the database, and the query load per zone). Each role is an asyncio
task; blocking work (database transactions, SMTP, IMAP, drivers, flow decoding) runs in a
thread so the web role stays responsive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import uvicorn

from abusedesk.bootstrap import Desk
from abusedesk.cases.sweeper import sweep
from abusedesk.enforce.drivers.registry import DriverRegistry
from abusedesk.enforce.service import carry_out_due, reconcile
from abusedesk.intake.pipeline import process_pending
from abusedesk.long_lived import freeze_long_lived
from abusedesk.notify.service import deliver_due
from abusedesk.notify.transport import make_transport

log = logging.getLogger("abusedesk.runtime")

EXPORTERS_EVERY = 60.0  # seconds between writes of the flow exporter registry


class RoleName(StrEnum):
    WEB = "web"
    INTAKE = "intake"
    WORKER = "worker"
    TRAFFIC = "traffic"
    DNS = "dns"


async def run_web(desk: Desk, stop: asyncio.Event) -> None:
    from abusedesk.web.app import create_app  # the web stack is only imported by the web role

    config = uvicorn.Config(
        create_app(desk),
        host=desk.settings.web.host,
        port=desk.settings.web.port,
        log_level=desk.settings.log_level.lower(),
        access_log=False,
    )
    server = uvicorn.Server(config)
    # uvicorn takes SIGINT/SIGTERM while it serves and raises them again once it has shut
    # down, so the signal then reaches `serve`'s handler and stops the other roles too.
    log.info("web: serving on http://%s:%d", desk.settings.web.host, desk.settings.web.port)
    serving = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True
    await serving


class Worker:
    """The worker role's work, one tick at a time: new reports, deadlines, enforcement, mail.

    In that order because each step writes what the next carries out (a report opens a case
    and queues its ticket mail; a sweep writes enforcement actions and notices), so a
    disconnection is applied and mailed in the same tick that decided it.
    """

    def __init__(self, desk: Desk) -> None:
        self.desk = desk
        self.transport = make_transport(desk.settings)
        self.registry = DriverRegistry.from_settings(desk.settings.enforce, desk.settings.home)
        self.reconciled_at: datetime | None = None

    def start(self) -> None:
        """Make the network match the database before acting on anything new."""
        self.reconcile()

    def reconcile(self) -> None:
        self.reconciled_at = self.desk.clock.now()
        result = reconcile(self.desk.uow(), self.registry)
        if result.ok:
            log.info("worker: %d active cuts reconciled with the enforcement drivers", result.cuts)
        else:
            log.error("worker: reconciliation failed for %s", ", ".join(result.errors))

    def tick(self) -> None:
        desk = self.desk
        # New complaints first, so a case they open is mailed in this same tick.
        trusted = frozenset(desk.settings.intake.trusted_reporters)
        while (
            sum(
                process_pending(
                    desk.uow, desk.policy, desk.settings.base_url, trusted, BATCH
                ).values()
            )
            >= BATCH
        ):
            pass
        every = timedelta(seconds=desk.settings.enforce.reconcile_interval_seconds)
        if self.reconciled_at is None or desk.clock.now() - self.reconciled_at >= every:
            # Again from time to time: a router or an ExaBGP restarted behind our back, or a
            # cut made by hand on the network, is put right without waiting for a restart.
            self.reconcile()
        sweep(desk.uow(), desk.policy)
        while True:
            done = carry_out_due(desk.uow(), self.registry, desk.settings.enforce, BATCH)
            if done.applied + done.failed + done.superseded < BATCH:
                break
        while deliver_due(desk.uow(), self.transport, desk.settings, desk.policy).handled >= BATCH:
            pass

    def close(self) -> None:
        self.registry.close()


BATCH = 100


async def run_worker(desk: Desk, stop: asyncio.Event) -> None:
    interval = desk.settings.sweep_interval_seconds
    worker = Worker(desk)
    try:
        await asyncio.to_thread(worker.start)
        log.info("worker: sweeping deadlines, enforcing and sending mail every %.0f s", interval)
        frozen = False
        while not stop.is_set():
            try:
                await asyncio.to_thread(worker.tick)
            except Exception:
                # A failed step rolls back and is retried on the next tick; it must not stop
                # the worker, and it must not pass silently.
                log.exception("worker: a tick failed; retrying in %.0f s", interval)
            if not frozen:
                # The first tick has built what the worker keeps (the prefix index, compiled
                # statements): full collections need not walk it again (abusedesk.long_lived).
                frozen = True
                await asyncio.to_thread(freeze_long_lived)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
    finally:
        await asyncio.to_thread(worker.close)


async def run_intake(desk: Desk, stop: asyncio.Event) -> None:
    """The SMTP listener, and the IMAP poller when a mailbox is configured. Both only store
    what arrives; the worker processes it."""
    from abusedesk.intake.smtp import serve_smtp

    sources = [serve_smtp(desk.uow, desk.settings.intake, stop)]
    if desk.settings.intake.imap_host:
        from abusedesk.intake.imap import serve_imap

        sources.append(serve_imap(desk.uow, desk.settings.intake, stop))
    await asyncio.gather(*sources)


async def run_traffic(desk: Desk, stop: asyncio.Event) -> None:
    """The flow collector. It reads and decodes on a thread of its own (see
    abusedesk.traffic.collector), so datagrams never wait on the event loop; the analysis runs
    in a child process (abusedesk.traffic.offload) unless `[traffic] analysis = "thread"`."""
    from abusedesk.traffic.choices import AnalysisMode
    from abusedesk.traffic.collector import Collector
    from abusedesk.traffic.findings import Analysis, TrafficFindings, report_detections
    from abusedesk.traffic.heap import keep_freed_memory
    from abusedesk.traffic.offload import AnalysisProcess

    keep_freed_memory()  # batch-sized arrays reuse their pages (abusedesk.traffic.heap)
    settings = desk.settings.traffic
    analysis: Analysis | AnalysisProcess
    if settings.analysis is AnalysisMode.PROCESS and not _in_memory(desk):
        analysis = AnalysisProcess(desk.settings, desk.policy)
    else:
        findings = TrafficFindings(
            settings, desk.policy.traffic, desk.session_factory, report_detections(desk)
        )
        analysis = Analysis(findings)
    collector = Collector(settings, analysis)
    collector.open()
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, analysis.start)  # a child process starts in seconds
    except BaseException:
        collector.close()
        raise
    halt = threading.Event()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="traffic") as executor:
        reading = loop.run_in_executor(executor, collector.run, halt)
        stopping = asyncio.create_task(stop.wait())
        registry = asyncio.create_task(_keep_exporters(desk, collector, stop))
        try:
            first: set[asyncio.Future[Any]] = {reading, stopping}
            await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
        finally:
            halt.set()
            stopping.cancel()
            if stop.is_set():  # one last write of what the collector saw
                await asyncio.wait({registry}, timeout=5)
            registry.cancel()
            try:
                await reading  # raises if the read loop failed
            finally:
                collector.close()
                await loop.run_in_executor(None, analysis.stop)


def _in_memory(desk: Desk) -> bool:
    """A database only this process can see (SQLite in memory): no child can share it."""
    url = desk.engine.url
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


async def _keep_exporters(desk: Desk, collector: Any, stop: asyncio.Event) -> None:
    """Writes the collector's exporter registry to the database every minute (and at the end),
    for the console's NOC page and `abusedesk traffic exporters`."""
    from abusedesk.traffic import service as traffic

    host = socket.gethostname()
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=EXPORTERS_EVERY)
        exporters = collector.registry.snapshot()
        if exporters:
            try:
                await asyncio.to_thread(traffic.record_exporters, desk.uow(), host, exporters)
            except Exception:
                log.exception("traffic: the exporter registry could not be written")
        if stop.is_set():
            return


async def run_dns(desk: Desk, stop: asyncio.Event) -> None:
    """The DNS data plane (built-in or Knot): zones published again within ``sync_every``
    seconds of a change, counters stored and the load reviewed every five-minute bucket."""
    from abusedesk.dns.load import BUCKET
    from abusedesk.dns.role import DnsRole

    role = DnsRole(desk)
    await asyncio.to_thread(role.start)
    settings = desk.settings.dns
    log.info("dns: %s data plane on %s port %d", settings.plane.value, settings.host, settings.port)
    sampled_at = desk.clock.now()
    try:
        while not stop.is_set():
            try:
                await asyncio.to_thread(role.sync)
                now = desk.clock.now()
                if now - sampled_at >= BUCKET:
                    await asyncio.to_thread(role.sample, now)
                    sampled_at = now
            except Exception:
                log.exception("dns: a step failed; retrying in %.0f s", settings.sync_every)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=settings.sync_every)
    finally:
        await asyncio.to_thread(role.stop)


ROLES: dict[RoleName, Callable[[Desk, asyncio.Event], Coroutine[Any, Any, None]]] = {
    RoleName.WEB: run_web,
    RoleName.INTAKE: run_intake,
    RoleName.WORKER: run_worker,
    RoleName.TRAFFIC: run_traffic,
    RoleName.DNS: run_dns,
}


async def serve(desk: Desk, roles: list[RoleName]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(ROLES[role](desk, stop), name=role.value) for role in roles]
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    log.info("stopped")


def run(desk: Desk, roles: list[RoleName]) -> None:
    asyncio.run(serve(desk, roles))
