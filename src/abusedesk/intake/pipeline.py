"""What happens to a stored report: parse, verify (R5), locate, classify, cases.

``receive()`` has stored the raw message; ``process()`` takes one stored report to its outcome:

- ``unparsed``: no format understood it; the error is kept for staff, the raw bytes stay.
- ``needs_info``: not verified (R5); the complainant is asked once for what is missing and
  nothing changes for the customer. A reply carrying ``[R-000042]`` in its subject continues
  that complaint: both mails are verified together.
- ``not_ours``: nothing in it locates a customer server, at the time of the event.
- ``accepted``: verified and located; each located, classified finding opened a case or was
  attached to the open one of the same account, category and resource.

Transactions. ``open_case`` runs its own transaction, so ``process`` takes a factory of units
of work rather than one. The report row is claimed first (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, held until the outcome is written, so two workers never process one report); on
SQLite every transaction takes the single write lock (``BEGIN IMMEDIATE``), so the claim is
released before cases are opened and the status is checked again when the outcome is written.
A crash between opening cases and writing the outcome leaves the report ``received``; the next
run attaches it to the same open cases (the case service does not open duplicates).
"""

from __future__ import annotations

import email.parser
import email.policy
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, undefer

from abusedesk.accounts.permissions import SYSTEM, Actor
from abusedesk.cases.service import NewCase, open_case
from abusedesk.intake import classify as classifying
from abusedesk.intake import verify as verifying
from abusedesk.intake.choices import ReportStatus
from abusedesk.intake.formats import Finding, ParsedReport, ParseError, detect_and_parse
from abusedesk.intake.formats.base import ReportFormat
from abusedesk.intake.models import Report
from abusedesk.inventory.locate import Location, locate_in
from abusedesk.notify.choices import MessageTemplate
from abusedesk.notify.outbox import queue_for_complainant
from abusedesk.policy import Category, Policy, Severity
from abusedesk.store.uow import UnitOfWork

ACTOR = "intake:pipeline"
_REFERENCE = re.compile(r"\[\s*R-(\d{1,12})\s*\]", re.IGNORECASE)
# Evidence rows kept per aggregated case: a feed of 100 000 rows must not put them all in one
# timeline entry; the report row keeps everything.
_ROWS_PER_CASE = 20
_SUMMARY_CHARS = 300


def report_reference(report_id: int) -> str:
    """The reference a complainant quotes: ``R-000042``."""
    return f"R-{report_id:06d}"


def parse_reference(text: str) -> int | None:
    """The report id in ``[R-000042]`` within a subject, or None."""
    match = _REFERENCE.search(text or "")
    return int(match.group(1)) if match else None


@dataclass(slots=True)
class ProcessResult:
    report_id: int
    status: ReportStatus | None  # None: not processed (claimed elsewhere, or done already)
    cases_opened: list[int] = field(default_factory=list)
    cases_attached: list[int] = field(default_factory=list)
    missing: tuple[str, ...] = ()
    continues: int | None = None  # the earlier report this one completes
    error: str | None = None


@dataclass(frozen=True, slots=True)
class _Group:
    """Findings that become one case: same account, category and resource."""

    account_id: int
    server_id: int | None
    category: Category
    resource: str
    severity: Severity | None
    reason: str
    findings: list[Finding]


def process(
    uow_factory: Callable[[], UnitOfWork],
    report_id: int,
    policy: Policy,
    settings_base_url: str,
    trusted: frozenset[str] = frozenset(),
    actor: Actor = SYSTEM,
) -> ProcessResult:
    """Take one stored report (status ``received``) to its outcome. See the module doc."""
    with uow_factory() as uow:
        session = uow.session
        report = _claim(session, report_id)
        if report is None:
            return ProcessResult(report_id, None)
        try:
            parsed = detect_and_parse(bytes(report.raw))
        except ParseError as exc:
            report.status = ReportStatus.UNPARSED
            report.error = "; ".join(exc.problems) if exc.problems else str(exc)
            uow.audit(ACTOR, "report.unparsed", "report", report.id, {"error": report.error})
            uow.commit()
            return ProcessResult(report_id, ReportStatus.UNPARSED, error=report.error)

        earlier = _earlier_complaint(session, report, parsed)
        whole = parsed
        if earlier is not None:
            whole = verifying.combine(_parsed_of(earlier), parsed)
        check = verifying.verify(whole, trusted)
        _fill(report, parsed, whole, earlier)
        reference = report_reference(earlier.id if earlier is not None else report.id)

        if not check.verified:
            _ask_for_more(uow, report, whole, check, reference, settings_base_url)
            uow.commit()
            return ProcessResult(
                report_id,
                ReportStatus.NEEDS_INFO,
                missing=check.missing,
                continues=earlier.id if earlier else None,
            )

        groups = _locate_and_classify(session, whole, report.received_at)
        if not groups.located:
            report.status = ReportStatus.NOT_OURS
            _close_earlier(uow, earlier, report.id, ReportStatus.NOT_OURS)
            uow.audit(ACTOR, "report.not_ours", "report", report.id, {"format": whole.format})
            uow.commit()
            return ProcessResult(
                report_id, ReportStatus.NOT_OURS, continues=earlier.id if earlier else None
            )

        earlier_id = earlier.id if earlier is not None else None
        report_ids = [report.id] + ([earlier_id] if earlier_id is not None else [])
        if session.get_bind().dialect.name != "postgresql":
            # SQLite: this transaction holds the database's only write lock; open_case needs
            # it. Nothing loaded may be touched until the report is claimed again below.
            uow.rollback()
        result = ProcessResult(report_id, ReportStatus.ACCEPTED, continues=earlier_id)
        for group in groups.groups:
            new = _new_case(group, whole, report_ids, policy)
            opened = open_case(uow_factory(), actor, new, policy)
            (result.cases_opened if opened.created else result.cases_attached).append(
                opened.case.id
            )

        report = _claim(session, report_id)
        if report is None:  # SQLite only: another worker wrote an outcome meanwhile
            return ProcessResult(report_id, None)
        _fill(report, parsed, whole, earlier)
        report.status = ReportStatus.ACCEPTED
        if earlier is not None:
            _close_earlier(uow, session.get(Report, earlier.id), report.id, ReportStatus.ACCEPTED)
        if _should_acknowledge(report, whole, check):
            queue_for_complainant(
                session,
                whole.reporter_email,
                MessageTemplate.COMPLAINANT_ACK,
                {
                    "ticket": reference,
                    "resource": groups.groups[0].resource if groups.groups else "",
                    "status_url": _status_url(settings_base_url, earlier or report),
                },
                uow.clock.now(),
            )
        uow.audit(
            ACTOR,
            "report.accepted",
            "report",
            report.id,
            {
                "format": whole.format,
                "trusted": check.trusted,
                "cases_opened": result.cases_opened,
                "cases_attached": result.cases_attached,
                "ignored": groups.ignored,
                "continues": earlier.id if earlier else None,
            },
        )
        uow.commit()
        return result


def process_pending(
    uow_factory: Callable[[], UnitOfWork],
    policy: Policy,
    base_url: str,
    trusted: frozenset[str] = frozenset(),
    batch: int = 100,
) -> dict[str, int]:
    """Every report still ``received``, oldest first, at most ``batch`` of them; counts per
    outcome. The worker calls it each tick; each report is claimed as it is processed, so
    workers running at once share the work and none is processed twice."""
    with uow_factory().reading() as uow:
        ids = list(
            uow.session.execute(
                sa.select(Report.id)
                .where(Report.status == ReportStatus.RECEIVED)
                .order_by(Report.received_at, Report.id)
                .limit(batch)
            ).scalars()
        )
    counts: dict[str, int] = {}
    for report_id in ids:
        outcome = process(uow_factory, report_id, policy, base_url, trusted)
        key = outcome.status.value if outcome.status else "skipped"
        counts[key] = counts.get(key, 0) + 1
    return counts


# --- steps -------------------------------------------------------------------------------


def _claim(session: Session, report_id: int) -> Report | None:
    return session.execute(
        sa.select(Report)
        .where(Report.id == report_id, Report.status == ReportStatus.RECEIVED)
        .options(undefer(Report.raw))
        # FOR NO KEY UPDATE: open_case, in another transaction, links the case to this row,
        # and the foreign key check takes a KEY SHARE lock that FOR UPDATE would block.
        .with_for_update(skip_locked=True, key_share=True)
    ).scalar_one_or_none()


def _parsed_of(report: Report) -> ParsedReport:
    """An earlier report's parse, from its raw bytes (the stored JSON is for people to read)."""
    return detect_and_parse(bytes(report.raw))


def _earlier_complaint(session: Session, report: Report, parsed: ParsedReport) -> Report | None:
    """The complaint this mail continues: the one its subject's ``[R-…]`` names, if that one is
    still waiting for information, and came from the same sender (references are sequential,
    so anyone could guess one; only its complainant may complete it)."""
    earlier_id = parse_reference(parsed.subject)
    if earlier_id is None or earlier_id == report.id:
        return None
    earlier = session.execute(
        sa.select(Report).where(Report.id == earlier_id).options(undefer(Report.raw))
    ).scalar_one_or_none()
    if earlier is None or earlier.status is not ReportStatus.NEEDS_INFO:
        return None
    known = earlier.complainant_email.strip().lower()
    if known and known != parsed.reporter_email.strip().lower():
        return None
    return earlier


def _fill(
    report: Report, parsed: ParsedReport, whole: ParsedReport, earlier: Report | None
) -> None:
    data = parsed.as_json()
    if earlier is not None:
        data["continues"] = earlier.id
    report.format = parsed.format.value
    report.parsed = data
    # The complainant stays on the report row, never on the case (hide_complainant).
    report.complainant_name = whole.reporter_name[:200]
    report.complainant_email = whole.reporter_email[:254]
    report.error = None


def _ask_for_more(
    uow: UnitOfWork,
    report: Report,
    whole: ParsedReport,
    check: verifying.Verification,
    reference: str,
    base_url: str,
) -> None:
    report.status = ReportStatus.NEEDS_INFO
    replied = check.can_reply and not _auto_submitted(bytes(report.raw))
    if replied:
        queue_for_complainant(
            uow.session,
            whole.reporter_email,
            MessageTemplate.NEEDS_INFO,
            {
                "ticket": reference,
                "missing": list(check.missing),
                "status_url": _status_url(base_url, report),
            },
            uow.clock.now(),
        )
    uow.audit(
        ACTOR,
        "report.needs_info",
        "report",
        report.id,
        {"missing": list(check.missing), "asked": replied, "format": whole.format},
    )


def _close_earlier(
    uow: UnitOfWork, earlier: Report | None, later_id: int, status: ReportStatus
) -> None:
    """The earlier half of a completed complaint takes the outcome of the whole."""
    if earlier is None or earlier.status is not ReportStatus.NEEDS_INFO:
        return
    earlier.status = status
    uow.audit(ACTOR, f"report.{status.value}", "report", earlier.id, {"completed_by": later_id})


@dataclass(slots=True)
class _Located:
    groups: list[_Group]
    located: int  # findings that located a customer (a kept-only finding counts)
    ignored: int  # findings nobody owns


# Formats that list many findings, one per row: their cases are per server and category.
_FEEDS = frozenset({ReportFormat.SHADOWSERVER, ReportFormat.CLEANMX})


def _locate_and_classify(session: Session, parsed: ParsedReport, received_at: datetime) -> _Located:
    text = ""
    if parsed.format is ReportFormat.HUMAN:
        # A person's complaint is one story even when told across several mails and findings.
        text = "\n".join([parsed.subject, *(f.description for f in parsed.findings)])
    groups: dict[tuple[int, Category, str], _Group] = {}
    located = ignored = 0
    for finding in parsed.findings:
        at = finding.event_time or parsed.received_time or received_at
        places = _locations(session, finding, at)
        if not places:
            if finding.addresses or finding.urls or finding.domains:
                ignored += 1
            continue
        located += 1
        verdict = classifying.classify(parsed.format, finding, text)
        if verdict.category is None:
            continue  # kept on the report, no case (e.g. an ARF auth-failure)
        for target, place in places:
            # A feed aggregates per server: 100 000 rows about one server and category are one
            # case. A single report keeps what it named (an address, a URL) as the resource.
            by_server = parsed.format in _FEEDS
            resource = place.hostname if by_server and place.hostname else target
            key = (place.account_id, verdict.category, resource)
            group = groups.get(key)
            if group is None:
                group = _Group(
                    place.account_id,
                    place.server_id,
                    verdict.category,
                    resource,
                    verdict.severity,
                    verdict.reason,
                    [],
                )
                groups[key] = group
            group.findings.append(finding)
    return _Located(list(groups.values()), located, ignored)


def _locations(session: Session, finding: Finding, at: datetime) -> list[tuple[str, Location]]:
    """Per account, the first of the finding's targets it owns (addresses first: they are what
    a report is surest of), so one finding makes one case per customer concerned."""
    seen: dict[int, tuple[str, Location]] = {}
    for target in _targets(finding):
        place = locate_in(session, target, at)
        if place is not None and place.account_id not in seen:
            seen[place.account_id] = (target, place)
    return list(seen.values())


def _targets(finding: Finding) -> Iterable[str]:
    return dict.fromkeys([*finding.addresses, *finding.urls, *finding.domains])


def _new_case(group: _Group, whole: ParsedReport, report_ids: list[int], policy: Policy) -> NewCase:
    hide = policy.rule(group.category).hide_complainant
    first = group.findings[0]
    rows = [_scrub(f.evidence, whole, hide) for f in group.findings[:_ROWS_PER_CASE]]
    evidence: dict[str, Any] = {
        "format": whole.format.value,
        "kind": first.kind,
        "event_time": first.event_time.isoformat() if first.event_time else None,
        "port": first.port,
        "findings": len(group.findings),
        "classification": group.reason,
        "rows": rows,
    }
    if not hide:
        # DMCA (512(c)(3)): the notice goes to the customer as sent, complainant included.
        evidence["complainant"] = {"name": whole.reporter_name, "email": whole.reporter_email}
    description = first.description.strip() or first.kind or group.category.value
    summary = _redact(description, whole) if hide else description
    if len(group.findings) > 1:
        summary = f"{len(group.findings)} findings: {summary}"
    return NewCase(
        account_id=group.account_id,
        category=group.category,
        server_id=group.server_id,
        resource=group.resource,
        severity=group.severity,
        summary=summary[:_SUMMARY_CHARS],
        report_ids=report_ids,
        evidence=evidence,
    )


def _redact(text: str, whole: ParsedReport) -> str:
    for secret in (whole.reporter_email, whole.reporter_name):
        if secret.strip():
            text = re.sub(re.escape(secret.strip()), "[complainant]", text, flags=re.IGNORECASE)
    return text


def _scrub(evidence: dict[str, Any], whole: ParsedReport, hide: bool) -> dict[str, Any]:
    if not hide:
        return evidence
    # A person's complaint lists the complainant's own addresses as evidence: not for the
    # customer's eyes. Other strings are redacted where they name the complainant.
    out: dict[str, Any] = {}
    for key, value in evidence.items():
        if key == "emails":
            continue
        out[key] = _redact(value, whole) if isinstance(value, str) else value
    return out


def _should_acknowledge(report: Report, whole: ParsedReport, check: verifying.Verification) -> bool:
    """Only people get an acknowledgement: never a feed, never mail that is itself automatic
    (RFC 3834), and never an address that cannot take a reply."""
    return (
        not check.machine
        and verifying.has_contact(whole.reporter_email)
        and not _auto_submitted(bytes(report.raw))
    )


def _auto_submitted(raw: bytes) -> bool:
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0][:65536]
    try:
        headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(head)
    except Exception:  # a header block too broken to read: treat as a person's mail
        return False
    value = str(headers.get("Auto-Submitted", "no")).strip().lower()
    return not value.startswith("no")


def _status_url(base_url: str, report: Report) -> str:
    return f"{base_url.rstrip('/')}/report/status/{report.status_token}"
