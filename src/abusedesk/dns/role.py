"""The `dns` role's work: keep the data plane serving what the database holds, and every
five-minute bucket store its counters and review the accounts' load (R11).

It polls a one-row token (:func:`abusedesk.dns.snapshot.version_token`) every
``sync_every`` seconds and publishes the zones again when it changed, so an edit in the portal is
served within seconds, without a restart, whichever process made it.
"""

from __future__ import annotations

import logging
from datetime import datetime

from abusedesk.bootstrap import Desk
from abusedesk.dns import overuse, snapshot
from abusedesk.dns.choices import PlaneKind
from abusedesk.dns.load import LoadState
from abusedesk.dns.plane import DataPlane, ZoneCounters
from abusedesk.noc import service as noc
from abusedesk.noc.choices import AlertKind

log = logging.getLogger(__name__)


def make_plane(desk: Desk) -> DataPlane:
    settings = desk.settings.dns
    if settings.plane is PlaneKind.KNOT:
        from abusedesk.dns.knot import KnotPlane

        return KnotPlane(settings, desk.settings.home)
    from abusedesk.dns.server import BuiltinPlane

    return BuiltinPlane(settings)


class DnsRole:
    """One plane, kept in step with the database; ``tick`` is called by the runtime."""

    def __init__(self, desk: Desk, plane: DataPlane | None = None) -> None:
        self.desk = desk
        self.plane = plane or make_plane(desk)
        self._token: str | None = None
        self._counted: dict[str, ZoneCounters] = {}
        self.published = 0

    def start(self) -> None:
        self.plane.start()
        self.sync()

    def stop(self) -> None:
        self.plane.stop()

    def sync(self) -> bool:
        """Publishes the zones if anything changed since the last time; True if it did."""
        token = snapshot.version_token(self.desk.uow())
        if token == self._token:
            return False
        zones = snapshot.load_all(self.desk.uow(), self.desk.settings.dns)
        self.plane.publish(zones)
        self._token = token
        self.published += 1
        log.info("dns: serving %d zones", len(zones))
        return True

    def sample(self, now: datetime) -> list[overuse.Reviewed]:
        """Stores what the plane counted since the last sample, then reviews every account."""
        counters = self.plane.counters()
        deltas = {
            name: overuse.counter_delta(now_counted, self._counted.get(name))
            for name, now_counted in counters.items()
        }
        overuse.record_counters(self.desk.uow(), deltas, now)
        self._counted = {
            name: ZoneCounters(c.queries, c.nxdomain, dict(c.by_type))
            for name, c in counters.items()
        }
        reviewed = overuse.review_load(self.desk.uow(), self.desk.policy, now)
        for item in reviewed:
            if item.noticed:
                log.info(
                    "dns: %s told of potential overuse: %s",
                    item.reference,
                    item.assessment.reason,
                )
            if item.case_id is not None:
                log.warning("dns: %s overuse goes on: case %d", item.reference, item.case_id)
            if item.assessment.state is LoadState.ATTACKED:
                attacked = [b for b in item.assessment.buckets if b.attacked]
                noc.raise_alert(
                    self.desk.uow(),
                    AlertKind.DNS_FLOOD,
                    f"DNS zones of {item.reference}",
                    item.assessment.reason,
                    {
                        "source": "dns_load",
                        "series": item.assessment.series(),
                        "attacked_buckets": len(attacked),
                    },
                    account_id=item.account_id,
                )
        return reviewed
