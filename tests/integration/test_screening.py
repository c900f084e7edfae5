"""The refuse-service list (R3): keeping it, and its check when an account is created or
reactivated."""

from __future__ import annotations

import io
import json

import pytest
import sqlalchemy as sa

from abusedesk.accounts import screening
from abusedesk.accounts.choices import Role, ScreeningKind
from abusedesk.accounts.permissions import SYSTEM, Actor
from abusedesk.audit.models import AuditEntry
from abusedesk.bootstrap import Desk
from abusedesk.errors import Conflict, NotFound, PermissionDenied, ValidationError
from abusedesk.inventory import service as inventory
from abusedesk.inventory.choices import AccountStatus, ContactKind
from abusedesk.inventory.models import Account
from abusedesk.inventory.schemas import AccountIn, AccountPatch, ContactIn, DomainIn
from abusedesk.inventory.transfer import import_inventory

LEGAL = Actor("legal:lee@provider.example", Role.LEGAL)
ADMIN = Actor("admin:ada@provider.example", Role.ADMIN)
NOC = Actor("noc:nico@provider.example", Role.NOC)
ANALYST = Actor("analyst:al@provider.example", Role.ANALYST)
CUSTOMER = Actor("customer:c@c1001.example", Role.CUSTOMER, account_id=1)


def add_bad_corp(desk: Desk) -> int:
    entry = screening.add_screening(
        desk.uow(),
        LEGAL,
        ScreeningKind.BUSINESS,
        "  Bad   Corp ",
        "Fraud@Gmail.example, billing@badcorp.example\nfraud@gmail.example",
        "badcorp.example\n*.bad-cdn.example.",
        "chargebacks with stolen cards, 2025",
    )
    return entry.id


def new_account(reference: str, name: str, *emails: str, **fields: str) -> AccountIn:
    contacts = [ContactIn(kind=ContactKind.ABUSE, email=e) for e in emails]
    return AccountIn(reference=reference, name=name, contacts=contacts, **fields)


def accounts(desk: Desk) -> list[str]:
    with desk.uow() as uow:
        return list(uow.session.scalars(sa.select(Account.reference).order_by(Account.id)))


def audited(desk: Desk, action: str) -> list[AuditEntry]:
    with desk.uow() as uow:
        return list(uow.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == action)))


# -- keeping the list -----------------------------------------------------------------------


def test_legal_adds_an_entry_normalised_and_all_staff_see_it(desk: Desk) -> None:
    entry_id = add_bad_corp(desk)
    for actor in (ANALYST, NOC, LEGAL, ADMIN):
        [entry] = screening.list_screening(desk.uow(), actor)
        assert entry.id == entry_id
    assert entry.name == "Bad Corp"
    assert entry.emails == ["fraud@gmail.example", "billing@badcorp.example"]
    assert entry.domains == ["badcorp.example", "bad-cdn.example"]
    assert entry.added_by == LEGAL.label
    assert entry.added_at == desk.clock.now()
    [logged] = audited(desk, "screening.add")
    assert logged.details["reason"] == "chargebacks with stolen cards, 2025"


def test_only_legal_and_admin_keep_the_list_and_customers_do_not_see_it(desk: Desk) -> None:
    for actor in (NOC, ANALYST, CUSTOMER):
        with pytest.raises(PermissionDenied):
            screening.add_screening(desk.uow(), actor, ScreeningKind.PERSON, "X", [], [], "r")
    with pytest.raises(PermissionDenied):
        screening.list_screening(desk.uow(), CUSTOMER)
    entry_id = add_bad_corp(desk)
    with pytest.raises(PermissionDenied):
        screening.remove_screening(desk.uow(), NOC, entry_id, "paid up")
    screening.add_screening(desk.uow(), ADMIN, ScreeningKind.PERSON, "Mallory", [], [], "threats")
    assert len(screening.list_screening(desk.uow(), ANALYST)) == 2


def test_a_bad_entry_is_refused_with_every_problem(desk: Desk) -> None:
    with pytest.raises(ValidationError) as caught:
        screening.add_screening(
            desk.uow(), LEGAL, ScreeningKind.GROUP, "", "not-an-address", "bad_domain!", " "
        )
    assert len(caught.value.problems) == 3  # the address, the domain, the reason
    with pytest.raises(ValidationError, match="needs a name"):
        screening.add_screening(desk.uow(), LEGAL, ScreeningKind.GROUP, " ", "", "", "why")
    assert screening.list_screening(desk.uow(), LEGAL) == []


def test_a_removed_entry_stays_on_record_and_stops_matching(desk: Desk) -> None:
    entry_id = add_bad_corp(desk)
    with pytest.raises(ValidationError):
        screening.remove_screening(desk.uow(), LEGAL, entry_id, "  ")
    removed = screening.remove_screening(desk.uow(), ADMIN, entry_id, "court ruled in their favour")
    assert (removed.removed_by, removed.removal_reason) == (
        ADMIN.label,
        "court ruled in their favour",
    )
    assert screening.list_screening(desk.uow(), LEGAL) == []
    assert [e.id for e in screening.list_screening(desk.uow(), LEGAL, include_removed=True)] == [
        entry_id
    ]
    assert screening.screen_candidate(desk.uow(), "Bad Corp", [], []) == []
    with pytest.raises(Conflict):
        screening.remove_screening(desk.uow(), ADMIN, entry_id, "again")
    with pytest.raises(NotFound):
        screening.remove_screening(desk.uow(), ADMIN, 999_999, "none")


def test_a_candidate_is_screened_with_the_reasons(desk: Desk) -> None:
    entry_id = add_bad_corp(desk)
    [match] = screening.screen_candidate(
        desk.uow(), ["Acme", "BAD CORP"], ["ops@eu.badcorp.example"], ["static.bad-cdn.example"]
    )
    assert match.entry_id == entry_id
    assert match.why == (
        "the name 'Bad Corp'",
        "the e-mail ops@eu.badcorp.example (domain badcorp.example)",
        "the domain static.bad-cdn.example (bad-cdn.example)",
    )
    assert screening.screen_candidate(desk.uow(), "Good Corp", ["x@gmail.example"], []) == []


# -- creating an account --------------------------------------------------------------------


def test_a_listed_name_refuses_a_new_account(desk: Desk) -> None:
    entry_id = add_bad_corp(desk)
    with pytest.raises(Conflict) as caught:
        inventory.create_account(desk.uow(), NOC, new_account("C9", "bad corp"))
    assert f"#{entry_id}" in str(caught.value)
    assert "chargebacks with stolen cards" in str(caught.value)
    assert accounts(desk) == []


@pytest.mark.parametrize(
    "data",
    [
        new_account("C9", "Innocent Name Ltd", "abuse@mail.badcorp.example"),
        new_account("C9", "Innocent Name Ltd", "fraud@gmail.example"),
        new_account("C9", "Innocent Name Ltd", billing_name="BAD CORP"),
        new_account("C9", "Innocent Name Ltd", billing_email="pay@badcorp.example"),
    ],
    ids=["contact-domain", "contact-address", "billing-name", "billing-email"],
)
def test_every_name_and_address_of_a_new_account_is_screened(desk: Desk, data: AccountIn) -> None:
    add_bad_corp(desk)
    with pytest.raises(Conflict, match="screening list"):
        inventory.create_account(desk.uow(), ADMIN, data)
    assert accounts(desk) == []


def test_an_account_not_on_the_list_is_created(desk: Desk) -> None:
    add_bad_corp(desk)
    inventory.create_account(desk.uow(), NOC, new_account("C1", "Good Corp", "x@gmail.example"))
    assert accounts(desk) == ["C1"]


def test_legal_or_admin_may_override_with_a_reason_which_is_audited(desk: Desk) -> None:
    entry_id = add_bad_corp(desk)
    data = new_account("C9", "Bad Corp")
    with pytest.raises(PermissionDenied):  # the NOC asks those who keep the list
        inventory.create_account(desk.uow(), NOC, data, override_reason="sales says fine")
    with pytest.raises(Conflict):  # a blank reason is no reason
        inventory.create_account(desk.uow(), ADMIN, data, override_reason="  ")
    assert accounts(desk) == []

    created = inventory.create_account(
        desk.uow(), ADMIN, data, override_reason="new owners since 2026, checked by legal"
    )
    [override] = audited(desk, "screening.override")
    assert override.actor == ADMIN.label
    assert override.object_id == str(created.id)
    assert override.details["entries"] == [entry_id]
    assert override.details["reason"] == "new owners since 2026, checked by legal"


def test_the_bulk_import_does_not_screen(desk: Desk) -> None:
    add_bad_corp(desk)
    document = {"accounts": [{"reference": "C9", "name": "Bad Corp"}]}
    result = import_inventory(desk.uow(), SYSTEM, io.StringIO(json.dumps(document)), "json")
    assert result.accounts_added == 1
    assert accounts(desk) == ["C9"]


# -- reactivating an account ----------------------------------------------------------------


def suspended_account_with_domain(desk: Desk) -> None:
    inventory.create_account(desk.uow(), NOC, new_account("C5", "Shop Five", "a@five.example"))
    inventory.create_domain(
        desk.uow(), NOC, DomainIn(account_reference="C5", name="shop.badcorp.example")
    )
    inventory.update_account(desk.uow(), NOC, "C5", AccountPatch(status=AccountStatus.SUSPENDED))


def status(desk: Desk, reference: str) -> AccountStatus:
    with desk.uow() as uow:
        return uow.session.scalars(
            sa.select(Account.status).where(Account.reference == reference)
        ).one()


def test_reactivation_is_screened_by_the_accounts_domains_too(desk: Desk) -> None:
    suspended_account_with_domain(desk)
    add_bad_corp(desk)  # listed while the account was suspended
    with pytest.raises(Conflict, match="reactivating account C5"):
        inventory.update_account(desk.uow(), NOC, "C5", AccountPatch(status=AccountStatus.ACTIVE))
    assert status(desk, "C5") is AccountStatus.SUSPENDED

    inventory.update_account(
        desk.uow(),
        ADMIN,
        "C5",
        AccountPatch(status=AccountStatus.ACTIVE),
        override_reason="domain was hijacked, now recovered",
    )
    assert status(desk, "C5") is AccountStatus.ACTIVE
    assert len(audited(desk, "screening.override")) == 1


def test_only_a_change_back_to_active_is_screened(desk: Desk) -> None:
    suspended_account_with_domain(desk)
    add_bad_corp(desk)
    inventory.update_account(desk.uow(), NOC, "C5", AccountPatch(notes="still suspended"))
    inventory.update_account(desk.uow(), NOC, "C5", AccountPatch(status=AccountStatus.TERMINATED))
    assert status(desk, "C5") is AccountStatus.TERMINATED
    with pytest.raises(Conflict):
        inventory.update_account(desk.uow(), NOC, "C5", AccountPatch(status=AccountStatus.ACTIVE))


def test_a_reactivation_is_screened_as_the_patch_leaves_the_account(desk: Desk) -> None:
    suspended_account_with_domain(desk)
    screening.add_screening(
        desk.uow(), LEGAL, ScreeningKind.PERSON, "Mallory Jones", [], [], "threats to staff"
    )
    with pytest.raises(Conflict, match="threats to staff"):
        inventory.update_account(
            desk.uow(),
            NOC,
            "C5",
            AccountPatch(status=AccountStatus.ACTIVE, name="Mallory  Jones"),
        )
    inventory.update_account(desk.uow(), NOC, "C5", AccountPatch(status=AccountStatus.ACTIVE))
    assert status(desk, "C5") is AccountStatus.ACTIVE
