from __future__ import annotations

from enum import StrEnum


class ActionKind(StrEnum):
    DISCONNECT = "disconnect"
    RECONNECT = "reconnect"
    TERMINATE = "terminate"


class ActionState(StrEnum):
    PENDING = "pending"  # written by the case engine, not yet carried out
    APPLIED = "applied"  # the driver confirmed it
    FAILED = "failed"  # the last attempt failed; it is retried
    REVERTED = "reverted"  # a disconnection undone by a reconnection
