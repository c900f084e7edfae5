"""Writing many rows of one table at once: COPY on PostgreSQL, executemany elsewhere.

A sweep that acts on thousands of cases writes a timeline line, an audit entry, an outbox
message and an enforcement record for each; through the ORM or executemany that costs some
200 µs a row, through COPY a tenth of it, in the same transaction either way.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session


def insert_rows(session: Session, table: Any, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    table = sa.inspect(table).local_table if not isinstance(table, sa.Table) else table
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        session.execute(sa.insert(table), list(rows))
        return
    columns = list(rows[0])
    preparer = connection.dialect.identifier_preparer
    target = preparer.format_table(table)
    names = ", ".join(preparer.quote(c) for c in columns)
    json_columns = {c for c in columns if isinstance(table.c[c].type, sa.JSON)}
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(f"COPY {target} ({names}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([_value(row[c], c in json_columns) for c in columns])


def _value(value: Any, is_json: bool) -> Any:
    if is_json:
        return json.dumps(value, default=str)
    if isinstance(value, enum.Enum):
        return value.value
    return value
