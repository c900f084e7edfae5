"""Jinja2 for the pages: one environment, the filters every page uses, and `render`.

Autoescaping is on for every template: reported content is shown as text, never as live HTML.
"""

from __future__ import annotations

from contextvars import ContextVar
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import HTMLResponse

from abusedesk.clock import utc
from abusedesk.notify.render import duration_words
from abusedesk.web import csrf, flash

TEMPLATES = Path(__file__).parent / "templates"

templates = Jinja2Templates(directory=TEMPLATES)
env = templates.env
env.trim_blocks = True
env.lstrip_blocks = True


def when(moment: datetime | None) -> str:
    """An instant as staff and customers read it everywhere: UTC, to the minute."""
    if moment is None:
        return "—"
    return utc(moment).strftime("%Y-%m-%d %H:%M UTC")


def iso(moment: datetime | None) -> str:
    return utc(moment).isoformat() if moment else ""


def relative(moment: datetime | None, now: datetime) -> str:
    """'in 3 hours 10 minutes' or '2 days ago': what a deadline means at a glance."""
    if moment is None:
        return ""
    delta = utc(moment) - utc(now)
    if abs(delta) < timedelta(minutes=1):
        return "now"
    words = duration_words(abs(delta))
    return f"in {words}" if delta > timedelta(0) else f"{words} ago"


def label(value: Any) -> str:
    """An enum value as words: `fix_reported` → 'Fix reported'."""
    text = str(getattr(value, "value", value) or "")
    return text.replace("_", " ").replace("-", " ").capitalize()


class _CurrentCsrfToken:
    """The CSRF token of the request being rendered, for macros imported without context
    (`{% import "_macros.html" as ui %}` hides the page's variables from them)."""

    _value: ContextVar[str] = ContextVar("csrf_token", default="")

    def set(self, value: str) -> None:
        self._value.set(value)

    def __str__(self) -> str:
        return self._value.get()


current_csrf_token = _CurrentCsrfToken()

env.filters["when"] = when
env.filters["iso"] = iso
env.filters["label"] = label
env.globals["relative"] = relative
env.globals["csrf_token"] = current_csrf_token


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """A page: the template with what every layout needs (who is signed in, the CSRF token,
    the flashed messages, the time now)."""
    desk = request.app.state.desk
    token = csrf.token(request)
    current_csrf_token.set(token)
    values: dict[str, Any] = {
        "actor": getattr(request.state, "actor", None),
        "csrf_token": token,
        "messages": flash.take(request),
        "now": desk.clock.now(),
        "product": "abusedesk",
    }
    values.update(context or {})
    return templates.TemplateResponse(request, template, values, status_code=status_code)
