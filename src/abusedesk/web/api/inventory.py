"""The inventory over the API: accounts, servers, IP assignments and domains.

Accounts are named by their reference (the customer number), servers by host name, domains by
name. Staff read with `inventory.view` and change with `inventory.edit`; a customer reads its own
account, servers and domains and changes nothing here.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated

from fastapi import APIRouter, Query

from abusedesk.inventory import service as inventory
from abusedesk.inventory.schemas import (
    AccountIn,
    AccountPatch,
    AssignmentIn,
    DomainIn,
    ServerIn,
    ServerPatch,
)
from abusedesk.web.api.deps import ActorDep, DeskDep
from abusedesk.web.api.schemas import (
    AccountDetailOut,
    AccountOut,
    AssignmentEndIn,
    AssignmentOut,
    DomainOut,
    ServerOut,
)

router = APIRouter(tags=["inventory"])

Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0)]
AccountFilter = Annotated[
    str | None, Query(description="an account's reference (staff; a customer sees its own)")
]


# -- accounts -------------------------------------------------------------------------------


@router.get("/accounts")
def list_accounts(
    desk: DeskDep, actor: ActorDep, limit: Limit = 100, offset: Offset = 0
) -> list[AccountOut]:
    found = inventory.list_accounts(desk.uow(), actor, limit=limit, offset=offset)
    return [AccountOut.of(account) for account in found]


@router.post("/accounts", status_code=HTTPStatus.CREATED)
def create_account(body: AccountIn, desk: DeskDep, actor: ActorDep) -> AccountOut:
    return AccountOut.of(inventory.create_account(desk.uow(), actor, body))


@router.get("/accounts/{reference}")
def get_account(reference: str, desk: DeskDep, actor: ActorDep) -> AccountDetailOut:
    account = inventory.get_account(desk.uow(), actor, reference)
    return AccountDetailOut.of(account, staff=actor.is_staff)


@router.patch("/accounts/{reference}")
def update_account(
    reference: str, body: AccountPatch, desk: DeskDep, actor: ActorDep
) -> AccountOut:
    """Change the fields given; `contacts`, when given, replaces the whole list."""
    return AccountOut.of(inventory.update_account(desk.uow(), actor, reference, body))


@router.delete("/accounts/{reference}", status_code=HTTPStatus.NO_CONTENT)
def delete_account(reference: str, desk: DeskDep, actor: ActorDep) -> None:
    """Only an account with no servers, domains or cases; otherwise set its status."""
    inventory.delete_account(desk.uow(), actor, reference)


# -- servers and assignments ----------------------------------------------------------------


@router.get("/servers")
def list_servers(
    desk: DeskDep,
    actor: ActorDep,
    account: AccountFilter = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[ServerOut]:
    found = inventory.list_servers(desk.uow(), actor, account, limit=limit, offset=offset)
    return [ServerOut.of(server) for server in found]


@router.post("/servers", status_code=HTTPStatus.CREATED)
def create_server(body: ServerIn, desk: DeskDep, actor: ActorDep) -> ServerOut:
    return ServerOut.of(inventory.create_server(desk.uow(), actor, body))


@router.get("/servers/{hostname}")
def get_server(hostname: str, desk: DeskDep, actor: ActorDep) -> ServerOut:
    return ServerOut.of(inventory.get_server(desk.uow(), actor, hostname))


@router.patch("/servers/{hostname}")
def update_server(hostname: str, body: ServerPatch, desk: DeskDep, actor: ActorDep) -> ServerOut:
    return ServerOut.of(inventory.update_server(desk.uow(), actor, hostname, body))


@router.delete("/servers/{hostname}", status_code=HTTPStatus.NO_CONTENT)
def delete_server(hostname: str, desk: DeskDep, actor: ActorDep) -> None:
    """Only a server that never held an address and has no cases; otherwise end its
    assignments and set its status, so that reports about its addresses still find it."""
    inventory.delete_server(desk.uow(), actor, hostname)


@router.post("/servers/{hostname}/assignments", status_code=HTTPStatus.CREATED)
def assign_prefix(
    hostname: str, body: AssignmentIn, desk: DeskDep, actor: ActorDep
) -> AssignmentOut:
    """Route a prefix to the server."""
    return AssignmentOut.of(inventory.assign_prefix(desk.uow(), actor, hostname, body))


@router.post("/assignments/end")
def end_assignment(body: AssignmentEndIn, desk: DeskDep, actor: ActorDep) -> AssignmentOut:
    """The prefix's current assignment ends (now, or at `at`); the history is kept."""
    return AssignmentOut.of(inventory.end_assignment(desk.uow(), actor, body.prefix, body.at))


# -- domains --------------------------------------------------------------------------------


@router.get("/domains")
def list_domains(
    desk: DeskDep,
    actor: ActorDep,
    account: AccountFilter = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[DomainOut]:
    found = inventory.list_domains(desk.uow(), actor, account, limit=limit, offset=offset)
    return [DomainOut.of(domain) for domain in found]


@router.post("/domains", status_code=HTTPStatus.CREATED)
def create_domain(body: DomainIn, desk: DeskDep, actor: ActorDep) -> DomainOut:
    return DomainOut.of(inventory.create_domain(desk.uow(), actor, body))


@router.delete("/domains/{name}", status_code=HTTPStatus.NO_CONTENT)
def delete_domain(name: str, desk: DeskDep, actor: ActorDep) -> None:
    inventory.delete_domain(desk.uow(), actor, name)
