"""CSRF protection for the pages: a random token per session, required on every form POST.

The token lives in the signed session cookie and in a hidden field of each form; a POST
whose field does not match is refused before its route runs. SameSite=Lax cookies already
stop most cross-site posts; the token covers old browsers and same-site attackers.
"""

from __future__ import annotations

import secrets
from http import HTTPStatus

from fastapi import HTTPException, Request

FIELD = "csrf_token"
_KEY = "csrf"


def token(request: Request) -> str:
    session = request.session
    if _KEY not in session:
        session[_KEY] = secrets.token_urlsafe(32)
    value: str = session[_KEY]
    return value


def rotate(request: Request) -> None:
    """A new token at sign-in, so that one planted before it is worthless after."""
    request.session[_KEY] = secrets.token_urlsafe(32)


async def protect(request: Request) -> None:
    """A dependency of every page router: unsafe methods must carry the session's token."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    expected = request.session.get(_KEY)
    form = await request.form()  # Starlette keeps the parsed form; the route reads it again
    sent = form.get(FIELD)
    if not expected or not isinstance(sent, str) or not secrets.compare_digest(sent, expected):
        raise HTTPException(
            HTTPStatus.FORBIDDEN,
            detail="The form has expired or did not come from this site. "
            "Go back, reload the page and send it again.",
        )
