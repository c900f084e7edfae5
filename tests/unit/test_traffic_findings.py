"""The glue on a real desk: flows through the prefix index, windows, detectors, to cases."""

from __future__ import annotations

import numpy as np

from abusedesk.accounts.permissions import SYSTEM
from abusedesk.bootstrap import Desk
from abusedesk.noc import service as noc
from abusedesk.noc.choices import AlertKind
from abusedesk.policy.choices import Category
from abusedesk.traffic.decode.records import DecodeResult
from abusedesk.traffic.detectors import Detection
from abusedesk.traffic.findings import TrafficFindings, open_cases_for
from abusedesk.traffic.settings import TrafficSettings
from abusedesk.traffic.synthetic import addresses, flows
from tests import factories

NOW = 1_800_000_000.0


def batch(array) -> DecodeResult:
    return DecodeResult(format=None, flows=array, origin=np.zeros(len(array), np.int32))


def test_a_scan_becomes_one_case_and_later_evidence_attaches(desk: Desk) -> None:
    customer = factories.customer(desk, "C1", servers=1, base="198.51.100")
    found: list[Detection] = []
    sink = TrafficFindings(
        TrafficSettings(), desk.policy.traffic, desk.session_factory, found.extend
    )
    scan = flows(
        300,
        "198.51.100.1",
        addresses("198.18.0.0/23", 300),
        dst_port=22,
        tcp_flags=0x02,
        packets=1,
        bytes=60,
    )
    sink.accept(batch(scan), ["192.0.2.1"], NOW)
    assert found == []  # the detectors run every detect_every seconds
    sink.accept(batch(scan[:0]), ["192.0.2.1"], NOW + 60)
    assert sink.errors == 0
    assert [d.kind.value for d in found] == ["horizontal_scan"]
    assert found[0].server_id == customer.server_ids[0]

    first = open_cases_for(desk, found)
    again = open_cases_for(desk, found)
    assert [o.created for o in first] == [True]
    assert [o.created for o in again] == [False]
    assert first[0].case.id == again[0].case.id
    assert first[0].case.category is Category.NETWORK_ABUSE


def test_an_inbound_attack_opens_no_case(desk: Desk) -> None:
    factories.customer(desk, "C1", servers=1, base="198.51.100")
    found: list[Detection] = []
    sink = TrafficFindings(
        TrafficSettings(), desk.policy.traffic, desk.session_factory, found.extend, detect_every=0
    )
    flood = flows(
        1000,
        addresses("198.18.0.0/22", 1000),
        "198.51.100.1",
        protocol=17,
        src_port=123,
        packets=20000,
        bytes=20_000_000,
    )
    sink.accept(batch(flood), ["192.0.2.1"], NOW)
    sink.accept(batch(flood[:0]), ["192.0.2.1"], NOW + 1)
    assert [d.kind.value for d in found] == ["inbound_attack"]
    assert open_cases_for(desk, found) == []
    (alert,) = noc.list_alerts(desk.uow(), SYSTEM)  # the NOC's, not a case against the victim
    assert alert.kind is AlertKind.INBOUND_ATTACK
    assert alert.subject == "srv0.c1.example"
    assert alert.evidence["kind"] == "inbound_attack"
    open_cases_for(desk, found)  # the attack goes on: the same alert
    assert [a.times for a in noc.list_alerts(desk.uow(), SYSTEM)] == [2]


def test_the_analysis_thread_joins_waiting_batches_within_a_bucket(desk: Desk) -> None:
    from abusedesk.traffic.findings import Analysis

    customer = factories.customer(desk, "C1", servers=1, base="198.51.100")
    calls: list[tuple[int, list[int], list[str], float]] = []

    class Recording(TrafficFindings):
        def accept(self, result, exporter_addresses, received_at) -> None:
            calls.append(
                (len(result.flows), result.origin.tolist(), list(exporter_addresses), received_at)
            )
            super().accept(result, exporter_addresses, received_at)

    sink = Recording(TrafficSettings(), desk.policy.traffic, desk.session_factory, lambda f: None)
    analysis = Analysis(sink)  # not started: the batches wait in its queue
    start = sink.windows.bucket_start(NOW)
    out = flows(2, "198.51.100.1", "203.0.113.9", dst_port=443)
    two = DecodeResult(None, flows(3, "198.51.100.1", "203.0.113.9"), np.array([0, 1, 1], np.int32))
    analysis.accept(batch(out), ["192.0.2.1"], start + 1)
    analysis.accept(two, ["192.0.2.2", "192.0.2.3"], start + 2)
    analysis.accept(batch(out), ["192.0.2.4"], start + 3)
    analysis.accept(batch(out), ["192.0.2.5"], start + 61)  # the next bucket
    analysis.start()
    analysis.stop()
    assert calls == [
        (7, [0, 0, 1, 2, 2, 3, 3], ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"], start + 3),
        (2, [0, 0], ["192.0.2.5"], start + 61),
    ]
    assert sink.errors == 0
    server = customer.server_ids[0]
    assert sink.windows.view(server, start + 61).total("out_flows").tolist()[-2:] == [7, 2]
