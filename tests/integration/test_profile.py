"""The portal's account pages: billing data (R2), AUP acceptance (R1), and the desk's notes."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from abusedesk.accounts import profile
from abusedesk.accounts.choices import AccountRole, Role
from abusedesk.accounts.permissions import Actor
from abusedesk.accounts.settings import AuthSettings
from abusedesk.audit.models import AuditEntry
from abusedesk.bootstrap import Desk
from abusedesk.clock import FakeClock
from abusedesk.errors import NotFound, PermissionDenied, ValidationError
from abusedesk.inventory.models import Account
from tests import factories

AUTH = AuthSettings()


@dataclass
class People:
    account_id: int
    owner: Actor
    manager: Actor
    member: Actor
    stranger: Actor
    analyst: Actor
    noc: Actor


@pytest.fixture
def people(desk: Desk) -> People:
    c1 = factories.customer(desk)
    factories.customer(desk, "C2002", base="203.0.113")
    return People(
        c1.account_id,
        factories.user(desk, "o@c1001.example", account_reference="C1001",
                       account_role=AccountRole.OWNER),
        factories.user(desk, "m@c1001.example", account_reference="C1001",
                       account_role=AccountRole.MANAGER),
        factories.user(desk, "u@c1001.example", account_reference="C1001",
                       account_role=AccountRole.MEMBER),
        factories.user(desk, "o@c2002.example", account_reference="C2002",
                       account_role=AccountRole.OWNER),
        factories.user(desk, "analyst@provider.example", role=Role.ANALYST),
        factories.user(desk, "noc@provider.example", role=Role.NOC),
    )  # fmt: skip


def account(desk: Desk, account_id: int) -> Account:
    with desk.uow() as uow:
        found = uow.session.get(Account, account_id)
        assert found is not None
        return found


def audited(desk: Desk, action: str) -> list[AuditEntry]:
    with desk.uow() as uow:
        return list(uow.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == action)))


def confirm(desk: Desk, actor: Actor, account_id: int, **changes: str) -> Account:
    values = {
        "billing_name": "Example Hosting Ltd",
        "billing_address": "  1 High Street \n  Springfield  ",
        "billing_email": "Accounts@Example.com",
        **changes,
    }
    return profile.confirm_billing(desk.uow(), actor, account_id, **values)


# -- billing --------------------------------------------------------------------------------


def test_an_owner_or_manager_confirms_billing_and_it_is_fresh_until_it_is_not(
    desk: Desk, people: People, clock: FakeClock
) -> None:
    assert profile.billing_is_stale(
        account(desk, people.account_id).billing_confirmed_at, clock.now(), AUTH.billing_stale_after
    )
    done = confirm(desk, people.manager, people.account_id)
    assert done.billing_name == "Example Hosting Ltd"
    assert done.billing_address == "1 High Street\nSpringfield"
    assert done.billing_email == "accounts@example.com"
    stored = account(desk, people.account_id)
    assert stored.billing_confirmed_at == clock.now()
    assert not profile.billing_is_stale(
        stored.billing_confirmed_at, clock.now(), AUTH.billing_stale_after
    )
    clock.advance(AUTH.billing_stale_after)
    assert profile.billing_is_stale(
        stored.billing_confirmed_at, clock.now(), AUTH.billing_stale_after
    )

    # Confirming the same data again moves the date and records that nothing changed.
    confirm(desk, people.owner, people.account_id)
    assert account(desk, people.account_id).billing_confirmed_at == clock.now()
    first, second = audited(desk, "account.billing_confirm")
    assert first.details == {"changed": ["billing_address", "billing_email", "billing_name"]}
    assert second.details == {"changed": []}
    assert "Springfield" not in str(first.details)  # personal data stays out of the log


def test_billing_data_is_checked_and_every_problem_reported(desk: Desk, people: People) -> None:
    with pytest.raises(ValidationError) as caught:
        confirm(
            desk, people.owner, people.account_id,
            billing_name=" ", billing_address="\n", billing_email="nope",
        )  # fmt: skip
    assert len(caught.value.problems) == 3
    assert account(desk, people.account_id).billing_confirmed_at is None


def test_who_may_confirm_billing(desk: Desk, people: People) -> None:
    with pytest.raises(PermissionDenied):
        confirm(desk, people.member, people.account_id)
    with pytest.raises(NotFound):
        confirm(desk, people.stranger, people.account_id)
    with pytest.raises(PermissionDenied):  # staff without INVENTORY_EDIT
        confirm(desk, people.analyst, people.account_id)
    assert account(desk, people.account_id).billing_confirmed_at is None
    confirm(desk, people.noc, people.account_id)
    assert account(desk, people.account_id).billing_confirmed_at is not None


# -- the AUP --------------------------------------------------------------------------------


def test_accepting_the_current_aup(desk: Desk, people: People, clock: FakeClock) -> None:
    version = profile.current_aup_version(desk.policy)
    assert version == desk.policy.aup_version == "2026-01"
    accepted = profile.accept_aup(desk.uow(), people.owner, people.account_id, version, desk.policy)
    assert (accepted.aup_version, accepted.aup_accepted_at) == (version, clock.now())
    [entry] = audited(desk, "account.aup_accept")
    assert entry.details == {"version": version}
    assert entry.actor == "customer:o@c1001.example"


def test_an_old_version_or_the_wrong_person_cannot_accept(desk: Desk, people: People) -> None:
    current = profile.current_aup_version(desk.policy)
    with pytest.raises(ValidationError, match=current):
        profile.accept_aup(desk.uow(), people.owner, people.account_id, "2025-01", desk.policy)
    with pytest.raises(PermissionDenied):
        profile.accept_aup(desk.uow(), people.member, people.account_id, current, desk.policy)
    with pytest.raises(NotFound):
        profile.accept_aup(desk.uow(), people.stranger, people.account_id, current, desk.policy)
    with pytest.raises(PermissionDenied):  # the customer's to give
        profile.accept_aup(desk.uow(), people.noc, people.account_id, current, desk.policy)
    assert account(desk, people.account_id).aup_version is None


# -- notes ----------------------------------------------------------------------------------


def test_any_staff_member_writes_the_desks_notes_and_no_customer_does(
    desk: Desk, people: People
) -> None:
    profile.set_account_notes(
        desk.uow(), people.analyst, people.account_id, "  Reseller: forward to their NOC. "
    )
    assert account(desk, people.account_id).notes == "Reseller: forward to their NOC."
    with pytest.raises(PermissionDenied):
        profile.set_account_notes(desk.uow(), people.owner, people.account_id, "mine")
    with pytest.raises(NotFound):
        profile.set_account_notes(desk.uow(), people.analyst, 999_999, "x")
    assert account(desk, people.account_id).notes == "Reseller: forward to their NOC."
    assert len(audited(desk, "account.notes")) == 1
