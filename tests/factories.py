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
