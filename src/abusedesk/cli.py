"""The `abusedesk` command: set-up, running, and the staff's work from a terminal.

Each command parses its arguments, calls one service and prints the result; what it may do is
decided by the service, for the actor named with `--as` (default: the operator, as admin).
"""

from __future__ import annotations

import getpass
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import sqlalchemy as sa
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from abusedesk import __version__
from abusedesk.accounts.choices import AccountRole, Role
from abusedesk.accounts.models import User
from abusedesk.accounts.permissions import Actor
from abusedesk.accounts.service import NewUser, actor_for, add_user, get_user, issue_token
from abusedesk.accounts.signin import disable_totp, request_password_reset
from abusedesk.audit.service import verify_log
from abusedesk.bootstrap import Desk, bootstrap
from abusedesk.cases import machine
from abusedesk.cases import service as cases
from abusedesk.cases.choices import CaseState, Event, Resolution
from abusedesk.cases.models import Case
from abusedesk.cases.sweeper import sweep
from abusedesk.errors import AbuseDeskError, ValidationError
from abusedesk.inventory.choices import AccountStatus, ContactKind, ServerKind, ServerStatus
from abusedesk.policy import Category, PolicyError, Severity, load_policy
from abusedesk.policy.loader import parse_duration

console = Console()
err = Console(stderr=True)

app = typer.Typer(
    help="abusedesk: the abuse desk and AUP enforcement system of a hosting provider.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold tokens and passwords
    rich_markup_mode="rich",
)
db_app = typer.Typer(help="The database: create and upgrade its schema.", no_args_is_help=True)
case_app = typer.Typer(
    help="Cases: list, show, and move them through the Methods of Resolution.", no_args_is_help=True
)
inventory_app = typer.Typer(help="Customers, servers, prefixes and domains.", no_args_is_help=True)
user_app = typer.Typer(help="Staff and customer users, and API tokens.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
policy_app = typer.Typer(
    help="The policy: categories, severities, deadlines.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(case_app, name="case")
app.add_typer(inventory_app, name="inventory")
app.add_typer(user_app, name="user")
app.add_typer(audit_app, name="audit")
app.add_typer(policy_app, name="policy")


class State:
    actor_email: str | None = None
    _desk: Desk | None = None

    def desk(self, check_schema: bool = True) -> Desk:
        if self._desk is None:
            self._desk = bootstrap()
            if check_schema:
                _require_current_schema(self._desk)
        return self._desk

    def actor(self) -> Actor:
        if self.actor_email is None:
            return Actor(label=f"cli:{getpass.getuser()}", role=Role.ADMIN)
        with self.desk().uow().reading() as uow:
            user = uow.session.scalar(sa.select(User).where(User.email == self.actor_email.lower()))
        if user is None:
            fail(f"no user {self.actor_email}")
        return actor_for(user)


state = State()


def _require_current_schema(desk: Desk) -> None:
    """A database behind the code fails in odd places; say so up front instead."""
    from abusedesk.store.migrate import current, head

    try:
        at = current(desk.engine)
    except sa.exc.SQLAlchemyError as exc:
        fail(f"cannot reach the database {_safe_url(desk)}: {exc.__cause__ or exc}")
    if at is None:
        fail(f"the database {_safe_url(desk)} is empty: run `abusedesk init` (or `init --demo`)")
    if at != head():
        fail(f"the database is at schema {at}, the code needs {head()}: run `abusedesk db upgrade`")


def fail(message: str, problems: list[str] | None = None, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}")
    for problem in problems or []:
        if problem != message:
            err.print(f"  • {problem}")
    raise typer.Exit(code)


@contextmanager
def service_errors() -> Iterator[None]:
    """A refused action is a message and an exit code, never a traceback."""
    try:
        yield
    except ValidationError as exc:
        fail(str(exc), exc.problems)
    except (AbuseDeskError, PolicyError) as exc:
        fail(str(exc))


def version_callback(value: bool) -> None:
    if value:
        console.print(f"abusedesk {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    as_user: Annotated[str | None, typer.Option("--as", help="Act as this user (e-mail).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=version_callback, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    state.actor_email = as_user
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


# -- set-up and running ---------------------------------------------------------------------


@app.command()
def init(
    demo: Annotated[bool, typer.Option(help="Seed a demo provider and print its logins.")] = False,
) -> None:
    """Create (or upgrade) the database; with --demo, fill it with a demo provider."""
    with service_errors():
        desk = state.desk(check_schema=False)
        desk.migrate()
        console.print(f"[green]database ready[/] ({_safe_url(desk)})")
        if not demo:
            return
        from abusedesk.accounts.models import User as UserRow
        from abusedesk.demo import seed

        with desk.uow() as uow:
            if uow.session.scalar(sa.select(sa.func.count()).select_from(UserRow)):
                console.print("[yellow]the database has users already: demo data not added[/]")
                return
        with console.status("seeding the demo provider…"):
            summary = seed(desk)
    console.print(
        f"[green]demo provider:[/] {summary.accounts} customers, {summary.servers} servers, "
        f"{summary.prefixes} prefixes, {summary.domains} domains, {summary.cases} cases, "
        f"{summary.zones} DNS zones"
    )
    table = Table(title="Demo logins (shown once; keep them)")
    for column in ("e-mail", "password", "role", "account"):
        table.add_column(column)
    for login in summary.logins:
        table.add_row(login.email, login.password, login.role, login.account)
    console.print(table)
    base = desk.settings.base_url
    console.print(
        f"Sign in at {base}/login: staff reach the console, customers their portal. "
        "Admin and legal set up two-factor sign-in (any authenticator app) when they first "
        f"sign in. The public complaint form is {base}/report; the API and its docs are at "
        f"{base}/api/docs (tokens: `abusedesk user token EMAIL`)."
    )


def _safe_url(desk: Desk) -> str:
    return desk.engine.url.render_as_string(hide_password=True)


@app.command()
def run(
    role: Annotated[
        list[str] | None,
        typer.Option(
            "--role",
            help="Run only this role (repeatable): web, intake, worker, traffic. Default: all.",
        ),
    ] = None,
) -> None:
    """Run abusedesk: every role in one process, or the roles named."""
    from abusedesk.runtime import RoleName
    from abusedesk.runtime import run as run_roles

    try:
        roles = [RoleName(r) for r in role] if role else list(RoleName)
    except ValueError:
        fail(f"unknown role in {role}; roles: {', '.join(r.value for r in RoleName)}")
    logging.getLogger().setLevel(logging.INFO)
    with service_errors():
        desk = state.desk(check_schema=False)
        desk.migrate()
    run_roles(desk, roles)


@app.command("sweep")
def sweep_command() -> None:
    """Run the deadline sweeper once: reminders, disconnections, terminations that are due."""
    with service_errors():
        desk = state.desk()
        result = sweep(desk.uow(), desk.policy)
    console.print(f"sweep: {result}")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every migration the database lacks."""
    with service_errors():
        desk = state.desk(check_schema=False)
        desk.migrate()
    console.print(f"[green]database at the latest schema[/] ({_safe_url(desk)})")


@db_app.command("current")
def db_current() -> None:
    """Print the database's schema revision."""
    from abusedesk.store.migrate import current

    console.print(current(state.desk(check_schema=False).engine) or "empty")


# -- cases ----------------------------------------------------------------------------------


def _case_row(case: Case) -> dict[str, Any]:
    return {
        "id": case.id,
        "ticket": case.ticket,
        "account": case.account.reference,
        "server": case.server.hostname if case.server else None,
        "resource": case.resource,
        "category": case.category.value,
        "severity": case.severity.value,
        "state": case.state.value,
        "resolution": case.resolution.value if case.resolution else None,
        "repeat": case.is_repeat,
        "opened_at": case.opened_at.isoformat(),
        "deadline_at": case.deadline_at.isoformat() if case.deadline_at else None,
        "summary": case.summary,
    }


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "—"


@case_app.command("list")
def case_list(
    state_: Annotated[list[CaseState] | None, typer.Option("--state", help="Repeatable.")] = None,
    category: Annotated[Category | None, typer.Option()] = None,
    account: Annotated[str | None, typer.Option(help="Account reference.")] = None,
    limit: Annotated[int, typer.Option()] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """List cases, newest first."""
    with service_errors():
        desk = state.desk()
        account_id = None
        if account:
            from abusedesk.inventory.service import get_account

            account_id = get_account(desk.uow(), state.actor(), account).id
        found = cases.list_cases(
            desk.uow(),
            state.actor(),
            cases.CaseFilter(
                account_id=account_id, states=state_ or (), category=category, limit=limit
            ),
        )
    if as_json:
        for case in found:
            print(json.dumps(_case_row(case)))  # JSON lines, for jq and scripts
        return
    table = Table()
    for column in ("ticket", "account", "server", "category", "severity", "state", "deadline"):
        table.add_column(column)
    for case in found:
        table.add_row(
            case.ticket,
            case.account.reference,
            case.server.hostname if case.server else case.resource,
            case.category.value,
            case.severity.value,
            case.state.value,
            _when(case.deadline_at),
        )
    console.print(table)


def _case_id(ticket: str) -> int:
    text = ticket.upper().removeprefix("AD-")
    if not text.isdigit():
        fail(f"{ticket!r} is not a case number (e.g. 42 or AD-000042)")
    return int(text)


@case_app.command("show")
def case_show(
    ticket: Annotated[str, typer.Argument(help="Case number or ticket tag.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show a case and its timeline."""
    with service_errors():
        actor = state.actor()
        case = cases.get_case(state.desk().uow(), actor, _case_id(ticket))
        timeline = cases.timeline_for(actor, case)
    row = _case_row(case)
    if as_json:
        row["timeline"] = [
            {
                "at": e.at.isoformat(),
                "kind": e.kind.value,
                "actor": e.actor,
                "note": e.note,
                "to": e.to_state.value if e.to_state else None,
            }
            for e in timeline
        ]
        print(json.dumps(row))
        return
    for key, value in row.items():
        console.print(f"[bold]{key:>11}[/] {value if value is not None else '—'}")
    table = Table(title="timeline")
    for column in ("at", "what", "who", "state", "note"):
        table.add_column(column)
    for event in timeline:
        table.add_row(
            _when(event.at),
            event.kind.value,
            event.actor,
            event.to_state.value if event.to_state else "",
            event.note,
        )
    console.print(table)


@case_app.command("open")
def case_open(
    account: Annotated[str, typer.Option(help="Account reference.")],
    category: Annotated[Category, typer.Option()],
    server: Annotated[str | None, typer.Option(help="Server host name.")] = None,
    resource: Annotated[str, typer.Option(help="What was reported: address, URL, domain.")] = "",
    severity: Annotated[Severity | None, typer.Option(help="Default: the category's.")] = None,
    summary: Annotated[str, typer.Option()] = "",
) -> None:
    """Open a case (or attach to the open one for the same account, category and resource)."""
    from abusedesk.inventory.service import get_account, get_server

    with service_errors():
        desk = state.desk()
        actor = state.actor()
        account_id = get_account(desk.uow(), actor, account).id
        server_id = get_server(desk.uow(), actor, server).id if server else None
        opened = cases.open_case(
            desk.uow(),
            actor,
            cases.NewCase(
                account_id,
                category,
                server_id=server_id,
                resource=resource,
                severity=severity,
                summary=summary,
            ),
            desk.policy,
        )
    verb = "opened" if opened.created else "attached to"
    console.print(
        f"{verb} {opened.case.ticket}: {opened.case.state.value}, deadline "
        f"{_when(opened.case.deadline_at)}"
    )


def _move(ticket: str, command: machine.Command) -> None:
    with service_errors():
        desk = state.desk()
        case = cases.transition(desk.uow(), state.actor(), _case_id(ticket), command, desk.policy)
    console.print(
        f"{case.ticket}: {case.state.value}"
        + (f", deadline {_when(case.deadline_at)}" if case.deadline_at else "")
    )


Ticket = Annotated[str, typer.Argument(help="Case number or ticket tag.")]
Reason = Annotated[str, typer.Option("--reason", "-r", help="Why (recorded on the timeline).")]


@case_app.command("ack")
def case_ack(
    ticket: Ticket, plan: Annotated[str, typer.Option(help="How it will be resolved.")]
) -> None:
    """Acknowledge a case with a plan (Step 2)."""
    _move(ticket, machine.Command(Event.ACKNOWLEDGE, plan=plan))


@case_app.command("fix")
def case_fix(ticket: Ticket, note: Annotated[str, typer.Option()] = "") -> None:
    """Report a case fixed; staff then verify or reject."""
    _move(ticket, machine.Command(Event.REPORT_FIX, reason=note))


@case_app.command("verify")
def case_verify(ticket: Ticket) -> None:
    """Verify a reported fix: the case closes as resolved."""
    _move(ticket, machine.Command(Event.VERIFY_FIX))


@case_app.command("reject")
def case_reject(ticket: Ticket, reason: Reason) -> None:
    """Reject a reported fix: the case goes back to acknowledged."""
    _move(ticket, machine.Command(Event.REJECT_FIX, reason=reason))


@case_app.command("contact")
def case_contact(ticket: Ticket, note: Annotated[str, typer.Option()] = "") -> None:
    """Record that the customer made contact (needed before a reconnection)."""
    _move(ticket, machine.Command(Event.CUSTOMER_CONTACT, reason=note))


@case_app.command("continued")
def case_continued(ticket: Ticket, reason: Reason) -> None:
    """The violation goes on: the policy shortens the deadline or disconnects."""
    _move(ticket, machine.Command(Event.CONTINUED_VIOLATION, reason=reason))


@case_app.command("disconnect")
def case_disconnect(ticket: Ticket, reason: Reason) -> None:
    """Disconnect the case's services now (Step 3)."""
    _move(ticket, machine.Command(Event.DISCONNECT, reason=reason))


@case_app.command("reconnect")
def case_reconnect(ticket: Ticket, reason: Reason) -> None:
    """Reconnect after the customer made contact; the case closes as resolved."""
    _move(ticket, machine.Command(Event.RECONNECT, reason=reason))


@case_app.command("terminate")
def case_terminate(ticket: Ticket, reason: Reason) -> None:
    """Terminate the account's services (Step 4)."""
    _move(ticket, machine.Command(Event.TERMINATE, reason=reason))


@case_app.command("close")
def case_close(
    ticket: Ticket, resolution: Annotated[Resolution, typer.Option()], reason: Reason
) -> None:
    """Close a case with a resolution."""
    _move(ticket, machine.Command(Event.CLOSE, reason=reason, resolution=resolution))


@case_app.command("deadline")
def case_deadline(
    ticket: Ticket,
    reason: Reason,
    at: Annotated[str | None, typer.Option(help="New deadline, ISO 8601 (UTC if no zone).")] = None,
    in_: Annotated[str | None, typer.Option("--in", help='From now, e.g. "48h", "3d".')] = None,
) -> None:
    """Move a case's deadline, with a reason."""
    if (at is None) == (in_ is None):
        fail("give exactly one of --at and --in")
    if at is not None:
        try:
            deadline = datetime.fromisoformat(at)
        except ValueError:
            fail(f"{at!r} is not an ISO 8601 time")
        if deadline.tzinfo is None:
            deadline = deadline.replace(tzinfo=UTC)
    else:
        delta = parse_duration(in_ or "")
        if delta is None:
            fail(f"{in_!r} is not a duration like 48h or 3d")
        deadline = state.desk().clock.now() + delta
    _move(ticket, machine.Command(Event.CHANGE_DEADLINE, reason=reason, deadline=deadline))


@case_app.command("reclassify")
def case_reclassify(
    ticket: Ticket,
    category: Annotated[Category, typer.Option()],
    reason: Reason,
    severity: Annotated[Severity | None, typer.Option(help="Default: unchanged.")] = None,
) -> None:
    """Correct a case's category (and severity); the deadline stays."""
    with service_errors():
        case = cases.reclassify(
            state.desk().uow(), state.actor(), _case_id(ticket), category, reason, severity
        )
    console.print(f"{case.ticket}: {case.category.value}, {case.severity.value}")


@case_app.command("note")
def case_note(ticket: Ticket, text: Annotated[str, typer.Argument()]) -> None:
    """Add a note to a case's timeline."""
    with service_errors():
        case = cases.add_note(state.desk().uow(), state.actor(), _case_id(ticket), text)
    console.print(f"{case.ticket}: note added")


# -- inventory ------------------------------------------------------------------------------


@inventory_app.command("import")
def inventory_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV or JSON.")],
    dry_run: Annotated[bool, typer.Option(help="Check everything, change nothing.")] = False,
    update: Annotated[bool, typer.Option(help="Update accounts and servers that exist.")] = False,
    fmt: Annotated[
        str | None, typer.Option("--format", help="csv or json (default: by the file name).")
    ] = None,
) -> None:
    """Import customers, servers, prefixes and domains (all or nothing; see docs/inventory.md)."""
    from abusedesk.inventory.transfer import import_inventory

    with (
        service_errors(),
        Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeRemainingColumn(),
            console=err,
        ) as progress,
    ):
        task = progress.add_task(f"importing {file.name}", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        desk = state.desk()
        result = import_inventory(
            desk.uow(), state.actor(), file, fmt, advance, dry_run, update=update
        )
    console.print(
        ("[yellow]dry run, nothing changed:[/] " if dry_run else "[green]imported:[/] ")
        + str(result)
    )


@inventory_app.command("export")
def inventory_export(
    fmt: Annotated[str, typer.Option("--format", help="json or csv.")] = "json",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Default: stdout.")] = None,
) -> None:
    """Export the inventory in the import format."""
    from abusedesk.inventory.transfer import export_inventory

    with service_errors():
        text = export_inventory(state.desk().uow(), state.actor(), fmt)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
        err.print(f"written to {output}")


@inventory_app.command("locate")
def inventory_locate(
    target: Annotated[str, typer.Argument(help="An address, host name, URL or domain.")],
    at: Annotated[str | None, typer.Option(help="At this time (ISO 8601); default now.")] = None,
) -> None:
    """Who had this address, host, URL or domain (at a time)?"""
    from abusedesk.inventory.locate import locate

    moment = None
    if at:
        try:
            moment = datetime.fromisoformat(at)
        except ValueError:
            fail(f"{at!r} is not an ISO 8601 time")
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    with service_errors():
        desk = state.desk()
        found = locate(desk.uow(), state.actor(), target, moment)
    if found is None:
        fail(f"{target} is not a customer's", code=3)
    console.print(
        f"account [bold]{found.account_reference}[/] ({found.account_name}), server "
        f"[bold]{found.hostname or '—'}[/], via {found.via}"
        + (f" {found.prefix}" if found.prefix else "")
    )


account_app = typer.Typer(help="Customer accounts.", no_args_is_help=True)
server_app = typer.Typer(help="Servers and their IP assignments.", no_args_is_help=True)
domain_app = typer.Typer(help="Customers' domains.", no_args_is_help=True)
inventory_app.add_typer(account_app, name="account")
inventory_app.add_typer(server_app, name="server")
inventory_app.add_typer(domain_app, name="domain")


def _parse_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        fail(f"{text!r} is not an ISO 8601 time")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@account_app.command("list")
def account_list(limit: Annotated[int, typer.Option()] = 100) -> None:
    """List accounts."""
    from abusedesk.inventory.service import list_accounts

    with service_errors():
        found = list_accounts(state.desk().uow(), state.actor(), limit=limit)
    table = Table()
    for column in ("reference", "name", "status", "abuse contact", "AUP"):
        table.add_column(column)
    for account in found:
        abuse = ", ".join(account.contact_emails(ContactKind.ABUSE))
        table.add_row(
            account.reference, account.name, account.status.value, abuse, account.aup_version or "—"
        )
    console.print(table)


@account_app.command("show")
def account_show(reference: Annotated[str, typer.Argument()]) -> None:
    """Show an account: contacts, billing, servers, prefixes, domains."""
    from abusedesk.inventory.service import get_account

    with service_errors():
        account = get_account(state.desk().uow(), state.actor(), reference)
    console.print(f"[bold]{account.reference}[/] {account.name} — {account.status.value}")
    for contact in account.contacts:
        console.print(f"  {contact.kind.value:>9} contact  {contact.email}")
    console.print(
        f"  billing data confirmed {_when(account.billing_confirmed_at)}; AUP "
        f"{account.aup_version or 'not accepted'} ({_when(account.aup_accepted_at)})"
    )
    table = Table(title="servers")
    for column in ("host name", "plan", "kind", "status", "prefixes"):
        table.add_column(column)
    for server in account.servers:
        prefixes = " ".join(a.prefix for a in server.assignments if a.valid_until is None)
        table.add_row(
            server.hostname, server.plan, server.kind.value, server.status.value, prefixes
        )
    console.print(table)
    if account.domains:
        console.print("domains: " + ", ".join(d.name for d in account.domains))


@account_app.command("add")
def account_add(
    reference: Annotated[str, typer.Argument(help="The customer number.")],
    name: Annotated[str, typer.Option()],
    abuse_email: Annotated[list[str] | None, typer.Option(help="Repeatable.")] = None,
    technical_email: Annotated[list[str] | None, typer.Option(help="Repeatable.")] = None,
    billing_email: Annotated[list[str] | None, typer.Option(help="Repeatable.")] = None,
) -> None:
    """Add a customer account with its contacts."""
    from abusedesk.inventory.schemas import AccountIn, ContactIn
    from abusedesk.inventory.service import create_account

    contacts: list[dict[str, Any]] = [
        {"kind": kind, "email": email}
        for kind, emails in (
            (ContactKind.ABUSE, abuse_email),
            (ContactKind.TECHNICAL, technical_email),
            (ContactKind.BILLING, billing_email),
        )
        for email in emails or []
    ]
    with service_errors(), _input_errors():
        data = AccountIn(
            reference=reference, name=name, contacts=[ContactIn(**c) for c in contacts]
        )
        account = create_account(state.desk().uow(), state.actor(), data)
    console.print(f"account {account.reference} added")


@account_app.command("set")
def account_set(
    reference: Annotated[str, typer.Argument()],
    status: Annotated[AccountStatus | None, typer.Option()] = None,
    name: Annotated[str | None, typer.Option()] = None,
    notes: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Change an account's status, name or notes."""
    from abusedesk.inventory.schemas import AccountPatch
    from abusedesk.inventory.service import update_account

    changes: dict[str, Any] = {
        k: v for k, v in {"status": status, "name": name, "notes": notes}.items() if v
    }
    if not changes:
        fail("nothing to change: give --status, --name or --notes")
    with service_errors(), _input_errors():
        account = update_account(
            state.desk().uow(), state.actor(), reference, AccountPatch(**changes)
        )
    console.print(f"account {account.reference}: {account.status.value}")


@server_app.command("list")
def server_list(
    account: Annotated[str | None, typer.Option(help="Account reference.")] = None,
    limit: Annotated[int, typer.Option()] = 100,
) -> None:
    """List servers."""
    from abusedesk.inventory.service import list_servers

    with service_errors():
        found = list_servers(state.desk().uow(), state.actor(), account, limit=limit)
    table = Table()
    for column in ("host name", "account", "plan", "status", "prefixes"):
        table.add_column(column)
    for server in found:
        prefixes = " ".join(a.prefix for a in server.assignments if a.valid_until is None)
        table.add_row(
            server.hostname, server.account.reference, server.plan, server.status.value, prefixes
        )
    console.print(table)


@server_app.command("add")
def server_add(
    hostname: Annotated[str, typer.Argument()],
    account: Annotated[str, typer.Option(help="Account reference.")],
    plan: Annotated[str, typer.Option()],
    kind: Annotated[ServerKind, typer.Option()] = ServerKind.DEDICATED,
    prefix: Annotated[list[str] | None, typer.Option(help="Repeatable.")] = None,
) -> None:
    """Add a server, with its prefixes."""
    from abusedesk.inventory.schemas import ServerIn
    from abusedesk.inventory.service import create_server

    with service_errors(), _input_errors():
        data = ServerIn(
            account_reference=account,
            hostname=hostname,
            plan=plan,
            kind=kind,
            prefixes=prefix or [],
        )
        server = create_server(state.desk().uow(), state.actor(), data)
    console.print(f"server {server.hostname} added")


@server_app.command("set")
def server_set(
    hostname: Annotated[str, typer.Argument()],
    status: Annotated[ServerStatus | None, typer.Option()] = None,
    plan: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Change a server's status or plan."""
    from abusedesk.inventory.schemas import ServerPatch
    from abusedesk.inventory.service import update_server

    changes: dict[str, Any] = {k: v for k, v in {"status": status, "plan": plan}.items() if v}
    if not changes:
        fail("nothing to change: give --status or --plan")
    with service_errors(), _input_errors():
        server = update_server(state.desk().uow(), state.actor(), hostname, ServerPatch(**changes))
    console.print(f"server {server.hostname}: {server.status.value}, {server.plan}")


@server_app.command("assign")
def server_assign(
    hostname: Annotated[str, typer.Argument()],
    prefix: Annotated[str, typer.Argument()],
    since: Annotated[str | None, typer.Option(help="ISO 8601; default now.")] = None,
) -> None:
    """Route a prefix to a server from now (or from --since)."""
    from abusedesk.inventory.schemas import AssignmentIn
    from abusedesk.inventory.service import assign_prefix

    with service_errors(), _input_errors():
        assignment = assign_prefix(
            state.desk().uow(),
            state.actor(),
            hostname,
            AssignmentIn(prefix=prefix, valid_from=_parse_time(since)),
        )
    console.print(f"{assignment.prefix} → {hostname} from {_when(assignment.valid_from)}")


@server_app.command("unassign")
def server_unassign(
    prefix: Annotated[str, typer.Argument()],
    at: Annotated[str | None, typer.Option(help="ISO 8601; default now.")] = None,
) -> None:
    """End a prefix's assignment (the history is kept: reports about the past still find it)."""
    from abusedesk.inventory.service import end_assignment

    with service_errors():
        assignment = end_assignment(state.desk().uow(), state.actor(), prefix, _parse_time(at))
    console.print(f"{assignment.prefix} ended at {_when(assignment.valid_until)}")


@domain_app.command("list")
def domain_list(account: Annotated[str | None, typer.Option()] = None) -> None:
    """List domains."""
    from abusedesk.inventory.service import list_domains

    with service_errors():
        found = list_domains(state.desk().uow(), state.actor(), account, limit=1000)
    table = Table()
    for column in ("domain", "account", "server"):
        table.add_column(column)
    for domain in found:
        table.add_row(
            domain.name, domain.account.reference, domain.server.hostname if domain.server else "—"
        )
    console.print(table)


@domain_app.command("add")
def domain_add(
    name: Annotated[str, typer.Argument()],
    account: Annotated[str, typer.Option()],
    server: Annotated[str | None, typer.Option(help="The server it points at.")] = None,
) -> None:
    """Register a customer's domain."""
    from abusedesk.inventory.schemas import DomainIn
    from abusedesk.inventory.service import create_domain

    with service_errors(), _input_errors():
        domain = create_domain(
            state.desk().uow(),
            state.actor(),
            DomainIn(account_reference=account, name=name, server_hostname=server),
        )
    console.print(f"domain {domain.name} added")


@domain_app.command("remove")
def domain_remove(name: Annotated[str, typer.Argument()]) -> None:
    """Remove a domain."""
    from abusedesk.inventory.service import delete_domain

    with service_errors():
        delete_domain(state.desk().uow(), state.actor(), name)
    console.print(f"domain {name} removed")


@contextmanager
def _input_errors() -> Iterator[None]:
    """pydantic's complaints about an argument, as one line each."""
    from pydantic import ValidationError as InputError

    try:
        yield
    except InputError as exc:
        fail("invalid input", [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()])


enforce_app = typer.Typer(
    help="Enforcement actions: what was cut, what failed.", no_args_is_help=True
)
app.add_typer(enforce_app, name="enforce")


@enforce_app.command("list")
def enforce_list(
    failed: Annotated[bool, typer.Option(help="Only actions that failed.")] = False,
    limit: Annotated[int, typer.Option()] = 50,
) -> None:
    """Recent enforcement actions, newest first."""
    from abusedesk.enforce.service import list_actions

    with service_errors():
        found = list_actions(state.desk().uow(), state.actor(), failed_only=failed, limit=limit)
    table = Table()
    for column in ("id", "case", "server", "kind", "state", "driver", "attempts", "last error"):
        table.add_column(column)
    for row in found:
        table.add_row(
            str(row.id),
            row.ticket,
            row.hostname,
            row.kind.value,
            row.state.value,
            row.driver or "—",
            str(row.attempts),
            row.last_error or "",
        )
    console.print(table)


@enforce_app.command("retry")
def enforce_retry(action_id: Annotated[int, typer.Argument(help="The action's id.")]) -> None:
    """Retry a failed action at the worker's next tick."""
    from abusedesk.enforce.service import retry

    with service_errors():
        retry(state.desk().uow(), state.actor(), action_id)
    console.print(f"action {action_id} will be retried at the worker's next tick")


intake_app = typer.Typer(
    help="Complaints: store and process reports from files, a Maildir or an IMAP mailbox.",
    no_args_is_help=True,
)
app.add_typer(intake_app, name="intake")


@intake_app.command("parse")
def intake_parse(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="A mail or JSON report.")
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the whole result as JSON.")
    ] = False,
) -> None:
    """Parse a report and print what was understood; nothing is stored."""
    from abusedesk.intake.formats import ParseError, detect_and_parse

    try:
        parsed = detect_and_parse(file.read_bytes())
    except ParseError as exc:
        problems = list(getattr(exc, "problems", []))
        fail(f"{file.name}: {exc}", problems if len(problems) > 1 else None)
    if as_json:
        print(json.dumps(parsed.as_json(), indent=2, default=str))
        return
    console.print(
        f"[bold]{parsed.format.value}[/] from {parsed.reporter_name or '—'} "
        f"<{parsed.reporter_email or '—'}>: {len(parsed.findings)} finding(s)"
    )
    for finding in parsed.findings[:50]:
        where = ", ".join([*finding.addresses, *finding.urls, *finding.domains]) or "—"
        when = finding.event_time.isoformat() if finding.event_time else "—"
        category = finding.category.value if finding.category else "—"
        console.print(f"  {category:<20} {when:<26} {where}")


@intake_app.command("add")
def intake_add(
    files: Annotated[
        list[Path], typer.Argument(exists=True, dir_okay=False, help="Mail or JSON reports.")
    ],
) -> None:
    """Store reports from files and process them now: verify, locate, open cases."""
    from abusedesk.intake.choices import ReportSource
    from abusedesk.intake.service import submit

    with service_errors():
        desk = state.desk()
        trusted = frozenset(desk.settings.intake.trusted_reporters)
        for file in files:
            done = submit(
                desk.uow,
                state.actor(),
                file.read_bytes(),
                ReportSource.CLI,
                desk.policy,
                desk.settings.base_url,
                trusted,
            )
            if done.duplicate:
                console.print(f"{file.name}: already received as {done.reference}")
                continue
            status = done.status.value if done.status else "taken by another worker"
            extra = f", missing: {'; '.join(done.missing)}" if done.missing else ""
            console.print(
                f"{file.name}: {done.reference} {status}, {len(done.cases_opened)} "
                f"case(s) opened, {len(done.cases_attached)} attached{extra}"
            )


@intake_app.command("reprocess")
def intake_reprocess(
    report: Annotated[
        int | None, typer.Argument(help="One report's id; default: all unparsed.")
    ] = None,
) -> None:
    """Put reports that could not be parsed through the pipeline again (after a fix)."""
    from abusedesk.intake.service import reprocess

    with service_errors():
        desk = state.desk()
        outcomes = reprocess(
            desk.uow,
            state.actor(),
            desk.policy,
            desk.settings.base_url,
            frozenset(desk.settings.intake.trusted_reporters),
            report,
        )
    if not outcomes:
        console.print("no unparsed report to reprocess")
        return
    console.print(", ".join(f"{n} {status}" for status, n in sorted(outcomes.items())))


@intake_app.command("maildir")
def intake_maildir(
    path: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="A Maildir folder.")],
) -> None:
    """Store every message of a Maildir as a report and move it to its .Processed folder."""
    from abusedesk.intake.maildir import read_maildir

    with (
        service_errors(),
        Progress(
            TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), console=err
        ) as progress,
    ):
        task = progress.add_task(f"reading {path}", total=None)
        result = read_maildir(
            state.desk().uow,
            path,
            lambda done, total: progress.update(task, completed=done, total=total),
        )
    console.print(
        f"{result.stored} stored, {result.duplicates} already known, {result.failed} failed"
    )
    if result.failed:
        raise typer.Exit(1)


@intake_app.command("imap-poll")
def intake_imap_poll(
    once: Annotated[
        bool, typer.Option("--once", help="Poll once and exit (default: poll until stopped).")
    ] = False,
) -> None:
    """Store every message of the configured IMAP folder as a report and move it to the
    processed folder (settings: intake.imap_*). The worker processes what was stored."""
    import time

    from abusedesk.intake.imap import ImapError, poll_once

    with service_errors():
        desk = state.desk()
        settings = desk.settings.intake
        if not settings.imap_host:
            fail("no IMAP server is configured: set intake.imap_host (ABUSEDESK_INTAKE__IMAP_HOST)")
        while True:
            try:
                result = poll_once(desk.uow, settings)
            except ImapError as exc:
                if once:
                    fail(str(exc))
                err.print(f"[red]{exc}[/]; trying again in {settings.imap_interval:.0f} s")
            else:
                console.print(
                    f"{result.stored} stored, {result.duplicates} already known, "
                    f"{result.moved} moved to {settings.imap_processed_folder}, "
                    f"{result.failed} failed, {result.too_large} over the size limit"
                )
                if once:
                    if result.failed:
                        raise typer.Exit(1)
                    return
            time.sleep(settings.imap_interval)


# -- users ----------------------------------------------------------------------------------


@user_app.command("add")
def user_add(
    email: Annotated[str, typer.Argument()],
    role: Annotated[Role, typer.Option()],
    account: Annotated[str | None, typer.Option(help="Account reference (customer users).")] = None,
    account_role: Annotated[AccountRole | None, typer.Option()] = None,
    name: Annotated[str, typer.Option()] = "",
    password: Annotated[
        str | None, typer.Option(help="Default: asked for (or none with --no-password).")
    ] = None,
    no_password: Annotated[bool, typer.Option(help="API-token-only user.")] = False,
) -> None:
    """Add a staff or customer user."""
    if password is None and not no_password:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    with service_errors():
        user = add_user(
            state.desk().uow(),
            state.actor(),
            NewUser(
                email=email,
                role=role,
                password=password,
                name=name,
                account_reference=account,
                account_role=account_role,
            ),
        )
    console.print(f"user {user.email} added ({user.role.value})")


@user_app.command("token")
def user_token(
    email: Annotated[str, typer.Argument()],
    name: Annotated[str, typer.Option(help="What the token is for.")] = "cli",
) -> None:
    """Issue an API token for a user; it is shown once."""
    with service_errors():
        issued = issue_token(state.desk().uow(), state.actor(), email, name)
    console.print(issued.token)


@user_app.command("reset-two-factor")
def user_reset_two_factor(email: Annotated[str, typer.Argument()]) -> None:
    """Switch a user's two-factor sign-in off (a lost phone). Admin and legal users set it up
    again at their next sign-in; the user's open sessions end."""
    with service_errors():
        desk = state.desk()
        user = get_user(desk.uow(), state.actor(), email)
        disable_totp(desk.uow(), state.actor(), user.id)
    console.print(f"two-factor sign-in of {user.email} is off")


@user_app.command("reset-password")
def user_reset_password(email: Annotated[str, typer.Argument()]) -> None:
    """Mail a user a one-time link to choose a new password."""
    with service_errors():
        desk = state.desk()
        user = get_user(desk.uow(), state.actor(), email)
        request_password_reset(desk.uow(), user.email, desk.settings.base_url, desk.settings.auth)
    console.print(f"a link to choose a password is queued for {user.email}")


# -- audit and policy -----------------------------------------------------------------------


@audit_app.command("verify")
def audit_verify() -> None:
    """Check the audit log's hash chain: a changed, missing or cut entry is reported."""
    with service_errors(), state.desk().uow().reading() as uow:
        result = verify_log(uow.session)
    if result.ok:
        console.print(f"[green]audit log intact:[/] {result.entries} entries")
        return
    for problem in result.problems:
        err.print(f"[red]entry {problem.seq}:[/] {problem.reason}")
    raise typer.Exit(2)


@policy_app.command("check")
def policy_check(file: Annotated[Path, typer.Argument(help="An operator's policy TOML.")]) -> None:
    """Check a policy file; print the line and reason of the first mistake."""
    try:
        policy = load_policy(file)
    except PolicyError as exc:
        fail(str(exc))
    console.print(f"[green]{file}: valid[/] (AUP version {policy.aup_version})")


@policy_app.command("show")
def policy_show() -> None:
    """Show the policy in force: each category's severity and deadline."""
    with service_errors():
        policy = state.desk().policy
    table = Table(title=f"policy (AUP {policy.aup_version})")
    for column in ("category", "label", "severity", "deadline", "at once"):
        table.add_column(column)
    for category, rule in policy.categories.items():
        window = policy.window(rule.severity)
        table.add_row(
            category.value,
            rule.label,
            rule.severity.value,
            "notify only" if window is None else str(window),
            "yes" if policy.disconnects_at_once(category, rule.severity) else "",
        )
    console.print(table)
    console.print(
        f"reminders: {', '.join(str(r) for r in policy.reminders)}; termination "
        f"{policy.termination_grace} after disconnection; repeat window "
        f"{policy.repeat.window} → {policy.repeat.action.value}"
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()


# -- traffic and the NOC ------------------------------------------------------------------------

traffic_app = typer.Typer(help="The flow collectors and what they hear.", no_args_is_help=True)
app.add_typer(traffic_app, name="traffic")
noc_app = typer.Typer(help="Attacks on customers, for the NOC.", no_args_is_help=True)
app.add_typer(noc_app, name="noc")


@traffic_app.command("exporters")
def traffic_exporters() -> None:
    """The routers and probes the collectors hear: format, sampling, last seen, counters."""
    from abusedesk.traffic.service import list_exporters

    with service_errors():
        found = list_exporters(state.desk().uow(), state.actor())
    if not found:
        console.print("no exporter heard yet (the `traffic` role writes them every minute)")
        return
    table = Table()
    for column in (
        "exporter",
        "format",
        "domain",
        "sampling",
        "last seen",
        "datagrams",
        "records",
        "errors",
        "gaps",
        "collector",
    ):
        table.add_column(column)
    for e in found:
        table.add_row(
            e.address,
            e.format,
            str(e.domain),
            f"1 in {e.sampling_rate}" if e.sampling_rate else "not said",
            _when(e.last_seen_at),
            f"{e.datagrams:,}",
            f"{e.records:,}",
            f"{e.decode_errors:,}",
            f"{e.sequence_gaps:,}",
            e.collector,
        )
    console.print(table)


@noc_app.command("alerts")
def noc_alerts() -> None:
    """Attacks on customers that are open or in hand, newest first."""
    from abusedesk.noc.service import list_alerts

    with service_errors():
        found = list_alerts(state.desk().uow(), state.actor())
    if not found:
        console.print("no attack on a customer right now")
        return
    table = Table()
    for column in ("id", "what", "subject", "since", "last seen", "times", "state"):
        table.add_column(column)
    for alert in found:
        table.add_row(
            str(alert.id),
            alert.kind.label,
            alert.subject,
            _when(alert.first_seen_at),
            _when(alert.last_seen_at),
            str(alert.times),
            alert.state.value,
        )
    console.print(table)


@noc_app.command("acknowledge")
def noc_acknowledge(alert_id: Annotated[int, typer.Argument(help="The alert's id.")]) -> None:
    """Say that the NOC has an attack in hand."""
    from abusedesk.noc.service import acknowledge

    with service_errors():
        alert = acknowledge(state.desk().uow(), state.actor(), alert_id)
    console.print(f"alert {alert.id} on {alert.subject}: {alert.state.value}")
