"""The `dns` role keeps a real data plane in step with the database: a record saved through
the service is answered within one sync, a deleted zone is refused, and the plane's counters
become per-zone load samples. Run on the built-in server and on Knot."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest
import sqlalchemy as sa

from abusedesk.accounts.permissions import SYSTEM
from abusedesk.bootstrap import Desk
from abusedesk.dns import service as zones
from abusedesk.dns.choices import PlaneKind
from abusedesk.dns.models import LoadSample
from abusedesk.dns.role import DnsRole, make_plane
from tests import factories
from tests.conftest import IN_CI

ZONE = "shop-c1001.net"


@pytest.fixture(params=[PlaneKind.BUILTIN, PlaneKind.KNOT])
def role(request: pytest.FixtureRequest, desk: Desk, tmp_path: Path) -> Iterator[DnsRole]:
    plane = request.param
    if plane is PlaneKind.KNOT and shutil.which("knotd") is None:
        if IN_CI:
            pytest.fail("CI=true and knotd is missing (.ci/run installs knot)")
        pytest.skip("knotd is not installed (apt-get install knot)")
    desk.settings.dns = desk.settings.dns.model_copy(
        update={
            "plane": plane,
            "port": 0,
            "knot": desk.settings.dns.knot.model_copy(update={"directory": str(tmp_path / "knot")}),
        }
    )
    running = DnsRole(desk, make_plane(desk))
    running.start()
    try:
        yield running
    finally:
        running.stop()


def ask(role: DnsRole, name: str, rdtype: str = "A") -> dns.message.Message:
    port = role.plane.port  # type: ignore[attr-defined]
    query = dns.message.make_query(name, rdtype)
    return dns.query.udp(query, role.desk.settings.dns.host, port=port, timeout=3)


def addresses(answer: dns.message.Message) -> set[str]:
    return {rd.to_text() for rrset in answer.answer for rd in rrset}


def test_an_edit_is_served_after_one_sync_and_a_deleted_zone_is_refused(
    role: DnsRole, desk: Desk
) -> None:
    factories.customer(desk, "C1001", servers=1, base="198.51.100")
    zones.create_zone(desk.uow(), SYSTEM, "C1001", ZONE)
    zones.put_rrset(desk.uow(), SYSTEM, ZONE, "www", "A", 300, ["192.0.2.10"], desk.settings.dns)
    assert role.sync() is True
    assert role.sync() is False  # nothing changed since
    answer = ask(role, f"www.{ZONE}.")
    assert answer.rcode() == dns.rcode.NOERROR
    assert addresses(answer) == {"192.0.2.10"}

    zones.put_rrset(desk.uow(), SYSTEM, ZONE, "www", "A", 300, ["192.0.2.20"], desk.settings.dns)
    role.sync()
    assert addresses(ask(role, f"www.{ZONE}.")) == {"192.0.2.20"}
    assert ask(role, f"nothing.{ZONE}.").rcode() == dns.rcode.NXDOMAIN

    role.sample(desk.clock.now())
    with desk.uow() as uow:
        samples = uow.session.scalars(sa.select(LoadSample)).all()
    assert sum(s.queries for s in samples) >= 3
    assert sum(s.nxdomain for s in samples) >= 1

    zones.delete_zone(desk.uow(), SYSTEM, ZONE)
    role.sync()
    assert ask(role, f"www.{ZONE}.").rcode() == dns.rcode.REFUSED
