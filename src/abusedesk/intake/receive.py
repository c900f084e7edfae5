"""The first step of intake, for every source: store the raw message, durably, before anything
reads it. A redelivered message (same content, or same Message-ID from the same source) is
recognised and not stored twice.

``receive_many`` stores several messages in one transaction (one duplicate check, one insert,
one audit seal, one commit): the SMTP listener's group commit, which answers each of its
sessions only once that commit has returned.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from abusedesk.intake.choices import ReportSource, ReportStatus
from abusedesk.intake.models import Report
from abusedesk.store.uow import UnitOfWork

_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(<[^>\r\n]{1,900}>)", re.IGNORECASE | re.MULTILINE)
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_REPORTS = Report.__table__
# Bound parameters per IN (...) of the duplicate check.
_PER_QUERY = 500


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
    try:
        [received] = receive_many(uow, [raw], source, client_address)
    except sa.exc.IntegrityError:
        # The same message, delivered twice at once: the other delivery stored it.
        digest = hashlib.sha256(raw).hexdigest()
        with uow.reading():
            earlier = uow.session.execute(_BY_DIGEST, {"digest": digest}).one()
        return Received(earlier.id, True, earlier.status_token or "")
    return received


def receive_many(
    uow: UnitOfWork,
    raws: Sequence[bytes],
    source: ReportSource,
    client_address: str | None = None,
) -> list[Received]:
    """Store each of `raws` and commit them together; one `Received` per message, in order.
    A message seen before, or twice in `raws`, is stored once. Nothing is stored unless all
    are: on an exception the caller may store them one by one (``receive``), which also
    settles a duplicate another process stored meanwhile (an IntegrityError here)."""
    digests = [hashlib.sha256(raw).hexdigest() for raw in raws]
    message_ids = [message_id_of(raw) for raw in raws]
    with uow:
        session = uow.session
        by_digest, by_message_id = _stored(session, digests, message_ids, source)
        now = uow.clock.now()
        out: list[Received | None] = []
        rows: list[dict[str, Any]] = []
        fresh: list[int] = []  # per row: its message's position in `raws`
        repeats: dict[int, int] = {}  # a position in `raws` -> the row it is a copy of
        first_digest: dict[str, int] = {}
        first_message_id: dict[str, int] = {}
        for i, (raw, digest, message_id) in enumerate(zip(raws, digests, message_ids, strict=True)):
            earlier = by_digest.get(digest) or (
                by_message_id.get(message_id) if message_id else None
            )
            if earlier is not None:
                out.append(Received(earlier[0], True, earlier[1]))
                continue
            same = first_digest.get(digest)
            if same is None and message_id:
                same = first_message_id.get(message_id)
            out.append(None)
            if same is not None:
                repeats[i] = same
                continue
            first_digest[digest] = len(rows)
            if message_id:
                first_message_id[message_id] = len(rows)
            fresh.append(i)
            rows.append(
                {
                    "received_at": now,
                    "source": source,
                    "raw": raw,
                    "size": len(raw),
                    "sha256": digest,
                    "message_id": message_id,
                    "status": ReportStatus.RECEIVED,
                    "parsed": {},
                    "complainant_name": "",
                    "complainant_email": "",
                    "status_token": secrets.token_urlsafe(24),
                    "client_address": client_address,
                }
            )
        if rows:
            ids = list(session.execute(_INSERT, rows).scalars())
            for row, report_id in zip(rows, ids, strict=True):
                uow.audit(
                    f"intake:{source.value}",
                    "report.received",
                    "report",
                    report_id,
                    {"sha256": row["sha256"], "size": row["size"], "message_id": row["message_id"]},
                )
            uow.commit()
            for i, row, report_id in zip(fresh, rows, ids, strict=True):
                out[i] = Received(report_id, False, row["status_token"])
            for i, k in repeats.items():
                out[i] = Received(ids[k], True, rows[k]["status_token"])
    return [r for r in out if r is not None]


def _stored(
    session: Session, digests: list[str], message_ids: list[str | None], source: ReportSource
) -> tuple[dict[str, tuple[int, str]], dict[str, tuple[int, str]]]:
    """The reports stored before with one of these digests, or one of these Message-IDs from
    this source: (id, status token) by digest and by Message-ID."""
    by_digest: dict[str, tuple[int, str]] = {}
    by_message_id: dict[str, tuple[int, str]] = {}
    wanted_ids = sorted({m for m in message_ids if m})
    for start in range(0, max(len(digests), len(wanted_ids)), _PER_QUERY):
        some_digests = digests[start : start + _PER_QUERY]
        some_ids = wanted_ids[start : start + _PER_QUERY]
        if some_ids:
            found = session.execute(
                _SAME_DIGEST_OR_ID,
                {"digests": some_digests, "message_ids": some_ids, "source": source},
            )
        else:
            found = session.execute(_SAME_DIGEST, {"digests": some_digests})
        for report_id, digest, message_id, found_source, token in found:
            by_digest.setdefault(digest, (report_id, token or ""))
            if message_id and found_source == source:
                by_message_id.setdefault(message_id, (report_id, token or ""))
    return by_digest, by_message_id


# Statements every stored message runs, built once: the listener stores each message in a
# transaction of its own when it arrives alone, and building the statement cost more than
# running it.
_FOUND_COLUMNS = (
    _REPORTS.c.id,
    _REPORTS.c.sha256,
    _REPORTS.c.message_id,
    _REPORTS.c.source,
    _REPORTS.c.status_token,
)
_DIGESTS_IN = _REPORTS.c.sha256.in_(sa.bindparam("digests", expanding=True))
_SAME_DIGEST = sa.select(*_FOUND_COLUMNS).where(_DIGESTS_IN).order_by(_REPORTS.c.id)
_SAME_DIGEST_OR_ID = (
    sa.select(*_FOUND_COLUMNS)
    .where(
        sa.or_(
            _DIGESTS_IN,
            sa.and_(
                _REPORTS.c.message_id.in_(sa.bindparam("message_ids", expanding=True)),
                _REPORTS.c.source == sa.bindparam("source"),
            ),
        )
    )
    .order_by(_REPORTS.c.id)
)
_INSERT = sa.insert(_REPORTS).returning(_REPORTS.c.id, sort_by_parameter_order=True)
_BY_DIGEST = sa.select(_REPORTS.c.id, _REPORTS.c.status_token).where(
    _REPORTS.c.sha256 == sa.bindparam("digest")
)
