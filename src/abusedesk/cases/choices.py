from __future__ import annotations

from enum import StrEnum


class CaseState(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    FIX_REPORTED = "fix_reported"
    DISCONNECTED = "disconnected"
    TERMINATED = "terminated"
    CLOSED = "closed"

    @property
    def is_active(self) -> bool:
        return self not in (CaseState.TERMINATED, CaseState.CLOSED)

    @property
    def label(self) -> str:
        return self.value.replace("_", " ").capitalize()


ACTIVE_STATES = tuple(s for s in CaseState if s.is_active)


class Resolution(StrEnum):
    RESOLVED = "resolved"
    NO_VIOLATION = "no_violation"  # R4: the content is lawful and within the AUP; it stays up
    INVALID = "invalid"
    DUPLICATE = "duplicate"


class Event(StrEnum):
    """What can happen to a case. Each is one row of the state machine's table."""

    ACKNOWLEDGE = "acknowledge"
    REPORT_FIX = "report_fix"
    VERIFY_FIX = "verify_fix"
    REJECT_FIX = "reject_fix"
    CUSTOMER_CONTACT = "customer_contact"
    DEADLINE_PASSED = "deadline_passed"
    CONTINUED_VIOLATION = "continued_violation"
    DISCONNECT = "disconnect"
    RECONNECT = "reconnect"
    TERMINATE = "terminate"
    CLOSE = "close"
    CHANGE_DEADLINE = "change_deadline"


class TimelineKind(StrEnum):
    """What a case's timeline shows: every event, and what is not a transition."""

    OPENED = "opened"
    ACKNOWLEDGED = "acknowledged"
    FIX_REPORTED = "fix_reported"
    FIX_VERIFIED = "fix_verified"
    FIX_REJECTED = "fix_rejected"
    CUSTOMER_CONTACT = "customer_contact"
    DEADLINE_PASSED = "deadline_passed"
    CONTINUED_VIOLATION = "continued_violation"
    DISCONNECTED = "disconnected"
    RECONNECTED = "reconnected"
    TERMINATED = "terminated"
    CLOSED = "closed"
    DEADLINE_CHANGED = "deadline_changed"
    REPORT_ATTACHED = "report_attached"
    REMINDER_SENT = "reminder_sent"
    MAIL_SENT = "mail_sent"
    MAIL_FAILED = "mail_failed"  # not delivered yet (will retry), or given up on
    ENFORCEMENT_APPLIED = "enforcement_applied"  # a driver carried out an action (staff only)
    ENFORCEMENT_FAILED = "enforcement_failed"  # first and permanent failures (staff only)
    RECLASSIFIED = "reclassified"
    NOTE = "note"
    MESSAGE_TO_CUSTOMER = "message_to_customer"  # staff wrote to the account's contacts
    MERGED_INTO = "merged_into"  # this case was closed as a duplicate of another
    MERGED_FROM = "merged_from"  # another case was merged into this one
    # The complainant wrote again about the case (a reply threaded by its tag); staff only: it
    # names the complainant, whom the customer is not told of.
    COMPLAINANT_MESSAGE = "complainant_message"

    @property
    def staff_only(self) -> bool:
        """Lines a customer's view of the timeline leaves out: how the network was cut, by which
        system, and what went wrong on the provider's side are the provider's business."""
        return self in (
            TimelineKind.ENFORCEMENT_APPLIED,
            TimelineKind.ENFORCEMENT_FAILED,
            TimelineKind.COMPLAINANT_MESSAGE,
        )


TIMELINE_OF_EVENT = {
    Event.ACKNOWLEDGE: TimelineKind.ACKNOWLEDGED,
    Event.REPORT_FIX: TimelineKind.FIX_REPORTED,
    Event.VERIFY_FIX: TimelineKind.FIX_VERIFIED,
    Event.REJECT_FIX: TimelineKind.FIX_REJECTED,
    Event.CUSTOMER_CONTACT: TimelineKind.CUSTOMER_CONTACT,
    Event.DEADLINE_PASSED: TimelineKind.DEADLINE_PASSED,
    Event.CONTINUED_VIOLATION: TimelineKind.CONTINUED_VIOLATION,
    Event.DISCONNECT: TimelineKind.DISCONNECTED,
    Event.RECONNECT: TimelineKind.RECONNECTED,
    Event.TERMINATE: TimelineKind.TERMINATED,
    Event.CLOSE: TimelineKind.CLOSED,
    Event.CHANGE_DEADLINE: TimelineKind.DEADLINE_CHANGED,
}


class QueueCount(StrEnum):
    """The staff console's work queues, as counted by `cases.stats.queue_counts`."""

    DUE_SOON = "due_soon"  # a running deadline ends within the window
    OVERDUE = "overdue"  # a running deadline has passed and the sweeper has not acted yet
    DISCONNECTED = "disconnected"  # waiting for the customer to make contact, or termination
