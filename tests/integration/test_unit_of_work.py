from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from abusedesk.audit.models import AuditEntry
from abusedesk.bootstrap import Desk
from abusedesk.inventory.models import Account


def count(desk: Desk, model: type) -> int:
    with desk.uow().reading() as uow:
        return int(uow.session.scalar(sa.select(sa.func.count()).select_from(model)) or 0)


def test_nothing_is_kept_without_commit(desk: Desk) -> None:
    with desk.uow() as uow:
        uow.session.add(Account(reference="X1", name="x", created_at=uow.clock.now()))
        uow.audit("test", "account.create", "account", "X1")
        uow.session.flush()
    assert count(desk, Account) == 0
    assert count(desk, AuditEntry) == 0


def test_a_change_and_its_audit_entry_land_together(desk: Desk) -> None:
    with desk.uow() as uow:
        uow.session.add(Account(reference="X1", name="x", created_at=uow.clock.now()))
        uow.audit("test", "account.create", "account", "X1")
        uow.commit()
    assert count(desk, Account) == 1
    assert count(desk, AuditEntry) == 1


def test_readers_do_not_wait_for_a_writer(desk: Desk) -> None:
    """On SQLite a writer holds the write lock for its whole transaction; a unit of work that
    only reads must still answer at once (WAL), not queue behind it."""
    if desk.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL never makes readers wait; this is about SQLite's write lock")
    holding = threading.Event()
    release = threading.Event()

    def writer() -> None:
        with desk.uow() as uow:
            uow.session.add(Account(reference="W1", name="w", created_at=uow.clock.now()))
            uow.session.flush()
            holding.set()
            release.wait(10)
            uow.commit()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert holding.wait(10)
        started = time.monotonic()
        assert count(desk, Account) == 0  # the writer's row is not committed yet
        assert time.monotonic() - started < 1.0
    finally:
        release.set()
        thread.join(10)
    assert count(desk, Account) == 1
