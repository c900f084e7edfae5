"""R5 verification: is a parsed report enough to act on? Pure: values in, values out.

A complaint is acted on only once it names the complaining party with contact details, gives
something that locates a server (an address, URL, host or domain), and describes the alleged
violation. Whatever is missing is listed in plain words, for the automatic reply that asks
for it. Reports from configured trusted reporters (feeds the provider has agreed to take) are
verified whatever they lack.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from abusedesk.intake.formats.base import ParsedReport, ReportFormat

# Formats written by machines for machines. They describe the violation by construction (a
# feedback type, a report type, a category), and their sender's address names the
# organisation reporting, so a missing display name does not make them unverified. Nothing
# replies automatically to them (RFC 3834 spirit: a feed is not a person to talk to).
MACHINE_FORMATS = frozenset(
    {
        ReportFormat.ARF,
        ReportFormat.XARF_LEGACY,
        ReportFormat.XARF_V3,
        ReportFormat.XARF_V4,
        ReportFormat.SHADOWSERVER,
        ReportFormat.CLEANMX,
        ReportFormat.SPAMCOP,
        ReportFormat.DMCA_ACNS,
    }
)

MISSING_NAME = "your name, or the name of the organisation you report for"
MISSING_CONTACT = "an e-mail address or other contact details where we can reach you"
MISSING_LOCATION = (
    "where the problem is: the IP address, URL, host name or domain of the server concerned"
)
MISSING_DESCRIPTION = "a description of the problem: what happened, and when"

_EMAIL = re.compile(r"^[^@\s]+@([^@\s]+\.[^@\s]+)$")
_NO_REPLY = re.compile(r"^(no-?reply|do-?not-?reply|mailer-daemon|postmaster)@", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Verification:
    verified: bool
    missing: tuple[str, ...] = ()  # plain words, in the order the reply lists them
    trusted: bool = False  # verified because the reporter is a configured trusted one
    machine: bool = False  # a machine format: never auto-replied to

    @property
    def can_reply(self) -> bool:
        """Whether asking the complainant for the rest makes sense at all."""
        return not self.machine and MISSING_CONTACT not in self.missing


def is_trusted(email: str, trusted: Iterable[str]) -> bool:
    """``trusted`` holds whole addresses (``abuse@fbl.example``) or domains (``shadowserver.org``,
    which also covers its subdomains: feeds send from ``autoreports@...``)."""
    address = email.strip().lower()
    match = _EMAIL.match(address)
    if match is None:
        return False
    domain = match.group(1)
    for entry in trusted:
        item = entry.strip().lower()
        if not item:
            continue
        if "@" in item:
            if address == item:
                return True
        elif domain == item or domain.endswith("." + item):
            return True
    return False


def has_contact(email: str) -> bool:
    """An address a reply can go to (a no-reply sender is no contact)."""
    address = email.strip()
    return _EMAIL.match(address) is not None and _NO_REPLY.match(address) is None


def verify(report: ParsedReport, trusted: Iterable[str] = ()) -> Verification:
    machine = report.format in MACHINE_FORMATS
    if is_trusted(report.reporter_email, trusted):
        return Verification(True, trusted=True, machine=machine)
    missing: list[str] = []
    email_ok = _EMAIL.match(report.reporter_email.strip()) is not None
    # A machine report's sending address names the organisation; a person must give a name.
    if not report.reporter_name.strip() and not (machine and email_ok):
        missing.append(MISSING_NAME)
    # Feeds often send from no-reply addresses; they are still identified by them.
    if not (email_ok if machine else has_contact(report.reporter_email)):
        missing.append(MISSING_CONTACT)
    if not any(f.addresses or f.urls or f.domains for f in report.findings):
        missing.append(MISSING_LOCATION)
    described = any(f.description.strip() for f in report.findings) or (
        machine and any(f.kind or f.category for f in report.findings)
    )
    if not described:
        missing.append(MISSING_DESCRIPTION)
    return Verification(not missing, tuple(missing), machine=machine)


def combine(earlier: ParsedReport, later: ParsedReport) -> ParsedReport:
    """One complaint told in two mails: the first, and the reply that supplies what it lacked.
    The later mail's sender details win where it gives them; the findings of both count."""
    return replace(
        later,
        reporter_name=later.reporter_name.strip() or earlier.reporter_name,
        reporter_email=later.reporter_email.strip() or earlier.reporter_email,
        received_time=earlier.received_time or later.received_time,
        findings=(*earlier.findings, *later.findings),
    )
