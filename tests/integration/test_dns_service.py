"""Managed DNS through its service (issue 7): zones per account, record sets checked against
the whole zone, the serial, the history, zone files in and out, staff changes told to the
customer, and the snapshot the data planes serve. SQLite, and PostgreSQL when configured."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import timedelta

import dns.rdatatype
import pytest
import sqlalchemy as sa

from abusedesk.accounts.choices import AccountRole, Role
from abusedesk.accounts.permissions import SYSTEM, Actor
from abusedesk.audit.models import AuditEntry
from abusedesk.bootstrap import Desk
from abusedesk.clock import FakeClock
from abusedesk.dns import service, snapshot
from abusedesk.dns.choices import ZoneChangeKind
from abusedesk.dns.models import LoadSample, RRSet, Zone, ZoneChange
from abusedesk.dns.serial import serial_gt
from abusedesk.dns.settings import DnsSettings
from abusedesk.errors import Conflict, FieldErrors, NotFound, PermissionDenied
from abusedesk.inventory import service as inventory
from abusedesk.inventory.schemas import ServerIn
from abusedesk.notify.choices import MessageTemplate
from abusedesk.notify.models import OutboxMessage
from abusedesk.notify.render import render
from tests import factories

DNS = DnsSettings()
ZONE = "c1001-shop.net"


@dataclass
class People:
    owner: Actor
    manager: Actor
    member: Actor
    stranger: Actor  # the owner of another account
    noc: Actor
    analyst: Actor


@pytest.fixture
def people(desk: Desk) -> People:
    factories.customer(desk, "C1001")
    factories.customer(desk, "C2002", base="203.0.113")

    def customer_user(email: str, role: AccountRole, reference: str = "C1001") -> Actor:
        return factories.user(
            desk, email, account_reference=reference, account_role=role, password=None
        )

    return People(
        customer_user("owner@c1001.example", AccountRole.OWNER),
        customer_user("manager@c1001.example", AccountRole.MANAGER),
        customer_user("member@c1001.example", AccountRole.MEMBER),
        customer_user("owner@c2002.example", AccountRole.OWNER, "C2002"),
        factories.user(desk, "noc@provider.example", role=Role.NOC, password=None),
        factories.user(desk, "analyst@provider.example", role=Role.ANALYST, password=None),
    )


def put(desk: Desk, actor: Actor, subname: str, rtype: str, *records: str, ttl: int = 300):
    return service.put_rrset(desk.uow(), actor, ZONE, subname, rtype, ttl, list(records), DNS)


def serial(desk: Desk, name: str = ZONE) -> int:
    return service.get_zone(desk.uow(), SYSTEM, name).serial


def outbox(desk: Desk) -> list[OutboxMessage]:
    with desk.uow() as uow:
        return list(uow.session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id)))


def fields(exc: pytest.ExceptionInfo[FieldErrors]) -> dict[str, list[str]]:
    return exc.value.by_field()


# -- zones ----------------------------------------------------------------------------------


def test_a_customer_owner_creates_lists_and_deletes_its_zone(desk: Desk, people: People) -> None:
    zone = service.create_zone(desk.uow(), people.owner, "C1001", "C1001-Shop.NET.")
    assert zone.name == ZONE
    assert zone.serial == 2026030200  # YYYYMMDDnn of the fake clock's day
    assert [z.name for z in service.list_zones(desk.uow(), people.member)] == [ZONE]
    assert service.list_zones(desk.uow(), people.stranger) == []
    assert [z.name for z in service.list_zones(desk.uow(), people.analyst, "C1001")] == [ZONE]
    history = service.zone_history(desk.uow(), people.member, ZONE)
    assert [h.kind for h in history] == [ZoneChangeKind.ZONE_CREATED]
    assert history[0].actor == people.owner.label
    service.delete_zone(desk.uow(), people.owner, ZONE)
    assert service.list_zones(desk.uow(), people.owner) == []
    with desk.uow() as uow:
        actions = uow.session.scalars(sa.select(AuditEntry.action)).all()
    assert "dns.zone.create" in actions
    assert "dns.zone.delete" in actions


def test_who_may_change_zones(desk: Desk, people: People) -> None:
    with pytest.raises(PermissionDenied):
        service.create_zone(desk.uow(), people.member, "C1001", ZONE)
    with pytest.raises(PermissionDenied):
        service.create_zone(desk.uow(), people.analyst, "C1001", ZONE)
    # Another account is not there at all for a customer.
    with pytest.raises(NotFound):
        service.create_zone(desk.uow(), people.stranger, "C1001", ZONE)
    service.create_zone(desk.uow(), people.manager, "C1001", ZONE)
    with pytest.raises(PermissionDenied):
        put(desk, people.member, "www", "A", "192.0.2.1")
    for nosy in (people.stranger,):
        with pytest.raises(NotFound):
            service.get_zone(desk.uow(), nosy, ZONE)
        with pytest.raises(NotFound):
            put(desk, nosy, "www", "A", "192.0.2.1")
        with pytest.raises(NotFound):
            service.zone_history(desk.uow(), nosy, ZONE)
        with pytest.raises(NotFound):
            service.export_zone_file(desk.uow(), nosy, ZONE, DNS)
        with pytest.raises(NotFound):
            service.delete_zone(desk.uow(), nosy, ZONE)
    with pytest.raises(PermissionDenied):
        service.set_nameservers(
            desk.uow(), people.owner, ZONE, ["ns1.own.example.", "ns2.own.example."]
        )
    assert service.get_zone(desk.uow(), people.analyst, ZONE).name == ZONE


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("localhost", "top-level"),
        ("shop.test", "special-use"),
        ("www.example.com", "special-use"),
        ("printer.local", "special-use"),
        ("co.uk", "public suffix"),
        ("github.io", "public suffix"),
        ("shop.unknown-tld-xyz", "not a known top-level domain"),
    ],
)
def test_refused_zone_names(desk: Desk, people: People, name: str, why: str) -> None:
    with pytest.raises(FieldErrors) as exc:
        service.create_zone(desk.uow(), people.owner, "C1001", name)
    assert why in fields(exc)["name"][0]


def test_a_zone_inside_or_above_another_accounts_zone_is_refused(
    desk: Desk, people: People
) -> None:
    service.create_zone(desk.uow(), people.owner, "C1001", ZONE)
    with pytest.raises(Conflict, match="exists already"):
        service.create_zone(desk.uow(), people.stranger, "C2002", ZONE)
    with pytest.raises(Conflict, match=r"inside the zone c1001-shop\.net of another account"):
        service.create_zone(desk.uow(), people.stranger, "C2002", "www.c1001-shop.net")
    service.create_zone(desk.uow(), people.stranger, "C2002", "deep.other-c2002.net")
    with pytest.raises(Conflict, match=r"holds the zone deep\.other-c2002\.net"):
        service.create_zone(desk.uow(), people.owner, "C1001", "other-c2002.net")
    # An account may split its own domain.
    service.create_zone(desk.uow(), people.owner, "C1001", "eu.c1001-shop.net")


def test_reverse_zones_only_for_the_accounts_own_addresses(desk: Desk, people: People) -> None:
    inventory.create_server(
        desk.uow(),
        SYSTEM,
        ServerIn(
            account_reference="C1001",
            hostname="rack1.c1001.example",
            plan="dedicated",
            prefixes=["185.44.12.0/24", "2a0a:e5c0:12::/48"],
        ),
    )
    zone = service.create_zone(desk.uow(), people.owner, "C1001", "12.44.185.in-addr.arpa")
    assert zone.name == "12.44.185.in-addr.arpa"
    service.create_zone(desk.uow(), people.owner, "C1001", "2.1.0.0.0.c.5.e.a.0.a.2.ip6.arpa")
    with pytest.raises(FieldErrors, match=r"not \(all\) routed"):
        service.create_zone(desk.uow(), people.stranger, "C2002", "13.44.185.in-addr.arpa")
    with pytest.raises(FieldErrors, match="not global unicast"):
        service.create_zone(desk.uow(), people.owner, "C1001", "168.192.in-addr.arpa")
    reverse = "12.44.185.in-addr.arpa"
    service.put_rrset(desk.uow(), people.owner, reverse, "7", "PTR", 300, ["mail.example."], DNS)


# -- record sets, serial, history -----------------------------------------------------------


def test_record_sets_are_stored_canonical_and_the_serial_always_goes_up(
    desk: Desk, people: People, clock: FakeClock
) -> None:
    service.create_zone(desk.uow(), people.owner, "C1001", ZONE)
    first = serial(desk)
    row = put(desk, people.owner, "@", "MX", "10 mail", "20 MAIL2.c1001-shop.net.")
    assert row is not None
    assert (row.subname, row.type, row.ttl) == ("", "MX", 300)
    assert row.records == ["10 mail.c1001-shop.net.", "20 MAIL2.c1001-shop.net."]
    serials = [first, serial(desk)]
    for n in range(101):  # more than a hundred changes in a day still go up
        put(desk, people.owner, "www", "A", f"192.0.2.{n + 1}")
        serials.append(serial(desk))
    clock.advance(timedelta(days=1))
    put(desk, people.owner, "www", "A", "192.0.2.200")
    serials.append(serial(desk))
    assert all(serial_gt(b, a) for a, b in itertools.pairwise(serials))
    assert serials[-1] == 2026030300 or serial_gt(serials[-1], 2026030300)
    # Saving the same set again changes nothing, not even the serial.
    before = serial(desk)
    put(desk, people.owner, "www", "A", "192.0.2.200")
    assert serial(desk) == before


def test_history_keeps_who_what_and_the_set_before_and_after(desk: Desk, people: People) -> None:
    service.create_zone(desk.uow(), people.owner, "C1001", ZONE)
    put(desk, people.owner, "www", "A", "192.0.2.1")
    put(desk, people.manager, "www", "A", "192.0.2.2", "192.0.2.3", ttl=600)
    service.delete_rrset(desk.uow(), people.owner, ZONE, "www", "a")
    history = service.zone_history(desk.uow(), people.member, ZONE)
    assert [h.kind for h in history] == [
        ZoneChangeKind.RRSET_DELETED,
        ZoneChangeKind.RRSET_REPLACED,
        ZoneChangeKind.RRSET_CREATED,
        ZoneChangeKind.ZONE_CREATED,
    ]
    deleted, replaced, created, _ = history
    assert created.before is None
    assert created.after == {"ttl": 300, "records": ["192.0.2.1"]}
    assert replaced.actor == people.manager.label
    assert replaced.before == {"ttl": 300, "records": ["192.0.2.1"]}
    assert replaced.after == {"ttl": 600, "records": ["192.0.2.2", "192.0.2.3"]}
    assert deleted.after is None
    assert (deleted.subname, deleted.type) == ("www", "A")
    assert deleted.serial == serial(desk)
    assert serial_gt(deleted.serial, replaced.serial)
    assert not any(h.staff for h in history)
    assert outbox(desk) == []  # the customer changed its own zone: no mail


def test_errors_come_together_each_on_its_field(desk: Desk, people: People) -> None:
    service.create_zone(desk.uow(), people.owner, "C1001", ZONE)
    with pytest.raises(FieldErrors) as exc:
        service.put_rrset(
            desk.uow(), people.owner, ZONE, "www", "A", 5, ["192.0.2.1", "not an address"], DNS
        )
    found = fields(exc)
    assert set(found) == {"ttl", "records[1]"}
    put(desk, people.owner, "www", "CNAME", "shop.example.org.")
    with pytest.raises(FieldErrors) as exc:
        put(desk, people.owner, "www", "TXT", '"hello"')
    assert "alone at its name" in fields(exc)["type"][0]
    with pytest.raises(FieldErrors) as exc:
        put(desk, people.owner, "@", "MX", "10 www")
    assert "is a CNAME" in fields(exc)["records[0]"][0]
    with pytest.raises(FieldErrors) as exc:
        put(desk, people.owner, "@", "NS", "ns1.elsewhere.example.")
    assert "provider's" in fields(exc)["type"][0]
    assert [s.type for s in service.get_zone(desk.uow(), people.owner, ZONE).rrsets] == ["CNAME"]


def test_a_delegation_needs_its_glue_and_keeps_it(desk: Desk, people: People) -> None:
    service.create_zone(desk.uow(), people.owner, "C1001", ZONE)
    with pytest.raises(FieldErrors, match="glue"):
        put(desk, people.owner, "lab", "NS", "ns1.lab", "ns.elsewhere.example.")
    put(desk, people.owner, "ns1.lab", "A", "192.0.2.53")
    put(desk, people.owner, "lab", "NS", "ns1.lab", "ns.elsewhere.example.")
    with pytest.raises(FieldErrors, match="glue"):
        service.delete_rrset(desk.uow(), people.owner, ZONE, "ns1.lab", "A")
    with pytest.raises(FieldErrors, match="delegated"):
        put(desk, people.owner, "www.lab", "TXT", '"occluded"')


def test_limits_of_the_settings_hold(desk: Desk, people: People) -> None:
    service.create_zone(desk.uow(), people.owner, "C1001", ZONE)
    small = DNS.model_copy(update={"max_rrsets_per_zone": 2, "max_records_per_set": 2})
    for name in ("a", "b"):
        service.put_rrset(desk.uow(), people.owner, ZONE, name, "A", 300, ["192.0.2.1"], small)
    with pytest.raises(FieldErrors, match="at most 2 record sets"):
        service.put_rrset(desk.uow(), people.owner, ZONE, "c", "A", 300, ["192.0.2.1"], small)
    with pytest.raises(FieldErrors, match="at most 2 records"):
        service.put_rrset(
            desk.uow(), people.owner, ZONE, "a", "A", 300, ["192.0.2.1", "192.0.2.2", "192.0.2.3"],
            small,
        )  # fmt: skip
    # Replacing an existing set stays possible at the cap.
    service.put_rrset(desk.uow(), people.owner, ZONE, "a", "A", 300, ["192.0.2.9"], small)


def test_empty_records_delete_the_set(desk: Desk, people: People) -> None:
    service.create_zone(desk.uow(), people.owner, "C1001", ZONE)
    put(desk, people.owner, "www", "A", "192.0.2.1")
    assert service.put_rrset(desk.uow(), people.owner, ZONE, "www", "A", 300, [], DNS) is None
    assert service.get_zone(desk.uow(), people.owner, ZONE).rrsets == []
    with pytest.raises(NotFound):
        service.delete_rrset(desk.uow(), people.owner, ZONE, "www", "A")


# -- zone files -----------------------------------------------------------------------------

ZONE_FILE = """\
$ORIGIN c1001-shop.net.
$TTL 3600
@        IN SOA  ns.old-provider.example. admin.old-provider.example. 7 3600 600 86400 300
@        IN NS   ns.old-provider.example.
@        IN MX   10 mail
@        IN TXT  "v=spf1 mx -all"
@    300 IN A    192.0.2.10
www      IN CNAME @
mail     IN A    192.0.2.25
mail     IN AAAA 2001:db8::25
_sip._tcp IN SRV 0 5 5060 mail
*.dev    IN A    192.0.2.99
"""


def test_import_all_or_nothing_and_export_round_trip(desk: Desk, people: People) -> None:
    service.create_zone(desk.uow(), people.owner, "C1001", ZONE)
    put(desk, people.owner, "old", "A", "192.0.2.1")
    before = serial(desk)
    broken = ZONE_FILE + "bad IN A 300.1.1.1\n"
    with pytest.raises(FieldErrors) as exc:
        service.import_zone_file(desk.uow(), people.owner, ZONE, broken, DNS)
    assert fields(exc)["text"][0].startswith("near line 1"), fields(exc)
    with pytest.raises(FieldErrors) as exc:
        service.import_zone_file(
            desk.uow(), people.owner, ZONE, ZONE_FILE + "mail IN CNAME www\n", DNS
        )
    assert "alone" in fields(exc)["text"][0]
    with pytest.raises(FieldErrors) as exc:
        service.import_zone_file(
            desk.uow(), people.owner, ZONE, ZONE_FILE + "shop IN MX 10 www\n", DNS
        )
    assert "is a CNAME" in fields(exc)["shop/MX records[0]"][0]
    assert serial(desk) == before  # nothing of it was kept
    assert [s.subname for s in service.get_zone(desk.uow(), people.owner, ZONE).rrsets] == ["old"]

    result = service.import_zone_file(desk.uow(), people.owner, ZONE, ZONE_FILE, DNS, replace=True)
    assert (result.created, result.replaced, result.deleted) == (8, 0, 1)
    assert any("SOA" in note for note in result.notes)
    assert any("NS" in note for note in result.notes)
    assert serial_gt(result.serial, before)
    zone = service.get_zone(desk.uow(), people.owner, ZONE)
    got = {(s.subname, s.type): s.records for s in zone.rrsets}
    assert got[("www", "CNAME")] == ["c1001-shop.net."]
    assert got[("", "MX")] == ["10 mail.c1001-shop.net."]
    assert ("old", "A") not in got

    text = service.export_zone_file(desk.uow(), people.member, ZONE, DNS)
    assert "$ORIGIN c1001-shop.net." in text
    assert f"{zone.serial}" in text
    assert "ns1.dns.provider.example." in text
    again = service.import_zone_file(desk.uow(), people.owner, ZONE, text, DNS, replace=True)
    assert not again.changed
    assert again.unchanged == 8
    assert serial(desk) == zone.serial
    kinds = [h.kind for h in service.zone_history(desk.uow(), people.owner, ZONE)]
    assert kinds.count(ZoneChangeKind.ZONE_IMPORTED) == 1
    assert kinds.count(ZoneChangeKind.RRSET_CREATED) == 9  # 8 imported, "old" before


def test_import_refuses_includes_and_generate(desk: Desk, people: People) -> None:
    service.create_zone(desk.uow(), people.owner, "C1001", ZONE)
    for line in ("$INCLUDE /etc/passwd\n", "$GENERATE 1-100000 host$ A 192.0.2.$\n"):
        with pytest.raises(FieldErrors) as exc:
            service.import_zone_file(desk.uow(), people.owner, ZONE, line, DNS)
        assert "text" in fields(exc)


# -- staff changes, the customer told -------------------------------------------------------


def test_staff_changes_are_audited_and_told_to_the_customer(desk: Desk, people: People) -> None:
    service.create_zone(desk.uow(), people.owner, "C1001", ZONE)
    put(desk, people.owner, "phish", "A", "192.0.2.66")
    assert outbox(desk) == []
    service.delete_rrset(
        desk.uow(), people.noc, ZONE, "phish", "A", reason="phishing page, ticket AD-000042"
    )
    service.set_nameservers(
        desk.uow(), people.noc, ZONE, ["ns1.other-dns.net", "NS2.other-dns.net."],
        reason="moved to the dedicated cluster",
    )  # fmt: skip
    zone = service.get_zone(desk.uow(), people.owner, ZONE)
    assert zone.nameservers == ["ns1.other-dns.net.", "ns2.other-dns.net."]
    mails = outbox(desk)
    assert [m.template for m in mails] == [MessageTemplate.DNS_CHANGED] * 2
    assert set(mails[0].recipients) == {"noc@c1001.example", "abuse@c1001.example"}
    assert mails[0].context["changes"] == ["phish A deleted"]
    assert mails[0].context["note"] == "phishing page, ticket AD-000042"
    out = render(
        mails[1].template, mails[1].context, "en", "https://abuse.provider.example", desk.policy
    )
    assert ZONE in out.subject
    assert "ns1.other-dns.net." in out.text
    assert "moved to the dedicated cluster" in out.text
    history = service.zone_history(desk.uow(), people.owner, ZONE)
    assert history[0].kind is ZoneChangeKind.NAMESERVERS_CHANGED
    assert history[0].staff
    assert history[1].actor == people.noc.label
    with desk.uow() as uow:
        audit = uow.session.scalars(
            sa.select(AuditEntry).where(AuditEntry.action == "dns.zone.nameservers")
        ).one()
    assert audit.details["reason"] == "moved to the dedicated cluster"
    # The snapshot serves the override, the SOA naming its first.
    built = snapshot.load_all(desk.uow(), DNS)[f"{ZONE}."]
    ns = built.find_rdataset("@", dns.rdatatype.NS)
    assert sorted(str(r.target) for r in ns) == ["ns1.other-dns.net.", "ns2.other-dns.net."]
    soa = built.find_rdataset("@", dns.rdatatype.SOA)[0]
    assert str(soa.mname) == "ns1.other-dns.net."
    # Back to the provider's.
    service.set_nameservers(desk.uow(), people.noc, ZONE, [])
    built = snapshot.load_all(desk.uow(), DNS)[f"{ZONE}."]
    ns = built.find_rdataset("@", dns.rdatatype.NS)
    assert sorted(str(r.target) for r in ns) == sorted(DNS.nameservers)


# -- the snapshot the planes serve ----------------------------------------------------------


def test_snapshot_and_version_token(desk: Desk, people: People) -> None:
    assert snapshot.version_token(desk.uow()) == ""
    assert snapshot.load_all(desk.uow(), DNS) == {}
    service.create_zone(desk.uow(), people.owner, "C1001", ZONE)
    first = snapshot.version_token(desk.uow())
    assert first
    put(desk, people.owner, "www", "A", "192.0.2.1")
    put(desk, people.owner, "@", "MX", "10 mail.elsewhere.example.")
    second = snapshot.version_token(desk.uow())
    assert second != first
    service.zone_history(desk.uow(), people.owner, ZONE)  # reading changes nothing
    assert snapshot.version_token(desk.uow()) == second
    zones = snapshot.load_all(desk.uow(), DNS)
    assert list(zones) == [f"{ZONE}."]
    zone = zones[f"{ZONE}."]
    soa = zone.find_rdataset("@", dns.rdatatype.SOA)
    assert soa[0].serial == serial(desk)
    assert soa[0].minimum == DNS.negative_ttl
    www = zone.find_rdataset("www", dns.rdatatype.A)
    assert (www.ttl, [r.address for r in www]) == (300, ["192.0.2.1"])
    assert str(zone.find_rdataset("@", dns.rdatatype.MX)[0].exchange) == "mail.elsewhere.example."
    service.delete_zone(desk.uow(), people.owner, ZONE)
    assert snapshot.version_token(desk.uow()) != second
    assert snapshot.load_all(desk.uow(), DNS) == {}


def test_deleting_a_zone_takes_its_sets_history_and_load_with_it(
    desk: Desk, people: People
) -> None:
    zone = service.create_zone(desk.uow(), people.owner, "C1001", ZONE)
    put(desk, people.owner, "www", "A", "192.0.2.1")
    put(desk, SYSTEM, "mail", "A", "192.0.2.25")  # seeding tells nobody
    assert outbox(desk) == []
    with desk.uow() as uow:
        uow.session.add(
            LoadSample(zone_id=zone.id, bucket=desk.clock.now(), queries=10, nxdomain=1, by_type={})
        )
        uow.commit()
    service.delete_zone(desk.uow(), people.noc, ZONE, reason="account closed")
    with desk.uow() as uow:
        for table in (Zone, RRSet, ZoneChange, LoadSample):
            assert uow.session.scalar(sa.select(sa.func.count()).select_from(table)) == 0
    assert [m.context["changes"] for m in outbox(desk)] == [[f"zone {ZONE} deleted"]]
