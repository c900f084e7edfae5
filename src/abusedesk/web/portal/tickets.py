"""The account's tickets: the list with what is due and by when, and one ticket with its
complaint, evidence, timeline and the customer's three answers (acknowledge with a plan, reply,
report the fix)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

from fastapi import Form, Request
from fastapi.responses import Response

from abusedesk.accounts import profile
from abusedesk.accounts.permissions import Actor
from abusedesk.bootstrap import Desk
from abusedesk.cases import machine
from abusedesk.cases import service as cases
from abusedesk.cases.choices import ACTIVE_STATES, CaseState, Event
from abusedesk.errors import InvalidTransition, NotFound, ValidationError
from abusedesk.web import evidence as evidence_view
from abusedesk.web import flash
from abusedesk.web.deps import CustomerActor, DeskDep
from abusedesk.web.portal.common import TIMELINE_WORDS, next_step, page_router, redirect
from abusedesk.web.staff import mime
from abusedesk.web.templating import render

router = page_router()

ACTIVE_SHOWN = 200  # an account with more open tickets than this has bigger problems
ENDED_PAGE = 20
ENDED_STATES = tuple(s for s in CaseState if not s.is_active)


@router.get("")
def tickets(request: Request, desk: DeskDep, actor: CustomerActor, page: int = 1) -> Response:
    page = max(1, page)
    me = profile.own_account(desk.uow(), actor)
    account = me.account
    now = desk.clock.now()
    active = cases.list_cases(
        desk.uow(), actor, cases.CaseFilter(states=ACTIVE_STATES, limit=ACTIVE_SHOWN)
    )
    # The most pressing first: the nearest deadline, then those without one.
    active.sort(key=lambda c: (c.deadline_at is None, c.deadline_at or now, -c.id))
    ended = cases.list_cases(
        desk.uow(),
        actor,
        cases.CaseFilter(states=ENDED_STATES, limit=ENDED_PAGE + 1, offset=(page - 1) * ENDED_PAGE),
    )
    return render(
        request,
        "portal/tickets.html",
        {
            "title": "Tickets",
            "account": account,
            "me": me,
            "active": [(c, next_step(c)) for c in active],
            "ended": [(c, next_step(c)) for c in ended[:ENDED_PAGE]],
            "more": len(ended) > ENDED_PAGE,
            "page": page,
            "billing_stale": profile.billing_is_stale(
                account.billing_confirmed_at, now, desk.settings.auth.billing_stale_after
            ),
            "aup_pending": account.aup_version != profile.current_aup_version(desk.policy),
            "aup_version": profile.current_aup_version(desk.policy),
            "labels": _category_labels(desk),
        },
    )


@router.get("/cases/{case_id}")
def case_alias(case_id: int, actor: CustomerActor) -> Response:
    """The address the desk's mails link to (notify's `portal_url`)."""
    return redirect(f"/portal/tickets/{case_id}")


@router.get("/tickets/{case_id}")
def ticket(request: Request, desk: DeskDep, actor: CustomerActor, case_id: int) -> Response:
    return _ticket_page(request, desk, actor, case_id)


def _ticket_page(
    request: Request,
    desk: Desk,
    actor: Actor,
    case_id: int,
    errors: dict[str, str] | None = None,
    typed: dict[str, str] | None = None,
) -> Response:
    case = cases.get_case(desk.uow(), actor, case_id)
    disclosure = cases.disclosure_for(desk.uow(), actor, case_id, desk.policy)
    context: dict[str, Any] = {
        "title": f"Ticket {case.ticket}",
        "case": case,
        "step": next_step(case),
        "rule": desk.policy.rule(case.category),
        "disclosure": disclosure,
        "traffic": {
            number: evidence_view.traffic_evidence(item.traffic)
            for number, item in enumerate(disclosure.evidence, 1)
            if item.traffic
        },
        "timeline": list(reversed(cases.timeline_for(actor, case))),
        "timeline_words": TIMELINE_WORDS,
        "can_acknowledge": case.state in machine.ALLOWED[Event.ACKNOWLEDGE],
        "can_report_fix": case.state in machine.ALLOWED[Event.REPORT_FIX],
        "can_reply": case.state in machine.ALLOWED[Event.CUSTOMER_CONTACT],
        "errors": errors or {},
        "typed": typed or {},
    }
    status = HTTPStatus.UNPROCESSABLE_ENTITY if errors else HTTPStatus.OK
    return render(request, "portal/ticket.html", context, status_code=status)


@router.get("/tickets/{case_id}/evidence/{number}/{table}.csv")
def evidence_csv(
    desk: DeskDep, actor: CustomerActor, case_id: int, number: int, table: str
) -> Response:
    """One table of a traffic detection on the customer's own server, as CSV."""
    kind = next((t for t in evidence_view.EvidenceTable if t.value == table), None)
    disclosure = cases.disclosure_for(desk.uow(), actor, case_id, desk.policy)
    found = disclosure.evidence[number - 1] if 1 <= number <= len(disclosure.evidence) else None
    if kind is None or found is None or found.traffic is None:
        raise NotFound(f"no {table} table in evidence {number} of this ticket")
    header, rows = evidence_view.table_rows(evidence_view.traffic_evidence(found.traffic), kind)
    case = cases.get_case(desk.uow(), actor, case_id)
    name = f"{case.ticket}-evidence-{number}-{kind.value}.csv"
    return mime.download(
        evidence_view.to_csv(header, rows).encode(), name, "text/csv; charset=utf-8"
    )


def _answer(
    request: Request,
    desk: Desk,
    actor: Actor,
    case_id: int,
    command: machine.Command,
    field: str,
    typed: str,
    done: str,
) -> Response:
    try:
        case = cases.transition(desk.uow(), actor, case_id, command, desk.policy)
    except ValidationError as exc:
        return _ticket_page(request, desk, actor, case_id, {field: str(exc)}, {field: typed})
    except InvalidTransition as exc:
        # The ticket moved on meanwhile (a deadline passed, the desk acted): say so on it.
        flash.add(request, f"That was not done: {exc}.", flash.Level.ERROR)
        return redirect(f"/portal/tickets/{case_id}")
    flash.add(request, done.format(ticket=case.ticket))
    return redirect(f"/portal/tickets/{case_id}")


@router.post("/tickets/{case_id}/acknowledge")
def acknowledge(
    request: Request,
    desk: DeskDep,
    actor: CustomerActor,
    case_id: int,
    plan: Annotated[str, Form()] = "",
) -> Response:
    command = machine.Command(Event.ACKNOWLEDGE, plan=plan)
    done = "Ticket {ticket} is acknowledged; your plan is on its timeline."
    return _answer(request, desk, actor, case_id, command, "plan", plan, done)


@router.post("/tickets/{case_id}/fix")
def report_fix(
    request: Request,
    desk: DeskDep,
    actor: CustomerActor,
    case_id: int,
    note: Annotated[str, Form()] = "",
) -> Response:
    command = machine.Command(Event.REPORT_FIX, reason=note)
    done = "Thank you: the fix for {ticket} is reported. We check it and tell you."
    return _answer(request, desk, actor, case_id, command, "note", note, done)


@router.post("/tickets/{case_id}/reply")
def reply(
    request: Request,
    desk: DeskDep,
    actor: CustomerActor,
    case_id: int,
    message: Annotated[str, Form()] = "",
) -> Response:
    if not message.strip():
        errors = {"message": "Write your message to the abuse desk."}
        return _ticket_page(request, desk, actor, case_id, errors, {"message": message})
    command = machine.Command(Event.CUSTOMER_CONTACT, reason=message)
    done = "Your message on {ticket} was sent to the abuse desk."
    return _answer(request, desk, actor, case_id, command, "message", message, done)


def _category_labels(desk: Desk) -> dict[str, str]:
    return {c.value: rule.label for c, rule in desk.policy.categories.items()}
