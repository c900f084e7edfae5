"""Submitting a report from the API or the command line: store it, then process it at once so
the caller learns what became of it."""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formataddr

import sqlalchemy as sa
from sqlalchemy.orm import undefer

from abusedesk.accounts.choices import Role
from abusedesk.accounts.permissions import Actor, Permission
from abusedesk.cases.choices import CaseState, Resolution
from abusedesk.cases.models import Case, case_reports
from abusedesk.errors import AbuseDeskError, NotFound, ValidationError
from abusedesk.intake import verify as verifying
from abusedesk.intake.choices import ReportSource, ReportStatus
from abusedesk.intake.formats import ParseError, detect_and_parse
from abusedesk.intake.formats import _extract as extract
from abusedesk.intake.models import Report
from abusedesk.intake.pipeline import process, report_reference
from abusedesk.intake.receive import receive
from abusedesk.intake.settings import FormLimits
from abusedesk.notify.render import duration_words
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
    client_address: str | None = None,
) -> Submitted:
    actor.require(Permission.CASE_OPEN)
    if not raw.strip():
        raise ValidationError("the report is empty")
    if max_bytes is not None and len(raw) > max_bytes:
        raise ValidationError(f"the report is {len(raw)} bytes; the limit is {max_bytes}")
    received = receive(uow_factory(), raw, source, client_address)
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
    attachments: Sequence[Evidence] = (),
) -> bytes:
    """A structured complaint (the API's JSON form, the web form) as the mail a person would
    have written, so that it takes the same path as every other complaint and is stored as
    received. Evidence files travel as the mail's attachments, kept with the raw report."""
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
    files = [hashlib.sha256(a.data).hexdigest() for a in attachments]
    digest = hashlib.sha256("\0".join([name, email, subject, text, *files]).encode()).hexdigest()
    message["Message-ID"] = f"<{digest[:32]}@api.abusedesk.invalid>"
    message.set_content(text)
    for attachment in attachments:
        _attach(message, attachment)
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


# -- the public complaint form ----------------------------------------------------------------

# Who files a web complaint: nobody signed in. Timelines and the audit log name the form.
FORM_ACTOR = Actor(label="public:form", role=Role.ANALYST)
NOT_SURE = "not_sure"  # the form's category choice for "let the desk decide"

_MAX_NAME = 200
_MAX_EMAIL = 254
_MAX_DESCRIPTION = 20_000
_MAX_RESOURCES = 50
_MAX_FILENAME = 200
_MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Evidence:
    """An uploaded evidence file. `size` is the whole upload's; `data` may hold only the first
    bytes of a file over the limit, which is refused without reading the rest."""

    filename: str
    content_type: str
    data: bytes
    size: int


@dataclass(frozen=True, slots=True)
class Complaint:
    """The web form as typed: `resources` one a line, `category` a Category value or NOT_SURE."""

    name: str
    email: str
    resources: str
    category: str
    description: str
    files: Sequence[Evidence] = ()


class ComplaintInvalid(ValidationError):
    """The form cannot be filed as it is: `fields` says, per field, what is wrong."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("the complaint cannot be filed as it is", list(fields.values()))
        self.fields = fields


class TooManyComplaints(AbuseDeskError):
    """One client address has filed as many complaints as the window allows."""

    def __init__(self, limit: int, window: timedelta) -> None:
        super().__init__(
            f"at most {limit} complaints may be filed from one address in {duration_words(window)}"
        )
        self.window = window


def check_complaint(complaint: Complaint, limits: FormLimits) -> tuple[list[str], Category | None]:
    """The resources and category of a complete complaint; ComplaintInvalid with every problem
    otherwise. Pure."""
    problems: dict[str, str] = {}
    name, email = complaint.name.strip(), complaint.email.strip()
    if not name:
        problems["name"] = "Give your name, or the name of the organisation you report for."
    elif len(name) > _MAX_NAME:
        problems["name"] = f"The name is too long (at most {_MAX_NAME} characters)."
    if not email:
        problems["email"] = "Give an e-mail address where we can reach you."
    elif len(email) > _MAX_EMAIL or not verifying.has_contact(email):
        problems["email"] = "That is not an e-mail address we can reply to."
    lines = [line.strip() for line in complaint.resources.splitlines() if line.strip()]
    if not lines:
        problems["resources"] = (
            "Say where the problem is: the IP address, URL or domain, one per line."
        )
    elif len(lines) > _MAX_RESOURCES:
        problems["resources"] = f"At most {_MAX_RESOURCES} lines, please."
    else:
        unknown = [line for line in lines if not any(extract.resources(line)[:3])]
        if unknown:
            problems["resources"] = "Not an IP address, URL or domain: " + ", ".join(unknown[:5])
    category: Category | None = None
    if complaint.category == NOT_SURE:
        category = None
    elif complaint.category in Category.__members__.values():
        category = Category(complaint.category)
    else:
        problems["category"] = "Choose what the complaint is about, or “Not sure”."
    description = complaint.description.strip()
    if not description:
        problems["description"] = "Describe the problem: what happened, and when."
    elif len(description) > _MAX_DESCRIPTION:
        problems["description"] = f"At most {_MAX_DESCRIPTION} characters, please."
    if why := _evidence_problem(complaint.files, category, limits):
        problems["evidence"] = why
    if problems:
        raise ComplaintInvalid(problems)
    return lines, category


def _evidence_problem(
    files: Sequence[Evidence], category: Category | None, limits: FormLimits
) -> str | None:
    if not files:
        return None
    if category is Category.CSAM:
        # Child-abuse material is never stored (DESIGN.md): only where it is.
        return (
            "Do not upload child sexual abuse material: give only where it is (the URL). "
            "No file was kept."
        )
    if len(files) > limits.max_files:
        return f"At most {limits.max_files} files; you chose {len(files)}. No file was kept."
    for item in files:
        if item.size > limits.max_file_bytes:
            return (
                f"{item.filename} is {_size(item.size)}; each file may be at most "
                f"{_size(limits.max_file_bytes)}. No file was kept."
            )
    total = sum(item.size for item in files)
    if total > limits.max_total_bytes:
        return (
            f"The files come to {_size(total)}; together they may be at most "
            f"{_size(limits.max_total_bytes)}. No file was kept."
        )
    return None


def _size(count: int) -> str:
    if count < 1024 * 1024:
        return f"{max(1, round(count / 1024))} KB"
    return f"{count / (1024 * 1024):.1f} MB"


def file_complaint(
    uow_factory: Callable[[], UnitOfWork],
    complaint: Complaint,
    client_address: str | None,
    limits: FormLimits,
    policy: Policy,
    base_url: str,
    trusted: frozenset[str] = frozenset(),
) -> Submitted:
    """A complaint from the public form: checked, counted against its address's rate limit,
    stored as a mail with the evidence attached, then processed like every other complaint.

    Raises ComplaintInvalid (nothing stored) and TooManyComplaints (nothing stored)."""
    resources, category = check_complaint(complaint, limits)
    if client_address:
        # Counted in the database, where the addresses are stored with the reports, not in
        # process memory: the web role runs as several processes behind a load balancer, and
        # a limit kept in each would let a sender through once per process. The count and the
        # insert are not one transaction, so concurrent posts may pass a few over the limit;
        # a rate limit does not need to be exact.
        uow = uow_factory()
        since = uow.clock.now() - limits.window
        if _filed_since(uow, client_address, since) >= limits.per_address:
            raise TooManyComplaints(limits.per_address, limits.window)
    raw = structured_message(
        complaint.name.strip(),
        complaint.email.strip(),
        complaint.description.strip(),
        resources,
        category,
        attachments=complaint.files,
    )
    return submit(
        uow_factory,
        FORM_ACTOR,
        raw,
        ReportSource.FORM,
        policy,
        base_url,
        trusted,
        client_address=client_address,
    )


def _filed_since(uow: UnitOfWork, client_address: str, since: datetime) -> int:
    with uow.reading():
        return (
            uow.session.scalar(
                sa.select(sa.func.count())
                .select_from(Report)
                .where(
                    Report.client_address == client_address,
                    Report.received_at >= since,
                    Report.source == ReportSource.FORM,
                )
            )
            or 0
        )


def _attach(message: EmailMessage, item: Evidence) -> None:
    name = (item.filename.replace("\\", "/").rsplit("/", 1)[-1].strip() or "evidence")[
        :_MAX_FILENAME
    ]
    kind = item.content_type.split(";")[0].strip().lower()
    if kind in ("message/rfc822", "message/global") or name.lower().endswith(".eml"):
        # A forwarded mail stays a mail: the parsers read its headers and links, as they do for
        # a complaint that attaches the spam it received.
        try:
            inner = email.parser.BytesParser(policy=email.policy.default).parsebytes(item.data)
            message.add_attachment(inner, filename=name)
            return
        except Exception:  # noqa: S110 - not a mail after all: kept as plain bytes below
            pass
    maintype, _, subtype = kind.partition("/")
    if not _MEDIA_TYPE.match(kind) or maintype in ("multipart", "message"):
        maintype, subtype = "application", "octet-stream"
    message.add_attachment(item.data, maintype=maintype, subtype=subtype, filename=name)


# -- the complainant's status page ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CaseProgress:
    """How far the case a complaint became has come; nothing about whose case it is."""

    state: CaseState
    resolution: Resolution | None


@dataclass(frozen=True, slots=True)
class ComplaintStatus:
    reference: str
    received_at: datetime
    source: ReportSource
    status: ReportStatus
    subject: str
    description: str
    resources: tuple[str, ...]
    attachments: tuple[str, ...]
    missing: tuple[str, ...]  # what it lacks to be acted on (R5), for needs_info
    cases: tuple[CaseProgress, ...]


def complaint_status(uow: UnitOfWork, token: str) -> ComplaintStatus:
    """What the holder of a complaint's private status link may know: what was received when,
    and what became of it. Never the customer's identity: the cases are states alone.
    Raises NotFound for a token that names no complaint."""
    if not token or len(token) > 64:
        raise NotFound("no such complaint")
    with uow.reading():
        report = uow.session.execute(
            sa.select(Report).where(Report.status_token == token).options(undefer(Report.raw))
        ).scalar_one_or_none()
        if report is None:
            raise NotFound("no such complaint")
        parsed = report.parsed or {}
        findings = [f for f in parsed.get("findings") or [] if isinstance(f, dict)]
        resources: list[str] = []
        for finding in findings:
            for key in ("addresses", "urls", "domains"):
                resources += [str(v) for v in finding.get(key) or []]
        missing: tuple[str, ...] = ()
        if report.status is ReportStatus.NEEDS_INFO:
            try:
                missing = verifying.verify(detect_and_parse(bytes(report.raw))).missing
            except ParseError:
                missing = ()
        cases = uow.session.execute(
            sa.select(Case.state, Case.resolution)
            .join(case_reports, case_reports.c.case_id == Case.id)
            .where(case_reports.c.report_id == report.id)
            .order_by(Case.id)
        ).all()
        return ComplaintStatus(
            reference=report_reference(report.id),
            received_at=report.received_at,
            source=report.source,
            status=report.status,
            subject=str(parsed.get("subject") or ""),
            description="\n\n".join(str(f.get("description") or "") for f in findings).strip(),
            resources=tuple(dict.fromkeys(resources)),
            attachments=_attachment_names(bytes(report.raw)),
            missing=tuple(missing),
            cases=tuple(CaseProgress(state, resolution) for state, resolution in cases),
        )


_NAMES_SHOWN = 50


def _attachment_names(raw: bytes) -> tuple[str, ...]:
    """The names of the files a complaint carried (its top-level attachments)."""
    try:
        message = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
        if not isinstance(message, EmailMessage) or not message.is_multipart():
            return ()
        names = []
        for part in message.iter_attachments():
            names.append(part.get_filename() or part.get_content_type())
            if len(names) >= _NAMES_SHOWN:
                break
        return tuple(names)
    except Exception:  # a message too broken to list: the page shows no files, staff see all
        return ()
