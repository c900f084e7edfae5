"""Which driver carries out enforcement, and how: the `[enforce]` table of the configuration.

A server's driver is `servers[hostname]`, else `plans[plan]`, else `default_driver`. A driver
name may chain several, carried out in order: `"exabgp+webhook"` blackholes the addresses and
has the orchestration suspend the machine. Each driver a name uses must be configured here; a
wrong configuration is refused at start, not at the first disconnection.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Self

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from abusedesk.enforce.choices import DriverName, parse_driver_chain

_COMMUNITY = re.compile(r"^(\d{1,5}):(\d{1,5})$")
_FAMILIES = ("ipv4 unicast", "ipv4 flow", "ipv6 unicast", "ipv6 flow")


def _ip(value: str, version: int | None = None) -> str:
    address = ipaddress.ip_address(value)
    if version is not None and address.version != version:
        raise ValueError(f"{value} is not an IPv{version} address")
    return str(address)


class ExabgpNeighbor(BaseModel):
    """One BGP session from ExaBGP to a router (or a route reflector)."""

    address: str = Field(description="the router's address")
    local_address: str = Field(description="this host's address the session starts from")
    local_as: int = Field(ge=1, le=4294967295)
    peer_as: int = Field(ge=1, le=4294967295)
    router_id: str | None = Field(
        default=None, description="an IPv4 address; default: local_address when it is IPv4"
    )
    families: list[str] | None = Field(
        default=None,
        description="default: ipv4 unicast, plus ipv6 unicast and the flow families as enabled",
    )
    md5_password: SecretStr | None = None
    hold_time: int | None = Field(default=None, ge=3, le=65535)

    @field_validator("address", "local_address")
    @classmethod
    def _address(cls, value: str) -> str:
        return _ip(value)

    @field_validator("router_id")
    @classmethod
    def _router_id(cls, value: str | None) -> str | None:
        return None if value is None else _ip(value, 4)

    @field_validator("families")
    @classmethod
    def _families(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        cleaned = [" ".join(f.lower().split()) for f in value]
        for family in cleaned:
            if family not in _FAMILIES:
                raise ValueError(f"family {family!r} is not one of {', '.join(_FAMILIES)}")
        return cleaned

    @model_validator(mode="after")
    def _needs_router_id(self) -> Self:
        if self.router_id is None and ipaddress.ip_address(self.local_address).version != 4:
            raise ValueError(f"neighbor {self.address}: an IPv6 session needs router_id")
        return self


class ExabgpSettings(BaseModel):
    """A long-running ExaBGP fed through its API: RTBH with RFC 7999's BLACKHOLE community and
    FlowSpec `source X → discard` against outbound floods."""

    command: list[str] = Field(
        default_factory=lambda: ["exabgp"], description="how to run ExaBGP 4.2"
    )
    neighbors: list[ExabgpNeighbor] = Field(default_factory=list)
    next_hop: str = Field(
        default="192.0.2.1", description="IPv4 next hop the routers send to their discard route"
    )
    next_hop_v6: str = Field(default="100::1", description="IPv6 next hop (RFC 6666 discard)")
    communities: list[str] = Field(
        default_factory=lambda: ["65535:666", "65535:65281"],
        description="BLACKHOLE (RFC 7999) and NO_EXPORT: keep the blackhole inside the AS",
    )
    ipv6: bool = Field(default=True, description="blackhole IPv6 prefixes too")
    flowspec: bool = Field(default=True, description="also announce `source X → discard`")
    graceful_restart_seconds: int = Field(
        default=0,
        ge=0,
        le=4095,
        description="0: off. Otherwise routers keep the routes this long while the driver "
        "restarts, and the driver sends End-of-RIB once it has re-announced them",
    )
    startup_timeout_seconds: float = Field(default=20.0, gt=0)
    command_timeout_seconds: float = Field(default=10.0, gt=0)

    @field_validator("next_hop")
    @classmethod
    def _next_hop(cls, value: str) -> str:
        return _ip(value, 4)

    @field_validator("next_hop_v6")
    @classmethod
    def _next_hop_v6(cls, value: str) -> str:
        return _ip(value, 6)

    @field_validator("communities")
    @classmethod
    def _communities(cls, value: list[str]) -> list[str]:
        for community in value:
            match = _COMMUNITY.match(community)
            if not match or max(int(match[1]), int(match[2])) > 65535:
                raise ValueError(f"community {community!r} is not ASN:VALUE (each 0-65535)")
        return value

    @field_validator("command")
    @classmethod
    def _command(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("command is empty")
        return value


class WebhookSettings(BaseModel):
    """An HTTP POST to the provider's orchestration (suspend a VM, shut a switch port)."""

    url: str | None = None
    secret: SecretStr | None = Field(default=None, description="the HMAC-SHA256 key")
    timeout_seconds: float = Field(default=10.0, gt=0)
    verify_tls: bool = True
    headers: dict[str, str] = Field(
        default_factory=dict, description="extra headers, e.g. Authorization"
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return value


class ScriptSettings(BaseModel):
    """An operator's executable, given each action as arguments and JSON on stdin."""

    path: Path | None = None
    timeout_seconds: float = Field(default=60.0, gt=0)


DEFAULT_RETENTION_NOTE = (
    "After termination the provider keeps the account, its contacts and billing records, the "
    "case with its timeline, evidence and audit trail, and the records of IP assignments, for "
    "as long as the policy and the law require (at least one year; child-abuse reports one year "
    "under 18 U.S.C. 2258A(h)). The customer's data on the terminated servers is not kept."
)


class EnforceSettings(BaseModel):
    default_driver: str = DriverName.LOG.value
    plans: dict[str, str] = Field(default_factory=dict, description="plan → driver")
    servers: dict[str, str] = Field(default_factory=dict, description="host name → driver")
    retry_base_seconds: int = 30
    retry_max_seconds: int = 3600
    reconcile_interval_seconds: float = Field(
        default=300.0,
        gt=0,
        description="how often the worker makes the network match the database again",
    )
    retention_note: str = Field(
        default=DEFAULT_RETENTION_NOTE,
        description="what is kept after a termination, and for how long; put on the case",
    )
    exabgp: ExabgpSettings = ExabgpSettings()
    webhook: WebhookSettings = WebhookSettings()
    script: ScriptSettings = ScriptSettings()

    def driver_names(self) -> set[str]:
        """Every driver (or chain of drivers) the configuration may pick."""
        return {self.default_driver, *self.plans.values(), *self.servers.values()}

    def drivers_used(self) -> set[DriverName]:
        return {name for value in self.driver_names() for name in parse_driver_chain(value)}

    @model_validator(mode="after")
    def _drivers_configured(self) -> Self:
        used = self.drivers_used()  # raises ValueError on an unknown name
        if DriverName.WEBHOOK in used and (self.webhook.url is None or self.webhook.secret is None):
            raise ValueError("the webhook driver is used: set enforce.webhook.url and .secret")
        if DriverName.SCRIPT in used and self.script.path is None:
            raise ValueError("the script driver is used: set enforce.script.path")
        if DriverName.EXABGP in used and not self.exabgp.neighbors:
            raise ValueError("the exabgp driver is used: list enforce.exabgp.neighbors")
        return self
