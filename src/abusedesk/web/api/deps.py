"""What every API route is given: the desk, and who is calling."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from abusedesk.accounts import service as accounts
from abusedesk.accounts.permissions import Actor
from abusedesk.bootstrap import Desk

# auto_error is off so that a missing token gets the same 401 and header as a bad one, in the
# words of RFC 6750 rather than the library's.
_bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="adk_…",
    description="An API token (`adk_…`), issued to a user by an admin.",
)


def get_desk(request: Request) -> Desk:
    desk: Desk = request.app.state.desk
    return desk


DeskDep = Annotated[Desk, Depends(get_desk)]


def current_actor(
    desk: DeskDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    if credentials is None:
        raise _unauthorised("an API token is needed: Authorization: Bearer adk_…", "Bearer")
    actor = accounts.authenticate_token(desk.uow(), credentials.credentials)
    if actor is None:
        raise _unauthorised(
            "the API token is unknown, revoked or expired", 'Bearer error="invalid_token"'
        )
    return actor


def _unauthorised(detail: str, challenge: str) -> HTTPException:
    return HTTPException(
        HTTPStatus.UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": challenge}
    )


ActorDep = Annotated[Actor, Depends(current_actor)]
