"""Checks of what people type into the account pages. Pure."""

from __future__ import annotations

import re
from collections.abc import Iterable

from abusedesk.errors import ValidationError

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_SEPARATORS = re.compile(r"[,;\s]+")
EMAIL_MAX = 254


def email_problem(value: str) -> str | None:
    """Why `value` is not an e-mail address, or None."""
    if len(value) > EMAIL_MAX or not _EMAIL.match(value):
        return f"{value!r} is not an e-mail address"
    return None


def normalise_email(value: str) -> str:
    """Lower case, trimmed; raises ValidationError. Addresses are compared as the desk stores
    them, so the same mailbox typed in capitals is not a second user."""
    email = value.strip().lower()
    if why := email_problem(email):
        raise ValidationError(why)
    return email


def split_list(value: str | Iterable[str]) -> list[str]:
    """A form's "one per line or separated by commas" field as a list; a list passes through.
    Empty items are dropped, order is kept, repeats are removed."""
    items = _SEPARATORS.split(value) if isinstance(value, str) else list(value)
    return list(dict.fromkeys(item.strip() for item in items if item and item.strip()))
