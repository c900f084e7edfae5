"""Inventory import and export: the provider's own systems in, the same documents out.

The formats (CSV and JSON) are described, with examples, in docs/inventory.md.

An import is all or nothing. It runs in three steps:

1. read: size, encoding and syntax; a file that fails here is refused at once;
2. check: every record through the API's own schemas, then the file against itself
   (duplicates, overlapping assignments) and against the database, loaded into memory once
   (existing references, host names, prefixes, domains). Every problem is collected;
3. write, only if there was none: a few multi-row statements through the inventory service's
   bulk functions, and one audit entry, in one transaction.

Problems are reported as an `ImportRejected` (a `ValidationError`) whose `problems` name the
CSV line, or the JSON pointer and line, of each.
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import io
import ipaddress
import json
import json.decoder
import json.scanner
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, NamedTuple, TypeVar

import pydantic
import sqlalchemy as sa
import sqlalchemy.exc
from sqlalchemy.orm import Session, selectinload

from abusedesk.accounts.permissions import Actor, Permission
from abusedesk.errors import Conflict, ValidationError
from abusedesk.inventory import service
from abusedesk.inventory.choices import ContactKind
from abusedesk.inventory.models import Account, Contact, Domain, IPAssignment, Server
from abusedesk.inventory.schemas import (
    AccountIn,
    AssignmentIn,
    ContactIn,
    DomainIn,
    ServerIn,
    normalise_hostname,
)
from abusedesk.store.uow import UnitOfWork

__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_CELL",
    "ImportRejected",
    "ImportResult",
    "InventoryFormat",
    "Problem",
    "export_inventory",
    "import_inventory",
]

DEFAULT_MAX_BYTES = 200 * 1024 * 1024
DEFAULT_MAX_CELL = 64 * 1024
JSON_VERSION = 1
# Finding the line of each JSON value needs a slow, pure-Python parse; past this size a rejected
# file's problems name only their JSON pointer.
_JSON_LINES_MAX_CHARS = 32 * 1024 * 1024
_WRITE_CHUNK = 5000
_IN_CHUNK = 500

Progress = Callable[[int, int], None]


class InventoryFormat(StrEnum):
    CSV = "csv"
    JSON = "json"


# The account's columns first; they repeat on each of its rows, or stay blank after the first.
CSV_ACCOUNT_COLUMNS = (
    "account_reference",
    "account_name",
    "account_status",
    "abuse_email",
    "technical_email",
    "billing_email",
)
CSV_SERVER_COLUMNS = ("hostname", "plan", "server_kind", "server_status", "prefixes")
CSV_COLUMNS = (*CSV_ACCOUNT_COLUMNS, *CSV_SERVER_COLUMNS, "domains")
_CONTACT_COLUMNS = {
    ContactKind.ABUSE: "abuse_email",
    ContactKind.TECHNICAL: "technical_email",
    ContactKind.BILLING: "billing_email",
}
# The schema's field names, as the CSV header calls them.
_ACCOUNT_FIELD_COLUMNS = {
    "reference": "account_reference",
    "name": "account_name",
    "status": "account_status",
}
_SERVER_FIELD_COLUMNS = {
    "account_reference": "account_reference",
    "hostname": "hostname",
    "plan": "plan",
    "kind": "server_kind",
    "status": "server_status",
    "prefixes": "prefixes",
}


# -- results and problems -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Where:
    """Where in the file a record or value is: a CSV line and column, or a JSON pointer."""

    line: int | None = None
    pointer: str | None = None
    column: str | None = None

    def at(self, column: str) -> Where:
        return Where(self.line, self.pointer, column)

    def below(self, *path: str | int) -> Where:
        if self.pointer is None:
            return self
        return Where(self.line, self.pointer + "".join(f"/{_escape(p)}" for p in path))

    def __str__(self) -> str:
        parts = []
        if self.line is not None:
            parts.append(f"line {self.line}")
        if self.pointer is not None:
            parts.append(self.pointer or "/")
        if self.column is not None:
            parts.append(self.column)
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class Problem:
    where: Where
    message: str

    def __str__(self) -> str:
        where = str(self.where)
        return f"{where}: {self.message}" if where else self.message


class ImportRejected(ValidationError):
    """The file was refused and nothing was written; `located` has each problem's place."""

    def __init__(self, message: str, located: Sequence[Problem]) -> None:
        super().__init__(message, [str(p) for p in located])
        self.located = list(located)


@dataclass(frozen=True, slots=True)
class ImportResult:
    format: InventoryFormat
    sha256: str
    records: int  # CSV data rows, or JSON accounts + servers + domains
    accounts_added: int
    accounts_updated: int
    servers_added: int
    servers_updated: int
    assignments_added: int
    domains_added: int
    domains_updated: int
    dry_run: bool

    def __str__(self) -> str:
        parts = [
            f"{self.accounts_added} accounts, {self.servers_added} servers, "
            f"{self.assignments_added} prefixes and {self.domains_added} domains added"
        ]
        if self.accounts_updated or self.servers_updated or self.domains_updated:
            parts.append(
                f"{self.accounts_updated} accounts, {self.servers_updated} servers and "
                f"{self.domains_updated} domains updated"
            )
        parts.append(f"from {self.records} records (sha256 {self.sha256[:12]}…)")
        return "; ".join(parts)

    def counts(self) -> dict[str, int]:
        return {
            "records": self.records,
            "accounts_added": self.accounts_added,
            "accounts_updated": self.accounts_updated,
            "servers_added": self.servers_added,
            "servers_updated": self.servers_updated,
            "assignments_added": self.assignments_added,
            "domains_added": self.domains_added,
            "domains_updated": self.domains_updated,
        }


# -- the file, read into records ------------------------------------------------------------


@dataclass(slots=True)
class _Account:
    value: AccountIn
    where: Where
    given: frozenset[str]  # the fields the file states; only these change on update
    contact_kinds: frozenset[ContactKind]  # the kinds of contact the file states
    from_csv: bool = False


class _Slot(NamedTuple):
    """One prefix assignment of a server in the file, plain or with its times."""

    prefix: str
    valid_from: datetime | None
    valid_until: datetime | None
    where: Where


@dataclass(slots=True)
class _Server:
    value: ServerIn
    where: Where
    given: frozenset[str]
    slots: list[_Slot]


@dataclass(slots=True)
class _Domain:
    value: DomainIn
    where: Where
    given: frozenset[str]


@dataclass(slots=True)
class _Document:
    records: int = 0
    accounts: list[_Account] = field(default_factory=list)
    servers: list[_Server] = field(default_factory=list)
    domains: list[_Domain] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    # Everything the file names, valid or not, with the first place it is named at: a server of
    # an account whose own record is wrong is not reported again as having an unknown account,
    # and a duplicate is found even when the first of the two is the wrong one.
    named_accounts: dict[str, Where] = field(default_factory=dict)
    named_servers: dict[str, Where] = field(default_factory=dict)

    def problem(self, where: Where, message: str) -> None:
        self.problems.append(Problem(where, message))


class _Ticker:
    """Calls `progress(done, total)` with rising counts, not more often than the bar can show."""

    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress
        self.total = 0
        self.done = 0
        self._last = -1
        self._step = 1

    def start(self, total: int) -> None:
        self.total = total
        self._step = max(1, total // 500)
        self._report()

    def advance(self, by: int = 1) -> None:
        self.done = min(self.total, self.done + by)
        if self.done - self._last >= self._step or self.done == self.total:
            self._report()

    def to(self, done: int) -> None:
        self.advance(done - self.done)

    def _report(self) -> None:
        if self._progress is not None and self.done != self._last:
            self._progress(self.done, self.total)
            self._last = self.done


def _fatal(where: Where, message: str) -> ImportRejected:
    return ImportRejected(f"the file was refused: {message}", [Problem(where, message)])


def _read_source(
    source: str | os.PathLike[str] | IO[bytes] | IO[str], max_bytes: int
) -> tuple[bytes, str | None]:
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        try:
            size = path.stat().st_size
            if size > max_bytes:
                raise _fatal(
                    Where(), f"{path.name} is {_size(size)}; the limit is {_size(max_bytes)}"
                )
            with path.open("rb") as stream:
                data = stream.read(max_bytes + 1)
        except OSError as exc:
            raise _fatal(Where(), f"cannot read {path}: {exc.strerror or exc}") from exc
        name: str | None = path.name
    else:
        raw = source.read(max_bytes + 1)
        if isinstance(raw, str):
            try:
                data = raw.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise _fatal(Where(), f"the text cannot be stored as UTF-8 ({exc.reason})") from exc
        else:
            data = raw
        stream_name = getattr(source, "name", None)
        name = Path(stream_name).name if isinstance(stream_name, str) else None
    if len(data) > max_bytes:
        raise _fatal(Where(), f"the file is larger than the limit of {_size(max_bytes)}")
    return data, name


def _decode(data: bytes) -> str:
    try:
        # utf-8-sig: spreadsheets often save a byte-order mark, which is not part of the header.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise _fatal(
            Where(line=line),
            f"the file is not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save or export it as UTF-8",
        ) from exc
    nul = text.find("\x00")
    if nul >= 0:
        # PostgreSQL cannot store NUL in text; a NUL usually means a binary or UTF-16 file.
        raise _fatal(
            Where(line=text.count("\n", 0, nul) + 1),
            "the file contains a NUL character (is it UTF-16 or binary?); save it as UTF-8",
        )
    return text


def _detect_format(fmt: InventoryFormat | str | None, name: str | None) -> InventoryFormat:
    if fmt is not None:
        try:
            return InventoryFormat(str(fmt).lower())
        except ValueError:
            raise _fatal(Where(), f"unknown format {fmt!r}: use csv or json") from None
    suffix = Path(name).suffix.lower().lstrip(".") if name else ""
    try:
        return InventoryFormat(suffix)
    except ValueError:
        raise _fatal(
            Where(),
            f"cannot tell the format of {name or 'the input'}: name it .csv or .json, or say which",
        ) from None


def _pydantic_problems(
    doc: _Document, exc: pydantic.ValidationError, place: Callable[[tuple[Any, ...]], Where]
) -> None:
    for error in exc.errors(include_url=False):
        doc.problem(place(tuple(error["loc"])), _message(error))


def _message(error: Any) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "not a known field"
    return str(error["msg"]).removeprefix("Value error, ")


# -- CSV ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _CsvAccount:
    reference: str
    line: int
    cells: dict[str, tuple[str, int]] = field(default_factory=dict)  # column → (value, line)


def _csv_rows(text: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[tuple[int, list[str]]] = []
    header: list[str] | None = None
    header_line = end = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            # The csv module stops at a cell over its own limit (or an unclosed quote that runs to
            # the end of the file): the rest cannot be read.
            raise _fatal(
                Where(line=end + 1),
                f"the CSV cannot be read from here on ({exc}); is a quote left open?",
            ) from exc
        start, end = end + 1, reader.line_num
        if header is None:
            header = [cell.strip().lower() for cell in row]
            header_line = start
            continue
        if any(cell.strip() for cell in row):
            rows.append((start, row))
    if header is None:
        raise _fatal(Where(line=1), "the file is empty; the first line must name the columns")
    known = set(CSV_COLUMNS)
    problems = []
    for name in header:
        if name and name not in known:
            hint = "; is the file comma-separated?" if (";" in name or "\t" in name) else ""
            problems.append(Problem(Where(line=header_line), f"unknown column {name!r}{hint}"))
    for name in sorted({n for n in header if n and header.count(n) > 1}):
        problems.append(Problem(Where(line=header_line), f"column {name!r} appears twice"))
    if "account_reference" not in header:
        problems.append(
            Problem(Where(line=header_line), "the column 'account_reference' is required")
        )
    if problems:
        expected = ", ".join(CSV_COLUMNS)
        raise ImportRejected(
            f"the CSV header is wrong; the columns are: {expected}",
            problems,
        )
    return header, rows


def _read_csv(text: str, doc: _Document, ticker: _Ticker, max_cell: int) -> None:
    header, rows = _csv_rows(text)
    doc.records = len(rows)
    ticker.start(2 * doc.records)
    index = {name: i for i, name in enumerate(header) if name}
    accounts: dict[str, _CsvAccount] = {}
    for line, row in rows:
        ticker.advance()
        where = Where(line=line)
        # Spreadsheets like to end rows with empty cells; only a value past the header is wrong.
        if len(row) > len(header) and any(cell.strip() for cell in row[len(header) :]):
            doc.problem(where, f"{len(row)} cells, but the header names {len(header)} columns")
            continue
        cells = {name: (row[i].strip() if i < len(row) else "") for name, i in index.items()}
        oversize = [name for name, value in cells.items() if len(value) > max_cell]
        for name in oversize:
            doc.problem(where.at(name), f"the cell is longer than {_size(max_cell)}")
        if oversize:
            continue
        reference = cells["account_reference"]
        if not reference:
            doc.problem(where.at("account_reference"), "empty")
            continue
        doc.named_accounts.setdefault(reference, Where(line=line))
        account = accounts.get(reference)
        if account is None:
            account = accounts[reference] = _CsvAccount(reference, line)
        _merge_account_cells(doc, account, cells, line)
        hostname = _csv_server(doc, reference, cells, where)
        for name in cells.get("domains", "").split():
            _csv_domain(doc, reference, name, hostname, where.at("domains"))
    for account in accounts.values():
        _csv_account(doc, account)


def _merge_account_cells(
    doc: _Document, account: _CsvAccount, cells: dict[str, str], line: int
) -> None:
    for column in CSV_ACCOUNT_COLUMNS[1:]:
        value = cells.get(column, "")
        if not value:
            continue
        known = account.cells.get(column)
        if known is None:
            account.cells[column] = (value, line)
        elif _comparable(column, known[0]) != _comparable(column, value):
            doc.problem(
                Where(line=line, column=column),
                f"account {account.reference}: {value!r} differs from {known[0]!r} "
                f"on line {known[1]}",
            )


def _comparable(column: str, value: str) -> str:
    return " ".join(value.split()).lower() if column in _CONTACT_COLUMNS.values() else value


def _csv_account(doc: _Document, account: _CsvAccount) -> None:
    data: dict[str, Any] = {"reference": account.reference}
    lines = {"reference": account.line}
    for field_name, column in _ACCOUNT_FIELD_COLUMNS.items():
        if column in account.cells:
            data[field_name], lines[field_name] = account.cells[column]
    given = set(data)
    contacts: list[dict[str, Any]] = []
    contact_places: list[Where] = []
    kinds = set()
    for kind, column in _CONTACT_COLUMNS.items():
        if column in account.cells:
            value, line = account.cells[column]
            kinds.add(kind)
            for email in value.split():
                contacts.append({"kind": kind, "email": email})
                contact_places.append(Where(line=line, column=column))
    if kinds:
        data["contacts"] = contacts
        given.add("contacts")
    if "name" not in data:
        # An account named by its reference alone is one in the database; whether it is, and so
        # whether a name was needed, is checked against the database later.
        data["name"] = account.reference

    def place(loc: tuple[Any, ...]) -> Where:
        if loc and loc[0] == "contacts" and len(loc) > 1 and isinstance(loc[1], int):
            return contact_places[loc[1]]
        name = loc[0] if loc else "reference"
        return Where(line=lines.get(name, account.line), column=_ACCOUNT_FIELD_COLUMNS.get(name))

    try:
        validated = AccountIn.model_validate(data)
    except pydantic.ValidationError as exc:
        _pydantic_problems(doc, exc, place)
        return
    doc.accounts.append(
        _Account(
            validated, Where(line=account.line), frozenset(given), frozenset(kinds), from_csv=True
        )
    )


def _csv_server(doc: _Document, reference: str, cells: dict[str, str], where: Where) -> str | None:
    """Reads the row's server, if it names one; returns its host name when that is valid."""
    hostname = cells.get("hostname", "")
    if not hostname:
        for column in CSV_SERVER_COLUMNS[1:]:
            if cells.get(column):
                doc.problem(where.at(column), "given without a hostname")
        return None
    data: dict[str, Any] = {"account_reference": reference, "hostname": hostname}
    for field_name, column in _SERVER_FIELD_COLUMNS.items():
        if field_name not in data and cells.get(column):
            data[field_name] = cells[column]
    if "prefixes" in data:
        data["prefixes"] = data["prefixes"].split()
    given = frozenset(data)
    if "plan" not in data:
        data["plan"] = "-"  # needed only by a new server: checked against the database later

    def place(loc: tuple[Any, ...]) -> Where:
        return where.at(_SERVER_FIELD_COLUMNS.get(loc[0], "hostname") if loc else "hostname")

    try:
        value = ServerIn.model_validate(data)
    except pydantic.ValidationError as exc:
        doc.named_servers.setdefault(_hostname_key(hostname), where)
        _pydantic_problems(doc, exc, place)
        return None
    doc.named_servers.setdefault(value.hostname, where)
    prefixes_at = where.at("prefixes")
    slots = [_Slot(prefix, None, None, prefixes_at) for prefix in value.prefixes]
    doc.servers.append(_Server(value, where, given, slots))
    return value.hostname


def _csv_domain(
    doc: _Document, reference: str, name: str, hostname: str | None, where: Where
) -> None:
    try:
        value = DomainIn(account_reference=reference, name=name, server_hostname=hostname)
    except pydantic.ValidationError as exc:
        _pydantic_problems(doc, exc, lambda loc: where)
        return
    # A domain's row says which server it is on: a row without a host name, none.
    doc.domains.append(_Domain(value, where, frozenset({"server_hostname"})))


# -- JSON -----------------------------------------------------------------------------------

_JSON_SECTIONS: dict[str, type[AccountIn | ServerIn | DomainIn]] = {
    "accounts": AccountIn,
    "servers": ServerIn,
    "domains": DomainIn,
}


def _read_json(text: str, doc: _Document, ticker: _Ticker) -> None:
    try:
        top = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fatal(
            Where(line=exc.lineno), f"not valid JSON: {exc.msg} (column {exc.colno})"
        ) from exc
    except RecursionError as exc:
        raise _fatal(Where(), "the JSON is nested too deeply") from exc
    if not isinstance(top, dict):
        raise _fatal(
            Where(pointer=""),
            "the top level must be an object with the lists accounts, servers and domains",
        )
    for key in top:
        if key not in _JSON_SECTIONS and key != "version":
            doc.problem(
                Where(pointer="").below(key),
                "not a known section (accounts, servers, domains, version)",
            )
    if top.get("version", JSON_VERSION) != JSON_VERSION:
        doc.problem(Where(pointer="/version"), f"this abusedesk reads version {JSON_VERSION}")
    sections: dict[str, list[Any]] = {}
    for key in _JSON_SECTIONS:
        items = top.get(key, [])
        if isinstance(items, list):
            sections[key] = items
        else:
            doc.problem(Where(pointer="").below(key), "must be a list")
    doc.records = sum(len(items) for items in sections.values())
    ticker.start(2 * doc.records)
    if "\\u0000" in text:
        _refuse_nul(top, Where(pointer=""), doc)
    for key, items in sections.items():
        model = _JSON_SECTIONS[key]
        for i, raw in enumerate(items):
            ticker.advance()
            where = Where(pointer="").below(key, i)
            try:
                value = model.model_validate(raw)
            except pydantic.ValidationError as exc:
                _note_names(doc, key, raw, where)

                def place(loc: tuple[Any, ...], where: Where = where) -> Where:
                    return where.below(*loc)

                _pydantic_problems(doc, exc, place)
                continue
            given = frozenset(value.model_fields_set)
            if isinstance(value, AccountIn):
                doc.named_accounts.setdefault(value.reference, where)
                kinds = frozenset(ContactKind) if "contacts" in given else frozenset()
                doc.accounts.append(_Account(value, where, given, kinds))
            elif isinstance(value, ServerIn):
                doc.named_servers.setdefault(value.hostname, where)
                slots = [
                    _Slot(prefix, None, None, where.below("prefixes", n))
                    for n, prefix in enumerate(value.prefixes)
                ] + [
                    _Slot(a.prefix, a.valid_from, a.valid_until, where.below("assignments", n))
                    for n, a in enumerate(value.assignments)
                ]
                doc.servers.append(_Server(value, where, given, slots))
            else:
                doc.domains.append(_Domain(value, where, given))


def _note_names(doc: _Document, section: str, raw: Any, where: Where) -> None:
    if not isinstance(raw, dict):
        return
    name = raw.get("reference") if section == "accounts" else raw.get("hostname")
    if isinstance(name, str):
        if section == "accounts":
            doc.named_accounts.setdefault(name.strip(), where)
        elif section == "servers":
            doc.named_servers.setdefault(_hostname_key(name), where)


def _hostname_key(name: str) -> str:
    try:
        return normalise_hostname(name)
    except ValueError:
        return name.strip().lower()


def _refuse_nul(node: Any, where: Where, doc: _Document) -> None:
    # PostgreSQL cannot store NUL in text.
    if isinstance(node, str):
        if "\x00" in node:
            doc.problem(where, "contains a NUL character")
    elif isinstance(node, dict):
        for key, child in node.items():
            _refuse_nul(child, where.below(key), doc)
    elif isinstance(node, list):
        for i, child in enumerate(node):
            _refuse_nul(child, where.below(i), doc)


class _Located:
    """A JSON container and the offset at which each of its values starts."""

    __slots__ = ("children",)

    def __init__(self, children: list[tuple[str, Any, int]]) -> None:
        self.children = children


def _json_lines(text: str) -> dict[str, int]:
    """JSON pointer → the line its value starts on. The standard library's pure-Python scanner,
    with its container parsers wrapped to note where each value starts; slower than json.loads,
    so it runs only to explain a rejected file."""

    def noting(scan_once: Any, starts: list[int]) -> Any:
        def scan(text: str, index: int) -> Any:
            starts.append(index)
            return scan_once(text, index)

        return scan

    def parse_object(
        s_and_end: Any, strict: bool, scan_once: Any, hook: Any, pairs_hook: Any, memo: Any = None
    ) -> Any:
        starts: list[int] = []
        pairs, end = json.decoder.JSONObject(  # type: ignore[attr-defined]
            s_and_end, strict, noting(scan_once, starts), None, list, memo
        )
        return _Located(
            [(key, value, start) for (key, value), start in zip(pairs, starts, strict=True)]
        ), end

    def parse_array(s_and_end: Any, scan_once: Any) -> Any:
        starts: list[int] = []
        values, end = json.decoder.JSONArray(  # type: ignore[attr-defined]
            s_and_end, noting(scan_once, starts)
        )
        return _Located(
            [
                (str(i), value, start)
                for i, (value, start) in enumerate(zip(values, starts, strict=True))
            ]
        ), end

    # The ignores: typeshed leaves out the decoder's undocumented parts this relies on (the
    # container parsers and the pure-Python scanner), which CPython has had since 2.6.
    decoder = json.JSONDecoder()
    decoder.parse_object = parse_object  # type: ignore[attr-defined]
    decoder.parse_array = parse_array  # type: ignore[attr-defined]
    decoder.memo = {}  # type: ignore[attr-defined]
    scan = json.scanner.py_make_scanner(decoder)  # type: ignore[attr-defined]
    begin = len(text) - len(text.lstrip())
    try:
        root, _ = scan(text, begin)
    except (ValueError, StopIteration, RecursionError):
        return {}
    newlines = [m.start() for m in re.finditer("\n", text)]
    lines: dict[str, int] = {}
    stack = [("", root, begin)]
    while stack:
        pointer, node, start = stack.pop()
        lines[pointer] = bisect.bisect_right(newlines, start) + 1
        if isinstance(node, _Located):
            stack.extend(
                (f"{pointer}/{_escape(key)}", child, at) for key, child, at in node.children
            )
    return lines


def _add_json_lines(text: str, problems: list[Problem]) -> list[Problem]:
    if len(text) > _JSON_LINES_MAX_CHARS or not any(p.where.pointer is not None for p in problems):
        return problems
    lines = _json_lines(text)
    located = []
    for problem in problems:
        where = problem.where
        pointer = where.pointer
        # A missing field has no line of its own: the object that lacks it has.
        while pointer is not None and pointer not in lines and pointer:
            pointer = pointer.rsplit("/", 1)[0]
        line = lines.get(pointer) if pointer is not None else None
        located.append(
            Problem(Where(line or where.line, where.pointer, where.column), problem.message)
        )
    return located


def _escape(part: str | int) -> str:
    return str(part).replace("~", "~0").replace("/", "~1")


# -- checks within the file -----------------------------------------------------------------


def _check_file(doc: _Document, now: datetime) -> None:
    doc.accounts = _without_duplicates(
        doc, doc.accounts, "account", lambda a: a.value.reference, doc.named_accounts
    )
    doc.servers = _without_duplicates(
        doc, doc.servers, "server", lambda s: s.value.hostname, doc.named_servers
    )
    doc.domains = _without_duplicates(doc, doc.domains, "domain", lambda d: d.value.name, {})

    holders: dict[str, list[tuple[datetime, datetime | None, str, Where]]] = {}
    for server in doc.servers:
        for assignment in server.slots:
            where = assignment.where
            begin, end = _interval(assignment, now)
            for other_begin, other_end, other_host, other_where in holders.get(
                assignment.prefix, ()
            ):
                if _overlaps(begin, end, other_begin, other_end):
                    if other_host == server.value.hostname:
                        message = f"{assignment.prefix} is listed twice for {other_host}"
                    else:
                        message = (
                            f"{assignment.prefix} is assigned to {other_host} at the same time"
                        )
                    doc.problem(where, f"{message} (at {other_where})")
                    break
            holders.setdefault(assignment.prefix, []).append(
                (begin, end, server.value.hostname, where)
            )


_R = TypeVar("_R", _Account, _Server, _Domain)


def _without_duplicates(
    doc: _Document, records: list[_R], what: str, key: Callable[[_R], str], first: dict[str, Where]
) -> list[_R]:
    kept = []
    for record in records:
        seen = first.setdefault(key(record), record.where)
        if seen != record.where:
            doc.problem(record.where, f"{what} {key(record)} is listed twice (also at {seen})")
        else:
            kept.append(record)
    return kept


def _interval(assignment: _Slot, now: datetime) -> tuple[datetime, datetime | None]:
    return assignment.valid_from or now, assignment.valid_until


def _overlaps(
    a_begin: datetime, a_end: datetime | None, b_begin: datetime, b_end: datetime | None
) -> bool:
    # Half-open intervals: one may end exactly when the next begins.
    return (b_end is None or a_begin < b_end) and (a_end is None or b_begin < a_end)


# -- checks against the database ------------------------------------------------------------


@dataclass(slots=True)
class _StoredServer:
    id: int
    account_id: int
    plan: str
    kind: Any
    status: Any


@dataclass(slots=True)
class _Plan:
    new_accounts: list[AccountIn] = field(default_factory=list)
    account_changes: list[dict[str, Any]] = field(default_factory=list)
    contact_changes: list[tuple[int, frozenset[ContactKind], list[ContactIn]]] = field(
        default_factory=list
    )
    new_servers: list[ServerIn] = field(default_factory=list)
    server_changes: list[dict[str, Any]] = field(default_factory=list)
    new_assignments: list[tuple[str, AssignmentIn]] = field(default_factory=list)
    new_domains: list[DomainIn] = field(default_factory=list)
    domain_changes: list[tuple[int, str | None]] = field(default_factory=list)  # server to move to
    account_ids: dict[str, int] = field(default_factory=dict)  # those stored, by reference
    server_ids: dict[str, int] = field(default_factory=dict)  # those stored, by host name

    def size(self) -> int:
        return (
            len(self.new_accounts)
            + len(self.account_changes)
            + len(self.contact_changes)
            + len(self.new_servers)
            + sum(len(s.prefixes) + len(s.assignments) for s in self.new_servers)
            + len(self.server_changes)
            + len(self.new_assignments)
            + len(self.new_domains)
            + len(self.domain_changes)
        )


def _check_database(session: Session, doc: _Document, update: bool, now: datetime) -> _Plan:
    plan = _Plan()
    account_ids = plan.account_ids
    account_ids.update(
        (ref, id_) for ref, id_ in session.execute(sa.select(Account.reference, Account.id))
    )
    references = {id_: ref for ref, id_ in account_ids.items()}
    servers = {
        row.hostname: _StoredServer(row.id, row.account_id, row.plan, row.kind, row.status)
        for row in session.execute(
            sa.select(
                Server.hostname,
                Server.id,
                Server.account_id,
                Server.plan,
                Server.kind,
                Server.status,
            )
        )
    }
    hostnames = {s.id: h for h, s in servers.items()}
    plan.server_ids.update((h, s.id) for h, s in servers.items())
    held: dict[str, list[tuple[int, datetime, datetime | None]]] = {}
    for prefix, server_id, begin, end in session.execute(
        sa.select(
            IPAssignment.prefix,
            IPAssignment.server_id,
            IPAssignment.valid_from,
            IPAssignment.valid_until,
        )
    ):
        held.setdefault(prefix, []).append((server_id, begin, end))
    domains = {
        row.name: row
        for row in session.execute(
            sa.select(Domain.name, Domain.id, Domain.account_id, Domain.server_id)
        )
    }

    file_accounts = doc.named_accounts
    stored_accounts = (
        _load_accounts(session, [account_ids[r] for r in file_accounts if r in account_ids])
        if update
        else {}
    )
    for account in doc.accounts:
        reference = account.value.reference
        if reference not in account_ids:
            if "name" not in account.given:
                doc.problem(
                    _field(account.where, "account_name"),
                    f"required for the new account {reference}",
                )
            else:
                plan.new_accounts.append(account.value)
        elif account.given - {"reference"}:
            if not update:
                doc.problem(
                    account.where,
                    f"account {reference} exists already (import with update to change it)",
                )
            else:
                _plan_account_update(plan, account, stored_accounts[account_ids[reference]])

    file_servers = {s.value.hostname: s.value for s in doc.servers}
    for server in doc.servers:
        value = server.value
        reference = value.account_reference
        if reference not in file_accounts and reference not in account_ids:
            doc.problem(
                _field(server.where, "account_reference"),
                f"unknown account {reference}: neither in the file nor in the database",
            )
            continue
        stored = servers.get(value.hostname)
        if stored is None:
            if "plan" not in server.given:
                doc.problem(
                    _field(server.where, "plan"), f"required for the new server {value.hostname}"
                )
                continue
            plan.new_servers.append(value)
            for assignment in server.slots:
                _check_held(doc, held, hostnames, assignment, now)
            continue
        if not update:
            doc.problem(
                server.where,
                f"server {value.hostname} exists already (import with update to change it)",
            )
            continue
        if account_ids.get(reference) != stored.account_id:
            doc.problem(
                server.where,
                f"server {value.hostname} belongs to account "
                f"{references[stored.account_id]}, not {reference}",
            )
            continue
        changes: dict[str, Any] = {
            name: getattr(value, name)
            for name in ("plan", "kind", "status")
            if name in server.given and getattr(value, name) != getattr(stored, name)
        }
        if changes:
            plan.server_changes.append({"id": stored.id, **changes})
        for assignment in server.slots:
            if _already_held(held.get(assignment.prefix, ()), stored.id, assignment):
                continue
            if _check_held(doc, held, hostnames, assignment, now):
                plan.new_assignments.append(
                    (
                        value.hostname,
                        AssignmentIn.model_construct(
                            prefix=assignment.prefix,
                            valid_from=assignment.valid_from,
                            valid_until=assignment.valid_until,
                        ),
                    )
                )

    for domain in doc.domains:
        _check_domain(
            doc, plan, domain, update, references, servers, hostnames, file_servers, domains
        )
    return plan


def _field(where: Where, column: str) -> Where:
    return where.below(column) if where.pointer is not None else where.at(column)


def _load_accounts(session: Session, ids: list[int]) -> dict[int, Account]:
    loaded: dict[int, Account] = {}
    for start in range(0, len(ids), _IN_CHUNK):
        chunk = ids[start : start + _IN_CHUNK]
        for account in session.scalars(
            sa.select(Account).where(Account.id.in_(chunk)).options(selectinload(Account.contacts))
        ):
            loaded[account.id] = account
    return loaded


def _plan_account_update(plan: _Plan, account: _Account, stored: Account) -> None:
    value = account.value
    changes = {
        name: getattr(value, name)
        for name in account.given - {"reference", "contacts"}
        if getattr(value, name) != getattr(stored, name)
    }
    if changes:
        plan.account_changes.append({"id": stored.id, **changes})
    if not account.contact_kinds:
        return
    kinds = account.contact_kinds
    old = [c for c in stored.contacts if c.kind in kinds]
    new = list(value.contacts)
    if account.from_csv:
        # The CSV carries addresses only: a contact still listed keeps its stored name and phone.
        known = {(c.kind, c.email): c for c in old}
        new = [
            ContactIn(
                kind=c.kind,
                email=c.email,
                name=known[c.kind, c.email].name,
                phone=known[c.kind, c.email].phone,
            )
            if (c.kind, c.email) in known
            else c
            for c in new
        ]

    def key(contacts: Sequence[Contact | ContactIn]) -> list[tuple[str, str, str, str]]:
        return sorted((c.kind.value, c.email, c.name, c.phone) for c in contacts)

    if key(old) != key(new):
        plan.contact_changes.append((stored.id, kinds, new))


def _already_held(
    stored: Sequence[tuple[int, datetime, datetime | None]],
    server_id: int,
    assignment: _Slot,
) -> bool:
    """Whether the server holds this assignment already, as a re-import finds it."""
    for holder, begin, end in stored:
        if holder != server_id:
            continue
        if assignment.valid_from is None and end is None and assignment.valid_until is None:
            return True  # a plain prefix: the server has it now, whenever that began
        if (begin, end) == (assignment.valid_from, assignment.valid_until):
            return True
    return False


def _check_held(
    doc: _Document,
    held: dict[str, list[tuple[int, datetime, datetime | None]]],
    hostnames: dict[int, str],
    assignment: _Slot,
    now: datetime,
) -> bool:
    begin, end = _interval(assignment, now)
    for holder, other_begin, other_end in held.get(assignment.prefix, ()):
        if _overlaps(begin, end, other_begin, other_end):
            since = _iso(other_begin)
            doc.problem(
                assignment.where,
                f"{assignment.prefix} is assigned to {hostnames[holder]} already "
                f"(since {since}): end that assignment first",
            )
            return False
    return True


def _check_domain(
    doc: _Document,
    plan: _Plan,
    domain: _Domain,
    update: bool,
    references: dict[int, str],
    servers: dict[str, _StoredServer],
    hostnames: dict[int, str],
    file_servers: dict[str, ServerIn],
    stored_domains: dict[str, Any],
) -> None:
    value = domain.value
    reference = value.account_reference
    hostname = value.server_hostname
    if reference not in doc.named_accounts and reference not in plan.account_ids:
        doc.problem(
            _field(domain.where, "account_reference"),
            f"unknown account {reference}: neither in the file nor in the database",
        )
        return
    if hostname is not None:
        # The database first: an import never moves a server to another account.
        if hostname in servers:
            owner: str | None = references[servers[hostname].account_id]
        elif hostname in file_servers:
            owner = file_servers[hostname].account_reference
        elif hostname in doc.named_servers:
            owner = None  # its own record has a problem, reported already
        else:
            doc.problem(
                _field(domain.where, "server_hostname"),
                f"unknown server {hostname}: neither in the file nor in the database",
            )
            return
        if owner is not None and owner != reference:
            doc.problem(
                _field(domain.where, "server_hostname"),
                f"server {hostname} belongs to account {owner}, not {reference}",
            )
            return
    stored = stored_domains.get(value.name)
    if stored is None:
        plan.new_domains.append(value)
    elif not update:
        doc.problem(
            domain.where, f"domain {value.name} exists already (import with update to change it)"
        )
    elif stored.account_id != plan.account_ids.get(reference):
        doc.problem(
            domain.where,
            f"domain {value.name} belongs to account {references[stored.account_id]}, "
            f"not {reference}",
        )
    elif "server_hostname" in domain.given:
        current = hostnames.get(stored.server_id) if stored.server_id is not None else None
        if hostname != current:
            plan.domain_changes.append((stored.id, hostname))


# -- import ---------------------------------------------------------------------------------


def import_inventory(
    uow: UnitOfWork,
    actor: Actor,
    source: str | os.PathLike[str] | IO[bytes] | IO[str],
    fmt: InventoryFormat | str | None = None,
    progress: Progress | None = None,
    dry_run: bool = False,
    *,
    update: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_cell: int = DEFAULT_MAX_CELL,
) -> ImportResult:
    """Load accounts, servers, prefix assignments and domains from a CSV or JSON file (a path or
    an open file), all or nothing.

    Without `update`, an account, server or domain that exists already is a problem; with it,
    the fields the file states are updated and new prefixes and domains added. Nothing is ever
    deleted or ended. `fmt` defaults to the file name's suffix. `progress(done, total)` is called
    with rising counts: the first half while records are checked, the second while written.
    `dry_run` checks everything and writes nothing. Raises `ImportRejected` listing every problem.
    """
    actor.require(Permission.INVENTORY_EDIT)
    data, name = _read_source(source, max_bytes)
    sha256 = hashlib.sha256(data).hexdigest()
    form = _detect_format(fmt, name)
    text = _decode(data)
    del data  # up to max_bytes, and only the text is needed from here on
    ticker = _Ticker(progress)
    doc = _Document()
    if form is InventoryFormat.CSV:
        _read_csv(text, doc, ticker, max_cell)
    else:
        _read_json(text, doc, ticker)
    with uow:
        now = uow.clock.now()
        _check_file(doc, now)
        session = uow.session
        if not dry_run and session.get_bind().dialect.name == "postgresql":
            # Prefixes have no unique constraint to stop a concurrent assignment slipping in
            # between this check and the commit; readers are not blocked.
            session.execute(sa.text("LOCK TABLE ip_assignments IN SHARE ROW EXCLUSIVE MODE"))
        plan = _check_database(session, doc, update, now)
        if doc.problems:
            problems = doc.problems
            if form is InventoryFormat.JSON:
                problems = _add_json_lines(text, problems)
            problems.sort(key=lambda p: p.where.line if p.where.line is not None else 1 << 62)
            count = len(problems)
            raise ImportRejected(
                f"{name or 'the file'}: {count} problem{'s' if count != 1 else ''}; "
                "nothing was imported",
                problems,
            )
        result = ImportResult(
            format=form,
            sha256=sha256,
            records=doc.records,
            accounts_added=len(plan.new_accounts),
            accounts_updated=len(
                {c["id"] for c in plan.account_changes} | {c[0] for c in plan.contact_changes}
            ),
            servers_added=len(plan.new_servers),
            servers_updated=len(plan.server_changes),
            assignments_added=sum(len(s.prefixes) + len(s.assignments) for s in plan.new_servers)
            + len(plan.new_assignments),
            domains_added=len(plan.new_domains),
            domains_updated=len(plan.domain_changes),
            dry_run=dry_run,
        )
        if dry_run:
            ticker.to(ticker.total)
            return result
        try:
            _write(session, plan, now, ticker, doc.records)
        except sqlalchemy.exc.IntegrityError as exc:
            raise Conflict(
                "the inventory changed while the file was being imported; nothing was imported: "
                "run the import again"
            ) from exc
        uow.audit(
            actor.label,
            "inventory.import",
            "inventory",
            sha256,
            {
                "file": name,
                "format": form.value,
                "sha256": sha256,
                "update": update,
                **result.counts(),
            },
        )
        uow.commit()
    ticker.to(ticker.total)
    return result


def _chunks(items: Sequence[Any], size: int = _WRITE_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _write(session: Session, plan: _Plan, now: datetime, ticker: _Ticker, records: int) -> None:
    total = max(1, plan.size())
    written = 0

    def wrote(count: int) -> None:
        nonlocal written
        written += count
        ticker.to(records + records * written // total)

    account_ids = dict(plan.account_ids)
    for chunk in _chunks(plan.new_accounts):
        account_ids.update(service.bulk_add_accounts(session, chunk, now))
        wrote(len(chunk))
    for chunk in _chunks(plan.account_changes):
        service.bulk_update(session, Account, chunk)
        wrote(len(chunk))
    for account_id, kinds, contacts in plan.contact_changes:
        service.bulk_replace_contacts(session, account_id, kinds, contacts)
        wrote(1)
    server_ids = dict(plan.server_ids)
    for chunk in _chunks(plan.new_servers):
        server_ids.update(service.bulk_add_servers(session, chunk, account_ids, now))
        wrote(len(chunk) + sum(len(s.prefixes) + len(s.assignments) for s in chunk))
    for chunk in _chunks(plan.server_changes):
        service.bulk_update(session, Server, chunk)
        wrote(len(chunk))
    for chunk in _chunks(plan.new_assignments):
        service.bulk_add_assignments(session, [(server_ids[h], a) for h, a in chunk], now)
        wrote(len(chunk))
    for chunk in _chunks(plan.new_domains):
        service.bulk_add_domains(session, chunk, account_ids, server_ids, now)
        wrote(len(chunk))
    changes = [
        {"id": domain_id, "server_id": server_ids[hostname] if hostname else None}
        for domain_id, hostname in plan.domain_changes
    ]
    for chunk in _chunks(changes):
        service.bulk_update(session, Domain, chunk)
        wrote(len(chunk))


def _size(count: int) -> str:
    if count >= 1024 * 1024:
        return f"{count / (1024 * 1024):.0f} MiB"
    if count >= 1024:
        return f"{count / 1024:.0f} KiB"
    return f"{count} bytes"


# -- export ---------------------------------------------------------------------------------


def export_inventory(uow: UnitOfWork, actor: Actor, fmt: InventoryFormat | str) -> str:
    """The whole inventory as a document `import_inventory` reads back. JSON carries everything
    (contacts' names and phones, billing data, assignment history); CSV carries what a CMDB
    usually has: the contacts' addresses and the current prefixes. Output is sorted, so that
    exporting the same inventory twice gives the same text.

    The export holds every customer's contact data, so it is audited."""
    actor.require(Permission.INVENTORY_VIEW)
    form = _detect_format(fmt, None)
    with uow:
        inventory = _load_inventory(uow.session)
        text = _to_json(inventory) if form is InventoryFormat.JSON else _to_csv(inventory)
        sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
        uow.audit(
            actor.label,
            "inventory.export",
            "inventory",
            sha256,
            {
                "format": form.value,
                "sha256": sha256,
                "accounts": len(inventory.accounts),
                "servers": len(inventory.servers),
                "domains": len(inventory.domains),
            },
        )
        uow.commit()
    return text


@dataclass(slots=True)
class _Inventory:
    accounts: list[Account]
    contacts: dict[int, list[Contact]]
    servers: list[Any]  # rows: id, hostname, plan, kind, status, account_id
    assignments: dict[int, list[Any]]  # server id → rows: prefix, valid_from, valid_until
    domains: list[Any]  # rows: name, account_id, server_id


def _load_inventory(session: Session) -> _Inventory:
    # A handful of flat queries, sorted here rather than by the database, so that SQLite and
    # PostgreSQL (whose collation may differ) export the same text.
    accounts = sorted(session.scalars(sa.select(Account)), key=lambda a: a.reference)
    contacts: dict[int, list[Contact]] = {}
    for contact in session.scalars(sa.select(Contact).order_by(Contact.id)):
        contacts.setdefault(contact.account_id, []).append(contact)
    servers = sorted(
        session.execute(
            sa.select(
                Server.id,
                Server.hostname,
                Server.plan,
                Server.kind,
                Server.status,
                Server.account_id,
            )
        ),
        key=lambda s: s.hostname,
    )
    assignments: dict[int, list[Any]] = {}
    for row in sorted(
        session.execute(
            sa.select(
                IPAssignment.server_id,
                IPAssignment.prefix,
                IPAssignment.valid_from,
                IPAssignment.valid_until,
            )
        ),
        key=lambda a: (_prefix_key(a.prefix), a.valid_from),
    ):
        assignments.setdefault(row.server_id, []).append(row)
    domains = sorted(
        session.execute(sa.select(Domain.name, Domain.account_id, Domain.server_id)),
        key=lambda d: d.name,
    )
    return _Inventory(accounts, contacts, servers, assignments, domains)


def _prefix_key(prefix: str) -> tuple[int, bytes, int]:
    network = ipaddress.ip_network(prefix)
    return network.version, network.network_address.packed, network.prefixlen


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _to_json(inventory: _Inventory) -> str:
    references = {a.id: a.reference for a in inventory.accounts}
    hostnames = {s.id: s.hostname for s in inventory.servers}
    document = {
        "version": JSON_VERSION,
        "accounts": [
            {
                "reference": a.reference,
                "name": a.name,
                "status": a.status.value,
                "contacts": [
                    {"kind": c.kind.value, "email": c.email, "name": c.name, "phone": c.phone}
                    for c in inventory.contacts.get(a.id, [])
                ],
                "billing_name": a.billing_name,
                "billing_address": a.billing_address,
                "billing_email": a.billing_email,
                "billing_confirmed_at": _iso(a.billing_confirmed_at),
                "aup_version": a.aup_version,
                "aup_accepted_at": _iso(a.aup_accepted_at),
                "language": a.language,
                "notes": a.notes,
            }
            for a in inventory.accounts
        ],
        "servers": [
            {
                "account_reference": references[s.account_id],
                "hostname": s.hostname,
                "plan": s.plan,
                "kind": s.kind.value,
                "status": s.status.value,
                "assignments": [
                    {
                        "prefix": a.prefix,
                        "valid_from": _iso(a.valid_from),
                        "valid_until": _iso(a.valid_until),
                    }
                    for a in inventory.assignments.get(s.id, [])
                ],
            }
            for s in inventory.servers
        ],
        "domains": [
            {
                "account_reference": references[d.account_id],
                "name": d.name,
                "server_hostname": hostnames[d.server_id] if d.server_id is not None else None,
            }
            for d in inventory.domains
        ],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _to_csv(inventory: _Inventory) -> str:
    servers: dict[int, list[Any]] = {}
    for server in inventory.servers:
        servers.setdefault(server.account_id, []).append(server)
    domains_of_server: dict[int, list[str]] = {}
    domains_of_account: dict[int, list[str]] = {}
    for domain in inventory.domains:
        if domain.server_id is None:
            domains_of_account.setdefault(domain.account_id, []).append(domain.name)
        else:
            domains_of_server.setdefault(domain.server_id, []).append(domain.name)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for account in inventory.accounts:
        contacts = inventory.contacts.get(account.id, [])
        emails = [
            " ".join(c.email for c in contacts if c.kind is kind) for kind in _CONTACT_COLUMNS
        ]
        head = [account.reference, account.name, account.status.value, *emails]
        own = servers.get(account.id, [])
        if not own or account.id in domains_of_account:
            writer.writerow(
                [*head, "", "", "", "", "", " ".join(domains_of_account.get(account.id, []))]
            )
        for server in own:
            prefixes = [
                a.prefix for a in inventory.assignments.get(server.id, []) if a.valid_until is None
            ]
            writer.writerow(
                [
                    *head,
                    server.hostname,
                    server.plan,
                    server.kind.value,
                    server.status.value,
                    " ".join(prefixes),
                    " ".join(domains_of_server.get(server.id, [])),
                ]
            )
    return out.getvalue()
