"""The values every report format shares: what a parser returns, its limits and its errors.

Every format module has the same two functions (the ``FormatParser`` protocol):

- ``recognise(message, raw) -> bool`` says, from the message itself (headers, MIME structure,
  content), whether the module's format is in it. It never raises and never looks at a file name
  given by a caller; an attachment's own file name is part of the message.
- ``parse(message, raw, limits) -> ParsedReport`` reads it. It does no I/O, reads no clock and
  raises only the errors below.

The errors, drawn as Starlette and httpx draw theirs::

    AbuseDeskError               (abusedesk.errors: adapters map it to an answer)
     └── ParseError              the input could not be read; the message says what was wrong
          ├── NotThisFormat      a parser declines: the input is not its format after all
          ├── LimitExceeded      a size, count or ratio limit was hit (zip bomb, huge CSV, ...)
          └── MalformedReport    it is the format, but broken; ``problems`` lists every reason

Lower-layer exceptions (``zipfile.BadZipFile``, ``json.JSONDecodeError``, a YAML or XML error,
``jsonschema.ValidationError``) are converted where they happen, with ``raise ... from exc``.
"""

from __future__ import annotations

import email.message
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from abusedesk.errors import AbuseDeskError
from abusedesk.policy.choices import Category


class ReportFormat(StrEnum):
    """The formats a report can arrive in. Values are what ``Report.format`` stores."""

    ARF = "arf"  # RFC 5965 feedback report (and the draft-era Version: 0.1)
    XARF_LEGACY = "xarf_legacy"  # X-ARF 0.1/0.2 mail: a YAML report.txt part plus evidence
    XARF_V3 = "xarf_v3"  # XARF v3 JSON
    XARF_V4 = "xarf_v4"  # XARF v4 JSON, validated against the published schemas
    SHADOWSERVER = "shadowserver"  # Shadowserver CSV, plain or zipped, one finding per row
    DMCA_ACNS = "dmca_acns"  # DMCA notice carrying an ACNS <Infringement> XML block
    DMCA_TEXT = "dmca_text"  # free-text DMCA notice
    CLEANMX = "cleanmx"  # Clean-MX plain-text table reports (viruses, phishing, portals)
    SPAMCOP = "spamcop"  # SpamCop spam and spamvertised-site reports
    HUMAN = "human"  # a person's complaint, plain text or HTML: the fallback

    @property
    def label(self) -> str:
        return _FORMAT_LABELS[self]


_FORMAT_LABELS = {
    ReportFormat.ARF: "ARF feedback report",
    ReportFormat.XARF_LEGACY: "X-ARF 0.1/0.2",
    ReportFormat.XARF_V3: "XARF v3",
    ReportFormat.XARF_V4: "XARF v4",
    ReportFormat.SHADOWSERVER: "Shadowserver",
    ReportFormat.DMCA_ACNS: "DMCA notice (ACNS)",
    ReportFormat.DMCA_TEXT: "DMCA notice (text)",
    ReportFormat.CLEANMX: "Clean-MX",
    ReportFormat.SPAMCOP: "SpamCop",
    ReportFormat.HUMAN: "Complaint",
}


class ParseError(AbuseDeskError):
    """The input could not be read as a report; the message says what was wrong."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class NotThisFormat(ParseError):
    """A parser declines: on a closer look the input is not its format."""


class LimitExceeded(ParseError):
    """A limit was hit: message or archive size, compression ratio, entries, rows, cell size."""


class MalformedReport(ParseError):
    """The input is the format but broken; ``problems`` lists each reason."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one report may cost to parse. Every parser checks the ones it touches.

    The defaults suit a hosting provider's abuse mailbox: the largest real reports are
    Shadowserver feeds of a few hundred thousand rows, zipped at 5-20x.
    """

    max_message_bytes: int = 25 * 1024 * 1024  # the whole raw input
    max_mime_parts: int = 1000  # parts walked in one message
    max_mime_depth: int = 16  # nesting of multiparts and attached messages
    max_zip_bytes: int = 200 * 1024 * 1024  # uncompressed bytes read from one archive, in total
    max_zip_ratio: int = 100  # uncompressed / compressed, per entry: beyond it is a zip bomb
    max_zip_entries: int = 32  # entries listed in one archive
    max_rows: int = 1_000_000  # CSV data rows in one report
    max_cell_bytes: int = 64 * 1024  # one CSV cell (Python's csv also stops at 128 KiB)
    max_findings: int = 1_000_000  # findings of one report, whatever the format
    max_text_chars: int = 1_000_000  # text read from one body part for searching
    max_json_nodes: int = 200_000  # values in a JSON/YAML/XML document turned into evidence


@dataclass(frozen=True, slots=True)
class Finding:
    """What one report (or one row of a feed) says about one resource.

    ``addresses`` are IP addresses in canonical text form; ``urls`` are as reported with the
    usual defanging undone; ``domains`` are lower-case host names. ``event_time`` is aware UTC.
    ``evidence`` holds the fields the format carried, unknown ones included, as JSON values.
    ``kind`` is the format's own name for what happened (ARF feedback type, Shadowserver report
    type, XARF category/type...); ``category`` is what the format itself says in AUP terms, or
    None when it says nothing the AUP names (classification may still decide later).
    """

    category: Category | None
    addresses: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    event_time: datetime | None = None
    port: int | None = None
    description: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    kind: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "category": self.category.value if self.category else None,
            "addresses": list(self.addresses),
            "urls": list(self.urls),
            "domains": list(self.domains),
            "event_time": self.event_time.isoformat() if self.event_time else None,
            "port": self.port,
            "description": self.description,
            "evidence": self.evidence,
            "kind": self.kind,
        }


@dataclass(frozen=True, slots=True)
class ParsedReport:
    """A report as understood: who sent it, when, and its findings.

    ``received_time`` is the report's own date (its Date header, or the time a JSON report
    gives for itself), aware UTC; the time it reached us is the source's business.
    ``notice_complete`` and ``missing`` are set for DMCA notices only: which of the six
    elements of 17 U.S.C. 512(c)(3)(A) are absent (see ``dmca.ELEMENTS``).
    ``fields`` holds format-specific extras, as JSON values.
    """

    format: ReportFormat
    reporter_name: str = ""
    reporter_email: str = ""
    subject: str = ""
    message_id: str | None = None
    received_time: datetime | None = None
    findings: tuple[Finding, ...] = ()
    notice_complete: bool | None = None
    missing: tuple[str, ...] = ()
    fields: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict, as ``Report.parsed`` stores it."""
        return {
            "format": self.format.value,
            "reporter_name": self.reporter_name,
            "reporter_email": self.reporter_email,
            "subject": self.subject,
            "message_id": self.message_id,
            "received_time": self.received_time.isoformat() if self.received_time else None,
            "findings": [f.as_json() for f in self.findings],
            "notice_complete": self.notice_complete,
            "missing": list(self.missing),
            "fields": self.fields,
        }


class FormatParser(Protocol):
    """The interface every format module provides (as module-level functions)."""

    def recognise(self, message: email.message.EmailMessage | None, raw: bytes) -> bool: ...

    def parse(
        self, message: email.message.EmailMessage | None, raw: bytes, limits: Limits
    ) -> ParsedReport: ...
