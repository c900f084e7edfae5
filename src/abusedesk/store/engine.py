"""Engines for SQLite (WAL, foreign keys, immediate write transactions) and PostgreSQL."""

from __future__ import annotations

import threading
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

READ_ONLY = "abusedesk_read_only"
_WRITER = "abusedesk_writer"
# How long a writer waits for the others of its process before it asks SQLite anyway.
_WRITER_WAIT = 30.0


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30}, **kwargs)
        _tune_sqlite(engine)
        return engine
    return sa.create_engine(url, pool_pre_ping=True, **kwargs)


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when a transaction begins (see on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    # The writers of this process queue on a lock of their own before they take SQLite's:
    # a writer SQLite turns away sleeps in its busy handler (1 ms, 2, 5, … up to 100 ms a
    # try) however soon the lock is free, and the intake listener, storing each message while
    # the worker writes, spent most of its time asleep there. A lock of ours wakes the next
    # writer the moment the last one has finished. Released when the connection goes back to
    # the pool (after its commit or rollback); a writer that cannot get it within
    # _WRITER_WAIT goes on to SQLite's own lock, as before.
    writers = threading.Lock()

    @event.listens_for(engine, "begin")
    def on_begin(conn: sa.Connection) -> None:
        # A deferred transaction that reads and then writes fails with SQLITE_BUSY when another
        # writer got in between; taking the write lock up front makes writers queue instead.
        # A unit of work that only reads says so, and reads beside the writers (WAL).
        if conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN")
            return
        if not conn.info.get(_WRITER):
            conn.info[_WRITER] = writers.acquire(timeout=_WRITER_WAIT)
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            _release(conn.info)
            raise

    def _release(info: dict[Any, Any]) -> None:
        if info.pop(_WRITER, False):
            writers.release()

    @event.listens_for(engine.pool, "checkin")
    def on_checkin(dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            _release(record.info)

    @event.listens_for(engine.pool, "invalidate")
    def on_invalidate(dbapi_connection: Any, record: Any, exc: Any) -> None:
        if record is not None:
            _release(record.info)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)
