"""ARF: the Abuse Reporting Format of feedback loops (RFC 5965, RFC 6650, RFC 6591).

A ``multipart/report; report-type=feedback-report`` message with three parts: a human-readable
text, a ``message/feedback-report`` block of header-like fields, and the reported message (whole,
``message/rfc822``, or its headers only, ``text/rfc822-headers``). The draft-era format
(``Version: 0.1``, ``Received-Date`` instead of ``Arrival-Date``) is read the same way.

Fields read: Feedback-Type, User-Agent, Version, Source-IP, Source-Port, Original-Mail-From,
Original-Rcpt-To, Arrival-Date / Received-Date, Reported-Domain, Reported-URI, Incidents; every
other field (Authentication-Results, Auth-Failure, DKIM-Domain, Redacted-Address, ...) is kept in
the finding's evidence under its lower-case name.

``auth-failure`` reports (RFC 6591) say a message failed SPF/DKIM/DMARC checks. They are not
complaints about spam: their category is None and their kind ``auth-failure``.

When Source-IP is absent the source address is taken from the reported message's topmost
Received header, and only when that header's ``from`` clause holds exactly one usable IP literal
(see ``_mail.received_source_ip``); ``fields["source_ip_from"]`` then says ``"received"``.
"""

from __future__ import annotations

import base64
import binascii
import email.message
import quopri
import re
from email import policy
from email.parser import HeaderParser
from typing import Any

from abusedesk.intake.formats import _mail
from abusedesk.intake.formats._extract import canonical_ip, unique
from abusedesk.intake.formats.base import (
    Finding,
    Limits,
    MalformedReport,
    NotThisFormat,
    ParsedReport,
    ReportFormat,
)
from abusedesk.policy.choices import Category

# RFC 5965 3.5 (and the draft's) feedback types; RFC 6591 adds auth-failure.
CATEGORY_BY_FEEDBACK_TYPE: dict[str, Category | None] = {
    "abuse": Category.SPAM,  # unsolicited e-mail or some other kind of e-mail abuse
    "fraud": Category.FRAUD,  # "fraud or phishing activity": classification may refine it
    "virus": Category.MALWARE,
    "auth-failure": None,  # an SPF/DKIM/DMARC failure report, not a complaint
    "dkim": None,  # the draft's name for auth-failure
    "not-spam": None,  # a retraction: the recipient says it was not spam
    "miscategorized": None,
    "opt-out": None,  # an unsubscribe request
    "opt-out-list": None,
    "other": None,
}

_MULTI = frozenset(
    {"original-rcpt-to", "reported-uri", "redacted-address", "authentication-results"}
)
_DESCRIPTION_CHARS = 4000


def recognise(message: email.message.EmailMessage | None, raw: bytes) -> bool:
    if message is None:
        return False
    if _mail.content_type(message) == "multipart/report":
        try:
            report_type = str(message.get_param("report-type") or "").lower()
        except Exception:
            report_type = ""
        if report_type == "feedback-report":
            return True
    # A feedback report forwarded inside another message still carries its block.
    try:
        parts = _mail.walk(message, Limits())
    except Exception:
        return False
    return any(_mail.content_type(p.part) == "message/feedback-report" for p in parts)


def parse(message: email.message.EmailMessage | None, raw: bytes, limits: Limits) -> ParsedReport:
    if message is None:
        raise NotThisFormat("an ARF report is a MIME message")
    parts = _mail.walk(message, limits)
    block = next(
        (p.part for p in parts if _mail.content_type(p.part) == "message/feedback-report"), None
    )
    if block is None:
        raise NotThisFormat("no message/feedback-report part")
    items = feedback_fields(block)
    if not items:
        raise MalformedReport("the message/feedback-report part holds no fields")
    fields = collect(items)
    feedback_type = str(fields.get("feedback-type") or "").strip().lower()
    if not feedback_type:
        raise MalformedReport("the feedback report has no Feedback-Type field")

    original = _original_headers(parts)
    extras: dict[str, Any] = {
        "feedback_type": feedback_type,
        "user_agent": _first(fields.get("user-agent")),
        "arf_version": _first(fields.get("version")),
    }
    addresses: list[str] = []
    source_ip = _first(fields.get("source-ip"))
    if source_ip:
        canonical = canonical_ip(source_ip)
        if canonical:
            addresses.append(canonical)
        else:
            extras["source_ip_invalid"] = source_ip
    elif original is not None:
        derived, received = _mail.received_source_ip(original)
        if derived:
            addresses.append(derived)
            extras["source_ip_from"] = "received"
            extras["source_ip_received"] = received
    if original is not None:
        extras["original"] = {
            "message_id": _mail.header(original, "Message-ID"),
            "from": _mail.header(original, "From"),
            "subject": _mail.header(original, "Subject"),
            "date": _mail.header(original, "Date"),
        }

    urls = unique(_as_list(fields.get("reported-uri")))
    domains = unique(d.lower().strip(".") for d in _as_list(fields.get("reported-domain")))
    port = _port(_first(fields.get("source-port")))
    event_time = _mail.parse_datetime(
        _first(fields.get("arrival-date")) or _first(fields.get("received-date"))
    )
    description, _ = _mail.body_text(message, limits)
    name, addr = _mail.address(message, "From")
    finding = Finding(
        category=CATEGORY_BY_FEEDBACK_TYPE.get(feedback_type),
        addresses=tuple(addresses),
        urls=tuple(urls),
        domains=tuple(domains),
        event_time=event_time,
        port=port,
        description=description.strip()[:_DESCRIPTION_CHARS],
        evidence=fields,
        kind=feedback_type,
    )
    return _mail.mail_report(message, ReportFormat.ARF, name, addr, (finding,), extras)


def feedback_fields(block: email.message.Message) -> list[tuple[str, str]]:
    """The (name, value) fields of a message/feedback-report part, in order, unfolded.

    The stdlib parser reads the part as header blocks (like message/delivery-status). RFC 5965
    wants the block in 7bit, but some senders base64- or QP-encode it; the parser then sees no
    fields, so the body is put back together, decoded and read again as one header block.
    """
    payload = _mail.attached_payload(block)
    items: list[tuple[str, str]] = []
    chunks: list[str] = []
    for sub in payload if isinstance(payload, list) else []:
        if isinstance(sub, email.message.Message):
            sub_items = _mail.raw_items(sub)
            items.extend(sub_items)
            chunks.extend(f"{k}: {v}" for k, v in sub_items)
            body = _mail.attached_payload(sub)
            if isinstance(body, str):
                chunks.append(body)
    if isinstance(payload, str):
        chunks.append(payload)
    encoding = _mail.header(block, "Content-Transfer-Encoding").lower()
    if items and encoding not in ("base64", "quoted-printable"):
        return items
    text = "\n".join(chunks)[:65536]
    if encoding == "base64":
        try:
            text = base64.b64decode(re.sub(r"[^A-Za-z0-9+/=]", "", text) + "==").decode(
                "utf-8", errors="replace"
            )
        except (binascii.Error, ValueError):
            return items
    elif encoding == "quoted-printable":
        text = quopri.decodestring(text.encode("utf-8", errors="replace")).decode(
            "utf-8", errors="replace"
        )
    try:
        parsed = HeaderParser(policy=policy.compat32).parsestr(text.lstrip())
    except Exception:
        return items
    return _mail.raw_items(parsed) or items


def collect(items: list[tuple[str, str]]) -> dict[str, Any]:
    """Fields by lower-case name; the repeatable ones (and any that repeat) as lists."""
    out: dict[str, Any] = {}
    for name, value in items:
        key = name.strip().lower()
        if not re.fullmatch(r"[a-z0-9-]{1,64}", key):
            continue
        if key in _MULTI:
            out.setdefault(key, []).append(value)
        elif key in out:
            previous = out[key]
            out[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            out[key] = value
    return out


def _original_headers(parts: list[_mail.Part]) -> email.message.Message | None:
    for item in parts:
        ctype = _mail.content_type(item.part)
        if ctype in ("message/rfc822", "message/global"):
            inner = _mail.attached_payload(item.part)
            if isinstance(inner, list) and inner and isinstance(inner[0], email.message.Message):
                return inner[0]
        if ctype == "text/rfc822-headers":
            text = _mail.part_text(item.part, 65536)
            try:
                return HeaderParser(policy=policy.compat32).parsestr(text)
            except Exception:
                return None
    return None


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    return [str(v).strip().strip("<>").strip() for v in values if str(v).strip()]


def _first(value: Any) -> str:
    values = _as_list(value)
    return values[0] if values else ""


def _port(value: str) -> int | None:
    return int(value) if value.isdigit() and 0 < int(value) < 65536 else None
