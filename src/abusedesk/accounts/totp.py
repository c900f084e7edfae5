"""Time-based one-time passwords (RFC 6238: 30-second steps, six digits, SHA-1, as every
authenticator app expects). Pure: the time is passed in."""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from datetime import datetime

import pyotp
import segno

STEP_SECONDS = 30
# One step either side: a phone whose clock is a little off, or a code typed as it rolled over.
VALID_WINDOW = 1
_DIGITS = 6


def new_totp_secret() -> str:
    """160 random bits in base32 (RFC 4226's recommended length; 32 characters, no padding)."""
    return base64.b32encode(secrets.token_bytes(20)).decode("ascii")


def is_valid_secret(secret: str) -> bool:
    if not 16 <= len(secret) <= 64:
        return False
    try:
        # Apps write secrets without base32's padding; put it back to decode.
        base64.b32decode(secret + "=" * (-len(secret) % 8), casefold=False)
    except (binascii.Error, ValueError):
        return False
    return True


def totp_uri(secret: str, email: str, issuer: str) -> str:
    """The otpauth:// address an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret, interval=STEP_SECONDS).provisioning_uri(
        name=email, issuer_name=issuer
    )


def totp_qr_svg(uri: str) -> str:
    """The QR code of `uri` as an inline <svg> element (no XML declaration), to put in a page."""
    # Medium error correction is plenty for a screen; the quiet zone is the standard 4 modules.
    return str(segno.make(uri, error="m").svg_inline(scale=4, border=4))


def time_step(now: datetime) -> int:
    return int(now.timestamp()) // STEP_SECONDS


def matching_step(secret: str, code: str, now: datetime, after: int | None = None) -> int | None:
    """The time step whose code `code` is, within the window around `now`, or None. A step at
    or before `after` (the last one accepted) does not count: each code works once."""
    code = "".join(code.split())
    if len(code) != _DIGITS or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, interval=STEP_SECONDS)
    current = time_step(now)
    found = None
    # Every candidate is compared, in constant time, so the answer's timing says nothing about
    # which step (if any) matched.
    for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step), code) and (after is None or step > after):
            found = step
    return found


def code_at(secret: str, now: datetime) -> str:
    """The code an authenticator shows at `now` (for tests and the CLI)."""
    return pyotp.TOTP(secret, interval=STEP_SECONDS).generate_otp(time_step(now))
