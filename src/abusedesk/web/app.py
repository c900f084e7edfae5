"""The FastAPI app: every web address of abusedesk behind one `create_app(desk)`."""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

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
from abusedesk.web import api

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
    app.add_exception_handler(AbuseDeskError, _abusedesk_error)
    app.include_router(operations)
    app.include_router(api.router)
    # The staff console (/staff), the portal (/portal) and the public form (/report) are
    # included here too, as their routers arrive.
    return app


async def _abusedesk_error(request: Request, exc: Exception) -> JSONResponse:
    status = next(ERROR_STATUS[cls] for cls in type(exc).__mro__ if cls in ERROR_STATUS)
    body: dict[str, object] = {"detail": str(exc)}
    if isinstance(exc, ValidationError):
        body["problems"] = exc.problems
    return JSONResponse(body, status_code=status)


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
