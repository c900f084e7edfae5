"""Cases in the console: search with filters and bulk actions, and the case page with its
evidence, timeline and the actions its state allows."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Form, Query, Request
from fastapi.responses import Response

from abusedesk.accounts.permissions import Actor, Permission
from abusedesk.bootstrap import Desk
from abusedesk.cases import machine
from abusedesk.cases import service as cases
from abusedesk.cases.choices import CaseState, Event, Resolution
from abusedesk.cases.models import Case, ticket_tag
from abusedesk.enforce import service as enforcement
from abusedesk.errors import Conflict, InvalidTransition, NotFound, ValidationError
from abusedesk.intake import queue as reports
from abusedesk.intake.pipeline import report_reference
from abusedesk.inventory import service as inventory
from abusedesk.policy import Category, Severity
from abusedesk.web import evidence as evidence_view
from abusedesk.web import flash
from abusedesk.web.deps import DeskDep, StaffActor
from abusedesk.web.session import safe_next
from abusedesk.web.staff import charts, mime
from abusedesk.web.staff.common import (
    Paging,
    choice,
    deadline_value,
    page_router,
    parse_deadline,
    parse_ticket,
    redirect,
)
from abusedesk.web.templating import render, when

router = page_router()

EARLIER = 10  # the account's earlier cases shown beside a case
LINKED_REPORTS = 10  # reports shown on a case page; the rest are a link away
REPORT_TEXT = 50_000  # of each report's raw message, on the case page
ACTIONS_SHOWN = 200  # a case's enforcement actions on its page, newest first

# Refusals a person can act on: shown beside the form that caused them, nothing changed.
REFUSALS = (ValidationError, InvalidTransition, Conflict)


# -- search -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Search:
    """The search form as typed, kept as text so that the page shows it back unchanged."""

    account: str = ""
    ip: str = ""
    domain: str = ""
    category: str = ""
    state: str = ""
    reporter: str = ""
    text: str = ""

    @property
    def query(self) -> str:
        return urlencode({k: v for k, v in dataclasses.asdict(self).items() if v})

    @property
    def empty(self) -> bool:
        return not self.query


def _filter(desk: Desk, actor: Actor, search: Search) -> cases.CaseFilter:
    account_id = None
    if search.account.strip():
        account_id = inventory.resolve_references(
            desk.uow(), actor, search.account.strip(), None
        ).account_id
    state = choice(CaseState, search.state, "state")
    return cases.CaseFilter(
        account_id=account_id,
        states=[state] if state else [],
        category=choice(Category, search.category, "category"),
        ip=search.ip.strip() or None,
        domain=search.domain.strip() or None,
        reporter=search.reporter.strip() or None,
        text=search.text.strip() or None,
    )


@router.get("/cases")
def case_search(
    request: Request,
    desk: DeskDep,
    actor: StaffActor,
    account: str = "",
    ip: str = "",
    domain: str = "",
    category: str = "",
    state: str = "",
    reporter: str = "",
    text: str = "",
    page: Annotated[int, Query(ge=1)] = 1,
) -> Response:
    search = Search(account, ip, domain, category, state, reporter, text)
    found: list[Case] = []
    paging = Paging.of(page, 0)
    error = ""
    status = HTTPStatus.OK
    try:
        filt = _filter(desk, actor, search)
        paging = Paging.of(page, cases.count_cases(desk.uow(), actor, filt))
        filt = dataclasses.replace(filt, limit=paging.size, offset=paging.offset)
        found = cases.list_cases(desk.uow(), actor, filt)
    except NotFound as exc:
        error = f"Nothing found: {exc}."
    except ValidationError as exc:
        error = str(exc)
        status = HTTPStatus.UNPROCESSABLE_ENTITY
    return render(
        request,
        "staff/cases.html",
        {
            "search": search,
            "cases": found,
            "paging": paging,
            "error": error,
            "categories": _options(Category),
            "states": _options(CaseState),
            "bulk": _bulk_choices(actor),
            "resolutions": _options(Resolution),
            "back": f"/staff/cases?{search.query}" if not search.empty else "/staff/cases",
        },
        status_code=status,
    )


# -- bulk actions -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bulk:
    event: Event
    label: str
    done: str  # what the flash says of the cases it was done to


BULK = {
    b.event.value: b
    for b in (
        Bulk(Event.CHANGE_DEADLINE, "Change the deadline", "deadline moved"),
        Bulk(Event.DISCONNECT, "Disconnect", "disconnected"),
        Bulk(Event.VERIFY_FIX, "Verify the reported fix", "fix verified, closed"),
        Bulk(Event.CLOSE, "Close", "closed"),
        Bulk(Event.TERMINATE, "Terminate", "terminated"),
    )
}


def _bulk_choices(actor: Actor) -> list[tuple[str, str]]:
    return [
        (name, bulk.label)
        for name, bulk in BULK.items()
        if actor.can(cases.EVENT_PERMISSION.get(bulk.event, Permission.CASE_DECIDE))
    ]


@router.post("/cases/bulk")
def case_bulk(
    request: Request,
    desk: DeskDep,
    actor: StaffActor,
    case_id: Annotated[list[int], Form()] = [],  # noqa: B006 - FastAPI copies form defaults
    action: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    resolution: Annotated[str, Form()] = "",
    deadline: Annotated[str, Form()] = "",
    back: Annotated[str, Form()] = "",
) -> Response:
    back = safe_next(back, "/staff/cases")
    bulk = BULK.get(action)
    if not case_id or bulk is None:
        flash.add(request, "Select one or more cases and an action.", flash.Level.WARNING)
        return redirect(back)
    try:
        command = machine.Command(
            bulk.event,
            reason=reason,
            resolution=choice(Resolution, resolution, "resolution"),
            deadline=parse_deadline(deadline) if bulk.event is Event.CHANGE_DEADLINE else None,
        )
        outcomes = cases.transition_many(desk.uow, actor, case_id, command, desk.policy)
    except ValidationError as exc:
        flash.add(request, f"Nothing was done: {exc}", flash.Level.ERROR)
        return redirect(back)
    done = sorted(ticket_tag(o.case_id) for o in outcomes if o.ok)
    refused: dict[str, list[str]] = {}
    for outcome in sorted(outcomes, key=lambda o: o.case_id):
        if not outcome.ok:
            refused.setdefault(outcome.error, []).append(ticket_tag(outcome.case_id))
    if done:
        flash.add(request, f"{_tickets(done)}: {bulk.done}.")
    for why, tickets in refused.items():
        flash.add(request, f"Refused for {_tickets(tickets)}: {why}", flash.Level.ERROR)
    return redirect(back)


def _tickets(tickets: list[str], shown: int = 8) -> str:
    head = ", ".join(tickets[:shown])
    return head if len(tickets) <= shown else f"{head} and {len(tickets) - shown} more"


# -- the case page ------------------------------------------------------------------------------

# The events staff apply from the case page, in the order the page offers them.
STAFF_EVENTS = (
    Event.VERIFY_FIX,
    Event.REJECT_FIX,
    Event.CUSTOMER_CONTACT,
    Event.CHANGE_DEADLINE,
    Event.DISCONNECT,
    Event.RECONNECT,
    Event.TERMINATE,
    Event.CLOSE,
)
DONE = {
    Event.VERIFY_FIX: "fix verified; the case is closed as resolved",
    Event.REJECT_FIX: "fix rejected; the customer is told why",
    Event.CUSTOMER_CONTACT: "the customer's contact is recorded",
    Event.CHANGE_DEADLINE: "the deadline is moved",
    Event.DISCONNECT: "disconnected; the enforcement action is on its way",
    Event.RECONNECT: "reconnected; the case is closed as resolved",
    Event.TERMINATE: "terminated",
    Event.CLOSE: "closed",
}


def available_actions(case: Case, actor: Actor, desk: Desk) -> dict[str, bool]:
    """The page's actions, by name: present if the case's state allows it and the actor's role
    may do it; the value says whether it can go ahead now (a reconnection waits for the
    customer's contact, R16)."""
    found: dict[str, bool] = {}
    for event in STAFF_EVENTS:
        if case.state not in machine.ALLOWED[event]:
            continue
        if not actor.can(cases.EVENT_PERMISSION.get(event, Permission.CASE_DECIDE)):
            continue
        found[event.value] = True
    zero_tolerance = desk.policy.rule(case.category).zero_tolerance
    if zero_tolerance and not actor.can(Permission.CASE_ZERO_TOLERANCE):
        found.pop(Event.RECONNECT.value, None)
    if case.customer_contacted:
        found.pop(Event.CUSTOMER_CONTACT.value, None)
    elif Event.RECONNECT.value in found:
        found[Event.RECONNECT.value] = False
    decide = actor.can(Permission.CASE_DECIDE)
    if decide:
        found["message"] = True
    if decide and case.state.is_active:
        found["reclassify"] = True
        found["merge"] = True
    if actor.can(Permission.CASE_RESPOND):
        found["note"] = True
    return found


def _case_actions(desk: Desk, actor: Actor, case: Case) -> list[enforcement.ActionRow]:
    return enforcement.list_actions(desk.uow(), actor, limit=ACTIONS_SHOWN, case_id=case.id)


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _case_context(desk: Desk, actor: Actor, case_id: int) -> dict[str, Any]:
    case = cases.get_case(desk.uow(), actor, case_id)
    timeline = cases.timeline_for(actor, case)
    account = inventory.get_account(desk.uow(), actor, case.account.reference)
    server = next((s for s in account.servers if s.id == case.server_id), None)
    earlier = [
        c
        for c in cases.list_cases(
            desk.uow(), actor, cases.CaseFilter(account_id=case.account_id, limit=EARLIER + 1)
        )
        if c.id != case.id
    ][:EARLIER]
    sealed = cases.sealed_for(actor, case.category)
    found, total_reports = reports.reports_of_case(desk.uow(), actor, case.id, LINKED_REPORTS)
    linked = []
    for report in found:
        raw = b"" if sealed else bytes(report.raw)
        linked.append(
            {
                "report": report,
                "reference": report_reference(report.id),
                "text": mime.as_text(raw[:REPORT_TEXT]),
                "cut": len(raw) > REPORT_TEXT,
                "parts": mime.attachments(raw),
            }
        )
    evidence = []
    for number, (entry, found) in enumerate(_evidence_of([] if sealed else timeline), 1):
        traffic = evidence_view.traffic_evidence(found) if evidence_view.is_traffic(found) else None
        evidence.append(
            {
                "number": number,
                "entry": entry,
                "json": _pretty(found),
                "traffic": traffic,
                "charts": []
                if traffic
                else [(s.path, charts.time_series(s)) for s in charts.find_series(found)],
            }
        )
    return {
        "case": case,
        "title": f"{case.ticket} · {case.category.value.replace('_', ' ')}",
        "timeline": list(reversed(timeline)),
        "account": account,
        "server": server,
        "earlier": earlier,
        "reports": linked,
        "more_reports": max(0, total_reports - LINKED_REPORTS),
        "evidence": evidence,
        "enforcement": _case_actions(desk, actor, case),
        "actions": available_actions(case, actor, desk),
        "zero_tolerance": desk.policy.rule(case.category).zero_tolerance,
        "sealed": sealed,
        "categories": _options(Category),
        "severities": _options(Severity),
        "resolutions": _options(Resolution),
        "deadline_value": deadline_value(case.deadline_at),
        "pretty": _pretty,
        "failed": "",
        "error": "",
        "form": {},
    }


def _evidence_of(timeline: Iterable[cases.TimelineEntry]) -> Iterable[tuple[Any, Any]]:
    """The timeline's entries that recorded evidence, oldest first: their order numbers the
    evidence in the page's links, and the timeline is only ever appended to."""
    for entry in timeline:
        found = entry.data.get("evidence")
        if found:
            yield entry, found


def _options(kind: Iterable[Any]) -> list[tuple[str, str]]:
    return [(item.value, item.value.replace("_", " ").capitalize()) for item in kind]


@router.get("/cases/{case_id}")
def case_page(request: Request, desk: DeskDep, actor: StaffActor, case_id: int) -> Response:
    return render(request, "staff/case.html", _case_context(desk, actor, case_id))


def _refused(
    request: Request,
    desk: Desk,
    actor: Actor,
    case_id: int,
    action: str,
    exc: Exception,
    form: dict[str, str],
) -> Response:
    """The case page again, the refused form open with the reason beside it and what was
    typed kept, so nothing has to be typed twice."""
    context = _case_context(desk, actor, case_id)
    context.update({"failed": action, "error": str(exc), "form": form})
    status = (
        HTTPStatus.UNPROCESSABLE_ENTITY
        if isinstance(exc, ValidationError | NotFound)
        else HTTPStatus.CONFLICT
    )
    return render(request, "staff/case.html", context, status_code=status)


@router.get("/cases/{case_id}/evidence/{number}/{table}.csv")
def evidence_csv(
    desk: DeskDep, actor: StaffActor, case_id: int, number: int, table: str
) -> Response:
    """One table of a traffic detection's evidence as CSV (a download)."""
    kind = next((t for t in evidence_view.EvidenceTable if t.value == table), None)
    case = cases.get_case(desk.uow(), actor, case_id)
    if kind is None or cases.sealed_for(actor, case.category):
        raise NotFound(f"no {table} table in evidence {number} of case {case_id}")
    found = [f for _, f in _evidence_of(cases.timeline_for(actor, case))]
    if not 1 <= number <= len(found) or not evidence_view.is_traffic(found[number - 1]):
        raise NotFound(f"no traffic evidence {number} in case {case_id}")
    header, rows = evidence_view.table_rows(evidence_view.traffic_evidence(found[number - 1]), kind)
    name = f"{case.ticket}-evidence-{number}-{kind.value}.csv"
    return mime.download(
        evidence_view.to_csv(header, rows).encode(), name, "text/csv; charset=utf-8"
    )


@dataclass(frozen=True, slots=True)
class CaseForm:
    """A form posted from a case page: the request, the desk, who posted it and the case."""

    request: Request
    desk: Desk
    actor: Actor
    case_id: int

    def act(
        self,
        action: str,
        form: dict[str, str],
        change: Callable[[], Case],
        done: Callable[[Case], str],
        refusals: tuple[type[Exception], ...] = REFUSALS,
    ) -> Response:
        """`change` reads the form and calls the service; what it refuses of `refusals` brings
        the page back, `action`'s form open with `form` kept. Done, the flash `done` says of the
        case it returns, and that case's page."""
        try:
            case = change()
        except refusals as exc:
            return _refused(self.request, self.desk, self.actor, self.case_id, action, exc, form)
        flash.add(self.request, done(case))
        return redirect(f"/staff/cases/{case.id}")


def _case_form(request: Request, desk: DeskDep, actor: StaffActor, case_id: int) -> CaseForm:
    return CaseForm(request, desk, actor, case_id)


CaseFormDep = Annotated[CaseForm, Depends(_case_form)]


@router.post("/cases/{case_id}/events/{event}")
def case_event(
    page: CaseFormDep,
    event: str,
    reason: Annotated[str, Form()] = "",
    resolution: Annotated[str, Form()] = "",
    deadline: Annotated[str, Form()] = "",
) -> Response:
    chosen = next((e for e in STAFF_EVENTS if e.value == event), None)
    if chosen is None:
        raise NotFound(f"no action {event}")

    def change() -> Case:
        command = machine.Command(
            chosen,
            reason=reason,
            resolution=choice(Resolution, resolution, "resolution"),
            deadline=parse_deadline(deadline) if chosen is Event.CHANGE_DEADLINE else None,
        )
        return cases.transition(
            page.desk.uow(), page.actor, page.case_id, command, page.desk.policy
        )

    def done(case: Case) -> str:
        if chosen is Event.CHANGE_DEADLINE:
            return f"{case.ticket}: the deadline is now {when(case.deadline_at)}."
        return f"{case.ticket}: {DONE[chosen]}."

    form = {"reason": reason, "resolution": resolution, "deadline": deadline}
    return page.act(chosen.value, form, change, done)


@router.post("/cases/{case_id}/message")
def case_message(page: CaseFormDep, text: Annotated[str, Form()] = "") -> Response:
    return page.act(
        "message",
        {"text": text},
        lambda: cases.message_customer(
            page.desk.uow(), page.actor, page.case_id, text, page.desk.policy
        ),
        lambda case: f"{case.ticket}: the message is on its way to the customer.",
    )


@router.post("/cases/{case_id}/note")
def case_note(page: CaseFormDep, text: Annotated[str, Form()] = "") -> Response:
    return page.act(
        "note",
        {"text": text},
        lambda: cases.add_note(page.desk.uow(), page.actor, page.case_id, text),
        lambda case: f"{case.ticket}: note added.",
    )


@router.post("/cases/{case_id}/reclassify")
def case_reclassify(
    page: CaseFormDep,
    category: Annotated[str, Form()] = "",
    severity: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> Response:
    def change() -> Case:
        chosen = choice(Category, category, "category")
        if chosen is None:
            raise ValidationError("choose the category the case is about")
        return cases.reclassify(
            page.desk.uow(),
            page.actor,
            page.case_id,
            chosen,
            reason,
            choice(Severity, severity, "severity"),
        )

    return page.act(
        "reclassify",
        {"category": category, "severity": severity, "reason": reason},
        change,
        lambda case: f"{case.ticket}: now {case.category.value.replace('_', ' ')}.",
    )


@router.post("/cases/{case_id}/merge")
def case_merge(
    page: CaseFormDep,
    into: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> Response:
    # The case merged away is gone: the flash names it by its number, the page is the kept one.
    return page.act(
        "merge",
        {"into": into, "reason": reason},
        lambda: cases.merge_cases(
            page.desk.uow(), page.actor, parse_ticket(into), page.case_id, reason, page.desk.policy
        ),
        lambda keep: f"{ticket_tag(page.case_id)} was merged into {keep.ticket}.",
        (*REFUSALS, NotFound),
    )
