from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from abusedesk.cases.choices import CaseState, Resolution, TimelineKind
from abusedesk.inventory.models import Account, Server
from abusedesk.policy import Category, Severity
from abusedesk.store.base import Base, enum_column

case_reports = sa.Table(
    "case_reports",
    Base.metadata,
    sa.Column("case_id", sa.ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("report_id", sa.ForeignKey("reports.id"), primary_key=True, index=True),
)


class Case(Base):
    """A ticket in a customer's account, moved only by the case service."""

    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(primary_key=True)
    # account_id is served by ix_cases_match; every index here is paid on each sweep's UPDATE.
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("accounts.id"))
    server_id: Mapped[int | None] = mapped_column(sa.ForeignKey("servers.id"), index=True)
    resource: Mapped[str] = mapped_column(sa.String(500), default="")
    category: Mapped[Category] = mapped_column(enum_column(Category))
    severity: Mapped[Severity] = mapped_column(enum_column(Severity))
    state: Mapped[CaseState] = mapped_column(enum_column(CaseState))
    resolution: Mapped[Resolution | None] = mapped_column(enum_column(Resolution))
    is_repeat: Mapped[bool] = mapped_column(default=False)
    summary: Mapped[str] = mapped_column(sa.Text, default="")
    plan: Mapped[str] = mapped_column(sa.Text, default="")
    customer_contacted: Mapped[bool] = mapped_column(default=False)
    opened_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    window_start: Mapped[datetime]
    deadline_at: Mapped[datetime | None]
    reminders_sent: Mapped[int] = mapped_column(default=0)
    next_action_at: Mapped[datetime | None] = mapped_column(index=True)

    account: Mapped[Account] = relationship()
    server: Mapped[Server | None] = relationship()
    timeline: Mapped[list[CaseEvent]] = relationship(
        back_populates="case", order_by="CaseEvent.id", cascade="all, delete-orphan"
    )

    __table_args__ = (sa.Index("ix_cases_match", "account_id", "category", "state"),)

    @property
    def ticket(self) -> str:
        return ticket_tag(self.id)


def ticket_tag(case_id: int) -> str:
    return f"AD-{case_id:06d}"


class CaseEvent(Base):
    """One line of a case's timeline."""

    __tablename__ = "case_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(sa.ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime]
    kind: Mapped[TimelineKind] = mapped_column(enum_column(TimelineKind))
    actor: Mapped[str] = mapped_column(sa.String(200))
    from_state: Mapped[CaseState | None] = mapped_column(enum_column(CaseState))
    to_state: Mapped[CaseState | None] = mapped_column(enum_column(CaseState))
    note: Mapped[str] = mapped_column(sa.Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)

    case: Mapped[Case] = relationship(back_populates="timeline")
