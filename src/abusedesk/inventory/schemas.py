"""What inventory input looks like, validated once for the API, the importer and the CLI."""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from abusedesk.clock import utc
from abusedesk.inventory.choices import AccountStatus, ContactKind, ServerKind, ServerStatus

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def normalise_hostname(value: str) -> str:
    name = value.strip().rstrip(".").lower()
    # The codec leaves an ASCII name as it is (the label check below does the rest), and costs
    # more than everything else here: an import checks hundreds of thousands of names.
    if not name.isascii():
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


def _email(value: str) -> str:
    if not _EMAIL.match(value):
        raise ValueError(f"{value!r} is not an e-mail address")
    return value.lower()


# Checked one by one, so that a list with several bad entries reports each of them.
Prefix = Annotated[str, AfterValidator(normalise_prefix)]
Hostname = Annotated[str, AfterValidator(normalise_hostname)]

# The database refuses naive datetimes; an import file or API client that omits the offset
# means UTC, as everywhere else in abusedesk.
Instant = Annotated[datetime, AfterValidator(utc)]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _Patch(_Input):
    """A partial change: a field left out stays as it is. Null is refused rather than written,
    because every column a patch reaches is required."""

    @model_validator(mode="after")
    def _no_nulls(self) -> Self:
        nulls = sorted(name for name in self.model_fields_set if getattr(self, name) is None)
        if nulls:
            raise ValueError(f"leave out a field to keep it; null is not a value for {nulls}")
        return self


class ContactIn(_Input):
    kind: ContactKind
    email: Annotated[str, Field(max_length=254), AfterValidator(_email)]
    name: str = Field(default="", max_length=200)
    phone: str = Field(default="", max_length=40)


class AccountIn(_Input):
    reference: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    status: AccountStatus = AccountStatus.ACTIVE
    contacts: list[ContactIn] = Field(default_factory=list)
    # Limits are the columns' own, so that PostgreSQL never sees a value it would refuse.
    billing_name: str = Field(default="", max_length=200)
    billing_address: str = ""
    billing_email: str = Field(default="", max_length=254)
    billing_confirmed_at: Instant | None = None
    aup_version: str | None = Field(default=None, max_length=32)
    aup_accepted_at: Instant | None = None
    language: str = Field(default="en", pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")
    notes: str = ""

    @field_validator("billing_email")
    @classmethod
    def _billing_email(cls, value: str) -> str:
        return _email(value) if value else value


class AccountPatch(_Patch):
    name: str | None = None
    status: AccountStatus | None = None
    contacts: list[ContactIn] | None = None
    billing_name: str | None = None
    billing_address: str | None = None
    billing_email: str | None = None
    language: str | None = Field(default=None, pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")
    notes: str | None = None


class AssignmentIn(_Input):
    """A prefix routed to a server from `valid_from` (default: now) until `valid_until` (default:
    open-ended). An ended one is history: reports about its addresses still find who had them."""

    prefix: Prefix
    valid_from: Instant | None = None
    valid_until: Instant | None = None

    @model_validator(mode="after")
    def _interval(self) -> Self:
        if self.valid_until is not None:
            if self.valid_from is None:
                raise ValueError("an assignment with a valid_until needs its valid_from")
            if self.valid_until <= self.valid_from:
                raise ValueError("valid_until must be later than valid_from")
        return self


class ServerIn(_Input):
    account_reference: str = Field(min_length=1, max_length=64)
    hostname: Hostname
    plan: str = Field(min_length=1, max_length=64)
    kind: ServerKind = ServerKind.DEDICATED
    status: ServerStatus = ServerStatus.ACTIVE
    # The plain list is what most callers have: current addresses, from now on. `assignments`
    # carries start and end times as well, for history.
    prefixes: list[Prefix] = Field(default_factory=list)
    assignments: list[AssignmentIn] = Field(default_factory=list)

    def all_assignments(self) -> list[AssignmentIn]:
        # The prefixes were checked when this model was: not again (an import has 100 000).
        plain = [AssignmentIn.model_construct(prefix=p) for p in self.prefixes]
        return plain + list(self.assignments)


class ServerPatch(_Patch):
    plan: str | None = None
    kind: ServerKind | None = None
    status: ServerStatus | None = None


class DomainIn(_Input):
    account_reference: str = Field(min_length=1, max_length=64)
    name: Hostname
    server_hostname: Hostname | None = None
