"""R11's path: the data plane's counters stored per zone and five-minute bucket, each account's
load assessed (:mod:`abusedesk.dns.load`), a notice of *potential* violation when it is over,
and a ``dns_overuse`` case when it is still over ``notice_grace`` after the notice.

The `dns` role calls :func:`record_counters` and :func:`review_load` every bucket; the pages
read :func:`zone_load` and :func:`account_load` for their charts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypedDict

import sqlalchemy as sa

from abusedesk.accounts.permissions import SYSTEM, Actor, Permission
from abusedesk.cases import service as cases
from abusedesk.clock import utc
from abusedesk.dns.choices import NoticeState
from abusedesk.dns.load import BUCKET, Assessment, LoadState, Sample, assess, bucket_start
from abusedesk.dns.models import LoadNotice, LoadSample, Zone
from abusedesk.dns.plane import ZoneCounters
from abusedesk.errors import NotFound
from abusedesk.inventory.models import Account
from abusedesk.notify.choices import MessageTemplate
from abusedesk.notify.models import OutboxMessage
from abusedesk.notify.outbox import outbox_rows
from abusedesk.policy import Category
from abusedesk.policy.model import Policy
from abusedesk.store.uow import UnitOfWork

log = logging.getLogger(__name__)


def counter_delta(now: ZoneCounters, before: ZoneCounters | None) -> ZoneCounters:
    """What was counted since ``before``; a counter that went back (the plane restarted)
    counts from zero again."""
    if before is None or now.queries < before.queries:
        return ZoneCounters(now.queries, now.nxdomain, dict(now.by_type))
    return ZoneCounters(
        now.queries - before.queries,
        max(0, now.nxdomain - before.nxdomain),
        {
            rtype: n - before.by_type.get(rtype, 0)
            for rtype, n in now.by_type.items()
            if n - before.by_type.get(rtype, 0) > 0
        },
    )


def record_counters(uow: UnitOfWork, deltas: Mapping[str, ZoneCounters], at: datetime) -> int:
    """Adds each zone's counts to its sample of the bucket holding ``at``. Zones the database
    no longer knows are skipped. Returns the samples written."""
    bucket = bucket_start(at)
    written = 0
    with uow:
        zone_ids = dict(
            uow.session.execute(
                sa.select(Zone.name, Zone.id).where(
                    Zone.name.in_([name.rstrip(".") for name in deltas])
                )
            ).all()
        )
        for name, delta in deltas.items():
            zone_id = zone_ids.get(name.rstrip("."))
            if zone_id is None or not delta.queries:
                continue
            sample = uow.session.scalar(
                sa.select(LoadSample)
                .where(LoadSample.zone_id == zone_id, LoadSample.bucket == bucket)
                .with_for_update()
            )
            if sample is None:
                uow.session.add(
                    LoadSample(
                        zone_id=zone_id,
                        bucket=bucket,
                        queries=delta.queries,
                        nxdomain=delta.nxdomain,
                        by_type=dict(delta.by_type),
                    )
                )
            else:
                sample.queries += delta.queries
                sample.nxdomain += delta.nxdomain
                merged = dict(sample.by_type)
                for rtype, n in delta.by_type.items():
                    merged[rtype] = merged.get(rtype, 0) + n
                sample.by_type = merged
            written += 1
        uow.commit()
    return written


@dataclass(frozen=True, slots=True)
class Reviewed:
    account_id: int
    reference: str
    assessment: Assessment
    noticed: bool = False  # a notice of potential violation went out now
    case_id: int | None = None  # a dns_overuse case opened (or attached) now
    ended: bool = False  # a notice ended: the load is back within the policy


def review_load(uow: UnitOfWork, policy: Policy, now: datetime) -> list[Reviewed]:
    """Assesses every account with samples in the period and moves its notice along:
    over and not yet told → a notice; over ``notice_grace`` after the notice → a case; back
    within the policy → the notice ends. A random-subdomain flood is logged for the NOC."""
    limits = policy.dns_load
    since = bucket_start(now - limits.sustained)
    out: list[Reviewed] = []
    with uow:
        session = uow.session
        totals = dict(
            session.execute(
                sa.select(LoadSample.bucket, sa.func.sum(LoadSample.queries))
                .where(LoadSample.bucket >= since)
                .group_by(LoadSample.bucket)
            ).all()
        )
        per_account: dict[int, list[Sample]] = {}
        rows = session.execute(
            sa.select(
                Zone.account_id,
                LoadSample.bucket,
                sa.func.sum(LoadSample.queries),
                sa.func.sum(LoadSample.nxdomain),
            )
            .join(Zone, Zone.id == LoadSample.zone_id)
            .where(LoadSample.bucket >= since)
            .group_by(Zone.account_id, LoadSample.bucket)
        )
        for account_id, bucket, queries, nxdomain in rows:
            per_account.setdefault(account_id, []).append(
                Sample(utc(bucket), int(queries), int(nxdomain))
            )
        totals = {utc(k): int(v) for k, v in totals.items()}
        notices = {
            n.account_id: n
            for n in session.scalars(
                sa.select(LoadNotice).where(LoadNotice.state != NoticeState.ENDED)
            )
        }
        accounts = set(per_account) | set(notices)
        references = dict(
            session.execute(
                sa.select(Account.id, Account.reference).where(Account.id.in_(accounts))
            ).all()
        )
        for account_id in sorted(accounts):
            found = assess(per_account.get(account_id, []), totals, limits, now)
            reviewed = _move_notice(
                uow, policy, account_id, references.get(account_id, ""), found, notices, now
            )
            out.append(reviewed)
        uow.commit()
    return out


def _move_notice(
    uow: UnitOfWork,
    policy: Policy,
    account_id: int,
    reference: str,
    found: Assessment,
    notices: Mapping[int, LoadNotice],
    now: datetime,
) -> Reviewed:
    notice = notices.get(account_id)
    if found.state is not LoadState.OVER:
        if notice is not None:
            notice.state, notice.ended_at = NoticeState.ENDED, now
            uow.audit(
                SYSTEM.label,
                "dns.load.notice_ended",
                "account",
                account_id,
                {"reason": found.reason},
            )
            return Reviewed(account_id, reference, found, ended=True)
        return Reviewed(account_id, reference, found)
    if notice is None:
        notice = LoadNotice(
            account_id=account_id,
            state=NoticeState.NOTIFIED,
            notified_at=now,
            reason=found.reason,
            peak_share=found.peak_share,
            peak_qps=found.peak_qps,
        )
        uow.session.add(notice)
        account = uow.session.get(Account, account_id)
        assert account is not None
        context = {
            "ticket": "",  # no case yet: a notice of a potential violation
            "reason": found.reason,
            "peak_share_percent": round(100 * found.peak_share, 1),
            "peak_qps": round(found.peak_qps),
            "grace_days": policy.dns_load.notice_grace.days,
            "zones": _zone_names(uow, account_id),
        }
        for row in outbox_rows(account, MessageTemplate.DNS_LOAD_NOTICE, context, now):
            uow.insert_later(OutboxMessage, row)
        uow.audit(SYSTEM.label, "dns.load.notice", "account", account_id, context)
        return Reviewed(account_id, reference, found, noticed=True)
    notice.reason, notice.peak_share, notice.peak_qps = (
        found.reason,
        max(notice.peak_share, found.peak_share),
        max(notice.peak_qps, found.peak_qps),
    )
    if notice.state is NoticeState.NOTIFIED and now - utc(notice.notified_at) >= (
        policy.dns_load.notice_grace
    ):
        opened = cases.open_or_attach(
            uow,
            SYSTEM,
            cases.NewCase(
                account_id=account_id,
                category=Category.DNS_OVERUSE,
                resource=f"DNS zones of {reference}",
                summary=f"Excessive DNS load: {found.reason}",
                evidence={
                    "source": "dns_load",
                    "reason": found.reason,
                    "notified_at": notice.notified_at.isoformat(),
                    "peak_share": round(found.peak_share, 4),
                    "peak_qps": round(found.peak_qps, 1),
                    "zones": _zone_names(uow, account_id),
                    "series": found.series(),
                },
            ),
            policy,
        )
        notice.state, notice.case_id = NoticeState.CASE_OPENED, opened.case.id
        return Reviewed(account_id, reference, found, case_id=opened.case.id)
    return Reviewed(account_id, reference, found)


def _zone_names(uow: UnitOfWork, account_id: int) -> list[str]:
    return list(
        uow.session.scalars(
            sa.select(Zone.name).where(Zone.account_id == account_id).order_by(Zone.name)
        )
    )


# -- for the pages ------------------------------------------------------------------------------


class LoadPoint(TypedDict):
    """One bucket of :func:`zone_load`."""

    at: str  # ISO 8601
    queries_per_s: float
    nxdomain_per_s: float


def zone_load(
    uow: UnitOfWork, actor: Actor, name: str, now: datetime, period: timedelta = timedelta(days=1)
) -> list[LoadPoint]:
    """One zone's queries and NXDOMAIN per second, per bucket, in the shape the charts read.
    Buckets with no queries are shown as zero, so a quiet hour is a flat line, not a gap."""
    actor.require(Permission.DNS_VIEW)
    with uow.reading():
        zone = uow.session.scalar(sa.select(Zone).where(Zone.name == name.rstrip(".").lower()))
        if zone is None or not (actor.is_staff or zone.account_id == actor.account_id):
            raise NotFound(f"no zone {name}")
        since = bucket_start(now - period)
        rows = {
            utc(bucket): (queries, nxdomain)
            for bucket, queries, nxdomain in uow.session.execute(
                sa.select(LoadSample.bucket, LoadSample.queries, LoadSample.nxdomain).where(
                    LoadSample.zone_id == zone.id, LoadSample.bucket >= since
                )
            )
        }
    seconds = BUCKET.total_seconds()
    out: list[LoadPoint] = []
    moment = since
    while moment <= now:
        queries, nxdomain = rows.get(moment, (0, 0))
        out.append(
            {
                "at": moment.isoformat(),
                "queries_per_s": round(queries / seconds, 3),
                "nxdomain_per_s": round(nxdomain / seconds, 3),
            }
        )
        moment += BUCKET
    return out


def account_notice(uow: UnitOfWork, actor: Actor, account_id: int) -> LoadNotice | None:
    """The account's current notice of potential violation, if one is running."""
    actor.require(Permission.DNS_VIEW)
    if not actor.is_staff and actor.account_id != account_id:
        raise NotFound(f"no account {account_id}")
    with uow.reading():
        return uow.session.scalar(
            sa.select(LoadNotice).where(
                LoadNotice.account_id == account_id, LoadNotice.state != NoticeState.ENDED
            )
        )


def running_notices(uow: UnitOfWork, actor: Actor) -> list[tuple[LoadNotice, str]]:
    """Every notice still running, with its account's reference, newest first (the NOC page)."""
    actor.require(Permission.INVENTORY_VIEW)
    with uow.reading():
        return [
            (notice, reference)
            for notice, reference in uow.session.execute(
                sa.select(LoadNotice, Account.reference)
                .join(Account, Account.id == LoadNotice.account_id)
                .where(LoadNotice.state != NoticeState.ENDED)
                .order_by(LoadNotice.notified_at.desc())
            ).all()
        ]
