"""Settings from the environment (ABUSEDESK_*) and one TOML file.

Precedence, highest first: environment variables, the TOML file named by ABUSEDESK_CONFIG
(default `$ABUSEDESK_HOME/abusedesk.toml` when it exists), the defaults below.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from abusedesk.accounts.settings import AuthSettings
from abusedesk.dns.settings import DnsSettings
from abusedesk.enforce.settings import EnforceSettings
from abusedesk.intake.settings import IntakeSettings
from abusedesk.notify.settings import NotifySettings, SmtpSettings
from abusedesk.traffic.settings import TrafficSettings


class Listen(BaseModel):
    host: str = "127.0.0.1"
    port: int


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ABUSEDESK_", env_nested_delimiter="__", extra="ignore"
    )

    home: Path = Field(default=Path("var"), description="where state is kept")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; SQLite in home")
    policy: Path | None = Field(default=None, description="an operator's own policy TOML")
    secret_key: str | None = Field(default=None, description="signs sessions and links")
    public_url: str | None = Field(
        default=None, description="the address users are sent to; default: the web listener"
    )
    web: Listen = Listen(port=8080)
    sweep_interval_seconds: float = 30.0
    log_level: str = "INFO"
    smtp: SmtpSettings = SmtpSettings()
    notify: NotifySettings = NotifySettings()
    enforce: EnforceSettings = EnforceSettings()
    intake: IntakeSettings = IntakeSettings()
    auth: AuthSettings = AuthSettings()
    traffic: TrafficSettings = TrafficSettings()
    dns: DnsSettings = DnsSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_file())
        return (init_settings, env_settings, toml)

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'abusedesk.sqlite3').resolve()}"

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.web.host}:{self.web.port}").rstrip("/")

    def ensure_home(self) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        return self.home

    def resolved_secret_key(self) -> str:
        """A configured key, or one made once and kept in home (so restarts keep sessions)."""
        if self.secret_key:
            return self.secret_key
        key_file = self.ensure_home() / "secret.key"
        if not key_file.exists():
            key_file.write_text(os.urandom(32).hex())
            key_file.chmod(0o600)
        return key_file.read_text().strip()


def config_file() -> Path | None:
    named = os.environ.get("ABUSEDESK_CONFIG")
    if named:
        return Path(named)
    default = Path(os.environ.get("ABUSEDESK_HOME", "var")) / "abusedesk.toml"
    return default if default.exists() else None


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)
