"""Carrying enforcement actions out, and keeping the network in line with the database.

The case engine writes actions as pending records (cases/effects.py). The worker calls
`carry_out_due` to hand each due one to its server's driver and record the outcome, and
`reconcile` when it starts (and every reconcile interval) to make each driver's network match
the cuts that should be in force.

Each action is carried out in a transaction of its own. On PostgreSQL the action's row is
claimed with `FOR UPDATE SKIP LOCKED` and its server with a transaction-scoped advisory lock,
both held while the driver works, so that any number of workers carry each action out once
and a server's actions never race each other. A worker that dies after the driver acted but
before its commit leaves the action pending: it is carried out again, which the drivers'
idempotency makes harmless, and never recorded as applied when it was not.

On SQLite (one machine, one worker) a writing transaction holds the database's only write
lock, so the driver is called between a reading transaction and a writing one instead.

An action states what its server should be: cut (disconnect, terminate) or not (reconnect).
So only the newest unfinished action of a server is carried out; older unfinished ones are
marked superseded when it is.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased, selectinload

from abusedesk import metrics
from abusedesk.accounts.permissions import ENFORCER, Actor, Permission
from abusedesk.cases import effects
from abusedesk.cases.choices import TimelineKind
from abusedesk.cases.models import Case, ticket_tag
from abusedesk.enforce.choices import (
    UNFINISHED_STATES,
    ActionKind,
    ActionState,
    DriverName,
    parse_driver_chain,
)
from abusedesk.enforce.drivers.base import ActionSpec, DriverError
from abusedesk.enforce.drivers.registry import DriverRegistry
from abusedesk.enforce.models import EnforcementAction
from abusedesk.enforce.settings import EnforceSettings
from abusedesk.errors import Conflict, NotFound
from abusedesk.inventory.models import IPAssignment, Server
from abusedesk.store.uow import UnitOfWork

log = logging.getLogger(__name__)

# The first key of PostgreSQL's two-key advisory locks: "EN"forcement; the second is the
# server's id. Nothing else in abusedesk takes advisory locks.
_SERVER_LOCK_SPACE = 0x454E
_CANDIDATES = 8  # due actions looked at per claim, for when some servers are busy elsewhere
_CUTS = (ActionKind.DISCONNECT, ActionKind.TERMINATE)


@dataclass(slots=True)
class EnforceResult:
    applied: int = 0
    failed: int = 0
    superseded: int = 0

    def __str__(self) -> str:
        return f"{self.applied} applied, {self.failed} failed, {self.superseded} superseded"


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    cuts: int  # servers that should be cut
    errors: dict[str, str] = field(default_factory=dict)  # driver → why it failed

    @property
    def ok(self) -> bool:
        return not self.errors


def backoff(attempts: int, base_seconds: int, max_seconds: int) -> timedelta:
    """Wait before attempt `attempts + 1`: base, 2×base, 4×base… up to the maximum."""
    exponent = min(max(attempts - 1, 0), 32)
    return timedelta(seconds=min(base_seconds * 2**exponent, max_seconds))


# ---- carrying actions out -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Claimed:
    action_id: int
    attempts: int  # as claimed: on SQLite the outcome is only written if nobody else moved it
    state: ActionState
    spec: ActionSpec


@dataclass(frozen=True, slots=True)
class _Outcome:
    driver: str
    applied: bool
    note: str  # what the driver did, or why it failed
    temporary: bool = True


def carry_out_due(
    uow: UnitOfWork,
    registry: DriverRegistry,
    settings: EnforceSettings,
    batch: int = 100,
    actor: Actor = ENFORCER,
) -> EnforceResult:
    """Carry out up to `batch` due actions (pending, or failed and due for a retry), oldest
    first, one transaction each."""
    result = EnforceResult()
    busy: set[int] = set()  # actions whose server another worker is acting on just now
    with uow.reading():
        locking = uow.session.get_bind().dialect.name == "postgresql"
    for _ in range(batch):
        if locking:
            with uow:
                claimed = _claim(uow, busy, lock=True)
                if claimed is None:
                    break
                outcome = _call(registry, claimed.spec)
                _record(uow, claimed, outcome, settings, actor, result)
                uow.commit()
        else:
            with uow.reading():
                claimed = _claim(uow, busy, lock=False)
            if claimed is None:
                break
            outcome = _call(registry, claimed.spec)
            with uow:
                _record(uow, claimed, outcome, settings, actor, result)
                uow.commit()
    if result.applied or result.failed:
        log.info("enforcement: %s", result)
    return result


def _claim(uow: UnitOfWork, busy: set[int], lock: bool) -> _Claimed | None:
    session, now = uow.session, uow.clock.now()
    action, newer = EnforcementAction, aliased(EnforcementAction)
    query = (
        sa.select(action)
        .where(
            action.state.in_(UNFINISHED_STATES),
            action.next_attempt_at <= now,
            ~sa.exists().where(
                newer.server_id == action.server_id,
                newer.id > action.id,
                newer.state.in_(UNFINISHED_STATES),
            ),
        )
        .order_by(action.id)
        .limit(_CANDIDATES)
    )
    if busy:
        query = query.where(action.id.not_in(busy))
    if lock:
        query = query.with_for_update(skip_locked=True, of=action)
    for candidate in session.execute(query).scalars():
        if lock and not session.scalar(
            sa.select(sa.func.pg_try_advisory_xact_lock(_SERVER_LOCK_SPACE, candidate.server_id))
        ):
            busy.add(candidate.id)
            continue
        return _Claimed(
            candidate.id, candidate.attempts, candidate.state, _spec(session, candidate)
        )
    return None


def _spec(session: Session, action: EnforcementAction) -> ActionSpec:
    server = session.execute(
        sa.select(Server).where(Server.id == action.server_id).options(selectinload(Server.account))
    ).scalar_one()
    case = session.get(Case, action.case_id)
    return _spec_of(action, server, case, _current_prefixes(session, [server.id])[server.id])


def _spec_of(
    action: EnforcementAction, server: Server, case: Case | None, prefixes: Sequence[str]
) -> ActionSpec:
    return ActionSpec(
        action_id=action.id,
        kind=action.kind,
        case_id=action.case_id,
        ticket=case.ticket if case else "",
        account_reference=server.account.reference,
        server_id=server.id,
        hostname=server.hostname,
        prefixes=tuple(prefixes),
        reason=action.reason,
        category=case.category.value if case else "",
        plan=server.plan,
    )


def _current_prefixes(session: Session, server_ids: Sequence[int]) -> dict[int, list[str]]:
    """The prefixes routed to each server now: its assignments that have not ended."""
    found: dict[int, list[str]] = {server_id: [] for server_id in server_ids}
    rows = session.execute(
        sa.select(IPAssignment.server_id, IPAssignment.prefix)
        .where(IPAssignment.server_id.in_(list(server_ids)), IPAssignment.valid_until.is_(None))
        .order_by(IPAssignment.id)
    )
    for server_id, prefix in rows:
        found[server_id].append(prefix)
    return found


def _call(registry: DriverRegistry, spec: ActionSpec) -> _Outcome:
    try:
        name = registry.name_for(spec.hostname, spec.plan)
        driver = registry.driver_named(name)
    except Exception as exc:  # a configuration the settings check let through
        log.exception("no driver for %s", spec.hostname)
        return _Outcome("?", False, f"no driver: {exc}", temporary=False)
    try:
        return _Outcome(driver.name, True, driver.apply(spec))
    except DriverError as exc:
        return _Outcome(driver.name, False, str(exc), exc.temporary)
    except Exception as exc:
        # A driver's bug must not stop the queue, nor vanish: it is kept on the action, logged
        # with its traceback, and retried like a temporary failure.
        log.exception("the %s driver failed on action %d", driver.name, spec.action_id)
        return _Outcome(driver.name, False, f"{type(exc).__name__}: {exc}", temporary=True)


def _record(
    uow: UnitOfWork,
    claimed: _Claimed,
    outcome: _Outcome,
    settings: EnforceSettings,
    actor: Actor,
    result: EnforceResult,
) -> None:
    session, now, spec = uow.session, uow.clock.now(), claimed.spec
    action = session.get(EnforcementAction, claimed.action_id)
    if action is None or (action.state, action.attempts) != (claimed.state, claimed.attempts):
        log.warning("action %d changed while its driver worked; outcome dropped", spec.action_id)
        return
    action.attempts += 1
    action.driver = outcome.driver
    action.updated_at = now
    data: dict[str, Any] = {
        "action_id": action.id,
        "kind": action.kind.value,
        "server": spec.hostname,
        "prefixes": list(spec.prefixes),
        "driver": outcome.driver,
        "attempt": action.attempts,
    }
    superseded = _supersede(session, action, now)
    if superseded:
        data["superseded"] = superseded
        result.superseded += len(superseded)
    case = session.get(Case, action.case_id)
    assert case is not None  # a foreign key
    if outcome.applied:
        action.state = ActionState.APPLIED
        action.applied_at = now
        action.next_attempt_at = None
        action.last_error = None
        if action.kind is ActionKind.RECONNECT:
            reverted = _revert_disconnections(session, action, now)
            if reverted:
                data["reverted"] = reverted
        note = f"{action.kind.value} of {spec.hostname} carried out: {outcome.note}"
        if action.kind is ActionKind.TERMINATE:
            note += f"\nRetention: {settings.retention_note}"
            data["retention"] = settings.retention_note
        effects.record(uow, case, actor, TimelineKind.ENFORCEMENT_APPLIED, note=note, data=data)
        result.applied += 1
    else:
        action.state = ActionState.FAILED
        action.last_error = outcome.note
        data["error"] = outcome.note
        data["temporary"] = outcome.temporary
        if outcome.temporary:
            wait = backoff(action.attempts, settings.retry_base_seconds, settings.retry_max_seconds)
            action.next_attempt_at = now + wait
            data["next_attempt_at"] = action.next_attempt_at.isoformat()
            then = f"retry at {action.next_attempt_at:%Y-%m-%d %H:%M:%S} UTC"
        else:
            action.next_attempt_at = None
            then = "not retried: staff must look at it"
        note = f"{action.kind.value} of {spec.hostname} failed ({then}): {outcome.note}"
        # The case timeline shows the first failure and a final one; each retry in between
        # goes to the audit log only, so that a long outage does not bury the case's story.
        if action.attempts == 1 or not outcome.temporary:
            effects.record(uow, case, actor, TimelineKind.ENFORCEMENT_FAILED, note=note, data=data)
        else:
            uow.audit(actor.label, "enforcement.failed", "enforcement_action", action.id, data)
        result.failed += 1
    metrics.enforcement_outcomes.labels(
        outcome.driver, action.kind.value, "applied" if outcome.applied else "failed"
    ).inc()


def _supersede(session: Session, action: EnforcementAction, now: datetime) -> list[int]:
    """Older unfinished actions of the same server: moot now that a newer one was tried."""
    ids = list(
        session.execute(
            sa.select(EnforcementAction.id).where(
                EnforcementAction.server_id == action.server_id,
                EnforcementAction.id < action.id,
                EnforcementAction.state.in_(UNFINISHED_STATES),
            )
        ).scalars()
    )
    if ids:
        session.execute(
            sa.update(EnforcementAction)
            .where(EnforcementAction.id.in_(ids))
            .values(
                state=ActionState.SUPERSEDED,
                next_attempt_at=None,
                updated_at=now,
                last_error=f"superseded by action {action.id} ({action.kind.value})",
            )
            .execution_options(synchronize_session=False)
        )
    return ids


def _revert_disconnections(session: Session, action: EnforcementAction, now: datetime) -> list[int]:
    ids = list(
        session.execute(
            sa.select(EnforcementAction.id).where(
                EnforcementAction.server_id == action.server_id,
                EnforcementAction.id < action.id,
                EnforcementAction.kind == ActionKind.DISCONNECT,
                EnforcementAction.state == ActionState.APPLIED,
            )
        ).scalars()
    )
    if ids:
        session.execute(
            sa.update(EnforcementAction)
            .where(EnforcementAction.id.in_(ids))
            .values(state=ActionState.REVERTED, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    return ids


def retry(uow: UnitOfWork, actor: Actor, action_id: int) -> EnforcementAction:
    """Staff: try a failed action again at the next run (after fixing what made it fail)."""
    actor.require(Permission.CASE_DECIDE)
    with uow:
        action = uow.session.execute(
            sa.select(EnforcementAction).where(EnforcementAction.id == action_id).with_for_update()
        ).scalar_one_or_none()
        if action is None:
            raise NotFound(f"no enforcement action {action_id}")
        if action.state is not ActionState.FAILED:
            raise Conflict(f"action {action_id} is {action.state.value}, not failed")
        action.next_attempt_at = uow.clock.now()
        action.updated_at = uow.clock.now()
        uow.audit(
            actor.label,
            "enforcement.retry",
            "enforcement_action",
            action.id,
            {"last_error": action.last_error, "attempts": action.attempts},
        )
        uow.commit()
    return action


@dataclass(frozen=True, slots=True)
class ActionRow:
    id: int
    ticket: str
    hostname: str
    kind: ActionKind
    state: ActionState
    driver: str | None
    attempts: int
    last_error: str | None
    created_at: datetime


def list_actions(
    uow: UnitOfWork,
    actor: Actor,
    failed_only: bool = False,
    limit: int = 50,
    case_id: int | None = None,
) -> list[ActionRow]:
    """Staff: the newest enforcement actions (of one case, if named), or those that failed
    (to fix and retry)."""
    actor.require(Permission.CASE_DECIDE)
    query = (
        sa.select(EnforcementAction, Server.hostname)
        .join(Server, Server.id == EnforcementAction.server_id)
        .order_by(EnforcementAction.id.desc())
        .limit(min(limit, 1000))
    )
    if failed_only:
        query = query.where(EnforcementAction.state == ActionState.FAILED)
    if case_id is not None:
        query = query.where(EnforcementAction.case_id == case_id)
    with uow.reading():
        return [
            ActionRow(
                a.id,
                ticket_tag(a.case_id),
                hostname,
                a.kind,
                a.state,
                a.driver,
                a.attempts,
                a.last_error,
                a.created_at,
            )
            for a, hostname in uow.session.execute(query)
        ]


# ---- reconciliation -------------------------------------------------------------------------


def active_cuts(uow: UnitOfWork) -> list[ActionSpec]:
    """Every server that should be cut off now, as the spec of the action that cut it: the
    server's newest action (superseded ones aside) is a disconnection or a termination and was
    not reverted. Pending and failed ones count: the desk has decided, the driver is behind."""
    action = EnforcementAction
    with uow.reading():
        session = uow.session
        newest = (
            sa.select(sa.func.max(action.id))
            .where(action.state != ActionState.SUPERSEDED)
            .group_by(action.server_id)
        )
        actions = list(
            session.execute(
                sa.select(action)
                .where(
                    action.id.in_(newest),
                    action.kind.in_(_CUTS),
                    action.state != ActionState.REVERTED,
                )
                .order_by(action.server_id)
            ).scalars()
        )
        if not actions:
            return []
        server_ids = [a.server_id for a in actions]
        servers = {
            s.id: s
            for s in session.execute(
                sa.select(Server)
                .where(Server.id.in_(server_ids))
                .options(selectinload(Server.account))
            ).scalars()
        }
        cases = {
            c.id: c
            for c in session.execute(
                sa.select(Case).where(Case.id.in_({a.case_id for a in actions}))
            ).scalars()
        }
        prefixes = _current_prefixes(session, server_ids)
        return [
            _spec_of(a, servers[a.server_id], cases.get(a.case_id), prefixes[a.server_id])
            for a in actions
        ]


def reconcile(uow: UnitOfWork, registry: DriverRegistry) -> ReconcileResult:
    """Give each configured driver its share of the active cuts (possibly none: then it lifts
    every cut it still holds). A driver that fails is reported and the others go on."""
    active = active_cuts(uow)
    shares: dict[DriverName, list[ActionSpec]] = {name: [] for name in registry.configured()}
    for spec in active:
        for name in parse_driver_chain(registry.name_for(spec.hostname, spec.plan)):
            shares.setdefault(name, []).append(spec)
    errors: dict[str, str] = {}
    for name, specs in shares.items():
        try:
            registry.atomic(name).reconcile(specs)
        except DriverError as exc:
            errors[name.value] = str(exc)
        except Exception as exc:
            log.exception("the %s driver failed to reconcile", name.value)
            errors[name.value] = f"{type(exc).__name__}: {exc}"
        if name.value in errors:
            log.error("enforcement: %s could not reconcile: %s", name.value, errors[name.value])
            metrics.enforcement_reconcile_failures.labels(name.value).inc()
    return ReconcileResult(len(active), errors)
