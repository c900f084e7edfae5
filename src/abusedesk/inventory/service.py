"""Changing the inventory: accounts, servers, IP assignments and domains."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.interfaces import ORMOption

from abusedesk.accounts import screening
from abusedesk.accounts.permissions import Actor, Permission
from abusedesk.errors import Conflict, NotFound, ValidationError
from abusedesk.inventory.choices import AccountStatus, ContactKind
from abusedesk.inventory.models import Account, Contact, Domain, IPAssignment, Server
from abusedesk.inventory.schemas import (
    AccountIn,
    AccountPatch,
    AssignmentIn,
    ContactIn,
    DomainIn,
    ServerIn,
    ServerPatch,
)
from abusedesk.store.uow import UnitOfWork

T = TypeVar("T", Server, Domain)


def account_by_reference(session: Session, reference: str, *options: ORMOption) -> Account:
    account = session.scalar(
        sa.select(Account).where(Account.reference == reference).options(*options)
    )
    if account is None:
        raise NotFound(f"no account {reference}")
    return account


def server_by_hostname(session: Session, hostname: str, *options: ORMOption) -> Server:
    server = session.scalar(
        sa.select(Server).where(Server.hostname == hostname.lower()).options(*options)
    )
    if server is None:
        raise NotFound(f"no server {hostname}")
    return server


# -- accounts -------------------------------------------------------------------------------


def add_account(session: Session, data: AccountIn, now: datetime) -> Account:
    """Within the caller's transaction (the importer adds thousands in one)."""
    if session.scalar(sa.select(Account.id).where(Account.reference == data.reference)):
        raise Conflict(f"an account {data.reference} exists already")
    account = Account(
        **_account_values(data, now), contacts=[Contact(**c.model_dump()) for c in data.contacts]
    )
    session.add(account)
    session.flush()
    return account


def create_account(
    uow: UnitOfWork, actor: Actor, data: AccountIn, *, override_reason: str | None = None
) -> Account:
    """A new account, unless the screening list (R3) refuses it: Conflict naming the entry,
    or, with `override_reason` from an actor who keeps the list, created and audited."""
    actor.require(Permission.INVENTORY_EDIT)
    with uow:
        overridden = screening.gate(
            uow.session,
            actor,
            f"account {data.reference}",
            [data.name, data.billing_name],
            [c.email for c in data.contacts] + [data.billing_email],
            [],
            override_reason,
        )
        account = add_account(uow.session, data, uow.clock.now())
        uow.audit(
            actor.label, "account.create", "account", account.id, {"reference": data.reference}
        )
        _audit_override(uow, actor, account, overridden, override_reason)
        uow.commit()
        return account


def _audit_override(
    uow: UnitOfWork,
    actor: Actor,
    account: Account,
    overridden: list[screening.ScreeningMatch],
    override_reason: str | None,
) -> None:
    if overridden and override_reason:
        uow.audit(
            actor.label,
            "screening.override",
            "account",
            account.id,
            screening.override_details(overridden, override_reason),
        )


def get_account(uow: UnitOfWork, actor: Actor, reference: str) -> Account:
    with uow.reading():
        account = uow.session.scalar(
            sa.select(Account)
            .where(Account.reference == reference)
            .options(
                selectinload(Account.contacts),
                selectinload(Account.servers).selectinload(Server.assignments),
                selectinload(Account.domains).selectinload(Domain.server),
            )
        )
        _require_view(actor)
        # Another account's reference answers as one that does not exist: a customer cannot
        # learn which references are taken.
        if account is None or not _visible(actor, account.id):
            raise NotFound(f"no account {reference}")
        return account


def list_accounts(
    uow: UnitOfWork, actor: Actor, limit: int = 100, offset: int = 0, search: str = ""
) -> list[Account]:
    """Accounts in reference order; with `search`, those whose reference, name, or a contact's
    or the billing e-mail contains it (case-insensitive)."""
    actor.require(Permission.INVENTORY_VIEW)
    query = sa.select(Account).options(selectinload(Account.contacts))
    if text := search.strip():
        contact = sa.select(Contact.account_id).where(
            Contact.email.icontains(text, autoescape=True)
        )
        query = query.where(
            sa.or_(
                Account.reference.icontains(text, autoescape=True),
                Account.name.icontains(text, autoescape=True),
                Account.billing_email.icontains(text, autoescape=True),
                Account.id.in_(contact),
            )
        )
    with uow.reading():
        return list(
            uow.session.execute(
                query.order_by(Account.id).limit(min(limit, 1000)).offset(offset)
            ).scalars()
        )


def update_account(
    uow: UnitOfWork,
    actor: Actor,
    reference: str,
    patch: AccountPatch,
    *,
    override_reason: str | None = None,
) -> Account:
    """A status change back to active (from suspended or terminated) is screened like a new
    account (R3); see create_account for `override_reason`."""
    actor.require(Permission.INVENTORY_EDIT)
    with uow:
        # Loaded now because callers show the result after the session has ended.
        account = account_by_reference(uow.session, reference, selectinload(Account.contacts))
        was = account.status
        changes = patch.model_dump(exclude_unset=True)
        contacts = changes.pop("contacts", None)
        for key, value in changes.items():
            setattr(account, key, value)
        if contacts is not None:
            account.contacts = [Contact(**c) for c in contacts]
        overridden = []
        if was is not AccountStatus.ACTIVE and account.status is AccountStatus.ACTIVE:
            # The account as it will be, names and addresses changed by this patch included.
            overridden = screening.gate(
                uow.session,
                actor,
                f"reactivating account {reference}",
                [account.name, account.billing_name],
                [c.email for c in account.contacts] + [account.billing_email],
                uow.session.scalars(
                    sa.select(Domain.name).where(Domain.account_id == account.id)
                ).all(),
                override_reason,
            )
            _audit_override(uow, actor, account, overridden, override_reason)
        uow.audit(
            actor.label,
            "account.update",
            "account",
            account.id,
            {"fields": sorted(patch.model_fields_set)},
        )
        uow.commit()
        return account


def delete_account(uow: UnitOfWork, actor: Actor, reference: str) -> None:
    """Only an account with nothing attached: history (cases, servers) is never deleted."""
    actor.require(Permission.INVENTORY_EDIT)
    with uow:
        account = account_by_reference(uow.session, reference)
        from abusedesk.cases.models import Case  # the one place inventory asks about cases

        has_cases = uow.session.scalar(
            sa.select(Case.id).where(Case.account_id == account.id).limit(1)
        )
        if account.servers or account.domains or has_cases:
            raise Conflict(
                f"account {reference} has servers, domains or cases: set its status to "
                "terminated instead of deleting it"
            )
        uow.session.delete(account)
        uow.audit(actor.label, "account.delete", "account", account.id, {"reference": reference})
        uow.commit()


# -- servers and assignments ----------------------------------------------------------------


def add_server(session: Session, data: ServerIn, now: datetime) -> Server:
    account = account_by_reference(session, data.account_reference)
    if session.scalar(sa.select(Server.id).where(Server.hostname == data.hostname)):
        raise Conflict(f"a server {data.hostname} exists already")
    server = Server(
        account=account,
        **_server_values(data, now),
        assignments=[],  # brand new: known empty, so those added below are loaded with it
    )
    session.add(server)
    session.flush()
    for assignment in data.all_assignments():
        add_assignment(session, server, assignment, now)
    return server


def create_server(uow: UnitOfWork, actor: Actor, data: ServerIn) -> Server:
    actor.require(Permission.INVENTORY_EDIT)
    with uow:
        server = add_server(uow.session, data, uow.clock.now())
        uow.audit(
            actor.label,
            "server.create",
            "server",
            server.id,
            {"hostname": server.hostname, "prefixes": data.prefixes},
        )
        uow.commit()
        return server


def get_server(uow: UnitOfWork, actor: Actor, hostname: str) -> Server:
    with uow.reading():
        server = uow.session.scalar(
            sa.select(Server)
            .where(Server.hostname == hostname.lower())
            .options(selectinload(Server.assignments), selectinload(Server.account))
        )
        _require_view(actor)
        if server is None or not _visible(actor, server.account_id):
            raise NotFound(f"no server {hostname}")
        return server


def update_server(uow: UnitOfWork, actor: Actor, hostname: str, patch: ServerPatch) -> Server:
    actor.require(Permission.INVENTORY_EDIT)
    with uow:
        # Loaded now because callers show the result after the session has ended.
        server = server_by_hostname(
            uow.session, hostname, selectinload(Server.account), selectinload(Server.assignments)
        )
        for key, value in patch.model_dump(exclude_unset=True).items():
            setattr(server, key, value)
        uow.audit(
            actor.label,
            "server.update",
            "server",
            server.id,
            {"fields": sorted(patch.model_fields_set)},
        )
        uow.commit()
        return server


def delete_server(uow: UnitOfWork, actor: Actor, hostname: str) -> None:
    """Ends the server's assignments rather than forgetting them: who had an address stays known."""
    actor.require(Permission.INVENTORY_EDIT)
    with uow:
        server = server_by_hostname(uow.session, hostname)
        from abusedesk.cases.models import Case

        if uow.session.scalar(sa.select(Case.id).where(Case.server_id == server.id).limit(1)):
            raise Conflict(f"server {hostname} has cases: set its status instead of deleting it")
        now = uow.clock.now()
        if any(a.valid_from < now for a in server.assignments):
            raise Conflict(
                f"server {hostname} has held addresses; end its assignments and mark it "
                "terminated, so reports about those addresses still find it"
            )
        for assignment in server.assignments:
            uow.session.delete(assignment)
        uow.session.delete(server)
        uow.audit(actor.label, "server.delete", "server", server.id, {"hostname": hostname})
        uow.commit()


def add_assignment(
    session: Session, server: Server, data: AssignmentIn, now: datetime
) -> IPAssignment:
    values = _assignment_values(data.prefix, data.valid_from, data.valid_until, now)
    # Two holders of the same prefix at the same instant would make "who had this address then"
    # ambiguous; intervals are half-open, so one may end exactly when the next begins.
    overlapping = [
        sa.or_(IPAssignment.valid_until.is_(None), IPAssignment.valid_until > values["valid_from"])
    ]
    if values["valid_until"] is not None:
        overlapping.append(IPAssignment.valid_from < values["valid_until"])
    clash = session.execute(
        sa.select(IPAssignment, Server.hostname)
        .join(Server, Server.id == IPAssignment.server_id)
        .where(IPAssignment.prefix == values["prefix"], *overlapping)
    ).first()
    if clash is not None:
        raise Conflict(
            f"{values['prefix']} is assigned to {clash[1]} already: end that assignment first"
        )
    assignment = IPAssignment(server=server, **values)
    session.add(assignment)
    session.flush()
    return assignment


def assign_prefix(uow: UnitOfWork, actor: Actor, hostname: str, data: AssignmentIn) -> IPAssignment:
    actor.require(Permission.INVENTORY_EDIT)
    with uow:
        server = server_by_hostname(uow.session, hostname)
        assignment = add_assignment(uow.session, server, data, uow.clock.now())
        uow.audit(actor.label, "prefix.assign", "server", server.id, {"prefix": assignment.prefix})
        uow.commit()
        return assignment


def end_assignment(
    uow: UnitOfWork, actor: Actor, prefix: str, at: datetime | None = None
) -> IPAssignment:
    """The prefix is no longer the server's from `at` (default now); the history stays."""
    actor.require(Permission.INVENTORY_EDIT)
    with uow:
        now = uow.clock.now()
        at = at or now
        assignment = uow.session.scalar(
            sa.select(IPAssignment).where(
                IPAssignment.prefix == prefix, IPAssignment.valid_until.is_(None)
            )
        )
        if assignment is None:
            raise NotFound(f"no current assignment of {prefix}")
        if at < assignment.valid_from:
            raise ValidationError("an assignment cannot end before it began")
        assignment.valid_until = at
        assignment.updated_at = now
        uow.audit(
            actor.label,
            "prefix.end",
            "server",
            assignment.server_id,
            {"prefix": prefix, "until": at.isoformat()},
        )
        uow.commit()
        return assignment


# -- domains --------------------------------------------------------------------------------


def add_domain(session: Session, data: DomainIn, now: datetime) -> Domain:
    account = account_by_reference(session, data.account_reference)
    if session.scalar(sa.select(Domain.id).where(Domain.name == data.name)):
        raise Conflict(f"the domain {data.name} is registered already")
    server = None
    if data.server_hostname:
        server = server_by_hostname(session, data.server_hostname)
        if server.account_id != account.id:
            raise ValidationError(
                f"{data.server_hostname} is not a server of {data.account_reference}"
            )
    domain = Domain(account=account, server=server, name=data.name, created_at=now)
    session.add(domain)
    session.flush()
    return domain


def create_domain(uow: UnitOfWork, actor: Actor, data: DomainIn) -> Domain:
    actor.require(Permission.INVENTORY_EDIT)
    with uow:
        domain = add_domain(uow.session, data, uow.clock.now())
        uow.audit(actor.label, "domain.create", "domain", domain.id, {"name": domain.name})
        uow.commit()
        return domain


def delete_domain(uow: UnitOfWork, actor: Actor, name: str) -> None:
    actor.require(Permission.INVENTORY_EDIT)
    with uow:
        domain = uow.session.scalar(sa.select(Domain).where(Domain.name == name.lower()))
        if domain is None:
            raise NotFound(f"no domain {name}")
        uow.session.delete(domain)
        uow.audit(actor.label, "domain.delete", "domain", domain.id, {"name": name})
        uow.commit()


# -- listings and references ----------------------------------------------------------------


def _listing_scope(session: Session, actor: Actor, account_reference: str | None) -> int | None:
    """The account a listing is limited to: a customer's own, always; staff choose or see all."""
    if not actor.is_staff:
        return actor.account_id
    actor.require(Permission.INVENTORY_VIEW)
    if account_reference is None:
        return None
    return account_by_reference(session, account_reference).id


def list_servers(
    uow: UnitOfWork,
    actor: Actor,
    account_reference: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Server]:
    options = (selectinload(Server.account), selectinload(Server.assignments))
    return _listing(uow, actor, Server, options, account_reference, limit, offset)


def list_domains(
    uow: UnitOfWork,
    actor: Actor,
    account_reference: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Domain]:
    options = (selectinload(Domain.account), selectinload(Domain.server))
    return _listing(uow, actor, Domain, options, account_reference, limit, offset)


def _listing(
    uow: UnitOfWork,
    actor: Actor,
    model: type[T],
    options: tuple[ORMOption, ...],
    account_reference: str | None,
    limit: int,
    offset: int,
) -> list[T]:
    with uow.reading():
        query = (
            sa.select(model)
            .options(*options)
            .order_by(model.id)  # type: ignore[attr-defined]
            .limit(min(limit, 1000))
            .offset(offset)
        )
        account_id = _listing_scope(uow.session, actor, account_reference)
        if account_id is not None:
            query = query.where(model.account_id == account_id)  # type: ignore[attr-defined]
        return list(uow.session.execute(query).scalars())


@dataclass(frozen=True, slots=True)
class References:
    account_id: int | None
    server_id: int | None


@dataclass(frozen=True, slots=True)
class Owner:
    account_id: int
    server_id: int | None


# Services that take row ids get them from here, given the names people use (customer number,
# host name). A customer may name only its own account's; another's reads as absent, with the
# same message as one that does not exist, so that probing tells nothing.


def resolve_references(
    uow: UnitOfWork, actor: Actor, account_reference: str | None, server_hostname: str | None
) -> References:
    """Either name may be absent (a filter that is not set)."""
    if account_reference is None and server_hostname is None:
        return References(None, None)
    _require_view(actor)
    with uow.reading():
        return References(
            None
            if account_reference is None
            else _account_id(uow.session, actor, account_reference),
            None if server_hostname is None else _server_id(uow.session, actor, server_hostname),
        )


def resolve_owner(
    uow: UnitOfWork, actor: Actor, account_reference: str, server_hostname: str | None
) -> Owner:
    """The account, and optionally the server, a new case is about."""
    _require_view(actor)
    with uow.reading():
        return Owner(
            _account_id(uow.session, actor, account_reference),
            None if server_hostname is None else _server_id(uow.session, actor, server_hostname),
        )


def _require_view(actor: Actor) -> None:
    if actor.is_staff:
        actor.require(Permission.INVENTORY_VIEW)


def _account_id(session: Session, actor: Actor, reference: str) -> int:
    account_id = session.scalar(sa.select(Account.id).where(Account.reference == reference))
    if account_id is None or not _visible(actor, account_id):
        raise NotFound(f"no account {reference}")
    return account_id


def _server_id(session: Session, actor: Actor, hostname: str) -> int:
    row = session.execute(
        sa.select(Server.id, Server.account_id).where(Server.hostname == hostname.lower())
    ).one_or_none()
    if row is None or not _visible(actor, row.account_id):
        raise NotFound(f"no server {hostname}")
    return int(row.id)


def _visible(actor: Actor, account_id: int) -> bool:
    return actor.is_staff or actor.account_id == account_id


# -- in bulk, for the importer --------------------------------------------------------------
#
# The importer checks a whole file against the database at once (existing references, host
# names, prefixes and domains loaded into memory), then writes with these: a few multi-row
# statements instead of a query and a flush per row. They check nothing themselves; the
# database's unique constraints stay the backstop. The *_values helpers are shared with the
# add_* functions above, so both paths write the same columns.


def _account_values(data: AccountIn, now: datetime) -> dict[str, Any]:
    return {**data.model_dump(exclude={"contacts"}), "created_at": now}


def _server_values(data: ServerIn, now: datetime) -> dict[str, Any]:
    return {
        "hostname": data.hostname,
        "plan": data.plan,
        "kind": data.kind,
        "status": data.status,
        "created_at": now,
    }


def _assignment_values(
    prefix: str, valid_from: datetime | None, valid_until: datetime | None, now: datetime
) -> dict[str, Any]:
    # The schemas have normalised the prefix already; parsing it again would cost more than
    # the insert when an import brings 100 000.
    return {
        "prefix": prefix,
        "family": 6 if ":" in prefix else 4,
        "valid_from": valid_from or now,
        "valid_until": valid_until,
        "updated_at": now,
    }


def bulk_add_accounts(
    session: Session, items: Sequence[AccountIn], now: datetime
) -> dict[str, int]:
    """Insert new accounts with their contacts; returns their ids by reference."""
    if not items:
        return {}
    # Core statements on the tables: the ORM's bulk path costs several times more per row.
    rows = session.execute(
        sa.insert(Account.__table__).returning(Account.reference, Account.id),
        [_account_values(item, now) for item in items],
    )
    ids = {reference: id_ for reference, id_ in rows}
    contacts = [
        {"account_id": ids[item.reference], **contact.model_dump()}
        for item in items
        for contact in item.contacts
    ]
    if contacts:
        session.execute(sa.insert(Contact.__table__), contacts)
    return ids


def bulk_replace_contacts(
    session: Session, account_id: int, kinds: Iterable[ContactKind], contacts: Sequence[ContactIn]
) -> None:
    """The account's contacts of these kinds become `contacts`; other kinds stay."""
    session.execute(
        sa.delete(Contact).where(Contact.account_id == account_id, Contact.kind.in_(list(kinds)))
    )
    if contacts:
        session.execute(
            sa.insert(Contact.__table__),
            [{"account_id": account_id, **c.model_dump()} for c in contacts],
        )


def bulk_add_servers(
    session: Session, items: Sequence[ServerIn], account_ids: Mapping[str, int], now: datetime
) -> dict[str, int]:
    """Insert new servers and their assignments; returns their ids by host name."""
    if not items:
        return {}
    rows = session.execute(
        sa.insert(Server.__table__).returning(Server.hostname, Server.id),
        [
            {"account_id": account_ids[item.account_reference], **_server_values(item, now)}
            for item in items
        ],
    )
    ids = {hostname: id_ for hostname, id_ in rows}
    assignments = [
        {"server_id": ids[item.hostname], **_assignment_values(prefix, None, None, now)}
        for item in items
        for prefix in item.prefixes
    ] + [
        {
            "server_id": ids[item.hostname],
            **_assignment_values(a.prefix, a.valid_from, a.valid_until, now),
        }
        for item in items
        for a in item.assignments
    ]
    if assignments:
        session.execute(sa.insert(IPAssignment.__table__), assignments)
    return ids


def bulk_add_assignments(
    session: Session, items: Sequence[tuple[int, AssignmentIn]], now: datetime
) -> None:
    """Insert assignments, each given with its server's id."""
    if items:
        session.execute(
            sa.insert(IPAssignment.__table__),
            [
                {
                    "server_id": server_id,
                    **_assignment_values(a.prefix, a.valid_from, a.valid_until, now),
                }
                for server_id, a in items
            ],
        )


def bulk_add_domains(
    session: Session,
    items: Sequence[DomainIn],
    account_ids: Mapping[str, int],
    server_ids: Mapping[str, int],
    now: datetime,
) -> None:
    if items:
        session.execute(
            sa.insert(Domain.__table__),
            [
                {
                    "account_id": account_ids[item.account_reference],
                    "server_id": server_ids[item.server_hostname] if item.server_hostname else None,
                    "name": item.name,
                    "created_at": now,
                }
                for item in items
            ],
        )


def bulk_update(
    session: Session, model: type[Account | Server | Domain], changes: Sequence[dict[str, Any]]
) -> None:
    """Update rows by primary key: each change is {"id": …, column: new value, …}."""
    by_columns: dict[frozenset[str], list[dict[str, Any]]] = {}
    for change in changes:
        by_columns.setdefault(frozenset(change), []).append(change)
    # One executemany per set of columns: rows that change the same columns share a statement.
    for group in by_columns.values():
        session.execute(sa.update(model), group)
