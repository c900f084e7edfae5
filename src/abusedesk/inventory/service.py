"""Changing the inventory: accounts, servers, IP assignments and domains."""

from __future__ import annotations

import ipaddress
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from abusedesk.accounts.permissions import Actor, Permission
from abusedesk.errors import Conflict, NotFound, ValidationError
from abusedesk.inventory.models import Account, Contact, Domain, IPAssignment, Server
from abusedesk.inventory.schemas import (
    AccountIn,
    AccountPatch,
    AssignmentIn,
    DomainIn,
    ServerIn,
    ServerPatch,
)
from abusedesk.store.uow import UnitOfWork


def account_by_reference(session: Session, reference: str) -> Account:
    account = session.scalar(sa.select(Account).where(Account.reference == reference))
    if account is None:
        raise NotFound(f"no account {reference}")
    return account


def server_by_hostname(session: Session, hostname: str) -> Server:
    server = session.scalar(sa.select(Server).where(Server.hostname == hostname.lower()))
    if server is None:
        raise NotFound(f"no server {hostname}")
    return server


# -- accounts -------------------------------------------------------------------------------


def add_account(session: Session, data: AccountIn, now: datetime) -> Account:
    """Within the caller's transaction (the importer adds thousands in one)."""
    if session.scalar(sa.select(Account.id).where(Account.reference == data.reference)):
        raise Conflict(f"an account {data.reference} exists already")
    account = Account(
        reference=data.reference,
        name=data.name,
        status=data.status,
        billing_name=data.billing_name,
        billing_address=data.billing_address,
        billing_email=data.billing_email,
        billing_confirmed_at=data.billing_confirmed_at,
        aup_version=data.aup_version,
        aup_accepted_at=data.aup_accepted_at,
        notes=data.notes,
        created_at=now,
        contacts=[Contact(**c.model_dump()) for c in data.contacts],
    )
    session.add(account)
    session.flush()
    return account


def create_account(uow: UnitOfWork, actor: Actor, data: AccountIn) -> Account:
    actor.require(Permission.INVENTORY_EDIT)
    with uow:
        account = add_account(uow.session, data, uow.clock.now())
        uow.audit(
            actor.label, "account.create", "account", account.id, {"reference": data.reference}
        )
        uow.commit()
        return account


def get_account(uow: UnitOfWork, actor: Actor, reference: str) -> Account:
    with uow:
        account = uow.session.scalar(
            sa.select(Account)
            .where(Account.reference == reference)
            .options(
                selectinload(Account.contacts),
                selectinload(Account.servers).selectinload(Server.assignments),
                selectinload(Account.domains),
            )
        )
        if account is None:
            raise NotFound(f"no account {reference}")
        if actor.is_staff:
            actor.require(Permission.INVENTORY_VIEW)
        actor.require_account(account.id, "account")
        return account


def list_accounts(
    uow: UnitOfWork, actor: Actor, limit: int = 100, offset: int = 0
) -> list[Account]:
    actor.require(Permission.INVENTORY_VIEW)
    with uow:
        return list(
            uow.session.execute(
                sa.select(Account)
                .options(selectinload(Account.contacts))
                .order_by(Account.id)
                .limit(min(limit, 1000))
                .offset(offset)
            ).scalars()
        )


def update_account(uow: UnitOfWork, actor: Actor, reference: str, patch: AccountPatch) -> Account:
    actor.require(Permission.INVENTORY_EDIT)
    with uow:
        account = account_by_reference(uow.session, reference)
        changes = patch.model_dump(exclude_unset=True)
        contacts = changes.pop("contacts", None)
        for key, value in changes.items():
            setattr(account, key, value)
        if contacts is not None:
            account.contacts = [Contact(**c) for c in contacts]
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
        hostname=data.hostname,
        plan=data.plan,
        kind=data.kind,
        status=data.status,
        created_at=now,
    )
    session.add(server)
    session.flush()
    for prefix in data.prefixes:
        add_assignment(session, server, AssignmentIn(prefix=prefix), now)
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
    with uow:
        server = uow.session.scalar(
            sa.select(Server)
            .where(Server.hostname == hostname.lower())
            .options(selectinload(Server.assignments), selectinload(Server.account))
        )
        if server is None:
            raise NotFound(f"no server {hostname}")
        if actor.is_staff:
            actor.require(Permission.INVENTORY_VIEW)
        actor.require_account(server.account_id, "server")
        return server


def update_server(uow: UnitOfWork, actor: Actor, hostname: str, patch: ServerPatch) -> Server:
    actor.require(Permission.INVENTORY_EDIT)
    with uow:
        server = server_by_hostname(uow.session, hostname)
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
    network = ipaddress.ip_network(data.prefix)
    valid_from = data.valid_from or now
    clash = session.execute(
        sa.select(IPAssignment, Server.hostname)
        .join(Server, Server.id == IPAssignment.server_id)
        .where(
            IPAssignment.prefix == network.with_prefixlen,
            sa.or_(IPAssignment.valid_until.is_(None), IPAssignment.valid_until > valid_from),
        )
    ).first()
    if clash is not None:
        raise Conflict(f"{network} is assigned to {clash[1]} already: end that assignment first")
    assignment = IPAssignment(
        server=server,
        prefix=network.with_prefixlen,
        family=network.version,
        valid_from=valid_from,
        valid_until=None,
        updated_at=now,
    )
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
