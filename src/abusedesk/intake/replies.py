"""Replies to the desk's own mail: which case or report a subject names, and what the sender
wrote (the plain text, with the quoted history trimmed). Pure: bytes in, values out.

Every mail the desk sends about a case carries its ticket tag, ``[AD-000123]``, in the subject
(notify/render.py puts it there whatever the template says); the acknowledgement of a complaint
that went to several cases, and the request for missing information, carry the report's
reference, ``[R-000042]``. People keep the tag when they answer, though not always its brackets
or its zeros: ``Re: AD-123`` is read as well. Whether the sender may write about that case is
the pipeline's business (it knows the case); this module only reads the mail.
"""

from __future__ import annotations

import email.parser
import email.policy
import re
from dataclasses import dataclass

from abusedesk.intake.formats import _mail
from abusedesk.intake.formats.base import Limits, ParseError

_CASE_TAG = re.compile(r"\[\s*AD-(\d{1,12})\s*\]", re.IGNORECASE)
# Without brackets: the tag must stand as a word of its own (not "LOAD-1", not "AD-12345x").
_LOOSE_CASE_TAG = re.compile(r"(?<![\w-])AD-(\d{1,12})(?![\w-])", re.IGNORECASE)
_REPORT_TAG = re.compile(r"\[\s*R-(\d{1,12})\s*\]", re.IGNORECASE)
_HEADER_END = re.compile(rb"\r?\n\r?\n")
# A cheap look at the raw header block before parsing it: either tag, or an RFC 2047 encoded
# word (a subject in another charset may carry the tag inside one; it is decoded below).
_ANY_TAG = re.compile(rb"(?i)(?:AD|R)-\d|=\?")
_NOTE_CHARS = 20_000

# Where the quoted history of a reply begins: the attribution line mail clients write ("On
# <date>, <who> wrote:", in the languages the desk hears most), Outlook's separator or its
# header block, and a forwarded message's banner. Everything from there on is the desk's own
# mail coming back, or older mail.
_HISTORY = re.compile(
    r"""^\s*(?:
        (?:On|Am|Le|El|Il|Op|Den|På)\s.{0,300}?
            (?:wrote|schrieb|a\ écrit|escribió|ha\ scritto|schreef|skrev)\b.{0,200}?:\s*$
      | -{2,}\s*(?:Original\ Message|Ursprüngliche\ Nachricht|Message\ d'origine
            |Forwarded\ message|Weitergeleitete\ Nachricht)\s*-{2,}
      | _{20,}
      | (?:From|Von|De|Da):\s.+\n(?:.*\n){0,2}?\s*(?:Sent|Gesendet|Envoyé|Inviato|Date):\s
    )""",
    re.IGNORECASE | re.MULTILINE | re.VERBOSE,
)
# An attribution often wraps: "On Mon, 2 Mar 2026 at 09:00, Abuse Desk <abuse@…>\nwrote:".
_WRAPPED_ATTRIBUTION = re.compile(
    r"^\s*On\s.{0,300}\n.{0,200}wrote\s*:\s*$", re.IGNORECASE | re.MULTILINE
)


def case_tag(subject: str) -> int | None:
    """The case id a subject's ticket tag names: ``[AD-000123]`` first, else a bare
    ``AD-000123`` or ``AD-123``; None without one."""
    text = subject or ""
    match = _CASE_TAG.search(text) or _LOOSE_CASE_TAG.search(text)
    return int(match.group(1)) if match else None


def report_tag(subject: str) -> int | None:
    """The report id in ``[R-000042]`` within a subject, or None."""
    match = _REPORT_TAG.search(subject or "")
    return int(match.group(1)) if match else None


def trim_quoted(text: str) -> str:
    """The sender's own words: the text before the quoted history, without ``>`` lines."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    cuts = [m.start() for m in (_HISTORY.search(text), _WRAPPED_ATTRIBUTION.search(text)) if m]
    if cuts:
        text = text[: min(cuts)]
    kept = [line.rstrip() for line in text.split("\n") if not line.lstrip().startswith(">")]
    return "\n".join(kept).strip()


@dataclass(frozen=True, slots=True)
class Reply:
    """A mail whose subject names a case or a report of the desk."""

    subject: str
    sender: str  # the From address, lower case ("" when there is none)
    sender_name: str
    case_id: int | None  # from the ticket tag
    report_id: int | None  # from the report reference
    auto_submitted: bool  # RFC 3834: a robot's reply (vacation, ticket systems): never answered
    message_id: str | None

    def text(self, raw: bytes) -> str:
        """What the sender wrote: the plain text part (HTML made text when there is none), the
        quoted history trimmed. Parsed only when wanted: most tagged mail is about a case."""
        try:
            message = _mail.parse_message(raw)
            body, _ = _mail.body_text(message, Limits())
        except ParseError:
            return ""
        return trim_quoted(body)[:_NOTE_CHARS]


def read_reply(raw: bytes) -> Reply | None:
    """The reply in ``raw`` if its subject carries a case tag or a report reference; None for
    anything else (most mail), read from the header block alone."""
    end = _HEADER_END.search(raw[:262_144])
    head = raw[: end.start()] if end else raw[:65_536]
    if _ANY_TAG.search(head) is None:
        return None  # most mail: no need to parse its headers for this
    try:
        headers = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(head)
    except Exception:  # a header block too broken to read is no reply: it goes on as a report
        return None
    subject = _mail.header(headers, "Subject")
    case_id, report_id = case_tag(subject), report_tag(subject)
    if case_id is None and report_id is None:
        return None
    name, address = _mail.address(headers, "From")
    auto = _mail.header(headers, "Auto-Submitted").strip().lower()
    return Reply(
        subject=subject,
        sender=address.strip().lower(),
        sender_name=name,
        case_id=case_id,
        report_id=report_id,
        auto_submitted=bool(auto) and not auto.startswith("no"),
        message_id=_mail.message_id(headers),
    )
