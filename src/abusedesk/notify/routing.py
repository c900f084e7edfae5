"""Which of an account's contacts receive which message. Pure."""

from __future__ import annotations

from abusedesk.notify.choices import Audience, MessageTemplate

_T, _A = MessageTemplate, Audience

AUDIENCES: dict[MessageTemplate, tuple[Audience, ...]] = {
    _T.TICKET_CREATED: (_A.ABUSE, _A.TECHNICAL),
    _T.REMINDER: (_A.ABUSE, _A.TECHNICAL),
    _T.DISCONNECTED: (_A.ABUSE, _A.TECHNICAL, _A.BILLING),
    _T.RECONNECTED: (_A.ABUSE, _A.TECHNICAL),
    _T.TERMINATED: (_A.ABUSE, _A.TECHNICAL, _A.BILLING),
    _T.CLOSED: (_A.ABUSE,),
    _T.FIX_REJECTED: (_A.ABUSE, _A.TECHNICAL),
    _T.DEADLINE_CHANGED: (_A.ABUSE,),
    _T.STAFF_MESSAGE: (_A.ABUSE,),
    _T.DMCA_FORWARD: (_A.ABUSE,),
    _T.DNS_CHANGED: (_A.TECHNICAL, _A.ABUSE),
    _T.DNS_LOAD_NOTICE: (_A.TECHNICAL, _A.ABUSE),
    _T.NEEDS_INFO: (_A.COMPLAINANT,),
    _T.COMPLAINANT_ACK: (_A.COMPLAINANT,),
    _T.PASSWORD_RESET: (_A.USER,),
    _T.INVITATION: (_A.USER,),
}

# Mail about a user's own sign-in: it carries no ticket, goes to that user alone, and holds a
# one-time link that is removed from the outbox row once the mail has been sent.
USER_TEMPLATES = frozenset(t for t, audiences in AUDIENCES.items() if _A.USER in audiences)
SECRET_CONTEXT_KEYS = ("link",)
