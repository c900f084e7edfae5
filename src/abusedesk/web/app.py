"""The FastAPI app: every web address of abusedesk behind one `create_app(desk)`."""

from __future__ import annotations

import logging
from http import HTTPStatus
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from abusedesk import __version__, metrics
from abusedesk.bootstrap import Desk
from abusedesk.errors import (
    AbuseDeskError,
    Conflict,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from abusedesk.web import api, session
from abusedesk.web.public import signin
from abusedesk.web.templating import render

STATIC = Path(__file__).parent / "static"

log = logging.getLogger(__name__)

DESCRIPTION = """\
The abuse desk of a hosting provider: cases under the Acceptable Use Policy's Methods of
Resolution, and the inventory of customers, servers, IP assignments and domains they concern.

Every call takes an API token: `Authorization: Bearer adk_…`. Staff tokens see every account;
a customer's token sees its own account alone, and another account's objects answer 404.

Errors answer `{"detail": "…"}`: 401 without a valid token, 403 when the role may not act,
404 for what does not exist or may not be seen, 409 when the case's state does not allow the
event or the change collides with existing data, 422 when the input is wrong (with `problems`,
every reason, when abusedesk found them; FastAPI's own list in `detail` when the request did
not parse).
"""

# Looked up along the exception's MRO, so a new subclass answers as its parent does.
ERROR_STATUS: dict[type, HTTPStatus] = {
    NotFound: HTTPStatus.NOT_FOUND,
    PermissionDenied: HTTPStatus.FORBIDDEN,
    InvalidTransition: HTTPStatus.CONFLICT,
    Conflict: HTTPStatus.CONFLICT,
    ValidationError: HTTPStatus.UNPROCESSABLE_ENTITY,
    AbuseDeskError: HTTPStatus.BAD_REQUEST,
}


def create_app(desk: Desk) -> FastAPI:
    app = FastAPI(
        title="abusedesk API",
        version=__version__,
        description=DESCRIPTION,
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.desk = desk
    app.add_middleware(
        SessionMiddleware,
        secret_key=desk.settings.resolved_secret_key(),
        session_cookie="abusedesk_session",
        max_age=int(desk.settings.auth.session_max_age.total_seconds()),
        same_site="lax",
        https_only=desk.settings.base_url.startswith("https://"),
    )
    app.add_exception_handler(AbuseDeskError, _abusedesk_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(session.SignInRequired, _sign_in_required)
    app.add_exception_handler(session.EnrolmentRequired, _enrolment_required)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(operations)
    app.include_router(api.router)
    app.include_router(signin.router)
    for router in _page_routers():
        app.include_router(router)
    return app


def _page_routers() -> list[APIRouter]:
    from abusedesk.web import portal, public, staff, zones

    return [
        *staff.routers,
        *portal.routers,
        *public.routers,
        zones.staff_router,
        zones.portal_router,
    ]


def _wants_page(request: Request) -> bool:
    return not request.url.path.startswith(("/api/", "/healthz", "/metrics"))


async def _abusedesk_error(request: Request, exc: Exception) -> Response:
    status = next(ERROR_STATUS[cls] for cls in type(exc).__mro__ if cls in ERROR_STATUS)
    if _wants_page(request):
        return _error_page(request, status, str(exc))
    body: dict[str, object] = {"detail": str(exc)}
    if isinstance(exc, ValidationError):
        body["problems"] = exc.problems
    return JSONResponse(body, status_code=status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if _wants_page(request) and exc.status_code >= 400:
        return _error_page(request, HTTPStatus(exc.status_code), str(exc.detail))
    return await http_exception_handler(request, exc)


def _error_page(request: Request, status: HTTPStatus, detail: str) -> Response:
    # A missing page and another account's ticket read the same, word for word.
    if status is HTTPStatus.NOT_FOUND:
        detail = "There is no such page, or it is not yours to see."
    return render(
        request,
        "errors/error.html",
        {"status": status, "title": status.phrase, "detail": detail},
        status_code=status,
    )


async def _sign_in_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, session.SignInRequired)
    return RedirectResponse(session.login_url(exc.next_url), HTTPStatus.SEE_OTHER)


async def _enrolment_required(request: Request, exc: Exception) -> Response:
    return RedirectResponse("/account/two-factor", HTTPStatus.SEE_OTHER)


# -- operations -----------------------------------------------------------------------------

operations = APIRouter(tags=["operations"])


@operations.get("/healthz")
def healthz(request: Request) -> JSONResponse:
    """Liveness: the process answers and reaches its database."""
    desk: Desk = request.app.state.desk
    if _database_reachable(desk.engine):
        return JSONResponse({"status": "ok", "database": "reachable"})
    return JSONResponse(
        {"status": "unavailable", "database": "unreachable"},
        status_code=HTTPStatus.SERVICE_UNAVAILABLE,
    )


@operations.get("/metrics", response_class=Response)
def prometheus_metrics() -> Response:
    """Prometheus metrics, in its text format."""
    return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)


def _database_reachable(engine: Engine) -> bool:
    # A raw DBAPI connection rather than a SQLAlchemy one: on SQLite every SQLAlchemy
    # transaction begins IMMEDIATE (store/engine.py), and a probe must not queue for the write
    # lock behind a busy writer, nor hold it.
    try:
        connection = engine.raw_connection()
        try:
            cursor = connection.cursor()
            cursor.execute("SELECT 1")
            cursor.fetchone()
            cursor.close()
        finally:
            connection.close()
    except (SQLAlchemyError, engine.dialect.loaded_dbapi.Error):
        log.warning("health check: the database is unreachable", exc_info=True)
        return False
    return True
