from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from abusedesk.inventory.choices import AccountStatus, ContactKind, ServerKind, ServerStatus
from abusedesk.store.base import Base, enum_column


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(sa.String(64), unique=True)  # the customer number
    name: Mapped[str] = mapped_column(sa.String(200))
    status: Mapped[AccountStatus] = mapped_column(
        enum_column(AccountStatus), default=AccountStatus.ACTIVE
    )
    billing_name: Mapped[str] = mapped_column(sa.String(200), default="")
    billing_address: Mapped[str] = mapped_column(sa.Text, default="")
    billing_email: Mapped[str] = mapped_column(sa.String(254), default="")
    billing_confirmed_at: Mapped[datetime | None]
    aup_version: Mapped[str | None] = mapped_column(sa.String(32))
    aup_accepted_at: Mapped[datetime | None]
    language: Mapped[str] = mapped_column(sa.String(16), default="en")  # of the mail it receives
    notes: Mapped[str] = mapped_column(sa.Text, default="")
    created_at: Mapped[datetime]

    contacts: Mapped[list[Contact]] = relationship(
        back_populates="account", cascade="all, delete-orphan", order_by="Contact.id"
    )
    servers: Mapped[list[Server]] = relationship(back_populates="account", order_by="Server.id")
    domains: Mapped[list[Domain]] = relationship(back_populates="account", order_by="Domain.id")

    def contact_emails(self, kind: ContactKind) -> list[str]:
        return [c.email for c in self.contacts if c.kind is kind]


class Contact(Base):
    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(
        sa.ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[ContactKind] = mapped_column(enum_column(ContactKind))
    name: Mapped[str] = mapped_column(sa.String(200), default="")
    email: Mapped[str] = mapped_column(sa.String(254))
    phone: Mapped[str] = mapped_column(sa.String(40), default="")

    account: Mapped[Account] = relationship(back_populates="contacts")


class Server(Base):
    """A server or service the provider runs for a customer."""

    __tablename__ = "servers"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("accounts.id"), index=True)
    hostname: Mapped[str] = mapped_column(sa.String(253), unique=True)
    plan: Mapped[str] = mapped_column(sa.String(64))
    kind: Mapped[ServerKind] = mapped_column(enum_column(ServerKind), default=ServerKind.DEDICATED)
    status: Mapped[ServerStatus] = mapped_column(
        enum_column(ServerStatus), default=ServerStatus.ACTIVE
    )
    created_at: Mapped[datetime]

    account: Mapped[Account] = relationship(back_populates="servers")
    assignments: Mapped[list[IPAssignment]] = relationship(
        back_populates="server", order_by="IPAssignment.id"
    )


class IPAssignment(Base):
    """An IPv4 or IPv6 prefix routed to a server for a time; kept after it ends, so that a report
    about a past address finds who had it then."""

    __tablename__ = "ip_assignments"

    id: Mapped[int] = mapped_column(primary_key=True)
    server_id: Mapped[int] = mapped_column(sa.ForeignKey("servers.id"), index=True)
    prefix: Mapped[str] = mapped_column(sa.String(43), index=True)
    family: Mapped[int] = mapped_column(sa.SmallInteger)
    valid_from: Mapped[datetime]
    valid_until: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(index=True)

    server: Mapped[Server] = relationship(back_populates="assignments")

    __table_args__ = (
        sa.CheckConstraint("family IN (4, 6)", name=sa.schema.conv("ck_ip_assignments_family")),
    )


class Domain(Base):
    __tablename__ = "domains"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("accounts.id"), index=True)
    server_id: Mapped[int | None] = mapped_column(sa.ForeignKey("servers.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(253), unique=True)
    created_at: Mapped[datetime]

    account: Mapped[Account] = relationship(back_populates="domains")
    server: Mapped[Server | None] = relationship()


class InventoryState(Base):
    """A token that changes with every change of IP assignments, so that each process's prefix
    index knows, with one cheap read, when to rebuild."""

    __tablename__ = "inventory_state"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    assignments_token: Mapped[str] = mapped_column(sa.String(32))


@event.listens_for(Session, "before_flush")
def _assignments_changed(session: Session, _context: object, _instances: object) -> None:
    touched = session.new | session.dirty | session.deleted
    if not any(isinstance(obj, IPAssignment) for obj in touched):
        return
    with session.no_autoflush:
        state = session.get(InventoryState, 1)
    if state is None:
        session.add(InventoryState(id=1, assignments_token=uuid.uuid4().hex))
    else:
        state.assignments_token = uuid.uuid4().hex
