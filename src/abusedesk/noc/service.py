"""Raising, listing and acknowledging NOC alerts. One use case per function; detectors call
:func:`raise_alert` (as the system), the console the rest."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from abusedesk import metrics
from abusedesk.accounts.permissions import SYSTEM, Actor, Permission
from abusedesk.errors import NotFound
from abusedesk.noc.choices import AlertKind, AlertState
from abusedesk.noc.models import NocAlert
from abusedesk.store.uow import UnitOfWork

log = logging.getLogger(__name__)

# An alert that fired again within this long is the same attack going on, not a new one.
SAME_ATTACK = timedelta(hours=1)


def raise_alert(
    uow: UnitOfWork,
    kind: AlertKind,
    subject: str,
    summary: str,
    evidence: dict[str, Any],
    *,
    account_id: int | None = None,
    server_id: int | None = None,
) -> NocAlert:
    """A new alert, or the running one of the same kind and subject brought up to date."""
    with uow:
        now = uow.clock.now()
        running = uow.session.scalar(
            sa.select(NocAlert)
            .where(
                NocAlert.kind == kind,
                NocAlert.subject == subject,
                NocAlert.last_seen_at >= now - SAME_ATTACK,
            )
            .order_by(NocAlert.id.desc())
            .limit(1)
            .with_for_update()
        )
        if running is not None:
            running.last_seen_at, running.times = now, running.times + 1
            running.summary, running.evidence = summary, evidence
            uow.commit()
            return running
        alert = NocAlert(
            kind=kind,
            subject=subject,
            summary=summary,
            evidence=evidence,
            account_id=account_id,
            server_id=server_id,
            first_seen_at=now,
            last_seen_at=now,
        )
        uow.session.add(alert)
        uow.session.flush()
        uow.audit(
            SYSTEM.label,
            "noc.alert",
            "noc_alert",
            alert.id,
            {"kind": kind.value, "subject": subject, "summary": summary},
        )
        uow.commit()
    metrics.noc_alerts.labels(kind.value).inc()
    log.warning("NOC alert: %s: %s (%s)", kind.label, subject, summary)
    return alert


def list_alerts(
    uow: UnitOfWork,
    actor: Actor,
    states: Sequence[AlertState] = (AlertState.OPEN, AlertState.ACKNOWLEDGED),
    since: datetime | None = None,
    limit: int = 100,
) -> list[NocAlert]:
    """Newest first."""
    actor.require(Permission.INVENTORY_VIEW)
    query = sa.select(NocAlert).where(NocAlert.state.in_(list(states)))
    if since is not None:
        query = query.where(NocAlert.last_seen_at >= since)
    with uow.reading():
        return list(uow.session.scalars(query.order_by(NocAlert.last_seen_at.desc()).limit(limit)))


def count_open(uow: UnitOfWork, actor: Actor) -> int:
    actor.require(Permission.INVENTORY_VIEW)
    with uow.reading():
        return int(
            uow.session.scalar(sa.select(sa.func.count()).where(NocAlert.state == AlertState.OPEN))
            or 0
        )


def acknowledge(uow: UnitOfWork, actor: Actor, alert_id: int) -> NocAlert:
    """A NOC engineer has the attack in hand; the alert stays listed while it fires."""
    actor.require(Permission.CASE_DECIDE)
    with uow:
        alert = uow.session.get(NocAlert, alert_id, with_for_update=True)
        if alert is None:
            raise NotFound(f"no alert {alert_id}")
        if alert.state is AlertState.OPEN:
            alert.state = AlertState.ACKNOWLEDGED
            alert.acknowledged_by, alert.acknowledged_at = actor.label, uow.clock.now()
            uow.audit(actor.label, "noc.acknowledge", "noc_alert", alert.id, {})
        uow.commit()
        return alert
