"""The customer portal, under /portal: tickets, services, users, billing, the AUP."""

from fastapi import APIRouter

from abusedesk.web.portal import billing, policy, services, tickets, users

routers: list[APIRouter] = [
    tickets.router,
    services.router,
    users.router,
    billing.router,
    policy.router,
]
