"""The deadline sweeper: reminders before a deadline, disconnection at it, termination after the
disconnection deadline (R16–R18).

Each batch is claimed with `SELECT … FOR UPDATE SKIP LOCKED` and handled in one transaction
together with every record it produces (timeline, audit, outbox, enforcement). So any number of
sweepers can run at once without acting twice, and a crash rolls back a whole batch, which the
next sweep then handles: nothing is skipped and nothing repeated.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from abusedesk import metrics
from abusedesk.accounts.permissions import SWEEPER, Actor
from abusedesk.cases import effects, machine
from abusedesk.cases.choices import CaseState, Event, TimelineKind
from abusedesk.cases.models import Case
from abusedesk.inventory.models import Account, Server
from abusedesk.notify.choices import MessageTemplate
from abusedesk.policy import Policy
from abusedesk.store.bulk import flush_changes_in_bulk
from abusedesk.store.uow import UnitOfWork

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SweepResult:
    reminders: int = 0
    disconnected: int = 0
    terminated: int = 0
    batches: int = 0

    @property
    def acted(self) -> int:
        return self.reminders + self.disconnected + self.terminated

    def __str__(self) -> str:
        return (
            f"{self.reminders} reminders, {self.disconnected} disconnections, "
            f"{self.terminated} terminations"
        )


def sweep(
    uow: UnitOfWork,
    policy: Policy,
    batch_size: int = 500,
    actor: Actor = SWEEPER,
    max_batches: int | None = None,
) -> SweepResult:
    """Act on every case whose next action is due, batch by batch, until none is left."""
    result = SweepResult()
    with metrics.sweep_seconds.time():
        while max_batches is None or result.batches < max_batches:
            done = _sweep_batch(uow, policy, batch_size, actor, result)
            if done < batch_size:
                break
    if result.acted:
        log.info("sweep: %s", result)
    return result


def _sweep_batch(
    uow: UnitOfWork, policy: Policy, batch_size: int, actor: Actor, result: SweepResult
) -> int:
    with uow:
        now = uow.clock.now()
        cases = list(
            uow.session.execute(
                sa.select(Case)
                .where(Case.next_action_at <= now)
                .order_by(Case.next_action_at)
                .limit(batch_size)
                .with_for_update(skip_locked=True, of=Case)
                .options(
                    selectinload(Case.account).selectinload(Account.contacts),
                    selectinload(Case.server),
                )
            ).scalars()
        )
        for case in cases:
            _act(uow, case, policy, actor, result)
        # The batch's cases, servers and accounts are written in a few set-based statements;
        # the objects are not used after the commit.
        flush_changes_in_bulk(uow.session, [Case, Server, Account])
        uow.commit()
        result.batches += 1
        return len(cases)


def _act(uow: UnitOfWork, case: Case, policy: Policy, actor: Actor, result: SweepResult) -> None:
    now = uow.clock.now()
    if case.deadline_at is not None and now >= case.deadline_at:
        before = case.state
        outcome = machine.decide(
            effects.facts(case), machine.Command(Event.DEADLINE_PASSED), policy, now
        )
        effects.apply_outcome(
            uow,
            case,
            actor,
            TimelineKind.DEADLINE_PASSED,
            outcome,
            policy,
            note=f"the {before.label.lower()} deadline passed",
        )
        if outcome.state is CaseState.TERMINATED:
            result.terminated += 1
            metrics.sweeper_actions.labels("terminate").inc()
        else:
            result.disconnected += 1
            metrics.sweeper_actions.labels("disconnect").inc()
        return
    due = machine.reminders_due(effects.clock_facts(case), policy, now)
    if due > case.reminders_sent:
        case.reminders_sent = due
        effects.notify(uow, case, MessageTemplate.REMINDER)
        effects.record(
            uow,
            case,
            actor,
            TimelineKind.REMINDER_SENT,
            note=f"reminder {due}: deadline {case.deadline_at:%Y-%m-%d %H:%M} UTC",
        )
        result.reminders += 1
        metrics.sweeper_actions.labels("remind").inc()
    effects.refresh_next_action(case, policy)
