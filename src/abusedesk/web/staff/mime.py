"""A stored report's raw bytes as staff read them: the message as text, its attachments as
downloads. Nothing here renders a message's HTML; what a complainant sent stays inert."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser, BytesParser
from urllib.parse import quote

from fastapi.responses import Response

MAX_PARTS = 100
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class Part:
    index: int  # its place among the message's leaf parts, the address of its download
    filename: str
    content_type: str
    size: int
    payload: bytes


def as_text(raw: bytes) -> str:
    """The bytes as text, whatever their encoding claims: what cannot be decoded is marked,
    never guessed."""
    return raw.decode("utf-8", errors="replace")


def is_mail(raw: bytes) -> bool:
    """Whether the report is a mail message (it has headers), rather than a JSON or CSV body."""
    head = BytesHeaderParser(policy=policy.default).parsebytes(raw[:65536])
    return bool(head.keys())


def _leaves(raw: bytes) -> list[EmailMessage]:
    if not is_mail(raw):
        return []
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return [p for p in message.walk() if not p.is_multipart()][: MAX_PARTS + 1]


def attachments(raw: bytes) -> list[Part]:
    """The parts a mail carries as files (those with a name or marked as attachments)."""
    found = []
    for index, part in enumerate(_leaves(raw)):
        if part.get_filename() is None and part.get_content_disposition() != "attachment":
            continue
        found.append(_part(index, part))
    return found


def attachment(raw: bytes, index: int) -> Part | None:
    leaves = _leaves(raw)
    if not 0 <= index < len(leaves):
        return None
    return _part(index, leaves[index])


def _part(index: int, part: EmailMessage) -> Part:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        text = part.get_payload()
        if not isinstance(text, str):  # None: no body (a leaf is never multipart, so no list)
            text = ""
        payload = text.encode("utf-8", errors="replace")
    name = safe_filename(part.get_filename() or "", f"part-{index}.bin")
    return Part(index, name, part.get_content_type(), len(payload), payload)


def safe_filename(name: str, default: str) -> str:
    cleaned = _UNSAFE.sub("_", name).strip("._")[:100]
    return cleaned or default


def download(payload: bytes, filename: str, media_type: str) -> Response:
    """Bytes that the browser saves and never renders in the console's origin."""
    ascii_name = safe_filename(filename, "download.bin")
    return Response(
        payload,
        media_type=media_type,
        headers={
            "Content-Disposition": (
                f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"
            ),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "no-store",
        },
    )
