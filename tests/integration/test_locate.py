"""locate(): addresses (IPv4, IPv6, nested, past), host names, URLs, domains."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from abusedesk.accounts.choices import Role
from abusedesk.accounts.permissions import SYSTEM, Actor
from abusedesk.bootstrap import Desk
from abusedesk.clock import FakeClock
from abusedesk.errors import PermissionDenied
from abusedesk.inventory import service as inventory
from abusedesk.inventory.locate import Via, locate, locate_addresses, target_host
from abusedesk.inventory.schemas import AssignmentIn, DomainIn, ServerIn
from tests import factories


@pytest.fixture
def provider(desk: Desk) -> dict[str, factories.Customer]:
    a = factories.customer(desk, "C1", servers=2, base="198.51.100")
    b = factories.customer(desk, "C2", servers=1, base="203.0.113")
    uow = desk.uow
    # a's first server holds a /24 and an IPv6 /48; b's server a /28 and a /64 nested inside them.
    inventory.assign_prefix(uow(), SYSTEM, a.hostnames[0], AssignmentIn(prefix="192.0.2.0/24"))
    inventory.assign_prefix(uow(), SYSTEM, a.hostnames[0], AssignmentIn(prefix="2001:db8:a::/48"))
    inventory.assign_prefix(uow(), SYSTEM, b.hostnames[0], AssignmentIn(prefix="192.0.2.64/28"))
    inventory.assign_prefix(uow(), SYSTEM, b.hostnames[0], AssignmentIn(prefix="2001:db8:a:5::/64"))
    inventory.create_domain(
        uow(),
        SYSTEM,
        DomainIn(account_reference="C2", name="shop.example", server_hostname=b.hostnames[0]),
    )
    return {"a": a, "b": b}


def where(desk: Desk, target: str, at=None):
    return locate(desk.uow(), SYSTEM, target, at)


def test_ipv4_longest_prefix(desk: Desk, provider: dict[str, factories.Customer]) -> None:
    a, b = provider["a"], provider["b"]
    assert where(desk, "192.0.2.10").server_id == a.server_ids[0]
    inner = where(desk, "192.0.2.70")
    assert inner.server_id == b.server_ids[0]
    assert inner.prefix == "192.0.2.64/28"
    assert where(desk, "192.0.2.80").server_id == a.server_ids[0]  # just past the /28
    assert where(desk, "198.51.100.2").server_id == a.server_ids[1]
    assert where(desk, "198.51.100.3") is None
    assert where(desk, "8.8.8.8") is None


def test_ipv6_longest_prefix(desk: Desk, provider: dict[str, factories.Customer]) -> None:
    a, b = provider["a"], provider["b"]
    assert where(desk, "2001:db8:a:1::1").server_id == a.server_ids[0]
    assert where(desk, "2001:db8:a:5:ffff:ffff:ffff:ffff").server_id == b.server_ids[0]
    assert where(desk, "[2001:db8:a:5::25]:25").account_reference == "C2"
    assert where(desk, "2001:db8:b::1") is None


def test_past_assignments(
    desk: Desk, provider: dict[str, factories.Customer], clock: FakeClock
) -> None:
    a, b = provider["a"], provider["b"]
    before = clock.now()
    clock.advance(timedelta(days=10))
    handover = clock.now()
    inventory.end_assignment(desk.uow(), SYSTEM, "198.51.100.1/32", handover)
    clock.advance(timedelta(minutes=1))
    inventory.assign_prefix(
        desk.uow(),
        SYSTEM,
        b.hostnames[0],
        AssignmentIn(prefix="198.51.100.1/32", valid_from=handover),
    )
    clock.advance(timedelta(days=1))
    assert where(desk, "198.51.100.1").server_id == b.server_ids[0]  # now
    assert where(desk, "198.51.100.1", before + timedelta(days=1)).server_id == a.server_ids[0]
    assert where(desk, "198.51.100.1", handover).server_id == b.server_ids[0]  # until is exclusive
    assert where(desk, "198.51.100.1", handover - timedelta(seconds=1)).server_id == a.server_ids[0]
    assert where(desk, "198.51.100.1", before - timedelta(days=1)) is None  # before anyone


def test_names_urls_and_domains(desk: Desk, provider: dict[str, factories.Customer]) -> None:
    b = provider["b"]
    by_host = where(desk, b.hostnames[0])
    assert by_host.via is Via.HOSTNAME
    assert by_host.server_id == b.server_ids[0]
    by_url = where(desk, "hxxps://cdn.shop[.]example/login.php?x=1")
    assert by_url.via is Via.DOMAIN
    assert by_url.domain == "shop.example"
    assert by_url.server_id == b.server_ids[0]
    by_mail = where(desk, "sales@shop.example")
    assert by_mail.account_reference == "C2"
    assert where(desk, "http://198.51.100.2/x").account_reference == "C1"
    assert where(desk, "notshop.example") is None
    assert where(desk, "") is None


def test_bulk_lookup_matches_single_lookups(
    desk: Desk, provider: dict[str, factories.Customer]
) -> None:
    targets = [
        "192.0.2.10",
        "192.0.2.70",
        "8.8.8.8",
        "2001:db8:a:5::1",
        "not an address",
        "198.51.100.2",
    ]
    with desk.uow() as uow:
        bulk = locate_addresses(uow.session, targets)
    for n, target in enumerate(targets):
        one = where(desk, target) if target != "not an address" else None
        assert bulk.server_ids[n] == (one.server_id if one else -1)
        assert bulk.account_ids[n] == (one.account_id if one else -1)
    assert isinstance(bulk.server_ids, np.ndarray)


def test_the_index_follows_inventory_changes(
    desk: Desk, provider: dict[str, factories.Customer]
) -> None:
    assert where(desk, "100.64.0.1") is None
    inventory.create_server(
        desk.uow(),
        SYSTEM,
        ServerIn(
            account_reference="C2",
            hostname="new.c2.example",
            plan="vps",
            prefixes=["100.64.0.0/30"],
        ),
    )
    assert where(desk, "100.64.0.1").hostname == "new.c2.example"


def test_customers_may_not_locate(desk: Desk, provider: dict[str, factories.Customer]) -> None:
    customer = Actor("customer:x", Role.CUSTOMER, user_id=1, account_id=provider["a"].account_id)
    with pytest.raises(PermissionDenied):
        locate(desk.uow(), customer, "192.0.2.10")


@pytest.mark.parametrize(
    ("target", "host"),
    [
        ("hxxps://www.example[.]com:8443/login.php", "www.example.com"),
        ("mailer@bad.example", "bad.example"),
        ("[2001:db8::1]:25", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("192.0.2.1:80", "192.0.2.1"),
        ("Example.COM.", "example.com"),
        ("example(dot)com/path", "example.com"),
    ],
)
def test_target_host(target: str, host: str) -> None:
    assert target_host(target) == host
