"""A feed's CSV read column by column (Apache Arrow's reader), and the rows kept as columns.

Python's csv module makes a list and a string per cell: 2.5 million objects for a 100 000-row,
25-column Shadowserver report, most of which nobody reads again (a case shows 20 rows). Arrow's
reader tokenises the file in C++ into one buffer per column; the conversions the pipeline needs
(times, addresses, ports, descriptions) are then done per column, or per distinct value, and a
row's cells become Python strings only when its Finding is asked for.

The fast reader only takes files it reads exactly as the csv module would: UTF-8, every row as
wide as the header, no row larger than a block. For anything else ``read_table`` returns None
and the caller reads the file with the csv module, whose answer (a replaced byte, a short row, a
clear limit error) is the reference. The row and cell limits are checked here as there.
"""

from __future__ import annotations

import csv
import io
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from socket import AF_INET6, inet_ntop, inet_pton
from typing import Any, TypeVar, overload

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from abusedesk.intake.formats.base import FeedRows, LimitExceeded, Limits

_BOM = b"\xef\xbb\xbf"
# Arrow reads a file a block at a time and refuses a row that does not fit in one: such a file
# (a huge cell) goes to the csv module, which names the limit it breaks.
_BLOCK = 4 << 20
# The C library's allocator: Arrow's default (mimalloc) spends a third of a second of system
# time on the first large table of a process, setting up its arenas (measured on Linux).
_POOL = pa.system_memory_pool()
NO_TIME = np.iinfo(np.int64).min  # a row without a time, in a column of microseconds (NaT)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# The shape of a Shadowserver time, ASCII digits, fields in range; Arrow's strptime reads those
# and the day check in utc_micros confirms each one (a 30th of February goes to the general
# reader).
_SECOND_SHAPE = (
    r"^[1-9]\d{3}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])[ T](?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d$"
)
_QUAD = r"^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$"
# IPv6 already in RFC 5952's canonical text, recognised without parsing it: lower-case groups
# without leading zeros, eight of them, or at most six around one "::" (which then stands for
# two or more zero groups); and no zero group beside "::" nor two zero groups in a row (either
# way a longer run would be the one to compress). A leading "::" is left to the
# C library: Python versions write IPv4-mapped addresses differently.
_V6_GROUP = r"(?:0|[1-9a-f][0-9a-f]{0,3})"
_V6_GROUPS = rf"{_V6_GROUP}(?::{_V6_GROUP})*"
_V6_FULL = rf"^{_V6_GROUP}(?::{_V6_GROUP}){{7}}$"
_V6_COMPRESSED = rf"^{_V6_GROUPS}::(?:{_V6_GROUPS})?$"
_V6_LONGER_ZERO_RUN = r"(?:^|:)0:0(?::|$)|(?:^|:)0::|::0(?::|$)"
# IPv6 as feeds write it: hex digits and colons, nothing to strip; inet_pton reads it.
_HEX_COLONS = r"^[0-9A-Fa-f]*:[0-9A-Fa-f:]*$"
# Rows turned into Python strings at once when one of them is asked for: the rows a report row
# or a case shows come in runs, and a block costs little more than a row.
_ROWS_PER_BLOCK = 1024

T = TypeVar("T")


def read_table(
    data: bytes, header: list[str], limits: Limits, name: str, max_rows: int
) -> pa.Table | None:
    """The file's rows after the ``header`` (as ``header_of`` read it), every column a string
    column; None when the csv module must read the file (see the module doc). Raises
    LimitExceeded for too many rows or a too large cell, as the csv module's path does."""
    body = memoryview(data)[len(_BOM) :] if data.startswith(_BOM) else memoryview(data)
    names = [f"c{i}" for i in range(len(header))]
    options: dict[str, Any] = {
        "read_options": pacsv.ReadOptions(
            use_threads=False, block_size=_BLOCK, autogenerate_column_names=True
        ),
        # As the csv module: quoted line breaks are values, a blank line is a row (with no
        # address, so skipped and counted).
        "parse_options": pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False),
        "convert_options": pacsv.ConvertOptions(
            column_types=dict.fromkeys(names, pa.string()),
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    }
    source = pa.py_buffer(body)
    try:
        # Rows end in a line break (the last may not): a file with fewer line breaks than the
        # limit is read at once, any other batch by batch, stopping at the limit.
        if _line_breaks(data) <= max_rows:
            table = pacsv.read_csv(pa.BufferReader(source), memory_pool=_POOL, **options)
        else:
            reader = pacsv.open_csv(pa.BufferReader(source), memory_pool=_POOL, **options)
            table = _read_at_most(reader, max_rows)
    except pa.ArrowException:
        return None  # not UTF-8, a ragged row, a row wider than a block: the csv module reads it
    if table is None:
        raise LimitExceeded(f"{name}: more than {limits.max_rows} rows")
    if table.num_columns != len(header) or any(t != pa.string() for t in table.schema.types):
        return None
    if table.num_rows == 0 or [c[0].as_py() for c in table.columns] != header:
        return None
    table = table.slice(1)
    # The csv module also stops at its own field limit (128 KiB), should max_cell_bytes be more.
    _check_cells(table, name, min(limits.max_cell_bytes, csv.field_size_limit()))
    return table


def _line_breaks(data: bytes) -> int:
    """At least as many line breaks as ``data`` has (a CRLF counts twice)."""
    breaks = data.count(b"\n")
    return breaks + data.count(b"\r") if b"\r" in data else breaks


def _read_at_most(reader: pacsv.CSVStreamingReader, max_rows: int) -> pa.Table | None:
    """The reader's rows (header first), or None past ``max_rows`` data rows."""
    batches = []
    rows = -1  # the header is the first row read
    for batch in reader:
        rows += batch.num_rows
        if rows > max_rows:
            return None
        batches.append(batch)
    return pa.Table.from_batches(batches, schema=reader.schema)


def header_of(data: bytes) -> list[str] | None:
    """The header as the csv module reads it (None: none, or one it cannot read): the reference
    the column reader must agree with. A header the csv module cannot read is its path's to
    report."""
    stream = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", errors="replace", newline="")
    try:
        return next(csv.reader(stream), None)
    except csv.Error:
        return None


def _check_cells(table: pa.Table, name: str, max_cell: int) -> None:
    """The first row holding a cell longer than ``max_cell`` characters, as the csv module path
    reports it (rows counted from 1 after the header)."""
    first: int | None = None
    for column in table.columns:
        if (pc.max(pc.binary_length(column)).as_py() or 0) <= max_cell:
            continue  # no more characters than bytes: nothing to count
        lengths = pc.utf8_length(column)
        if (pc.max(lengths).as_py() or 0) <= max_cell:
            continue
        over = np.flatnonzero(lengths.to_numpy() > max_cell)
        if first is None or over[0] < first:
            first = int(over[0])
    if first is None:
        return
    widest = max(len(c[first].as_py()) for c in table.columns)
    raise LimitExceeded(
        f"{name}: row {first + 1} has a cell of {widest} bytes; at most {max_cell} are read"
    )


def per_value(column: pa.ChunkedArray, convert: Callable[[str], T]) -> list[T]:
    """``convert`` of every row's value, called once per distinct value: a feed's ports, labels
    and times repeat row after row."""
    encoded = pc.dictionary_encode(column).combine_chunks()
    values = np.empty(len(encoded.dictionary), dtype=object)
    values[:] = [convert(v) for v in encoded.dictionary.to_pylist()]
    rows: list[T] = values[encoded.indices.to_numpy(zero_copy_only=False)].tolist()
    return rows


def addresses(column: pa.ChunkedArray, canonical: Callable[[str], str | None]) -> list[str | None]:
    """Each row's address in canonical form (None: not an address), as ``canonical`` gives it.
    Canonical dotted quads and canonical IPv6, most of a feed, are kept as they are (regular
    expressions over the column, in C++); other IPv6 as feeds write it (hex digits and colons)
    goes through the C library in one comprehension; the rest, row by row, through
    ``canonical``."""
    values: list[str | None] = column.to_pylist()
    others = np.flatnonzero(~pc.match_substring_regex(column, _QUAD).to_numpy(zero_copy_only=False))
    if others.size == 0:
        return values
    others = others[~_canonical_v6(column.take(others))]
    if others.size == 0:
        return values
    hexes = pc.match_substring_regex(column, _HEX_COLONS).to_numpy(zero_copy_only=False)
    v6 = others[hexes[others]]
    slow = others[~hexes[others]].tolist()
    texts = [values[i] or "" for i in v6.tolist()]
    try:
        written = [inet_ntop(AF_INET6, inet_pton(AF_INET6, text)) for text in texts]
    except (OSError, ValueError):  # one is no address: each on its own
        written = [_written_v6(text) for text in texts]
    # "." : what inet_ntop writes otherwise than ipaddress (an embedded IPv4), or refused.
    if "." in "".join(written):
        slow += [i for i, text in zip(v6.tolist(), written, strict=True) if "." in text]
    rows = np.array(values, dtype=object)
    rows[v6] = written
    values = rows.tolist()
    for i in slow:
        values[i] = canonical(values[i] or "")
    return values


def _canonical_v6(column: pa.ChunkedArray) -> npt.NDArray[np.bool_]:
    """Which texts are IPv6 addresses written canonically already (see _V6_FULL)."""
    # Around "::", as many groups as colons, one fewer when "::" ends the text (the shape has
    # a group first).
    groups = pc.subtract(
        pc.count_substring(column, ":"), pc.ends_with(column, "::").cast(pa.int32())
    )
    compressed = pc.and_(pc.match_substring_regex(column, _V6_COMPRESSED), pc.less_equal(groups, 6))
    shaped = pc.or_(pc.match_substring_regex(column, _V6_FULL), compressed)
    canonical = pc.and_not(shaped, pc.match_substring_regex(column, _V6_LONGER_ZERO_RUN))
    return np.asarray(canonical.to_numpy(zero_copy_only=False), dtype=bool)


def _written_v6(text: str) -> str:
    """The C library's text of an IPv6 address, "." when it refuses it."""
    try:
        return inet_ntop(AF_INET6, inet_pton(AF_INET6, text))
    except (OSError, ValueError):
        return "."


def utc_micros(
    column: pa.ChunkedArray, parse: Callable[[str], datetime | None]
) -> npt.NDArray[np.int64]:
    """Each row's time as microseconds since the epoch, UTC (NO_TIME: none). Times to the second
    as Shadowserver writes them are read in C++ (and their day of the month checked); any other
    text goes through ``parse`` (the general reader), once per distinct value."""
    shaped = pc.match_substring_regex(column, _SECOND_SHAPE)
    read = pc.strptime(column, format="%Y-%m-%d %H:%M:%S", unit="s", error_is_null=True)
    if read.null_count:  # ISO 8601's "T" between date and time, or no time at all
        read = pc.coalesce(
            read, pc.strptime(column, format="%Y-%m-%dT%H:%M:%S", unit="s", error_is_null=True)
        )
    seconds = np.asarray(
        pc.fill_null(read.cast(pa.int64()), 0).to_numpy(zero_copy_only=False), dtype=np.int64
    )
    # strptime reads the 30th of February as the 2nd of March: a time is confirmed when its
    # day of the month is the one written (the shape bounds every other field).
    days = seconds // 86_400
    day_of_month = (
        days
        - days.astype("datetime64[D]")
        .astype("datetime64[M]")
        .astype("datetime64[D]")
        .astype(np.int64)
        + 1
    )
    written_day = pc.utf8_slice_codeunits(pc.if_else(shaped, column, "0000-00-00"), 8, 10)
    confirmed = np.asarray(
        pc.and_(shaped, read.is_valid()).to_numpy(zero_copy_only=False), dtype=bool
    ) & (day_of_month == written_day.cast(pa.int64()).to_numpy(zero_copy_only=False))
    micros = seconds * 1_000_000
    rest = np.flatnonzero(~confirmed)
    if rest.size:
        micros[rest] = per_value(column.take(rest), lambda text: _micros(parse(text)))
    return micros


def _micros(at: datetime | None) -> int:
    return NO_TIME if at is None else (at - _EPOCH) // _MICROSECOND


def _datetime(micros: int) -> datetime | None:
    return None if micros == NO_TIME else _EPOCH + timedelta(microseconds=micros)


class _Segments(Sequence[T]):
    """A column built of parts: whole arrays from the column reader, or rows appended one at a
    time by the csv module's reader. Indexed as one list."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._parts: list[Any] = []
        self._length = 0

    def _add_part(self, part: Any, length: int) -> None:
        self._starts.append(self._length)
        self._parts.append(part)
        self._length += length

    def _appended(self) -> list[Any]:
        """The part that appended rows go to (a list at the end)."""
        if not self._parts or not isinstance(self._parts[-1], list):
            self._add_part([], 0)
        part: list[Any] = self._parts[-1]
        return part

    def _locate(self, index: int) -> tuple[Any, int]:
        if index < 0:
            index += self._length
        if not 0 <= index < self._length:
            raise IndexError("row out of range")
        at = bisect_right(self._starts, index) - 1
        return self._parts[at], index - self._starts[at]

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> list[T]: ...

    def __getitem__(self, index: int | slice) -> T | list[T]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._length))]
        part, offset = self._locate(index)
        return self._item(part, offset)

    def __iter__(self) -> Iterator[T]:
        return (self[i] for i in range(self._length))

    def _item(self, part: Any, offset: int) -> T:
        item: T = part[offset]
        return item


class TimesColumn(_Segments[datetime | None]):
    """Each row's time, kept as microseconds (what the prefix index reads): a row's datetime is
    made when asked for."""

    def append(self, at: datetime | None) -> None:
        self._appended().append(_micros(at))
        self._length += 1

    def extend_micros(self, micros: npt.NDArray[np.int64]) -> None:
        self._add_part(micros, len(micros))

    def micros(self) -> npt.NDArray[np.int64]:
        """Every row's time in microseconds, NO_TIME where a row has none."""
        if not self._parts:
            return np.empty(0, dtype=np.int64)
        return np.concatenate([np.asarray(p, dtype=np.int64) for p in self._parts])

    def _item(self, part: Any, offset: int) -> datetime | None:
        return _datetime(int(part[offset]))


class CellsColumn(_Segments[list[str]]):
    """Each row's cells: a table's rows stay in the table (made Python strings a block at a time
    when asked for), rows the csv module read are its lists."""

    def __init__(self) -> None:
        super().__init__()
        self._blocks: dict[tuple[int, int], list[list[str]]] = {}

    def append(self, row: list[str]) -> None:
        self._appended().append(row)
        self._length += 1

    def extend_table(self, table: pa.Table) -> None:
        self._add_part(table, table.num_rows)

    def _item(self, part: Any, offset: int) -> list[str]:
        if isinstance(part, list):
            row: list[str] = part[offset]
            return row
        start = offset - offset % _ROWS_PER_BLOCK
        key = (id(part), start)
        block = self._blocks.get(key)
        if block is None:
            rows = part.slice(start, _ROWS_PER_BLOCK)
            columns = [c.to_pylist() for c in rows.columns]
            block = self._blocks[key] = [list(r) for r in zip(*columns, strict=True)]
        return block[offset - start]


class ColumnarRows(FeedRows):
    """FeedRows whose cells and times stay in columns (see the module doc). Everything else
    (addresses, ports, descriptions, files) is as FeedRows keeps it."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__()
        self.times: TimesColumn = TimesColumn()  # type: ignore[assignment]
        self.cells: CellsColumn = CellsColumn()  # type: ignore[assignment]

    def time_micros(self) -> npt.NDArray[np.int64]:
        """Every row's time in microseconds since the epoch, NO_TIME for a row without one."""
        return self.times.micros()
