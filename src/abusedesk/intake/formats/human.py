"""A complaint written by a person, in plain text or HTML: the fallback for everything else.

The sender (From) is the complainant. The sender's own words are the inline text parts outside
any attached message; HTML is used only when there is no plain text, and is made text by the
standard tokenizer with scripts, styles and other active content dropped (nothing runs, and no
markup is kept). IPv4 and IPv6 addresses, URLs and domain names are taken from those words, with
defanging (``hxxp``, ``[.]``) undone. A complaint often forwards the offending mail as an
attachment: the URLs and domains in its body are taken too, and the source address from its
topmost Received header when that is clearly derivable (as for ARF).

A complaint is one finding, even when nothing in it locates a server: verification then asks the
complainant for what is missing (R5). The category is left to classification.

Input that is not mail and not text either (no header a mail has, and control bytes) is refused
with ``MalformedReport`` rather than taken for a complaint.
"""

from __future__ import annotations

import email.message
import re
from typing import Any

from abusedesk.intake.formats import _mail
from abusedesk.intake.formats._extract import resources, unique
from abusedesk.intake.formats.base import (
    Finding,
    Limits,
    MalformedReport,
    NotThisFormat,
    ParsedReport,
    ReportFormat,
)

_MAIL_HEADERS = frozenset({"from", "to", "subject", "date", "message-id", "received", "reply-to"})
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_DESCRIPTION_CHARS = 8000


def _has_mail_header(message: email.message.EmailMessage) -> bool:
    """Whether a header every mail has is there, with a value. Read raw: parsing them (a
    person's From is new in every complaint) cost more than the question needs."""
    return any(name.lower() in _MAIL_HEADERS and value for name, value in _mail.raw_items(message))


def recognise(message: email.message.EmailMessage | None, raw: bytes) -> bool:
    return message is not None


def parse(message: email.message.EmailMessage | None, raw: bytes, limits: Limits) -> ParsedReport:
    if message is None:
        raise NotThisFormat("a complaint is read as a message")
    text, from_html = _mail.body_text(message, limits)
    has_headers = _has_mail_header(message)
    if not has_headers:
        sample = raw[:65536].decode("utf-8", errors="replace")
        if not sample.strip() or _binary(sample):
            raise MalformedReport("the input is neither an e-mail message nor text")
        text = raw[: limits.max_text_chars].decode("utf-8", errors="replace")
    addresses, urls, domains, emails = resources(text)

    attached: list[dict[str, Any]] = []
    for item in _mail.attached_messages(message, limits):
        inner = item.part
        inner_text, _ = _mail.body_text(inner, limits)
        _, inner_urls, inner_domains, _ = resources(inner_text)
        source, received = _mail.received_source_ip(inner)
        urls += inner_urls
        domains += inner_domains
        if source:
            addresses.append(source)
        attached.append(
            {
                "subject": _mail.header(inner, "Subject"),
                "from": _mail.header(inner, "From"),
                "message_id": _mail.header(inner, "Message-ID"),
                "source_ip": source or "",
                "received": received,
            }
        )
        if len(attached) >= 20:
            break

    name, addr = _mail.address(message, "From")
    reply_name, reply_to = _mail.address(message, "Reply-To")
    attachments = [
        _mail.filename(item.part)
        for item in _mail.walk(message, limits)
        if not item.part.is_multipart() and _mail.filename(item.part)
    ]
    evidence: dict[str, Any] = {"emails": emails}
    if attachments:
        evidence["attachments"] = attachments[:50]
    if attached:
        evidence["attached_messages"] = attached
    finding = Finding(
        category=None,
        addresses=tuple(unique(addresses)),
        urls=tuple(unique(urls)),
        domains=tuple(unique(domains)),
        description=text.strip()[:_DESCRIPTION_CHARS],
        evidence=evidence,
        kind="complaint",
    )
    fields: dict[str, Any] = {"html": from_html, "is_mail": has_headers}
    if reply_to and reply_to.lower() != addr.lower():
        fields["reply_to"] = reply_to
        fields["reply_to_name"] = reply_name
    return _mail.mail_report(message, ReportFormat.HUMAN, name, addr, (finding,), fields)


def _binary(text: str) -> bool:
    """True for text that is mostly not text: NULs, or many control characters."""
    if "\x00" in text:
        return True
    controls = len(_CONTROL.findall(text))
    replaced = text.count("\ufffd")
    return (controls + replaced) > len(text) * 0.1
