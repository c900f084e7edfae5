"""Safe reading of a parsed e-mail message for the format modules.

The standard ``email`` package (policy=default) does the MIME work. What it leaves to us is
hostile input: a header whose parsing raises, a charset Python does not know, base64 that is not,
parts nested a thousand deep. Everything here bounds its work and never raises anything but the
format errors of ``base``.
"""

from __future__ import annotations

import email.message
import email.utils
import functools
import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from email import headerregistry, policy
from email.parser import BytesParser
from typing import Any

from abusedesk.intake.formats._extract import html_to_text
from abusedesk.intake.formats.base import (
    Finding,
    LimitExceeded,
    Limits,
    MalformedReport,
    ParsedReport,
    ReportFormat,
)

EmailMessage = email.message.EmailMessage

MAX_HEADER_CHARS = 8192  # a header value longer than this is cut: nothing we read needs more

_FOLD = re.compile(r"\r?\n[ \t]+")
_CONTAINERS = ("message/rfc822", "message/global")


class _RememberingPolicy(policy.EmailPolicy):
    """``policy.default``, remembering the headers it has parsed. With policy=default every
    read of a header parses it again (each ``get_content_type`` parses the Content-Type), and
    that was a fifth of a complaint's cost; the same values come back within a message and
    from one message to the next (``text/plain; charset=us-ascii``). A parsed header is an
    immutable string, so one may serve every message that carries the same value."""

    def header_fetch_parse(self, name: str, value: str) -> Any:
        if not isinstance(value, str) or len(value) > MAX_HEADER_CHARS:
            return super().header_fetch_parse(name, value)
        key = (name.lower(), value)
        found = _parsed_headers.get(key)
        if found is None:
            found = super().header_fetch_parse(name, value)
            if len(_parsed_headers) >= _PARSED_HEADERS_KEPT:
                _parsed_headers.clear()
            _parsed_headers[key] = found
        return found


class _Registry(headerregistry.HeaderRegistry):
    """The standard header registry, but it makes each header class once. The stdlib's builds a
    new class (``type(...)``, through ABCMeta) for every header it parses, which was the largest
    single cost of parsing a header whose value is new (a person's From, a Message-ID); the
    class it builds depends on nothing but the header's name, so one per name serves all."""

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[type, type] = {}

    def __getitem__(self, name: str) -> type:
        cls = self.registry.get(name.lower(), self.default_class)
        made = self._made.get(cls)
        if made is None:
            made = self._made[cls] = type("_" + cls.__name__, (cls, self.base_class), {})
        return made


_PARSED_HEADERS_KEPT = 4096
_parsed_headers: dict[tuple[str, str], Any] = {}
_POLICY = _RememberingPolicy(header_factory=_Registry())


def parse_message(raw: bytes) -> EmailMessage:
    """The message in ``raw``; the parser records defects instead of raising, except on depth."""
    try:
        message = BytesParser(policy=_POLICY).parsebytes(raw)
    except RecursionError as exc:
        raise MalformedReport("the MIME structure nests too deeply to read") from exc
    except Exception as exc:  # the stdlib parser is meant not to raise; if it does, say so
        raise MalformedReport(f"the input could not be read as a MIME message: {exc}") from exc
    if not isinstance(message, EmailMessage):  # pragma: no cover - policy.default guarantees it
        raise MalformedReport("the input could not be read as a MIME message")
    return message


def unfold(value: str) -> str:
    return _FOLD.sub(" ", value).strip()[:MAX_HEADER_CHARS]


def header(message: email.message.Message, name: str) -> str:
    """The decoded value of header ``name`` ("" when absent). Never raises.

    Kept on the message once read: every format's recogniser asks for the same few headers,
    and with policy=default each read parses the header again."""
    memo = _memo(message)
    key = ("header", name.lower())
    found = memo.get(key)
    if found is None:
        found = memo[key] = _header(message, name)
    return str(found)


def _header(message: email.message.Message, name: str) -> str:
    if name.lower() == "message-id":
        # Every message has its own, so no cache helps; a plain one reads back unchanged from
        # the header parser, which would build a parse tree only to print it again.
        raw = raw_headers(message, name)
        if raw and len(raw[0]) <= 998 and _SIMPLE_MESSAGE_ID.fullmatch(raw[0]):
            return raw[0]
    try:
        value = message.get(name)
        text = None if value is None else str(value)
    except Exception:  # a header the policy cannot parse: fall back to its raw text
        text = None
    if text is not None:
        return unfold(text)
    raws = raw_headers(message, name)
    return raws[0] if raws else ""


_SIMPLE_MESSAGE_ID = re.compile(r"<[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+>")


def raw_headers(message: email.message.Message, name: str) -> list[str]:
    """Every raw value of header ``name``, unfolded, in order. Never raises."""
    wanted = name.lower()
    try:
        return [unfold(str(v)) for k, v in message.raw_items() if k.lower() == wanted]
    except Exception:
        return []


def raw_items(message: email.message.Message) -> list[tuple[str, str]]:
    try:
        return [(str(k), unfold(str(v))) for k, v in message.raw_items()]
    except Exception:
        return []


def address(message: email.message.Message, name: str) -> tuple[str, str]:
    """(display name, e-mail address) of an address header, ("", "") when there is none.
    Kept on the message once read: several formats' recognisers ask for the sender."""
    memo = _memo(message)
    key = ("address", name.lower())
    found = memo.get(key)
    if found is None:
        found = memo[key] = _simple_address(message, name) or _address(message, name)
    return (str(found[0]), str(found[1]))


# The plainest address header: words of letters and digits, then <local@domain>, or the bare
# address. For these the header parser's rendering and parseaddr give back exactly the words
# (one space between them) and the address, so they are read without either; anything else
# (quotes, comments, encoded words, folding, several addresses) goes the whole way.
_WORD = r"[A-Za-z0-9'_-]+"
_ADDR_SPEC = r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
_SIMPLE_ADDRESS = re.compile(
    rf"({_WORD}(?: {_WORD})*) <({_ADDR_SPEC})>|<({_ADDR_SPEC})>|({_ADDR_SPEC})"
)


def _simple_address(message: email.message.Message, name: str) -> tuple[str, str] | None:
    wanted = name.lower()
    try:
        raw = next((v for k, v in message.raw_items() if k.lower() == wanted), None)
    except Exception:
        return None
    if not isinstance(raw, str) or len(raw) > 998:
        return None
    match = _SIMPLE_ADDRESS.fullmatch(raw.strip())
    if match is None:
        return None
    display, named, bracketed, bare = match.groups()
    return (display or "", named or bracketed or bare)


def _address(message: email.message.Message, name: str) -> tuple[str, str]:
    text = header(message, name)
    if not text:
        return "", ""
    try:
        display, addr = email.utils.parseaddr(text)
    except Exception:
        return "", ""
    if "@" not in addr:
        return display.strip(), ""
    return display.strip().strip('"'), addr.strip()


def message_id(message: email.message.Message) -> str | None:
    value = header(message, "Message-ID")
    return value or None


# Time zone abbreviations seen in reports that email.utils does not know.
_ZONES = {
    "UTC": 0,
    "UT": 0,
    "GMT": 0,
    "Z": 0,
    "WET": 0,
    "BST": 1,
    "CET": 1,
    "WEST": 1,
    "CEST": 2,
    "EET": 2,
    "EEST": 3,
    "MSK": 3,
    "EST": -5,
    "EDT": -4,
    "CST": -6,
    "CDT": -5,
    "MST": -7,
    "MDT": -6,
    "PST": -8,
    "PDT": -7,
}
_ISO_WITH_ZONE_NAME = re.compile(
    r"^(\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*([A-Za-z]{1,5})$"
)


def parse_datetime(value: object) -> datetime | None:
    """An aware UTC datetime from RFC 2822 or ISO 8601 text, or None.

    A time without a zone is taken as UTC: every feed we read (Shadowserver, XARF) writes UTC.
    """
    if not isinstance(value, str):
        return None
    return _parse_datetime_text(value.strip()[:200])


@functools.lru_cache(maxsize=4096)
def _parse_datetime_text(text: str) -> datetime | None:
    # Cached: a feed repeats the same timestamps row after row, and datetimes are immutable.
    if not text:
        return None
    parsed: datetime | None = None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        parsed = None
    if parsed is None:
        match = _ISO_WITH_ZONE_NAME.match(text)
        if match and match.group(2).upper() in _ZONES:
            try:
                naive = datetime.fromisoformat(match.group(1))
            except ValueError:
                naive = None
            if naive is not None:
                offset = timezone(timedelta(hours=_ZONES[match.group(2).upper()]))
                parsed = naive.replace(tzinfo=offset)
    if parsed is None:
        parsed = _parse_rfc2822(text)
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)  # a feed's usual row: no conversion to make
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def _parse_rfc2822(text: str) -> datetime | None:
    # "(EST)" comments after the offset are common; email.utils copes with them, but a zone
    # name it does not know (CEST) comes back as naive, so look the name up ourselves.
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:
        tail = re.search(r"\b([A-Z]{2,5})\)?\s*$", text)
        if tail and tail.group(1) in _ZONES:
            parsed = parsed.replace(tzinfo=timezone(timedelta(hours=_ZONES[tail.group(1)])))
    return parsed


@dataclass(frozen=True, slots=True)
class Part:
    """One MIME part, with where it sits: depth, and whether it is inside an attached message."""

    part: email.message.Message
    depth: int
    in_attached_message: bool


def content_type(part: email.message.Message) -> str:
    """The part's media type, lower-case, with the stdlib's defaulting rules.

    The same rule as ``Message.get_content_type``, read from the raw header: with
    policy=default that method builds a parsed header object each call, and the format
    recognisers ask for every part's type many times.
    """
    value = None
    try:
        for key, raw in part.raw_items():
            if key.lower() == "content-type":
                value = str(raw)
                break
    except Exception:
        value = None
    if value is None:
        try:
            return part.get_default_type()
        except Exception:
            return "text/plain"
    ctype = value.split(";", 1)[0].strip().lower()
    return ctype if ctype.count("/") == 1 else "text/plain"


# What the recognisers and the parser compute about one message, computed once: they are asked
# in turn about the same message object. Kept on the object itself (no module-level state), so
# it goes when the message goes and two threads never share it.
_MEMO_ATTRIBUTE = "_abusedesk_formats_memo"


def memo(message: email.message.Message) -> dict[tuple[Any, ...], Any]:
    """What the format modules computed about this message, kept on it (see above)."""
    return _memo(message)


def _memo(message: email.message.Message) -> dict[tuple[Any, ...], Any]:
    try:
        memo = vars(message).setdefault(_MEMO_ATTRIBUTE, {})
    except TypeError:  # an object without a __dict__: no memo
        return {}
    return memo if isinstance(memo, dict) else {}


def walk(message: email.message.Message, limits: Limits) -> list[Part]:
    """Every part, depth first, without recursion; bounded by the MIME limits.

    Only multiparts and attached messages (message/rfc822, message/global) are entered: a
    message/feedback-report or message/delivery-status is a leaf holding header blocks.
    """
    memo = _memo(message)
    key = ("walk", limits.max_mime_parts, limits.max_mime_depth)
    if key not in memo:
        memo[key] = _walk(message, limits)
    return list(memo[key])


def _walk(message: email.message.Message, limits: Limits) -> list[Part]:
    out: list[Part] = []
    stack: list[tuple[email.message.Message, int, bool]] = [(message, 0, False)]
    while stack:
        node, depth, inner = stack.pop()
        if depth > limits.max_mime_depth:
            raise LimitExceeded(f"MIME parts nest more than {limits.max_mime_depth} deep")
        if len(out) >= limits.max_mime_parts:
            raise LimitExceeded(f"the message has more than {limits.max_mime_parts} MIME parts")
        out.append(Part(node, depth, inner))
        ctype = content_type(node)
        if not (ctype.startswith("multipart/") or ctype in _CONTAINERS):
            continue
        try:
            children = node.get_payload()
        except Exception:  # an unreadable container is a leaf
            children = None
        if not isinstance(children, list):
            continue
        child_inner = inner or ctype in _CONTAINERS
        for child in reversed(children):
            if isinstance(child, email.message.Message):
                stack.append((child, depth + 1, child_inner))
    return out


def part_bytes(part: email.message.Message) -> bytes:
    """The decoded body of a leaf part (b"" for containers or when it cannot be decoded)."""
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        return b""
    return payload if isinstance(payload, bytes) else b""


def part_text(part: email.message.Message, limit: int) -> str:
    """The decoded text of a leaf part, at most ``limit`` characters; bad bytes become U+FFFD."""
    data = part_bytes(part)[: limit * 4]
    try:
        charset = part.get_content_charset() or "utf-8"
    except Exception:
        charset = "utf-8"
    try:
        text = data.decode(charset, errors="replace")
    except (LookupError, UnicodeError, ValueError, TypeError):
        text = data.decode("utf-8", errors="replace")
    return text[:limit]


def filename(part: email.message.Message) -> str:
    """The part's own file name (Content-Disposition filename or Content-Type name), base only.
    Kept on the part once read, as headers are."""
    memo = _memo(part)
    found = memo.get(("filename",))
    if found is None:
        found = memo[("filename",)] = _filename(part)
    return str(found)


def _filename(part: email.message.Message) -> str:
    try:
        name = part.get_filename()
    except Exception:
        name = None
    if not name:
        try:
            name = part.get_param("name")  # type: ignore[assignment]
        except Exception:
            name = None
    if not isinstance(name, str):
        return ""
    return re.split(r"[\\/]", name.strip())[-1][:255]


def is_attachment(part: email.message.Message) -> bool:
    try:
        disposition = (part.get_content_disposition() or "").lower()
    except Exception:
        disposition = ""
    return disposition == "attachment" or bool(filename(part))


def body_text(message: email.message.Message, limits: Limits) -> tuple[str, bool]:
    """The sender's own words: the inline text parts outside attached messages.

    Plain text is preferred; HTML is used (made safe text) only when there is no plain text.
    Returns (text, came_from_html).
    """
    memo = _memo(message)
    key = ("body", limits.max_mime_parts, limits.max_mime_depth, limits.max_text_chars)
    if key not in memo:
        memo[key] = _body_text(message, limits)
    result: tuple[str, bool] = memo[key]
    return result


def _body_text(message: email.message.Message, limits: Limits) -> tuple[str, bool]:
    plain: list[str] = []
    html: list[str] = []
    budget = limits.max_text_chars
    for item in walk(message, limits):
        part = item.part
        if item.in_attached_message or part.is_multipart() or is_attachment(part):
            continue
        ctype = content_type(part)
        if ctype == "text/plain":
            plain.append(part_text(part, budget))
        elif ctype == "text/html":
            html.append(part_text(part, budget))
    if plain:
        return "\n".join(plain)[:budget], False
    if html:
        return html_to_text("\n".join(html)[:budget]), True
    return "", False


def attached_messages(message: email.message.Message, limits: Limits) -> Iterator[Part]:
    """The attached messages (message/rfc822 parts' inner message), outermost first."""
    for item in walk(message, limits):
        if content_type(item.part) in _CONTAINERS:
            inner = attached_payload(item.part)
            if isinstance(inner, list) and inner and isinstance(inner[0], email.message.Message):
                yield Part(inner[0], item.depth + 1, True)


def attached_payload(part: email.message.Message) -> object:
    try:
        return part.get_payload()
    except Exception:
        return None


_RECEIVED_FROM = re.compile(r"^\s*from\s+(.*?)(?:\sby\s|;|$)", re.I | re.S)
_BRACKETED = re.compile(r"[\[(]\s*(?:IPv6:)?([0-9A-Fa-f:.]+)\s*[\])]")


def received_source_ip(headers: email.message.Message) -> tuple[str | None, str]:
    """The connecting client's address from the topmost Received header, if clearly derivable.

    The topmost Received field is the one the report generator's own mail server added when it
    accepted the message (RFC 5321 4.4), so its ``from`` clause names the client that handed the
    message over: ``from host (host [192.0.2.1])``. The address counts only when that clause
    holds exactly one distinct IP literal that is not loopback, link-local, multicast or
    unspecified; otherwise nothing is derived. Returns (address or None, the header used).
    """
    received = raw_headers(headers, "Received")
    if not received:
        return None, ""
    top = received[0]
    match = _RECEIVED_FROM.match(top)
    if not match:
        return None, top
    found: set[str] = set()
    for literal in _BRACKETED.findall(match.group(1)):
        try:
            ip = ipaddress.ip_address(literal)
        except ValueError:
            continue
        if ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified:
            continue
        found.add(str(ip))
    if len(found) == 1:
        return found.pop(), top
    return None, top


def mail_report(
    message: email.message.EmailMessage,
    fmt: ReportFormat,
    name: str,
    addr: str,
    findings: tuple[Finding, ...] | list[Finding],
    fields: dict[str, Any],
    subject: str | None = None,
) -> ParsedReport:
    """The report of a format that arrives as mail: what the envelope says, the same for all."""
    return ParsedReport(
        format=fmt,
        reporter_name=name,
        reporter_email=addr,
        subject=header(message, "Subject") if subject is None else subject,
        message_id=message_id(message),
        received_time=parse_datetime(header(message, "Date")),
        findings=tuple(findings),
        fields=fields,
    )
