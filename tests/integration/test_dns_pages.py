"""Managed DNS in the portal and the console: a customer adds a zone and edits its records with
an error beside each wrong field, imports and exports a zone file, reads its history and load;
another account's zone does not exist for them; staff change any zone and its name servers,
and the customer is told."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa

from abusedesk.accounts.choices import Role
from abusedesk.bootstrap import Desk
from abusedesk.dns import overuse
from abusedesk.dns import service as zones
from abusedesk.dns.plane import ZoneCounters
from abusedesk.notify.choices import MessageTemplate
from abusedesk.notify.models import OutboxMessage
from tests import factories
from tests.web_client import Web, add_user, post_form, served

ZONE = "shop-c1001.net"


@pytest.fixture
def web(desk: Desk) -> Iterator[Web]:
    with served(desk) as served_web:
        yield served_web


@pytest.fixture
def acme(desk: Desk) -> factories.Customer:
    return factories.customer(desk, "C1001", servers=1, base="198.51.100")


def customer(web: Web, reference: str) -> httpx.Client:
    return web.signed_in(add_user(web.desk, Role.CUSTOMER, reference))


def add_zone(client: httpx.Client, name: str = ZONE) -> httpx.Response:
    return post_form(client, "/portal/dns", {"name": name}, "/portal/dns")


def put(client: httpx.Client, zone: str, **fields: str) -> httpx.Response:
    return post_form(client, f"/portal/dns/{zone}/rrsets", fields, f"/portal/dns/{zone}")


def test_a_customer_adds_a_zone_and_its_records(web: Web, acme: factories.Customer) -> None:
    owner = customer(web, acme.reference)
    answer = add_zone(owner)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/portal/dns/{ZONE}"
    assert (
        put(
            owner, ZONE, subname="www", type="A", ttl="300", records="192.0.2.10\n192.0.2.11"
        ).status_code
        == 303
    )
    assert (
        put(
            owner, ZONE, subname="@", type="MX", ttl="", records="10 mail.shop-c1001.net."
        ).status_code
        == 303
    )
    page = owner.get(f"/portal/dns/{ZONE}").text
    assert "192.0.2.10" in page
    assert "192.0.2.11" in page
    assert "10 mail.shop-c1001.net." in page
    assert "History" in page
    assert "A records at www" in page or "www" in page
    listing = owner.get("/portal/dns").text
    assert f'href="/portal/dns/{ZONE}"' in listing


def test_a_wrong_record_is_shown_beside_its_field_and_changes_nothing(
    web: Web, desk: Desk, acme: factories.Customer
) -> None:
    owner = customer(web, acme.reference)
    add_zone(owner)
    before = zones.get_zone(desk.uow(), _system(), ZONE).serial
    answer = put(owner, ZONE, subname="www", type="A", ttl="300", records="192.0.2.300")
    assert answer.status_code == 422
    assert 'class="error-text"' in answer.text
    assert "192.0.2.300" in answer.text  # what was typed is kept
    bad_ttl = put(owner, ZONE, subname="www", type="A", ttl="soon", records="192.0.2.1")
    assert bad_ttl.status_code == 422
    assert "whole number" in bad_ttl.text
    cname_apex = put(owner, ZONE, subname="@", type="CNAME", ttl="", records="other.net.")
    assert cname_apex.status_code == 422
    assert zones.get_zone(desk.uow(), _system(), ZONE).serial == before


def test_import_and_export_a_zone_file(web: Web, acme: factories.Customer) -> None:
    owner = customer(web, acme.reference)
    add_zone(owner)
    text = (
        f"$ORIGIN {ZONE}.\n$TTL 600\n"
        "@ IN SOA ns.other.net. h.other.net. 1 3600 600 86400 300\n"
        "@ IN NS ns.other.net.\n"
        "www IN A 192.0.2.20\n"
        'txt IN TXT "hello world"\n'
    )
    answer = post_form(owner, f"/portal/dns/{ZONE}/import", {"text": text}, f"/portal/dns/{ZONE}")
    assert answer.status_code == 303
    exported = owner.get(f"/portal/dns/{ZONE}/export")
    assert exported.status_code == 200
    assert "attachment" in exported.headers["content-disposition"]
    assert "192.0.2.20" in exported.text
    assert '"hello world"' in exported.text
    broken = post_form(
        owner,
        f"/portal/dns/{ZONE}/import",
        {"text": "www IN A not-an-address\n"},
        f"/portal/dns/{ZONE}",
    )
    assert broken.status_code == 422
    assert 'class="error-text"' in broken.text


def test_another_accounts_zone_does_not_exist_for_a_customer(
    web: Web, desk: Desk, acme: factories.Customer
) -> None:
    factories.customer(desk, "C2002", servers=1, base="203.0.113")
    owner = customer(web, acme.reference)
    add_zone(owner)
    other = customer(web, "C2002")
    assert other.get(f"/portal/dns/{ZONE}").status_code == 404
    assert other.get(f"/portal/dns/{ZONE}/export").status_code == 404
    answer = post_form(
        other,
        f"/portal/dns/{ZONE}/rrsets",
        {"subname": "x", "type": "A", "records": "192.0.2.1"},
        "/portal/dns",
    )
    assert answer.status_code == 404
    assert ZONE not in other.get("/portal/dns").text


def test_staff_change_a_zone_and_its_name_servers_and_the_customer_is_told(
    web: Web, desk: Desk, acme: factories.Customer
) -> None:
    owner = customer(web, acme.reference)
    add_zone(owner)
    noc = web.signed_in(add_user(desk, Role.NOC))
    listing = noc.get("/staff/dns").text
    assert ZONE in listing
    assert acme.reference in listing
    page = f"/staff/dns/{ZONE}"
    answer = post_form(
        noc,
        f"{page}/nameservers",
        {
            "nameservers": "ns1.elsewhere.net\nns2.elsewhere.net",
            "reason": "moved at the customer's request",
        },
        page,
    )
    assert answer.status_code == 303, answer.text[:400]
    assert "ns1.elsewhere.net" in owner.get(f"/portal/dns/{ZONE}").text
    with desk.uow() as uow:
        told = uow.session.scalars(
            sa.select(OutboxMessage).where(OutboxMessage.template == MessageTemplate.DNS_CHANGED)
        ).all()
    assert told
    # customers have no name-server form
    assert "/nameservers" not in owner.get(f"/portal/dns/{ZONE}").text


def test_the_zone_page_charts_its_load_and_the_portal_shows_a_notice(
    web: Web, desk: Desk, acme: factories.Customer
) -> None:
    owner = customer(web, acme.reference)
    add_zone(owner)
    now = desk.clock.now()
    for minutes in range(0, 60, 5):
        overuse.record_counters(
            desk.uow(),
            {f"{ZONE}.": ZoneCounters(queries=300 * 600, nxdomain=10)},
            now - timedelta(minutes=minutes),
        )
    page = owner.get(f"/portal/dns/{ZONE}").text
    assert "<svg" in page.split('id="load"', 1)[1]
    desk.policy = _policy_with(desk, sustained=timedelta(hours=1))
    reviewed = overuse.review_load(desk.uow(), desk.policy, now)
    assert [r.noticed for r in reviewed] == [True]
    listing = owner.get("/portal/dns").text
    assert "potential" in listing


def _system():
    from abusedesk.accounts.permissions import SYSTEM

    return SYSTEM


def _policy_with(desk: Desk, **limits: object):
    from dataclasses import replace

    return replace(desk.policy, dns_load=replace(desk.policy.dns_load, **limits))
