"""A small inventory built through the services, as a user of the system would build it."""

from __future__ import annotations

from dataclasses import dataclass

from abusedesk.accounts.permissions import SYSTEM
from abusedesk.bootstrap import Desk
from abusedesk.inventory import service as inventory
from abusedesk.inventory.choices import ContactKind
from abusedesk.inventory.schemas import AccountIn, ContactIn, ServerIn


@dataclass
class Customer:
    account_id: int
    reference: str
    server_ids: list[int]
    hostnames: list[str]


def customer(
    desk: Desk, reference: str = "C1001", servers: int = 1, base: str = "198.51.100"
) -> Customer:
    account = inventory.create_account(
        desk.uow(),
        SYSTEM,
        AccountIn(
            reference=reference,
            name=f"Customer {reference}",
            contacts=[
                ContactIn(kind=ContactKind.ABUSE, email=f"abuse@{reference.lower()}.example"),
                ContactIn(kind=ContactKind.TECHNICAL, email=f"noc@{reference.lower()}.example"),
                ContactIn(kind=ContactKind.BILLING, email=f"billing@{reference.lower()}.example"),
            ],
        ),
    )
    ids, names = [], []
    for n in range(servers):
        hostname = f"srv{n}.{reference.lower()}.example"
        server = inventory.create_server(
            desk.uow(),
            SYSTEM,
            ServerIn(
                account_reference=reference,
                hostname=hostname,
                plan="vps-small",
                prefixes=[f"{base}.{n + 1}/32"],
            ),
        )
        ids.append(server.id)
        names.append(hostname)
    return Customer(account.id, reference, ids, names)


# Imported here, not above: what report() needs was appended with it.
import hashlib  # noqa: E402
import uuid  # noqa: E402

from abusedesk.intake.choices import ReportSource, ReportStatus  # noqa: E402
from abusedesk.intake.models import Report  # noqa: E402


def report(
    desk: Desk,
    complainant_email: str = "",
    complainant_name: str = "",
    status: ReportStatus = ReportStatus.ACCEPTED,
    body: str = "",
) -> int:
    """A stored report as intake leaves it, without going through a parser; its id."""
    text = f"From: {complainant_email or 'nobody@example.net'}\r\n\r\n{body or uuid.uuid4()}"
    raw = text.encode()
    with desk.uow() as uow:
        row = Report(
            received_at=desk.clock.now(),
            source=ReportSource.SMTP,
            raw=raw,
            size=len(raw),
            sha256=hashlib.sha256(raw).hexdigest(),
            status=status,
            complainant_name=complainant_name,
            complainant_email=complainant_email,
        )
        uow.session.add(row)
        uow.commit()
        return row.id


# -- users (appended with sign-in and the portal's account pages) -------------------------------

from abusedesk.accounts.choices import AccountRole, Role  # noqa: E402
from abusedesk.accounts.permissions import Actor  # noqa: E402
from abusedesk.accounts.service import NewUser, actor_for, add_user  # noqa: E402

PASSWORD = "Correct-Horse-9"


def user(
    desk: Desk,
    email: str,
    role: Role = Role.CUSTOMER,
    account_reference: str | None = None,
    account_role: AccountRole | None = None,
    password: str | None = PASSWORD,
) -> Actor:
    """A user made as an admin would make one; the actor it signs in as."""
    made = add_user(
        desk.uow(),
        SYSTEM,
        NewUser(
            email=email,
            role=role,
            password=password,
            name=email.partition("@")[0].title(),
            account_reference=account_reference,
            account_role=account_role,
        ),
    )
    return actor_for(made)
