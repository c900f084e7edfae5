"""The staff's view of what intake received: the reports by status (the unparsed ones are the
queue nothing may fall out of), one report with its raw message, and the cases it fed.

Read-only, for staff alone: a report names its complainant, which customers are not told.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.orm import undefer

from abusedesk.accounts.permissions import Actor, Permission
from abusedesk.cases.models import Case, case_reports
from abusedesk.cases.service import sealed_for
from abusedesk.errors import NotFound, PermissionDenied
from abusedesk.intake.choices import ReportStatus
from abusedesk.intake.models import Report
from abusedesk.policy import Category
from abusedesk.store.uow import UnitOfWork

MAX_LIMIT = 1000


def _require_staff(actor: Actor) -> None:
    actor.require(Permission.CASE_VIEW)
    if not actor.is_staff:
        raise PermissionDenied("reports are for staff")


def list_reports(
    uow: UnitOfWork,
    actor: Actor,
    statuses: Sequence[ReportStatus] = (),
    limit: int = 100,
    offset: int = 0,
) -> list[Report]:
    """Reports in any of `statuses` (all of them when empty), newest first. The raw message
    is not loaded (it may be megabytes each); reading `raw` on one of these raises."""
    _require_staff(actor)
    query = sa.select(Report)
    if statuses:
        query = query.where(Report.status.in_(list(statuses)))
    query = (
        query.order_by(Report.received_at.desc(), Report.id.desc())
        .limit(max(0, min(limit, MAX_LIMIT)))
        .offset(max(0, offset))
    )
    with uow.reading():
        return list(uow.session.execute(query).scalars())


def count_reports_by_status(uow: UnitOfWork, actor: Actor) -> dict[ReportStatus, int]:
    """How many reports are in each status; every status is a key, zeros included."""
    _require_staff(actor)
    with uow.reading():
        rows = uow.session.execute(
            sa.select(Report.status, sa.func.count()).group_by(Report.status)
        ).all()
    found = dict(rows)
    return {status: found.get(status, 0) for status in ReportStatus}


def get_report(uow: UnitOfWork, actor: Actor, report_id: int) -> Report:
    """One report with its raw message loaded. Raises NotFound and PermissionDenied."""
    _require_staff(actor)
    with uow.reading():
        report = uow.session.execute(
            sa.select(Report).where(Report.id == report_id).options(undefer(Report.raw))
        ).scalar_one_or_none()
    if report is None:
        raise NotFound(f"no report {report_id}")
    return report


def cases_of_report(uow: UnitOfWork, actor: Actor, report_id: int) -> list[int]:
    """The ids of the cases a report is linked to, in ascending order (empty for a report
    that fed none, such as an unparsed one). Raises NotFound and PermissionDenied."""
    _require_staff(actor)
    with uow.reading():
        if uow.session.get(Report, report_id) is None:
            raise NotFound(f"no report {report_id}")
        return list(
            uow.session.execute(
                sa.select(case_reports.c.case_id)
                .where(case_reports.c.report_id == report_id)
                .order_by(case_reports.c.case_id)
            ).scalars()
        )


def reports_of_case(
    uow: UnitOfWork, actor: Actor, case_id: int, limit: int = 100
) -> tuple[list[Report], int]:
    """Staff: the first `limit` reports linked to a case (those that opened it, joined it, or
    came with a merge), oldest first with their raw bytes, and how many there are in all."""
    _require_staff(actor)
    linked = sa.select(case_reports.c.report_id).where(case_reports.c.case_id == case_id)
    with uow.reading():
        total = uow.session.scalar(sa.select(sa.func.count()).select_from(linked.subquery()))
        found = uow.session.scalars(
            sa.select(Report)
            .where(Report.id.in_(linked))
            .options(undefer(Report.raw))
            .order_by(Report.received_at, Report.id)
            .limit(limit)
        )
        return list(found), total or 0


def is_sealed(uow: UnitOfWork, actor: Actor, report: Report) -> bool:
    """Whether a report is about child sexual abuse and sealed from this actor
    (cases.service.sealed_for): a finding classified so, or a case of that category it joined."""
    if not sealed_for(actor, Category.CSAM):
        return False
    findings = (report.parsed or {}).get("findings") or []
    if any(isinstance(f, dict) and f.get("category") == Category.CSAM.value for f in findings):
        return True
    with uow.reading():
        categories = uow.session.scalars(
            sa.select(Case.category)
            .join(case_reports, case_reports.c.case_id == Case.id)
            .where(case_reports.c.report_id == report.id)
        )
        return Category.CSAM in set(categories)
