"""Signing in: passwords, lockout, TOTP, sessions and password resets.

The web keeps a signed cookie with the user's id and the `session_epoch` it began in, and asks
`actor_for_session` on every request; raising the epoch (a password reset, "sign out
everywhere", removal from an account, an admin's TOTP reset) ends every session of that user.

Decisions worth knowing:
- Every answer about who exists is the same: an unknown e-mail, an inactive user and a user with
  no password yet are all BAD_CREDENTIALS, after a password check of the same cost.
- `max_failed_logins` consecutive failures (a wrong password or a wrong code) lock the user for
  `lockout`. While locked, attempts are refused unchecked and do not extend the lock (else
  anyone could keep a user out for ever). The count is cleared only by a success or a reset,
  so once a lock has passed the next failure locks again at once.
- TOTP is required for admin and legal users (TOTP_REQUIRED_ROLES) and for anyone who enrolled.
  A code counts once: the step of the last code accepted is kept, and an earlier or equal one
  is refused. An admin or legal user without TOTP who gives the right password gets
  TOTP_ENROLMENT_REQUIRED with an actor: the web must let that actor do nothing but enrol.
- Switching TOTP off: a user may switch off their own unless their role requires it; an admin
  (USERS_MANAGE) may reset anyone else's, which also ends that user's sessions (the usual reason
  is a lost phone) and, for admin and legal, makes them enrol again at the next sign-in. Nobody
  removes their own required TOTP.
- A reset link works once, for `password_reset_ttl`; using one (or an invitation) voids every
  other link of that user. At most `password_resets_per_hour` reset mails go to one user in an
  hour; further requests are answered the same way and recorded in the audit log only.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from abusedesk.accounts.choices import TOTP_REQUIRED_ROLES, TokenPurpose
from abusedesk.accounts.models import PasswordToken, User
from abusedesk.accounts.passwords import (
    check_password,
    hash_password,
    needs_rehash,
    spend_like_a_check,
    weakness,
)
from abusedesk.accounts.permissions import Actor, Permission
from abusedesk.accounts.service import actor_for
from abusedesk.accounts.settings import AuthSettings
from abusedesk.accounts.totp import (
    is_valid_secret,
    matching_step,
    new_totp_secret,
    totp_qr_svg,
    totp_uri,
)
from abusedesk.accounts.validators import normalise_email
from abusedesk.errors import Conflict, NotFound, PermissionDenied, ValidationError
from abusedesk.inventory.models import Account
from abusedesk.notify.choices import MessageTemplate
from abusedesk.notify.outbox import queue_for_user
from abusedesk.store.uow import UnitOfWork

__all__ = [
    "SignInOutcome",
    "SignInResult",
    "actor_for_session",
    "check_password_token",
    "disable_totp",
    "enable_totp",
    "new_totp_secret",
    "request_password_reset",
    "reset_password",
    "sign_in",
    "sign_out_everywhere",
    "totp_qr_svg",
    "totp_uri",
]

ANONYMOUS = "anonymous"  # the audit log's actor for what someone not signed in asked for
RESET_PATH = "/password-reset/"
_EMAIL_IN_AUDIT = 254  # what a stranger typed is kept, but no more than an address can be


class SignInOutcome(StrEnum):
    OK = "ok"
    BAD_CREDENTIALS = "bad_credentials"
    LOCKED = "locked"
    TOTP_REQUIRED = "totp_required"  # the password was right; ask for the code
    TOTP_INVALID = "totp_invalid"
    TOTP_ENROLMENT_REQUIRED = "totp_enrolment_required"  # admin or legal without TOTP yet


@dataclass(frozen=True)
class SignInResult:
    outcome: SignInOutcome
    actor: Actor | None = None  # for OK and TOTP_ENROLMENT_REQUIRED
    session_epoch: int = 0
    locked_until: datetime | None = None


# -- signing in -----------------------------------------------------------------------------


def sign_in(
    uow: UnitOfWork, email: str, password: str, totp_code: str | None, auth: AuthSettings
) -> SignInResult:
    """Check a password (and a code where one is needed). Every attempt is audited, never with
    the password or the code."""
    address = email.strip().lower()
    with uow:
        now = uow.clock.now()
        # Locked so that concurrent wrong guesses each count (PostgreSQL; SQLite serialises).
        user = uow.session.scalar(sa.select(User).where(User.email == address).with_for_update())
        if user is None or not user.is_active or not user.password_hash:
            spend_like_a_check(password)
            if user is None:
                why = "unknown e-mail"
            elif not user.is_active:
                why = "inactive"
            else:
                why = "no password set"
            uow.audit(
                ANONYMOUS,
                "signin.failed",
                "user",
                user.id if user else "",
                {"email": address[:_EMAIL_IN_AUDIT], "reason": why},
            )
            uow.commit()
            return SignInResult(SignInOutcome.BAD_CREDENTIALS)
        label = actor_for(user).label
        if user.locked_until is not None and now < user.locked_until:
            spend_like_a_check(password)
            until = user.locked_until
            uow.audit(ANONYMOUS, "signin.locked", "user", user.id, {"until": until.isoformat()})
            uow.commit()
            return SignInResult(SignInOutcome.LOCKED, locked_until=until)
        if not check_password(user.password_hash, password):
            return _failed(uow, user, auth, SignInOutcome.BAD_CREDENTIALS, "wrong password")
        totp_used = False
        if user.totp_secret is None:
            if user.role in TOTP_REQUIRED_ROLES:
                _succeeded(user, password)
                uow.audit(label, "signin.enrolment_required", "user", user.id)
                uow.commit()
                return SignInResult(
                    SignInOutcome.TOTP_ENROLMENT_REQUIRED, actor_for(user), user.session_epoch
                )
        else:
            if not (totp_code or "").strip():
                # Not a failure: the form asks for the code next. Nothing is written.
                return SignInResult(SignInOutcome.TOTP_REQUIRED)
            step = matching_step(user.totp_secret, totp_code or "", now, user.totp_last_counter)
            if step is None:
                return _failed(uow, user, auth, SignInOutcome.TOTP_INVALID, "wrong or used code")
            user.totp_last_counter = step
            totp_used = True
        _succeeded(user, password)
        user.last_login_at = now
        uow.audit(label, "signin.ok", "user", user.id, {"totp": totp_used})
        uow.commit()
        return SignInResult(SignInOutcome.OK, actor_for(user), user.session_epoch)


def _failed(
    uow: UnitOfWork, user: User, auth: AuthSettings, outcome: SignInOutcome, why: str
) -> SignInResult:
    now = uow.clock.now()
    user.failed_logins += 1
    details: dict[str, Any] = {"reason": why, "failures": user.failed_logins}
    locked = user.failed_logins >= auth.max_failed_logins
    if locked:
        user.locked_until = now + auth.lockout
        details["locked_until"] = user.locked_until.isoformat()
    # Whoever typed the address is not known to be its user: a failure is no one's act.
    uow.audit(ANONYMOUS, "signin.failed", "user", user.id, details)
    uow.commit()
    if locked:
        return SignInResult(SignInOutcome.LOCKED, locked_until=user.locked_until)
    return SignInResult(outcome)


def _succeeded(user: User, password: str) -> None:
    user.failed_logins = 0
    user.locked_until = None
    # The one moment the password is known: a hash made with older parameters is renewed.
    if user.password_hash and needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)


# -- sessions -------------------------------------------------------------------------------


def actor_for_session(uow: UnitOfWork, user_id: int, session_epoch: int) -> Actor | None:
    """Who a session cookie stands for, or None: the user is gone or inactive, or the session
    began before the user's sessions were ended."""
    with uow.reading():
        user = uow.session.get(User, user_id)
        if user is None or not user.is_active or user.session_epoch != session_epoch:
            return None
        return actor_for(user)


def sign_out_everywhere(uow: UnitOfWork, actor: Actor) -> None:
    """End every session of the acting user, this one included."""
    with uow:
        user = _own_user(uow.session, actor)
        user.session_epoch += 1
        uow.audit(actor.label, "session.end_all", "user", user.id)
        uow.commit()


def _own_user(session: Session, actor: Actor) -> User:
    if actor.user_id is None:
        raise PermissionDenied(f"{actor.label} is not a user")
    user = session.scalar(sa.select(User).where(User.id == actor.user_id).with_for_update())
    if user is None or not user.is_active:
        raise NotFound("no such user")
    return user


# -- TOTP -----------------------------------------------------------------------------------


def enable_totp(uow: UnitOfWork, actor: Actor, secret: str, code: str) -> None:
    """Enrol the acting user with `secret` (from new_totp_secret, shown as a QR code), proved
    by a code from the app. The code is then used up: it cannot also sign in."""
    if not is_valid_secret(secret):
        raise ValidationError("that is not a TOTP secret")
    with uow:
        user = _own_user(uow.session, actor)
        if user.totp_secret is not None:
            raise Conflict("two-factor sign-in is set up already: switch it off first")
        step = matching_step(secret, code, uow.clock.now())
        if step is None:
            raise ValidationError(
                "the code does not match: check that the phone's clock is right and enter the "
                "code the app shows now"
            )
        user.totp_secret = secret
        user.totp_last_counter = step
        uow.audit(actor.label, "totp.enable", "user", user.id)
        uow.commit()


def disable_totp(uow: UnitOfWork, actor: Actor, user_id: int) -> None:
    """Switch a user's TOTP off: your own (unless your role requires it), or anyone else's as
    an admin (USERS_MANAGE), which ends their sessions and, where TOTP is required, makes them
    enrol again at the next sign-in."""
    with uow:
        user = uow.session.scalar(sa.select(User).where(User.id == user_id).with_for_update())
        if user is None or (not actor.is_staff and user.account_id != actor.account_id):
            raise NotFound("no such user")
        own = user.id == actor.user_id
        if not own:
            actor.require(Permission.USERS_MANAGE)
        elif user.role in TOTP_REQUIRED_ROLES:
            raise PermissionDenied(
                f"{user.role.value} users must sign in with a code; another admin can reset it "
                "for enrolment on a new device"
            )
        if user.totp_secret is None:
            return
        user.totp_secret = None
        user.totp_last_counter = None
        if not own:
            user.session_epoch += 1
        uow.audit(
            actor.label,
            "totp.disable" if own else "totp.reset",
            "user",
            user.id,
            {"enrolment_required": user.role in TOTP_REQUIRED_ROLES},
        )
        uow.commit()


# -- password links -------------------------------------------------------------------------


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_password_token(
    session: Session, user_id: int, purpose: TokenPurpose, now: datetime, ttl: timedelta
) -> tuple[str, PasswordToken]:
    """A new one-time link token (shown once; its hash is kept), within the caller's
    transaction."""
    token = secrets.token_urlsafe(32)
    record = PasswordToken(
        user_id=user_id,
        purpose=purpose,
        token_hash=token_digest(token),
        created_at=now,
        expires_at=now + ttl,
    )
    session.add(record)
    session.flush()
    return token, record


def password_link(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}{RESET_PATH}{token}"


def mail_language(session: Session, user: User) -> str | None:
    """A customer's mail is in the account's language; staff get the desk's."""
    if user.account_id is None:
        return None
    return session.scalar(sa.select(Account.language).where(Account.id == user.account_id))


def request_password_reset(uow: UnitOfWork, email: str, base_url: str, auth: AuthSettings) -> None:
    """Mail a reset link to the user with this e-mail, if there is an active one. Answers the
    same (nothing) whatever the e-mail is, so the page tells no one who has a user."""
    try:
        address = normalise_email(email)
    except ValidationError:
        return
    with uow:
        session = uow.session
        now = uow.clock.now()
        user = session.scalar(sa.select(User).where(User.email == address).with_for_update())
        if user is None or not user.is_active:
            return
        recent = session.scalar(
            sa.select(sa.func.count(PasswordToken.id)).where(
                PasswordToken.user_id == user.id,
                PasswordToken.purpose == TokenPurpose.RESET,
                PasswordToken.created_at > now - timedelta(hours=1),
            )
        )
        if (recent or 0) >= auth.password_resets_per_hour:
            # Someone may be filling this user's mailbox: keep a trace, send nothing.
            uow.audit(ANONYMOUS, "password.reset_throttled", "user", user.id)
            uow.commit()
            return
        token, record = issue_password_token(
            session, user.id, TokenPurpose.RESET, now, auth.password_reset_ttl
        )
        queue_for_user(
            session,
            user.email,
            MessageTemplate.PASSWORD_RESET,
            {
                "name": user.name,
                "email": user.email,
                "link": password_link(base_url, token),
                "deadline": record.expires_at.isoformat(),
                "language": mail_language(session, user),
            },
            now,
        )
        uow.audit(
            ANONYMOUS,
            "password.reset_request",
            "user",
            user.id,
            {"expires_at": record.expires_at.isoformat()},
        )
        uow.commit()


def _valid_token(
    session: Session, token: str, now: datetime, for_update: bool = False
) -> tuple[PasswordToken, User]:
    query = (
        sa.select(PasswordToken, User)
        .join(User, User.id == PasswordToken.user_id)
        .where(PasswordToken.token_hash == token_digest(token))
    )
    if for_update:
        # Two uses of one link at once: the second waits, then finds it used (PostgreSQL).
        query = query.with_for_update()
    row = session.execute(query).one_or_none()
    if row is None or not row[1].is_active:
        raise NotFound("this link is not valid")
    record, user = row
    if record.used_at is not None:
        raise ValidationError("this link has been used already: ask for a new one")
    if record.expires_at <= now:
        raise ValidationError("this link has expired: ask for a new one")
    return record, user


def check_password_token(uow: UnitOfWork, token: str) -> str:
    """The e-mail of the user a reset or invitation link is for, to show on the form. Raises
    NotFound (unknown link, or the user is gone) or ValidationError (used or expired)."""
    with uow.reading():
        _record, user = _valid_token(uow.session, token, uow.clock.now())
        return user.email


def reset_password(uow: UnitOfWork, token: str, new_password: str, auth: AuthSettings) -> Actor:
    """Set the password a link was sent for. The link and every other of that user's links are
    used up, a lockout is lifted and every session ends. Signing in (with the code, where one
    is needed) is still the web's next step: a link from a mailbox is not a second factor.
    `auth` is taken so that callers need not change when password rules become settings."""
    del auth
    if why := weakness(new_password):
        raise ValidationError(why)
    with uow:
        session = uow.session
        now = uow.clock.now()
        record, user = _valid_token(session, token, now, for_update=True)
        user.password_hash = hash_password(new_password)
        user.failed_logins = 0
        user.locked_until = None
        user.session_epoch += 1
        session.execute(
            sa.update(PasswordToken)
            .where(PasswordToken.user_id == user.id, PasswordToken.used_at.is_(None))
            .values(used_at=now)
        )
        actor = actor_for(user)
        action = (
            "invitation.accept" if record.purpose is TokenPurpose.INVITATION else "password.reset"
        )
        uow.audit(actor.label, action, "user", user.id, {"token_id": record.id})
        uow.commit()
        return actor
