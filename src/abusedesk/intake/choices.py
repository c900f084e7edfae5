from __future__ import annotations

from enum import StrEnum


class ReportSource(StrEnum):
    SMTP = "smtp"
    IMAP = "imap"
    MAILDIR = "maildir"
    FORM = "form"
    API = "api"
    CLI = "cli"
    DETECTOR = "detector"


class ReportStatus(StrEnum):
    RECEIVED = "received"  # stored, not yet processed
    ACCEPTED = "accepted"  # verified and attached to a case
    NEEDS_INFO = "needs_info"  # R5: something is missing; the complainant was asked
    NOT_OURS = "not_ours"  # nothing in it locates a customer server
    UNPARSED = "unparsed"  # no parser understood it; staff look at it
    DUPLICATE = "duplicate"  # the same message arrived before
