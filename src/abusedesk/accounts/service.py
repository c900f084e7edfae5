"""Users and API tokens."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from abusedesk.accounts.choices import AccountRole, Role
from abusedesk.accounts.models import ApiToken, User
from abusedesk.accounts.passwords import hash_password, weakness
from abusedesk.accounts.permissions import Actor, Permission
from abusedesk.errors import Conflict, NotFound, ValidationError
from abusedesk.inventory.models import Account
from abusedesk.store.uow import UnitOfWork

TOKEN_PREFIX = "adk_"  # noqa: S105 - a marker that makes leaked tokens greppable, not a secret


def actor_for(user: User) -> Actor:
    return Actor(
        label=f"{user.role.value}:{user.email}",
        role=user.role,
        user_id=user.id,
        account_id=user.account_id,
    )


@dataclass(frozen=True, slots=True)
class NewUser:
    email: str
    role: Role
    password: str | None = None
    name: str = ""
    account_reference: str | None = None
    account_role: AccountRole | None = None


def add_user(uow: UnitOfWork, actor: Actor, new: NewUser) -> User:
    actor.require(Permission.USERS_MANAGE)
    email = new.email.strip().lower()
    if "@" not in email or len(email) > 254:
        raise ValidationError(f"{new.email!r} is not an e-mail address")
    if new.password is not None and (why := weakness(new.password)):
        raise ValidationError(why)
    with uow:
        session = uow.session
        if session.scalar(sa.select(User.id).where(User.email == email)):
            raise Conflict(f"a user {email} exists already")
        account_id = None
        account_role = None
        if new.role is Role.CUSTOMER:
            if not new.account_reference:
                raise ValidationError("a customer user belongs to an account: name it")
            account_id = session.scalar(
                sa.select(Account.id).where(Account.reference == new.account_reference)
            )
            if account_id is None:
                raise NotFound(f"no account {new.account_reference}")
            account_role = new.account_role or AccountRole.MEMBER
        elif new.account_reference:
            raise ValidationError("staff users belong to no account")
        user = User(
            email=email,
            name=new.name,
            role=new.role,
            account_id=account_id,
            account_role=account_role,
            password_hash=hash_password(new.password) if new.password else None,
            created_at=uow.clock.now(),
        )
        session.add(user)
        session.flush()
        uow.audit(
            actor.label, "user.add", "user", user.id, {"email": email, "role": new.role.value}
        )
        uow.commit()
        return user


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str  # shown once; only its hash is kept
    record: ApiToken


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(
    uow: UnitOfWork, actor: Actor, email: str, name: str, expires_at: datetime | None = None
) -> IssuedToken:
    with uow:
        user = uow.session.scalar(sa.select(User).where(User.email == email.strip().lower()))
        if user is None:
            raise NotFound(f"no user {email}")
        if user.id != actor.user_id:
            actor.require(Permission.USERS_MANAGE)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        record = ApiToken(
            user_id=user.id,
            name=name,
            prefix=token[: len(TOKEN_PREFIX) + 6],
            token_hash=_digest(token),
            created_at=uow.clock.now(),
            expires_at=expires_at,
        )
        uow.session.add(record)
        uow.session.flush()
        uow.audit(
            actor.label, "token.issue", "user", user.id, {"token": record.prefix, "name": name}
        )
        uow.commit()
        return IssuedToken(token, record)


def authenticate_token(uow: UnitOfWork, token: str) -> Actor | None:
    """The actor a bearer token stands for, or None (unknown, revoked, expired, inactive)."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    digest = _digest(token)
    with uow.reading():
        now = uow.clock.now()
        row = uow.session.execute(
            sa.select(ApiToken, User)
            .join(User, User.id == ApiToken.user_id)
            .where(ApiToken.token_hash == digest)
        ).one_or_none()
        if row is None:
            return None
        record, user = row
        if record.revoked_at or (record.expires_at and record.expires_at <= now):
            return None
        if not user.is_active:
            return None
        stale = record.last_used_at is None or (now - record.last_used_at).total_seconds() > 60
        actor = actor_for(user)
    # Last use is noted at most once a minute, in a write of its own: a token used on every
    # request must not make every read a write.
    if stale:
        with uow:
            uow.session.execute(
                sa.update(ApiToken).where(ApiToken.token_hash == digest).values(last_used_at=now)
            )
            uow.session.commit()
    return actor


def revoke_token(uow: UnitOfWork, actor: Actor, prefix: str) -> None:
    with uow:
        record = uow.session.scalar(sa.select(ApiToken).where(ApiToken.prefix == prefix))
        if record is None:
            raise NotFound(f"no token {prefix}")
        if record.user_id != actor.user_id:
            actor.require(Permission.USERS_MANAGE)
        record.revoked_at = uow.clock.now()
        uow.audit(actor.label, "token.revoke", "user", record.user_id, {"token": prefix})
        uow.commit()


def get_user(uow: UnitOfWork, actor: Actor, email: str) -> User:
    """A user by e-mail address: oneself, or anyone for those who manage users."""
    with uow.reading():
        user = uow.session.scalar(sa.select(User).where(User.email == email.strip().lower()))
        if user is None:
            raise NotFound(f"no user {email}")
        if user.id != actor.user_id:
            actor.require(Permission.USERS_MANAGE)
        return user
