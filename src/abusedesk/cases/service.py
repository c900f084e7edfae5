"""The case service: the only way to open or move a case. One use case, one transaction."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
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
from abusedesk.errors import (
    AbuseDeskError,
    Conflict,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from abusedesk.intake.models import Report
from abusedesk.inventory.models import Account, Domain, IPAssignment, Server
from abusedesk.notify.choices import MessageTemplate
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
        opened = open_or_attach(uow, actor, new, policy)
        uow.commit()
    count_opened([opened])
    return opened


def open_or_attach_many(
    uow: UnitOfWork, actor: Actor, news: Sequence[NewCase], policy: Policy
) -> list[Opened]:
    """``open_case`` for several findings, in the caller's transaction (the caller commits,
    then calls ``count_opened``): each finding attaches to the open case of its account,
    category and resource or opens one, by the same rules, with the same timeline lines,
    audit entries and outbox messages as ``open_case`` one at a time. A finding attaches to
    a case an earlier one of the same call opened. Intake takes a report to its cases, and a
    batch of reports to their outcomes, in one transaction this way."""
    actor.require(Permission.CASE_OPEN)
    return [open_or_attach(uow, actor, new, policy) for new in news]


def count_opened(opened: Sequence[Opened]) -> None:
    """The metrics of findings opened or attached, once their transaction has committed."""
    for one in opened:
        category = one.case.category.value
        if one.created:
            metrics.cases_opened.labels(category).inc()
        else:
            metrics.reports_attached.labels(category).inc()


def open_or_attach(uow: UnitOfWork, actor: Actor, new: NewCase, policy: Policy) -> Opened:
    """``open_case``'s work within the caller's open unit of work; nothing is committed."""
    actor.require(Permission.CASE_OPEN)
    session = uow.session
    now = uow.clock.now()
    account = session.get(Account, new.account_id)
    if account is None:
        raise NotFound(f"no account {new.account_id}")
    server = _server_of(session, new, account)
    resource = new.resource.strip() or (server.hostname if server else "")
    existing = session.execute(
        _OPEN_CASE, {"account_id": account.id, "category": new.category, "resource": resource}
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
    _link_reports(uow, case, new.report_ids, fresh=True)
    if opening.at_once is not None:
        effects.apply_outcome(
            uow, case, actor, TimelineKind.DISCONNECTED, opening.at_once, policy, opening.why
        )
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
        _RESOLVED_SINCE, {"account_id": account_id, "category": category, "since": now - window}
    )
    return bool(earlier)


def _link_reports(
    uow: UnitOfWork, case: Case, report_ids: Sequence[int], fresh: bool = False
) -> None:
    """Links the case to each report once. ``fresh``: a case opened in this transaction, which
    nothing links to yet."""
    if not report_ids:
        return
    wanted = list(dict.fromkeys(report_ids))
    rows = [{"case_id": case.id, "report_id": r} for r in wanted]
    session = uow.session
    if fresh:
        session.execute(_LINK, rows)
        return
    skipping = _LINK_UNLESS_LINKED.get(session.get_bind().dialect.name)
    if skipping is not None:
        # One statement rather than a read of the links and an insert: intake attaches a
        # report to an open case for nearly every complaint.
        session.execute(skipping, rows)
        return
    known = set(session.execute(_LINKED, {"case_id": case.id, "report_ids": wanted}).scalars())
    rows = [row for row in rows if row["report_id"] not in known]
    if rows:
        session.execute(_LINK, rows)


# Statements the intake worker runs for every finding, built once.
_OPEN_CASE = (
    sa.select(Case)
    .where(
        Case.account_id == sa.bindparam("account_id"),
        Case.category == sa.bindparam("category"),
        Case.resource == sa.bindparam("resource"),
        Case.state.in_(ACTIVE_STATES),
    )
    .order_by(Case.id)
    .limit(1)
    .with_for_update()
)
_LINKED = sa.select(case_reports.c.report_id).where(
    case_reports.c.case_id == sa.bindparam("case_id"),
    case_reports.c.report_id.in_(sa.bindparam("report_ids", expanding=True)),
)
_LINK = sa.insert(case_reports)
_RESOLVED_SINCE = (
    sa.select(sa.func.count())
    .select_from(Case)
    .where(
        Case.account_id == sa.bindparam("account_id"),
        Case.category == sa.bindparam("category"),
        Case.state == CaseState.CLOSED,
        Case.resolution == Resolution.RESOLVED,
        Case.closed_at >= sa.bindparam("since"),
    )
)
# A link that exists already is left as it is (the primary key is the pair).
_LINK_UNLESS_LINKED: dict[str, sa.Insert] = {
    "sqlite": sqlite_insert(case_reports).on_conflict_do_nothing(),
    "postgresql": postgresql_insert(case_reports).on_conflict_do_nothing(),
}


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


BULK_LIMIT = 500


@dataclass(frozen=True, slots=True)
class BulkOutcome:
    """What one case of a bulk action came to: its new state, or why it was refused."""

    case_id: int
    ok: bool
    state: CaseState | None = None
    error: str = ""


def transition_many(
    uow_factory: Callable[[], UnitOfWork],
    actor: Actor,
    case_ids: Sequence[int],
    command: machine.Command,
    policy: Policy,
) -> list[BulkOutcome]:
    """One event applied to a selection of cases, each in its own transaction: a case the
    event does not fit (its state, the actor's rights, a case gone) is reported in its
    outcome and the others go on. Outcomes come in the order of the ids, once per id.

    Raises ValidationError for more than BULK_LIMIT cases. An error of the database itself is
    raised, not reported: the cases before it stay done, as their transactions committed."""
    ids = list(dict.fromkeys(case_ids))
    if len(ids) > BULK_LIMIT:
        raise ValidationError(f"at most {BULK_LIMIT} cases at once, not {len(ids)}")
    outcomes = []
    for case_id in ids:
        try:
            case = transition(uow_factory(), actor, case_id, command, policy)
        except AbuseDeskError as exc:
            # ValidationError included: the machine checks a case's state before the
            # command's fields, so a wrong command shows per case as one or the other.
            outcomes.append(BulkOutcome(case_id, ok=False, error=str(exc)))
        else:
            outcomes.append(BulkOutcome(case_id, ok=True, state=case.state))
    return outcomes


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


def message_customer(
    uow: UnitOfWork, actor: Actor, case_id: int, text: str, policy: Policy
) -> Case:
    """Staff write to the account's contacts about a case: the mail goes out through the
    outbox, and the customer sees the same text on the case's timeline in the portal.

    Any case may be written about, closed and terminated ones included: it is only mail, and
    the desk has reasons to write after the end (a question about a closed ticket, what a
    terminated customer must do to get its data). The state does not change."""
    text = text.strip()
    if not text:
        raise ValidationError("the message is empty")
    with uow:
        case = _load_for_update(uow, actor, case_id)
        actor.require(Permission.CASE_DECIDE)
        case.updated_at = uow.clock.now()
        effects.record(uow, case, actor, TimelineKind.MESSAGE_TO_CUSTOMER, note=text)
        effects.notify(uow, case, MessageTemplate.STAFF_MESSAGE, text)
        uow.commit()
    return case


def merge_cases(
    uow: UnitOfWork, actor: Actor, keep_id: int, merge_id: int, reason: str, policy: Policy
) -> Case:
    """Fold case `merge_id` into case `keep_id`: its reports are linked to the kept case too,
    it is closed as a duplicate through the state machine, and both timelines say so. Returns
    the kept case.

    Raises ValidationError (the same case twice, no reason, two accounts), NotFound,
    PermissionDenied, InvalidTransition (either case has ended) and Conflict (the merge would
    bring back a server that a disconnection cut)."""
    actor.require(Permission.CASE_DECIDE)
    reason = reason.strip()
    if keep_id == merge_id:
        raise ValidationError("a case cannot be merged into itself")
    if not reason:
        raise ValidationError("merging needs a reason")
    with uow:
        now = uow.clock.now()
        # Both rows locked in the order of their ids, so that two merges of the same pair,
        # crossed, wait for each other instead of deadlocking.
        found = {
            c.id: c
            for c in uow.session.execute(
                sa.select(Case)
                .where(Case.id.in_([keep_id, merge_id]))
                .order_by(Case.id)
                .with_for_update(of=Case)
                .options(selectinload(Case.account), selectinload(Case.server))
            ).scalars()
        }
        for case_id in (keep_id, merge_id):
            if case_id not in found:
                raise NotFound(f"no case {case_id}")
        keep, merged = found[keep_id], found[merge_id]
        if keep.account_id != merged.account_id:
            raise ValidationError(
                f"{merged.ticket} and {keep.ticket} belong to different accounts: "
                "only cases of one account can be merged"
            )
        for case in (keep, merged):
            if not case.state.is_active:
                raise InvalidTransition(
                    f"{case.ticket} is {case.state.label.lower()}: only active cases can be merged"
                )
        _refuse_merge_that_reconnects(keep, merged)

        reports = list(
            uow.session.execute(
                sa.select(case_reports.c.report_id)
                .where(case_reports.c.case_id == merged.id)
                .order_by(case_reports.c.report_id)
            ).scalars()
        )
        _link_reports(uow, keep, reports)
        keep.updated_at = now
        effects.record(
            uow,
            keep,
            actor,
            TimelineKind.MERGED_FROM,
            note=f"{merged.ticket} was merged into this ticket: {reason}",
            data={"from": merged.id, "reports": reports},
        )
        effects.record(
            uow,
            merged,
            actor,
            TimelineKind.MERGED_INTO,
            note=f"merged into {keep.ticket}: {reason}",
            data={"into": keep.id},
        )
        command = machine.Command(Event.CLOSE, reason=reason, resolution=Resolution.DUPLICATE)
        outcome = machine.decide(effects.facts(merged), command, policy, now)
        # No "closed" mail: a customer told that a ticket is closed reads that the matter is
        # settled, while it goes on under the kept ticket with its own deadline. The merged
        # ticket's timeline in the portal names the ticket it went into instead.
        outcome = dataclasses.replace(outcome, messages=())
        effects.apply_outcome(
            uow,
            merged,
            actor,
            TimelineKind.CLOSED,
            outcome,
            policy,
            reason,
            {"resolution": Resolution.DUPLICATE.value, "into": keep.id},
        )
        uow.commit()
    metrics.case_transitions.labels(Event.CLOSE.value).inc()
    return keep


def _refuse_merge_that_reconnects(keep: Case, merged: Case) -> None:
    """Closing a disconnected case restores its servers (the machine's rule: no server stays
    cut off without a case). A merge is not a decision to reconnect, so it is refused unless
    the kept case is disconnected too and holds every server the merged one cut."""
    if merged.state is not CaseState.DISCONNECTED:
        return
    covers = keep.server_id is None or keep.server_id == merged.server_id
    if keep.state is not CaseState.DISCONNECTED or not covers:
        raise Conflict(
            f"{merged.ticket} is disconnected and {keep.ticket} does not keep the same servers "
            f"cut: closing {merged.ticket} would reconnect them. Merge {keep.ticket} into "
            f"{merged.ticket} instead, or decide the reconnection first"
        )


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


def sealed_for(actor: Actor, category: Category) -> bool:
    """Whether what a case or report holds is sealed from this staff actor: child-abuse reports
    (URLs, hashes, metadata) are for the roles with the zero-tolerance permission alone
    (DESIGN.md; legal and admin). Customers have their own, stricter, redaction."""
    return (
        category is Category.CSAM
        and actor.is_staff
        and not actor.can(Permission.CASE_ZERO_TOLERANCE)
    )


def timeline_for(actor: Actor, case: Case) -> list[TimelineEntry]:
    """What `actor` may see of a case's timeline. A customer sees the desk as "abuse desk" (not
    which analyst), none of the staff's internal notes or enforcement records, and none of the
    recorded data (evidence and report references may name the complainant). Staff without
    the zero-tolerance permission see a child-abuse case's events but not the data they
    recorded (sealed_for)."""
    entries = []
    sealed = sealed_for(actor, case.category)
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
                    {} if sealed else event.data,
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
    """What to list; every field set narrows the list. Text matches ignore case."""

    account_id: int | None = None
    server_id: int | None = None
    states: Sequence[CaseState] = ()
    category: Category | None = None
    severity: Severity | None = None
    resource: str | None = None
    due_before: datetime | None = None
    # An address: the case's server held a prefix containing it, at any time (a report may be
    # about last year's holder), or the resource contains it.
    ip: str | None = None
    # A domain: the resource contains it, or the account holds it (or a domain above it) in
    # the inventory.
    domain: str | None = None
    # Part of a linked report's complainant name or address. Staff only.
    reporter: str | None = None
    text: str | None = None  # part of the summary or the resource
    limit: int = 100
    offset: int = 0


def list_cases(uow: UnitOfWork, actor: Actor, filt: CaseFilter) -> list[Case]:
    """The cases the filter selects, newest first; a customer's are its own account's alone.
    Raises ValidationError (an `ip` that is no address) and PermissionDenied."""
    query = (
        sa.select(Case)
        .where(*_conditions(actor, filt))
        .options(selectinload(Case.account), selectinload(Case.server))
        .order_by(Case.id.desc())
        .limit(min(filt.limit, 1000))
        .offset(filt.offset)
    )
    with uow.reading():
        return list(uow.session.execute(query).scalars())


def count_cases(uow: UnitOfWork, actor: Actor, filt: CaseFilter) -> int:
    """How many cases `list_cases` would find without its limit and offset: for paging."""
    query = sa.select(sa.func.count()).select_from(Case).where(*_conditions(actor, filt))
    with uow.reading():
        return uow.session.scalar(query) or 0


def _conditions(actor: Actor, filt: CaseFilter) -> list[sa.ColumnElement[bool]]:
    actor.require(Permission.CASE_VIEW)
    where: list[sa.ColumnElement[bool]] = []
    account_id = filt.account_id
    if not actor.is_staff:
        account_id = actor.account_id  # a customer's filter is its own account, always
    if account_id is not None:
        where.append(Case.account_id == account_id)
    if filt.server_id is not None:
        where.append(Case.server_id == filt.server_id)
    if filt.states:
        where.append(Case.state.in_(list(filt.states)))
    if filt.category is not None:
        where.append(Case.category == filt.category)
    if filt.severity is not None:
        where.append(Case.severity == filt.severity)
    if filt.resource:
        where.append(Case.resource.contains(filt.resource))
    if filt.due_before is not None:
        where.append(Case.deadline_at <= filt.due_before)
    if filt.ip and filt.ip.strip():
        where.append(_holds_address(filt.ip.strip()))
    if filt.domain and filt.domain.strip():
        where.append(_holds_domain(filt.domain))
    if filt.reporter and filt.reporter.strip():
        if not actor.is_staff:
            # Who complained is kept from the customer (the policy's hide_complainant, and
            # message_context): a search by it would tell, one guess at a time.
            raise PermissionDenied("customers may not search by complainant")
        where.append(_reported_by(filt.reporter.strip()))
    if filt.text and filt.text.strip():
        text = filt.text.strip()
        where.append(
            sa.or_(
                Case.summary.icontains(text, autoescape=True),
                Case.resource.icontains(text, autoescape=True),
            )
        )
    return where


def _holds_address(text: str) -> sa.ColumnElement[bool]:
    try:
        address = ipaddress.ip_address(text.strip("[]"))
    except ValueError as exc:
        raise ValidationError(f"{text!r} is not an IP address") from exc
    # Containment is not portable SQL, but the prefixes that can contain an address are few
    # (33 for IPv4, 129 for IPv6) and the inventory stores each in canonical form, so an
    # exact match on the indexed column finds them.
    containing = [
        ipaddress.ip_network(f"{address}/{length}", strict=False).with_prefixlen
        for length in range(address.max_prefixlen + 1)
    ]
    servers = sa.select(IPAssignment.server_id).where(IPAssignment.prefix.in_(containing))
    return sa.or_(
        Case.server_id.in_(servers),
        Case.resource.contains(str(address), autoescape=True),
    )


def _holds_domain(text: str) -> sa.ColumnElement[bool]:
    name = text.strip().rstrip(".").lower()
    labels = name.split(".")
    # shop.example also matches a case of the account that holds example (what locate does).
    candidates = [".".join(labels[i:]) for i in range(len(labels) - 1)] or [name]
    # A domain held by a server is held by that server's account, so the account covers both.
    owners = sa.select(Domain.account_id).where(Domain.name.in_(candidates))
    return sa.or_(
        Case.resource.icontains(name, autoescape=True),
        Case.account_id.in_(owners),
    )


def _reported_by(text: str) -> sa.ColumnElement[bool]:
    return sa.exists(
        sa.select(case_reports.c.report_id)
        .join(Report, Report.id == case_reports.c.report_id)
        .where(
            case_reports.c.case_id == Case.id,
            sa.or_(
                Report.complainant_email.icontains(text, autoescape=True),
                Report.complainant_name.icontains(text, autoescape=True),
            ),
        )
    )


# -- what the customer portal shows -----------------------------------------------------------

_DISCLOSED_REPORTS = 20  # the newest complaints of a case; a feed's case may have thousands
_DISCLOSED_CHARS = 8000
WITHHELD = "[complainant]"


@dataclass(frozen=True, slots=True)
class ComplaintText:
    received_at: datetime
    subject: str
    text: str


@dataclass(frozen=True, slots=True)
class EvidenceText:
    at: datetime
    kind: TimelineKind
    text: str  # the recorded evidence as indented JSON: shown as text, never as markup
    # A detector's own measurements of the customer's traffic (no complainant in them), for
    # the page to lay out as tables and a chart; None for everything else.
    traffic: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Disclosure:
    """What an actor may read of the complaints and evidence behind a case. For a customer,
    the complainant is withheld (`complainants` empty, their name and address redacted from
    every text) unless the category's policy says the customer must know who complained
    (copyright: a DMCA notice goes to the customer as sent, 17 U.S.C. 512(c)(3))."""

    complainant_withheld: bool
    complainants: tuple[str, ...]
    complaints: tuple[ComplaintText, ...]
    evidence: tuple[EvidenceText, ...]


def disclosure_for(uow: UnitOfWork, actor: Actor, case_id: int, policy: Policy) -> Disclosure:
    """Raises NotFound for a case that does not exist or is another account's."""
    actor.require(Permission.CASE_VIEW)
    with uow.reading():
        case = uow.session.execute(
            sa.select(Case).where(Case.id == case_id).options(selectinload(Case.timeline))
        ).scalar_one_or_none()
        if case is None:
            raise NotFound(f"no case {case_id}")
        actor.require_account(case.account_id, "case")
        reports = list(
            uow.session.execute(
                sa.select(Report)
                .join(case_reports, case_reports.c.report_id == Report.id)
                .where(case_reports.c.case_id == case.id)
                .order_by(Report.id.desc())
                .limit(_DISCLOSED_REPORTS)
            ).scalars()
        )
        withheld = not actor.is_staff and policy.rule(case.category).hide_complainant
        redact = _redactor(reports if withheld else [])
        complainants = tuple(
            dict.fromkeys(
                f"{r.complainant_name} <{r.complainant_email}>".replace(" <>", "").strip()
                for r in reports
                if (r.complainant_name or r.complainant_email) and not withheld
            )
        )
        complaints = tuple(
            ComplaintText(r.received_at, redact(_subject_of(r)), redact(_text_of(r)))
            for r in reversed(reports)
        )
        evidence = []
        for event in case.timeline:
            found = (event.data or {}).get("evidence")
            if event.kind in _EVIDENCE_KINDS and isinstance(found, dict) and found:
                if withheld:
                    found = {k: v for k, v in found.items() if k not in ("complainant", "emails")}
                text = json.dumps(found, indent=2, ensure_ascii=False, default=str)
                traffic = found if found.get("source") == "traffic" else None
                evidence.append(EvidenceText(event.at, event.kind, redact(text), traffic))
        return Disclosure(withheld, complainants, complaints, tuple(evidence))


_EVIDENCE_KINDS = frozenset({TimelineKind.OPENED, TimelineKind.REPORT_ATTACHED})


def _subject_of(report: Report) -> str:
    return str((report.parsed or {}).get("subject") or "")[:500]


def _text_of(report: Report) -> str:
    findings = (report.parsed or {}).get("findings") or []
    texts = [str(f.get("description") or "") for f in findings if isinstance(f, dict)]
    return "\n\n".join(t for t in dict.fromkeys(texts) if t.strip())[:_DISCLOSED_CHARS]


def _redactor(reports: Sequence[Report]) -> Callable[[str], str]:
    secrets: set[str] = set()
    for report in reports:
        for value in (report.complainant_name, report.complainant_email):
            if len(value.strip()) >= 3:
                secrets.add(value.strip())
        # A person's mail domain names them as surely as the address does.
        domain = report.complainant_email.rpartition("@")[2].strip()
        if "." in domain:
            secrets.add(domain)
    if not secrets:
        return lambda text: text
    pattern = re.compile(
        "|".join(re.escape(s) for s in sorted(secrets, key=len, reverse=True)), re.IGNORECASE
    )
    return lambda text: pattern.sub(WITHHELD, text)


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    """A server of the account as its customer sees it: and when it is cut off, the case that
    cut it (which says why, and what the customer must do to get it back)."""

    server: Server
    prefixes: tuple[str, ...]  # the prefixes routed to it now
    held_by: Case | None


def services_of_account(uow: UnitOfWork, actor: Actor, account_id: int) -> list[ServiceStatus]:
    """Raises NotFound for another account's (a customer's own account is the only one)."""
    actor.require(Permission.CASE_VIEW)
    actor.require_account(account_id, "account")
    with uow.reading():
        now = uow.clock.now()
        servers = list(
            uow.session.execute(
                sa.select(Server)
                .where(Server.account_id == account_id)
                .options(selectinload(Server.assignments))
                .order_by(Server.hostname)
            ).scalars()
        )
        holding = list(
            uow.session.execute(
                sa.select(Case)
                .where(
                    Case.account_id == account_id,
                    Case.state.in_([CaseState.DISCONNECTED, CaseState.TERMINATED]),
                )
                .order_by(Case.id)
            ).scalars()
        )
        out = []
        for server in servers:
            # A case about the whole account (no server) holds every server of it.
            held = next(
                (c for c in holding if c.server_id in (server.id, None)),
                None,
            )
            prefixes = tuple(
                a.prefix
                for a in server.assignments
                if a.valid_from <= now and (a.valid_until is None or a.valid_until > now)
            )
            out.append(ServiceStatus(server, prefixes, held))
        return out


def record_complainant_message(
    uow: UnitOfWork, actor: Actor, case_id: int, text: str, data: dict[str, Any] | None = None
) -> Case:
    """The complainant wrote again about a case (intake threads a reply by its ticket tag): a
    line on the timeline for staff. The customer does not see it (`TimelineKind.staff_only`):
    it names the complainant. Any case takes it, ended ones included, since staff may take the
    matter up again; the state does not change and nothing is mailed."""
    if not text.strip():
        raise ValidationError("the message is empty")
    with uow:
        case = _load_for_update(uow, actor, case_id)
        actor.require(Permission.CASE_OPEN)
        case.updated_at = uow.clock.now()
        effects.record(
            uow, case, actor, TimelineKind.COMPLAINANT_MESSAGE, note=text.strip(), data=data
        )
        uow.commit()
    return case
