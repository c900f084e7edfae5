"""The account pages of the customer portal: billing data (R2), AUP acceptance (R1), and the
desk's own notes on an account.

These change inventory's Account, but are about what the account's users may do to it, which
is this feature's concern (the owner/manager rule of members.py); inventory's update_account
remains the staff's way to change everything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from abusedesk.accounts.choices import AccountRole
from abusedesk.accounts.models import User
from abusedesk.accounts.permissions import Actor, Permission
from abusedesk.accounts.validators import email_problem
from abusedesk.errors import NotFound, PermissionDenied, ValidationError
from abusedesk.inventory.models import Account
from abusedesk.policy import Policy
from abusedesk.store.uow import UnitOfWork

# The columns' own limits (and a sane one for the address), so PostgreSQL never refuses a value.
BILLING_NAME_MAX = 200
BILLING_ADDRESS_MAX = 2000
NOTES_MAX = 20_000


def billing_is_stale(confirmed_at: datetime | None, now: datetime, stale_after: timedelta) -> bool:
    """Billing data never confirmed, or last confirmed `stale_after` ago or longer, is due for
    confirmation (R2)."""
    return confirmed_at is None or now - confirmed_at >= stale_after


def current_aup_version(policy: Policy) -> str:
    return policy.aup_version


def confirm_billing(
    uow: UnitOfWork,
    actor: Actor,
    account_id: int,
    billing_name: str,
    billing_address: str,
    billing_email: str,
) -> Account:
    """Set the account's billing data and note that it is confirmed now. An owner or manager
    of the account, or staff with INVENTORY_EDIT. Every problem is reported at once."""
    name = billing_name.strip()
    address = "\n".join(line.strip() for line in billing_address.strip().splitlines()).strip()
    email = billing_email.strip().lower()
    problems = []
    if not name:
        problems.append("the billing name is empty")
    elif len(name) > BILLING_NAME_MAX:
        problems.append(f"the billing name has at most {BILLING_NAME_MAX} characters")
    if not address:
        problems.append("the billing address is empty")
    elif len(address) > BILLING_ADDRESS_MAX:
        problems.append(f"the billing address has at most {BILLING_ADDRESS_MAX} characters")
    if why := email_problem(email):
        problems.append(f"billing e-mail: {why}")
    if problems:
        raise ValidationError("; ".join(problems), problems)
    with uow:
        account = _managed_account(uow.session, actor, account_id, Permission.INVENTORY_EDIT)
        changed = sorted(
            field
            for field, value in (
                ("billing_name", name),
                ("billing_address", address),
                ("billing_email", email),
            )
            if getattr(account, field) != value
        )
        account.billing_name = name
        account.billing_address = address
        account.billing_email = email
        account.billing_confirmed_at = uow.clock.now()
        # Which fields changed, not their values: the log is append-only and billing data is
        # personal data that may have to be erased.
        uow.audit(
            actor.label, "account.billing_confirm", "account", account.id, {"changed": changed}
        )
        uow.commit()
        return account


def accept_aup(
    uow: UnitOfWork, actor: Actor, account_id: int, version: str, policy: Policy
) -> Account:
    """Record that the account accepts the AUP `version` (R1). Only an owner or manager of the
    account: acceptance binds the customer, so staff cannot give it on the customer's behalf
    (a signed paper contract is recorded through the inventory import instead). `version` is
    the one the page showed; if the AUP changed since, the customer must read the new one."""
    if actor.is_staff:
        raise PermissionDenied("only the customer's owners and managers accept the AUP")
    current = current_aup_version(policy)
    if version != current:
        raise ValidationError(
            f"the Acceptable Use Policy is now version {current}: read it and accept that one"
        )
    with uow:
        account = _managed_account(uow.session, actor, account_id, Permission.INVENTORY_EDIT)
        account.aup_version = current
        account.aup_accepted_at = uow.clock.now()
        uow.audit(actor.label, "account.aup_accept", "account", account.id, {"version": current})
        uow.commit()
        return account


def set_account_notes(uow: UnitOfWork, actor: Actor, account_id: int, notes: str) -> Account:
    """The desk's own notes on an account, never shown to the customer. Any staff member may
    write them (INVENTORY_VIEW): an analyst or legal, who cannot edit the inventory, is often
    the one with something to note. inventory.update_account can set them too, for INVENTORY_EDIT.
    """
    actor.require(Permission.INVENTORY_VIEW)
    if not actor.is_staff:
        raise PermissionDenied("notes are the desk's own")
    text = notes.strip()
    if len(text) > NOTES_MAX:
        raise ValidationError(f"notes have at most {NOTES_MAX} characters")
    with uow:
        account = uow.session.get(Account, account_id)
        if account is None:
            raise NotFound("no such account")
        account.notes = text
        uow.audit(actor.label, "account.notes", "account", account.id, {"chars": len(text)})
        uow.commit()
        return account


def _managed_account(
    session: Session, actor: Actor, account_id: int, staff_permission: Permission
) -> Account:
    """The account, when the actor is staff with `staff_permission` or an active owner or
    manager of it. Another account's is not found."""
    if actor.is_staff:
        actor.require(staff_permission)
    elif actor.account_id != account_id:
        raise NotFound("no such account")
    else:
        me = session.get(User, actor.user_id) if actor.user_id is not None else None
        if (
            me is None
            or not me.is_active
            or me.account_id != account_id
            or me.account_role not in (AccountRole.OWNER, AccountRole.MANAGER)
        ):
            raise PermissionDenied("only the account's owners and managers change it")
    account = session.get(Account, account_id, with_for_update=True)
    if account is None:
        raise NotFound("no such account")
    return account


@dataclass(frozen=True, slots=True)
class Membership:
    """A signed-in customer's own account, and its role there: what the portal's pages show
    and which of their forms it offers."""

    account: Account
    account_role: AccountRole

    @property
    def manages(self) -> bool:
        """Invites and removes users, confirms billing data, accepts the AUP."""
        return self.account_role.manages_members


def own_account(uow: UnitOfWork, actor: Actor) -> Membership:
    """Raises NotFound for staff (they have no account) and for a user no longer active."""
    with uow.reading():
        me = uow.session.get(User, actor.user_id) if actor.user_id is not None else None
        if (
            actor.is_staff
            or me is None
            or not me.is_active
            or me.account_id is None
            or me.account_id != actor.account_id
        ):
            raise NotFound("no such account")
        account = uow.session.get(Account, me.account_id)
        if account is None:
            raise NotFound("no such account")
        return Membership(account, me.account_role or AccountRole.MEMBER)
