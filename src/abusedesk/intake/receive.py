"""The first step of intake, for every source: store the raw message, durably, before anything
reads it. A redelivered message (same content, or same Message-ID from the same source) is
recognised and not stored twice."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

import sqlalchemy as sa

from abusedesk.intake.choices import ReportSource, ReportStatus
from abusedesk.intake.models import Report
from abusedesk.store.uow import UnitOfWork

_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(<[^>\r\n]{1,900}>)", re.IGNORECASE | re.MULTILINE)
_HEADER_END = re.compile(rb"\r?\n\r?\n")


@dataclass(frozen=True, slots=True)
class Received:
    report_id: int
    duplicate: bool  # the same message was received before; nothing new was stored
    status_token: str


def message_id_of(raw: bytes) -> str | None:
    """The Message-ID in the header block of a mail, if it has one (JSON reports have none)."""
    end = _HEADER_END.search(raw)
    head = raw[: end.start()] if end else raw[:65536]
    match = _MESSAGE_ID.search(head)
    return match.group(1).decode("ascii", "replace") if match else None


def receive(
    uow: UnitOfWork, raw: bytes, source: ReportSource, client_address: str | None = None
) -> Received:
    """Store `raw` and commit. When this returns, the report is on disk: an SMTP listener may
    answer 250, a web form may show the ticket. `client_address` is the web form's sender."""
    digest = hashlib.sha256(raw).hexdigest()
    message_id = message_id_of(raw)
    with uow:
        session = uow.session
        same = sa.or_(
            Report.sha256 == digest,
            sa.and_(Report.message_id == message_id, Report.source == source)
            if message_id
            else sa.false(),
        )
        earlier = session.execute(sa.select(Report).where(same).limit(1)).scalar_one_or_none()
        if earlier is not None:
            return Received(earlier.id, True, earlier.status_token or "")
        report = Report(
            received_at=uow.clock.now(),
            source=source,
            raw=raw,
            size=len(raw),
            sha256=digest,
            message_id=message_id,
            status=ReportStatus.RECEIVED,
            parsed={},
            status_token=secrets.token_urlsafe(24),
            client_address=client_address,
        )
        session.add(report)
        try:
            session.flush()
        except sa.exc.IntegrityError:
            # The same message, delivered twice at once: the other delivery stored it.
            uow.rollback()
            earlier = session.execute(sa.select(Report).where(Report.sha256 == digest)).scalar_one()
            return Received(earlier.id, True, earlier.status_token or "")
        uow.audit(
            f"intake:{source.value}",
            "report.received",
            "report",
            report.id,
            {"sha256": digest, "size": len(raw), "message_id": message_id},
        )
        uow.commit()
        return Received(report.id, False, report.status_token or "")
