"""From decoded flows to cases: the I/O side of the windows and detectors.

:class:`TrafficFindings` is a :class:`~abusedesk.traffic.collector.FlowSink`: it maps each
flow's addresses to our servers through the inventory's prefix index (the one
:mod:`abusedesk.inventory.locate` loads and keeps fresh), folds the batch into the
:class:`~abusedesk.traffic.windows.Windows`, and every ``detect_every`` seconds of the passed-in
time runs the detectors and hands what they found to a callable. :func:`open_cases_for` turns
detections into cases through the case service: one per server and category while open, later
detections attached to it as new evidence. An inbound attack is a NOC alert, not a case.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa

from abusedesk import metrics
from abusedesk.accounts.permissions import SYSTEM
from abusedesk.cases.service import NewCase, Opened, open_case
from abusedesk.inventory import locate
from abusedesk.inventory.models import Server
from abusedesk.noc import service as noc
from abusedesk.noc.choices import AlertKind
from abusedesk.policy.model import TrafficPolicy
from abusedesk.traffic.choices import DetectionKind
from abusedesk.traffic.decode.records import DecodeResult, FlowArray, concat_rows
from abusedesk.traffic.detectors import Detection, detect_all
from abusedesk.traffic.settings import TrafficSettings
from abusedesk.traffic.windows import Windows, WindowSettings

log = logging.getLogger(__name__)

OnDetections = Callable[[list[Detection]], None]


class TrafficFindings:
    """The collector's sink once windows exist (issue 5, items 3 and 4).

    ``session_factory`` opens a database session (used only to refresh the prefix index and
    the servers' plans, at most every ``refresh_every`` seconds). ``accept`` runs on the
    collector's thread and never raises: errors are counted in ``errors`` and logged.
    """

    def __init__(
        self,
        settings: TrafficSettings,
        policy: TrafficPolicy,
        session_factory: Callable[[], Any],
        on_detections: OnDetections,
        *,
        windows: WindowSettings | None = None,
        detect_every: float = 60.0,
        refresh_every: float = 30.0,
        quiet_for: float = 600.0,
    ) -> None:
        self.settings, self.policy = settings, policy
        self.session_factory = session_factory
        self.on_detections = on_detections
        self.windows = Windows(windows or WindowSettings(), policy.allow_destinations)
        self.detect_every, self.refresh_every, self.quiet_for = (
            detect_every,
            refresh_every,
            quiet_for,
        )
        self.errors = 0
        self.detections = 0
        self._index: Any = None
        self._plans: dict[int, str] = {}
        self._refreshed_at = float("-inf")
        self._detected_at: float | None = None
        self._last_reported: dict[tuple[int, DetectionKind], float] = {}
        self._lock = threading.Lock()

    def accept(
        self, result: DecodeResult, exporter_addresses: Sequence[str], received_at: float
    ) -> None:
        try:
            with self._lock:
                found = self._accept(result, exporter_addresses, received_at)
            if found:
                self.on_detections(found)
        except Exception:  # the collector must survive whatever a batch or the database does
            self.errors += 1
            log.exception("traffic findings: a batch failed")

    def _accept(
        self, result: DecodeResult, exporter_addresses: Sequence[str], now: float
    ) -> list[Detection]:
        flows = result.flows
        if len(flows):
            self._refresh(now)
            src, dst = self.owners(flows)
            rate_of = {
                a: self.settings.sampling_rate_for(a) for a in dict.fromkeys(exporter_addresses)
            }
            defaults = np.array([rate_of[a] for a in exporter_addresses], dtype=np.float64)
            rates = defaults[result.origin] if len(result.origin) == len(flows) else None
            self.windows.add(flows, src, dst, now, rates)
        if self._detected_at is None:
            self._detected_at = now
        if now - self._detected_at < self.detect_every:
            return []
        return self._detect(now)

    def detect(self, now: float) -> list[Detection]:
        """Run the detectors over the windows at ``now`` at once, as ``accept`` does every
        ``detect_every`` seconds, and hand what is new to ``on_detections``; returns it."""
        with self._lock:
            found = self._detect(now)
        if found:
            self.on_detections(found)
        return found

    def warm(self, now: float) -> None:
        """Load the prefix index and the plans now rather than with the first batch."""
        with self._lock:
            self._refresh(now)

    def summary(self, now: float) -> dict[str, Any]:
        """What it has done, for the log when it stops: flows analysed, servers with traffic
        in the window at ``now`` (settling what waits, timed), detections, failed batches."""
        with self._lock:
            start = time.process_time()
            servers = len(self.windows.servers(now))
            settle = time.process_time() - start
            return {
                "flows": self.windows.flows_seen,
                "foreign": self.windows.foreign,
                "servers": servers,
                "settle_s": settle,
                "detections": self.detections,
                "errors": self.errors,
            }

    def _detect(self, now: float) -> list[Detection]:
        self._detected_at = now
        return self._fresh(detect_all(self.windows, self.policy, now, self._plans), now)

    def _fresh(self, found: list[Detection], now: float) -> list[Detection]:
        """Detections not reported for the same server and kind within ``quiet_for``."""
        out = []
        for detection in found:
            key = (detection.server_id, detection.kind)
            last = self._last_reported.get(key)
            if last is not None and now - last < self.quiet_for:
                continue
            self._last_reported[key] = now
            out.append(detection)
        self.detections += len(out)
        return out

    def _refresh(self, now: float) -> None:
        if now - self._refreshed_at < self.refresh_every and self._index is not None:
            return
        with self.session_factory() as session:
            self._index = locate.current_index(session)
            self._plans = {
                int(i): str(p) for i, p in session.execute(sa.select(Server.id, Server.plan))
            }
        self._refreshed_at = now

    def owners(self, flows: FlowArray) -> tuple[np.ndarray, np.ndarray]:
        """Per flow, the server ids holding the source and the destination address (-1: none)."""
        assert self._index is not None
        version = flows["ip_version"]
        return (
            locate.server_ids_of_packed(self._index, version, flows["src_hi"], flows["src_lo"]),
            locate.server_ids_of_packed(self._index, version, flows["dst_hi"], flows["dst_lo"]),
        )


class Analysis:
    """Runs :class:`TrafficFindings` on a thread of its own, fed through a bounded queue: the
    collector's reader hands a batch over and goes back to its sockets at once, so windows,
    detectors and the database never make it drop datagrams. The thread takes whatever batches
    wait, up to ``coalesce`` flows, as one: the fixed cost of a batch (two prefix lookups, a
    filing in the windows) is paid once for all of them, so the further behind it is, the
    cheaper each flow gets. When it falls behind all the same, a batch that finds the queue
    full is skipped and counted (the collector's own counters still have it)."""

    _STOP = object()

    def __init__(
        self, findings: TrafficFindings, depth: int = 1024, coalesce: int = 262_144
    ) -> None:
        self.findings = findings
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.coalesce = coalesce
        self._thread = threading.Thread(target=self._run, name="traffic-analysis", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Analyses what is queued, then ends the thread."""
        if self._thread.is_alive():
            self._queue.put(self._STOP)
            self._thread.join(timeout)

    def accept(
        self, result: DecodeResult, exporter_addresses: Sequence[str], received_at: float
    ) -> None:
        try:
            self._queue.put_nowait((result, list(exporter_addresses), received_at))
        except queue.Full:
            metrics.traffic_batches_skipped.inc()

    def put(
        self, result: DecodeResult, exporter_addresses: Sequence[str], received_at: float
    ) -> None:
        """As :meth:`accept`, but waits for room rather than skip (the child process of
        :mod:`abusedesk.traffic.offload` feeds it so: its own queue is where skipping happens)."""
        self._queue.put((result, list(exporter_addresses), received_at))

    def _run(self) -> None:
        carried: Any = None  # a batch of the next bucket, taken while joining
        while True:
            item = carried if carried is not None else self._queue.get()
            carried = None
            if item is self._STOP:
                return
            items = [item]
            flows = len(item[0].flows)
            bucket = self.findings.windows.bucket_start(item[2])
            while flows < self.coalesce:
                try:
                    carried = self._queue.get_nowait()
                except queue.Empty:
                    break
                # Joined batches are filed at the last one's arrival: only within one bucket.
                if (
                    carried is self._STOP
                    or self.findings.windows.bucket_start(carried[2]) != bucket
                ):
                    break
                items.append(carried)
                flows += len(carried[0].flows)
                carried = None
            self.findings.accept(*(items[0] if len(items) == 1 else _joined(items)))


def _joined(items: list[tuple[DecodeResult, list[str], float]]) -> tuple[Any, ...]:
    """Queued batches as one: flows and counters end to end, each flow's origin moved past the
    datagrams of the batches before it, the arrival time of the last."""
    origins, offset = [], 0
    for result, addresses, _ in items:
        origins.append(result.origin.astype(np.int64) + offset)
        offset += len(addresses)
    joined = DecodeResult(
        None,
        concat_rows([r.flows for r, _, _ in items]),
        np.concatenate(origins),
        concat_rows([r.counters for r, _, _ in items]),
    )
    addresses = [a for _, batch, _ in items for a in batch]
    return joined, addresses, items[-1][2]


def report_detections(desk: Any) -> OnDetections:
    """What the `traffic` role does with detections: count them, and open or attach cases."""

    def report(detections: list[Detection]) -> None:
        for detection in detections:
            metrics.traffic_detections.labels(detection.kind.value).inc()
            log.info("traffic: %s", detection.reason)
        open_cases_for(desk, detections)

    return report


def open_cases_for(desk: Any, detections: Sequence[Detection]) -> list[Opened]:
    """Open a case per server and category, or attach the detection to the open one.

    Detections without a category (an inbound attack) open no case: they raise a NOC alert,
    one per server while the attack goes on (:mod:`abusedesk.noc.service`). A detection whose
    server no longer exists is skipped and logged.
    """
    opened = []
    for detection in detections:
        with desk.uow().reading() as uow:
            found = uow.session.execute(
                sa.select(Server.account_id, Server.hostname).where(
                    Server.id == detection.server_id
                )
            ).first()
        if found is None:
            log.warning("traffic: server %s is gone; %s", detection.server_id, detection.reason)
            continue
        account_id, hostname = found
        if detection.category is None:  # an attack on the customer: the NOC's, not a case
            noc.raise_alert(
                desk.uow(),
                AlertKind.INBOUND_ATTACK,
                hostname,
                detection.reason,
                detection.evidence(),
                account_id=int(account_id),
                server_id=detection.server_id,
            )
            continue
        new = NewCase(
            account_id=int(account_id),
            category=detection.category,
            server_id=detection.server_id,
            summary=detection.reason,
            evidence=detection.evidence(),
        )
        opened.append(open_case(desk.uow(), SYSTEM, new, desk.policy))
    return opened
