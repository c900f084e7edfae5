"""Writing to the chain (inside the caller's transaction) and checking it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from abusedesk.audit import chain
from abusedesk.audit.models import AuditEntry, AuditHead
from abusedesk.store.bulk import insert_rows

HEAD_ID = 1
_HEAD = AuditHead.__table__


@dataclass(slots=True)
class PendingEntry:
    at: datetime
    actor: str
    action: str
    object_type: str
    object_id: str
    details: dict[str, Any] = field(default_factory=dict)


def seal(session: Session, pending: Sequence[PendingEntry]) -> None:
    """Append entries at the end of the chain. The head row is locked until the caller's
    commit, so concurrent writers chain one after another; callers seal just before commit
    to hold that lock as briefly as they can."""
    if not pending:
        return
    # Core statements, not the ORM: every transaction that writes seals, and the ORM's
    # identity map and flush cost more than the two statements themselves.
    head = session.execute(_READ_HEAD).one_or_none()
    if head is None:
        session.execute(sa.insert(_HEAD).values(id=HEAD_ID, seq=0, hash=chain.GENESIS))
        seq, prev = 0, chain.GENESIS
    else:
        seq, prev = head
    rows = []
    for entry in pending:
        seq += 1
        digest = chain.digest(
            prev,
            seq,
            entry.at,
            entry.actor,
            entry.action,
            entry.object_type,
            entry.object_id,
            entry.details,
        )
        rows.append(
            {
                "seq": seq,
                "at": entry.at,
                "actor": entry.actor,
                "action": entry.action,
                "object_type": entry.object_type,
                "object_id": entry.object_id,
                "details": entry.details,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        prev = digest
    insert_rows(session, AuditEntry, rows)
    session.execute(_MOVE_HEAD, {"new_seq": seq, "new_hash": prev})


# Built once: every transaction that writes seals, and building a statement costs about as much
# as running it.
_READ_HEAD = sa.select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == HEAD_ID).with_for_update()
_MOVE_HEAD = (
    sa.update(_HEAD)
    .where(_HEAD.c.id == HEAD_ID)
    .values(seq=sa.bindparam("new_seq"), hash=sa.bindparam("new_hash"))
)


def _links(session: Session, batch: int = 5000) -> Iterator[chain.ChainLink]:
    last = 0
    while True:
        rows = session.execute(
            sa.select(AuditEntry).where(AuditEntry.seq > last).order_by(AuditEntry.seq).limit(batch)
        ).scalars()
        got = 0
        for row in rows:
            got += 1
            last = row.seq
            yield chain.ChainLink(
                row.seq,
                row.at,
                row.actor,
                row.action,
                row.object_type,
                row.object_id,
                row.details,
                row.prev_hash,
                row.hash,
            )
        session.expunge_all()
        if got < batch:
            return


@dataclass(frozen=True, slots=True)
class VerifyResult:
    entries: int
    problems: list[chain.Problem]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_log(session: Session) -> VerifyResult:
    head = session.get(AuditHead, HEAD_ID)
    head_seq, head_hash = (head.seq, head.hash) if head else (0, chain.GENESIS)
    count = session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)) or 0
    problems = chain.verify(_links(session), head_seq, head_hash)
    return VerifyResult(count, problems)


def entries_for(session: Session, object_type: str, object_id: str) -> list[AuditEntry]:
    return list(
        session.execute(
            sa.select(AuditEntry)
            .where(AuditEntry.object_type == object_type, AuditEntry.object_id == object_id)
            .order_by(AuditEntry.seq)
        ).scalars()
    )
