"""The traffic analysis in a process of its own, so that it never takes the reader's GIL.

In one process the collector's reader (receiving, decoding, counting) and the analysis (owner
lookups, windows, detectors, cases) share one interpreter lock: at 50 000 datagrams/s their
Python work together is more than one core, and whatever the analysis holds the lock for, the
reader spends not draining its socket, until the kernel drops. :class:`AnalysisProcess` has the
:class:`~abusedesk.traffic.collector.FlowSink` interface of the thread variant
(:class:`~abusedesk.traffic.findings.Analysis`) but runs the same
:class:`~abusedesk.traffic.findings.Analysis` loop in a child process, started with ``spawn``
(never a fork of a process with threads and an event loop). The child builds its own desk from
the same settings and policy and opens cases and NOC alerts itself, through the case service,
as the thread would.

Batches cross as the decoded flow arrays (about 90 bytes a flow), the datagrams' exporter
addresses and the arrival time, through a bounded queue: a batch that finds it full is skipped
and counted (``abusedesk_traffic_batches_skipped_total``), as with the thread. A child that dies
is logged and started again, at most once every ``RESTART_AFTER`` seconds; the windows it held
are lost with it, and the detectors see the traffic again from then on.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from abusedesk import metrics
from abusedesk.config import Settings
from abusedesk.policy import Policy
from abusedesk.traffic.decode.records import COUNTER_DTYPE, FLOW_DTYPE, DecodeResult

if TYPE_CHECKING:
    from abusedesk.traffic.findings import TrafficFindings

log = logging.getLogger("abusedesk.traffic")

# Builds the child's findings; a module-level function, since it crosses to a spawned child.
FindingsFactory = Callable[[Settings, Policy], "TrafficFindings"]

RESTART_AFTER = 5.0  # seconds between restarts of a child that died
CHILD_NICENESS = 10  # the analysis yields the CPU to the collector's reader
_STOP = "stop"


def _pack(result: DecodeResult, addresses: Sequence[str], received_at: float) -> tuple[Any, ...]:
    # Plain bytes pickle at memory speed; a DecodeResult would drag its errors and options.
    return (
        result.flows.tobytes(),
        result.origin.astype(np.int32).tobytes(),
        result.counters.tobytes(),
        list(addresses),
        received_at,
    )


def _unpack(item: tuple[Any, ...]) -> tuple[DecodeResult, list[str], float]:
    flows, origin, counters, addresses, received_at = item
    result = DecodeResult(
        None,
        np.frombuffer(flows, FLOW_DTYPE).copy(),
        np.frombuffer(origin, np.int32),
        np.frombuffer(counters, COUNTER_DTYPE).copy(),
    )
    return result, addresses, received_at


class AnalysisProcess:
    """A :class:`~abusedesk.traffic.collector.FlowSink` that hands batches to a child process.

    ``start()`` starts the child, ``stop()`` lets it analyse what is queued and waits for it.
    """

    def __init__(
        self,
        settings: Settings,
        policy: Policy,
        depth: int = 256,
        findings: FindingsFactory | None = None,
    ) -> None:
        self.settings, self.policy, self.depth = settings, policy, depth
        self.findings = findings or desk_findings
        self._context = multiprocessing.get_context("spawn")
        self._queue: Any = None
        self._process: Any = None
        self._outbox: Any = None
        self._checked_at = 0.0
        self.restarts = 0
        self.summary: dict[str, Any] | None = None  # the child's last words, after stop()

    def start(self, ready_within: float = 60.0) -> None:
        """Start the child and wait (up to ``ready_within`` seconds) until it takes batches:
        its imports and its first prefix index are a few seconds of a core, better spent
        before the first datagram than while the reader needs it."""
        self._queue = self._context.Queue(maxsize=self.depth)
        self._outbox = self._context.Queue()
        self._process = self._context.Process(
            target=child_main,
            args=(
                self.settings,
                self.policy,
                self._queue,
                self._outbox,
                logging.getLogger().level,
                self.findings,
            ),
            name="abusedesk-traffic-analysis",
            daemon=True,
        )
        self._process.start()
        self._checked_at = time.monotonic()
        try:
            self._outbox.get(timeout=ready_within)
            log.info("traffic: analysis process %d ready", self._process.pid)
        except queue.Empty:
            log.warning(
                "traffic: analysis process %d not ready after %.0f s; batches queue for it",
                self._process.pid,
                ready_within,
            )

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._process.pid if self._process is not None else None

    def accept(
        self, result: DecodeResult, exporter_addresses: Sequence[str], received_at: float
    ) -> None:
        self._keep_alive()
        try:
            self._queue.put_nowait(_pack(result, exporter_addresses, received_at))
        except queue.Full:
            metrics.traffic_batches_skipped.inc()

    def _keep_alive(self) -> None:
        now = time.monotonic()
        if now - self._checked_at < RESTART_AFTER:
            return
        self._checked_at = now
        if self._process is not None and not self._process.is_alive():
            log.error(
                "traffic: the analysis process ended (exit code %s); starting it again",
                self._process.exitcode,
            )
            self.restarts += 1
            self._queue.close()
            self.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Analyses what is queued, then ends the child (killed after ``timeout`` seconds)."""
        if self._process is None:
            return
        if self._process.is_alive():
            with contextlib.suppress(queue.Full):  # a full queue: the kill below ends it
                self._queue.put(_STOP, timeout=timeout)
            with contextlib.suppress(queue.Empty):
                self.summary = self._outbox.get(timeout=timeout)
            self._process.join(timeout)
        if self._process.is_alive():
            log.warning("traffic: the analysis process did not stop in %.0f s; killed", timeout)
            self._process.kill()
            self._process.join()
        self._queue.close()
        self._queue.join_thread()
        self._process = None


def desk_findings(settings: Settings, policy: Policy) -> TrafficFindings:
    """The `traffic` role's findings, on a desk of the child's own: cases and NOC alerts."""
    from abusedesk.bootstrap import bootstrap
    from abusedesk.traffic.findings import TrafficFindings, report_detections

    desk = bootstrap(settings, policy=policy)
    return TrafficFindings(
        settings.traffic, policy.traffic, desk.session_factory, report_detections(desk)
    )


def child_main(
    settings: Settings,
    policy: Policy,
    inbox: Any,
    outbox: Any,
    level: int,
    findings: FindingsFactory,
) -> None:
    """The child: the thread variant's loop over the findings ``findings`` builds, fed from
    ``inbox`` until it says stop; then what it did goes to ``outbox`` and the log."""
    from abusedesk.traffic.findings import Analysis
    from abusedesk.traffic.heap import keep_freed_memory

    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # When the two compete for a core, the reader wins: a datagram the kernel drops is lost to
    # everything, a batch the analysis skips is still counted (and the skip is counted too).
    os.nice(CHILD_NICENESS)
    keep_freed_memory()
    found = findings(settings, policy)
    found.warm(time.time())
    analysis = Analysis(found)
    analysis.start()
    outbox.put("ready")
    try:
        while (item := inbox.get()) != _STOP:
            analysis.put(*_unpack(item))
    finally:
        analysis.stop(timeout=600)
        summary = found.summary(time.time())
        log.info(
            "traffic analysis: %(flows)d flows analysed, %(servers)d servers in the window "
            "(settled in %(settle_s).2f s), %(detections)d detections, %(errors)d failed batches",
            summary,
        )
        outbox.put(summary)
