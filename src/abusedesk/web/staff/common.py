"""What every console page shares: its router, form parsing, paging and redirects."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from http import HTTPStatus
from typing import TypeVar

from fastapi import APIRouter, Depends
from fastapi.responses import RedirectResponse

from abusedesk.errors import ValidationError
from abusedesk.web import csrf

SEE_OTHER = HTTPStatus.SEE_OTHER
PAGE_SIZE = 25

E = TypeVar("E", bound=StrEnum)

_TICKET = re.compile(r"^\s*(?:AD-?)?0*(\d{1,12})\s*$", re.IGNORECASE)


def page_router() -> APIRouter:
    """A console router: under /staff, every unsafe request checked for its CSRF token."""
    return APIRouter(prefix="/staff", dependencies=[Depends(csrf.protect)], include_in_schema=False)


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, SEE_OTHER)


def choice(kind: type[E], text: str | None, what: str) -> E | None:
    """A form's or query's enum value; empty is None, anything unknown is a ValidationError."""
    if text is None or not text.strip():
        return None
    try:
        return kind(text.strip())
    except ValueError:
        raise ValidationError(f"{text!r} is not a known {what}") from None


def parse_deadline(text: str) -> datetime:
    """A `datetime-local` field, read as UTC: the console shows every time in UTC, so the
    time typed is the time meant."""
    if not text.strip():
        raise ValidationError("a new deadline is needed")
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValidationError(f"{text!r} is not a date and time") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def deadline_value(moment: datetime | None) -> str:
    """The value a `datetime-local` field shows for a moment (UTC, to the minute)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M") if moment else ""


def parse_ticket(text: str) -> int:
    """A case as staff type it: `AD-000042`, `AD-42` or `42`."""
    match = _TICKET.match(text or "")
    if match is None:
        raise ValidationError(f"{text!r} is not a ticket number (AD-000042)")
    return int(match.group(1))


@dataclass(frozen=True, slots=True)
class Paging:
    page: int
    total: int
    size: int = PAGE_SIZE

    @classmethod
    def of(cls, page: int, total: int, size: int = PAGE_SIZE) -> Paging:
        return cls(max(1, page), total, size)

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.size

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.size))

    @property
    def more(self) -> bool:
        return self.page < self.pages

    @property
    def first(self) -> int:
        return min(self.total, self.offset + 1)

    @property
    def last(self) -> int:
        return min(self.total, self.offset + self.size)
