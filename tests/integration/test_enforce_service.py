"""Carrying enforcement actions out on a fake clock: applied, retried with backoff, failed for
good, reverted by a reconnection, superseded, terminated with the retention note; the cuts
that should be in force; and a worker that dies half-way."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from abusedesk.accounts.choices import Role
from abusedesk.accounts.permissions import Actor
from abusedesk.audit.models import AuditEntry
from abusedesk.bootstrap import Desk, bootstrap
from abusedesk.cases import effects, machine
from abusedesk.cases import service as cases
from abusedesk.cases.choices import Event, TimelineKind
from abusedesk.cases.models import Case, CaseEvent
from abusedesk.clock import FakeClock
from abusedesk.enforce import service as enforce
from abusedesk.enforce.choices import ActionKind, ActionState, DriverName
from abusedesk.enforce.drivers import ActionSpec, Driver, DriverError, DriverRegistry
from abusedesk.enforce.models import EnforcementAction
from abusedesk.enforce.settings import EnforceSettings, ScriptSettings
from abusedesk.errors import Conflict, NotFound, PermissionDenied
from abusedesk.policy import Category
from abusedesk.store.engine import make_engine
from tests import factories
from tests.integration.test_case_service import ANALYST


class Fake(Driver):
    """Does what it is told: succeeds, or raises what `on_apply` raises."""

    def __init__(self, name: str = "log") -> None:
        self.name = name
        self.calls: list[ActionSpec] = []
        self.reconciled: list[list[ActionSpec]] = []
        self.on_apply: Callable[[ActionSpec], None] | None = None

    def apply(self, spec: ActionSpec) -> str:
        self.calls.append(spec)
        if self.on_apply is not None:
            self.on_apply(spec)
        return f"{self.name} did {spec.kind.value}"

    def reconcile(self, active: Sequence[ActionSpec]) -> None:
        self.reconciled.append(list(active))


def registry_with(settings: EnforceSettings, home: Path, **drivers: Driver) -> DriverRegistry:
    def given(driver: Driver) -> Callable[[], Driver]:
        return lambda: driver

    return DriverRegistry.from_settings(
        settings, home, overrides={DriverName(name): given(d) for name, d in drivers.items()}
    )


@pytest.fixture
def fake() -> Fake:
    return Fake()


@pytest.fixture
def settings() -> EnforceSettings:
    return EnforceSettings(retry_base_seconds=30, retry_max_seconds=300)


@pytest.fixture
def registry(settings: EnforceSettings, fake: Fake, tmp_path: Path) -> DriverRegistry:
    return registry_with(settings, tmp_path, log=fake)


def command(event: Event, reason: str = "") -> machine.Command:
    return machine.Command(event, reason=reason)


def spam_case(desk: Desk, c: factories.Customer, n: int = 0) -> Case:
    return cases.open_case(
        desk.uow(),
        ANALYST,
        cases.NewCase(c.account_id, Category.SPAM, server_id=c.server_ids[n]),
        desk.policy,
    ).case


def disconnect(desk: Desk, case: Case) -> None:
    cases.transition(desk.uow(), ANALYST, case.id, command(Event.DISCONNECT, "spam"), desk.policy)


def reconnect(desk: Desk, case: Case, c: factories.Customer) -> None:
    customer = Actor("customer:ops", Role.CUSTOMER, user_id=1, account_id=c.account_id)
    cases.transition(
        desk.uow(), customer, case.id, command(Event.CUSTOMER_CONTACT, "fixed"), desk.policy
    )
    cases.transition(desk.uow(), ANALYST, case.id, command(Event.RECONNECT, "ok"), desk.policy)


def actions(desk: Desk) -> list[EnforcementAction]:
    with desk.uow() as uow:
        return list(
            uow.session.execute(sa.select(EnforcementAction).order_by(EnforcementAction.id))
            .scalars()
            .all()
        )


def timeline(desk: Desk, case_id: int) -> list[CaseEvent]:
    return list(cases.get_case(desk.uow(), ANALYST, case_id).timeline)


def run(desk: Desk, registry: DriverRegistry, settings: EnforceSettings) -> enforce.EnforceResult:
    return enforce.carry_out_due(desk.uow(), registry, settings)


def test_a_pending_disconnection_is_carried_out_once(
    desk: Desk, fake: Fake, registry: DriverRegistry, settings: EnforceSettings
) -> None:
    c = factories.customer(desk)
    case = spam_case(desk, c)
    disconnect(desk, case)
    result = run(desk, registry, settings)
    assert (result.applied, result.failed) == (1, 0)
    [spec] = fake.calls
    assert spec.kind is ActionKind.DISCONNECT
    assert spec.hostname == "srv0.c1001.example"
    assert spec.prefixes == ("198.51.100.1/32",)
    assert (spec.ticket, spec.account_reference, spec.category) == (case.ticket, "C1001", "spam")
    assert spec.plan == "vps-small"
    [action] = actions(desk)
    assert action.state is ActionState.APPLIED
    assert action.applied_at == desk.clock.now()
    assert (action.driver, action.attempts, action.next_attempt_at) == ("log", 1, None)
    last = timeline(desk, case.id)[-1]
    assert last.kind is TimelineKind.ENFORCEMENT_APPLIED
    assert last.actor == "enforcer"
    assert last.note == "disconnect of srv0.c1001.example carried out: log did disconnect"
    assert last.data["action_id"] == action.id
    with desk.uow() as uow:
        audited = uow.session.scalars(sa.select(AuditEntry.action)).all()
    assert "case.enforcement_applied" in audited
    # Nothing is due any more.
    assert run(desk, registry, settings).applied == 0
    assert len(fake.calls) == 1


def test_the_log_driver_is_the_embedded_default(desk: Desk, tmp_path: Path) -> None:
    c = factories.customer(desk)
    disconnect(desk, spam_case(desk, c))
    settings = EnforceSettings()
    registry = DriverRegistry.from_settings(settings, tmp_path)
    try:
        assert run(desk, registry, settings).applied == 1
    finally:
        registry.close()
    [action] = actions(desk)
    assert (action.state, action.driver) == (ActionState.APPLIED, "log")


def test_a_temporary_failure_is_retried_with_backoff(
    desk: Desk,
    clock: FakeClock,
    fake: Fake,
    registry: DriverRegistry,
    settings: EnforceSettings,
) -> None:
    c = factories.customer(desk)
    case = spam_case(desk, c)
    disconnect(desk, case)
    failures = [DriverError("router unreachable", temporary=True)] * 2

    def flaky(spec: ActionSpec) -> None:
        if failures:
            raise failures.pop()

    fake.on_apply = flaky
    assert run(desk, registry, settings).failed == 1
    [action] = actions(desk)
    assert action.state is ActionState.FAILED
    assert (action.attempts, action.last_error) == (1, "router unreachable")
    assert action.next_attempt_at == clock.now() + timedelta(seconds=30)
    assert run(desk, registry, settings).failed == 0  # not due yet

    clock.advance(timedelta(seconds=30))
    assert run(desk, registry, settings).failed == 1
    [action] = actions(desk)
    assert action.attempts == 2
    assert action.next_attempt_at == clock.now() + timedelta(seconds=60)  # doubled

    clock.advance(timedelta(seconds=60))
    assert run(desk, registry, settings).applied == 1
    [action] = actions(desk)
    assert (action.state, action.attempts, action.last_error) == (ActionState.APPLIED, 3, None)
    kinds = [e.kind for e in timeline(desk, case.id)]
    # The first failure is on the case's timeline; the retry after it in the audit log only.
    assert kinds[-2:] == [TimelineKind.ENFORCEMENT_FAILED, TimelineKind.ENFORCEMENT_APPLIED]
    with desk.uow() as uow:
        retries = uow.session.scalar(
            sa.select(sa.func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.action == "enforcement.failed")
        )
    assert retries == 1


def test_backoff_doubles_up_to_the_maximum() -> None:
    waits = [enforce.backoff(n, 30, 3600).total_seconds() for n in range(1, 10)]
    assert waits == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert enforce.backoff(10_000, 30, 3600) == timedelta(hours=1)


def test_a_permanent_failure_waits_for_staff(
    desk: Desk,
    clock: FakeClock,
    fake: Fake,
    registry: DriverRegistry,
    settings: EnforceSettings,
) -> None:
    c = factories.customer(desk)
    case = spam_case(desk, c)
    disconnect(desk, case)

    def refuse(spec: ActionSpec) -> None:
        raise DriverError("HTTP 400: unknown server", temporary=False)

    fake.on_apply = refuse
    assert run(desk, registry, settings).failed == 1
    clock.advance(timedelta(days=30))
    assert run(desk, registry, settings).failed == 0
    assert len(fake.calls) == 1
    [action] = actions(desk)
    assert (action.state, action.next_attempt_at) == (ActionState.FAILED, None)
    assert action.last_error == "HTTP 400: unknown server"
    last = timeline(desk, case.id)[-1]
    assert last.kind is TimelineKind.ENFORCEMENT_FAILED
    assert "not retried: staff must look at it" in last.note


def test_staff_retry_a_permanent_failure_by_hand(
    desk: Desk, fake: Fake, registry: DriverRegistry, settings: EnforceSettings
) -> None:
    c = factories.customer(desk)
    disconnect(desk, spam_case(desk, c))

    def refuse(spec: ActionSpec) -> None:
        raise DriverError("HTTP 403", temporary=False)

    fake.on_apply = refuse
    run(desk, registry, settings)
    [action] = actions(desk)
    customer = Actor("customer:ops", Role.CUSTOMER, user_id=1, account_id=c.account_id)
    with pytest.raises(PermissionDenied):
        enforce.retry(desk.uow(), customer, action.id)
    fake.on_apply = None  # the operator fixed the orchestrator's credentials
    enforce.retry(desk.uow(), ANALYST, action.id)
    assert run(desk, registry, settings).applied == 1
    with pytest.raises(Conflict, match="is applied, not failed"):
        enforce.retry(desk.uow(), ANALYST, action.id)
    with pytest.raises(NotFound):
        enforce.retry(desk.uow(), ANALYST, 999_999)


def test_a_driver_bug_is_kept_and_retried(
    desk: Desk, fake: Fake, registry: DriverRegistry, settings: EnforceSettings
) -> None:
    c = factories.customer(desk)
    disconnect(desk, spam_case(desk, c))

    def bug(spec: ActionSpec) -> None:
        raise KeyError("prefixes")

    fake.on_apply = bug
    assert run(desk, registry, settings).failed == 1
    [action] = actions(desk)
    assert action.last_error == "KeyError: 'prefixes'"
    assert action.next_attempt_at is not None


def test_a_reconnection_reverts_the_disconnection(
    desk: Desk, fake: Fake, registry: DriverRegistry, settings: EnforceSettings
) -> None:
    c = factories.customer(desk)
    case = spam_case(desk, c)
    disconnect(desk, case)
    run(desk, registry, settings)
    reconnect(desk, case, c)
    assert run(desk, registry, settings).applied == 1
    cut, restore = actions(desk)
    assert (cut.kind, cut.state) == (ActionKind.DISCONNECT, ActionState.REVERTED)
    assert (restore.kind, restore.state) == (ActionKind.RECONNECT, ActionState.APPLIED)
    assert [s.kind for s in fake.calls] == [ActionKind.DISCONNECT, ActionKind.RECONNECT]
    last = timeline(desk, case.id)[-1]
    assert last.data["reverted"] == [cut.id]
    assert enforce.active_cuts(desk.uow()) == []


def test_only_the_newest_unfinished_action_of_a_server_is_carried_out(
    desk: Desk, fake: Fake, registry: DriverRegistry, settings: EnforceSettings
) -> None:
    c = factories.customer(desk)
    case = spam_case(desk, c)
    disconnect(desk, case)
    reconnect(desk, case, c)  # before any worker got to the disconnection
    result = run(desk, registry, settings)
    assert (result.applied, result.superseded) == (1, 1)
    assert [s.kind for s in fake.calls] == [ActionKind.RECONNECT]
    cut, restore = actions(desk)
    assert cut.state is ActionState.SUPERSEDED
    assert cut.last_error == f"superseded by action {restore.id} (reconnect)"
    assert restore.state is ActionState.APPLIED


def test_termination_cuts_every_server_and_notes_what_is_kept(
    desk: Desk, fake: Fake, registry: DriverRegistry, tmp_path: Path
) -> None:
    settings = EnforceSettings(retention_note="Billing records: 10 years. Server data: deleted.")
    registry = registry_with(settings, tmp_path, log=fake)
    c = factories.customer(desk, servers=2)
    case = spam_case(desk, c)
    cases.transition(desk.uow(), ANALYST, case.id, command(Event.TERMINATE, "fraud"), desk.policy)
    assert run(desk, registry, settings).applied == 2
    assert {(s.kind, s.hostname) for s in fake.calls} == {
        (ActionKind.TERMINATE, "srv0.c1001.example"),
        (ActionKind.TERMINATE, "srv1.c1001.example"),
    }
    applied = [e for e in timeline(desk, case.id) if e.kind is TimelineKind.ENFORCEMENT_APPLIED]
    assert len(applied) == 2
    for event in applied:
        assert event.note.endswith("Retention: Billing records: 10 years. Server data: deleted.")
        assert event.data["retention"] == settings.retention_note
    assert {s.hostname for s in enforce.active_cuts(desk.uow())} == {
        "srv0.c1001.example",
        "srv1.c1001.example",
    }


def test_customers_do_not_see_enforcement_lines(
    desk: Desk, registry: DriverRegistry, settings: EnforceSettings
) -> None:
    c = factories.customer(desk)
    case = spam_case(desk, c)
    disconnect(desk, case)
    run(desk, registry, settings)
    customer = Actor("customer:ops", Role.CUSTOMER, user_id=1, account_id=c.account_id)
    full = cases.get_case(desk.uow(), ANALYST, case.id)
    staff = [e.kind for e in cases.timeline_for(ANALYST, full)]
    theirs = [e.kind for e in cases.timeline_for(customer, full)]
    assert TimelineKind.ENFORCEMENT_APPLIED in staff
    assert TimelineKind.ENFORCEMENT_APPLIED not in theirs
    assert TimelineKind.DISCONNECTED in theirs


def test_active_cuts_after_a_mixture_of_actions(
    desk: Desk, fake: Fake, registry: DriverRegistry, settings: EnforceSettings
) -> None:
    c = factories.customer(desk, servers=5)
    case = [spam_case(desk, c, n) for n in range(5)]
    disconnect(desk, case[0])  # 0: cut, applied
    disconnect(desk, case[1])  # 1: cut, then restored
    disconnect(desk, case[3])  # 3: cut, but its driver refused (the desk decided: it counts)
    disconnect(desk, case[4])  # 4: cut, then a reconnection nobody carried out yet

    def refuse_srv3(spec: ActionSpec) -> None:
        if spec.hostname == "srv3.c1001.example":
            raise DriverError("no such switch port", temporary=False)

    fake.on_apply = refuse_srv3
    run(desk, registry, settings)
    reconnect(desk, case[1], c)
    run(desk, registry, settings)
    disconnect(desk, case[2])  # 2: cut, pending
    reconnect(desk, case[4], c)  # pending
    other = factories.customer(desk, "C2002", base="203.0.113")
    cases.transition(
        desk.uow(),
        ANALYST,
        spam_case(desk, other).id,
        command(Event.TERMINATE, "fraud"),
        desk.policy,
    )
    cut = {s.hostname: s for s in enforce.active_cuts(desk.uow())}
    assert sorted(cut) == [
        "srv0.c1001.example",
        "srv0.c2002.example",
        "srv2.c1001.example",
        "srv3.c1001.example",
    ]
    assert cut["srv0.c2002.example"].kind is ActionKind.TERMINATE
    assert cut["srv0.c2002.example"].prefixes == ("203.0.113.1/32",)
    assert cut["srv2.c1001.example"].kind is ActionKind.DISCONNECT
    assert cut["srv2.c1001.example"].ticket == case[2].ticket


def test_active_cuts_follow_reconnections(
    desk: Desk, fake: Fake, registry: DriverRegistry, settings: EnforceSettings
) -> None:
    c = factories.customer(desk, servers=4)
    case = [spam_case(desk, c, n) for n in range(4)]
    for n in range(4):
        disconnect(desk, case[n])
    run(desk, registry, settings)
    reconnect(desk, case[1], c)  # pending: the decision counts already
    reconnect(desk, case[2], c)
    run(desk, registry, settings)
    reconnect(desk, case[3], c)
    disconnect(desk, spam_case(desk, c, 3))  # cut again after the reconnection: a new case
    cut = enforce.active_cuts(desk.uow())
    assert [(s.hostname, s.kind) for s in cut] == [
        ("srv0.c1001.example", ActionKind.DISCONNECT),
        ("srv3.c1001.example", ActionKind.DISCONNECT),
    ]
    newest = actions(desk)[-1]
    assert cut[1].action_id == newest.id


def test_reconcile_gives_each_driver_its_share(
    desk: Desk, settings: EnforceSettings, tmp_path: Path
) -> None:
    c = factories.customer(desk, servers=3)
    for n in range(3):
        disconnect(desk, spam_case(desk, c, n))
    settings = EnforceSettings(
        servers={"srv1.c1001.example": "script", "srv2.c1001.example": "script+log"},
        plans={"dedicated": "webhook"},
        webhook={"url": "https://o.example/", "secret": "k"},  # type: ignore[arg-type]
        script=ScriptSettings(path=tmp_path / "x"),
    )
    log, script, hook = Fake("log"), Fake("script"), Fake("webhook")
    registry = registry_with(settings, tmp_path, log=log, script=script, webhook=hook)
    result = enforce.reconcile(desk.uow(), registry)
    assert result.ok
    assert result.cuts == 3
    assert [[s.hostname for s in share] for share in log.reconciled] == [
        ["srv0.c1001.example", "srv2.c1001.example"]
    ]
    assert [[s.hostname for s in share] for share in script.reconciled] == [
        ["srv1.c1001.example", "srv2.c1001.example"]
    ]
    assert hook.reconciled == [[]]  # configured, nothing to cut: it lifts whatever it holds


def test_reconcile_reports_a_failing_driver_and_goes_on(desk: Desk, tmp_path: Path) -> None:
    class Broken(Fake):
        def reconcile(self, active: Sequence[ActionSpec]) -> None:
            raise DriverError("ExaBGP exited at start", temporary=True)

    settings = EnforceSettings(plans={"x": "script"}, script=ScriptSettings(path=tmp_path / "x"))
    ok = Fake("log")
    registry = registry_with(settings, tmp_path, log=ok, script=Broken("script"))
    result = enforce.reconcile(desk.uow(), registry)
    assert result.errors == {"script": "ExaBGP exited at start"}
    assert ok.reconciled == [[]]


class WorkerDied(BaseException):
    """Not an Exception: nothing in the service may catch it, as nothing catches a SIGKILL."""


def test_a_worker_that_dies_half_way_marks_nothing_it_did_not_do(
    desk: Desk,
    fake: Fake,
    registry: DriverRegistry,
    settings: EnforceSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    c = factories.customer(desk, servers=3)
    for n in range(3):
        disconnect(desk, spam_case(desk, c, n))
    first, second, third = (a.id for a in actions(desk))

    # Dies inside the driver, on the second action.
    def die_on_second(spec: ActionSpec) -> None:
        if spec.action_id == second:
            raise WorkerDied

    fake.on_apply = die_on_second
    with pytest.raises(WorkerDied):
        run(desk, registry, settings)
    states = {a.id: (a.state, a.attempts) for a in actions(desk)}
    assert states == {
        first: (ActionState.APPLIED, 1),  # done and recorded before the crash: kept
        second: (ActionState.PENDING, 0),
        third: (ActionState.PENDING, 0),
    }

    # Dies after the driver carried the second out, before the record was committed.
    fake.on_apply = None
    real_record = effects.record

    def die_when_recording(
        uow: object, case: Case, actor: Actor, kind: TimelineKind, **kw: object
    ) -> None:
        if kind is TimelineKind.ENFORCEMENT_APPLIED:
            raise WorkerDied
        real_record(uow, case, actor, kind, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(effects, "record", die_when_recording)
    with pytest.raises(WorkerDied):
        run(desk, registry, settings)
    assert [s.action_id for s in fake.calls] == [first, second, second]
    assert {a.id: a.state for a in actions(desk)}[second] is ActionState.PENDING
    with desk.uow() as uow:
        applied_lines = uow.session.scalar(
            sa.select(sa.func.count())
            .select_from(CaseEvent)
            .where(CaseEvent.kind == TimelineKind.ENFORCEMENT_APPLIED)
        )
    assert applied_lines == 1

    # The next worker carries the rest out; the driver sees the second once more (idempotent).
    monkeypatch.setattr(effects, "record", real_record)
    assert run(desk, registry, settings).applied == 2
    assert [s.action_id for s in fake.calls] == [first, second, second, second, third]
    assert {a.state for a in actions(desk)} == {ActionState.APPLIED}


def test_two_workers_at_once_carry_each_action_out_once(
    desk: Desk, clock: FakeClock, settings: EnforceSettings, tmp_path: Path
) -> None:
    if desk.engine.dialect.name != "postgresql":
        pytest.skip("SKIP LOCKED concurrency is a PostgreSQL test (SQLite serialises writers)")
    c = factories.customer(desk, servers=20)
    for n in range(20):
        disconnect(desk, spam_case(desk, c, n))
    url = desk.engine.url.render_as_string(hide_password=False)
    desks = [bootstrap(desk.settings, clock=clock, engine=make_engine(url)) for _ in range(2)]
    fakes = [Fake(), Fake()]
    registries = [registry_with(settings, tmp_path, log=f) for f in fakes]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def slow(spec: ActionSpec) -> None:
        threading.Event().wait(0.01)  # a driver that takes a moment, so that workers overlap

    for f in fakes:
        f.on_apply = slow

    def work(d: Desk, r: DriverRegistry) -> None:
        try:
            barrier.wait()
            enforce.carry_out_due(d.uow(), r, settings)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=pair) for pair in zip(desks, registries, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for d in desks:
        d.engine.dispose()
    assert not errors
    carried = [s.action_id for f in fakes for s in f.calls]
    assert len(carried) == len(set(carried)) == 20
    assert all(f.calls for f in fakes)  # both took part
    assert {a.state for a in actions(desk)} == {ActionState.APPLIED}
