"""Managed DNS over the API: zones, their record sets, zone files in and out, the history.

Zones are named by their name (`example-shop.net`), record sets by owner relative to the zone
(`@` for the zone itself) and type. Every staff role reads; NOC and admins change any zone; a
customer reads its own account's zones and changes them as the account's owner or a manager.
Another account's zone answers 404. A refused change answers 422 with `problems`, each
`field: message` (`ttl: the TTL is from 60 to 86400 seconds`, `records[1]: not a valid A record…`).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated

from fastapi import APIRouter, Body, Query
from fastapi.responses import PlainTextResponse

from abusedesk.dns import service as dns_service
from abusedesk.dns.schemas import (
    ImportOut,
    NameserversIn,
    RRSetIn,
    RRSetOut,
    ZoneChangeOut,
    ZoneDetailOut,
    ZoneIn,
    ZoneOut,
)
from abusedesk.errors import NotFound
from abusedesk.web.api.deps import ActorDep, DeskDep

router = APIRouter(tags=["dns"])

Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0)]
ZONE_FILE_TYPE = "text/dns"  # RFC 4027


@router.get("/zones")
def list_zones(
    desk: DeskDep,
    actor: ActorDep,
    account: Annotated[str | None, Query(description="an account's reference (staff)")] = None,
    search: Annotated[str, Query(max_length=253)] = "",
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[ZoneOut]:
    found = dns_service.list_zones(desk.uow(), actor, account, search, limit, offset)
    return [ZoneOut.of(zone) for zone in found]


@router.post("/zones", status_code=HTTPStatus.CREATED)
def create_zone(body: ZoneIn, desk: DeskDep, actor: ActorDep) -> ZoneDetailOut:
    """A new zone, served with the provider's SOA and name servers. A customer's goes to its
    own account; staff name the account."""
    account: str | int | None = body.account
    if account is None:
        if actor.account_id is None:
            raise NotFound("name the zone's account")
        account = actor.account_id
    zone = dns_service.create_zone(desk.uow(), actor, account, body.name)
    return ZoneDetailOut.of(zone)


@router.get("/zones/{name}")
def get_zone(name: str, desk: DeskDep, actor: ActorDep) -> ZoneDetailOut:
    return ZoneDetailOut.of(dns_service.get_zone(desk.uow(), actor, name))


@router.delete("/zones/{name}", status_code=HTTPStatus.NO_CONTENT)
def delete_zone(
    name: str,
    desk: DeskDep,
    actor: ActorDep,
    reason: Annotated[str, Query(max_length=2000)] = "",
) -> None:
    dns_service.delete_zone(desk.uow(), actor, name, reason=reason)


@router.get("/zones/{name}/rrsets/{subname}/{rtype}")
def get_rrset(name: str, subname: str, rtype: str, desk: DeskDep, actor: ActorDep) -> RRSetOut:
    zone = dns_service.get_zone(desk.uow(), actor, name)
    owner = "" if subname == "@" else subname.lower().rstrip(".")
    kind = rtype.upper()
    for row in zone.rrsets:
        if (row.subname, row.type) == (owner, kind):
            return RRSetOut.of(row, zone.name)
    raise NotFound(f"no {kind} records at {subname} in {zone.name}")


@router.put("/zones/{name}/rrsets/{subname}/{rtype}")
def put_rrset(
    name: str, subname: str, rtype: str, body: RRSetIn, desk: DeskDep, actor: ActorDep
) -> RRSetOut | None:
    """Create or replace the set; an empty `records` deletes it (and answers null)."""
    row = dns_service.put_rrset(
        desk.uow(),
        actor,
        name,
        subname,
        rtype,
        body.ttl,
        body.records,
        desk.settings.dns,
        reason=body.reason,
    )
    if row is None:
        return None
    return RRSetOut.of(row, name.strip().rstrip(".").lower())


@router.delete("/zones/{name}/rrsets/{subname}/{rtype}", status_code=HTTPStatus.NO_CONTENT)
def delete_rrset(
    name: str,
    subname: str,
    rtype: str,
    desk: DeskDep,
    actor: ActorDep,
    reason: Annotated[str, Query(max_length=2000)] = "",
) -> None:
    dns_service.delete_rrset(desk.uow(), actor, name, subname, rtype, reason=reason)


@router.post("/zones/{name}/import")
def import_zone_file(
    name: str,
    text: Annotated[str, Body(media_type=ZONE_FILE_TYPE, description="a zone file")],
    desk: DeskDep,
    actor: ActorDep,
    replace: Annotated[bool, Query(description="delete the sets the file does not name")] = False,
    reason: Annotated[str, Query(max_length=2000)] = "",
) -> ImportOut:
    """Send the zone file as the body (`Content-Type: text/dns` or `text/plain`). All or
    nothing; the SOA and the zone's own NS in the file are ignored (see `notes`)."""
    result = dns_service.import_zone_file(
        desk.uow(), actor, name, text, desk.settings.dns, replace=replace, reason=reason
    )
    return ImportOut.of(result)


@router.get(
    "/zones/{name}/export",
    response_class=PlainTextResponse,
    responses={HTTPStatus.OK.value: {"content": {ZONE_FILE_TYPE: {}}}},
)
def export_zone_file(name: str, desk: DeskDep, actor: ActorDep) -> PlainTextResponse:
    text = dns_service.export_zone_file(desk.uow(), actor, name, desk.settings.dns)
    return PlainTextResponse(text, media_type=ZONE_FILE_TYPE)


@router.get("/zones/{name}/history")
def zone_history(
    name: str, desk: DeskDep, actor: ActorDep, limit: Limit = 100, offset: Offset = 0
) -> list[ZoneChangeOut]:
    changes = dns_service.zone_history(desk.uow(), actor, name, limit, offset)
    return [ZoneChangeOut.of(change) for change in changes]


@router.put("/zones/{name}/nameservers")
def set_nameservers(name: str, body: NameserversIn, desk: DeskDep, actor: ActorDep) -> ZoneOut:
    """Staff (NOC, admin): the zone's own NS from now on; an empty list, the provider's."""
    dns_service.set_nameservers(desk.uow(), actor, name, body.nameservers, reason=body.reason)
    return ZoneOut.of(dns_service.get_zone(desk.uow(), actor, name))
