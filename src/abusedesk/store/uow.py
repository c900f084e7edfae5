"""The unit of work: one transaction, rolled back unless `commit()` ran.

Services receive one and do one use case in it. Audit entries recorded through it are chained
and written in the same transaction, so a change and its audit entry land together or not at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self

from sqlalchemy.orm import Session, sessionmaker

from abusedesk.audit.service import PendingEntry, seal
from abusedesk.clock import Clock, SystemClock
from abusedesk.store.bulk import insert_rows
from abusedesk.store.engine import READ_ONLY


class UnitOfWork:
    def __init__(self, session_factory: sessionmaker[Session], clock: Clock | None = None):
        self._factory = session_factory
        self.clock: Clock = clock or SystemClock()
        self._pending: list[PendingEntry] = []
        self._rows: dict[Any, list[dict[str, Any]]] = {}
        self._session: Session | None = None

    @property
    def session(self) -> Session:
        if self._session is None:
            raise RuntimeError("the unit of work is used outside its `with` block")
        return self._session

    def __enter__(self) -> Self:
        self._session = self._factory()
        self._pending = []
        self._rows = {}
        return self

    @contextmanager
    def reading(self) -> Iterator[Self]:
        """`with uow.reading():` for a use case that only reads: on SQLite it then does not
        queue behind writers for the write lock (PostgreSQL never makes readers wait)."""
        with self:
            self.session.connection(execution_options={READ_ONLY: True})
            yield self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # close() rolls back whatever was not committed without expiring what was loaded, so
        # objects a service returns stay readable after its block ends.
        self._pending = []
        self._rows = {}
        self.session.close()
        self._session = None

    def audit(
        self,
        actor: str,
        action: str,
        object_type: str,
        object_id: object,
        details: dict[str, Any] | None = None,
    ) -> None:
        self._pending.append(
            PendingEntry(
                self.clock.now(), actor, action, object_type, str(object_id), details or {}
            )
        )

    def insert_later(self, table: Any, row: dict[str, Any]) -> None:
        """A row nothing in this transaction reads back (a timeline line, an outbox message),
        written at commit with the others of its table in one executemany: a sweep of
        thousands of cases must not pay the ORM's per-object cost for them."""
        self._rows.setdefault(table, []).append(row)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """`with uow.savepoint():` a part of the transaction that fails alone: on an exception
        what it wrote, its audit entries and its rows for `insert_later` are undone, the rest
        of the transaction stays, and the exception goes on."""
        pending = len(self._pending)
        rows = {table: len(kept) for table, kept in self._rows.items()}
        try:
            with self.session.begin_nested():
                yield
        except BaseException:
            del self._pending[pending:]
            for table, kept in self._rows.items():
                del kept[rows.get(table, 0) :]
            raise

    def commit(self) -> None:
        self.session.flush()
        for table, rows in self._rows.items():
            insert_rows(self.session, table, rows)
        seal(self.session, self._pending)
        self.session.commit()
        self._pending = []
        self._rows = {}

    def rollback(self) -> None:
        self._pending = []
        self._rows = {}
        self.session.rollback()
