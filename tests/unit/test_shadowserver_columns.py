"""Shadowserver CSV read by the column reader (Arrow) gives exactly what the csv module's reader
gives: the same rows, addresses, times, ports, descriptions and cells, the same skipped count,
the same limits; and a file the column reader would read otherwise goes to the csv module."""

from __future__ import annotations

import contextlib
import email.message
import io
import ipaddress
import os
import re
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from abusedesk.intake.formats import LimitExceeded, Limits, _columns, _mail, shadowserver
from abusedesk.intake.formats._columns import ColumnarRows
from abusedesk.intake.formats._extract import canonical_ip

HEADER = "timestamp,ip,port,tag,asn\n"


def by_csv_module(data: bytes, limits: Limits, report: str = "scan_redis") -> Any:
    """The reference: the csv module's row-by-row reader."""
    rows = ColumnarRows()
    stream = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", errors="replace", newline="")
    counts = shadowserver._read_csv(stream, "x.csv", report, limits, rows)
    return counts, rows


def by_file(data: bytes, limits: Limits, report: str = "scan_redis") -> Any:
    rows = ColumnarRows()
    counts = shadowserver._read_file(data, "x.csv", report, limits, rows)
    return counts, rows


def contents(rows: ColumnarRows) -> dict[str, Any]:
    return {
        "files": rows.files,
        "file_of": list(rows.file_of),
        "addresses": list(rows.addresses),
        "times": list(rows.times),
        "micros": rows.time_micros().tolist(),
        "ports": list(rows.ports),
        "descriptions": list(rows.descriptions),
        "cells": [list(c) for c in rows.cells],
        "findings": [f.as_json() for f in rows],
    }


def outcome(read: Any, data: bytes, limits: Limits) -> Any:
    try:
        counts, rows = read(data, limits)
    except LimitExceeded as exc:
        return ("limit", str(exc))
    return counts, contents(rows)


def test_a_well_formed_file_is_read_by_columns_as_by_the_csv_module() -> None:
    lines = [HEADER]
    for i in range(3000):
        address = f"198.51.100.{i % 256}" if i % 3 else f"2001:DB8:0:0::{i:x}"
        if i % 100 == 7:
            address = "not-an-ip"
        when = f"2026-06-01{' ' if i % 2 else 'T'}10:{i % 60:02d}:{(i * 7) % 60:02d}"
        if i % 500 == 3:
            when = "2026-02-30 10:00:00"  # the shape of a time, not one
        if i % 500 == 4:
            when = "2026-06-01T10:00:00+02:00"  # another shape: the general reader
        lines.append(f'"{when}","{address}",{[6379, 0, 70000, ""][i % 4]},"t{i % 5}",64500\n')
    data = ("\ufeff" + "".join(lines)).encode()
    header = _columns.header_of(data)
    assert header is not None
    assert _columns.read_table(data, header, Limits(), "x.csv", 10_000) is not None  # columns
    fast, slow = outcome(by_file, data, Limits()), outcome(by_csv_module, data, Limits())
    assert fast == slow
    (added, skipped), rows = fast
    assert (added, skipped) == (2970, 30)
    assert rows["addresses"][0] == "2001:db8::"
    assert rows["times"][0] == datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
    assert None in rows["times"]  # the 30th of February


def test_rows_past_the_first_block_of_cells_are_the_right_ones() -> None:
    data = (
        HEADER + "".join(f"2026-06-01 10:00:00,192.0.2.{i % 200},{i},x,1\n" for i in range(5000))
    ).encode()
    _, rows = by_file(data, Limits())
    assert rows[4321].evidence["port"] == "4321"
    assert rows[1023].evidence["port"] == "1023"
    assert rows[1024].port == 1024
    assert [f.port for f in rows[2047:2050]] == [2047, 2048, 2049]


@pytest.mark.parametrize(
    "body",
    [
        b"2026-06-01 10:00:00,192.0.2.1,80,a,1\n2026-06-01 10:00:00,192.0.2.2,80\n",  # short
        b"2026-06-01 10:00:00,192.0.2.1,80,a,1,extra\n",  # long
        b"2026-06-01 10:00:00,192.0.2.1,80,caf\xe9,1\n",  # not UTF-8: replaced, as before
        b'2026-06-01 10:00:00,192.0.2.1,80,"open quote,1\n',
    ],
)
def test_files_the_column_reader_declines_are_read_by_the_csv_module(body: bytes) -> None:
    data = HEADER.encode() + body
    header = _columns.header_of(data)
    assert header is not None
    assert _columns.read_table(data, header, Limits(), "x.csv", 10) is None
    assert outcome(by_file, data, Limits()) == outcome(by_csv_module, data, Limits())


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
def test_the_row_limit_holds_read_at_once_or_batch_by_batch(ending: str) -> None:
    rows = "".join(f"2026-06-01 10:00:00,192.0.2.{i % 250},80,a,1{ending}" for i in range(2000))
    data = (HEADER + rows).encode()
    # Read at once (fewer line breaks than the limit), and batch by batch (more).
    assert by_file(data, Limits(max_rows=2000))[0] == (2000, 0)
    with pytest.raises(LimitExceeded, match="more than 1999 rows"):
        by_file(data, Limits(max_rows=1999))
    with pytest.raises(LimitExceeded, match="more than 10 rows"):
        by_file(data, Limits(max_rows=10))


def test_a_cell_over_the_limit_is_refused_as_by_the_csv_module() -> None:
    big = "é" * 5000  # 5000 characters, 10 000 bytes: the limit counts characters
    data = (
        HEADER + f"2026-06-01 10:00:00,192.0.2.1,80,a,1\n2026-06-01,192.0.2.2,{big},a,1\n"
    ).encode()
    assert by_file(data, Limits(max_cell_bytes=5000))[0] == (2, 0)
    expected = outcome(by_csv_module, data, Limits(max_cell_bytes=4999))
    assert expected == ("limit", "x.csv: row 2 has a cell of 5000 bytes; at most 4999 are read")
    assert outcome(by_file, data, Limits(max_cell_bytes=4999)) == expected


_CELLS = st.one_of(
    st.sampled_from(
        [
            "",
            "192.0.2.7",
            "010.1.1.1",
            "01.2.3.4",
            "2001:DB8::1",
            "2001:db8:0:0:0:0:0:1",
            "::ffff:c000:207",
            "::ffff:192.0.2.7",
            "[2001:db8::2]",
            "fe80::1%eth0",
            " 192.0.2.8 ",
            "2026-06-01 10:00:00",
            "2026-06-01T23:59:59",
            "2026-02-29 00:00:00",
            "2024-02-29 00:00:00",
            "0000-01-01 00:00:00",
            "2026-06-01 10:00:00Z",
            "Mon, 01 Jun 2026 10:00:00 +0000",
            "80",
            "0",
            "65536",
            "²",
            "a,b",
            'say "hi"',
            "two\nlines",
            "cr\rhere",
            "\u00e9t\u00e9",
        ]
    ),
    st.text(alphabet='0123456789abcdef:.," \n\rT-', max_size=12),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.lists(_CELLS, min_size=4, max_size=6), max_size=12),
    quote=st.booleans(),
    ending=st.sampled_from(["\n", "\r\n", "\r"]),
    bom=st.booleans(),
)
def test_columns_and_the_csv_module_agree(
    rows: list[list[str]], quote: bool, ending: str, bom: bool
) -> None:
    def line(cells: list[str]) -> str:
        if quote:
            return ",".join('"' + c.replace('"', '""') + '"' for c in cells)
        return ",".join(cells)  # unquoted: commas, quotes and breaks make ragged or odd rows

    text = ending.join([line(["timestamp", "ip", "port", "tag", "asn"]), *map(line, rows)])
    data = ("\ufeff" if bom else "").encode() + (text + ending).encode()
    limits = Limits(max_rows=8, max_cell_bytes=10)
    assert outcome(by_file, data, limits) == outcome(by_csv_module, data, limits)
    if quote and all(len(r) == 5 for r in rows):
        # Well-formed: the column reader reads it itself (the comparison above is not vacuous).
        header = _columns.header_of(data)
        assert header is not None
        with contextlib.suppress(LimitExceeded):
            assert _columns.read_table(data, header, limits, "x.csv", limits.max_rows) is not None


ADDRESSES = [
    "192.0.2.1",
    "2001:DB8::1",
    "2001:db8:0:0:0:0:0:1",
    "::ffff:102:304",  # an embedded IPv4: written as ipaddress writes it
    "::ffff:192.0.2.7",
    "1:2",  # hex and colons, yet no address: the others beside it still read
    "deadbeef",
    "[2001:db8::2]",
    "fe80::1%eth0",
    " 192.0.2.8 ",
    "010.1.1.1",
    "01.2.3.4",  # a leading zero: no address (ipaddress's reading)
    "",
    "::",
]


def test_addresses_are_canonical_as_canonical_ip_says() -> None:
    column = pa.chunked_array([ADDRESSES[:6], ADDRESSES[6:]])
    assert _columns.addresses(column, canonical_ip) == [canonical_ip(a) for a in ADDRESSES]
    clean = ["2001:DB8::1", "::ffff:102:304", "2001:db8::3"]  # no refusal: read at once
    assert _columns.addresses(pa.chunked_array([clean]), canonical_ip) == [
        canonical_ip(a) for a in clean
    ]


TIMES = [
    "2026-06-01 10:00:00",
    "2026-06-01T10:00:00",
    "2026-02-30 10:00:00",
    "2024-02-29 23:59:59",
    "1969-12-31 23:59:59",
    "2026-06-01 24:00:00",
    "2026-06-01 10:00:00Z",
    " 2026-06-01 10:00:00",
    "Mon, 01 Jun 2026 10:00:00 +0200",
    "",
    "x",
]


def test_times_are_read_as_the_general_reader_reads_them() -> None:
    micros = _columns.utc_micros(pa.chunked_array([TIMES]), _mail.parse_datetime)
    expected = [_mail.parse_datetime(text) for text in TIMES]
    assert [_columns._datetime(int(m)) for m in micros] == expected
    assert expected[2] is None  # the test tells the cases apart
    assert expected[0] is not None


def test_files_read_both_ways_make_one_sequence_of_rows() -> None:
    clean = HEADER + "".join(
        f"2026-06-01 10:00:00,192.0.2.{i % 256},{i + 1},a,1\n" for i in range(1500)
    )
    ragged = HEADER + "2026-06-01 11:00:00,198.51.100.1,443\n"
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("2026-06-01-scan_redis-a.csv", clean)
        zipped.writestr("2026-06-01-scan_ssl-b.csv", ragged)
        zipped.writestr("2026-06-01-scan_ntp-c.csv", clean)
    message = email.message.EmailMessage()
    message["From"] = "autoreports@shadowserver.org"
    message["Subject"] = "Shadowserver scan_redis Report"
    message.add_attachment(
        archive.getvalue(), maintype="application", subtype="zip", filename="2026-06-01-x.csv.zip"
    )
    raw = message.as_bytes()
    rows = shadowserver.parse(_mail.parse_message(raw), raw, Limits()).findings
    assert len(rows) == 3001
    assert [rows[i].kind for i in (0, 1499, 1500, 1501, 3000)] == [
        "scan_redis",
        "scan_redis",
        "scan_ssl_poodle",
        "scan_ntp",
        "scan_ntp",
    ]
    assert rows[1500].evidence == {
        "timestamp": "2026-06-01 11:00:00",
        "ip": "198.51.100.1",
        "port": "443",
    }
    assert rows[1500].event_time == datetime(2026, 6, 1, 11, tzinfo=UTC)
    assert rows[3000].addresses == ("192.0.2.219",)
    assert rows[3000].port == 1500
    assert rows.time_micros().shape == (3001,)


def _renderings(value: int, style: int) -> str:
    """An IPv6 address written canonically, or in one of the ways feeds write it otherwise."""
    address = ipaddress.IPv6Address(value)
    if style == 0:
        return str(address)
    if style == 1:
        return address.exploded  # leading zeros, no compression
    if style == 2:
        return str(address).upper()
    groups = [f"{int(g, 16):x}" for g in address.exploded.split(":")]
    if style == 3:
        return ":".join(groups)  # no compression
    if style == 5:  # "::" for a single zero group, which RFC 5952 does not allow
        lone = [i for i in range(8) if groups[i] == "0"]
        if not lone:
            return ":".join(groups)
        return ":".join(groups[: lone[0]]) + "::" + ":".join(groups[lone[0] + 1 :])
    # Compress the last run of two or more zero groups, which RFC 5952 may not choose.
    runs = [i for i in range(7) if groups[i] == "0" and groups[i + 1] == "0"]
    if not runs:
        return ":".join(groups)
    start = end = runs[-1]
    while start > 0 and groups[start - 1] == "0":
        start -= 1
    while end < 8 and groups[end] == "0":
        end += 1
    return ":".join(groups[:start]) + "::" + ":".join(groups[end:])


# Groups drawn mostly from zero and a few values, so that runs of zeros of every length occur.
_GROUP_VALUES = st.sampled_from([0, 0, 0, 1, 0xA, 0xFF, 0x1000, 0xFFFF])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.lists(_GROUP_VALUES, min_size=8, max_size=8), st.integers(0, 5)),
        min_size=1,
        max_size=30,
    )
)
def test_ipv6_is_canonical_as_canonical_ip_says(drawn: list[tuple[list[int], int]]) -> None:
    texts = []
    for groups, style in drawn:
        value = 0
        for group in groups:
            value = value << 16 | group
        texts.append(_renderings(value, style))
    column = pa.chunked_array([texts])
    assert _columns.addresses(column, canonical_ip) == [canonical_ip(t) for t in texts]
    # Written canonically, without a run of zeros left uncompressed: recognised as such, not
    # parsed (the shortcut is exercised; the others go to the C library, as safe as before).
    plain = [
        t
        for t, (_, style) in zip(texts, drawn, strict=True)
        if style == 0 and not t.startswith("::") and not re.search(r"(^|:)0(:|$)", t)
    ]
    if plain:
        assert _columns._canonical_v6(pa.chunked_array([plain])).all()


FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "reports"


def shadowserver_fixtures() -> list[Path]:
    return sorted((FIXTURES / "shadowserver").glob("*.eml"))


@pytest.mark.parametrize("path", shadowserver_fixtures(), ids=lambda p: p.name)
def test_real_reports_read_by_columns_as_by_the_csv_module(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = path.read_bytes()
    message = _mail.parse_message(raw)
    by_columns = shadowserver.parse(message, raw, Limits())
    monkeypatch.setattr(_columns, "read_table", lambda *args, **kwargs: None)
    by_rows = shadowserver.parse(message, raw, Limits())
    assert by_columns.as_json() == by_rows.as_json()
    assert by_columns.findings.time_micros().tolist() == by_rows.findings.time_micros().tolist()


def test_the_real_reports_are_there() -> None:
    if not shadowserver_fixtures():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the shared fixtures are missing ({FIXTURES}), and CI=true")
        pytest.skip(f"the shared fixtures are not here ({FIXTURES})")


def test_rows_without_a_time_are_located_at_the_reports_time() -> None:
    from abusedesk.intake.locate import _row_times

    data = b"ip,port\n192.0.2.1,80\n192.0.2.2,81\n"
    _, untimed = by_file(data, Limits())
    _, timed = by_file((HEADER + "2026-06-01 10:00:00,192.0.2.3,80,a,1\n").encode(), Limits())
    assert _row_times(untimed, 42).tolist() == [42, 42]
    assert _row_times(timed, 42).tolist() == [1_780_308_000_000_000]
    assert timed.times[0] == datetime(2026, 6, 1, 10, tzinfo=UTC)
