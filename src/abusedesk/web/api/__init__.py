"""The REST API, version 1, under `/api/v1`. Authenticated by bearer token (`deps.py`)."""

from fastapi import APIRouter

from abusedesk.web.api import cases, dns, inventory, reports

router = APIRouter(prefix="/api/v1")
router.include_router(cases.router)
router.include_router(dns.router)
router.include_router(inventory.router)
router.include_router(reports.router)

__all__ = ["router"]
