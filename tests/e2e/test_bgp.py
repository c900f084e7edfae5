"""Enforcement over real BGP: the exabgp driver's ExaBGP peers with a real BIRD on loopback.

A disconnection puts the server's /32 (and its IPv6 prefix) into BIRD's tables with the
BLACKHOLE community (65535,666), and its FlowSpec `source → discard` rule into BIRD's flow
tables; a reconnection withdraws them; after the driver and its ExaBGP are killed, a new
driver reconciles from the database and the routes are back.

Needs `bird` (Debian bird2), `exabgp` and root (BIRD listens on port 179). Skipped without
them, except under CI=true, where a missing peer is a failure.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from abusedesk.accounts.permissions import SYSTEM
from abusedesk.bootstrap import Desk
from abusedesk.enforce import service as enforce
from abusedesk.enforce.choices import ActionState, DriverName
from abusedesk.enforce.drivers import DriverRegistry
from abusedesk.enforce.drivers.exabgp import ExabgpDriver
from abusedesk.enforce.settings import EnforceSettings
from abusedesk.inventory import service as inventory
from abusedesk.inventory.schemas import ServerIn
from tests import factories
from tests.bgp_peer import Bird, enforce_settings, wait_for
from tests.integration.test_enforce_service import actions, disconnect, reconnect, spam_case

HOST_V4 = "198.51.100.7/32"
NET_V6 = "2001:db8:7::/64"


@pytest.fixture(autouse=True)
def _peers(bgp_peers: None) -> None:
    """Every test here needs the real peers."""


@pytest.fixture
def registries(workdir: Path) -> Iterator[list[DriverRegistry]]:
    """Every registry a test makes is closed at its end, whatever happened."""
    made: list[DriverRegistry] = []
    yield made
    for registry in made:
        registry.close()


def new_registry(
    made: list[DriverRegistry], settings: EnforceSettings, home: Path
) -> tuple[DriverRegistry, ExabgpDriver]:
    registry = DriverRegistry.from_settings(settings, home)
    made.append(registry)
    driver = registry.atomic(DriverName.EXABGP)
    assert isinstance(driver, ExabgpDriver)
    return registry, driver


def server_with_v4_and_v6(desk: Desk, c: factories.Customer, name: str, v4: str, v6: str) -> int:
    server = inventory.create_server(
        desk.uow(),
        SYSTEM,
        ServerIn(account_reference=c.reference, hostname=name, plan="dedicated", prefixes=[v4, v6]),
    )
    return server.id


def test_blackhole_and_flowspec_reach_bird_and_come_back_after_a_crash(
    desk: Desk, bird: Bird, workdir: Path, registries: list[DriverRegistry]
) -> None:
    settings = enforce_settings(bird)
    registry, driver = new_registry(registries, settings, workdir / "home")
    c = factories.customer(desk, servers=0)
    server_id = server_with_v4_and_v6(desk, c, "db7.c1001.example", HOST_V4, NET_V6)
    c.server_ids.append(server_id)

    # Disconnection: the blackhole and the FlowSpec rule, in IPv4 and IPv6.
    case = spam_case(desk, c)
    disconnect(desk, case)
    assert enforce.carry_out_due(desk.uow(), registry, settings).applied == 1
    wait_for("the BGP session is up", bird.established)
    wait_for("BIRD has the blackhole", lambda: HOST_V4 in bird.unicast())
    routes = bird.unicast()
    assert "BGP.community: (65535,666) (65535,65281)" in routes
    assert "BGP.next_hop: 192.0.2.1" in routes
    assert NET_V6 in routes
    assert "BGP.next_hop: 100::1" in routes
    wait_for("BIRD has the FlowSpec rule", lambda: "src 198.51.100.7/32" in bird.flows())
    assert "flow4 { src 198.51.100.7/32; }" in bird.flows()
    wait_for("BIRD has the IPv6 FlowSpec rule", lambda: NET_V6 in bird.flows("flowtab6"))
    [cut] = actions(desk)
    assert (cut.state, cut.driver) == (ActionState.APPLIED, "exabgp")

    # Reconnection: both are gone.
    reconnect(desk, case, c)
    assert enforce.carry_out_due(desk.uow(), registry, settings).applied == 1
    wait_for("the blackhole is withdrawn", lambda: HOST_V4 not in bird.unicast())
    wait_for("the FlowSpec rule is withdrawn", lambda: "198.51.100.7" not in bird.flows())
    assert NET_V6 not in bird.unicast()
    assert NET_V6 not in bird.flows("flowtab6")

    # Cut again, then the worker dies with its ExaBGP: BIRD drops the routes with the session.
    disconnect(desk, spam_case(desk, c))
    assert enforce.carry_out_due(desk.uow(), registry, settings).applied == 1
    wait_for("the blackhole is back", lambda: HOST_V4 in bird.unicast())
    old_pid = driver.process.pid
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    wait_for("BIRD dropped the dead peer's routes", lambda: HOST_V4 not in bird.unicast())

    # A new worker: a new driver, reconciled from the database, puts the cut back.
    registry2, driver2 = new_registry(registries, settings, workdir / "home")
    result = enforce.reconcile(desk.uow(), registry2)
    assert result.ok, result.errors
    assert result.cuts == 1
    assert driver2.process.pid != old_pid
    wait_for("the session is up again", bird.established)
    wait_for("the blackhole is back after reconciliation", lambda: HOST_V4 in bird.unicast())
    wait_for("the FlowSpec rule is back", lambda: "src 198.51.100.7/32" in bird.flows())
    assert "(65535,666)" in bird.unicast()


def test_with_graceful_restart_the_cuts_survive_a_worker_restart(
    desk: Desk, bird: Bird, workdir: Path, registries: list[DriverRegistry]
) -> None:
    settings = enforce_settings(bird, graceful_restart_seconds=120)
    registry, _driver = new_registry(registries, settings, workdir / "home")
    c = factories.customer(desk, servers=2)  # 198.51.100.1/32 and 198.51.100.2/32
    kept, lifted = spam_case(desk, c, 0), spam_case(desk, c, 1)
    disconnect(desk, kept)
    disconnect(desk, lifted)
    assert enforce.carry_out_due(desk.uow(), registry, settings).applied == 2
    assert enforce.reconcile(desk.uow(), registry).ok  # what a worker does when it starts
    wait_for(
        "both blackholes are in BIRD",
        lambda: "198.51.100.1/32" in bird.unicast() and "198.51.100.2/32" in bird.unicast(),
    )

    # The worker stops (a deploy): ExaBGP goes without a word, BIRD keeps the routes, stale.
    registry.close()
    wait_for("BIRD saw the session go", lambda: not bird.established())
    time.sleep(1)
    assert "198.51.100.1/32" in bird.unicast()
    assert "198.51.100.2/32" in bird.unicast()

    # Meanwhile the desk reconnects the second server (no worker has carried it out yet).
    reconnect(desk, lifted, c)

    # The next worker reconciles: the first is announced again, End-of-RIB flushes the second.
    registry2, _ = new_registry(registries, settings, workdir / "home")
    assert enforce.reconcile(desk.uow(), registry2).ok
    wait_for("the session is up again", bird.established)
    wait_for("the lifted cut is flushed", lambda: "198.51.100.2/32" not in bird.unicast())
    wait_for("its FlowSpec rule too", lambda: "198.51.100.2/32" not in bird.flows())
    assert "198.51.100.1/32" in bird.unicast()
    assert "src 198.51.100.1/32" in bird.flows()
    assert enforce.carry_out_due(desk.uow(), registry2, settings).applied == 1
    states = [(a.kind.value, a.state) for a in actions(desk) if a.case_id == lifted.id]
    assert states == [("disconnect", ActionState.REVERTED), ("reconnect", ActionState.APPLIED)]
