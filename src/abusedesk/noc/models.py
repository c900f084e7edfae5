from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from abusedesk.noc.choices import AlertKind, AlertState
from abusedesk.store.base import Base, enum_column


class NocAlert(Base):
    """One attack on a customer, for the NOC. While it keeps firing, the same alert is
    updated (``last_seen_at``, ``times``, the newest evidence) instead of a new one each time."""

    __tablename__ = "noc_alerts"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[AlertKind] = mapped_column(enum_column(AlertKind))
    state: Mapped[AlertState] = mapped_column(enum_column(AlertState), default=AlertState.OPEN)
    account_id: Mapped[int | None] = mapped_column(sa.ForeignKey("accounts.id"), index=True)
    server_id: Mapped[int | None] = mapped_column(sa.ForeignKey("servers.id"))
    subject: Mapped[str] = mapped_column(sa.String(255))  # what is attacked: a host, the zones
    summary: Mapped[str] = mapped_column(sa.Text)
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    first_seen_at: Mapped[datetime] = mapped_column(index=True)
    last_seen_at: Mapped[datetime]
    times: Mapped[int] = mapped_column(default=1)
    acknowledged_by: Mapped[str | None] = mapped_column(sa.String(320))
    acknowledged_at: Mapped[datetime | None]

    __table_args__ = (sa.Index("ix_noc_alerts_state", "state", "last_seen_at"),)
