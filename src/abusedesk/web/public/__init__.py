"""Pages without a sign-in: signing in itself, password resets, the complaint form and its
status page."""

from fastapi import APIRouter

from abusedesk.web.public import report

routers: list[APIRouter] = [report.router]
