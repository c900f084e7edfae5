from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from abusedesk.enforce.choices import ActionKind, ActionState
from abusedesk.store.base import Base, enum_column


class EnforcementAction(Base):
    """What the case engine decided to do to a server; drivers carry it out idempotently."""

    __tablename__ = "enforcement_actions"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(sa.ForeignKey("cases.id"), index=True)
    server_id: Mapped[int] = mapped_column(sa.ForeignKey("servers.id"), index=True)
    kind: Mapped[ActionKind] = mapped_column(enum_column(ActionKind))
    state: Mapped[ActionState] = mapped_column(
        enum_column(ActionState), default=ActionState.PENDING
    )
    driver: Mapped[str | None] = mapped_column(sa.String(32))
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    applied_at: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime | None]

    __table_args__ = (sa.Index("ix_enforcement_actions_state", "state", "next_attempt_at"),)
