"""How outgoing mail leaves: the `[notify]` and `[smtp]` tables of the configuration."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, Field


class Transport(StrEnum):
    SMTP = "smtp"  # production: a relay or the provider's MTA
    FILE = "file"  # the embedded default: each message written as an .eml file under home/mail


class SmtpSecurity(StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"


class SmtpSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 25
    security: SmtpSecurity = SmtpSecurity.NONE
    username: str | None = None
    password: str | None = None
    timeout_seconds: float = 30.0
    ca_file: Path | None = Field(
        default=None,
        description="CA certificates to trust for (START)TLS instead of the system's, "
        "for a relay with a private certificate",
    )
    helo_name: str | None = Field(
        default=None, description="the name to greet with (EHLO); default: this host's FQDN"
    )


class NotifySettings(BaseModel):
    transport: Transport = Transport.FILE
    from_address: str = "abuse@provider.example"
    from_name: str = "Abuse Desk"
    reply_to: str | None = None
    templates_dir: Path | None = Field(
        default=None, description="an operator's templates, laid over the shipped ones"
    )
    language: str = "en"
    retry_base_seconds: int = 60
    retry_max_seconds: int = 6 * 3600
    max_attempts: int = 20
