"""The console's start page: the queues at a glance, and the desk's last weeks in charts."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import Request
from fastapi.responses import Response

from abusedesk.cases import service as cases
from abusedesk.cases import stats
from abusedesk.clock import utc
from abusedesk.web.deps import DeskDep, StaffActor
from abusedesk.web.staff import charts
from abusedesk.web.staff.common import page_router
from abusedesk.web.staff.queues import QUEUES, queue_sizes
from abusedesk.web.templating import render

router = page_router()

DAYS = 30
WEEKS = 12
NEWEST = 8


def _midnight(moment: datetime) -> datetime:
    return utc(moment).replace(hour=0, minute=0, second=0, microsecond=0)


@router.get("")
def dashboard(request: Request, desk: DeskDep, actor: StaffActor) -> Response:
    now = desk.clock.now()
    tomorrow = _midnight(now) + timedelta(days=1)
    # Weeks begin on Monday, as the people reading them count weeks.
    next_week = _midnight(now) + timedelta(days=7 - utc(now).weekday())
    opened = stats.opened_by_category(
        desk.uow(), actor, tomorrow - timedelta(days=DAYS), tomorrow, timedelta(days=1)
    )
    deadlines = stats.deadlines_met_missed(
        desk.uow(), actor, next_week - timedelta(weeks=WEEKS), next_week, timedelta(weeks=1)
    )
    by_state = stats.open_by_state(desk.uow(), actor)
    newest = cases.list_cases(desk.uow(), actor, cases.CaseFilter(limit=NEWEST))
    return render(
        request,
        "staff/dashboard.html",
        {
            "title": "Dashboard",
            "queues": QUEUES.values(),
            "sizes": queue_sizes(desk, actor),
            "opened_chart": charts.opened_by_category(opened),
            "opened_total": sum(sum(c.values()) for _, c in opened),
            "deadlines_chart": charts.deadlines(deadlines),
            "met": sum(c.met for _, c in deadlines),
            "missed": sum(c.missed for _, c in deadlines),
            "state_chart": charts.open_by_state(by_state),
            "open_total": sum(by_state.values()),
            "by_state": by_state,
            "newest": newest,
            "days": DAYS,
            "weeks": WEEKS,
        },
    )
