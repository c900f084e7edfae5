"""The exceptions the service layer raises; adapters (web, CLI) map each to their own answer.

AbuseDeskError
 ├── NotFound            the object does not exist, or the actor may not know it exists
 ├── PermissionDenied    the actor is known but its role does not allow the action
 ├── InvalidTransition   the case's state does not allow the event
 ├── ValidationError     the input is wrong; `problems` lists every reason
 │    └── FieldErrors    … each reason tied to the field it belongs to
 └── Conflict            the change collides with existing data (a duplicate, a lock)
"""

from __future__ import annotations

from dataclasses import dataclass


class AbuseDeskError(Exception):
    """Base of every error a user may see."""


class NotFound(AbuseDeskError):
    pass


class PermissionDenied(AbuseDeskError):
    pass


class InvalidTransition(AbuseDeskError):
    pass


class Conflict(AbuseDeskError):
    pass


class ValidationError(AbuseDeskError):
    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


@dataclass(frozen=True, slots=True)
class FieldError:
    """One reason an input is wrong, and the field of the form or request it belongs to
    (`"ttl"`, `"records[1]"`), so that a page can show it beside that input."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class FieldErrors(ValidationError):
    """Every reason at once, each with its field; `problems` reads "field: message"."""

    def __init__(self, errors: list[FieldError], message: str | None = None) -> None:
        if not errors:
            raise ValueError("FieldErrors needs at least one error")
        super().__init__(message or str(errors[0]), [str(e) for e in errors])
        self.errors = errors

    def by_field(self) -> dict[str, list[str]]:
        """The messages of each field, in the order they were found."""
        found: dict[str, list[str]] = {}
        for error in self.errors:
            found.setdefault(error.field, []).append(error.message)
        return found
