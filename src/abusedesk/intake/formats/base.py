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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, overload

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
class FeedFile:
    """One CSV file of a feed: its columns, and what each of its rows reports."""

    columns: tuple[str, ...]
    category: Category | None
    kind: str


class FeedRows(Sequence[Finding]):
    """A feed's findings, one per row, kept as the table they came from.

    What locating and grouping 100 000 rows need — each row's address and time, and its file
    (so its report type) — is held in columns; a row's Finding, with its evidence (the row's
    cells by column name), is made only when it is asked for: the few rows a case shows, the
    first ones a report row keeps. To everything else it is a read-only sequence of Findings
    like a tuple; only the pipeline reads the columns. Filled by a parser, then not changed.
    """

    __slots__ = (
        "addresses",
        "cells",
        "descriptions",
        "file_of",
        "files",
        "names",
        "ports",
        "times",
    )

    def __init__(self) -> None:
        # One entry per row in each list; a parser appends to them directly (the loop runs
        # once per row, and a method call per row costs as much as the rest of it).
        self.files: list[FeedFile] = []
        self.file_of: list[int] = []
        self.cells: list[list[str]] = []
        self.addresses: list[str] = []
        self.times: list[datetime | None] = []
        self.ports: list[int | None] = []
        self.descriptions: list[str] = []
        # The rows that name URLs or domains besides their address: row → (urls, domains).
        self.names: dict[int, tuple[tuple[str, ...], tuple[str, ...]]] = {}

    def __len__(self) -> int:
        return len(self.addresses)

    @overload
    def __getitem__(self, index: int) -> Finding: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[Finding, ...]: ...

    def __getitem__(self, index: int | slice) -> Finding | tuple[Finding, ...]:
        if isinstance(index, slice):
            return tuple(self._finding(i) for i in range(*index.indices(len(self))))
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("feed row out of range")
        return self._finding(index)

    def __iter__(self) -> Iterator[Finding]:
        return (self._finding(i) for i in range(len(self)))

    def __add__(self, other: Sequence[Finding]) -> tuple[Finding, ...]:
        return tuple(self) + tuple(other)

    def __radd__(self, other: Sequence[Finding]) -> tuple[Finding, ...]:
        return tuple(other) + tuple(self)

    def __repr__(self) -> str:
        return f"<FeedRows: {len(self)} rows in {len(self.files)} file(s)>"

    def _finding(self, i: int) -> Finding:
        file = self.files[self.file_of[i]]
        urls, domains = self.names.get(i, ((), ()))
        return Finding(
            file.category,
            (self.addresses[i],),
            urls,
            domains,
            self.times[i],
            self.ports[i],
            self.descriptions[i],
            dict(zip(file.columns, self.cells[i], strict=False)),
            file.kind,
        )


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
    findings: Sequence[Finding] = ()  # a tuple, or a feed's FeedRows
    notice_complete: bool | None = None
    missing: tuple[str, ...] = ()
    fields: dict[str, Any] = field(default_factory=dict)

    def as_json(self, max_findings: int | None = None) -> dict[str, Any]:
        """A JSON-ready dict, as ``Report.parsed`` stores it. ``max_findings`` keeps the first
        ones only (a feed's 100 000 rows are for the raw report to keep, not for a page to
        show); ``findings_total`` always says how many there are."""
        kept = self.findings if max_findings is None else self.findings[:max_findings]
        return {
            "format": self.format.value,
            "reporter_name": self.reporter_name,
            "reporter_email": self.reporter_email,
            "subject": self.subject,
            "message_id": self.message_id,
            "received_time": self.received_time.isoformat() if self.received_time else None,
            "findings": [f.as_json() for f in kept],
            "findings_total": len(self.findings),
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
