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
    # To the account, about no case (unless the context names one): staff changed a zone.
    DNS_CHANGED = "dns_changed"
    # To the account: its zones' load is a potential violation of the AUP (R11).
    DNS_LOAD_NOTICE = "dns_load_notice"
    # To one user at the address of the user record, about the user's sign-in, not a case.
    PASSWORD_RESET = "password_reset"  # noqa: S105 - a template's name, not a password
    INVITATION = "invitation"


class Audience(StrEnum):
    """Who a message is for; the account's contacts of that kind receive it."""

    ABUSE = "abuse"
    TECHNICAL = "technical"
    BILLING = "billing"
    COMPLAINANT = "complainant"
    USER = "user"  # one portal or console user, at the address of the user record


class OutboxState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
