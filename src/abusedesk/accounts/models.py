from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from abusedesk.accounts.choices import AccountRole, Role, ScreeningKind, TokenPurpose
from abusedesk.store.base import Base, enum_column


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200), default="")
    role: Mapped[Role] = mapped_column(enum_column(Role))
    account_id: Mapped[int | None] = mapped_column(sa.ForeignKey("accounts.id"), index=True)
    account_role: Mapped[AccountRole | None] = mapped_column(enum_column(AccountRole))
    password_hash: Mapped[str | None] = mapped_column(sa.String(200))
    totp_secret: Mapped[str | None] = mapped_column(sa.String(64))
    # The time step of the last code accepted: a code seen once is refused after, so one read
    # over a shoulder or replayed from a phishing page does not sign anyone in again.
    totp_last_counter: Mapped[int | None] = mapped_column(sa.BigInteger)
    is_active: Mapped[bool] = mapped_column(default=True)
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None]
    # Sessions carry the epoch they began in; raising it (a password reset, "sign out
    # everywhere", removal) ends every session at once without a session table.
    session_epoch: Mapped[int] = mapped_column(default=0, server_default="0")
    last_login_at: Mapped[datetime | None]
    created_at: Mapped[datetime]

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user")

    __table_args__ = (
        sa.CheckConstraint(
            "(role = 'customer') = (account_id IS NOT NULL)",
            name=sa.schema.conv("ck_users_customer_has_account"),
        ),
    )


class ApiToken(Base):
    """A bearer token; only its SHA-256 is kept (tokens are random, so no slow hash is needed)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    prefix: Mapped[str] = mapped_column(sa.String(16))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(back_populates="tokens")


class PasswordToken(Base):
    """A one-time link to choose a password (a reset, or an invitation to a new user). Only the
    SHA-256 is kept: the link is random, and whoever reads the table cannot use it."""

    __tablename__ = "password_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    purpose: Mapped[TokenPurpose] = mapped_column(enum_column(TokenPurpose))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]

    __table_args__ = (sa.Index("ix_password_tokens_user", "user_id", "created_at"),)


class ScreeningEntry(Base):
    """A person, group or business the provider refuses service to (R3). Entries are never
    deleted: a removed one keeps who removed it, when and why."""

    __tablename__ = "screening_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[ScreeningKind] = mapped_column(enum_column(ScreeningKind))
    name: Mapped[str] = mapped_column(sa.String(200), default="")
    emails: Mapped[list[Any]]  # normalised: lower case
    domains: Mapped[list[Any]]  # normalised: lower case, IDNA, no trailing dot
    reason: Mapped[str] = mapped_column(sa.Text)
    added_by: Mapped[str] = mapped_column(sa.String(300))
    added_at: Mapped[datetime]
    removed_at: Mapped[datetime | None]
    removed_by: Mapped[str | None] = mapped_column(sa.String(300))
    removal_reason: Mapped[str | None] = mapped_column(sa.Text)
