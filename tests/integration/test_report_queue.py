from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.orm.exc import DetachedInstanceError

from abusedesk.accounts.choices import Role
from abusedesk.accounts.permissions import Actor
from abusedesk.bootstrap import Desk
from abusedesk.cases import service as cases
from abusedesk.clock import FakeClock
from abusedesk.errors import NotFound, PermissionDenied
from abusedesk.intake import queue
from abusedesk.intake.choices import ReportStatus
from abusedesk.policy import Category
from tests import factories

ANALYST = Actor("analyst:ann@provider.example", Role.ANALYST, user_id=900)


def test_reports_by_status_newest_first_without_their_raw_bytes(
    desk: Desk, clock: FakeClock
) -> None:
    first = factories.report(desk, status=ReportStatus.UNPARSED, body="first")
    clock.advance(timedelta(minutes=5))
    second = factories.report(desk, status=ReportStatus.ACCEPTED)
    clock.advance(timedelta(minutes=5))
    third = factories.report(desk, status=ReportStatus.UNPARSED)
    same_moment = factories.report(desk, status=ReportStatus.NOT_OURS)

    listed = queue.list_reports(desk.uow(), ANALYST, [ReportStatus.UNPARSED], 100, 0)
    assert [r.id for r in listed] == [third, first]
    with pytest.raises(DetachedInstanceError):
        _ = listed[0].raw  # deferred, and never loaded
    everything = queue.list_reports(desk.uow(), ANALYST, [], 100, 0)
    assert [r.id for r in everything] == [same_moment, third, second, first]
    page = queue.list_reports(desk.uow(), ANALYST, [], 2, 1)
    assert [r.id for r in page] == [third, second]
    two = [ReportStatus.ACCEPTED, ReportStatus.NOT_OURS]
    assert [r.id for r in queue.list_reports(desk.uow(), ANALYST, two, 10, 0)] == [
        same_moment,
        second,
    ]

    counts = queue.count_reports_by_status(desk.uow(), ANALYST)
    assert set(counts) == set(ReportStatus)
    assert counts[ReportStatus.UNPARSED] == 2
    assert counts[ReportStatus.ACCEPTED] == counts[ReportStatus.NOT_OURS] == 1
    assert counts[ReportStatus.DUPLICATE] == 0

    report = queue.get_report(desk.uow(), ANALYST, first)
    assert report.raw.endswith(b"first")


def test_the_cases_of_a_report(desk: Desk) -> None:
    c = factories.customer(desk)
    shared = factories.report(desk, "jane@complainant.example", "Jane")
    alone = factories.report(desk, status=ReportStatus.UNPARSED)
    ids = [
        cases.open_case(
            desk.uow(),
            ANALYST,
            cases.NewCase(c.account_id, category, server_id=c.server_ids[0], report_ids=[shared]),
            desk.policy,
        ).case.id
        for category in (Category.SPAM, Category.PHISHING)
    ]
    assert queue.cases_of_report(desk.uow(), ANALYST, shared) == sorted(ids)
    assert queue.cases_of_report(desk.uow(), ANALYST, alone) == []
    with pytest.raises(NotFound):
        queue.cases_of_report(desk.uow(), ANALYST, 999_999)


def test_reports_are_for_staff(desk: Desk) -> None:
    c = factories.customer(desk)
    report_id = factories.report(desk, "jane@complainant.example")
    customer = Actor("customer:x", Role.CUSTOMER, user_id=1, account_id=c.account_id)
    with pytest.raises(PermissionDenied):
        queue.list_reports(desk.uow(), customer, [], 10, 0)
    with pytest.raises(PermissionDenied):
        queue.count_reports_by_status(desk.uow(), customer)
    with pytest.raises(PermissionDenied):
        queue.get_report(desk.uow(), customer, report_id)
    with pytest.raises(PermissionDenied):
        queue.cases_of_report(desk.uow(), customer, report_id)
    with pytest.raises(NotFound):
        queue.get_report(desk.uow(), ANALYST, 999_999)
