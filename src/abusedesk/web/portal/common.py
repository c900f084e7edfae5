"""What every portal page shares: its router, redirects, and a ticket's next step in words."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus

from fastapi import APIRouter, Depends
from fastapi.responses import RedirectResponse

from abusedesk.cases.choices import CaseState, Resolution, TimelineKind
from abusedesk.cases.models import Case
from abusedesk.web import csrf

SEE_OTHER = HTTPStatus.SEE_OTHER


def page_router() -> APIRouter:
    """A portal router: under /portal, every unsafe request checked for its CSRF token."""
    return APIRouter(
        prefix="/portal", dependencies=[Depends(csrf.protect)], include_in_schema=False
    )


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, SEE_OTHER)


@dataclass(frozen=True, slots=True)
class NextStep:
    """What the customer should do next about a ticket, and by when (R18)."""

    text: str
    due: datetime | None = None
    urgent: bool = False  # something to do; otherwise the desk's move or nothing at all


_RESOLUTION_WORDS = {
    Resolution.RESOLVED: "Nothing: the ticket is resolved.",
    Resolution.NO_VIOLATION: "Nothing: we found no violation of the policy.",
    Resolution.INVALID: "Nothing: the complaint was not valid.",
    Resolution.DUPLICATE: "Nothing: it is handled on another ticket.",
}


def next_step(case: Case) -> NextStep:
    """The Methods of Resolution (R14–R17) as the customer reads them on each ticket."""
    due = case.deadline_at
    match case.state:
        case CaseState.OPEN:
            text = "Acknowledge and tell us your plan" + (" by" if due else "")
            return NextStep(text, due, urgent=True)
        case CaseState.ACKNOWLEDGED:
            text = "Fix it, then report the fix" + (" by" if due else "")
            return NextStep(text, due, urgent=True)
        case CaseState.FIX_REPORTED:
            return NextStep("Nothing for now: we are checking your fix.")
        case CaseState.DISCONNECTED:
            text = "Contact us to get reconnected" + (
                "; services are terminated if nothing happens by" if due else ""
            )
            return NextStep(text, due, urgent=True)
        case CaseState.TERMINATED:
            return NextStep("Nothing more can be done here: the services were terminated.")
        case _:
            return NextStep(
                _RESOLUTION_WORDS.get(case.resolution, "Nothing: the ticket is closed.")
                if case.resolution
                else "Nothing: the ticket is closed."
            )


# How the customer reads each line of a ticket's timeline.
TIMELINE_WORDS = {
    TimelineKind.OPENED: "Ticket opened",
    TimelineKind.ACKNOWLEDGED: "Acknowledged with a plan",
    TimelineKind.FIX_REPORTED: "Fix reported",
    TimelineKind.FIX_VERIFIED: "Fix verified",
    TimelineKind.FIX_REJECTED: "Fix not accepted",
    TimelineKind.CUSTOMER_CONTACT: "Message to the abuse desk",
    TimelineKind.DEADLINE_PASSED: "Deadline passed",
    TimelineKind.CONTINUED_VIOLATION: "The violation went on",
    TimelineKind.DISCONNECTED: "Services disconnected",
    TimelineKind.RECONNECTED: "Services reconnected",
    TimelineKind.TERMINATED: "Services terminated",
    TimelineKind.CLOSED: "Ticket closed",
    TimelineKind.DEADLINE_CHANGED: "Deadline changed",
    TimelineKind.REPORT_ATTACHED: "Another report about it",
    TimelineKind.REMINDER_SENT: "Reminder sent",
    TimelineKind.MAIL_SENT: "Mail sent",
    TimelineKind.MAIL_FAILED: "Mail not delivered yet",
    TimelineKind.RECLASSIFIED: "Category corrected",
    TimelineKind.NOTE: "Note",
    TimelineKind.MESSAGE_TO_CUSTOMER: "Message from the abuse desk",
    TimelineKind.MERGED_INTO: "Merged into another ticket",
    TimelineKind.MERGED_FROM: "Another ticket merged into this one",
}
