"""The unit of work: one transaction, rolled back unless `commit()` ran.

Services receive one and do one use case in it. Audit entries recorded through it are chained
and written in the same transaction, so a change and its audit entry land together or not at all.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

from sqlalchemy.orm import Session, sessionmaker

from abusedesk.audit.service import PendingEntry, seal
from abusedesk.clock import Clock, SystemClock


class UnitOfWork:
    def __init__(self, session_factory: sessionmaker[Session], clock: Clock | None = None):
        self._factory = session_factory
        self.clock: Clock = clock or SystemClock()
        self._pending: list[PendingEntry] = []
        self._session: Session | None = None

    @property
    def session(self) -> Session:
        if self._session is None:
            raise RuntimeError("the unit of work is used outside its `with` block")
        return self._session

    def __enter__(self) -> Self:
        self._session = self._factory()
        self._pending = []
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # close() rolls back whatever was not committed without expiring what was loaded, so
        # objects a service returns stay readable after its block ends.
        self._pending = []
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

    def commit(self) -> None:
        self.session.flush()
        seal(self.session, self._pending)
        self.session.commit()
        self._pending = []

    def rollback(self) -> None:
        self._pending = []
        self.session.rollback()
