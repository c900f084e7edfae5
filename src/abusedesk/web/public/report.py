"""The public complaint form (no sign-in) and the complainant's private status page."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from abusedesk.bootstrap import Desk
from abusedesk.cases.choices import CaseState, Resolution
from abusedesk.intake import service as intake
from abusedesk.intake.choices import ReportStatus
from abusedesk.policy import Category
from abusedesk.web import csrf, flash
from abusedesk.web.api.deps import DeskDep
from abusedesk.web.templating import render

# Room for the text fields and the multipart framing around the evidence files.
_FORM_OVERHEAD = 1024 * 1024


async def _body_within_limits(request: Request) -> None:
    """Refuse an upload far over the limits before it is read, where the client says its
    size; the per-file and total limits are checked exactly once it is read."""
    if request.method != "POST":
        return
    limits = request.app.state.desk.settings.intake.form
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_total_bytes + _FORM_OVERHEAD:
        raise HTTPException(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            detail=f"The complaint is too large. Evidence files may come to at most "
            f"{limits.max_total_bytes // (1024 * 1024)} MB together.",
        )


# The size check comes first: the CSRF check reads the whole form.
router = APIRouter(
    dependencies=[Depends(_body_within_limits), Depends(csrf.protect)], include_in_schema=False
)

FIELDS = ("name", "email", "resources", "category", "description")


def category_choices(desk: Desk) -> list[tuple[str, str]]:
    # DNS load is measured by the provider itself (R11); nobody outside can report it.
    listed = [
        (category.value, rule.label)
        for category, rule in desk.policy.categories.items()
        if category is not Category.DNS_OVERUSE
    ]
    return [*listed, (intake.NOT_SURE, "Not sure: let the abuse desk decide")]


def _form(
    request: Request,
    desk: Desk,
    typed: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = HTTPStatus.OK,
    refused: str = "",
) -> Response:
    limits = desk.settings.intake.form
    context: dict[str, Any] = {
        "title": "Report abuse",
        "typed": typed or {},
        "errors": errors or {},
        "refused": refused,
        "categories": category_choices(desk),
        "limits": limits,
        "max_file_mb": round(limits.max_file_bytes / (1024 * 1024), 1),
        "max_total_mb": round(limits.max_total_bytes / (1024 * 1024), 1),
    }
    response = render(request, "public/report.html", context, status_code=status)
    if status == HTTPStatus.TOO_MANY_REQUESTS:
        response.headers["Retry-After"] = str(int(limits.window.total_seconds()))
    return response


@router.get("/report")
def report_form(request: Request, desk: DeskDep) -> Response:
    return _form(request, desk)


@router.post("/report")
async def file_report(request: Request, desk: DeskDep) -> Response:
    form = await request.form()
    try:
        return await _file(request, desk, form)
    finally:
        await form.close()  # the uploads' spooled temporary files


async def _file(request: Request, desk: Desk, form: FormData) -> Response:
    typed = {name: _text(form.get(name)) for name in FIELDS}
    limits = desk.settings.intake.form
    files = []
    for item in form.getlist("evidence"):
        # A file input left empty still sends a part: no name, no bytes.
        if isinstance(item, UploadFile) and (item.filename or item.size):
            size = item.size or 0
            # A file over the limit is refused whole: read no more of it than shows that.
            data = await item.read(min(size, limits.max_file_bytes) + 1)
            files.append(
                intake.Evidence(
                    item.filename or "evidence",
                    item.content_type or "application/octet-stream",
                    data,
                    max(size, len(data)),
                )
            )
    complaint = intake.Complaint(
        name=typed["name"],
        email=typed["email"],
        resources=typed["resources"],
        category=typed["category"],
        description=typed["description"],
        files=files,
    )
    try:
        done = await run_in_threadpool(
            intake.file_complaint,
            desk.uow,
            complaint,
            # Behind a reverse proxy, run uvicorn with --proxy-headers (and
            # --forwarded-allow-ips) so that this is the client's address, not the proxy's.
            request.client.host if request.client else None,
            limits,
            desk.policy,
            desk.settings.base_url,
            frozenset(desk.settings.intake.trusted_reporters),
        )
    except intake.ComplaintInvalid as exc:
        return _form(request, desk, typed, exc.fields, HTTPStatus.UNPROCESSABLE_ENTITY)
    except intake.TooManyComplaints as exc:
        refused = (
            f"Too many complaints from your address: {exc}. Nothing was stored. "
            "Please try again later, or write to our abuse address."
        )
        return _form(request, desk, typed, {}, HTTPStatus.TOO_MANY_REQUESTS, refused)
    token = done.status_url.rsplit("/", 1)[-1]
    if done.duplicate:
        flash.add(
            request,
            f"We had already received this complaint, as {done.reference}. Its status is below.",
            flash.Level.INFO,
        )
    else:
        flash.add(request, f"Thank you: your complaint is received as {done.reference}.")
    request.session["filed"] = token  # the status page says "keep this link" once, after filing
    return RedirectResponse(f"/report/status/{token}", HTTPStatus.SEE_OTHER)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


# -- the status page ------------------------------------------------------------------------

_STATUS_WORDS: dict[ReportStatus, tuple[str, str]] = {
    ReportStatus.RECEIVED: (
        "Being checked",
        "We have received your complaint and are checking it.",
    ),
    ReportStatus.UNPARSED: (
        "Being checked",
        "We have received your complaint; a member of our abuse desk is reading it.",
    ),
    ReportStatus.DUPLICATE: ("Being checked", "We have received your complaint."),
    ReportStatus.NEEDS_INFO: (
        "More information needed",
        "We cannot act on the complaint yet: it lacks what our policy needs to act on one.",
    ),
    ReportStatus.NOT_OURS: (
        "Not ours",
        "Nothing in the complaint points to a server of ours: the addresses, URLs and domains "
        "it names are not our customers'. Please report it to whoever hosts them.",
    ),
    ReportStatus.ACCEPTED: (
        "Passed to the customer",
        "The complaint is verified and passed to our customer responsible for the server, "
        "who must deal with it under our Acceptable Use Policy.",
    ),
}

_CASE_WORDS = {
    CaseState.OPEN: "Passed to the customer, who must answer it by a deadline.",
    CaseState.ACKNOWLEDGED: "The customer has acknowledged it and is dealing with it.",
    CaseState.FIX_REPORTED: "The customer reports it fixed; we are checking.",
    CaseState.DISCONNECTED: "The service concerned has been disconnected.",
    CaseState.TERMINATED: "The service concerned has been terminated.",
}

_CLOSED_WORDS = {
    Resolution.RESOLVED: "Resolved.",
    Resolution.NO_VIOLATION: "Closed: we found no violation of our policy, so the content stays.",
    Resolution.INVALID: "Closed: the complaint could not be confirmed.",
    Resolution.DUPLICATE: "Handled together with another complaint about the same problem.",
}


def case_words(progress: intake.CaseProgress) -> str:
    if progress.state is CaseState.CLOSED:
        if progress.resolution is not None:
            return _CLOSED_WORDS[progress.resolution]
        return "Closed."
    return _CASE_WORDS[progress.state]


@router.get("/report/status/{token}")
def report_status(request: Request, desk: DeskDep, token: str) -> Response:
    status = intake.complaint_status(desk.uow(), token)
    heading, explanation = _STATUS_WORDS[status.status]
    just_filed = request.session.pop("filed", None) == token
    return render(
        request,
        "public/status.html",
        {
            "title": f"Complaint {status.reference}",
            "complaint": status,
            "heading": heading,
            "explanation": explanation,
            "cases": [case_words(p) for p in status.cases],
            "status_url": f"{desk.settings.base_url}/report/status/{token}",
            "just_filed": just_filed,
        },
    )
