"""Intake: where complaints arrive, and whose reports count as verified. `[intake]` in the
configuration."""

from __future__ import annotations

from pydantic import BaseModel, Field


class SmtpListen(BaseModel):
    host: str = "127.0.0.1"
    port: int = 2525
    hostname: str = "abusedesk.localhost"  # the name it gives in its greeting


class IntakeSettings(BaseModel):
    smtp: SmtpListen = SmtpListen()
    recipients: list[str] = Field(
        default_factory=lambda: ["abuse@localhost", "abuse@provider.example"],
        description="the addresses the listener accepts mail for; others are refused",
    )
    max_message_bytes: int = 25 * 1024 * 1024
    trusted_reporters: list[str] = Field(
        default_factory=list,
        description="reporter addresses or domains whose reports count as verified (R5)",
    )
