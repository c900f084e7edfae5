from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from abusedesk.store.base import Base


class FlowExporter(Base):
    """A router or probe that sends flows to a collector: the `traffic` role writes what its
    in-memory registry knows every minute, so the console and the CLI see it from any process.
    One row per exporter address, format and observation domain (per collector host)."""

    __tablename__ = "flow_exporters"

    id: Mapped[int] = mapped_column(primary_key=True)
    collector: Mapped[str] = mapped_column(sa.String(255))  # the host that received it
    address: Mapped[str] = mapped_column(sa.String(64))
    format: Mapped[str] = mapped_column(sa.String(16))
    domain: Mapped[int] = mapped_column(sa.BigInteger)
    agent: Mapped[str | None] = mapped_column(sa.String(64))
    sampling_rate: Mapped[int] = mapped_column(default=0)  # 0: the exporter has not said
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    datagrams: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    records: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    decode_errors: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    sequence_gaps: Mapped[int] = mapped_column(sa.BigInteger, default=0)

    __table_args__ = (
        sa.UniqueConstraint("collector", "address", "format", "domain", name="uq_flow_exporters"),
    )
