from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from abusedesk.accounts.choices import Role
from abusedesk.accounts.permissions import Actor
from abusedesk.bootstrap import Desk
from abusedesk.cases import machine, stats
from abusedesk.cases import service as cases
from abusedesk.cases.choices import CaseState, Event, QueueCount, Resolution
from abusedesk.cases.sweeper import sweep
from abusedesk.clock import FakeClock
from abusedesk.errors import PermissionDenied, ValidationError
from abusedesk.policy import Category, Severity
from tests import factories

ANALYST = Actor("analyst:ann@provider.example", Role.ANALYST, user_id=900)
DAY = timedelta(days=1)


def open_case(
    desk: Desk,
    c: factories.Customer,
    resource: str,
    category: Category = Category.SPAM,
    severity: Severity | None = None,
) -> int:
    return cases.open_case(
        desk.uow(),
        ANALYST,
        cases.NewCase(
            c.account_id, category, server_id=c.server_ids[0], resource=resource, severity=severity
        ),
        desk.policy,
    ).case.id


def act(desk: Desk, case_id: int, event: Event, **fields: object) -> None:
    cases.transition(desk.uow(), ANALYST, case_id, machine.Command(event, **fields), desk.policy)


def resolve(desk: Desk, case_id: int) -> None:
    cases.report_fix(desk.uow(), ANALYST, case_id, "removed", desk.policy)
    act(desk, case_id, Event.VERIFY_FIX)


def test_statistics_are_for_staff(desk: Desk, clock: FakeClock) -> None:
    c = factories.customer(desk)
    customer = Actor("customer:x", Role.CUSTOMER, user_id=1, account_id=c.account_id)
    now = clock.now()
    calls = [
        lambda actor: stats.opened_by_category(desk.uow(), actor, now - DAY, now),
        lambda actor: stats.deadlines_met_missed(desk.uow(), actor, now - DAY, now),
        lambda actor: stats.open_by_state(desk.uow(), actor),
        lambda actor: stats.queue_counts(desk.uow(), actor, now),
    ]
    for call in calls:
        with pytest.raises(PermissionDenied):
            call(customer)
        call(Actor("noc:n@x", Role.NOC, user_id=2))


def test_opened_by_category_per_bucket_with_empty_buckets(desk: Desk, clock: FakeClock) -> None:
    c = factories.customer(desk)
    t0 = clock.now()
    open_case(desk, c, "a")
    clock.advance(DAY + timedelta(hours=3))
    open_case(desk, c, "b")
    open_case(desk, c, "b", Category.PHISHING)
    clock.advance(2 * DAY)
    open_case(desk, c, "c")
    clock.advance(DAY - timedelta(hours=3))  # at t0 + 4 days: outside [t0, t0 + 4 days)
    open_case(desk, c, "d")

    got = stats.opened_by_category(desk.uow(), ANALYST, t0, t0 + 4 * DAY)
    assert got == [
        (t0, {Category.SPAM: 1}),
        (t0 + DAY, {Category.SPAM: 1, Category.PHISHING: 1}),
        (t0 + 2 * DAY, {}),
        (t0 + 3 * DAY, {Category.SPAM: 1}),
    ]
    # A last bucket cut short by `until` is still listed.
    weekly = stats.opened_by_category(desk.uow(), ANALYST, t0, t0 + 10 * DAY, 7 * DAY)
    assert weekly == [
        (t0, {Category.SPAM: 4, Category.PHISHING: 1}),
        (t0 + 7 * DAY, {}),
    ]


def test_bucket_arguments_are_checked(desk: Desk, clock: FakeClock) -> None:
    now = clock.now()
    with pytest.raises(ValidationError, match="buckets"):
        stats.opened_by_category(desk.uow(), ANALYST, now - 365 * DAY, now, timedelta(hours=1))
    with pytest.raises(ValidationError):
        stats.opened_by_category(desk.uow(), ANALYST, now, now - DAY)
    with pytest.raises(ValidationError):
        stats.deadlines_met_missed(desk.uow(), ANALYST, now - DAY, now, timedelta(0))
    with pytest.raises(ValidationError, match="aware"):
        stats.opened_by_category(desk.uow(), ANALYST, datetime(2026, 1, 1), now)


def test_deadlines_met_and_missed(desk: Desk, clock: FakeClock) -> None:
    c = factories.customer(desk)
    t0 = clock.now()
    # Opened before anything is resolved, so that none of them is a (shortened) repeat.
    missed = open_case(desk, c, "missed")
    met = open_case(desk, c, "met")
    invalid = open_case(desk, c, "invalid")
    no_deadline = open_case(desk, c, "info", severity=Severity.INFO)
    reviewed_late = open_case(desk, c, "reviewed late")

    clock.advance(timedelta(hours=1))
    resolve(desk, met)
    act(desk, invalid, Event.CLOSE, reason="not ours", resolution=Resolution.INVALID)
    resolve(desk, no_deadline)
    cases.report_fix(desk.uow(), ANALYST, reviewed_late, "removed", desk.policy)

    clock.advance(timedelta(hours=24))  # t0 + 25 h: the 24 h deadline has passed
    assert sweep(desk.uow(), desk.policy).disconnected == 1
    clock.advance(timedelta(hours=1))  # t0 + 26 h
    act(desk, reviewed_late, Event.VERIFY_FIX)
    clock.advance(8 * DAY)  # past the termination deadline: a second deadline_passed
    assert sweep(desk.uow(), desk.policy).terminated == 1
    assert cases.get_case(desk.uow(), ANALYST, missed).state is CaseState.TERMINATED

    got = stats.deadlines_met_missed(desk.uow(), ANALYST, t0, t0 + 14 * DAY, DAY)
    assert len(got) == 14
    assert got[0] == (t0, stats.DeadlineCounts(met=1, missed=0))
    assert got[1] == (t0 + DAY, stats.DeadlineCounts(met=1, missed=1))
    assert all(counts == stats.DeadlineCounts() for _, counts in got[2:])

    # The termination a week later is not a second miss.
    later = stats.deadlines_met_missed(desk.uow(), ANALYST, t0 + 2 * DAY, t0 + 16 * DAY)
    assert [counts for _, counts in later] == [stats.DeadlineCounts(), stats.DeadlineCounts()]


def test_open_by_state_and_the_queues(desk: Desk, clock: FakeClock) -> None:
    c = factories.customer(desk)
    t0 = clock.now()
    open_case(desk, c, "normal")  # deadline t0 + 24 h
    open_case(desk, c, "high", severity=Severity.HIGH)  # deadline t0 + 4 h
    in_review = open_case(desk, c, "in review")  # deadline t0 + 24 h, clock stopped
    cases.report_fix(desk.uow(), ANALYST, in_review, "removed", desk.policy)
    cut = open_case(desk, c, "cut")
    act(desk, cut, Event.DISCONNECT, reason="still sending")
    closed = open_case(desk, c, "closed")
    act(desk, closed, Event.CLOSE, reason="not ours", resolution=Resolution.INVALID)

    assert stats.open_by_state(desk.uow(), ANALYST) == {
        CaseState.OPEN: 2,
        CaseState.ACKNOWLEDGED: 0,
        CaseState.FIX_REPORTED: 1,
        CaseState.DISCONNECTED: 1,
    }

    def queues(at: datetime) -> dict[QueueCount, int]:
        return stats.queue_counts(desk.uow(), ANALYST, at, desk.policy.due_soon)

    assert queues(t0) == {QueueCount.DUE_SOON: 1, QueueCount.OVERDUE: 0, QueueCount.DISCONNECTED: 1}
    assert queues(t0 + timedelta(hours=5)) == {
        QueueCount.DUE_SOON: 0,
        QueueCount.OVERDUE: 1,
        QueueCount.DISCONNECTED: 1,
    }
    # The case in review has the same deadline as "normal" but no running clock.
    at = t0 + timedelta(hours=21)
    assert queues(at) == {QueueCount.DUE_SOON: 1, QueueCount.OVERDUE: 1, QueueCount.DISCONNECTED: 1}
    assert queues(at)["due_soon"] == 1  # the keys are strings as well
