from __future__ import annotations

from enum import StrEnum


class MessageTemplate(StrEnum):
    TICKET_CREATED = "ticket_created"
    REMINDER = "reminder"
    DISCONNECTED = "disconnected"
    RECONNECTED = "reconnected"
    TERMINATED = "terminated"
    CLOSED = "closed"
    FIX_REJECTED = "fix_rejected"
    DEADLINE_CHANGED = "deadline_changed"
    STAFF_MESSAGE = "staff_message"
    NEEDS_INFO = "needs_info"
    COMPLAINANT_ACK = "complainant_ack"
    DMCA_FORWARD = "dmca_forward"


class Audience(StrEnum):
    """Who a message is for; the account's contacts of that kind receive it."""

    ABUSE = "abuse"
    TECHNICAL = "technical"
    BILLING = "billing"
    COMPLAINANT = "complainant"


class OutboxState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
