"""A demo provider: about 20 customers, 100 servers, IPv4 and IPv6 prefixes, domains, one staff
user per role and a few cases in different states, so every page has something to show."""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa

from abusedesk.accounts.choices import AccountRole, Role
from abusedesk.accounts.permissions import SYSTEM
from abusedesk.accounts.service import NewUser, add_user
from abusedesk.bootstrap import Desk
from abusedesk.cases import machine
from abusedesk.cases import service as cases
from abusedesk.cases.choices import Event
from abusedesk.inventory.choices import ContactKind, ServerKind
from abusedesk.inventory.models import IPAssignment, Server
from abusedesk.inventory.schemas import AccountIn, ContactIn, DomainIn, ServerIn
from abusedesk.inventory.service import add_account, add_domain, add_server
from abusedesk.policy import Category

COMPANIES = [
    "Acme Hosting Ltd",
    "Blue Finch Media",
    "Cobalt Analytics",
    "Delta Web Shop",
    "Ember Games",
    "Fjord Travel",
    "Granite Legal",
    "Harbor Clinic",
    "Iris Photography",
    "Juniper Schools",
    "Kestrel Logistics",
    "Lumen Radio",
    "Maple Bakery",
    "Nimbus Labs",
    "Orchid Florists",
    "Pioneer Forum",
    "Quartz Accounting",
    "Raven Security",
    "Summit Outdoor",
    "Tidal Records",
]
PLANS = ["vps-small", "vps-medium", "vps-large", "dedicated-xl", "shared-web"]


@dataclass
class Login:
    email: str
    password: str
    role: str
    account: str = ""


@dataclass
class DemoSummary:
    accounts: int = 0
    servers: int = 0
    prefixes: int = 0
    domains: int = 0
    cases: int = 0
    zones: int = 0
    logins: list[Login] = field(default_factory=list)


def seed(
    desk: Desk, customers: int = 20, servers_per_customer: int = 5, rng_seed: int = 7
) -> DemoSummary:
    rng = random.Random(rng_seed)  # noqa: S311 - demo data, repeatable on purpose
    summary = DemoSummary()
    with desk.uow() as uow:
        now = uow.clock.now()
        session = uow.session
        for i, company in enumerate((COMPANIES * 3)[:customers], start=1):
            reference = f"C{1000 + i}"
            slug = company.lower().split()[0]
            add_account(
                session,
                AccountIn(
                    reference=reference,
                    name=company,
                    contacts=[
                        ContactIn(kind=ContactKind.ABUSE, email=f"abuse@{slug}.example"),
                        ContactIn(kind=ContactKind.TECHNICAL, email=f"ops@{slug}.example"),
                        ContactIn(kind=ContactKind.BILLING, email=f"accounts@{slug}.example"),
                    ],
                    billing_name=company,
                    billing_email=f"accounts@{slug}.example",
                    billing_confirmed_at=now - timedelta(days=rng.randint(5, 400)),
                    aup_version=desk.policy.aup_version,
                    aup_accepted_at=now - timedelta(days=rng.randint(30, 900)),
                ),
                now,
            )
            summary.accounts += 1
            hostnames = []
            for n in range(servers_per_customer):
                plan = rng.choice(PLANS)
                hostname = f"{plan.split('-')[0]}{n + 1}.{slug}.example"
                # IPv4 from the benchmarking range 198.18.0.0/15, IPv6 from the documentation /32.
                prefixes = [
                    f"198.18.{i}.{n * 8}/29"
                    if plan == "dedicated-xl"
                    else f"198.18.{i}.{n * 8 + 1}/32",
                    f"2001:db8:{i:x}:{n:x}::/64",
                ]
                add_server(
                    session,
                    ServerIn(
                        account_reference=reference,
                        hostname=hostname,
                        plan=plan,
                        kind=ServerKind.SHARED if plan == "shared-web" else ServerKind.DEDICATED,
                        prefixes=prefixes,
                    ),
                    now,
                )
                hostnames.append(hostname)
                summary.servers += 1
                summary.prefixes += len(prefixes)
            for domain in (f"{slug}.example", f"shop.{slug}.example"):
                add_domain(
                    session,
                    DomainIn(
                        account_reference=reference, name=domain, server_hostname=hostnames[0]
                    ),
                    now,
                )
                summary.domains += 1
        uow.audit(
            SYSTEM.label,
            "demo.seed",
            "inventory",
            "demo",
            {"accounts": summary.accounts, "servers": summary.servers},
        )
        uow.commit()

    for role in (Role.ANALYST, Role.NOC, Role.LEGAL, Role.ADMIN):
        summary.logins.append(_user(desk, f"{role.value}@provider.example", role))
    for reference, slug in (("C1001", "acme"), ("C1002", "blue")):
        if summary.accounts >= int(reference[1:]) - 1000:
            summary.logins.append(
                _user(desk, f"owner@{slug}.example", Role.CUSTOMER, reference, AccountRole.OWNER)
            )
    summary.cases = _demo_cases(desk) + _demo_traffic(desk)
    summary.zones = _demo_zones(desk, min(5, summary.accounts))
    return summary


def _demo_traffic(desk: Desk) -> int:
    """What the traffic detectors make of a minute of flows: a spam burst from one customer's
    server (a case with charted evidence) and a flood towards another's (a NOC alert)."""
    import numpy as np

    from abusedesk.traffic.decode.records import DecodeResult
    from abusedesk.traffic.detectors import Detection
    from abusedesk.traffic.findings import TrafficFindings, open_cases_for
    from abusedesk.traffic.synthetic import addresses, flows

    with desk.uow().reading() as uow:
        prefixes = [
            str(p).split("/")[0]
            for p in uow.session.scalars(
                sa.select(IPAssignment.prefix)
                .where(IPAssignment.prefix.like("198.18.%/32"))
                .order_by(IPAssignment.id)
                .limit(2)
            )
        ]
    if len(prefixes) < 2:
        return 0
    found: list[Detection] = []
    sink = TrafficFindings(
        desk.settings.traffic,
        desk.policy.traffic,
        desk.session_factory,
        found.extend,
        detect_every=0,
    )
    spam = flows(
        240, prefixes[0], addresses("203.0.113.0/24", 240), dst_port=25, packets=14, bytes=9000
    )
    flood = flows(
        4000,
        addresses("100.64.0.0/16", 4000),
        prefixes[1],
        protocol=17,
        src_port=123,
        packets=4000,
        bytes=1_800_000,
    )
    batch = np.concatenate([spam, flood])
    now = desk.clock.now().timestamp()
    sink.accept(
        DecodeResult(format=None, flows=batch, origin=np.zeros(len(batch), np.int32)),
        ["192.0.2.254"],
        now,
    )
    return sum(opened.created for opened in open_cases_for(desk, found))


def _demo_zones(desk: Desk, accounts: int) -> int:
    """A zone with a few records for each of the first accounts, served by the `dns` role."""
    from abusedesk.dns import service as zones

    made = 0
    for i, company in enumerate(COMPANIES[:accounts], start=1):
        slug = company.lower().split()[0]
        name = f"{slug}-demo.net"
        base = f"198.51.100.{10 + i}"
        zones.create_zone(desk.uow(), SYSTEM, f"C{1000 + i}", name)
        for subname, rtype, records in (
            ("@", "A", [base]),
            ("www", "CNAME", [f"{name}."]),
            ("@", "MX", [f"10 mail.{name}."]),
            ("mail", "A", [base]),
            ("@", "TXT", ['"v=spf1 mx -all"']),
        ):
            zones.put_rrset(
                desk.uow(), SYSTEM, name, subname, rtype, None, records, desk.settings.dns
            )
        made += 1
    return made


def _user(
    desk: Desk,
    email: str,
    role: Role,
    account: str | None = None,
    account_role: AccountRole | None = None,
) -> Login:
    password = "demo-" + secrets.token_urlsafe(9)
    add_user(
        desk.uow(),
        SYSTEM,
        NewUser(
            email=email,
            role=role,
            password=password,
            account_reference=account,
            account_role=account_role,
        ),
    )
    return Login(email, password, role.value, account or "")


def _demo_cases(desk: Desk) -> int:
    """A spread of cases: new, acknowledged, disconnected, closed."""
    with desk.uow() as uow:
        servers = list(
            uow.session.execute(
                sa.select(Server.id, Server.account_id, Server.hostname)
                .order_by(Server.id)
                .limit(12)
            )
        )
    plan = [
        (Category.SPAM, None),
        (Category.PHISHING, Event.ACKNOWLEDGE),
        (Category.NETWORK_ABUSE, Event.DISCONNECT),
        (Category.COPYRIGHT, None),
        (Category.MALWARE, Event.REPORT_FIX),
        (Category.VULNERABLE_SERVICE, None),
    ]
    count = 0
    for (category, then), (server_id, account_id, hostname) in zip(
        plan, servers[::2], strict=False
    ):
        case = cases.open_case(
            desk.uow(),
            SYSTEM,
            cases.NewCase(
                account_id,
                category,
                server_id=server_id,
                summary=f"Demo: {category.value.replace('_', ' ')} reported for {hostname}",
            ),
            desk.policy,
        ).case
        count += 1
        if then is Event.ACKNOWLEDGE:
            cases.acknowledge(
                desk.uow(),
                SYSTEM,
                case.id,
                "Taking the page down and rotating credentials",
                desk.policy,
            )
        elif then is Event.REPORT_FIX:
            cases.report_fix(
                desk.uow(), SYSTEM, case.id, "Removed the infected plugin", desk.policy
            )
        elif then is Event.DISCONNECT:
            cases.transition(
                desk.uow(),
                SYSTEM,
                case.id,
                machine.Command(Event.DISCONNECT, reason="Scanning continued after notice"),
                desk.policy,
            )
    return count
