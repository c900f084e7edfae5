"""What inventory input looks like, validated once for the API, the importer and the CLI."""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from abusedesk.inventory.choices import AccountStatus, ContactKind, ServerKind, ServerStatus

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def normalise_hostname(value: str) -> str:
    name = value.strip().rstrip(".").lower()
    try:
        name = name.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError(f"{value!r} is not a valid host name") from exc
    if not name or len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
        raise ValueError(f"{value!r} is not a valid host name")
    return name


def normalise_prefix(value: str) -> str:
    try:
        return ipaddress.ip_network(value.strip(), strict=True).with_prefixlen
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a network prefix ({exc})") from exc


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ContactIn(_Input):
    kind: ContactKind
    email: str
    name: str = ""
    phone: str = ""

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        if not _EMAIL.match(value):
            raise ValueError(f"{value!r} is not an e-mail address")
        return value.lower()


class AccountIn(_Input):
    reference: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    status: AccountStatus = AccountStatus.ACTIVE
    contacts: list[ContactIn] = Field(default_factory=list)
    billing_name: str = ""
    billing_address: str = ""
    billing_email: str = ""
    billing_confirmed_at: datetime | None = None
    aup_version: str | None = None
    aup_accepted_at: datetime | None = None
    notes: str = ""


class AccountPatch(_Input):
    name: str | None = None
    status: AccountStatus | None = None
    contacts: list[ContactIn] | None = None
    billing_name: str | None = None
    billing_address: str | None = None
    billing_email: str | None = None
    notes: str | None = None


class ServerIn(_Input):
    account_reference: str
    hostname: str
    plan: str = Field(min_length=1, max_length=64)
    kind: ServerKind = ServerKind.DEDICATED
    status: ServerStatus = ServerStatus.ACTIVE
    prefixes: list[str] = Field(default_factory=list)

    _host = field_validator("hostname")(classmethod(lambda cls, v: normalise_hostname(v)))

    @field_validator("prefixes")
    @classmethod
    def _prefixes(cls, values: list[str]) -> list[str]:
        return [normalise_prefix(v) for v in values]


class ServerPatch(_Input):
    plan: str | None = None
    kind: ServerKind | None = None
    status: ServerStatus | None = None


class AssignmentIn(_Input):
    prefix: str
    valid_from: datetime | None = None

    _prefix = field_validator("prefix")(classmethod(lambda cls, v: normalise_prefix(v)))


class DomainIn(_Input):
    account_reference: str
    name: str
    server_hostname: str | None = None

    _name = field_validator("name")(classmethod(lambda cls, v: normalise_hostname(v)))
