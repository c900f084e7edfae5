"""R11 end to end: an account whose zones draw too much of the name servers is told of a
potential violation, gets a dns_overuse case when it goes on past the grace period, and the
notice ends when the load falls; a random-subdomain flood, counted by a real server, is a NOC
alert and no notice."""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import timedelta

import dns.message
import dns.query
import sqlalchemy as sa

from abusedesk.accounts.permissions import SYSTEM
from abusedesk.bootstrap import Desk
from abusedesk.cases import service as cases
from abusedesk.clock import FakeClock
from abusedesk.dns import overuse
from abusedesk.dns import service as zones
from abusedesk.dns.choices import NoticeState
from abusedesk.dns.load import BUCKET, LoadState
from abusedesk.dns.models import LoadNotice
from abusedesk.dns.plane import ZoneCounters
from abusedesk.dns.role import DnsRole
from abusedesk.dns.server import BuiltinPlane
from abusedesk.noc import service as noc
from abusedesk.noc.choices import AlertKind
from abusedesk.notify.choices import MessageTemplate
from abusedesk.notify.models import OutboxMessage
from abusedesk.policy import Category
from tests import factories

BUSY = "busy-c1001.net"
QUIET = "quiet-c2002.net"
SECONDS = int(BUCKET.total_seconds())


def strict(desk: Desk, **limits: object) -> None:
    chosen = {"sustained": timedelta(hours=1), "notice_grace": timedelta(days=2), **limits}
    desk.policy = replace(desk.policy, dns_load=replace(desk.policy.dns_load, **chosen))


def an_hour_of(desk: Desk, busy_qps: int, quiet_qps: int = 900) -> None:
    """An hour of samples ending now: the busy zone at busy_qps, the other at quiet_qps."""
    now = desk.clock.now()
    for minutes in range(0, 60, 5):
        overuse.record_counters(
            desk.uow(),
            {
                f"{BUSY}.": ZoneCounters(queries=busy_qps * SECONDS),
                f"{QUIET}.": ZoneCounters(queries=quiet_qps * SECONDS),
            },
            now - timedelta(minutes=minutes),
        )


def zones_of_two_accounts(desk: Desk) -> None:
    factories.customer(desk, "C1001", servers=1, base="198.51.100")
    factories.customer(desk, "C2002", servers=1, base="203.0.113")
    zones.create_zone(desk.uow(), SYSTEM, "C1001", BUSY)
    zones.create_zone(desk.uow(), SYSTEM, "C2002", QUIET)


def test_a_notice_then_a_case_then_the_end(desk: Desk, clock: FakeClock) -> None:
    zones_of_two_accounts(desk)
    strict(desk)
    an_hour_of(desk, busy_qps=300)  # 25 % of all queries: over the 5 % share
    (busy, quiet) = sorted(
        overuse.review_load(desk.uow(), desk.policy, desk.clock.now()), key=lambda r: r.reference
    )
    assert busy.noticed
    assert busy.assessment.state is LoadState.OVER
    assert quiet.assessment.state is LoadState.OVER  # 75 %: the other account is over too
    with desk.uow() as uow:
        mails = uow.session.scalars(
            sa.select(OutboxMessage).where(
                OutboxMessage.template == MessageTemplate.DNS_LOAD_NOTICE
            )
        ).all()
    assert len(mails) >= 2
    # still over, within the grace: nothing more
    again = overuse.review_load(desk.uow(), desk.policy, desk.clock.now())
    assert not any(r.noticed or r.case_id for r in again)

    clock.advance(timedelta(days=2, minutes=5))
    an_hour_of(desk, busy_qps=300)
    later = {r.reference: r for r in overuse.review_load(desk.uow(), desk.policy, desk.clock.now())}
    case_id = later["C1001"].case_id
    assert case_id is not None
    case = cases.get_case(desk.uow(), SYSTEM, case_id)
    assert case.category is Category.DNS_OVERUSE
    (evidence,) = [
        e.data["evidence"] for e in cases.timeline_for(SYSTEM, case) if e.data.get("evidence")
    ]
    assert evidence["source"] == "dns_load"
    assert evidence["zones"] == [BUSY]
    assert len(evidence["series"]) == 12  # the hour, charted on the case page

    clock.advance(timedelta(hours=2))
    an_hour_of(desk, busy_qps=1, quiet_qps=1000)  # the customer moved its zone away
    ended = {r.reference: r for r in overuse.review_load(desk.uow(), desk.policy, desk.clock.now())}
    assert ended["C1001"].ended
    with desk.uow() as uow:
        notice = uow.session.scalars(
            sa.select(LoadNotice).where(LoadNotice.case_id == case_id)
        ).one()
        assert notice.state is NoticeState.ENDED


def test_a_random_subdomain_flood_counted_by_a_real_server_is_a_noc_alert(
    desk: Desk,
) -> None:
    zones_of_two_accounts(desk)
    strict(desk, min_total_qps=0, sustained=timedelta(minutes=5), sustained_fraction=1.0)
    desk.settings.dns = desk.settings.dns.model_copy(update={"port": 0})
    role = DnsRole(desk, BuiltinPlane(desk.settings.dns))
    role.start()
    try:
        port = role.plane.port  # type: ignore[attr-defined]
        for _ in range(60):
            name = f"{secrets.token_hex(6)}.{BUSY}."
            dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=3)
        for _ in range(60):
            query = dns.message.make_query(f"{QUIET}.", "SOA")
            dns.query.udp(query, "127.0.0.1", port=port, timeout=3)
        reviewed = {r.reference: r for r in role.sample(desk.clock.now())}
    finally:
        role.stop()
    assert reviewed["C1001"].assessment.state is LoadState.ATTACKED
    assert not reviewed["C1001"].noticed  # the victim is not told off
    (alert,) = noc.list_alerts(desk.uow(), SYSTEM)
    assert alert.kind is AlertKind.DNS_FLOOD
    assert alert.subject == "DNS zones of C1001"
