"""Finding the JSON document of an XARF report: the raw input itself, or a JSON part of a mail."""

from __future__ import annotations

import email.message
import json
from typing import Any

from abusedesk.intake.formats import _mail
from abusedesk.intake.formats.base import Limits, MalformedReport


def looks_like_json(raw: bytes) -> bool:
    """True when the input is a bare JSON object rather than a message."""
    head = raw[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"{")


def loads(data: bytes | str, where: str) -> Any:
    """``json.loads`` with its failures turned into ``MalformedReport``."""
    try:
        return json.loads(data)
    except RecursionError as exc:
        raise MalformedReport(f"{where}: the JSON nests too deeply") from exc
    except (ValueError, TypeError) as exc:  # JSONDecodeError and bad encodings are ValueErrors
        raise MalformedReport(f"{where}: not valid JSON: {exc}") from exc


def document(
    message: email.message.EmailMessage | None, raw: bytes, limits: Limits
) -> tuple[Any, str] | None:
    """(the parsed JSON document, where it came from), or None when there is none.

    A bare JSON input is the document. In a mail, the first part typed application/json (or
    named *.json) is; parts inside attached messages are not looked at. Invalid JSON raises.
    """
    if message is None:
        if not looks_like_json(raw):
            return None
        return loads(raw, "the report"), "the report"
    for item in _mail.walk(message, limits):
        part = item.part
        if item.in_attached_message or part.is_multipart():
            continue
        name = _mail.filename(part)
        if _mail.content_type(part) == "application/json" or name.lower().endswith(".json"):
            data = _mail.part_bytes(part)
            where = name or "the JSON part"
            return loads(data, where), where
    return None


def peek(message: email.message.EmailMessage | None, raw: bytes) -> dict[str, Any] | None:
    """The JSON object for a recogniser to look at, or None; never raises. Kept on the message
    once found: the XARF v4 and v3 recognisers both ask."""
    if message is None:
        return _peek(message, raw)
    memo = _mail.memo(message)
    if ("json",) not in memo:
        memo[("json",)] = _peek(message, raw)
    found: dict[str, Any] | None = memo[("json",)]
    return found


def _peek(message: email.message.EmailMessage | None, raw: bytes) -> dict[str, Any] | None:
    try:
        found = document(message, raw, Limits())
    except Exception:
        return None
    if found is None or not isinstance(found[0], dict):
        return None
    return found[0]
