"""The Methods of Resolution as a table: every state × every event, allowed or refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from abusedesk.cases import machine
from abusedesk.cases.choices import CaseState, Event, Resolution
from abusedesk.enforce.choices import ActionKind
from abusedesk.errors import InvalidTransition, ValidationError
from abusedesk.notify.choices import MessageTemplate
from abusedesk.policy import Category, RepeatAction, Severity, load_policy, parse_policy

S, E = CaseState, Event
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
POLICY = load_policy()

# (state, event) -> the state it leads to; a pair that is absent is refused.
EXPECTED: dict[tuple[CaseState, Event], CaseState] = {
    (S.OPEN, E.ACKNOWLEDGE): S.ACKNOWLEDGED,
    (S.OPEN, E.REPORT_FIX): S.FIX_REPORTED,
    (S.ACKNOWLEDGED, E.REPORT_FIX): S.FIX_REPORTED,
    (S.FIX_REPORTED, E.VERIFY_FIX): S.CLOSED,
    (S.FIX_REPORTED, E.REJECT_FIX): S.ACKNOWLEDGED,
    (S.OPEN, E.DEADLINE_PASSED): S.DISCONNECTED,
    (S.ACKNOWLEDGED, E.DEADLINE_PASSED): S.DISCONNECTED,
    (S.DISCONNECTED, E.DEADLINE_PASSED): S.TERMINATED,
    (S.OPEN, E.DISCONNECT): S.DISCONNECTED,
    (S.ACKNOWLEDGED, E.DISCONNECT): S.DISCONNECTED,
    (S.FIX_REPORTED, E.DISCONNECT): S.DISCONNECTED,
    (S.DISCONNECTED, E.RECONNECT): S.CLOSED,
    **{(s, E.TERMINATE): S.TERMINATED for s in S if s.is_active},
    **{(s, E.CLOSE): S.CLOSED for s in S if s.is_active},
    **{(s, E.CHANGE_DEADLINE): s for s in S if s.is_active},
    **{(s, E.CUSTOMER_CONTACT): s for s in S if s.is_active},
    # The default policy shortens the deadline of a continued violation; the state stays.
    (S.OPEN, E.CONTINUED_VIOLATION): S.OPEN,
    (S.ACKNOWLEDGED, E.CONTINUED_VIOLATION): S.ACKNOWLEDGED,
}


def facts(state: CaseState, **kw: object) -> machine.CaseFacts:
    base = {
        "state": state,
        "category": Category.SPAM,
        "severity": Severity.NORMAL,
        "deadline_at": NOW - timedelta(minutes=1),  # passed, so DEADLINE_PASSED can apply
        "customer_contacted": True,  # so RECONNECT can apply
    }
    base.update(kw)
    return machine.CaseFacts(**base)  # type: ignore[arg-type]


def complete(event: Event) -> machine.Command:
    """A command with every argument an event may need."""
    return machine.Command(
        event,
        reason="because",
        plan="we will remove the mailer",
        deadline=NOW + timedelta(hours=48),
        resolution=Resolution.RESOLVED,
    )


@pytest.mark.parametrize("state", list(CaseState))
@pytest.mark.parametrize("event", list(Event))
def test_every_state_and_event(state: CaseState, event: Event) -> None:
    expected = EXPECTED.get((state, event))
    if event is E.CONTINUED_VIOLATION and state is not S.OPEN and state is not S.ACKNOWLEDGED:
        expected = None
    if expected is None:
        with pytest.raises(InvalidTransition):
            machine.decide(facts(state), complete(event), POLICY, NOW)
        return
    outcome = machine.decide(facts(state), complete(event), POLICY, NOW)
    assert outcome.state is expected


def test_the_table_covers_what_the_machine_allows() -> None:
    allowed = {(s, e) for e, states in machine.ALLOWED.items() for s in states}
    assert allowed == set(EXPECTED)


def test_acknowledge_needs_a_plan() -> None:
    with pytest.raises(ValidationError, match="how the customer will resolve"):
        machine.decide(facts(S.OPEN), machine.Command(E.ACKNOWLEDGE, plan="  "), POLICY, NOW)


@pytest.mark.parametrize("event", sorted(machine.NEEDS_REASON))
def test_staff_events_need_a_reason(event: Event) -> None:
    state = next(iter(machine.ALLOWED[event]))
    command = machine.Command(
        event, deadline=NOW + timedelta(hours=1), resolution=Resolution.INVALID
    )
    with pytest.raises(ValidationError, match="needs a reason"):
        machine.decide(facts(state), command, POLICY, NOW)


def test_deadline_passed_is_refused_before_the_deadline() -> None:
    early = facts(S.OPEN, deadline_at=NOW + timedelta(seconds=1))
    with pytest.raises(InvalidTransition, match="not passed"):
        machine.decide(early, machine.Command(E.DEADLINE_PASSED), POLICY, NOW)


def test_deadline_passed_disconnects_and_starts_the_termination_clock() -> None:
    outcome = machine.decide(facts(S.OPEN), machine.Command(E.DEADLINE_PASSED), POLICY, NOW)
    assert outcome.actions == (ActionKind.DISCONNECT,)
    assert outcome.messages == (MessageTemplate.DISCONNECTED,)
    assert outcome.deadline_at == NOW + POLICY.termination_grace
    assert outcome.clock_restarted


def test_termination_after_the_disconnection_deadline() -> None:
    outcome = machine.decide(facts(S.DISCONNECTED), machine.Command(E.DEADLINE_PASSED), POLICY, NOW)
    assert outcome.state is S.TERMINATED
    assert outcome.actions == (ActionKind.TERMINATE,)
    assert outcome.deadline_at is None


def test_reconnect_requires_the_customer_to_have_made_contact() -> None:
    silent = facts(S.DISCONNECTED, customer_contacted=False)
    with pytest.raises(InvalidTransition, match="not made contact"):
        machine.decide(silent, complete(E.RECONNECT), POLICY, NOW)
    outcome = machine.decide(facts(S.DISCONNECTED), complete(E.RECONNECT), POLICY, NOW)
    assert outcome.actions == (ActionKind.RECONNECT,)
    assert outcome.resolution is Resolution.RESOLVED


def test_closing_a_disconnected_case_restores_service() -> None:
    outcome = machine.decide(facts(S.DISCONNECTED), complete(E.CLOSE), POLICY, NOW)
    assert outcome.actions == (ActionKind.RECONNECT,)
    assert machine.decide(facts(S.OPEN), complete(E.CLOSE), POLICY, NOW).actions == ()


def test_close_needs_a_resolution() -> None:
    command = machine.Command(E.CLOSE, reason="spam stopped")
    with pytest.raises(ValidationError, match="resolution"):
        machine.decide(facts(S.OPEN), command, POLICY, NOW)


def test_change_deadline_refuses_the_past() -> None:
    command = machine.Command(E.CHANGE_DEADLINE, reason="x", deadline=NOW - timedelta(hours=1))
    with pytest.raises(ValidationError, match="future"):
        machine.decide(facts(S.OPEN), command, POLICY, NOW)


def test_reject_fix_after_the_deadline_gives_a_short_window() -> None:
    outcome = machine.decide(facts(S.FIX_REPORTED), complete(E.REJECT_FIX), POLICY, NOW)
    assert outcome.deadline_at == NOW + POLICY.repeat.shortened_window
    still_running = facts(S.FIX_REPORTED, deadline_at=NOW + timedelta(hours=10))
    kept = machine.decide(still_running, complete(E.REJECT_FIX), POLICY, NOW)
    assert kept.deadline_at == NOW + timedelta(hours=10)


@pytest.mark.parametrize(
    ("severity", "window"),
    [
        (Severity.HIGH, timedelta(hours=4)),
        (Severity.NORMAL, timedelta(hours=24)),
        (Severity.LOW, timedelta(hours=72)),
    ],
)
def test_opening_deadline_follows_severity(severity: Severity, window: timedelta) -> None:
    opening = machine.opening(Category.SPAM, severity, False, POLICY, NOW)
    assert opening.at_once is None
    outcome = opening.ticket
    assert outcome.state is S.OPEN
    assert outcome.deadline_at == NOW + window
    assert outcome.messages == (MessageTemplate.TICKET_CREATED,)


def test_info_severity_only_notifies() -> None:
    outcome = machine.opening(Category.VULNERABLE_SERVICE, Severity.INFO, False, POLICY, NOW).ticket
    assert outcome.state is S.OPEN
    assert outcome.deadline_at is None
    clock = machine.ClockFacts(S.OPEN, None, NOW, 0)
    assert machine.next_action_at(clock, POLICY) is None


@pytest.mark.parametrize("category", [Category.CSAM, Category.BILLING_FRAUD])
def test_critical_and_zero_tolerance_disconnect_at_once(category: Category) -> None:
    opening = machine.opening(category, POLICY.severity_of(category), False, POLICY, NOW)
    assert opening.at_once is not None
    assert opening.at_once.state is S.DISCONNECTED
    assert opening.at_once.actions == (ActionKind.DISCONNECT,)
    assert opening.at_once.messages == (MessageTemplate.DISCONNECTED,)
    assert opening.at_once.deadline_at == NOW + POLICY.termination_grace
    # The ticket still goes to the customer, first.
    assert opening.ticket.messages == (MessageTemplate.TICKET_CREATED,)
    assert "at once" in opening.why


def test_csam_disconnects_at_once_even_if_an_operator_lowers_its_severity() -> None:
    policy = parse_policy('[categories.csam]\nseverity = "low"\n')
    opening = machine.opening(Category.CSAM, Severity.LOW, False, policy, NOW)
    assert opening.at_once is not None


def test_repeat_shortens_the_window_by_default() -> None:
    opening = machine.opening(Category.SPAM, Severity.NORMAL, True, POLICY, NOW)
    assert opening.at_once is None
    assert opening.ticket.deadline_at == NOW + POLICY.repeat.shortened_window


def test_repeat_disconnects_where_the_policy_says_so() -> None:
    policy = parse_policy('[repeat]\naction = "disconnect"\n')
    assert policy.repeat.action is RepeatAction.DISCONNECT
    opening = machine.opening(Category.SPAM, Severity.NORMAL, True, policy, NOW)
    assert opening.at_once is not None
    assert "repeat" in opening.why


def test_continued_violation_under_a_disconnect_policy() -> None:
    policy = parse_policy('[repeat]\naction = "disconnect"\n')
    outcome = machine.decide(facts(S.ACKNOWLEDGED), complete(E.CONTINUED_VIOLATION), policy, NOW)
    assert outcome.state is S.DISCONNECTED


def test_reminders_half_way_and_two_hours_before() -> None:
    clock = machine.ClockFacts(S.OPEN, NOW + timedelta(hours=24), NOW, 0)
    schedule = machine.reminder_schedule(clock, POLICY)
    assert schedule == [NOW + timedelta(hours=12), NOW + timedelta(hours=22)]
    assert machine.next_action_at(clock, POLICY) == NOW + timedelta(hours=12)
    sent_one = machine.ClockFacts(S.OPEN, NOW + timedelta(hours=24), NOW, 1)
    assert machine.next_action_at(sent_one, POLICY) == NOW + timedelta(hours=22)
    sent_all = machine.ClockFacts(S.OPEN, NOW + timedelta(hours=24), NOW, 2)
    assert machine.next_action_at(sent_all, POLICY) == NOW + timedelta(hours=24)
    assert machine.reminders_due(clock, POLICY, NOW + timedelta(hours=23)) == 2


def test_no_reminders_while_staff_review_a_fix() -> None:
    clock = machine.ClockFacts(S.FIX_REPORTED, NOW + timedelta(hours=24), NOW, 0)
    assert machine.next_action_at(clock, POLICY) is None
