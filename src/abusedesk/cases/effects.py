"""Turning a machine outcome into records: the case row, its timeline, the audit entry, the
outbox and the enforcement actions, all in the caller's transaction. The case service and the
sweeper both move cases through here, and nothing else does."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from abusedesk.accounts.permissions import Actor
from abusedesk.cases import machine
from abusedesk.cases.choices import CaseState, TimelineKind
from abusedesk.cases.models import Case, CaseEvent
from abusedesk.enforce.choices import ActionKind, ActionState
from abusedesk.enforce.models import EnforcementAction
from abusedesk.inventory.choices import AccountStatus, ServerStatus
from abusedesk.inventory.models import Server
from abusedesk.notify.choices import MessageTemplate
from abusedesk.notify.models import OutboxMessage
from abusedesk.notify.outbox import outbox_rows
from abusedesk.policy import Policy
from abusedesk.store.uow import UnitOfWork


def record(
    uow: UnitOfWork,
    case: Case,
    actor: Actor,
    kind: TimelineKind,
    *,
    from_state: CaseState | None = None,
    note: str = "",
    data: dict[str, Any] | None = None,
) -> None:
    """A timeline line and its audit entry."""
    now = uow.clock.now()
    uow.insert_later(
        CaseEvent,
        {
            "case_id": case.id,
            "at": now,
            "kind": kind,
            "actor": actor.label,
            "from_state": from_state,
            "to_state": case.state,
            "note": note,
            "data": data or {},
        },
    )
    details: dict[str, Any] = {"to": case.state.value}
    if from_state is not None:
        details["from"] = from_state.value
    if note:
        details["note"] = note
    if case.deadline_at is not None:
        details["deadline"] = case.deadline_at.isoformat()
    if data:
        details["data"] = data
    uow.audit(actor.label, f"case.{kind.value}", "case", case.id, details)


def apply_outcome(
    uow: UnitOfWork,
    case: Case,
    actor: Actor,
    kind: TimelineKind,
    outcome: machine.Outcome,
    policy: Policy,
    note: str = "",
    data: dict[str, Any] | None = None,
) -> None:
    now = uow.clock.now()
    before = case.state
    if outcome.state is CaseState.CLOSED and case.deadline_at is not None:
        # Closing clears the clock; the timeline keeps which deadline was running, so that
        # "deadlines met" (cases.stats) can tell a case closed in time from one that had none.
        data = {**(data or {}), "running_deadline": case.deadline_at.isoformat()}
    case.state = outcome.state
    case.deadline_at = outcome.deadline_at
    case.resolution = outcome.resolution
    case.customer_contacted = outcome.customer_contacted
    case.updated_at = now
    if outcome.clock_restarted:
        case.window_start = now
        case.reminders_sent = 0
    if not outcome.state.is_active:
        case.closed_at = now
    refresh_next_action(case, policy)
    if case.id is None:
        uow.session.flush()  # a new case needs its id before its timeline and audit entry
    record(uow, case, actor, kind, from_state=before, note=note, data=data)
    for action in outcome.actions:
        enforce(uow, case, action, note or kind.value)
    for template in outcome.messages:
        notify(uow, case, template, note)


def refresh_next_action(case: Case, policy: Policy) -> None:
    case.next_action_at = machine.next_action_at(clock_facts(case), policy)


def clock_facts(case: Case) -> machine.ClockFacts:
    return machine.ClockFacts(case.state, case.deadline_at, case.window_start, case.reminders_sent)


def facts(case: Case) -> machine.CaseFacts:
    return machine.CaseFacts(
        case.state, case.category, case.severity, case.deadline_at, case.customer_contacted
    )


def message_context(case: Case, note: str = "") -> dict[str, Any]:
    """What a message about the case may tell the customer; never the complainant's identity."""
    return {
        "ticket": case.ticket,
        "case_id": case.id,
        "account_reference": case.account.reference,
        "account_name": case.account.name,
        "language": case.account.language,
        "category": case.category.value,
        "severity": case.severity.value,
        "state": case.state.value,
        "resource": case.resource,
        "server": case.server.hostname if case.server else None,
        "deadline": case.deadline_at.isoformat() if case.deadline_at else None,
        "resolution": case.resolution.value if case.resolution else None,
        "summary": case.summary,
        "note": note,
    }


def notify(uow: UnitOfWork, case: Case, template: MessageTemplate, note: str = "") -> None:
    for row in outbox_rows(
        case.account, template, message_context(case, note), uow.clock.now(), case.id
    ):
        uow.insert_later(OutboxMessage, row)


def _servers_affected(session: Session, case: Case, kind: ActionKind) -> list[Server]:
    if kind is ActionKind.TERMINATE or case.server_id is None:
        # Step 4 ends the account's services; a case about the account as a whole (billing
        # fraud, say) cuts every server it has.
        return list(
            session.execute(
                sa.select(Server).where(
                    Server.account_id == case.account_id,
                    Server.status != ServerStatus.TERMINATED,
                )
            ).scalars()
        )
    return (
        [case.server] if case.server and case.server.status is not ServerStatus.TERMINATED else []
    )


def _still_cut_by_other_cases(session: Session, case: Case) -> set[int]:
    """Servers another disconnected case of the account keeps cut: closing one case must not
    bring back a server that a second case disconnected."""
    others = session.execute(
        sa.select(Case.server_id).where(
            Case.account_id == case.account_id,
            Case.id != case.id,
            Case.state == CaseState.DISCONNECTED,
        )
    ).scalars()
    held: set[int] = set()
    for server_id in others:
        if server_id is None:  # an account-wide case holds every server
            return {s.id for s in case.account.servers}
        held.add(server_id)
    return held


def enforce(uow: UnitOfWork, case: Case, kind: ActionKind, reason: str) -> None:
    """Pending enforcement records (drivers carry them out) and the statuses they imply."""
    session, now = uow.session, uow.clock.now()
    servers = _servers_affected(session, case, kind)
    if kind is ActionKind.RECONNECT:
        held = _still_cut_by_other_cases(session, case)
        servers = [s for s in servers if s.id not in held]
    for server in servers:
        uow.insert_later(
            EnforcementAction,
            {
                "case_id": case.id,
                "server_id": server.id,
                "kind": kind,
                "state": ActionState.PENDING,
                "reason": reason,
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
                "next_attempt_at": now,
            },
        )
        server.status = {
            ActionKind.DISCONNECT: ServerStatus.DISCONNECTED,
            ActionKind.RECONNECT: ServerStatus.ACTIVE,
            ActionKind.TERMINATE: ServerStatus.TERMINATED,
        }[kind]
    account = case.account
    if kind is ActionKind.TERMINATE:
        account.status = AccountStatus.TERMINATED
    elif kind is ActionKind.DISCONNECT and account.status is AccountStatus.ACTIVE:
        account.status = AccountStatus.SUSPENDED
    elif kind is ActionKind.RECONNECT and account.status is AccountStatus.SUSPENDED:
        session.flush()
        still_cut = session.scalar(
            sa.select(sa.func.count())
            .select_from(Server)
            .where(Server.account_id == account.id, Server.status == ServerStatus.DISCONNECTED)
        )
        if not still_cut:
            account.status = AccountStatus.ACTIVE
