"""Shadowserver reports: a CSV per report type, attached plain or zipped, one finding per row.

The report type is in the attachment's own file name, ``<date>-<type>-<anything>.csv[.zip]``
(``2015-01-01-scan_ntp-sample-asn.csv.zip``, ``2023-05-02-event4_sinkhole-region-asn.csv``), or
failing that in the subject (``Shadowserver scan_ntp Report``). Shadowserver renamed many reports
in 2022-23 and both names still arrive: ``canonical_report`` maps old names, IPv6 variants and
known misspellings to one current name (``botnet_drone`` is ``event4_sinkhole``), and
``category_of`` gives the AUP category of that name.

Archives are read entry by entry, a chunk at a time, so every limit holds while reading,
whatever the archive claims about itself: the number of entries, the uncompressed bytes read in
total, the ratio of uncompressed to compressed bytes per entry (past the first MiB), the number
of rows and the size of one cell. Each is a ``LimitExceeded`` naming the limit.

A CSV file is read by columns (``_columns``: Arrow's reader, conversions per column or per
distinct value, cells kept in the table) when that reader reads it exactly as the csv module
would; any other file (not UTF-8, ragged rows, a row past a block) row by row with the csv
module, as before. Both give the same rows, values and errors: the tests compare them.
"""

from __future__ import annotations

import csv
import email.message
import io
import itertools
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

import numpy as np
import pyarrow as pa

from abusedesk.intake.formats import _columns, _mail
from abusedesk.intake.formats._columns import ColumnarRows
from abusedesk.intake.formats._extract import canonical_ip, is_hostname, refang
from abusedesk.intake.formats.base import (
    FeedFile,
    FeedRows,
    LimitExceeded,
    Limits,
    MalformedReport,
    NotThisFormat,
    ParsedReport,
    ReportFormat,
)
from abusedesk.policy.choices import Category

# Old (or variant) report name -> the name Shadowserver uses now.
ALIASES: dict[str, str] = {
    "botnet_drone": "event4_sinkhole",
    "botnet_drone_hadoop": "event4_sinkhole",
    "sinkhole_http_drone": "event4_sinkhole_http",
    "microsoft_sinkhole": "event4_sinkhole_http",
    "sinkhole_dns": "event4_sinkhole_dns",
    "drone_brute_force": "event4_honeypot_brute_force",
    "brute_force_attack_report": "event4_honeypot_brute_force",
    "hp_http_scan": "event4_honeypot_http_scan",
    "honeypot_http_scan": "event4_honeypot_http_scan",
    "hp_ics_scan": "event4_honeypot_ics_scan",
    "darknet": "event4_honeypot_darknet",
    "honeypot_darknet": "event4_honeypot_darknet",
    "ddos_amplification": "event4_honeypot_ddos_amp",
    "honeypot_amplification_ddos": "event4_honeypot_ddos_amp",
    "caida_ip_spoofer": "event4_ip_spoofer",
    "dns_openresolver": "scan_dns",
    "cisco_smart_install": "scan_cisco_smart_install",
    "scan_net_pmp": "scan_nat_pmp",  # a misspelling that was sent for a while
    "wiki_file": "scan_memcached",  # sent by mistake for the memcached report in 2015
    "ssl_scan": "scan_ssl_poodle",
    "scan_ssl": "scan_ssl_poodle",
    "blacklist": "blocklist",
}

# Current report name -> AUP category, for names the prefix rules below do not settle.
CATEGORY_BY_REPORT: dict[str, Category | None] = {
    "event4_sinkhole": Category.MALWARE,  # an infected host talking to a sinkholed C&C
    "event4_sinkhole_http": Category.MALWARE,
    "event4_sinkhole_http_referer": None,  # sites linking to sinkholed domains: informational
    "event4_sinkhole_dns": Category.MALWARE,
    "event4_honeypot_brute_force": Category.NETWORK_ABUSE,
    "event4_honeypot_http_scan": Category.NETWORK_ABUSE,
    "event4_honeypot_ics_scan": Category.NETWORK_ABUSE,
    "event4_honeypot_darknet": Category.NETWORK_ABUSE,
    "event4_honeypot_ddos_amp": None,  # lists the victims of amplification attacks
    "event4_ip_spoofer": Category.NETWORK_ABUSE,
    "blocklist": Category.NETWORK_ABUSE,
    "compromised_website": Category.VULNERABLE_SERVICE,
    "spam_url": Category.SPAM,  # web sites advertised in spam
    "phish_url": Category.PHISHING,
    "device_id": None,
}

# Reports whose url/host columns name the reported resource itself. Elsewhere they describe the
# other end (the sinkhole a bot called, the request line it sent) and are only kept as evidence.
URL_REPORTS = frozenset({"compromised_website", "spam_url", "phish_url"})

_ATTACHMENT = re.compile(r"^(\d{4}-\d{2}-\d{2})-([A-Za-z0-9_]+)(?:-[^/\\]*)?\.csv(\.zip)?$", re.I)
_SUBJECT = re.compile(r"shadowserver\s+([a-z0-9_]+)", re.I)
_ADDRESS_COLUMNS = ("ip", "src_ip", "source_ip")
_PORT_COLUMNS = ("port", "src_port", "source_port")
_TIME_COLUMNS = ("timestamp", "time", "first_seen")
_LABEL_COLUMNS = ("tag", "infection", "type", "device_type")
_CHUNK = 1024 * 1024
# A batch's address column, and its time column, read by one regular expression each: canonical
# dotted quads (what canonical_ip returns as they are; other addresses go through it), and UTC
# times to the second as Shadowserver writes them ("2026-06-01 10:00:00", which
# datetime.fromisoformat reads; a batch with any other time goes through _mail.parse_datetime).
_QUAD = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}"
# Per line of a batch's address column: the address when it is a canonical dotted quad, else "".
_QUAD_LINES = re.compile(rf"^(?:({_QUAD})|.*)$", re.MULTILINE)
_SECOND = r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d"
_SECONDS = re.compile(rf"(?:{_SECOND}\n)*{_SECOND}")
_UTC = "+00:00"


def canonical_report(name: str) -> str:
    """The current name of a report: IPv6 variants as IPv4's, old names as new ones."""
    report = name.strip().lower()
    for old, new in (("scan6_", "scan_"), ("event6_", "event4_"), ("sinkhole6_", "sinkhole_")):
        if report.startswith(old):
            report = new + report[len(old) :]
    return ALIASES.get(report, report)


def category_of(report: str) -> Category | None:
    """The AUP category of a (canonical) report name.

    ``scan_*`` reports list services Shadowserver found open or vulnerable on the address:
    the customer's to secure (R9), so ``vulnerable_service``. Honeypot, darknet and brute-force
    events are the address attacking others: ``network_abuse``. Sinkhole events are infected
    hosts: ``malware``. Population and other informational reports have no category.
    """
    if report in CATEGORY_BY_REPORT:
        return CATEGORY_BY_REPORT[report]
    if report.startswith("scan_"):
        return Category.VULNERABLE_SERVICE
    if report.startswith("event4_sinkhole"):
        return Category.MALWARE
    if report.startswith("event4_honeypot") or report.startswith("event4_scan"):
        return Category.NETWORK_ABUSE
    return None


def recognise(message: email.message.EmailMessage | None, raw: bytes) -> bool:
    if message is None:
        return False
    try:
        attachments = _attachments(message, Limits())
    except Exception:
        return False
    if not attachments:
        return False
    sender = _mail.address(message, "From")[1].lower()
    subject = _mail.header(message, "Subject").lower()
    if sender.endswith("shadowserver.org") or "shadowserver" in subject:
        return True
    # Forwarded without the sender: trust a report name we know.
    return any(
        canonical_report(m.group(2)) in CATEGORY_BY_REPORT
        or canonical_report(m.group(2)).startswith(("scan_", "event4_"))
        for _, m in attachments
    )


def parse(message: email.message.EmailMessage | None, raw: bytes, limits: Limits) -> ParsedReport:
    if message is None:
        raise NotThisFormat("a Shadowserver report arrives as a MIME message")
    attachments = _attachments(message, limits)
    if not attachments:
        raise NotThisFormat("no Shadowserver CSV attachment")
    subject = _mail.header(message, "Subject")
    findings = ColumnarRows()
    files: list[dict[str, Any]] = []
    for part, match in attachments:
        name = _mail.filename(part)
        report = match.group(2).lower()
        data = _mail.part_bytes(part)
        if not data:
            raise MalformedReport(f"the attachment {name} is empty or cannot be decoded")
        if match.group(3):
            for member, content in _zip_csv_entries(data, name, limits):
                member_match = _ATTACHMENT.match(member.rsplit("/", 1)[-1])
                member_report = member_match.group(2).lower() if member_match else report
                rows, skipped = _read_file(content, member, member_report, limits, findings)
                files.append(
                    {"file": member, "report": member_report, "rows": rows, "skipped": skipped}
                )
        else:
            rows, skipped = _read_file(data, name, report, limits, findings)
            files.append({"file": name, "report": report, "rows": rows, "skipped": skipped})
    if not files:
        raise MalformedReport("the Shadowserver archive holds no CSV file")
    first = attachments[0][1]
    reports = sorted({canonical_report(f["report"]) for f in files})
    name, addr = _mail.address(message, "From")
    return ParsedReport(
        format=ReportFormat.SHADOWSERVER,
        reporter_name=name,
        reporter_email=addr,
        subject=subject,
        message_id=_mail.message_id(message),
        received_time=_mail.parse_datetime(_mail.header(message, "Date")),
        findings=findings,
        fields={
            "report_type": first.group(2).lower(),
            "report_types": reports,
            "report_date": first.group(1),
            "files": files,
            "rows": len(findings),
        },
    )


def _attachments(
    message: email.message.Message, limits: Limits
) -> list[tuple[email.message.Message, re.Match[str]]]:
    found: list[tuple[email.message.Message, re.Match[str]]] = []
    subject_match = _SUBJECT.search(_mail.header(message, "Subject"))
    for item in _mail.walk(message, limits):
        part = item.part
        if part.is_multipart() or item.in_attached_message:
            continue
        name = _mail.filename(part)
        match = _ATTACHMENT.match(name)
        if match is None and subject_match and name.lower().endswith((".csv", ".csv.zip")):
            # A CSV whose name lacks the type: take the type from the subject.
            zipped = ".zip" if name.lower().endswith(".zip") else ""
            match = _ATTACHMENT.match(f"0000-00-00-{subject_match.group(1)}.csv{zipped}")
        if match is not None:
            found.append((part, match))
    return found


class _Counted:
    """A zip entry's bytes, with the archive limits enforced on the bytes actually produced."""

    def __init__(
        self,
        inner: IO[bytes],
        name: str,
        compressed: int,
        limits: Limits,
        budget: list[int],
    ) -> None:
        self.inner = inner
        self.name = name
        self.compressed = max(compressed, 1)
        self.limits = limits
        self.budget = budget  # [bytes read so far from the whole archive]
        self.produced = 0

    def chunks(self) -> Iterator[bytes]:
        """The entry a chunk at a time, each counted before the next is read."""
        while chunk := self._read():
            yield chunk

    def _read(self) -> bytes:
        try:
            chunk = self.inner.read(_CHUNK)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
            raise MalformedReport(f"{self.name}: the archive is damaged: {exc}") from exc
        size = len(chunk)
        self.produced += size
        self.budget[0] += size
        if self.budget[0] > self.limits.max_zip_bytes:
            raise LimitExceeded(
                f"the archive unpacks to more than {self.limits.max_zip_bytes} bytes"
            )
        if self.produced > _CHUNK and self.produced > self.limits.max_zip_ratio * self.compressed:
            raise LimitExceeded(
                f"{self.name}: compression ratio above {self.limits.max_zip_ratio}:1 (a zip bomb?)"
            )
        return chunk


def _zip_csv_entries(data: bytes, name: str, limits: Limits) -> Iterator[tuple[str, bytes]]:
    """Each CSV entry's name and bytes, read through the archive limits."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        entries = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise MalformedReport(f"{name} is not a readable zip archive: {exc}") from exc
    if len(entries) > limits.max_zip_entries:
        raise LimitExceeded(
            f"{name} lists {len(entries)} entries; at most {limits.max_zip_entries} are read"
        )
    budget = [0]
    for entry in entries:
        if entry.is_dir() or not entry.filename.lower().endswith(".csv"):
            continue
        if entry.file_size > limits.max_zip_bytes:
            raise LimitExceeded(
                f"{entry.filename} claims {entry.file_size} bytes; "
                f"at most {limits.max_zip_bytes} are read"
            )
        try:
            inner = archive.open(entry)
        except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError, ValueError) as exc:
            # RuntimeError: encrypted; NotImplementedError: a compression method we lack.
            raise MalformedReport(f"{entry.filename} cannot be opened: {exc}") from exc
        counted = _Counted(inner, entry.filename, entry.compress_size, limits, budget)
        # Whole: the column reader takes a buffer, and the csv module may have to read it again
        # (max_zip_bytes bounds it; the rows it holds took more room as Python objects).
        content = b"".join(counted.chunks())
        yield entry.filename, content


def _read_file(
    data: bytes, name: str, report: str, limits: Limits, findings: ColumnarRows
) -> tuple[int, int]:
    """Adds the rows of one CSV file to ``findings``; returns how many, and how many rows had
    no usable address. Column by column when the column reader reads the file as the csv
    module would (see _columns), else row by row with the csv module."""
    canonical = canonical_report(report)
    header = _columns.header_of(data)
    if header and canonical not in URL_REPORTS:  # their URLs and hosts are read row by row
        columns = [h.strip().lower() for h in header]
        if _positions(columns).address is None:
            raise MalformedReport(f"{name}: no ip column in the header {columns[:20]}")
        max_rows = min(limits.max_rows, limits.max_findings - len(findings))
        table = _columns.read_table(data, header, limits, name, max_rows)
        if table is not None:
            return _add_table(table, columns, canonical, findings)
    stream = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", errors="replace", newline="")
    return _read_csv(stream, name, report, limits, findings)


def _add_table(
    table: pa.Table, columns: list[str], canonical: str, findings: ColumnarRows
) -> tuple[int, int]:
    """The column reader's rows added to ``findings``, each converted as _read_csv converts it,
    per column or per distinct value."""
    at = _positions(columns)
    assert at.address is not None  # checked on the header
    addresses = _columns.addresses(table.column(at.address), canonical_ip)
    skipped = 0
    if None in addresses:
        kept = [i for i, address in enumerate(addresses) if address is not None]
        skipped = len(addresses) - len(kept)
        table = table.take(pa.array(kept, type=pa.int64()))
        addresses = [addresses[i] for i in kept]
    n = table.num_rows
    file = len(findings.files)
    findings.files.append(FeedFile(tuple(columns), category_of(canonical), canonical))
    findings.file_of.extend([file] * n)
    findings.addresses.extend(addresses)  # type: ignore[arg-type]  # None only where skipped
    if at.time is None:
        findings.times.extend_micros(np.full(n, _columns.NO_TIME, dtype=np.int64))
    else:
        findings.times.extend_micros(
            _columns.utc_micros(table.column(at.time), _mail.parse_datetime)
        )
    if at.port is None:
        findings.ports.extend([None] * n)
    else:
        findings.ports.extend(_columns.per_value(table.column(at.port), _port))
    if at.label is None:
        findings.descriptions.extend([_description(canonical, "")] * n)
    else:
        findings.descriptions.extend(
            _columns.per_value(table.column(at.label), lambda label: _description(canonical, label))
        )
    findings.cells.extend_table(table)
    return n, skipped


def _port(text: str) -> int | None:
    """A port cell's port: None unless a decimal number in 1..65535."""
    number = int(text) if text.isascii() and text.isdigit() else 0
    return number if 0 < number < 65536 else None


def _description(canonical: str, label: str) -> str:
    return f"Shadowserver {canonical}: {label or canonical}"


def _read_csv(
    stream: io.TextIOWrapper, name: str, report: str, limits: Limits, findings: FeedRows
) -> tuple[int, int]:
    """Adds the rows of one CSV file to ``findings``; returns how many, and how many rows had
    no usable address.

    The loop is kept tight (column positions found once, nothing made per row but what the
    pipeline reads: a row's Finding is made from its cells when asked for, see FeedRows).
    """
    canonical = canonical_report(report)
    category = category_of(canonical)
    with_urls = canonical in URL_REPORTS
    reader = csv.reader(stream)
    skipped = added = 0
    try:
        header = next(reader, None)
        if header is None:
            return 0, 0
        columns = [h.strip().lower() for h in header]
        at = _positions(columns)
        if at.address is None:
            raise MalformedReport(f"{name}: no ip column in the header {columns[:20]}")
        address_at, port_at, time_at, label_at = at.address, at.port, at.time, at.label
        max_cell = limits.max_cell_bytes
        max_rows = min(limits.max_rows, limits.max_findings - len(findings))
        parse_time = _mail.parse_datetime
        file = len(findings.files)
        findings.files.append(FeedFile(tuple(columns), category, canonical))
        add_file, add_cells = findings.file_of.append, findings.cells.append
        add_address, add_time = findings.addresses.append, findings.times.append
        add_port, add_description = findings.ports.append, findings.descriptions.append
        # Ports and labels repeat row after row: each text is read once.
        ports: dict[str, int | None] = {}
        descriptions: dict[str, str] = {}
        times: dict[str, datetime | None] = {}
        for batch in _checked_batches(reader, name, limits, max_rows, max_cell):
            column = [row[address_at] if address_at < len(row) else "" for row in batch]
            quads = _QUAD_LINES.findall("\n".join(column))
            if len(quads) != len(batch):  # a cell with a line break in it: row by row
                quads = [""] * len(batch)
            seconds = time_at is not None and _SECONDS.fullmatch(
                "\n".join([row[time_at] if time_at < len(row) else "" for row in batch])
            )
            for row, quad in zip(batch, quads, strict=True):
                width = len(row)
                address = quad or (canonical_ip(row[address_at]) if address_at < width else None)
                if address is None:
                    skipped += 1
                    continue
                port_text = row[port_at] if port_at is not None and port_at < width else ""
                port = ports.get(port_text, -1)
                if port == -1:
                    port = ports[port_text] = _port(port_text)
                if seconds and time_at is not None:  # seconds implies time_at
                    text = row[time_at]
                    when = times.get(text, _NOT_READ)
                    if when is _NOT_READ:
                        when = times[text] = _utc_seconds(text)
                elif time_at is not None and time_at < width:
                    when = parse_time(row[time_at])
                else:
                    when = None
                label = row[label_at] if label_at is not None and label_at < width else ""
                description = descriptions.get(label)
                if description is None:
                    description = descriptions[label] = _description(canonical, label)
                if with_urls:
                    urls, domains = _resources(dict(zip(columns, row, strict=False)))
                    if urls or domains:
                        findings.names[len(findings.addresses)] = (urls, domains)
                add_file(file)
                add_cells(row)
                add_address(address)
                add_time(when)
                add_port(port)
                add_description(description)
                added += 1
    except csv.Error as exc:
        if "field larger than field limit" in str(exc):
            raise LimitExceeded(
                f"{name}: a cell is larger than {csv.field_size_limit()} bytes"
            ) from exc
        raise MalformedReport(f"{name}: not a readable CSV file: {exc}") from exc
    return added, skipped


_ROWS_CHECKED_AT_ONCE = 1024
_NOT_READ: Any = object()


def _utc_seconds(text: str) -> datetime | None:
    """A time _SECONDS matched, as _mail.parse_datetime reads it (no zone: UTC)."""
    try:
        return datetime.fromisoformat(text + _UTC)
    except ValueError:  # the shape of a time, not one (month 13): as the general reader says
        return _mail.parse_datetime(text)


def _checked_batches(
    reader: Iterator[list[str]], name: str, limits: Limits, max_rows: int, max_cell: int
) -> Iterator[list[list[str]]]:
    """The reader's rows a batch at a time, with the row and cell limits checked per batch:
    one pass in C over a batch's cells costs a fraction of a check per row."""
    seen = 0
    while True:
        batch = list(itertools.islice(reader, _ROWS_CHECKED_AT_ONCE))
        if not batch:
            return
        seen += len(batch)
        if seen > max_rows:
            raise LimitExceeded(f"{name}: more than {limits.max_rows} rows")
        if max(map(len, itertools.chain.from_iterable(batch)), default=0) > max_cell:
            for n, row in enumerate(batch, start=seen - len(batch) + 1):
                widest = max(map(len, row), default=0)
                if widest > max_cell:
                    raise LimitExceeded(
                        f"{name}: row {n} has a cell of {widest} bytes; at most {max_cell} are read"
                    )
        yield batch


@dataclass(frozen=True, slots=True)
class _Positions:
    address: int | None
    port: int | None
    time: int | None
    label: int | None


def _positions(columns: list[str]) -> _Positions:
    def first(names: tuple[str, ...]) -> int | None:
        return next((columns.index(n) for n in names if n in columns), None)

    return _Positions(
        first(_ADDRESS_COLUMNS), first(_PORT_COLUMNS), first(_TIME_COLUMNS), first(_LABEL_COLUMNS)
    )


def _resources(values: dict[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The URL and host a URL-bearing report's row names (its url is the reported resource)."""
    url = refang(values.get("url", "") or values.get("http_url", ""))
    host = (values.get("http_host") or values.get("hostname") or "").lower()
    if url and "://" not in url and host:
        url = f"http://{host}{url if url.startswith('/') else '/' + url}"
    return ((url,) if "://" in url else ()), ((host,) if is_hostname(host) else ())
