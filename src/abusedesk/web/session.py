"""Who is signed in to the pages: the signed session cookie and what it may hold.

The cookie (Starlette's SessionMiddleware, signed with itsdangerous) holds the user's id and
session epoch, never a password or a role: the role is read from the database on every request,
so a removed user or a changed role takes effect at once, and a password reset (which bumps the
epoch) signs every other browser out.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import Request

from abusedesk.accounts import signin
from abusedesk.accounts.permissions import Actor
from abusedesk.web import csrf

_USER = "uid"
_EPOCH = "epoch"
_ENROL = "enrol"  # signed in by password, but must set up two-factor before anything else


class SignInRequired(Exception):
    """Raised by a page dependency; answered with a redirect to the sign-in page."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


class EnrolmentRequired(Exception):
    """Admin and legal staff must set up two-factor sign-in before they can do anything."""


def start(request: Request, actor: Actor, epoch: int) -> None:
    request.session.clear()
    csrf.rotate(request)
    request.session[_USER] = actor.user_id
    request.session[_EPOCH] = epoch


def start_enrolment(request: Request, actor: Actor, epoch: int) -> None:
    request.session.clear()
    csrf.rotate(request)
    request.session[_ENROL] = {"uid": actor.user_id, "epoch": epoch}


def end(request: Request) -> None:
    request.session.clear()


def enrolment(request: Request) -> dict[str, Any] | None:
    pending: dict[str, Any] | None = request.session.get(_ENROL)
    return pending


def signed_in_actor(request: Request) -> Actor | None:
    """The actor of this browser's session, or None; also kept on request.state for layouts."""
    user_id = request.session.get(_USER)
    if user_id is None:
        return None
    desk = request.app.state.desk
    actor = signin.actor_for_session(desk.uow(), user_id, request.session.get(_EPOCH, 0))
    if actor is None:
        request.session.clear()
        return None
    request.state.actor = actor
    return actor


def require_actor(request: Request) -> Actor:
    actor = signed_in_actor(request)
    if actor is None:
        if enrolment(request) is not None:
            raise EnrolmentRequired
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target)
    return actor


def login_url(next_url: str) -> str:
    return f"/login?next={quote(next_url, safe='')}"


def safe_next(next_url: str | None, default: str) -> str:
    """Only a path on this site: a sign-in link must not bounce users to another host."""
    if next_url and next_url.startswith("/") and not next_url.startswith("//"):
        return next_url
    return default
