"""Managed DNS: the data plane, where it listens, the provider's name servers and the bounds
customers' records keep. `[dns]` in the configuration, `ABUSEDESK_DNS__…` in the environment
(for example `ABUSEDESK_DNS__PORT=5353`)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from pydantic import BaseModel, Field, field_validator

from abusedesk.dns.choices import PlaneKind


@dataclass(frozen=True, slots=True)
class Secondary:
    """A secondary name server: allowed to transfer (by address), sent NOTIFY (address, port)."""

    address: str
    port: int = 53

    @classmethod
    def parse(cls, text: str) -> Secondary:
        """``192.0.2.53``, ``192.0.2.53@5300`` (Knot's way), ``192.0.2.53:5300``,
        ``2001:db8::53``, ``[2001:db8::53]:5300`` or ``2001:db8::53@5300``; ValueError for
        anything else (a host name included: a secondary is trusted by its address)."""
        host, port = text.strip(), 53
        if "@" in host:
            host, _, rest = host.partition("@")
            port = int(rest)
        elif host.startswith("["):
            host, _, rest = host[1:].partition("]")
            if rest:
                port = int(rest.removeprefix(":"))
        elif host.count(":") == 1:
            host, _, rest = host.partition(":")
            port = int(rest)
        address = ipaddress.ip_address(host)
        if not 0 < port < 65536:
            raise ValueError(f"port out of range in {text!r}")
        return cls(str(address), port)


class TsigKey(BaseModel):
    name: str = Field(description="the key's name, e.g. transfer.provider.example.")
    algorithm: str = "hmac-sha256"
    secret: str = Field(description="base64, as `tsig-keygen` or `keymgr -t` print it")


class KnotSettings(BaseModel):
    knotd: str = "knotd"
    knotc: str = "knotc"
    directory: str = Field(
        default="",
        description="where abusedesk writes knot.conf, the zone files and Knot's run directory; "
        "empty: ABUSEDESK_HOME/knot",
    )
    manage_daemon: bool = Field(
        default=True,
        description="start and stop knotd with the `dns` role; false when the host runs it",
    )
    count_query_types: bool = Field(
        default=False,
        description="also count each zone's queries by type (mod-stats query-type); it cost "
        "Knot about a tenth of its rate in the benchmark, and the load path needs only the "
        "queries and NXDOMAIN, which the response-code counter gives",
    )


class DnsSettings(BaseModel):
    plane: PlaneKind = PlaneKind.BUILTIN
    host: str = "127.0.0.1"
    port: int = Field(default=5353, ge=0, le=65535, description="UDP and TCP; 0: any free port")
    nameservers: list[str] = Field(
        default=["ns1.dns.provider.example.", "ns2.dns.provider.example."],
        description="the provider's name servers: every zone's apex NS, the first is the SOA's",
    )
    hostmaster: str = Field(
        default="hostmaster.provider.example.", description="the SOA RNAME (mailbox as a name)"
    )
    soa_refresh: int = 3600
    soa_retry: int = 600
    soa_expire: int = 1209600
    negative_ttl: int = Field(default=300, description="the SOA MINIMUM: RFC 2308's negative TTL")
    min_ttl: int = Field(default=60, ge=0, description="the smallest TTL a customer may set")
    max_ttl: int = Field(default=86400, le=2**31 - 1, description="the largest TTL")
    default_ttl: int = 3600
    max_records_per_set: int = Field(default=100, ge=1)
    max_rrsets_per_zone: int = Field(default=5000, ge=1)
    secondaries: list[str] = Field(
        default_factory=list,
        description="addresses allowed to transfer zones (AXFR) and told of changes (NOTIFY)",
    )
    tsig: TsigKey | None = Field(
        default=None, description="when set, zone transfers must be signed with this key"
    )
    sync_every: float = Field(
        default=2.0, gt=0, description="seconds between checks for changed zones (the dns role)"
    )
    knot: KnotSettings = KnotSettings()

    @field_validator("host")
    @classmethod
    def _an_address(cls, value: str) -> str:
        ipaddress.ip_address(value)  # both planes bind it; Knot takes addresses only
        return value

    @field_validator("secondaries")
    @classmethod
    def _secondaries(cls, value: list[str]) -> list[str]:
        for text in value:
            Secondary.parse(text)
        return value

    def secondary_endpoints(self) -> list[Secondary]:
        return [Secondary.parse(text) for text in self.secondaries]
