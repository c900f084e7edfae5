"""The NOC's view: attacks on customers raised once and kept up to date while they go on,
acknowledged from the console; and the exporters a real collector heard, written to the
database and shown on the NOC page and by `abusedesk traffic exporters`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from abusedesk.accounts.choices import Role
from abusedesk.accounts.permissions import SYSTEM, Actor
from abusedesk.bootstrap import Desk
from abusedesk.clock import FakeClock
from abusedesk.errors import PermissionDenied
from abusedesk.noc import service as noc
from abusedesk.noc.choices import AlertKind, AlertState
from abusedesk.traffic import service as traffic
from tests import factories
from tests.integration.test_traffic_collector import collector, v5_datagram
from tests.web_client import Web, add_user, post_form, served


@pytest.fixture
def web(desk: Desk) -> Iterator[Web]:
    with served(desk) as served_web:
        yield served_web


def flood(desk: Desk, subject: str = "srv0.c1001.example") -> int:
    return noc.raise_alert(
        desk.uow(),
        AlertKind.INBOUND_ATTACK,
        subject,
        "inbound packets/s peaked at 410000 (threshold 200000)",
        {"source": "traffic", "kind": "inbound_attack"},
    ).id


def test_an_attack_that_goes_on_is_one_alert(desk: Desk, clock: FakeClock) -> None:
    first = flood(desk)
    clock.advance(timedelta(minutes=10))
    again = flood(desk)
    assert again == first
    (alert,) = noc.list_alerts(desk.uow(), SYSTEM)
    assert alert.times == 2
    clock.advance(timedelta(hours=2))
    assert flood(desk) != first  # quiet for longer than an attack lasts: a new one
    assert flood(desk, "srv1.c1001.example") not in (first,)


def test_only_staff_who_decide_acknowledge(desk: Desk) -> None:
    alert_id = flood(desk)
    factories.customer(desk, "C1001", servers=1, base="198.51.100")
    customer = Actor(label="customer:x", role=Role.CUSTOMER, account_id=1)
    with pytest.raises(PermissionDenied):
        noc.acknowledge(desk.uow(), customer, alert_id)
    assert noc.acknowledge(desk.uow(), SYSTEM, alert_id).state is AlertState.ACKNOWLEDGED


def test_the_noc_page_lists_alerts_and_acknowledges_them(web: Web, desk: Desk) -> None:
    alert_id = flood(desk)
    engineer = web.signed_in(add_user(desk, Role.NOC))
    page = engineer.get("/staff/noc").text
    assert "srv0.c1001.example" in page
    assert "Inbound attack on a customer" in page
    answer = post_form(engineer, f"/staff/noc/alerts/{alert_id}/acknowledge", {}, "/staff/noc")
    assert answer.status_code == 303
    assert "acknowledge</button>" not in engineer.get("/staff/noc").text.lower()
    customer = web.signed_in(
        add_user(
            desk,
            Role.CUSTOMER,
            factories.customer(desk, "C1001", servers=1, base="198.51.100").reference,
        )
    )
    assert customer.get("/staff/noc").status_code == 404


def test_the_exporters_a_collector_heard_are_kept_and_shown(web: Web, desk: Desk) -> None:
    with collector() as running:
        running.send("netflow", v5_datagram([("192.0.2.1", "198.51.100.7", 1, 2, 3)] * 3, rate=100))
        running.sink.wait(lambda: running.sink.count == 3)
        exporters = running.collector.registry.snapshot()
    assert traffic.record_exporters(desk.uow(), "collector-a", exporters) == 1
    assert traffic.record_exporters(desk.uow(), "collector-a", exporters) == 1  # updated, not added
    (row,) = traffic.list_exporters(desk.uow(), SYSTEM)
    assert row.address == "127.0.0.1"
    assert row.format == "netflow_v5"
    assert row.sampling_rate == 100
    assert row.records == 3
    engineer = web.signed_in(add_user(desk, Role.NOC))
    page = engineer.get("/staff/noc").text
    assert "1 in 100" in page
    assert "collector-a" in page
