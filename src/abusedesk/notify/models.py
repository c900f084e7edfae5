from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from abusedesk.notify.choices import MessageTemplate, OutboxState
from abusedesk.store.base import Base, enum_column


class OutboxMessage(Base):
    """A message to send, written in the same transaction as the change it tells of."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int | None] = mapped_column(sa.ForeignKey("cases.id"), index=True)
    template: Mapped[MessageTemplate] = mapped_column(enum_column(MessageTemplate))
    # Who it is for (Audience values) and their addresses: one message to all of them, since
    # what the abuse, technical and billing contacts are told about a case is the same.
    audiences: Mapped[list[Any]]
    recipients: Mapped[list[Any]]
    context: Mapped[dict[str, Any]]
    state: Mapped[OutboxState] = mapped_column(
        enum_column(OutboxState), default=OutboxState.PENDING
    )
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]

    __table_args__ = (sa.Index("ix_outbox_state", "state", "next_attempt_at"),)
