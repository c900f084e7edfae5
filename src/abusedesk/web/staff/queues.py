"""The work queues: reports intake could not finish on its own, and cases whose clock calls for
someone. Reports open on a page of their own, raw message included, shown as text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Query, Request
from fastapi.responses import Response

from abusedesk.accounts.permissions import Actor
from abusedesk.bootstrap import Desk
from abusedesk.cases import service as cases
from abusedesk.cases import stats
from abusedesk.cases.choices import CaseState, QueueCount
from abusedesk.cases.models import Case, ticket_tag
from abusedesk.errors import NotFound
from abusedesk.intake import queue as reports
from abusedesk.intake import service as intake
from abusedesk.intake.choices import ReportStatus
from abusedesk.intake.models import Report
from abusedesk.intake.pipeline import report_reference
from abusedesk.web import flash
from abusedesk.web.deps import DeskDep, StaffActor
from abusedesk.web.staff import mime
from abusedesk.web.staff.common import Paging, page_router, redirect
from abusedesk.web.templating import render

router = page_router()

# The raw message on the page stops here; the download has it whole.
RAW_SHOWN = 200_000
CASE_QUEUE_MAX = 1000


@dataclass(frozen=True, slots=True)
class Queue:
    name: str
    title: str
    about: str
    report_status: ReportStatus | None = None
    case_count: QueueCount | None = None
    alarm: bool = False  # a number that should be zero, shown in red when it is not


QUEUES = {
    q.name: q
    for q in (
        Queue(
            "received",
            "New reports",
            "Stored and waiting for intake; the worker takes them within a tick.",
            report_status=ReportStatus.RECEIVED,
        ),
        Queue(
            "needs_info",
            "Needs information",
            "Something R5 asks for is missing; the complainant was asked for it.",
            report_status=ReportStatus.NEEDS_INFO,
        ),
        Queue(
            "not_ours",
            "Not ours",
            "Nothing in them locates a customer server at the time of the event.",
            report_status=ReportStatus.NOT_OURS,
        ),
        Queue(
            "unparsed",
            "Unparsed",
            "No format understood them. Read, fix the parser or the data, reprocess.",
            report_status=ReportStatus.UNPARSED,
            alarm=True,
        ),
        Queue(
            "due_soon",
            "Due soon",
            "A running deadline ends within the policy's due-soon window.",
            case_count=QueueCount.DUE_SOON,
        ),
        Queue(
            "overdue",
            "Overdue",
            "The deadline has passed and the sweeper has not acted yet: is the worker running?",
            case_count=QueueCount.OVERDUE,
            alarm=True,
        ),
        Queue(
            "disconnected",
            "Disconnected",
            "Services cut; waiting for the customer to make contact, or for termination.",
            case_count=QueueCount.DISCONNECTED,
        ),
    )
}


def queue_sizes(desk: Desk, actor: Actor) -> dict[str, int]:
    """Every queue's size, for the tiles of the dashboard and the queue list."""
    by_status = reports.count_reports_by_status(desk.uow(), actor)
    by_queue = stats.queue_counts(desk.uow(), actor, desk.clock.now(), desk.policy.due_soon)
    sizes = {}
    for queue in QUEUES.values():
        if queue.report_status is not None:
            sizes[queue.name] = by_status[queue.report_status]
        elif queue.case_count is not None:
            sizes[queue.name] = by_queue[queue.case_count]
    return sizes


def queue_cases(desk: Desk, actor: Actor, queue: Queue) -> list[Case]:
    """A case queue, most urgent deadline first.

    CaseFilter has no lower bound on the deadline and no order by it, so the cases are fetched
    (at most CASE_QUEUE_MAX, the service's page limit) and the queue's own rule, the one
    `cases.stats.queue_counts` counts by, is applied here."""
    now = desk.clock.now()
    if queue.case_count is QueueCount.DISCONNECTED:
        filt = cases.CaseFilter(states=[CaseState.DISCONNECTED], limit=CASE_QUEUE_MAX)
    else:
        until = now + desk.policy.due_soon if queue.case_count is QueueCount.DUE_SOON else now
        filt = cases.CaseFilter(states=stats.RUNNING_CLOCK, due_before=until, limit=CASE_QUEUE_MAX)
    found = cases.list_cases(desk.uow(), actor, filt)
    if queue.case_count is QueueCount.DUE_SOON:
        found = [c for c in found if c.deadline_at is not None and c.deadline_at > now]
    return sorted(found, key=lambda c: (c.deadline_at is None, c.deadline_at or now, c.id))


@router.get("/queues")
def queue_list(request: Request, desk: DeskDep, actor: StaffActor) -> Response:
    return render(
        request,
        "staff/queues.html",
        {"queues": QUEUES.values(), "sizes": queue_sizes(desk, actor)},
    )


@router.get("/queues/{name}")
def queue_page(
    request: Request,
    desk: DeskDep,
    actor: StaffActor,
    name: str,
    page: Annotated[int, Query(ge=1)] = 1,
) -> Response:
    queue = QUEUES.get(name)
    if queue is None:
        raise NotFound(f"no queue {name}")
    sizes = queue_sizes(desk, actor)
    context: dict[str, object] = {"queue": queue, "queues": QUEUES.values(), "sizes": sizes}
    if queue.report_status is not None:
        paging = Paging.of(page, sizes[name])
        context["reports"] = reports.list_reports(
            desk.uow(), actor, [queue.report_status], paging.size, paging.offset
        )
    else:
        everything = queue_cases(desk, actor, queue)
        paging = Paging.of(page, len(everything))
        context["cases"] = everything[paging.offset : paging.offset + paging.size]
        context["capped"] = len(everything) >= CASE_QUEUE_MAX
    context["paging"] = paging
    return render(request, "staff/queue.html", context)


# -- one report ---------------------------------------------------------------------------------


def legal_only(desk: Desk, actor: Actor, report: Report) -> bool:
    return reports.is_sealed(desk.uow(), actor, report)


def _readable_report(desk: Desk, actor: Actor, report_id: int) -> Report:
    report = reports.get_report(desk.uow(), actor, report_id)
    if legal_only(desk, actor, report):
        raise NotFound(f"report {report_id} is for legal alone")
    return report


@router.get("/reports/{report_id}")
def report_page(request: Request, desk: DeskDep, actor: StaffActor, report_id: int) -> Response:
    report = reports.get_report(desk.uow(), actor, report_id)
    case_ids = reports.cases_of_report(desk.uow(), actor, report_id)
    sealed = legal_only(desk, actor, report)
    raw = b"" if sealed else bytes(report.raw)
    return render(
        request,
        "staff/report.html",
        {
            "report": report,
            "reference": report_reference(report.id),
            "queue": QUEUES.get(report.status.value),
            "cases": [(case_id, ticket_tag(case_id)) for case_id in case_ids],
            "raw_text": mime.as_text(raw[:RAW_SHOWN]),
            "raw_cut": len(raw) > RAW_SHOWN,
            "attachments": mime.attachments(raw),
            "can_reprocess": report.status is ReportStatus.UNPARSED and not sealed,
            "sealed": sealed,
        },
    )


@router.get("/reports/{report_id}/raw")
def report_raw(desk: DeskDep, actor: StaffActor, report_id: int) -> Response:
    report = _readable_report(desk, actor, report_id)
    raw = bytes(report.raw)
    mail = mime.is_mail(raw)
    name = f"{report_reference(report.id)}.{'eml' if mail else 'txt'}"
    return mime.download(raw, name, "message/rfc822" if mail else "text/plain; charset=utf-8")


@router.get("/reports/{report_id}/parts/{index}")
def report_part(desk: DeskDep, actor: StaffActor, report_id: int, index: int) -> Response:
    report = _readable_report(desk, actor, report_id)
    part = mime.attachment(bytes(report.raw), index)
    if part is None:
        raise NotFound(f"no attachment {index} in report {report_id}")
    # Always a download of opaque bytes: an attachment may be HTML or a program, and must not
    # open in the console's origin.
    return mime.download(part.payload, part.filename, "application/octet-stream")


@router.post("/reports/{report_id}/reprocess")
def report_reprocess(
    request: Request, desk: DeskDep, actor: StaffActor, report_id: int
) -> Response:
    outcomes = intake.reprocess(
        desk.uow,
        actor,
        desk.policy,
        desk.settings.base_url,
        frozenset(desk.settings.intake.trusted_reporters),
        report_id=report_id,
    )
    reference = report_reference(report_id)
    if outcomes:
        became = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in outcomes.items())
        flash.add(request, f"{reference} was processed again: {became}.")
    else:
        flash.add(
            request, f"{reference} is not waiting to be parsed; nothing was done.", flash.Level.INFO
        )
    return redirect(f"/staff/reports/{report_id}")
