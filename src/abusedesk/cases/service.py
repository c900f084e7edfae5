"""The case service: the only way to open or move a case. One use case, one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from abusedesk import metrics
from abusedesk.accounts.permissions import Actor, Permission
from abusedesk.cases import effects, machine
from abusedesk.cases.choices import (
    ACTIVE_STATES,
    TIMELINE_OF_EVENT,
    CaseState,
    Event,
    Resolution,
    TimelineKind,
)
from abusedesk.cases.models import Case, case_reports
from abusedesk.errors import InvalidTransition, NotFound, PermissionDenied, ValidationError
from abusedesk.inventory.models import Account, Server
from abusedesk.policy import Category, Policy, Severity
from abusedesk.store.uow import UnitOfWork

# What a customer may do to its own cases; everything else is staff work.
CUSTOMER_EVENTS = frozenset({Event.ACKNOWLEDGE, Event.REPORT_FIX, Event.CUSTOMER_CONTACT})
EVENT_PERMISSION = {
    Event.RECONNECT: Permission.CASE_RECONNECT,
    Event.TERMINATE: Permission.CASE_TERMINATE,
}


@dataclass(frozen=True, slots=True)
class NewCase:
    account_id: int
    category: Category
    server_id: int | None = None
    resource: str = ""
    severity: Severity | None = None
    summary: str = ""
    report_ids: Sequence[int] = ()
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Opened:
    case: Case
    created: bool  # False: the finding was attached to an open case


def open_case(uow: UnitOfWork, actor: Actor, new: NewCase, policy: Policy) -> Opened:
    """Open a ticket (R14), or attach the finding to the open case of the same account,
    category and resource instead of opening a duplicate."""
    actor.require(Permission.CASE_OPEN)
    with uow:
        session = uow.session
        now = uow.clock.now()
        account = session.get(Account, new.account_id)
        if account is None:
            raise NotFound(f"no account {new.account_id}")
        server = _server_of(session, new, account)
        resource = new.resource.strip() or (server.hostname if server else "")
        existing = session.execute(
            sa.select(Case)
            .where(
                Case.account_id == account.id,
                Case.category == new.category,
                Case.resource == resource,
                Case.state.in_(ACTIVE_STATES),
            )
            .order_by(Case.id)
            .limit(1)
            .with_for_update()
        ).scalar_one_or_none()
        if existing is not None:
            _link_reports(uow, existing, new.report_ids)
            effects.record(
                uow,
                existing,
                actor,
                TimelineKind.REPORT_ATTACHED,
                note=new.summary,
                data={"reports": list(new.report_ids), "evidence": new.evidence},
            )
            existing.updated_at = now
            uow.commit()
            metrics.reports_attached.labels(new.category.value).inc()
            return Opened(existing, created=False)

        severity = new.severity or policy.severity_of(new.category)
        repeat = _is_repeat(session, account.id, new.category, now, policy.repeat.window)
        opening = machine.opening(new.category, severity, repeat, policy, now)
        case = Case(
            account=account,
            server=server,
            resource=resource,
            category=new.category,
            severity=severity,
            state=CaseState.OPEN,
            is_repeat=repeat,
            summary=new.summary,
            opened_at=now,
            updated_at=now,
            window_start=now,
            deadline_at=None,
        )
        session.add(case)
        data = {"reports": list(new.report_ids), "evidence": new.evidence, "repeat": repeat}
        effects.apply_outcome(
            uow, case, actor, TimelineKind.OPENED, opening.ticket, policy, new.summary, data
        )
        _link_reports(uow, case, new.report_ids)
        if opening.at_once is not None:
            effects.apply_outcome(
                uow, case, actor, TimelineKind.DISCONNECTED, opening.at_once, policy, opening.why
            )
        uow.commit()
    metrics.cases_opened.labels(new.category.value).inc()
    return Opened(case, created=True)


def _server_of(session: sa.orm.Session, new: NewCase, account: Account) -> Server | None:
    if new.server_id is None:
        return None
    server = session.get(Server, new.server_id)
    if server is None or server.account_id != account.id:
        raise ValidationError(f"server {new.server_id} does not belong to account {account.id}")
    return server


def _is_repeat(
    session: sa.orm.Session, account_id: int, category: Category, now: datetime, window: timedelta
) -> bool:
    earlier = session.scalar(
        sa.select(sa.func.count())
        .select_from(Case)
        .where(
            Case.account_id == account_id,
            Case.category == category,
            Case.state == CaseState.CLOSED,
            Case.resolution == Resolution.RESOLVED,
            Case.closed_at >= now - window,
        )
    )
    return bool(earlier)


def _link_reports(uow: UnitOfWork, case: Case, report_ids: Sequence[int]) -> None:
    if not report_ids:
        return
    known = set(
        uow.session.execute(
            sa.select(case_reports.c.report_id).where(case_reports.c.case_id == case.id)
        ).scalars()
    )
    rows = [
        {"case_id": case.id, "report_id": r} for r in dict.fromkeys(report_ids) if r not in known
    ]
    if rows:
        uow.session.execute(sa.insert(case_reports), rows)


def transition(
    uow: UnitOfWork, actor: Actor, case_id: int, command: machine.Command, policy: Policy
) -> Case:
    """Apply one event of the Methods of Resolution to a case."""
    with uow:
        case = _load_for_update(uow, actor, case_id)
        _authorise(actor, case, command.event, policy)
        outcome = machine.decide(effects.facts(case), command, policy, uow.clock.now())
        if command.event is Event.ACKNOWLEDGE:
            case.plan = command.plan.strip()
        note = (
            command.plan.strip() if command.event is Event.ACKNOWLEDGE else command.reason.strip()
        )
        data: dict[str, Any] = {}
        if command.resolution is not None:
            data["resolution"] = command.resolution.value
        if command.event is Event.CHANGE_DEADLINE and case.deadline_at is not None:
            data["previous_deadline"] = case.deadline_at.isoformat()
        effects.apply_outcome(
            uow, case, actor, TIMELINE_OF_EVENT[command.event], outcome, policy, note, data
        )
        uow.commit()
    metrics.case_transitions.labels(command.event.value).inc()
    return case


def _authorise(actor: Actor, case: Case, event: Event, policy: Policy) -> None:
    if not actor.is_staff:
        if event not in CUSTOMER_EVENTS:
            raise PermissionDenied(f"customers may not {event.value} a case")
        actor.require(Permission.CASE_RESPOND)
        return
    actor.require(EVENT_PERMISSION.get(event, Permission.CASE_DECIDE))
    zero_tolerance = policy.rule(case.category).zero_tolerance
    if (
        event is Event.RECONNECT
        and zero_tolerance
        and not actor.can(Permission.CASE_ZERO_TOLERANCE)
    ):
        raise PermissionDenied(
            f"a {case.category.value} case is zero tolerance: only legal or admin reconnect"
        )


def _load_for_update(uow: UnitOfWork, actor: Actor, case_id: int) -> Case:
    actor.require(Permission.CASE_VIEW)
    case = uow.session.execute(
        sa.select(Case)
        .where(Case.id == case_id)
        .with_for_update(of=Case)
        .options(selectinload(Case.account), selectinload(Case.server))
    ).scalar_one_or_none()
    if case is None:
        raise NotFound(f"no case {case_id}")
    actor.require_account(case.account_id, "case")
    return case


def acknowledge(uow: UnitOfWork, actor: Actor, case_id: int, plan: str, policy: Policy) -> Case:
    return transition(uow, actor, case_id, machine.Command(Event.ACKNOWLEDGE, plan=plan), policy)


def report_fix(uow: UnitOfWork, actor: Actor, case_id: int, note: str, policy: Policy) -> Case:
    return transition(uow, actor, case_id, machine.Command(Event.REPORT_FIX, reason=note), policy)


def reclassify(
    uow: UnitOfWork,
    actor: Actor,
    case_id: int,
    category: Category,
    reason: str,
    severity: Severity | None = None,
) -> Case:
    """Staff correct what a case is about (a classifier's guess, a complainant's wording). The
    running deadline stays as it is: a changed clock is its own decision (`change deadline`)."""
    if not reason.strip():
        raise ValidationError("reclassifying needs a reason")
    with uow:
        case = _load_for_update(uow, actor, case_id)
        actor.require(Permission.CASE_DECIDE)
        if not case.state.is_active:
            raise InvalidTransition(
                f"a case that is {case.state.label.lower()} cannot be reclassified"
            )
        before = {"category": case.category.value, "severity": case.severity.value}
        case.category = category
        case.severity = severity or case.severity
        case.updated_at = uow.clock.now()
        effects.record(
            uow,
            case,
            actor,
            TimelineKind.RECLASSIFIED,
            note=reason.strip(),
            data={"before": before, "category": category.value, "severity": case.severity.value},
        )
        uow.commit()
    return case


def add_note(uow: UnitOfWork, actor: Actor, case_id: int, text: str) -> Case:
    """A note on the timeline (staff) or a message to the desk (a customer: contact made)."""
    if not text.strip():
        raise ValidationError("the note is empty")
    with uow:
        case = _load_for_update(uow, actor, case_id)
        actor.require(Permission.CASE_RESPOND)
        case.updated_at = uow.clock.now()
        effects.record(uow, case, actor, TimelineKind.NOTE, note=text.strip())
        uow.commit()
    return case


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    at: datetime
    kind: TimelineKind
    actor: str
    from_state: CaseState | None
    to_state: CaseState | None
    note: str
    data: dict[str, Any]


DESK_LABEL = "abuse desk"


def timeline_for(actor: Actor, case: Case) -> list[TimelineEntry]:
    """What `actor` may see of a case's timeline. A customer sees the desk as "abuse desk" (not
    which analyst), none of the staff's internal notes or enforcement records, and none of the
    recorded data (evidence and report references may name the complainant)."""
    entries = []
    for event in case.timeline:
        if actor.is_staff:
            entries.append(
                TimelineEntry(
                    event.at,
                    event.kind,
                    event.actor,
                    event.from_state,
                    event.to_state,
                    event.note,
                    event.data,
                )
            )
            continue
        by_customer = event.actor.startswith("customer:")
        if (event.kind is TimelineKind.NOTE and not by_customer) or event.kind.staff_only:
            continue
        entries.append(
            TimelineEntry(
                event.at,
                event.kind,
                event.actor if by_customer else DESK_LABEL,
                event.from_state,
                event.to_state,
                event.note,
                {},
            )
        )
    return entries


def get_case(uow: UnitOfWork, actor: Actor, case_id: int) -> Case:
    actor.require(Permission.CASE_VIEW)
    with uow.reading():
        case = uow.session.execute(
            sa.select(Case)
            .where(Case.id == case_id)
            .options(
                selectinload(Case.timeline),
                selectinload(Case.account),
                selectinload(Case.server),
            )
        ).scalar_one_or_none()
        if case is None:
            raise NotFound(f"no case {case_id}")
        actor.require_account(case.account_id, "case")
        return case


@dataclass(frozen=True, slots=True)
class CaseFilter:
    account_id: int | None = None
    server_id: int | None = None
    states: Sequence[CaseState] = ()
    category: Category | None = None
    severity: Severity | None = None
    resource: str | None = None
    due_before: datetime | None = None
    limit: int = 100
    offset: int = 0


def list_cases(uow: UnitOfWork, actor: Actor, filt: CaseFilter) -> list[Case]:
    actor.require(Permission.CASE_VIEW)
    query = sa.select(Case).options(selectinload(Case.account), selectinload(Case.server))
    account_id = filt.account_id
    if not actor.is_staff:
        account_id = actor.account_id  # a customer's filter is its own account, always
    if account_id is not None:
        query = query.where(Case.account_id == account_id)
    if filt.server_id is not None:
        query = query.where(Case.server_id == filt.server_id)
    if filt.states:
        query = query.where(Case.state.in_(list(filt.states)))
    if filt.category is not None:
        query = query.where(Case.category == filt.category)
    if filt.severity is not None:
        query = query.where(Case.severity == filt.severity)
    if filt.resource:
        query = query.where(Case.resource.contains(filt.resource))
    if filt.due_before is not None:
        query = query.where(Case.deadline_at <= filt.due_before)
    query = query.order_by(Case.id.desc()).limit(min(filt.limit, 1000)).offset(filt.offset)
    with uow.reading():
        return list(uow.session.execute(query).scalars())
