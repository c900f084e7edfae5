"""Sign-in, sessions and account upkeep: the `[auth]` table of the configuration
(environment: `ABUSEDESK_AUTH__<NAME>`, durations as seconds or ISO 8601, e.g. `PT15M`)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field


class AuthSettings(BaseModel):
    max_failed_logins: int = Field(
        default=5, ge=1, description="consecutive failed sign-ins that lock a user"
    )
    lockout: timedelta = Field(
        default=timedelta(minutes=15), description="how long a locked user stays locked"
    )
    password_reset_ttl: timedelta = Field(
        default=timedelta(hours=1), description="how long a password-reset link works"
    )
    password_resets_per_hour: int = Field(
        default=3, ge=1, description="reset mails one user may be sent in an hour"
    )
    invitation_ttl: timedelta = Field(
        default=timedelta(days=7), description="how long an invitation link works"
    )
    billing_stale_after: timedelta = Field(
        default=timedelta(days=180),
        description="billing data not confirmed for this long is due for confirmation (R2)",
    )
    totp_issuer: str = Field(default="abusedesk", description="the name authenticator apps show")
    session_max_age: timedelta = Field(
        default=timedelta(hours=12), description="a session cookie's lifetime"
    )
