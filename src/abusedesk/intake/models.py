from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, deferred, mapped_column

from abusedesk.intake.choices import ReportSource, ReportStatus
from abusedesk.store.base import Base, enum_column


class Report(Base):
    """A complaint or finding exactly as received, stored before anything reads it."""

    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime] = mapped_column(index=True)
    source: Mapped[ReportSource] = mapped_column(enum_column(ReportSource))
    raw: Mapped[bytes] = deferred(mapped_column(sa.LargeBinary))
    size: Mapped[int]
    sha256: Mapped[str] = mapped_column(sa.String(64), unique=True)
    message_id: Mapped[str | None] = mapped_column(sa.String(998), index=True)
    status: Mapped[ReportStatus] = mapped_column(
        enum_column(ReportStatus), default=ReportStatus.RECEIVED, index=True
    )
    format: Mapped[str | None] = mapped_column(sa.String(32))
    parsed: Mapped[dict[str, Any]] = mapped_column(default=dict)
    complainant_name: Mapped[str] = mapped_column(sa.String(200), default="")
    complainant_email: Mapped[str] = mapped_column(sa.String(254), default="")
    status_token: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    error: Mapped[str | None] = mapped_column(sa.Text)
    # Who sent a web form (the client's IP address): the form's rate limit counts by it, in the
    # database, so that it holds across every web process.
    client_address: Mapped[str | None] = mapped_column(sa.String(45))

    __table_args__ = (sa.Index("ix_reports_client", "client_address", "received_at"),)
