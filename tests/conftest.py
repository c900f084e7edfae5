"""Fixtures shared by every tier: databases (SQLite always, PostgreSQL when configured), a desk
on a fake clock, and a small inventory."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from abusedesk.bootstrap import Desk, bootstrap
from abusedesk.clock import FakeClock
from abusedesk.config import Settings
from abusedesk.models import Base
from abusedesk.store.engine import make_engine
from abusedesk.store.migrate import upgrade

PG_URL = os.environ.get("ABUSEDESK_TEST_DATABASE_URL")
IN_CI = os.environ.get("CI", "").lower() == "true"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def pytest_configure(config: pytest.Config) -> None:
    if IN_CI and not PG_URL:
        raise pytest.UsageError(
            "CI=true but ABUSEDESK_TEST_DATABASE_URL is unset: the PostgreSQL tests would not run"
        )


BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


def _pg_engine_in_fresh_schema(url: str) -> tuple[Engine, str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    sep = "&" if "?" in url else "?"
    return make_engine(f"{url}{sep}options=-csearch_path%3D{schema}"), schema


@pytest.fixture(scope="session", params=BACKENDS)
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("db") / "test.sqlite3"
        eng = make_engine(f"sqlite:///{path}")
        upgrade(eng)
        yield eng
        eng.dispose()
        return
    assert PG_URL
    eng, schema = _pg_engine_in_fresh_schema(PG_URL)
    upgrade(eng)
    yield eng
    eng.dispose()
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def wipe(engine: Engine) -> None:
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("TRUNCATE " + ", ".join(tables) + " RESTART IDENTITY CASCADE"))
        else:
            for name in tables:
                conn.execute(sa.text(f"DELETE FROM {name}"))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def desk(engine: Engine, clock: FakeClock, tmp_path: Path) -> Desk:
    wipe(engine)
    settings = Settings(home=tmp_path / "home", database_url=str(engine.url))
    return bootstrap(settings, clock=clock, engine=engine)
