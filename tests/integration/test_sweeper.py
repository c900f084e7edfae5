"""The deadline sweeper on a fake clock: reminders, disconnection, termination, exactly once."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from abusedesk.bootstrap import Desk, bootstrap
from abusedesk.cases import machine, sweeper
from abusedesk.cases import service as cases
from abusedesk.cases.choices import CaseState, Event, TimelineKind
from abusedesk.cases.models import Case, CaseEvent
from abusedesk.clock import FakeClock
from abusedesk.enforce.models import EnforcementAction
from abusedesk.notify.choices import MessageTemplate
from abusedesk.notify.models import OutboxMessage
from abusedesk.policy import Category, Severity
from abusedesk.store.engine import make_engine
from tests import factories
from tests.integration.test_case_service import ANALYST


def abuse_mail(desk: Desk) -> list[MessageTemplate]:
    with desk.uow() as uow:
        return list(
            uow.session.execute(
                sa.select(OutboxMessage.template).order_by(OutboxMessage.id)
            ).scalars()
        )


def timeline(desk: Desk, case_id: int) -> list[TimelineKind]:
    return [e.kind for e in cases.get_case(desk.uow(), ANALYST, case_id).timeline]


def open_case(
    desk: Desk, c: factories.Customer, n: int = 0, severity: Severity | None = None
) -> Case:
    return cases.open_case(
        desk.uow(),
        ANALYST,
        cases.NewCase(c.account_id, Category.SPAM, server_id=c.server_ids[n], severity=severity),
        desk.policy,
    ).case


def test_the_whole_clock_reminders_disconnection_termination(desk: Desk, clock: FakeClock) -> None:
    c = factories.customer(desk)
    case = open_case(desk, c)
    assert sweeper.sweep(desk.uow(), desk.policy).acted == 0  # nothing due yet

    clock.advance(timedelta(hours=12))  # half-way
    assert sweeper.sweep(desk.uow(), desk.policy).reminders == 1
    assert sweeper.sweep(desk.uow(), desk.policy).acted == 0  # not twice

    clock.advance(timedelta(hours=10))  # two hours before
    assert sweeper.sweep(desk.uow(), desk.policy).reminders == 1

    clock.advance(timedelta(hours=2))  # the deadline
    result = sweeper.sweep(desk.uow(), desk.policy)
    assert result.disconnected == 1
    now_case = cases.get_case(desk.uow(), ANALYST, case.id)
    assert now_case.state is CaseState.DISCONNECTED
    assert now_case.deadline_at == clock.now() + desk.policy.termination_grace

    clock.advance(desk.policy.termination_grace / 2)
    assert sweeper.sweep(desk.uow(), desk.policy).reminders == 1  # before termination too
    clock.advance(desk.policy.termination_grace / 2)
    assert sweeper.sweep(desk.uow(), desk.policy).terminated == 1
    assert cases.get_case(desk.uow(), ANALYST, case.id).state is CaseState.TERMINATED
    assert sweeper.sweep(desk.uow(), desk.policy).acted == 0

    assert abuse_mail(desk) == [
        MessageTemplate.TICKET_CREATED,
        MessageTemplate.REMINDER,
        MessageTemplate.REMINDER,
        MessageTemplate.DISCONNECTED,
        MessageTemplate.REMINDER,
        MessageTemplate.TERMINATED,
    ]
    assert timeline(desk, case.id) == [
        TimelineKind.OPENED,
        TimelineKind.REMINDER_SENT,
        TimelineKind.REMINDER_SENT,
        TimelineKind.DEADLINE_PASSED,
        TimelineKind.REMINDER_SENT,
        TimelineKind.DEADLINE_PASSED,
    ]


def test_a_late_sweep_acts_once_not_once_per_missed_reminder(desk: Desk, clock: FakeClock) -> None:
    c = factories.customer(desk)
    case = open_case(desk, c)
    clock.advance(timedelta(hours=23))  # both reminders are due; one message says it
    assert sweeper.sweep(desk.uow(), desk.policy).reminders == 1
    clock.advance(timedelta(days=30))  # far past everything: one step per sweep, in order
    assert sweeper.sweep(desk.uow(), desk.policy).disconnected == 1
    assert cases.get_case(desk.uow(), ANALYST, case.id).state is CaseState.DISCONNECTED


def test_acknowledged_cases_keep_their_deadline(desk: Desk, clock: FakeClock) -> None:
    c = factories.customer(desk)
    case = open_case(desk, c)
    cases.acknowledge(desk.uow(), ANALYST, case.id, "we are cleaning the server", desk.policy)
    clock.advance(timedelta(hours=24))
    assert sweeper.sweep(desk.uow(), desk.policy).disconnected == 1


def test_a_reported_fix_stops_the_clock(desk: Desk, clock: FakeClock) -> None:
    c = factories.customer(desk)
    case = open_case(desk, c)
    cases.report_fix(desk.uow(), ANALYST, case.id, "removed", desk.policy)
    clock.advance(timedelta(days=3))
    assert sweeper.sweep(desk.uow(), desk.policy).acted == 0
    assert cases.get_case(desk.uow(), ANALYST, case.id).state is CaseState.FIX_REPORTED


def test_info_cases_are_never_enforced(desk: Desk, clock: FakeClock) -> None:
    c = factories.customer(desk)
    open_case(desk, c, severity=Severity.INFO)
    clock.advance(timedelta(days=365))
    assert sweeper.sweep(desk.uow(), desk.policy).acted == 0


def test_many_due_cases_in_several_batches(desk: Desk, clock: FakeClock) -> None:
    c = factories.customer(desk, servers=12)
    ids = [open_case(desk, c, n).id for n in range(12)]
    clock.advance(timedelta(hours=25))
    result = sweeper.sweep(desk.uow(), desk.policy, batch_size=5)
    assert result.disconnected == 12
    assert result.batches == 3
    with desk.uow() as uow:
        states = set(uow.session.execute(sa.select(Case.state).where(Case.id.in_(ids))).scalars())
    assert states == {CaseState.DISCONNECTED}


class Crash(Exception):
    pass


def test_a_crash_mid_batch_neither_skips_nor_repeats(
    desk: Desk, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = factories.customer(desk, servers=4)
    ids = [open_case(desk, c, n).id for n in range(4)]
    clock.advance(timedelta(hours=25))
    real_act = sweeper._act
    calls = {"n": 0}

    def crashing_act(*args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise Crash("the worker died")
        real_act(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sweeper, "_act", crashing_act)
    with pytest.raises(Crash):
        sweeper.sweep(desk.uow(), desk.policy)
    monkeypatch.setattr(sweeper, "_act", real_act)
    # The batch rolled back whole: the two cases handled before the crash were not kept.
    with desk.uow() as uow:
        assert uow.session.scalar(sa.select(sa.func.count()).select_from(EnforcementAction)) == 0
    assert sweeper.sweep(desk.uow(), desk.policy).disconnected == 4
    assert sweeper.sweep(desk.uow(), desk.policy).acted == 0
    with desk.uow() as uow:
        assert uow.session.scalar(sa.select(sa.func.count()).select_from(EnforcementAction)) == 4
        passed = uow.session.scalar(
            sa.select(sa.func.count())
            .select_from(CaseEvent)
            .where(CaseEvent.kind == TimelineKind.DEADLINE_PASSED, CaseEvent.case_id.in_(ids))
        )
    assert passed == 4


def test_two_sweepers_at_once_act_once(desk: Desk, clock: FakeClock) -> None:
    if desk.engine.dialect.name != "postgresql":
        pytest.skip("SKIP LOCKED concurrency is a PostgreSQL test (SQLite serialises writers)")
    c = factories.customer(desk, servers=40)
    for n in range(40):
        open_case(desk, c, n)
    clock.advance(timedelta(hours=25))
    # Two independent workers: their own engines, so their own connections and transactions.
    desks = [
        bootstrap(
            desk.settings,
            clock=clock,
            engine=make_engine(str(desk.engine.url.render_as_string(hide_password=False))),
        )
        for _ in range(2)
    ]
    barrier = threading.Barrier(2)
    results: list[sweeper.SweepResult] = []
    errors: list[BaseException] = []

    def work(d: Desk) -> None:
        try:
            barrier.wait()
            results.append(sweeper.sweep(d.uow(), d.policy, batch_size=3))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(d,)) for d in desks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for d in desks:
        d.engine.dispose()
    assert not errors
    assert sum(r.disconnected for r in results) == 40
    with desk.uow() as uow:
        actions = uow.session.scalar(sa.select(sa.func.count()).select_from(EnforcementAction))
        passed = uow.session.scalar(
            sa.select(sa.func.count())
            .select_from(CaseEvent)
            .where(CaseEvent.kind == TimelineKind.DEADLINE_PASSED)
        )
    assert actions == 40
    assert passed == 40


def test_change_deadline_reschedules_the_sweeper(desk: Desk, clock: FakeClock) -> None:
    c = factories.customer(desk)
    case = open_case(desk, c)
    cases.transition(
        desk.uow(),
        ANALYST,
        case.id,
        machine.Command(
            Event.CHANGE_DEADLINE,
            reason="extension agreed",
            deadline=clock.now() + timedelta(days=3),
        ),
        desk.policy,
    )
    clock.advance(timedelta(hours=25))
    result = sweeper.sweep(desk.uow(), desk.policy)
    assert result.disconnected == 0
    clock.advance(timedelta(days=2))
    assert sweeper.sweep(desk.uow(), desk.policy).disconnected == 1
