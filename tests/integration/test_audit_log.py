from __future__ import annotations

import sqlalchemy as sa

from abusedesk.audit.models import AuditEntry
from abusedesk.audit.service import verify_log
from abusedesk.bootstrap import Desk
from tests import factories
from tests.integration.test_sweeper import open_case


def verify(desk: Desk):
    with desk.uow() as uow:
        return verify_log(uow.session)


def test_every_change_is_chained_and_verifies(desk: Desk) -> None:
    c = factories.customer(desk, servers=3)
    for n in range(3):
        open_case(desk, c, n)
    result = verify(desk)
    assert result.ok
    assert result.entries >= 6  # account, servers, cases


def test_a_changed_row_is_found(desk: Desk) -> None:
    c = factories.customer(desk, servers=2)
    open_case(desk, c)
    with desk.engine.begin() as conn:
        conn.execute(sa.update(AuditEntry).where(AuditEntry.seq == 2).values(actor="admin:mallory"))
    result = verify(desk)
    assert not result.ok
    assert [p.seq for p in result.problems] == [2]


def test_a_deleted_row_is_found(desk: Desk) -> None:
    c = factories.customer(desk, servers=2)
    open_case(desk, c)
    with desk.engine.begin() as conn:
        conn.execute(sa.delete(AuditEntry).where(AuditEntry.seq == 2))
    result = verify(desk)
    assert not result.ok
    assert any("missing" in p.reason for p in result.problems)


def test_a_deleted_last_row_is_found(desk: Desk) -> None:
    c = factories.customer(desk)
    open_case(desk, c)
    with desk.engine.begin() as conn:
        last = conn.scalar(sa.select(sa.func.max(AuditEntry.seq)))
        conn.execute(sa.delete(AuditEntry).where(AuditEntry.seq == last))
    result = verify(desk)
    assert not result.ok
