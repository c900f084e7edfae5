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
    _T.NEEDS_INFO: (_A.COMPLAINANT,),
    _T.COMPLAINANT_ACK: (_A.COMPLAINANT,),
}
