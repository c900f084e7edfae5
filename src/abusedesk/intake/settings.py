"""Intake: where complaints arrive, and whose reports count as verified. `[intake]` in the
configuration."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from pathlib import Path
from typing import Self

from pydantic import BaseModel, Field, SecretStr, model_validator

from abusedesk.intake.choices import ImapTls


class SmtpListen(BaseModel):
    host: str = "127.0.0.1"
    port: int = 2525
    hostname: str = "abusedesk.localhost"  # the name it gives in its greeting


class FormLimits(BaseModel):
    """The public complaint form (`[intake.form]`): what one complaint may carry, and how many
    one client address may file."""

    max_files: int = Field(default=5, ge=0, description="evidence files per complaint")
    max_file_bytes: int = Field(default=5 * 1024 * 1024, ge=1, description="per evidence file")
    max_total_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1, description="all evidence files of one complaint"
    )
    per_address: int = Field(
        default=10, ge=1, description="complaints one client address may file per window"
    )
    window: timedelta = Field(default=timedelta(hours=1), description="the rate limit's window")


class IntakeSettings(BaseModel):
    smtp: SmtpListen = SmtpListen()
    recipients: list[str] = Field(
        default_factory=lambda: ["abuse@localhost", "abuse@provider.example"],
        description="the addresses the listener accepts mail for; others are refused",
    )
    max_message_bytes: int = 25 * 1024 * 1024
    form: FormLimits = FormLimits()
    trusted_reporters: list[str] = Field(
        default_factory=list,
        description="reporter addresses or domains whose reports count as verified (R5)",
    )
    # The IMAP mailbox the `intake` role polls, when a host is set: each message is stored (as
    # the SMTP listener stores), then moved to the processed folder.
    imap_host: str | None = Field(default=None, description="IMAP server; unset: no poller")
    imap_port: int | None = Field(default=None, description="default: 993 (imaps) or 143")
    imap_user: str = ""
    imap_password: SecretStr = SecretStr("")
    imap_folder: str = Field(default="INBOX", description="the folder complaints arrive in")
    imap_processed_folder: str = Field(
        default="Processed", description="where stored messages are moved (made if missing)"
    )
    imap_tls: ImapTls = ImapTls.IMAPS
    imap_ca_file: Path | None = Field(
        default=None, description="CA certificates to trust instead of the system's"
    )
    imap_interval: float = Field(default=60.0, gt=0, description="seconds between two polls")

    @model_validator(mode="after")
    def _imap_plain_only_on_loopback(self) -> Self:
        # Without TLS the password crosses the network in the clear: only to this machine.
        if self.imap_host and self.imap_tls is ImapTls.PLAIN and not _loopback(self.imap_host):
            raise ValueError(
                f"imap_tls = plain sends the password in the clear: only for a server on the "
                f"loopback, not {self.imap_host!r} (use imaps or starttls)"
            )
        return self

    @property
    def imap_port_or_default(self) -> int:
        return self.imap_port or self.imap_tls.default_port


def _loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
