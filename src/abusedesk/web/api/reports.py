"""Reports over the API: a raw message, XARF JSON, or a structured complaint as JSON."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from pydantic import ValidationError as PydanticError

from abusedesk.errors import ValidationError
from abusedesk.intake.choices import ReportSource, ReportStatus
from abusedesk.intake.service import Submitted, structured_message, submit
from abusedesk.policy import Category
from abusedesk.web.api.deps import ActorDep, DeskDep

router = APIRouter(prefix="/reports", tags=["reports"])


class StructuredReport(BaseModel):
    """A complaint in abusedesk's own JSON form."""

    complainant_name: str = Field(min_length=1, max_length=200)
    complainant_email: str = Field(min_length=3, max_length=254)
    description: str = Field(min_length=1, max_length=100_000)
    resources: Annotated[list[str], Field(min_length=1, max_length=1000)] = Field(
        description="addresses, URLs, host names or domains the complaint is about"
    )
    category: Category | None = None
    subject: str = Field(default="", max_length=500)


class SubmittedOut(BaseModel):
    report_id: int
    reference: str = Field(examples=["R-000042"])
    duplicate: bool = Field(description="the same report was received before")
    status: ReportStatus | None
    status_url: str
    cases_opened: list[int]
    cases_attached: list[int]
    missing: list[str] = Field(description="what the complaint lacks to be acted on (R5)")

    @classmethod
    def of(cls, done: Submitted) -> SubmittedOut:
        return cls(
            report_id=done.report_id,
            reference=done.reference,
            duplicate=done.duplicate,
            status=done.status,
            status_url=done.status_url,
            cases_opened=done.cases_opened,
            cases_attached=done.cases_attached,
            missing=list(done.missing),
        )


_RAW_TYPES = {"message/rfc822", "text/plain", "application/octet-stream"}


@router.post(
    "",
    status_code=HTTPStatus.ACCEPTED,
    openapi_extra={
        "requestBody": {
            "content": {
                "message/rfc822": {"schema": {"type": "string", "format": "binary"}},
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/StructuredReport"},
                            {"type": "object", "description": "an XARF v3 or v4 report"},
                        ]
                    }
                },
            },
            "required": True,
        }
    },
)
async def submit_report(request: Request, desk: DeskDep, actor: ActorDep) -> SubmittedOut:
    """Submit a report: a whole mail (`message/rfc822`), an XARF report, or a structured
    complaint (`application/json`). It is stored as received, then verified, located and
    turned into cases; the answer says what became of it."""
    limit = desk.settings.intake.max_message_bytes
    body = await request.body()
    if len(body) > limit:
        raise ValidationError(f"the report is {len(body)} bytes; the limit is {limit}")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        raw = _json_report(body)
    elif kind in _RAW_TYPES:
        raw = body
    else:
        raise ValidationError(
            f"content type {kind or 'none'!r}: send message/rfc822, text/plain or application/json"
        )
    done = submit(
        desk.uow,
        actor,
        raw,
        ReportSource.API,
        desk.policy,
        desk.settings.base_url,
        frozenset(desk.settings.intake.trusted_reporters),
        limit,
    )
    return SubmittedOut.of(done)


def _json_report(body: bytes) -> bytes:
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise ValidationError(f"the body is not JSON: {exc}") from exc
    if isinstance(document, dict) and "complainant_email" in document:
        try:
            structured = StructuredReport.model_validate(document)
        except PydanticError as exc:
            problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
            raise ValidationError("the structured report is invalid", problems) from exc
        return structured_message(
            structured.complainant_name,
            structured.complainant_email,
            structured.description,
            structured.resources,
            structured.category,
            structured.subject,
        )
    return body  # XARF (or anything else): stored as sent, the format parsers decide
