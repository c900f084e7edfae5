"""From datagrams on the wire to a case: the collector, the analysis thread, the windows, the
detectors and the case service, as the `traffic` role wires them."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from abusedesk import metrics
from abusedesk.bootstrap import Desk
from abusedesk.cases.models import Case
from abusedesk.policy.choices import Category
from abusedesk.traffic.collector import Collector
from abusedesk.traffic.findings import Analysis, TrafficFindings, report_detections
from abusedesk.traffic.settings import TrafficSettings, UdpListen
from tests import factories
from tests.integration.test_traffic_collector import v5_datagram


@pytest.fixture
def role(desk: Desk) -> Iterator[Collector]:
    """The traffic role's parts on loopback ephemeral ports; detectors run on every batch."""
    settings = TrafficSettings(netflow=UdpListen(port=0), sflow=UdpListen(port=0))
    findings = TrafficFindings(
        settings,
        desk.policy.traffic,
        desk.session_factory,
        report_detections(desk),
        detect_every=0,
    )
    analysis = Analysis(findings)
    halt = threading.Event()
    with Collector(settings, analysis) as collector:
        analysis.start()
        reader = threading.Thread(target=collector.run, args=(halt,), daemon=True)
        reader.start()
        try:
            yield collector
        finally:
            halt.set()
            reader.join(timeout=5)
            analysis.stop()
    assert findings.errors == 0


def _cases(desk: Desk) -> list[Case]:
    with desk.uow().reading() as uow:
        return list(uow.session.scalars(sa.select(Case)))


def _send(collector: Collector, flows: list[tuple[str, str, int, int, int]]) -> None:
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for start in range(0, len(flows), 30):
            chunk = flows[start : start + 30]
            sender.sendto(v5_datagram(chunk, seq=start), collector.addresses["netflow"])
    finally:
        sender.close()


def test_a_scan_from_a_customer_server_opens_a_case_and_web_traffic_opens_none(
    desk: Desk, role: Collector
) -> None:
    customer = factories.customer(desk, "C1001", servers=2, base="198.51.100")
    targets = [str(a) for a in list(ipaddress.ip_network("198.18.0.0/22").hosts())[:400]]
    # Ordinary traffic first: one client fetching pages from the second server.
    _send(role, [("203.0.113.9", "198.51.100.2", 50_000 + n, 443, 12) for n in range(60)])
    before = (
        metrics.REGISTRY.get_sample_value(
            "abusedesk_traffic_detections_total", {"kind": "horizontal_scan"}
        )
        or 0.0
    )
    # Then the first server probes port 22 on 400 addresses.
    _send(role, [("198.51.100.1", target, 40_000, 22, 1) for target in targets])
    deadline = time.monotonic() + 15
    while not _cases(desk) and time.monotonic() < deadline:
        time.sleep(0.1)
    cases = _cases(desk)
    assert [(c.server_id, c.category) for c in cases] == [
        (customer.server_ids[0], Category.NETWORK_ABUSE)
    ]
    assert "scan" in cases[0].summary.lower()
    after = metrics.REGISTRY.get_sample_value(
        "abusedesk_traffic_detections_total", {"kind": "horizontal_scan"}
    )
    assert after == before + 1
