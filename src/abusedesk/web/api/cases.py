"""Cases over the API: list, read, open, and one POST per event of the Methods of Resolution.

Who may do what is the case service's decision: a customer acknowledges, reports a fix and makes
contact on its own cases; staff do the rest. Every event answers with the case's new state.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated

from fastapi import APIRouter, Body, Query, Response
from pydantic import AwareDatetime

from abusedesk.accounts.permissions import Actor
from abusedesk.bootstrap import Desk
from abusedesk.cases import service as cases
from abusedesk.cases.choices import CaseState, Event
from abusedesk.cases.machine import Command
from abusedesk.inventory import service as inventory
from abusedesk.policy import Category, Severity
from abusedesk.web.api.deps import ActorDep, DeskDep
from abusedesk.web.api.schemas import (
    CaseIn,
    CaseOut,
    CaseRowOut,
    CaseStateOut,
    CloseIn,
    DeadlineIn,
    NoteIn,
    NoteTextIn,
    OpenedOut,
    PlanIn,
    ReasonIn,
    ReclassifyIn,
)

router = APIRouter(prefix="/cases", tags=["cases"])

# A body that may be left out entirely, for events whose note is optional.
OptionalNote = Annotated[NoteIn, Body(default_factory=NoteIn)]


@router.get("")
def list_cases(
    desk: DeskDep,
    actor: ActorDep,
    account: Annotated[str | None, Query(description="an account's reference")] = None,
    server: Annotated[str | None, Query(description="a server's host name")] = None,
    state: Annotated[list[CaseState] | None, Query(description="repeat for several")] = None,
    category: Category | None = None,
    severity: Severity | None = None,
    resource: Annotated[str | None, Query(description="part of the resource")] = None,
    due_before: Annotated[
        AwareDatetime | None, Query(description="deadline at or before this instant")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[CaseRowOut]:
    """Cases, newest first. A customer sees its own account's alone, whatever the filter."""
    refs = inventory.resolve_references(desk.uow(), actor, account, server)
    found = cases.list_cases(
        desk.uow(),
        actor,
        cases.CaseFilter(
            account_id=refs.account_id,
            server_id=refs.server_id,
            states=state or (),
            category=category,
            severity=severity,
            resource=resource,
            due_before=due_before,
            limit=limit,
            offset=offset,
        ),
    )
    return [CaseRowOut.of(case) for case in found]


@router.get("/{case_id}")
def get_case(case_id: int, desk: DeskDep, actor: ActorDep) -> CaseOut:
    case = cases.get_case(desk.uow(), actor, case_id)
    return CaseOut.of(case, cases.timeline_for(actor, case))


@router.post(
    "",
    status_code=HTTPStatus.CREATED,
    responses={
        HTTPStatus.OK: {
            "model": OpenedOut,
            "description": "attached to the open case of the same account, category and resource",
        }
    },
)
def open_case(body: CaseIn, response: Response, desk: DeskDep, actor: ActorDep) -> OpenedOut:
    """Open a ticket in the customer's account, or attach to the one already open."""
    owner = inventory.resolve_owner(desk.uow(), actor, body.account_reference, body.server_hostname)
    opened = cases.open_case(
        desk.uow(),
        actor,
        cases.NewCase(
            account_id=owner.account_id,
            server_id=owner.server_id,
            category=body.category,
            resource=body.resource,
            severity=body.severity,
            summary=body.summary,
        ),
        desk.policy,
    )
    if not opened.created:
        response.status_code = HTTPStatus.OK
    return OpenedOut(created=opened.created, case=CaseStateOut.of(opened.case))


def _apply(desk: Desk, actor: Actor, case_id: int, command: Command) -> CaseStateOut:
    return CaseStateOut.of(cases.transition(desk.uow(), actor, case_id, command, desk.policy))


@router.post("/{case_id}/acknowledge")
def acknowledge(case_id: int, body: PlanIn, desk: DeskDep, actor: ActorDep) -> CaseStateOut:
    """The customer acknowledges the ticket with its plan (Step 2)."""
    return _apply(desk, actor, case_id, Command(Event.ACKNOWLEDGE, plan=body.plan))


@router.post("/{case_id}/report-fix")
def report_fix(case_id: int, body: OptionalNote, desk: DeskDep, actor: ActorDep) -> CaseStateOut:
    """The customer says the violation is resolved; staff verify."""
    return _apply(desk, actor, case_id, Command(Event.REPORT_FIX, reason=body.note))


@router.post("/{case_id}/verify-fix")
def verify_fix(case_id: int, body: OptionalNote, desk: DeskDep, actor: ActorDep) -> CaseStateOut:
    """Staff confirm the fix: the case closes as resolved."""
    return _apply(desk, actor, case_id, Command(Event.VERIFY_FIX, reason=body.note))


@router.post("/{case_id}/reject-fix")
def reject_fix(case_id: int, body: ReasonIn, desk: DeskDep, actor: ActorDep) -> CaseStateOut:
    """Staff find the violation still there: back to acknowledged."""
    return _apply(desk, actor, case_id, Command(Event.REJECT_FIX, reason=body.reason))


@router.post("/{case_id}/contact")
def customer_contact(
    case_id: int, body: OptionalNote, desk: DeskDep, actor: ActorDep
) -> CaseStateOut:
    """The customer made contact with the provider, which a reconnection needs (R16)."""
    return _apply(desk, actor, case_id, Command(Event.CUSTOMER_CONTACT, reason=body.note))


@router.post("/{case_id}/continued-violation")
def continued_violation(
    case_id: int, body: ReasonIn, desk: DeskDep, actor: ActorDep
) -> CaseStateOut:
    """The violation goes on or repeats: the policy disconnects or shortens the deadline."""
    return _apply(desk, actor, case_id, Command(Event.CONTINUED_VIOLATION, reason=body.reason))


@router.post("/{case_id}/disconnect")
def disconnect(case_id: int, body: ReasonIn, desk: DeskDep, actor: ActorDep) -> CaseStateOut:
    """Disconnect the case's services now (Step 3)."""
    return _apply(desk, actor, case_id, Command(Event.DISCONNECT, reason=body.reason))


@router.post("/{case_id}/reconnect")
def reconnect(case_id: int, body: ReasonIn, desk: DeskDep, actor: ActorDep) -> CaseStateOut:
    """Restore services after the customer made contact; the case closes as resolved."""
    return _apply(desk, actor, case_id, Command(Event.RECONNECT, reason=body.reason))


@router.post("/{case_id}/terminate")
def terminate(case_id: int, body: ReasonIn, desk: DeskDep, actor: ActorDep) -> CaseStateOut:
    """Terminate the account's services (Step 4). Final."""
    return _apply(desk, actor, case_id, Command(Event.TERMINATE, reason=body.reason))


@router.post("/{case_id}/close")
def close(case_id: int, body: CloseIn, desk: DeskDep, actor: ActorDep) -> CaseStateOut:
    """Close with a resolution; a disconnected case's services are restored."""
    command = Command(Event.CLOSE, reason=body.reason, resolution=body.resolution)
    return _apply(desk, actor, case_id, command)


@router.post("/{case_id}/deadline")
def change_deadline(case_id: int, body: DeadlineIn, desk: DeskDep, actor: ActorDep) -> CaseStateOut:
    """Move the running deadline, with a reason."""
    command = Command(Event.CHANGE_DEADLINE, reason=body.reason, deadline=body.deadline)
    return _apply(desk, actor, case_id, command)


@router.post("/{case_id}/reclassify")
def reclassify(case_id: int, body: ReclassifyIn, desk: DeskDep, actor: ActorDep) -> CaseStateOut:
    """Staff correct the category (and severity) of a case; the deadline stays."""
    case = cases.reclassify(desk.uow(), actor, case_id, body.category, body.reason, body.severity)
    return CaseStateOut.of(case)


@router.post("/{case_id}/notes")
def add_note(case_id: int, body: NoteTextIn, desk: DeskDep, actor: ActorDep) -> CaseStateOut:
    """A line on the timeline: a staff note, or a customer's message to the desk."""
    return CaseStateOut.of(cases.add_note(desk.uow(), actor, case_id, body.text))
