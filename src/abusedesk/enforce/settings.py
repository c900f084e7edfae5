"""Which driver carries out enforcement, and how: the `[enforce]` table of the configuration."""

from __future__ import annotations

from pydantic import BaseModel, Field


class EnforceSettings(BaseModel):
    default_driver: str = "log"
    plans: dict[str, str] = Field(default_factory=dict, description="plan → driver")
    servers: dict[str, str] = Field(default_factory=dict, description="host name → driver")
    retry_base_seconds: int = 30
    retry_max_seconds: int = 3600
