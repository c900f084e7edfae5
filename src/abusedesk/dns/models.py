"""Managed DNS in the database: zones, their record sets, each zone's change history, the
query load per zone in five-minute buckets, and a token the `dns` role polls to know when to
publish again."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from abusedesk.dns.choices import NoticeState, ZoneChangeKind
from abusedesk.inventory.models import Account
from abusedesk.store.base import Base, enum_column


class Zone(Base):
    """A customer's zone. The SOA and the apex NS are not stored as records: the snapshot makes
    them from the settings, the serial here and `nameservers` (a staff override; empty: the
    provider's name servers)."""

    __tablename__ = "dns_zones"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(253), unique=True)  # "example.com", lower-case
    serial: Mapped[int] = mapped_column(sa.BigInteger)  # 32-bit unsigned: past an INTEGER
    nameservers: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    account: Mapped[Account] = relationship()
    rrsets: Mapped[list[RRSet]] = relationship(
        back_populates="zone",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="[RRSet.subname, RRSet.type]",
    )


class RRSet(Base):
    """The records of one name and type in a zone, each as canonical text (names absolute)."""

    __tablename__ = "dns_rrsets"

    id: Mapped[int] = mapped_column(primary_key=True)
    zone_id: Mapped[int] = mapped_column(sa.ForeignKey("dns_zones.id", ondelete="CASCADE"))
    subname: Mapped[str] = mapped_column(sa.String(255))  # "" for the apex
    type: Mapped[str] = mapped_column(sa.String(16))
    ttl: Mapped[int]
    records: Mapped[list[Any]]
    updated_at: Mapped[datetime]

    zone: Mapped[Zone] = relationship(back_populates="rrsets")

    __table_args__ = (
        sa.UniqueConstraint("zone_id", "subname", "type", name="uq_dns_rrsets_zone_id"),
    )


class ZoneChange(Base):
    """One line of a zone's history, visible to its customer: who (the audit actor's label),
    what, and the record set before and after (`{"ttl": …, "records": […]}` or null)."""

    __tablename__ = "dns_zone_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    zone_id: Mapped[int] = mapped_column(
        sa.ForeignKey("dns_zones.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(sa.String(320))
    staff: Mapped[bool] = mapped_column(default=False)  # the provider changed it, not the customer
    kind: Mapped[ZoneChangeKind] = mapped_column(enum_column(ZoneChangeKind))
    subname: Mapped[str | None] = mapped_column(sa.String(255))
    type: Mapped[str | None] = mapped_column(sa.String(16))
    summary: Mapped[str] = mapped_column(sa.Text, default="")
    serial: Mapped[int] = mapped_column(sa.BigInteger)  # the zone's serial after the change
    before: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)


class LoadSample(Base):
    """The queries a zone received in one five-minute bucket (R11), from the data plane's
    counters; `by_type` counts per query type ("A": 120, "TYPE65534": 3)."""

    __tablename__ = "dns_load_samples"

    id: Mapped[int] = mapped_column(primary_key=True)
    zone_id: Mapped[int] = mapped_column(sa.ForeignKey("dns_zones.id", ondelete="CASCADE"))
    bucket: Mapped[datetime] = mapped_column(index=True)  # the bucket's start
    queries: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    nxdomain: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    by_type: Mapped[dict[str, Any]] = mapped_column(default=dict)

    __table_args__ = (sa.UniqueConstraint("zone_id", "bucket", name="uq_dns_load_samples_zone_id"),)


class LoadNotice(Base):
    """An account told that its zones' load is a *potential* violation (R11): while it runs,
    no second notice goes out; still over `notice_grace` later, a dns_overuse case opens."""

    __tablename__ = "dns_load_notices"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("accounts.id"), index=True)
    state: Mapped[NoticeState] = mapped_column(enum_column(NoticeState))
    notified_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    peak_share: Mapped[float] = mapped_column(sa.Float, default=0.0)
    peak_qps: Mapped[float] = mapped_column(sa.Float, default=0.0)
    case_id: Mapped[int | None] = mapped_column(sa.ForeignKey("cases.id"))


class DnsState(Base):
    """A token that changes with every change of a zone or record set, so that the `dns` role
    knows, with one cheap read, when to build the zones and publish them again."""

    __tablename__ = "dns_state"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    zones_token: Mapped[str] = mapped_column(sa.String(32))


@event.listens_for(Session, "before_flush")
def _zones_changed(session: Session, _context: object, _instances: object) -> None:
    touched = session.new | session.dirty | session.deleted
    if not any(isinstance(obj, Zone | RRSet) for obj in touched):
        return
    with session.no_autoflush:
        state = session.get(DnsState, 1)
    if state is None:
        session.add(DnsState(id=1, zones_token=uuid.uuid4().hex))
    else:
        state.zones_token = uuid.uuid4().hex
