"""One-time messages shown on the next page ('Case AD-000042 acknowledged')."""

from __future__ import annotations

from enum import StrEnum

from fastapi import Request

_KEY = "flash"


class Level(StrEnum):
    SUCCESS = "success"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


def add(request: Request, text: str, level: Level = Level.SUCCESS) -> None:
    messages = list(request.session.get(_KEY, []))
    messages.append({"level": level.value, "text": text})
    request.session[_KEY] = messages[-5:]


def take(request: Request) -> list[dict[str, str]]:
    if "session" not in request.scope:
        return []
    messages: list[dict[str, str]] = request.session.pop(_KEY, [])
    return messages
