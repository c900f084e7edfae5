"""argon2id password hashes (argon2-cffi's defaults are argon2id)."""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()

MIN_LENGTH = 10


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password(hashed: str | None, password: str) -> bool:
    if not hashed:
        return False
    try:
        return _hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(hashed: str) -> bool:
    """True when the hash was made with weaker parameters than today's: it is replaced at the
    next successful sign-in, the only time the password is known."""
    try:
        return _hasher.check_needs_rehash(hashed)
    except InvalidHashError:
        return True


@cache
def _dummy_hash() -> str:
    return _hasher.hash("an unknown user's password is never this")


def spend_like_a_check(password: str) -> None:
    """Verify against a hash no one has, for an unknown e-mail or a user without a password:
    the answer then takes as long as for a real user, so timing does not tell who exists."""
    check_password(_dummy_hash(), password)


def weakness(password: str) -> str | None:
    """Why a password is refused, or None."""
    if len(password) < MIN_LENGTH:
        return f"a password needs at least {MIN_LENGTH} characters"
    if password.lower() == password and password.isalpha():
        return "a password of letters alone needs a digit, a capital or a symbol"
    return None
