from __future__ import annotations

from enum import StrEnum


class AccountStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    TERMINATED = "terminated"


class ServerStatus(StrEnum):
    ACTIVE = "active"
    DISCONNECTED = "disconnected"
    TERMINATED = "terminated"


class ServerKind(StrEnum):
    SHARED = "shared"
    DEDICATED = "dedicated"


class ContactKind(StrEnum):
    ABUSE = "abuse"
    TECHNICAL = "technical"
    BILLING = "billing"
