"""Inventory import and export against a real database (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

import io
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from abusedesk.accounts.choices import Role
from abusedesk.accounts.permissions import SYSTEM, Actor
from abusedesk.audit.models import AuditEntry
from abusedesk.bootstrap import Desk
from abusedesk.errors import Conflict, PermissionDenied, ValidationError
from abusedesk.inventory import service as inventory
from abusedesk.inventory.choices import AccountStatus, ContactKind, ServerKind, ServerStatus
from abusedesk.inventory.models import Account, Contact, Domain, IPAssignment, Server
from abusedesk.inventory.schemas import AssignmentIn, DomainIn, ServerIn
from abusedesk.inventory.transfer import (
    ImportRejected,
    ImportResult,
    export_inventory,
    import_inventory,
)
from tests.conftest import START, wipe
from tests.factories import customer

DOCS = Path(__file__).parents[2] / "docs" / "inventory.md"
NOC = Actor(label="noc:ana", role=Role.NOC)
ANALYST = Actor(label="analyst:bo", role=Role.ANALYST)
CUSTOMER = Actor(label="customer:cy", role=Role.CUSTOMER, account_id=1)
HEADER = (
    "account_reference,account_name,abuse_email,technical_email,billing_email,"
    "hostname,plan,server_kind,prefixes,domains"
)


def example(kind: str) -> str:
    """The complete example of a format from docs/inventory.md: what the docs show must import."""
    blocks = re.findall(rf"```{kind}\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
    assert len(blocks) == 1, f"docs/inventory.md should have one ```{kind} example"
    return blocks[0]


def tables(desk: Desk) -> dict[str, int]:
    with desk.engine.connect() as conn:
        return {
            model.__tablename__: conn.scalar(sa.select(sa.func.count()).select_from(model)) or 0
            for model in (Account, Contact, Server, IPAssignment, Domain, AuditEntry)
        }


def load(desk: Desk, text: str, fmt: str = "csv", actor: Actor = NOC, **kwargs) -> ImportResult:
    return import_inventory(desk.uow(), actor, io.StringIO(text), fmt, **kwargs)


def rejected(desk: Desk, text: str | bytes, fmt: str = "csv", **kwargs) -> list[str]:
    """Imports a file that must be refused; returns the problems, and checks nothing changed."""
    before = tables(desk)
    stream = io.BytesIO(text) if isinstance(text, bytes) else io.StringIO(text)
    with pytest.raises(ValidationError) as caught:
        import_inventory(desk.uow(), NOC, stream, fmt, **kwargs)
    assert tables(desk) == before
    return caught.value.problems


def assignments(desk: Desk, hostname: str) -> list[tuple[str, datetime, datetime | None]]:
    with desk.uow() as uow:
        rows = uow.session.execute(
            sa.select(IPAssignment.prefix, IPAssignment.valid_from, IPAssignment.valid_until)
            .join(Server)
            .where(Server.hostname == hostname)
            .order_by(IPAssignment.id)
        )
        return [tuple(row) for row in rows]


# -- good files -----------------------------------------------------------------------------


def test_the_csv_example_imports(desk: Desk) -> None:
    result = load(desk, example("csv"))

    assert (result.accounts_added, result.servers_added, result.assignments_added) == (3, 3, 4)
    assert result.domains_added == 5
    assert result.records == 5
    c1001 = inventory.get_account(desk.uow(), NOC, "C1001")
    assert c1001.name == "Example Hosting Ltd"
    assert c1001.contact_emails(ContactKind.TECHNICAL) == ["noc@example.com", "ops@example.com"]
    assert c1001.contact_emails(ContactKind.BILLING) == ["billing@example.com"]
    assert [s.hostname for s in c1001.servers] == ["web1.example.com", "web2.example.com"]
    assert {d.name: d.server.hostname if d.server else None for d in c1001.domains} == {
        "example.com": "web1.example.com",
        "www.example.com": "web1.example.com",
        "shop.example.com": "web2.example.com",
        "example.net": None,
    }
    assert assignments(desk, "web1.example.com") == [
        ("198.51.100.10/32", START, None),
        ("2001:db8:10::/64", START, None),
    ]
    sleepy = inventory.get_account(desk.uow(), NOC, "C1003")
    assert sleepy.status is AccountStatus.SUSPENDED
    assert sleepy.servers == []


def test_the_json_example_imports_with_history(desk: Desk) -> None:
    result = load(desk, example("json"), "json")

    assert (result.accounts_added, result.servers_added, result.domains_added) == (2, 3, 3)
    assert result.assignments_added == 5
    c1001 = inventory.get_account(desk.uow(), NOC, "C1001")
    assert c1001.billing_email == "invoices@example.com"
    assert c1001.aup_accepted_at == datetime(2024, 1, 15, 10, 30, tzinfo=UTC)
    assert [(c.kind, c.email, c.name, c.phone) for c in c1001.contacts] == [
        (ContactKind.ABUSE, "abuse@example.com", "Abuse team", ""),
        (ContactKind.TECHNICAL, "noc@example.com", "", "+44 20 7946 0000"),
        (ContactKind.BILLING, "billing@example.com", "", ""),
    ]
    moved = datetime(2025, 3, 1, tzinfo=UTC)
    assert assignments(desk, "old.example.com") == [
        ("192.0.2.64/26", datetime(2023, 6, 1, tzinfo=UTC), moved)
    ]
    assert ("192.0.2.64/26", moved, None) in assignments(desk, "web1.example.com")
    old = inventory.get_server(desk.uow(), NOC, "old.example.com")
    assert old.status is ServerStatus.TERMINATED


def test_an_import_is_one_audit_entry_with_counts_and_hash(desk: Desk, tmp_path: Path) -> None:
    path = tmp_path / "cmdb.csv"
    path.write_text(example("csv"))
    before = tables(desk)["audit_log"]

    result = import_inventory(desk.uow(), NOC, path)  # the format from the name

    with desk.uow() as uow:
        entries = uow.session.scalars(sa.select(AuditEntry).order_by(AuditEntry.seq)).all()
    assert len(entries) == before + 1
    entry = entries[-1]
    assert (entry.actor, entry.action) == ("noc:ana", "inventory.import")
    assert entry.details["file"] == "cmdb.csv"
    assert entry.details["sha256"] == result.sha256
    assert re.fullmatch("[0-9a-f]{64}", result.sha256)
    assert entry.details["servers_added"] == 3
    assert entry.details["assignments_added"] == 4


def test_a_json_file_is_recognised_by_its_name(desk: Desk, tmp_path: Path) -> None:
    path = tmp_path / "inventory.JSON"
    path.write_bytes(example("json").encode())
    assert import_inventory(desk.uow(), NOC, path).servers_added == 3


def test_servers_can_be_added_to_an_existing_account_by_reference(desk: Desk) -> None:
    existing = customer(desk, "C1001")
    # Spreadsheets end rows with empty cells past the header; that is no problem.
    result = load(desk, f"{HEADER}\nC1001,,,,,web9.example.com,vps,,192.0.2.9/32,,,\n")
    assert (result.accounts_added, result.servers_added) == (0, 1)
    account = inventory.get_account(desk.uow(), NOC, "C1001")
    assert account.id == existing.account_id
    assert "web9.example.com" in [s.hostname for s in account.servers]


def test_a_dry_run_checks_and_writes_nothing(desk: Desk) -> None:
    before = tables(desk)
    result = load(desk, example("csv"), dry_run=True)
    assert result.dry_run
    assert result.servers_added == 3
    assert tables(desk) == before
    problems = rejected(desk, f"{HEADER}\nC1,X,nope,,,,,,,\n", dry_run=True)
    assert problems == ["line 2, abuse_email: 'nope' is not an e-mail address"]


# -- bad files ------------------------------------------------------------------------------


def test_every_bad_row_is_reported_by_line_and_nothing_is_written(desk: Desk) -> None:
    customer(desk, "C1001")
    text = (
        f"{HEADER}\n"
        "C1,One,abuse@one.example,,,a.one.example,vps,,198.51.100.7/24,\n"  # host bits
        "C2,Two,abuse(at)two.example,,,b.two.example,vps,,,\n"  # e-mail
        "C3,Three,,,,c.three.example,,,,\n"  # no plan for a new server
        "\n"
        "C4,Four,,,,d.four.example,vps,virtual,10.0.0.0/8 300.0.0.0/8,\n"  # kind, prefix
        "C5,,,,,e.five.example,vps,,,\n"  # new account without a name
        "C6,Six,,,,f.six.example,vps,,,bad_domain.example\n"  # domain name
        "C7,Seven,,,,-g.example,vps,,,\n"  # host name
        "C8,Eight,,,,h.example,vps,,192.0.2.0/24,\n"
        "C9,Nine,,,,i.example,vps,,192.0.2.0/24,\n"  # the same prefix twice
        "C1,Uno,,,,,,,,\n"  # the account's name differs from line 2
        "C10,Ten,,,,srv0.c1001.example,vps,,,\n"  # a server that exists
        "C11,Eleven,,,,j.example,vps,,198.51.100.1/32,\n"  # a prefix that is assigned
        "C12,Twelve,,,,k.example,vps,,,,extra\n"  # a value past the last column
        "C13,Thirteen,,,,,vps,,,\n"  # a plan without a host name
        ",Nobody,,,,,,,,\n"  # no reference
    )
    problems = rejected(desk, text)

    assert problems == [
        "line 2, prefixes: '198.51.100.7/24' is not a network prefix "
        "(198.51.100.7/24 has host bits set)",
        "line 3, abuse_email: 'abuse(at)two.example' is not an e-mail address",
        "line 4, plan: required for the new server c.three.example",
        "line 6, server_kind: Input should be 'shared' or 'dedicated'",
        "line 6, prefixes: '300.0.0.0/8' is not a network prefix "
        "('300.0.0.0/8' does not appear to be an IPv4 or IPv6 network)",
        "line 7, account_name: required for the new account C5",
        "line 8, domains: 'bad_domain.example' is not a valid host name",
        "line 9, hostname: '-g.example' is not a valid host name",
        "line 11, prefixes: 192.0.2.0/24 is assigned to h.example at the same time "
        "(at line 10, prefixes)",
        "line 12, account_name: account C1: 'Uno' differs from 'One' on line 2",
        "line 13: server srv0.c1001.example exists already (import with update to change it)",
        "line 14, prefixes: 198.51.100.1/32 is assigned to srv0.c1001.example already "
        "(since 2026-03-02T09:00:00Z): end that assignment first",
        "line 15: 11 cells, but the header names 10 columns",
        "line 16, plan: given without a hostname",
        "line 17, account_reference: empty",
    ]


def test_duplicates_within_the_file(desk: Desk) -> None:
    text = (
        f"{HEADER}\n"
        "C1,One,,,,a.example,vps,,,one.example\n"
        "C2,Two,,,,b.example,vps,,,\n"
        "C2,,,,,A.Example.,vps,,,one.example\n"
    )
    assert rejected(desk, text) == [
        "line 4: server a.example is listed twice (also at line 2)",
        "line 4, domains: domain one.example is listed twice (also at line 2, domains)",
    ]
    document = {
        "accounts": [{"reference": "C1", "name": "One"}, {"reference": "C1", "name": "Again"}],
        "servers": [
            {
                "account_reference": "C1",
                "hostname": "a.example",
                "plan": "p",
                "prefixes": ["192.0.2.0/24", "192.0.2.0/24"],
            },
        ],
    }
    assert rejected(desk, json.dumps(document), "json") == [
        "line 1, /accounts/1: account C1 is listed twice (also at /accounts/0)",
        "line 1, /servers/0/prefixes/1: 192.0.2.0/24 is listed twice for a.example "
        "(at /servers/0/prefixes/0)",
    ]


def test_conflicts_with_the_database(desk: Desk) -> None:
    customer(desk, "C1001")  # srv0.c1001.example with 198.51.100.1/32
    customer(desk, "C2002", base="203.0.113")
    inventory.create_domain(
        desk.uow(), SYSTEM, DomainIn(account_reference="C2002", name="taken.example")
    )
    text = """{
  "accounts": [{"reference": "C1001", "name": "Again"}],
  "servers": [
    {"account_reference": "C2002", "hostname": "srv0.c1001.example", "plan": "p"},
    {"account_reference": "C3003", "hostname": "new.example", "plan": "p"},
    {"account_reference": "C2002", "hostname": "n2.example", "plan": "p",
     "assignments": [
       {"prefix": "198.51.100.1/32", "valid_from": "2020-01-01T00:00:00Z",
        "valid_until": "2026-04-01T00:00:00Z"}
     ]}
  ],
  "domains": [
    {"account_reference": "C2002", "name": "taken.example"},
    {"account_reference": "C2002", "name": "x.example",
     "server_hostname": "srv0.c1001.example"},
    {"account_reference": "C2002", "name": "y.example", "server_hostname": "nowhere.example"}
  ]
}"""
    assert rejected(desk, text, "json") == [
        "line 2, /accounts/0: account C1001 exists already (import with update to change it)",
        "line 4, /servers/0: server srv0.c1001.example exists already "
        "(import with update to change it)",
        "line 5, /servers/1/account_reference: unknown account C3003: neither in the file nor "
        "in the database",
        "line 8, /servers/2/assignments/0: 198.51.100.1/32 is assigned to srv0.c1001.example "
        "already (since 2026-03-02T09:00:00Z): end that assignment first",
        "line 13, /domains/0: domain taken.example exists already "
        "(import with update to change it)",
        "line 15, /domains/1/server_hostname: server srv0.c1001.example belongs to account "
        "C1001, not C2002",
        "line 16, /domains/2/server_hostname: unknown server nowhere.example: neither in the "
        "file nor in the database",
    ]


def test_json_problems_name_pointer_and_line(desk: Desk) -> None:
    text = """{
  "accounts": [
    {"reference": "C1", "name": "One",
     "contacts": [{"kind": "abuse", "email": "nope"}]}
  ],
  "servers": [
    {
      "account_reference": "C1",
      "hostname": "a.example",
      "plan": "p",
      "prefixes": [
        "192.0.2.0/24",
        "198.51.100.7/24"
      ],
      "assignments": [
        {"prefix": "10.0.0.0/8", "valid_from": "2025-01-01T00:00:00Z",
         "valid_until": "2024-01-01T00:00:00Z"}
      ],
      "colour": "blue"
    },
    {"account_reference": "C1", "hostname": "b.example"}
  ],
  "more": []
}
"""
    assert rejected(desk, text, "json") == [
        "line 4, /accounts/0/contacts/0/email: 'nope' is not an e-mail address",
        "line 13, /servers/0/prefixes/1: '198.51.100.7/24' is not a network prefix "
        "(198.51.100.7/24 has host bits set)",
        "line 16, /servers/0/assignments/0: valid_until must be later than valid_from",
        "line 19, /servers/0/colour: not a known field",
        "line 21, /servers/1/plan: required",
        "line 23, /more: not a known section (accounts, servers, domains, version)",
    ]


@pytest.mark.parametrize(
    ("text", "fmt", "expected"),
    [
        ("", "csv", "line 1: the file is empty; the first line must name the columns"),
        ("name,hostname\nC1,a.example\n", "csv", "line 1: unknown column 'name'"),
        (
            "account_reference;hostname\n",
            "csv",
            "line 1: unknown column 'account_reference;hostname'; is the file comma-separated?",
        ),
        ('{"accounts": [}', "json", "line 1: not valid JSON: Expecting value (column 15)"),
        (
            "[]",
            "json",
            "/: the top level must be an object with the lists accounts, servers and domains",
        ),
        ('{"servers": {}}', "json", "line 1, /servers: must be a list"),
        ('{"version": 2}', "json", "line 1, /version: this abusedesk reads version 1"),
    ],
)
def test_malformed_files_are_refused_clearly(
    desk: Desk, text: str, fmt: str, expected: str
) -> None:
    assert expected in rejected(desk, text, fmt)


def test_a_missing_required_column_is_named(desk: Desk) -> None:
    problems = rejected(desk, "account_name,hostname,plan\nOne,a.example,vps\n")
    assert problems == ["line 1: the column 'account_reference' is required"]


def test_broken_encoding_is_refused_with_its_line(desk: Desk) -> None:
    text = f"{HEADER}\nC1,Café,,,,a.example,vps,,,\n".encode("latin-1")
    offset = text.index(b"\xe9")
    assert rejected(desk, text) == [
        f"line 2: the file is not UTF-8 (byte 0xe9 at offset {offset}); save or export it as UTF-8"
    ]
    utf16 = f"{HEADER}\n".encode("utf-16")
    (problem,) = rejected(desk, utf16)
    assert "UTF-8" in problem


def test_a_byte_order_mark_is_not_part_of_the_header(desk: Desk) -> None:
    data = f"{HEADER}\nC1,Café,,,,a.example,vps,,,\n".encode("utf-8-sig")
    result = import_inventory(desk.uow(), NOC, io.BytesIO(data), "csv")
    assert result.accounts_added == 1
    assert inventory.get_account(desk.uow(), NOC, "C1").name == "Café"


def test_nul_characters_are_refused(desk: Desk) -> None:
    assert rejected(desk, f"{HEADER}\nC1,On\x00e,,,,,,,,\n") == [
        "line 2: the file contains a NUL character (is it UTF-16 or binary?); save it as UTF-8"
    ]
    assert rejected(desk, '{"accounts": [{"reference": "C1", "name": "a\\u0000b"}]}', "json") == [
        "line 1, /accounts/0/name: contains a NUL character"
    ]


def test_size_limits(desk: Desk, tmp_path: Path) -> None:
    text = f"{HEADER}\nC1,{'x' * 200},,,,,,,,\n"
    assert rejected(desk, text, max_bytes=100) == ["the file is larger than the limit of 100 bytes"]
    path = tmp_path / "big.csv"
    path.write_text(text)
    before = tables(desk)
    with pytest.raises(ValidationError) as caught:
        import_inventory(desk.uow(), NOC, path, max_bytes=100)
    size = path.stat().st_size
    assert caught.value.problems == [f"big.csv is {size} bytes; the limit is 100 bytes"]
    assert tables(desk) == before
    assert rejected(desk, text, max_cell=100) == [
        "line 2, account_name: the cell is longer than 100 bytes"
    ]
    # The csv module's own limit (128 KiB by default) stops a quote left open.
    runaway = f'{HEADER}\nC1,"One,,,,,,,,\n' + "C2,Two,,,,,,,,\n" * 20_000
    (problem,) = rejected(desk, runaway)
    assert problem.startswith("line 2: the CSV cannot be read from here on")


def test_unknown_format_and_missing_file(desk: Desk, tmp_path: Path) -> None:
    path = tmp_path / "inventory.xlsx"
    path.write_bytes(b"PK")
    with pytest.raises(ImportRejected, match=r"name it \.csv or \.json"):
        import_inventory(desk.uow(), NOC, path)
    with pytest.raises(ImportRejected, match="unknown format 'xml'"):
        import_inventory(desk.uow(), NOC, path, "xml")
    with pytest.raises(ImportRejected, match="cannot read"):
        import_inventory(desk.uow(), NOC, tmp_path / "missing.csv")


# -- permissions ----------------------------------------------------------------------------


def test_importing_needs_inventory_edit(desk: Desk) -> None:
    before = tables(desk)
    with pytest.raises(PermissionDenied):
        load(desk, example("csv"), actor=ANALYST)
    with pytest.raises(PermissionDenied):
        load(desk, example("csv"), actor=ANALYST, dry_run=True)
    assert tables(desk) == before


def test_exporting_needs_inventory_view(desk: Desk) -> None:
    customer(desk, "C1001")
    with pytest.raises(PermissionDenied):
        export_inventory(desk.uow(), CUSTOMER, "csv")
    assert "C1001" in export_inventory(desk.uow(), ANALYST, "csv")


# -- update ---------------------------------------------------------------------------------


def test_update_changes_what_the_file_states_and_deletes_nothing(desk: Desk) -> None:
    load(desk, example("csv"))
    with desk.uow() as uow:  # a name and phone, which the CSV cannot carry
        contact = uow.session.scalar(sa.select(Contact).where(Contact.email == "noc@example.com"))
        contact.name, contact.phone = "Night desk", "+1 555 0100"
        uow.session.commit()
    header = (
        "account_reference,account_name,technical_email,hostname,plan,server_kind,prefixes,domains"
    )
    rows = [
        "C1001,Example Hosting Plc,noc@example.com,web1.example.com,,shared,"
        "198.51.100.10/32 198.51.100.12/32,example.com",
        "C1001,,,web3.example.com,,,192.0.2.3/32,",  # a new server, but no plan
        "C1002,,,,,,,acme.test",  # the domain leaves its server
    ]
    problems = rejected(desk, "\n".join([header, *rows]), update=True)
    assert problems == ["line 3, plan: required for the new server web3.example.com"]

    rows[1] = "C1001,,,web3.example.com,vps,,192.0.2.3/32,"
    result = load(desk, "\n".join([header, *rows]), update=True)

    assert (result.accounts_updated, result.servers_added, result.servers_updated) == (1, 1, 1)
    assert (result.assignments_added, result.domains_updated) == (2, 1)
    account = inventory.get_account(desk.uow(), NOC, "C1001")
    assert account.name == "Example Hosting Plc"
    technical = [
        (c.email, c.name, c.phone) for c in account.contacts if c.kind is ContactKind.TECHNICAL
    ]
    assert technical == [("noc@example.com", "Night desk", "+1 555 0100")]  # ops@ replaced
    assert account.contact_emails(ContactKind.ABUSE) == ["abuse@example.com"]  # not in the file
    web1 = inventory.get_server(desk.uow(), NOC, "web1.example.com")
    assert (web1.kind, web1.plan) == (ServerKind.SHARED, "vps-small")
    # 2001:db8:10::/64 is not in the file, and stays: an import never ends an assignment.
    assert sorted(a.prefix for a in web1.assignments) == [
        "198.51.100.10/32",
        "198.51.100.12/32",
        "2001:db8:10::/64",
    ]
    assert "www.example.com" in [d.name for d in account.domains]
    acme = inventory.get_account(desk.uow(), NOC, "C1002")
    assert [(d.name, d.server_id) for d in acme.domains] == [("acme.test", None)]


def test_update_refuses_to_move_things_between_accounts(desk: Desk) -> None:
    customer(desk, "C1001")
    customer(desk, "C2002", base="203.0.113")
    problems = rejected(desk, f"{HEADER}\nC2002,,,,,srv0.c1001.example,vps,,,\n", update=True)
    assert problems == ["line 2: server srv0.c1001.example belongs to account C1001, not C2002"]


def test_reimporting_an_export_with_update_changes_nothing(desk: Desk) -> None:
    load(desk, example("json"), "json")
    for fmt in ("json", "csv"):
        text = export_inventory(desk.uow(), NOC, fmt)
        before = tables(desk)
        result = load(desk, text, fmt, update=True)
        assert result.counts() | {"records": 0} == dict.fromkeys(result.counts(), 0)
        assert tables(desk) == before | {"audit_log": before["audit_log"] + 1}


# -- export and round trip ------------------------------------------------------------------


def shifted(text: str) -> str:
    """The same inventory under other names and addresses, to sit beside the original."""
    for old, new in [
        ("C100", "C200"),
        ("example.", "example2."),
        (".test", "2.test"),
        ("198.51.100.1", "198.51.100.2"),
        ("2001:db8:10::", "2001:db8:20::"),
        ("203.0.113.0/28", "203.0.113.16/28"),
    ]:
        text = text.replace(old, new)
    return text


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_round_trip(desk: Desk, fmt: str) -> None:
    load(desk, example("json"), "json")
    load(desk, shifted(example("csv")))
    first = export_inventory(desk.uow(), NOC, fmt)

    wipe(desk.engine)
    load(desk, first, fmt)
    second = export_inventory(desk.uow(), NOC, fmt)

    assert second == first
    assert "C1001" in first
    assert "C2003" in first


def test_the_json_export_carries_everything(desk: Desk) -> None:
    load(desk, example("json"), "json")
    document = json.loads(export_inventory(desk.uow(), NOC, "json"))
    assert document["version"] == 1
    assert [a["reference"] for a in document["accounts"]] == ["C1001", "C1002"]
    old = next(s for s in document["servers"] if s["hostname"] == "old.example.com")
    assert old["assignments"] == [
        {
            "prefix": "192.0.2.64/26",
            "valid_from": "2023-06-01T00:00:00Z",
            "valid_until": "2025-03-01T00:00:00Z",
        }
    ]
    assert document["accounts"][0]["contacts"][1]["phone"] == "+44 20 7946 0000"


def test_the_csv_export_has_current_prefixes_only(desk: Desk) -> None:
    load(desk, example("json"), "json")
    lines = export_inventory(desk.uow(), NOC, "csv").splitlines()
    old = next(line for line in lines if "old.example.com" in line)
    assert "192.0.2.64/26" not in old
    web1 = next(line for line in lines if "web1.example.com" in line)
    assert "192.0.2.64/26 198.51.100.10/32 2001:db8:10::/64" in web1


def test_an_export_is_audited(desk: Desk) -> None:
    customer(desk, "C1001")
    text = export_inventory(desk.uow(), ANALYST, "json")
    with desk.uow() as uow:
        entry = uow.session.scalars(sa.select(AuditEntry).order_by(AuditEntry.seq.desc())).first()
    assert (entry.actor, entry.action) == ("analyst:bo", "inventory.export")
    assert entry.details["accounts"] == 1
    assert len(text) > 0


# -- scale and progress ---------------------------------------------------------------------


def big_csv(rows: int) -> str:
    lines = [HEADER]
    for i in range(rows):
        account = i // 4
        head = (
            f"C{account},Customer {account},abuse@c{account}.example,,"
            if i % 4 == 0
            else f"C{account},,,,"
        )
        domains = f"d{i}.example" if i % 2 == 0 else ""
        lines.append(
            f"{head},s{i}.c{account}.example,vps,,10.{i >> 16}.{(i >> 8) & 255}.{i & 255}/32 "
            f"2001:db8:{i >> 16:x}:{i & 0xFFFF:x}::/64,{domains}"
        )
    return "\n".join(lines) + "\n"


def test_a_large_csv_imports_with_rising_progress(desk: Desk) -> None:
    calls: list[tuple[int, int]] = []
    started = time.monotonic()

    result = load(desk, big_csv(20_000), progress=lambda done, total: calls.append((done, total)))

    assert time.monotonic() - started < 60
    assert (result.accounts_added, result.servers_added) == (5_000, 20_000)
    assert (result.assignments_added, result.domains_added) == (40_000, 10_000)
    counts = tables(desk)
    assert (counts["servers"], counts["ip_assignments"], counts["domains"]) == (
        20_000,
        40_000,
        10_000,
    )
    assert len(calls) > 10
    assert {total for _, total in calls} == {40_000}
    done = [d for d, _ in calls]
    assert done == sorted(set(done))
    assert done[0] == 0
    assert done[-1] == 40_000


def test_a_large_bad_csv_reports_every_problem(desk: Desk) -> None:
    text = big_csv(5_000).replace("vps,,10.0.1.", "vps,,10.0.1.0/24 10.0.1.")
    problems = rejected(desk, text)
    # Rows 256 to 511 (lines 258 to 513) all claim 10.0.1.0/24; the first has it.
    assert len(problems) == 255
    assert problems[0] == (
        "line 259, prefixes: 10.0.1.0/24 is assigned to s256.c64.example at the same time "
        "(at line 258, prefixes)"
    )
    assert problems[-1].startswith("line 513, prefixes: ")


# -- the service's assignments, which the import shares -------------------------------------


def test_assignment_history_through_the_service(desk: Desk) -> None:
    customer(desk, "C1001", servers=0)
    ended = AssignmentIn(
        prefix="192.0.2.0/24",
        valid_from=datetime(2024, 1, 1, tzinfo=UTC),
        valid_until=datetime(2025, 1, 1, tzinfo=UTC),
    )
    inventory.create_server(
        desk.uow(),
        SYSTEM,
        ServerIn(account_reference="C1001", hostname="a.example", plan="p", assignments=[ended]),
    )
    # Later, the same prefix on another server: no overlap, so allowed.
    inventory.create_server(
        desk.uow(),
        SYSTEM,
        ServerIn(
            account_reference="C1001", hostname="b.example", plan="p", prefixes=["192.0.2.0/24"]
        ),
    )
    # Earlier and overlapping the first: refused.
    with pytest.raises(Conflict, match=r"assigned to a\.example"):
        inventory.assign_prefix(
            desk.uow(),
            SYSTEM,
            "b.example",
            AssignmentIn(
                prefix="192.0.2.0/24",
                valid_from=datetime(2023, 1, 1, tzinfo=UTC),
                valid_until=datetime(2024, 6, 1, tzinfo=UTC),
            ),
        )
    assert assignments(desk, "a.example") == [
        ("192.0.2.0/24", datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC))
    ]
