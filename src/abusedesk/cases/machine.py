"""The Methods of Resolution as a pure state machine (AUP R13–R18, DESIGN.md's tables).

`decide` takes what the machine needs to know of a case, one command and the policy, and returns
the outcome: the new state and clock, and the effects (messages to send, enforcement to carry
out) that the case service turns into records. It reads no clock and touches no database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from abusedesk.cases.choices import CaseState, Event, Resolution
from abusedesk.enforce.choices import ActionKind
from abusedesk.errors import InvalidTransition, ValidationError
from abusedesk.notify.choices import MessageTemplate
from abusedesk.policy import Category, Policy, RepeatAction, Severity

S = CaseState
ACTIVE = frozenset(s for s in CaseState if s.is_active)
BEFORE_DISCONNECTION = frozenset({S.OPEN, S.ACKNOWLEDGED})

# Which events each state accepts; everything else is refused. The tests walk this whole table.
ALLOWED: dict[Event, frozenset[CaseState]] = {
    Event.ACKNOWLEDGE: frozenset({S.OPEN}),
    Event.REPORT_FIX: BEFORE_DISCONNECTION,
    Event.VERIFY_FIX: frozenset({S.FIX_REPORTED}),
    Event.REJECT_FIX: frozenset({S.FIX_REPORTED}),
    Event.CUSTOMER_CONTACT: ACTIVE,
    Event.DEADLINE_PASSED: frozenset({S.OPEN, S.ACKNOWLEDGED, S.DISCONNECTED}),
    Event.CONTINUED_VIOLATION: BEFORE_DISCONNECTION,
    Event.DISCONNECT: frozenset({S.OPEN, S.ACKNOWLEDGED, S.FIX_REPORTED}),
    Event.RECONNECT: frozenset({S.DISCONNECTED}),
    Event.TERMINATE: ACTIVE,
    Event.CLOSE: ACTIVE,
    Event.CHANGE_DEADLINE: ACTIVE,
}

NEEDS_REASON = frozenset(
    {
        Event.REJECT_FIX,
        Event.DISCONNECT,
        Event.TERMINATE,
        Event.CLOSE,
        Event.CHANGE_DEADLINE,
        Event.CONTINUED_VIOLATION,
    }
)


@dataclass(frozen=True, slots=True)
class CaseFacts:
    """What the machine needs to know of a case."""

    state: CaseState
    category: Category
    severity: Severity
    deadline_at: datetime | None
    customer_contacted: bool = False


@dataclass(frozen=True, slots=True)
class Command:
    event: Event
    reason: str = ""
    plan: str = ""
    deadline: datetime | None = None
    resolution: Resolution | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    state: CaseState
    deadline_at: datetime | None
    clock_restarted: bool  # a new clock: reminders count again from now
    resolution: Resolution | None = None
    customer_contacted: bool = False
    messages: tuple[MessageTemplate, ...] = ()
    actions: tuple[ActionKind, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Opening:
    """A new ticket in the customer's account (R14), and the disconnection that follows it at
    once where the policy says so (critical severity, zero tolerance, a repeat under a
    `disconnect` policy). Two outcomes, so the timeline reads as it happened."""

    ticket: Outcome
    at_once: Outcome | None = None
    why: str = ""


def opening(
    category: Category, severity: Severity, repeat: bool, policy: Policy, now: datetime
) -> Opening:
    window = policy.window(severity)
    action = policy.repeat_action(category) if repeat else RepeatAction.NONE
    if action is RepeatAction.SHORTEN and window is not None:
        window = min(window, policy.repeat.shortened_window)
    if policy.disconnects_at_once(category, severity) or action is RepeatAction.DISCONNECT:
        ticket = Outcome(
            S.OPEN, None, clock_restarted=True, messages=(MessageTemplate.TICKET_CREATED,)
        )
        if action is RepeatAction.DISCONNECT:
            why = "a repeat violation: disconnected at once"
        elif policy.rule(category).zero_tolerance:
            why = f"{category.value} is zero tolerance: disconnected at once"
        else:
            why = f"{severity.value} severity: disconnected at once"
        return Opening(ticket, _disconnection(policy, now, contacted=False), why)
    return Opening(
        Outcome(
            S.OPEN,
            None if window is None else now + window,
            clock_restarted=True,
            messages=(MessageTemplate.TICKET_CREATED,),
        )
    )


def decide(case: CaseFacts, command: Command, policy: Policy, now: datetime) -> Outcome:
    event = command.event
    if case.state not in ALLOWED[event]:
        raise InvalidTransition(
            f"a case that is {case.state.label.lower()} cannot take '{event.value}'"
        )
    if event in NEEDS_REASON and not command.reason.strip():
        raise ValidationError(f"'{event.value}' needs a reason")
    return _HANDLERS[event](case, command, policy, now)


def _keep(case: CaseFacts, state: CaseState, **changes: object) -> Outcome:
    base: dict[str, object] = {
        "state": state,
        "deadline_at": case.deadline_at,
        "clock_restarted": False,
        "customer_contacted": case.customer_contacted,
    }
    base.update(changes)
    return Outcome(**base)  # type: ignore[arg-type]


def _acknowledge(case: CaseFacts, command: Command, policy: Policy, now: datetime) -> Outcome:
    if not command.plan.strip():
        raise ValidationError("an acknowledgement must say how the customer will resolve it")
    # The resolution deadline starts as the response deadline; staff may move it (R13).
    return _keep(case, S.ACKNOWLEDGED)


def _report_fix(case: CaseFacts, command: Command, policy: Policy, now: datetime) -> Outcome:
    # The customer's clock stops while staff verify; the old deadline is kept for a rejection.
    return _keep(case, S.FIX_REPORTED)


def _verify_fix(case: CaseFacts, command: Command, policy: Policy, now: datetime) -> Outcome:
    return _keep(
        case,
        S.CLOSED,
        deadline_at=None,
        resolution=Resolution.RESOLVED,
        messages=(MessageTemplate.CLOSED,),
    )


def _reject_fix(case: CaseFacts, command: Command, policy: Policy, now: datetime) -> Outcome:
    # A customer who reported a fix in good faith is not disconnected the moment staff disagree:
    # a deadline that passed during the review becomes the policy's short window from now.
    deadline = case.deadline_at
    restarted = False
    if deadline is None or deadline <= now:
        deadline, restarted = now + policy.repeat.shortened_window, True
    return _keep(
        case,
        S.ACKNOWLEDGED,
        deadline_at=deadline,
        clock_restarted=restarted,
        messages=(MessageTemplate.FIX_REJECTED,),
    )


def _customer_contact(case: CaseFacts, command: Command, policy: Policy, now: datetime) -> Outcome:
    return _keep(case, case.state, customer_contacted=True)


def _disconnection(policy: Policy, now: datetime, contacted: bool) -> Outcome:
    return Outcome(
        S.DISCONNECTED,
        now + policy.termination_grace,
        clock_restarted=True,
        customer_contacted=contacted,
        messages=(MessageTemplate.DISCONNECTED,),
        actions=(ActionKind.DISCONNECT,),
    )


def _termination(case: CaseFacts) -> Outcome:
    return _keep(
        case,
        S.TERMINATED,
        deadline_at=None,
        messages=(MessageTemplate.TERMINATED,),
        actions=(ActionKind.TERMINATE,),
    )


def _deadline_passed(case: CaseFacts, command: Command, policy: Policy, now: datetime) -> Outcome:
    if case.deadline_at is None or now < case.deadline_at:
        raise InvalidTransition("the deadline has not passed")
    if case.state is S.DISCONNECTED:
        return _termination(case)  # R17
    # R16: not addressed in time. A customer who made contact but did not acknowledge is
    # disconnected all the same; the contact is kept for the reconnection that follows.
    return _disconnection(policy, now, case.customer_contacted)


def _continued(case: CaseFacts, command: Command, policy: Policy, now: datetime) -> Outcome:
    action = policy.repeat_action(case.category)
    if action is RepeatAction.DISCONNECT:
        return _disconnection(policy, now, case.customer_contacted)
    if action is RepeatAction.SHORTEN and case.deadline_at is not None:
        shorter = now + policy.repeat.shortened_window
        if shorter < case.deadline_at:
            return _keep(
                case,
                case.state,
                deadline_at=shorter,
                clock_restarted=True,
                messages=(MessageTemplate.DEADLINE_CHANGED,),
            )
    return _keep(case, case.state)


def _disconnect(case: CaseFacts, command: Command, policy: Policy, now: datetime) -> Outcome:
    return _disconnection(policy, now, case.customer_contacted)


def _reconnect(case: CaseFacts, command: Command, policy: Policy, now: datetime) -> Outcome:
    if not case.customer_contacted:
        raise InvalidTransition(
            "the customer has not made contact; services come back only after they do (R16)"
        )
    return _keep(
        case,
        S.CLOSED,
        deadline_at=None,
        resolution=Resolution.RESOLVED,
        messages=(MessageTemplate.RECONNECTED,),
        actions=(ActionKind.RECONNECT,),
    )


def _terminate(case: CaseFacts, command: Command, policy: Policy, now: datetime) -> Outcome:
    return _termination(case)


def _close(case: CaseFacts, command: Command, policy: Policy, now: datetime) -> Outcome:
    if command.resolution is None:
        raise ValidationError(
            "closing needs a resolution: " + ", ".join(r.value for r in Resolution)
        )
    # Closing a disconnected case restores service: no server stays cut off without a case.
    actions = (ActionKind.RECONNECT,) if case.state is S.DISCONNECTED else ()
    return _keep(
        case,
        S.CLOSED,
        deadline_at=None,
        resolution=command.resolution,
        messages=(MessageTemplate.CLOSED,),
        actions=actions,
    )


def _change_deadline(case: CaseFacts, command: Command, policy: Policy, now: datetime) -> Outcome:
    if command.deadline is None:
        raise ValidationError("a new deadline is needed")
    if command.deadline <= now:
        raise ValidationError("the new deadline must be in the future")
    return _keep(
        case,
        case.state,
        deadline_at=command.deadline,
        clock_restarted=True,
        messages=(MessageTemplate.DEADLINE_CHANGED,),
    )


_HANDLERS = {
    Event.ACKNOWLEDGE: _acknowledge,
    Event.REPORT_FIX: _report_fix,
    Event.VERIFY_FIX: _verify_fix,
    Event.REJECT_FIX: _reject_fix,
    Event.CUSTOMER_CONTACT: _customer_contact,
    Event.DEADLINE_PASSED: _deadline_passed,
    Event.CONTINUED_VIOLATION: _continued,
    Event.DISCONNECT: _disconnect,
    Event.RECONNECT: _reconnect,
    Event.TERMINATE: _terminate,
    Event.CLOSE: _close,
    Event.CHANGE_DEADLINE: _change_deadline,
}


@dataclass(frozen=True, slots=True)
class ClockFacts:
    state: CaseState
    deadline_at: datetime | None
    window_start: datetime
    reminders_sent: int


def reminder_schedule(clock: ClockFacts, policy: Policy) -> list[datetime]:
    """R18: the reminders before the running deadline. None while staff review a fix."""
    if clock.deadline_at is None or clock.state is S.FIX_REPORTED or not clock.state.is_active:
        return []
    return policy.reminder_times(clock.window_start, clock.deadline_at)


def next_action_at(clock: ClockFacts, policy: Policy) -> datetime | None:
    """When the sweeper must next look at the case: the next unsent reminder, or the deadline."""
    if clock.deadline_at is None or clock.state is S.FIX_REPORTED or not clock.state.is_active:
        return None
    pending = reminder_schedule(clock, policy)[clock.reminders_sent :]
    return pending[0] if pending else clock.deadline_at


def reminders_due(clock: ClockFacts, policy: Policy, now: datetime) -> int:
    """How many reminders are due by `now` (the sweeper sends one message for all of them, so a
    late sweep does not flood the customer)."""
    return sum(1 for moment in reminder_schedule(clock, policy) if moment <= now)


def time_left(deadline: datetime | None, now: datetime) -> timedelta | None:
    return None if deadline is None else deadline - now
