"""The traffic feature's use cases that touch the database: the exporter registry kept where
every process can read it, and the NOC alerts of inbound attacks."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import sqlalchemy as sa

from abusedesk.accounts.permissions import Actor, Permission
from abusedesk.store.uow import UnitOfWork
from abusedesk.traffic.collector import Exporter
from abusedesk.traffic.models import FlowExporter


def record_exporters(uow: UnitOfWork, collector: str, exporters: Iterable[Exporter]) -> int:
    """Writes the collector's registry: each stream's row made or brought up to date (its
    counters are the collector's totals since it started). Returns the rows written."""
    written = 0
    with uow:
        known = {
            (row.address, row.format, row.domain): row
            for row in uow.session.scalars(
                sa.select(FlowExporter).where(FlowExporter.collector == collector)
            )
        }
        for exporter in exporters:
            key = (exporter.address, str(exporter.format), int(exporter.domain))
            row = known.get(key)
            if row is None:
                row = FlowExporter(
                    collector=collector,
                    address=exporter.address,
                    format=str(exporter.format),
                    domain=int(exporter.domain),
                    first_seen_at=_moment(exporter.first_seen),
                )
                uow.session.add(row)
            row.agent = exporter.agent
            row.sampling_rate = exporter.sampling_rate
            row.last_seen_at = _moment(exporter.last_seen or exporter.first_seen)
            row.datagrams, row.records = exporter.datagrams, exporter.records
            row.decode_errors, row.sequence_gaps = exporter.decode_errors, exporter.sequence_gaps
            written += 1
        uow.commit()
    return written


def list_exporters(uow: UnitOfWork, actor: Actor) -> list[FlowExporter]:
    """Every exporter seen, the most recently heard first."""
    actor.require(Permission.INVENTORY_VIEW)
    with uow.reading():
        return list(
            uow.session.scalars(
                sa.select(FlowExporter).order_by(
                    FlowExporter.last_seen_at.desc(), FlowExporter.address
                )
            )
        )


def _moment(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
