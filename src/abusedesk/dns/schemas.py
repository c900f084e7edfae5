"""What the DNS API accepts and returns. Input is only shaped here (types, sizes): the rules of
a zone are :mod:`abusedesk.dns.validate`'s, applied by the service, whose errors name the field
(``records[1]``) they belong to."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Self

from pydantic import BaseModel, Field

from abusedesk.dns.choices import ZoneChangeKind
from abusedesk.dns.models import RRSet, Zone, ZoneChange
from abusedesk.dns.service import ImportResult

# -- input ----------------------------------------------------------------------------------


class ZoneIn(BaseModel):
    name: str = Field(max_length=300, examples=["example-shop.net"])
    account: str | None = Field(
        default=None,
        max_length=64,
        description="the account's reference (staff); a customer's zone is its own account's",
    )


class RRSetIn(BaseModel):
    ttl: int | None = Field(default=None, description="seconds; empty: the provider's default")
    records: list[str] = Field(
        max_length=10_000,
        description='each record\'s data as in a zone file (`10 mail`, `"v=spf1 -all"`); '
        "names relative to the zone unless they end with a dot; an empty list deletes the set",
        examples=[["192.0.2.10", "192.0.2.11"]],
    )
    reason: str = Field(default="", max_length=2000, description="staff: told to the customer")


class NameserversIn(BaseModel):
    nameservers: list[str] = Field(
        max_length=100, description="host names; an empty list: the provider's name servers"
    )
    reason: str = Field(default="", max_length=2000)


# -- output ---------------------------------------------------------------------------------


class RRSetOut(BaseModel):
    subname: str = Field(description='"" for the zone itself (written "@" in paths)')
    name: str = Field(description="the owner name, absolute", examples=["www.example-shop.net."])
    type: str
    ttl: int
    records: list[str] = Field(description="canonical text, names absolute")

    @classmethod
    def of(cls, row: RRSet, zone: str) -> Self:
        name = f"{row.subname}.{zone}." if row.subname else f"{zone}."
        return cls(
            subname=row.subname, name=name, type=row.type, ttl=row.ttl, records=list(row.records)
        )


class ZoneOut(BaseModel):
    name: str
    account: str = Field(description="the account's reference")
    serial: int
    nameservers: list[str] = Field(
        description="the staff override of the apex NS; empty: the provider's name servers"
    )
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, zone: Zone) -> Self:
        return cls(
            name=zone.name,
            account=zone.account.reference,
            serial=zone.serial,
            nameservers=list(zone.nameservers),
            created_at=zone.created_at,
            updated_at=zone.updated_at,
        )


class ZoneDetailOut(ZoneOut):
    rrsets: list[RRSetOut]

    @classmethod
    def of(cls, zone: Zone) -> Self:
        base = ZoneOut.of(zone).model_dump()
        return cls(**base, rrsets=[RRSetOut.of(s, zone.name) for s in zone.rrsets])


class ZoneChangeOut(BaseModel):
    at: datetime
    actor: str
    staff: bool = Field(description="made by the provider's staff")
    kind: ZoneChangeKind
    subname: str | None
    type: str | None
    summary: str
    serial: int
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    @classmethod
    def of(cls, change: ZoneChange) -> Self:
        return cls(
            at=change.at,
            actor=change.actor,
            staff=change.staff,
            kind=change.kind,
            subname=change.subname,
            type=change.type,
            summary=change.summary,
            serial=change.serial,
            before=change.before,
            after=change.after,
        )


class ImportOut(BaseModel):
    zone: str
    serial: int
    created: int
    replaced: int
    deleted: int
    unchanged: int
    notes: list[str]

    @classmethod
    def of(cls, result: ImportResult) -> Self:
        return cls(
            zone=result.zone,
            serial=result.serial,
            created=result.created,
            replaced=result.replaced,
            deleted=result.deleted,
            unchanged=result.unchanged,
            notes=list(result.notes),
        )
