"""What the REST API accepts and returns.

Inventory input is `abusedesk.inventory.schemas` (AccountIn, ServerIn…), shared with the importer
and the CLI; the case bodies are here. Output models are built from what a service returns and
read only what that service loaded: the case a transition returns carries its own columns but
not its account, server or timeline, so transitions answer with `CaseStateOut` and
`GET /cases/{id}` with the whole `CaseOut`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from abusedesk.cases.choices import CaseState, Resolution, TimelineKind
from abusedesk.cases.models import Case
from abusedesk.cases.service import TimelineEntry
from abusedesk.inventory.choices import AccountStatus, ContactKind, ServerKind, ServerStatus
from abusedesk.inventory.models import Account, Contact, Domain, IPAssignment, Server
from abusedesk.inventory.schemas import normalise_prefix
from abusedesk.policy import Category, Severity

# -- output ---------------------------------------------------------------------------------


class _Out(BaseModel):
    @classmethod
    def build(cls, source: object, **derived: Any) -> Self:
        """The model from `source`'s attributes of the same names, plus the derived fields."""
        values = {name: getattr(source, name) for name in cls.model_fields if name not in derived}
        return cls(**values, **derived)


class TimelineEventOut(_Out):
    at: datetime
    kind: TimelineKind
    actor: str
    from_state: CaseState | None
    to_state: CaseState | None
    note: str
    data: dict[str, Any]


class CaseStateOut(_Out):
    """A case's own fields: what a transition or an opening answers with."""

    id: int
    ticket: str = Field(examples=["AD-000042"])
    state: CaseState
    resolution: Resolution | None
    category: Category
    severity: Severity
    is_repeat: bool
    resource: str
    summary: str
    plan: str
    customer_contacted: bool
    deadline_at: datetime | None = Field(description="when the running clock runs out, if any")
    opened_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, case: Case) -> Self:
        return cls.build(case)


class CaseRowOut(CaseStateOut):
    """A case in a listing: its fields and whose it is."""

    account_reference: str
    server_hostname: str | None

    @classmethod
    def of(cls, case: Case) -> Self:
        return cls.build(case, **_owner(case))


class CaseOut(CaseRowOut):
    """A case with its whole timeline."""

    closed_at: datetime | None
    timeline: list[TimelineEventOut]

    @classmethod
    def of(cls, case: Case, timeline: list[TimelineEntry]) -> Self:  # type: ignore[override]
        events = [TimelineEventOut.build(entry) for entry in timeline]
        return cls.build(case, timeline=events, **_owner(case))


def _owner(case: Case) -> dict[str, Any]:
    return {
        "account_reference": case.account.reference,
        "server_hostname": case.server.hostname if case.server else None,
    }


class OpenedOut(BaseModel):
    created: bool = Field(
        description="true: a new case was opened; false: the report was attached to the open "
        "case of the same account, category and resource"
    )
    case: CaseStateOut


class ContactOut(_Out):
    kind: ContactKind
    email: str
    name: str
    phone: str

    @classmethod
    def of(cls, contact: Contact) -> Self:
        return cls.build(contact)


class AssignmentOut(_Out):
    prefix: str
    family: int
    valid_from: datetime
    valid_until: datetime | None

    @classmethod
    def of(cls, assignment: IPAssignment) -> Self:
        return cls.build(assignment)


class ServerOut(_Out):
    hostname: str
    account_reference: str
    plan: str
    kind: ServerKind
    status: ServerStatus
    created_at: datetime
    assignments: list[AssignmentOut]

    @classmethod
    def of(cls, server: Server, account_reference: str | None = None) -> Self:
        return cls.build(
            server,
            account_reference=account_reference or server.account.reference,
            assignments=[AssignmentOut.of(a) for a in server.assignments],
        )


class DomainOut(_Out):
    name: str
    account_reference: str
    server_hostname: str | None
    created_at: datetime

    @classmethod
    def of(cls, domain: Domain, account_reference: str | None = None) -> Self:
        return cls.build(
            domain,
            account_reference=account_reference or domain.account.reference,
            server_hostname=domain.server.hostname if domain.server else None,
        )


class AccountOut(_Out):
    reference: str
    name: str
    status: AccountStatus
    billing_name: str
    billing_address: str
    billing_email: str
    billing_confirmed_at: datetime | None
    aup_version: str | None
    aup_accepted_at: datetime | None
    language: str
    notes: str
    created_at: datetime
    contacts: list[ContactOut]

    @classmethod
    def of(cls, account: Account, staff: bool = True) -> Self:
        # The desk's notes about a customer are not the customer's to read.
        contacts = [ContactOut.of(c) for c in account.contacts]
        return cls.build(account, contacts=contacts, notes=account.notes if staff else "")


class AccountDetailOut(AccountOut):
    """An account with its servers and domains."""

    servers: list[ServerOut]
    domains: list[DomainOut]

    @classmethod
    def of(cls, account: Account, staff: bool = True) -> Self:  # type: ignore[override]
        # The nested rows name their account by the parent, which is loaded, instead of by their
        # own back-references, which are not.
        ref = account.reference
        return cls.build(
            account,
            contacts=[ContactOut.of(c) for c in account.contacts],
            servers=[ServerOut.of(s, account_reference=ref) for s in account.servers],
            domains=[DomainOut.of(d, account_reference=ref) for d in account.domains],
            notes=account.notes if staff else "",
        )


# -- input ----------------------------------------------------------------------------------


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CaseIn(_In):
    """A case opened by hand. Without a resource the server's host name is the resource."""

    account_reference: str = Field(min_length=1)
    category: Category
    server_hostname: str | None = None
    resource: str = Field(default="", max_length=500)
    severity: Severity | None = Field(
        default=None, description="the category's severity in the policy when left out"
    )
    summary: str = ""


class PlanIn(_In):
    plan: str = Field(description="how the customer will resolve the violation (Step 2)")


class NoteIn(_In):
    note: str = ""


class ReasonIn(_In):
    reason: str


class ReclassifyIn(_In):
    category: Category
    severity: Severity | None = Field(default=None, description="unchanged when left out")
    reason: str


class CloseIn(_In):
    resolution: Resolution
    reason: str


class DeadlineIn(_In):
    # A deadline without an offset would be read in whatever zone the client meant; refuse it.
    deadline: AwareDatetime
    reason: str


class NoteTextIn(_In):
    text: str


class AssignmentEndIn(_In):
    prefix: str
    at: AwareDatetime | None = Field(default=None, description="now when left out")

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return normalise_prefix(value)
