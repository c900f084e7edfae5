"""Counts for the staff console: cases opened, deadlines met and missed, the work queues.

Read-only service functions, for staff alone. Grouping by a column is done in SQL; grouping by
time is done here, because SQLite and PostgreSQL do date arithmetic differently and the rows
it needs (one timestamp and one short value each) are cheap to carry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from abusedesk.accounts.permissions import Actor, Permission
from abusedesk.cases.choices import (
    ACTIVE_STATES,
    CaseState,
    QueueCount,
    Resolution,
    TimelineKind,
)
from abusedesk.cases.models import Case, CaseEvent
from abusedesk.errors import PermissionDenied, ValidationError
from abusedesk.policy import Category
from abusedesk.store.uow import UnitOfWork

MAX_BUCKETS = 1000  # a year by the hour would be 8760 points: more than any chart can show

# The states whose deadline is the customer's to meet. While staff review a reported fix the
# clock stops (the deadline is kept only for a rejection), so such a case is neither due nor
# overdue.
RUNNING_CLOCK = tuple(s for s in ACTIVE_STATES if s is not CaseState.FIX_REPORTED)


@dataclass(frozen=True, slots=True)
class DeadlineCounts:
    met: int = 0
    missed: int = 0


def _require_staff(actor: Actor) -> None:
    actor.require(Permission.CASE_VIEW)
    if not actor.is_staff:
        raise PermissionDenied("the desk's statistics are for staff")


def _bucket_starts(since: datetime, until: datetime, bucket: timedelta) -> list[datetime]:
    if since.tzinfo is None or until.tzinfo is None:
        raise ValidationError("since and until must be aware datetimes (UTC)")
    if bucket <= timedelta(0):
        raise ValidationError("a bucket must be longer than nothing")
    if until <= since:
        raise ValidationError("until must be later than since")
    count = math.ceil((until - since) / bucket)
    if count > MAX_BUCKETS:
        raise ValidationError(
            f"{count} buckets asked for; at most {MAX_BUCKETS}: choose a longer bucket"
        )
    return [since + i * bucket for i in range(count)]


def opened_by_category(
    uow: UnitOfWork,
    actor: Actor,
    since: datetime,
    until: datetime,
    bucket: timedelta = timedelta(days=1),
) -> list[tuple[datetime, dict[Category, int]]]:
    """Cases opened in [since, until), per bucket (the first starting at `since`, the last
    possibly cut short by `until`) and category. Every bucket is listed, empty ones too;
    a bucket's dict holds only the categories that occur in it."""
    _require_staff(actor)
    starts = _bucket_starts(since, until, bucket)
    counts: list[dict[Category, int]] = [{} for _ in starts]
    with uow.reading():
        rows = uow.session.execute(
            sa.select(Case.opened_at, Case.category).where(
                Case.opened_at >= since, Case.opened_at < until
            )
        ).all()
    for opened_at, category in rows:
        slot = counts[(opened_at - since) // bucket]
        slot[category] = slot.get(category, 0) + 1
    return list(zip(starts, counts, strict=True))


def deadlines_met_missed(
    uow: UnitOfWork,
    actor: Actor,
    since: datetime,
    until: datetime,
    bucket: timedelta = timedelta(days=7),
) -> list[tuple[datetime, DeadlineCounts]]:
    """Deadlines met and missed in [since, until), per bucket; every bucket is listed.

    - **Missed**: a case whose deadline passed, that is, one with a `deadline_passed` timeline
      event. It counts once, in the bucket of its first such event (the sweeper records it
      at most one sweep interval after the deadline, so that moment stands for the deadline);
      the termination that may follow is not a second miss.
    - **Met**: a case closed as *resolved* while a deadline was running (the closing event
      records it as `running_deadline`) and that never had a deadline pass. It counts in the
      bucket in which it closed. A fix the customer reported in time and staff verified after
      the deadline is met: the customer's clock stops while staff review.
    - Neither: cases closed as invalid, no violation or duplicate (the customer owed nothing,
      or the work goes on in another case), and cases that never had a deadline (a severity
      whose window is `none`).
    """
    _require_staff(actor)
    starts = _bucket_starts(since, until, bucket)
    met = [0] * len(starts)
    missed = [0] * len(starts)
    passed = sa.select(CaseEvent.case_id).where(CaseEvent.kind == TimelineKind.DEADLINE_PASSED)
    first_passed = (
        sa.select(CaseEvent.case_id, sa.func.min(CaseEvent.at).label("at"))
        .where(CaseEvent.kind == TimelineKind.DEADLINE_PASSED)
        .group_by(CaseEvent.case_id)
        .subquery()
    )
    with uow.reading():
        missed_at = uow.session.execute(
            sa.select(first_passed.c.at).where(
                first_passed.c.at >= since, first_passed.c.at < until
            )
        ).scalars()
        for at in missed_at:
            missed[(at - since) // bucket] += 1
        closings = uow.session.execute(
            sa.select(CaseEvent.at, CaseEvent.data)
            .join(Case, Case.id == CaseEvent.case_id)
            .where(
                CaseEvent.to_state == CaseState.CLOSED,
                CaseEvent.from_state.in_(ACTIVE_STATES),
                CaseEvent.at >= since,
                CaseEvent.at < until,
                Case.resolution == Resolution.RESOLVED,
                Case.id.not_in(passed),
            )
        ).all()
    for at, data in closings:
        if data.get("running_deadline"):
            met[(at - since) // bucket] += 1
    return [(start, DeadlineCounts(m, x)) for start, m, x in zip(starts, met, missed, strict=True)]


def open_by_state(uow: UnitOfWork, actor: Actor) -> dict[CaseState, int]:
    """How many cases are in each active state; every active state is a key, zeros included."""
    _require_staff(actor)
    with uow.reading():
        rows = uow.session.execute(
            sa.select(Case.state, sa.func.count())
            .where(Case.state.in_(ACTIVE_STATES))
            .group_by(Case.state)
        ).all()
    found = dict(rows)
    return {state: found.get(state, 0) for state in ACTIVE_STATES}


def queue_counts(
    uow: UnitOfWork, actor: Actor, now: datetime, due_soon: timedelta = timedelta(hours=4)
) -> dict[QueueCount, int]:
    """The console's queues at `now` (pass the policy's `deadlines.due_soon` for the window):

    - due_soon: active cases whose running deadline is after `now` and at most `due_soon` away;
    - overdue: active cases whose running deadline is at or before `now` (the sweeper acts on
      them within one interval, so a number that stays up means the worker is not running);
    - disconnected: cases disconnected, waiting for the customer or for termination.

    A case in review of a reported fix has no running deadline (RUNNING_CLOCK)."""
    _require_staff(actor)
    running = sa.and_(Case.state.in_(RUNNING_CLOCK), Case.deadline_at.is_not(None))
    soon = sa.and_(running, Case.deadline_at > now, Case.deadline_at <= now + due_soon)
    late = sa.and_(running, Case.deadline_at <= now)
    query = sa.select(
        sa.func.count(sa.case((soon, 1))),
        sa.func.count(sa.case((late, 1))),
        sa.func.count(sa.case((Case.state == CaseState.DISCONNECTED, 1))),
    ).where(Case.state.in_(ACTIVE_STATES))
    with uow.reading():
        due, overdue, disconnected = uow.session.execute(query).one()
    return {
        QueueCount.DUE_SOON: due,
        QueueCount.OVERDUE: overdue,
        QueueCount.DISCONNECTED: disconnected,
    }
