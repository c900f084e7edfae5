"""What happens to a stored report: parse, verify (R5), locate, classify, cases.

``receive()`` has stored the raw message; ``process()`` takes one stored report to its outcome:

- ``unparsed``: no format understood it; the error is kept for staff, the raw bytes stay.
- ``needs_info``: not verified (R5); the complainant is asked once for what is missing and
  nothing changes for the customer. A reply carrying ``[R-000042]`` in its subject continues
  that complaint: both mails are verified together.
- ``not_ours``: nothing in it locates a customer server, at the time of the event.
- ``accepted``: verified and located; each located, classified finding opened a case or was
  attached to the open one of the same account, category and resource.

Transactions. A report goes to its outcome in one transaction: the claim of its row
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two workers never process one report), the parse,
its cases (``open_or_attach_many``: the case service's rules, in this transaction), the outcome
and the audit entries land together or not at all; a crash leaves the report ``received``, to
be taken again. ``process_pending`` takes a few reports in one transaction, each in a savepoint
of its own, so that one that fails is undone alone. A reply threaded into its cases (below)
goes through the case service's own transactions, so ``process`` takes a factory of units of
work; on SQLite, where every transaction takes the single write lock, its claim is released
first and the status checked again when the outcome is written.

Replies. Before any format is tried, a mail whose subject carries a case's ticket tag
(``[AD-000123]``, or loosely ``AD-123``) from a contact or customer user of the case's account,
or from the complainant of a report linked to the case, is threaded into that case instead of
being read as a new complaint (``threaded``): the customer's words are the case service's
``customer_contact`` event, the complainant's a staff-only ``complainant_message`` line. A
reply to the acknowledgement of a report that went to several cases (``[R-000042]``, from its
complainant) is threaded into each of them. Tagged mail from anyone else, or naming a case that
does not exist, is read as a complaint like any other. Nothing answers a threaded mail.
"""

from __future__ import annotations

import email.parser
import email.policy
import gc
import logging
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session, undefer

from abusedesk.accounts.choices import Role
from abusedesk.accounts.models import User
from abusedesk.accounts.permissions import SYSTEM, Actor
from abusedesk.cases import machine
from abusedesk.cases.choices import Event
from abusedesk.cases.models import Case, case_reports, ticket_tag
from abusedesk.cases.service import (
    NewCase,
    Opened,
    add_note,
    count_opened,
    open_or_attach_many,
    record_complainant_message,
    transition,
)
from abusedesk.errors import InvalidTransition
from abusedesk.intake import classify as classifying
from abusedesk.intake import replies
from abusedesk.intake import verify as verifying
from abusedesk.intake.choices import ReplyFrom, ReportStatus
from abusedesk.intake.formats import Finding, ParsedReport, ParseError, detect_and_parse
from abusedesk.intake.formats.base import FeedRows, ReportFormat
from abusedesk.intake.locate import locate_findings, locate_rows
from abusedesk.intake.models import Report
from abusedesk.inventory.locate import hold_index
from abusedesk.inventory.models import Contact
from abusedesk.notify.choices import MessageTemplate
from abusedesk.notify.models import OutboxMessage
from abusedesk.notify.outbox import complainant_row, queue_for_complainant
from abusedesk.policy import Category, Policy, Severity
from abusedesk.store.uow import UnitOfWork

log = logging.getLogger(__name__)

ACTOR = "intake:pipeline"
# Evidence rows kept per aggregated case: a feed of 100 000 rows must not put them all in one
# timeline entry; the raw report keeps everything.
_ROWS_PER_CASE = 20
# Findings kept in a report row's JSON (for the staff's pages); the raw report has them all,
# and `findings_total` says how many there are.
_FINDINGS_KEPT = 1000
_SUMMARY_CHARS = 300


_pauses = 0
_pauses_lock = threading.Lock()
_collector_was_on = True


@contextmanager
def _cycle_collection_paused() -> Iterator[None]:
    """Reading a feed makes hundreds of thousands of small objects (each row's cells, address
    and time) and none of them forms a cycle; reference counting frees them all. Python's cycle
    collector would nonetheless walk the growing heap again and again while they are made,
    which took a third of the time of a 100 000-row report. So it waits for the parse and the
    location to end. It is one switch for the whole process: threads share a count, the last
    one out switches it back on, and a collector someone else had switched off stays off."""
    global _pauses, _collector_was_on
    with _pauses_lock:
        if _pauses == 0:
            _collector_was_on = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _pauses_lock:
            _pauses -= 1
            if _pauses == 0 and _collector_was_on:
                gc.enable()


def report_reference(report_id: int) -> str:
    """The reference a complainant quotes: ``R-000042``."""
    return f"R-{report_id:06d}"


def parse_reference(text: str) -> int | None:
    """The report id in ``[R-000042]`` within a subject, or None."""
    return replies.report_tag(text)


@dataclass(slots=True)
class ProcessResult:
    report_id: int
    status: ReportStatus | None  # None: not processed (claimed elsewhere, or done already)
    cases_opened: list[int] = field(default_factory=list)
    cases_attached: list[int] = field(default_factory=list)
    missing: tuple[str, ...] = ()
    continues: int | None = None  # the earlier report this one completes
    error: str | None = None
    threaded: list[int] = field(default_factory=list)  # the cases a reply went to


@dataclass(slots=True)
class _Group:
    """Findings that become one case: same account, category and resource. Only the first
    few are kept (the case's evidence shows no more); ``count`` is how many there were."""

    account_id: int
    server_id: int | None
    category: Category
    resource: str
    severity: Severity | None
    reason: str
    findings: list[Finding]
    count: int = 0

    def add(self, finding: Finding) -> None:
        if len(self.findings) < _ROWS_PER_CASE:
            self.findings.append(finding)
        self.count += 1


def process(
    uow_factory: Callable[[], UnitOfWork],
    report_id: int,
    policy: Policy,
    settings_base_url: str,
    trusted: frozenset[str] = frozenset(),
    actor: Actor = SYSTEM,
) -> ProcessResult:
    """Take one stored report (status ``received``) to its outcome. See the module doc."""
    """Take one stored report (status ``received``) to its outcome, in one transaction (a
    reply threaded into its cases takes the case service's own). See the module doc."""
    with uow_factory() as uow:
        done = _process_in(uow, report_id, policy, settings_base_url, trusted, actor)
        if done.thread is not None:
            raw, reply, thread = done.thread
            return _thread(uow_factory, uow, report_id, raw, reply, thread, policy, actor)
        if done.result.status is not None:
            uow.commit()
    count_opened(done.opened)
    return done.result


@dataclass(slots=True)
class _Done:
    """What ``_process_in`` did in the caller's transaction, which the caller commits."""

    result: ProcessResult
    opened: list[Opened] = field(default_factory=list)
    # A reply to thread into its cases (raw, reply, where): the case service's transactions.
    thread: tuple[bytes, replies.Reply, _Thread] | None = None


def _process_in(
    uow: UnitOfWork,
    report_id: int,
    policy: Policy,
    settings_base_url: str,
    trusted: frozenset[str],
    actor: Actor,
    claimed: Report | None = None,
) -> _Done:
    """``process``'s work on one report within ``uow``; nothing is committed. ``claimed``: the
    report's row, claimed already in this transaction."""
    session = uow.session
    report = claimed if claimed is not None else _claim(session, report_id)
    if report is None:
        return _Done(ProcessResult(report_id, None))
    raw = bytes(report.raw)
    reply = replies.read_reply(raw)
    thread = None
    if reply is not None:
        # The worker writes a batch's outcomes without autoflush (process_pending); who may
        # reply is read from what the reports before this one wrote.
        session.flush()
        thread = _thread_of(session, report, reply)
    if reply is not None and thread is not None:
        return _Done(ProcessResult(report_id, None), thread=(raw, reply, thread))
    try:
        with _cycle_collection_paused():
            parsed = detect_and_parse(raw)
    except ParseError as exc:
        report.status = ReportStatus.UNPARSED
        report.error = "; ".join(exc.problems) if exc.problems else str(exc)
        uow.audit(ACTOR, "report.unparsed", "report", report.id, {"error": report.error})
        return _Done(ProcessResult(report_id, ReportStatus.UNPARSED, error=report.error))

    earlier = _earlier_complaint(session, report, parsed)
    whole = parsed
    if earlier is not None:
        whole = verifying.combine(_parsed_of(earlier), parsed)
    check = verifying.verify(whole, trusted)
    # Made once: a feed's JSON is large, and on SQLite the row is written after a rollback.
    data = _parsed_json(parsed, earlier)
    reference = report_reference(earlier.id if earlier is not None else report.id)

    if not check.verified:
        _fill(report, data, whole)
        _ask_for_more(uow, report, whole, check, reference, settings_base_url)
        return _Done(
            ProcessResult(
                report_id,
                ReportStatus.NEEDS_INFO,
                missing=check.missing,
                continues=earlier.id if earlier else None,
            )
        )

    with _cycle_collection_paused():
        groups = _locate_and_classify(session, whole, report.received_at)
    if not groups.located:
        _fill(report, data, whole)
        report.status = ReportStatus.NOT_OURS
        _close_earlier(uow, earlier, report.id, ReportStatus.NOT_OURS)
        uow.audit(ACTOR, "report.not_ours", "report", report.id, {"format": whole.format})
        return _Done(
            ProcessResult(
                report_id, ReportStatus.NOT_OURS, continues=earlier.id if earlier else None
            )
        )

    earlier_id = earlier.id if earlier is not None else None
    report_ids = [report.id] + ([earlier_id] if earlier_id is not None else [])
    result = ProcessResult(report_id, ReportStatus.ACCEPTED, continues=earlier_id)
    redact = _redactor(whole)
    news = [_new_case(group, whole, report_ids, policy, redact) for group in groups.groups]
    # In this transaction: the report's cases and its outcome land together or not at all.
    opened_all = open_or_attach_many(uow, actor, news, policy)
    for opened in opened_all:
        (result.cases_opened if opened.created else result.cases_attached).append(opened.case.id)

    _fill(report, data, whole)
    report.status = ReportStatus.ACCEPTED
    if earlier_id is not None:
        _close_earlier(uow, session.get(Report, earlier_id), report.id, ReportStatus.ACCEPTED)
    if _should_acknowledge(report, whole, check):
        # The case's own tag when the complaint went to one case, so that the complainant's
        # answer lands on it; the report's reference when it went to several.
        cases = list(dict.fromkeys(result.cases_opened + result.cases_attached))
        one = cases[0] if len(cases) == 1 else None
        ack = complainant_row(
            whole.reporter_email,
            MessageTemplate.COMPLAINANT_ACK,
            {
                "ticket": ticket_tag(one) if one is not None else reference,
                "report": reference,
                "resource": groups.groups[0].resource if groups.groups else "",
                "status_url": _status_url(
                    settings_base_url,
                    session.get_one(Report, earlier_id) if earlier_id is not None else report,
                ),
            },
            uow.clock.now(),
            case_id=one,
        )
        uow.insert_later(OutboxMessage, ack)
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
            "continues": earlier_id,
        },
    )
    return _Done(result, opened_all)


def process_pending(
    uow_factory: Callable[[], UnitOfWork],
    policy: Policy,
    base_url: str,
    trusted: frozenset[str] = frozenset(),
    batch: int = 100,
) -> dict[str, int]:
    """Every report still ``received``, oldest first, at most ``batch`` of them; counts per
    outcome. The worker calls it each tick. Reports are taken ``_PER_TRANSACTION`` at a time in
    one transaction (one claim for them all, one prefix-index freshness check, one audit seal,
    one commit). If any of them breaks the pipeline (a bug, a database hiccup), the whole
    transaction is undone and each of its reports is taken again alone (``process``): the one
    that breaks is undone alone and stays ``received``, to be tried again on the next tick, and
    does not hold up those behind it. (A savepoint per report would do the same without the
    second pass, at a cost paid by every report rather than by the rare failure.)
    Transactions stay short, so that on SQLite the listener's stores are not kept waiting. A
    reply threaded into cases is taken alone afterwards (``process``)."""
    counts: dict[str, int] = {}

    def count(result: ProcessResult | None) -> None:
        key = "failed" if result is None else (result.status.value if result.status else "skipped")
        counts[key] = counts.get(key, 0) + 1

    # Read first, without a write lock: an idle worker asks every tick, and on SQLite a claim
    # would take the database's one write lock from the listener each time.
    with uow_factory().reading() as uow:
        ids = list(uow.session.execute(_WAITING, {"batch": batch}).scalars())
    for start in range(0, len(ids), _PER_TRANSACTION):
        chunk = ids[start : start + _PER_TRANSACTION]
        alone: list[int] = []
        done: list[_Done] = []
        try:
            with uow_factory() as uow:
                claimed = _claim_many(uow.session, chunk)
                hold_index(uow.session)
                # Taken meanwhile by another worker, or done already: skipped, as by `process`.
                taken = {report.id for report in claimed}
                done = [_Done(ProcessResult(i, None)) for i in chunk if i not in taken]
                for report in claimed:
                    with uow.session.no_autoflush:
                        one = _process_in(
                            uow, report.id, policy, base_url, trusted, SYSTEM, claimed=report
                        )
                    if one.thread is not None:
                        alone.append(report.id)
                    else:
                        done.append(one)
                uow.commit()
        except Exception:
            # Nothing of the chunk landed; each is tried alone, and the one that breaks fails
            # alone.
            log.warning(
                "intake: a batch of %d reports failed; taking each alone", len(chunk), exc_info=True
            )
            alone, done = chunk, []
        for one in done:
            count_opened(one.opened)
            count(one.result)
        for report_id in alone:
            try:
                count(process(uow_factory, report_id, policy, base_url, trusted))
            except Exception:
                log.exception(
                    "intake: report %d could not be processed; it will be retried", report_id
                )
                count(None)
    return counts


# Reports taken to their outcomes in one transaction by the worker.
_PER_TRANSACTION = 10


# --- steps -------------------------------------------------------------------------------


def _claim_many(session: Session, report_ids: Sequence[int]) -> list[Report]:
    """``_claim`` for several reports in one query, oldest first: those still ``received`` and
    (on PostgreSQL) not held by another worker."""
    return list(session.execute(_CLAIM_MANY, {"ids": list(report_ids)}).scalars())


# The worker's statements, built once: an idle worker asks for waiting reports every tick, and
# under load it claims a few at a time; building each statement anew cost more than running it.
# On the table, not the mapped class: a Core statement skips the ORM's execution machinery,
# which was most of the cost of an idle poll.
_WAITING = (
    sa.select(Report.__table__.c.id)
    .where(Report.__table__.c.status == ReportStatus.RECEIVED)
    .order_by(Report.__table__.c.received_at, Report.__table__.c.id)
    .limit(sa.bindparam("batch"))
)
_CLAIM_MANY = (
    sa.select(Report)
    .where(
        Report.id.in_(sa.bindparam("ids", expanding=True)),
        Report.status == ReportStatus.RECEIVED,
    )
    .order_by(Report.received_at, Report.id)
    .options(undefer(Report.raw))
    .with_for_update(skip_locked=True, key_share=True)
)


def _claim(session: Session, report_id: int) -> Report | None:
    return session.execute(
        sa.select(Report)
        .where(Report.id == report_id, Report.status == ReportStatus.RECEIVED)
        .options(undefer(Report.raw))
        # FOR NO KEY UPDATE: the case service (a threaded reply's, in another transaction)
        # links the case to this row, and the foreign key check takes a KEY SHARE lock that
        # FOR UPDATE would block.
        .with_for_update(skip_locked=True, key_share=True)
    ).scalar_one_or_none()


@dataclass(frozen=True, slots=True)
class _Thread:
    """Where a reply goes, and who wrote it."""

    party: ReplyFrom
    case_ids: tuple[int, ...]
    account_id: int | None = None  # the customer's account
    user_id: int | None = None  # the customer user who wrote, when it was one


def _thread_of(session: Session, report: Report, reply: replies.Reply) -> _Thread | None:
    """The case(s) a tagged mail answers, if its sender may write about them: a contact or
    customer user of the case's account, or the complainant of a report linked to the case. A
    From header proves little, but what a threaded mail can do is small: a line on the timeline
    and the "customer made contact" mark, which no enforcement step takes on its own."""
    sender = reply.sender
    if not sender:
        return None
    if reply.case_id is not None:
        case = session.get(Case, reply.case_id)
        if case is not None:
            contact = session.scalar(
                sa.select(Contact.id).where(
                    Contact.account_id == case.account_id, sa.func.lower(Contact.email) == sender
                )
            )
            user = session.scalar(
                sa.select(User.id).where(
                    User.account_id == case.account_id,
                    User.is_active.is_(True),
                    sa.func.lower(User.email) == sender,
                )
            )
            if contact is not None or user is not None:
                return _Thread(ReplyFrom.CUSTOMER, (case.id,), case.account_id, user)
            complained = session.scalar(
                sa.select(Report.id)
                .join(case_reports, case_reports.c.report_id == Report.id)
                .where(
                    case_reports.c.case_id == case.id,
                    sa.func.lower(Report.complainant_email) == sender,
                )
                .limit(1)
            )
            if complained is not None:
                return _Thread(ReplyFrom.COMPLAINANT, (case.id,))
    if reply.report_id is not None and reply.report_id != report.id:
        # The acknowledgement of a complaint that went to several cases carries its report's
        # reference; its complainant's answer goes to each of them. (A report still waiting
        # for information is continued by the answer instead: see _earlier_complaint.)
        earlier = session.get(Report, reply.report_id)
        if (
            earlier is not None
            and earlier.status is ReportStatus.ACCEPTED
            and earlier.complainant_email.strip().lower() == sender
        ):
            cases = session.execute(
                sa.select(case_reports.c.case_id)
                .where(case_reports.c.report_id == earlier.id)
                .order_by(case_reports.c.case_id)
            ).scalars()
            found = tuple(cases)
            if found:
                return _Thread(ReplyFrom.COMPLAINANT, found)
    return None


def _thread(
    uow_factory: Callable[[], UnitOfWork],
    uow: UnitOfWork,
    report_id: int,
    raw: bytes,
    reply: replies.Reply,
    thread: _Thread,
    policy: Policy,
    actor: Actor,
) -> ProcessResult:
    """Put a reply on the timelines of its cases, through the case service, and record on the
    report row where it went."""
    text = reply.text(raw) or f"(no text; the subject was: {reply.subject})"
    _release_on_sqlite(uow)
    for case_id in thread.case_ids:
        if thread.party is ReplyFrom.CUSTOMER:
            customer = Actor(
                label=f"customer:{reply.sender}",
                role=Role.CUSTOMER,
                user_id=thread.user_id,
                account_id=thread.account_id,
            )
            if reply.auto_submitted:
                # An out-of-office notice or a ticket robot is not the customer making contact:
                # it is kept on the timeline, and the case's contact mark stays as it was.
                add_note(uow_factory(), customer, case_id, text)
                continue
            try:
                transition(
                    uow_factory(),
                    customer,
                    case_id,
                    machine.Command(Event.CUSTOMER_CONTACT, reason=text),
                    policy,
                )
            except InvalidTransition:
                # The case has ended: the customer's words are kept on it all the same.
                add_note(uow_factory(), customer, case_id, text)
        else:
            writer = Actor(label=f"complainant:{reply.sender}", role=actor.role)
            data = {
                "report": report_id,
                "subject": reply.subject[:500],
                "auto_submitted": reply.auto_submitted,
            }
            record_complainant_message(uow_factory(), writer, case_id, text, data)

    session = uow.session
    report = _claim(session, report_id)
    if report is None:  # SQLite only: another worker wrote an outcome meanwhile
        return ProcessResult(report_id, None)
    threaded = {
        "from": thread.party.value,
        "cases": list(thread.case_ids),
        "tickets": [ticket_tag(c) for c in thread.case_ids],
        "auto_submitted": reply.auto_submitted,
    }
    report.status = ReportStatus.THREADED
    report.parsed = {
        "subject": reply.subject,
        "message_id": reply.message_id,
        "sender": reply.sender,
        "findings": [],
        "threaded": threaded,
    }
    if thread.party is ReplyFrom.COMPLAINANT:
        report.complainant_name = reply.sender_name[:200]
        report.complainant_email = reply.sender[:254]
    report.error = None
    uow.audit(ACTOR, "report.threaded", "report", report.id, threaded)
    uow.commit()
    return ProcessResult(report_id, ReportStatus.THREADED, threaded=list(thread.case_ids))


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


def _parsed_json(parsed: ParsedReport, earlier: Report | None) -> dict[str, Any]:
    data = parsed.as_json(max_findings=_FINDINGS_KEPT)
    if earlier is not None:
        data["continues"] = earlier.id
    return data


def _fill(report: Report, data: dict[str, Any], whole: ParsedReport) -> None:
    report.format = str(data["format"])
    report.parsed = data
    # The complainant stays on the report row, never on the case (hide_complainant).
    report.complainant_name = whole.reporter_name[:200]
    report.complainant_email = whole.reporter_email[:254]
    report.error = None


def _release_on_sqlite(uow: UnitOfWork) -> None:
    """SQLite: this transaction holds the database's only write lock, which the case service's
    own transactions need. Nothing loaded may be touched until the report is claimed again."""
    if uow.session.get_bind().dialect.name != "postgresql":
        uow.rollback()


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
    default_at = parsed.received_time or received_at
    rows = parsed.findings
    if isinstance(rows, FeedRows) and not rows.names:
        return _locate_rows(session, parsed.format, rows, default_at)
    groups: dict[tuple[int, Category, str], _Group] = {}
    verdicts: dict[tuple[Category | None, str], classifying.Classification] = {}
    located = ignored = 0
    # A feed aggregates per server: 100 000 rows about one server and category are one case.
    # A single report keeps what it named (an address, a URL) as the resource.
    by_server = parsed.format in _FEEDS
    where = locate_findings(session, parsed.findings, default_at)
    for i, finding in enumerate(parsed.findings):
        first = where.place[i]
        if first is None:
            if finding.addresses or finding.urls or finding.domains:
                ignored += 1
            continue
        located += 1
        # A finding whose format names its category or type is classified by that alone
        # (classify's first and Shadowserver rules): one verdict serves a feed's every row.
        same = finding.category is not None or parsed.format is ReportFormat.SHADOWSERVER
        verdict = verdicts.get((finding.category, finding.kind)) if same else None
        if verdict is None:
            verdict = classifying.classify(parsed.format, finding, text)
            if same:
                verdicts[(finding.category, finding.kind)] = verdict
        category = verdict.category
        if category is None:
            continue  # kept on the report, no case (e.g. an ARF auth-failure)
        for target, place in where.several.get(i) or ((where.target[i] or "", first),):
            resource = place.hostname if by_server and place.hostname else target
            key = (place.account_id, category, resource)
            group = groups.get(key)
            if group is None:
                group = groups[key] = _Group(
                    place.account_id,
                    place.server_id,
                    category,
                    resource,
                    verdict.severity,
                    verdict.reason,
                    [],
                )
            group.add(finding)
    return _Located(list(groups.values()), located, ignored)


def _locate_rows(
    session: Session, report_format: ReportFormat, rows: FeedRows, default_at: datetime
) -> _Located:
    """A feed of rows that each name one address: located in one vectorised lookup and grouped
    per server and report type with numpy, so that no row becomes a Finding but the few each
    case shows. The same outcome as the general path, which the tests check."""
    servers, places = locate_rows(session, rows, default_at)
    n_files = max(len(rows.files), 1)
    located_rows = np.flatnonzero(servers >= 0)
    keys = servers[located_rows] * n_files + np.asarray(rows.file_of, dtype=np.int64)[located_rows]
    # Stable: within a group the rows keep their order, so its first rows are the report's.
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if keys.size else keys
    ends = np.r_[starts[1:], keys.size] if keys.size else keys
    verdicts: dict[int, classifying.Classification] = {}
    groups: dict[tuple[int, Category, str], _Group] = {}
    shown: dict[tuple[int, Category, str], list[int]] = {}
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        server_id, file = divmod(int(keys[start]), n_files)
        first_rows = located_rows[order[start : start + _ROWS_PER_CASE]].tolist()
        verdict = verdicts.get(file)
        if verdict is None:
            # A feed's rows are classified by their file's report type alone.
            verdict = verdicts[file] = classifying.classify(report_format, rows[first_rows[0]])
        if verdict.category is None:
            continue  # kept on the report, no case
        place = places[server_id]
        resource = place.hostname or rows.addresses[first_rows[0]]
        key = (place.account_id, verdict.category, resource)
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group(
                place.account_id,
                place.server_id,
                verdict.category,
                resource,
                verdict.severity,
                verdict.reason,
                [],
            )
            shown[key] = []
        group.count += end - start
        shown[key].extend(first_rows)
    for key, group in groups.items():
        shown[key].sort()
        group.findings = [rows[i] for i in shown[key][:_ROWS_PER_CASE]]
    # Cases are opened in the order the report first names them, as by the general path.
    ordered = sorted(groups, key=lambda key: shown[key][0])
    located = int(located_rows.size)
    return _Located([groups[key] for key in ordered], located, len(rows) - located)


def _new_case(
    group: _Group,
    whole: ParsedReport,
    report_ids: list[int],
    policy: Policy,
    redact: Callable[[str], str],
) -> NewCase:
    hide = policy.rule(group.category).hide_complainant
    first = group.findings[0]
    rows = [_scrub(f.evidence, redact, hide) for f in group.findings]
    evidence: dict[str, Any] = {
        "format": whole.format.value,
        "kind": first.kind,
        "event_time": first.event_time.isoformat() if first.event_time else None,
        "port": first.port,
        "findings": group.count,
        "classification": group.reason,
        "rows": rows,
    }
    if not hide:
        # DMCA (512(c)(3)): the notice goes to the customer as sent, complainant included.
        evidence["complainant"] = {"name": whole.reporter_name, "email": whole.reporter_email}
    description = first.description.strip() or first.kind or group.category.value
    summary = redact(description) if hide else description
    if group.count > 1:
        summary = f"{group.count} findings: {summary}"
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


def _redactor(whole: ParsedReport) -> Callable[[str], str]:
    """Replaces the complainant's name and address in a text by ``[complainant]``. One pattern
    per report, made the first time a text may name the complainant: a feed's cases redact
    thousands of evidence strings, and each person's complaint has a complainant of its own,
    whose pattern (compiled for one report) cost more than the rest of the redaction."""
    secrets = sorted({s.strip() for s in (whole.reporter_email, whole.reporter_name)} - {""})
    if not secrets:
        return lambda text: text
    # Longest first, so that a name inside the address is not replaced before the address.
    source = "|".join(re.escape(s) for s in sorted(secrets, key=len, reverse=True))
    # For ASCII text and secrets, "no secret in the lower-cased text" is exactly "the pattern
    # finds nothing". Beyond ASCII, IGNORECASE knows equivalences that lower() does not (the
    # long s matches s, the Kelvin sign k), so there the pattern always decides.
    lowered = [s.lower() for s in secrets] if all(s.isascii() for s in secrets) else None
    made: list[re.Pattern[str]] = []

    def redact(text: str) -> str:
        if lowered is not None and text.isascii():
            low = text.lower()
            if not any(secret in low for secret in lowered):
                return text
        if not made:
            made.append(re.compile(source, re.IGNORECASE))
        return made[0].sub("[complainant]", text)

    return redact


def _scrub(evidence: dict[str, Any], redact: Callable[[str], str], hide: bool) -> dict[str, Any]:
    if not hide:
        return evidence
    # A person's complaint lists the complainant's own addresses as evidence: not for the
    # customer's eyes. Other strings are redacted where they name the complainant.
    out: dict[str, Any] = {}
    for key, value in evidence.items():
        if key == "emails":
            continue
        out[key] = redact(value) if isinstance(value, str) else value
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
    if _AUTO_SUBMITTED_LINE.search(head) is None:
        # The parser takes a header only from a line that starts with its name and a colon:
        # without such a line there is nothing to read, and most mail has none.
        return False
    try:
        headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(head)
    except Exception:  # a header block too broken to read: treat as a person's mail
        return False
    value = str(headers.get("Auto-Submitted", "no")).strip().lower()
    return not value.startswith("no")


# At the start of a line, whichever line ending the mail uses (the parser takes \r alone too).
_AUTO_SUBMITTED_LINE = re.compile(rb"(?:^|\r)auto-submitted:", re.IGNORECASE | re.MULTILINE)


def _status_url(base_url: str, report: Report) -> str:
    return f"{base_url.rstrip('/')}/report/status/{report.status_token}"
