"""Submitting a report from the API or the command line: store it, then process it at once so
the caller learns what became of it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formataddr

import sqlalchemy as sa

from abusedesk.accounts.permissions import Actor, Permission
from abusedesk.errors import ValidationError
from abusedesk.intake.choices import ReportSource, ReportStatus
from abusedesk.intake.models import Report
from abusedesk.intake.pipeline import process, report_reference
from abusedesk.intake.receive import receive
from abusedesk.policy import Category, Policy
from abusedesk.store.uow import UnitOfWork


@dataclass(frozen=True, slots=True)
class Submitted:
    report_id: int
    reference: str
    duplicate: bool
    status: ReportStatus | None
    status_url: str
    cases_opened: list[int] = field(default_factory=list)
    cases_attached: list[int] = field(default_factory=list)
    missing: tuple[str, ...] = ()


def submit(
    uow_factory: Callable[[], UnitOfWork],
    actor: Actor,
    raw: bytes,
    source: ReportSource,
    policy: Policy,
    base_url: str,
    trusted: frozenset[str] = frozenset(),
    max_bytes: int | None = None,
) -> Submitted:
    actor.require(Permission.CASE_OPEN)
    if not raw.strip():
        raise ValidationError("the report is empty")
    if max_bytes is not None and len(raw) > max_bytes:
        raise ValidationError(f"the report is {len(raw)} bytes; the limit is {max_bytes}")
    received = receive(uow_factory(), raw, source)
    status_url = f"{base_url}/report/status/{received.status_token}"
    reference = report_reference(received.report_id)
    if received.duplicate:
        return Submitted(received.report_id, reference, True, None, status_url)
    result = process(uow_factory, received.report_id, policy, base_url, trusted, actor)
    return Submitted(
        received.report_id,
        reference,
        False,
        result.status,
        status_url,
        list(result.cases_opened),
        list(result.cases_attached),
        tuple(result.missing),
    )


def structured_message(
    name: str,
    email: str,
    description: str,
    resources: list[str],
    category: Category | None = None,
    subject: str = "",
) -> bytes:
    """A structured complaint (the API's JSON form) as the mail a person would have written,
    so that it takes the same path as every other complaint and is stored as received."""
    message = EmailMessage()
    message["From"] = formataddr((name, email)) if email else name
    message["To"] = "abuse@desk.invalid"
    message["Subject"] = subject or (
        f"Abuse report: {category.value}" if category else "Abuse report"
    )
    lines = [description.strip(), "", "Reported resources:", *(f"  {r}" for r in resources)]
    if category is not None:
        lines += ["", f"Category: {category.value}"]
    text = "\n".join(lines) + "\n"
    # The same complaint sent twice is one report: its id comes from what it says.
    digest = hashlib.sha256("\0".join([name, email, subject, text]).encode()).hexdigest()
    message["Message-ID"] = f"<{digest[:32]}@api.abusedesk.invalid>"
    message.set_content(text)
    return bytes(message)


def reprocess(
    uow_factory: Callable[[], UnitOfWork],
    actor: Actor,
    policy: Policy,
    base_url: str,
    trusted: frozenset[str] = frozenset(),
    report_id: int | None = None,
) -> dict[str, int]:
    """Staff, after a fix: put reports that could not be parsed (or one named report in that
    state) through the pipeline again. The stored raw message is the input, as the first time."""
    actor.require(Permission.CASE_OPEN)
    with uow_factory() as uow:
        query = sa.select(Report).where(Report.status == ReportStatus.UNPARSED)
        if report_id is not None:
            query = query.where(Report.id == report_id)
        reports = list(uow.session.execute(query.with_for_update()).scalars())
        for report in reports:
            report.status = ReportStatus.RECEIVED
            report.error = None
            uow.audit(actor.label, "report.reprocess", "report", report.id)
        uow.commit()
        ids = [r.id for r in reports]
    outcomes: dict[str, int] = {}
    for rid in ids:
        result = process(uow_factory, rid, policy, base_url, trusted, actor)
        key = result.status.value if result.status else "skipped"
        outcomes[key] = outcomes.get(key, 0) + 1
    return outcomes
