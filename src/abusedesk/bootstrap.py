"""Builds the pieces every adapter needs: settings, the database, the policy, the clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from abusedesk.clock import Clock, SystemClock
from abusedesk.config import Settings, load_settings
from abusedesk.policy import Policy, load_policy
from abusedesk.store.engine import make_engine, make_session_factory
from abusedesk.store.migrate import upgrade
from abusedesk.store.uow import UnitOfWork


@dataclass
class Desk:
    """The running system's wiring. Adapters get one and pass `desk.uow()` to services."""

    settings: Settings
    engine: Engine
    policy: Policy
    clock: Clock = field(default_factory=SystemClock)

    @cached_property
    def session_factory(self) -> sessionmaker[Session]:
        return make_session_factory(self.engine)

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.session_factory, self.clock)

    def migrate(self) -> None:
        upgrade(self.engine)


def bootstrap(
    settings: Settings | None = None,
    clock: Clock | None = None,
    policy: Policy | None = None,
    engine: Engine | None = None,
) -> Desk:
    settings = settings or load_settings()
    if engine is None:
        if settings.database_url is None:
            settings.ensure_home()
        engine = make_engine(settings.resolved_database_url)
    return Desk(
        settings=settings,
        engine=engine,
        policy=policy or load_policy(settings.policy),
        clock=clock or SystemClock(),
    )
