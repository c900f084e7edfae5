"""The exceptions the service layer raises; adapters (web, CLI) map each to their own answer.

AbuseDeskError
 ├── NotFound            the object does not exist, or the actor may not know it exists
 ├── PermissionDenied    the actor is known but its role does not allow the action
 ├── InvalidTransition   the case's state does not allow the event
 ├── ValidationError     the input is wrong; `problems` lists every reason
 └── Conflict            the change collides with existing data (a duplicate, a lock)
"""

from __future__ import annotations


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
