"""The staff console, under /staff: queues, cases, accounts, the screening list, the dashboard."""

from fastapi import APIRouter

from abusedesk.web.staff import accounts, cases, dashboard, noc, queues, screening

routers: list[APIRouter] = [
    dashboard.router,
    queues.router,
    cases.router,
    accounts.router,
    screening.router,
    noc.router,
]
