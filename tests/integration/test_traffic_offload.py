"""The analysis in a process of its own (abusedesk.traffic.offload), as the `traffic` role runs
it by default: datagrams on the wire, the collector here, the windows, detectors and case
service in a spawned child with a desk of its own on the same database."""

from __future__ import annotations

import ipaddress
import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from abusedesk.bootstrap import Desk, bootstrap
from abusedesk.cases.models import Case
from abusedesk.config import Settings
from abusedesk.policy import Policy
from abusedesk.policy.choices import Category
from abusedesk.traffic import offload
from abusedesk.traffic.collector import Collector
from abusedesk.traffic.findings import TrafficFindings, report_detections
from abusedesk.traffic.offload import AnalysisProcess
from abusedesk.traffic.settings import TrafficSettings, UdpListen
from tests import factories
from tests.integration.test_traffic_cases import _send


def eager_findings(settings: Settings, policy: Policy) -> TrafficFindings:
    """The role's findings, the detectors run and the inventory read on every batch (the
    customers are made after the child starts). A module-level function: it crosses to the
    spawned child by name."""
    desk = bootstrap(settings, policy=policy)
    return TrafficFindings(
        settings.traffic,
        policy.traffic,
        desk.session_factory,
        report_detections(desk),
        detect_every=0,
        refresh_every=0,
    )


@pytest.fixture
def role(desk: Desk) -> Iterator[tuple[Collector, AnalysisProcess]]:
    traffic = TrafficSettings(netflow=UdpListen(port=0), sflow=UdpListen(port=0))
    settings = desk.settings.model_copy(update={"traffic": traffic})
    analysis = AnalysisProcess(settings, desk.policy, findings=eager_findings)
    halt = threading.Event()
    with Collector(traffic, analysis) as collector:
        analysis.start()
        reader = threading.Thread(target=collector.run, args=(halt,), daemon=True)
        reader.start()
        try:
            yield collector, analysis
        finally:
            halt.set()
            reader.join(timeout=5)
            analysis.stop()


def _cases(desk: Desk) -> list[Case]:
    with desk.uow().reading() as uow:
        return list(uow.session.scalars(sa.select(Case)))


def _wait_for_cases(desk: Desk, seconds: float = 30) -> list[Case]:
    deadline = time.monotonic() + seconds
    while not _cases(desk) and time.monotonic() < deadline:
        time.sleep(0.1)
    return _cases(desk)


def _scan(source: str) -> list[tuple[str, str, int, int, int]]:
    targets = [str(a) for a in list(ipaddress.ip_network("198.18.0.0/22").hosts())[:400]]
    return [(source, target, 40_000, 22, 1) for target in targets]


def test_the_child_opens_the_case_and_says_what_it_did(desk: Desk, role) -> None:
    collector, analysis = role
    customer = factories.customer(desk, "C1001", servers=2, base="198.51.100")
    assert analysis.pid is not None
    assert analysis.pid != os.getpid()
    _send(collector, [("203.0.113.9", "198.51.100.2", 50_000 + n, 443, 12) for n in range(60)])
    _send(collector, _scan("198.51.100.1"))
    cases = _wait_for_cases(desk)
    assert [(c.server_id, c.category) for c in cases] == [
        (customer.server_ids[0], Category.NETWORK_ABUSE)
    ]
    analysis.stop()
    assert analysis.summary is not None
    assert analysis.summary["flows"] == 460  # the web flows and the scan, none skipped
    assert analysis.summary["servers"] == 2
    assert analysis.summary["detections"] == 1
    assert analysis.summary["errors"] == 0


def test_a_child_that_dies_is_started_again(desk: Desk, role, monkeypatch) -> None:
    collector, analysis = role
    monkeypatch.setattr(offload, "RESTART_AFTER", 0.0)
    customer = factories.customer(desk, "C1001", servers=1, base="198.51.100")
    first = analysis.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while analysis.restarts == 0 and time.monotonic() < deadline:
        _send(collector, [("203.0.113.9", "198.51.100.1", 50_000, 443, 12)])  # wakes the check
        time.sleep(0.2)
    assert analysis.restarts == 1
    assert analysis.pid not in (None, first)
    _send(collector, _scan("198.51.100.1"))
    assert [c.server_id for c in _wait_for_cases(desk)] == [customer.server_ids[0]]
