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
    THREADED = "threaded"  # a reply about a case (its tag in the subject): on its timeline


class ReplyFrom(StrEnum):
    """Who wrote a reply that was threaded into a case."""

    CUSTOMER = "customer"  # a contact or customer user of the case's account
    COMPLAINANT = "complainant"  # whoever sent a report linked to the case


class ImapTls(StrEnum):
    """How the IMAP poller secures its connection."""

    IMAPS = "imaps"  # TLS from the first byte (port 993): the default
    STARTTLS = "starttls"  # plain IMAP upgraded before logging in (port 143)
    PLAIN = "plain"  # no TLS at all: only for a server on the loopback (tests, a local relay)

    @property
    def default_port(self) -> int:
        return 993 if self is ImapTls.IMAPS else 143
