"""The zones as the data planes serve them: a :class:`dns.zone.Zone` per customer zone, with the
provider's SOA (serial from the database) and apex NS (the settings' name servers, or a staff
override) in place, built from the database in two queries; and the token the `dns` role polls
to know when to build them again."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.zone
import sqlalchemy as sa
from sqlalchemy.orm import Session

from abusedesk.dns.models import DnsState, RRSet, Zone
from abusedesk.dns.settings import DnsSettings
from abusedesk.dns.validate import origin_of
from abusedesk.store.uow import UnitOfWork

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StoredSet:
    subname: str
    type: str
    ttl: int
    records: Sequence[str]


def apex_nameservers(nameservers: Sequence[str], settings: DnsSettings) -> list[str]:
    """The zone's own NS: the staff override when there is one, else the provider's."""
    chosen = list(nameservers) or list(settings.nameservers)
    return [ns if ns.endswith(".") else ns + "." for ns in chosen]


def build_zone(
    name: str,
    serial: int,
    nameservers: Sequence[str],
    sets: Iterable[StoredSet],
    settings: DnsSettings,
) -> dns.zone.Zone:
    """One zone, relativized as ``dns.zone.from_text`` makes it. A stored set that no longer
    reads (it cannot happen through the service, but a hand edit of the database can) is left
    out and logged, so that one bad row does not take every zone off the air."""
    origin = origin_of(name)
    zone = dns.zone.Zone(origin, relativize=True)
    apex_ns = apex_nameservers(nameservers, settings)
    soa = (
        f"{apex_ns[0]} {settings.hostmaster} {serial} {settings.soa_refresh} "
        f"{settings.soa_retry} {settings.soa_expire} {settings.negative_ttl}"
    )
    _add(zone, dns.name.empty, "SOA", settings.default_ttl, [soa])
    _add(zone, dns.name.empty, "NS", settings.default_ttl, apex_ns)
    for stored in sets:
        if stored.type == "SOA" or (stored.type == "NS" and stored.subname == ""):
            continue  # the provider's alone; the service never stores them
        owner = (
            dns.name.empty
            if stored.subname == ""
            else dns.name.from_text(stored.subname, origin=None)
        )
        try:
            _add(zone, owner, stored.type, stored.ttl, stored.records)
        except (dns.exception.DNSException, ValueError) as exc:
            log.error("zone %s: the set %s %s is left out: %s", name, owner, stored.type, exc)
    return zone


def _add(
    zone: dns.zone.Zone, owner: dns.name.Name, rtype: str, ttl: int, records: Sequence[str]
) -> None:
    rdtype = dns.rdatatype.from_text(rtype)
    parsed = [
        dns.rdata.from_text(dns.rdataclass.IN, rdtype, text, origin=zone.origin, relativize=True)
        for text in records
    ]
    rdataset = zone.find_rdataset(owner, rdtype, create=True)
    for rdata in parsed:
        rdataset.add(rdata, ttl)


def zone_of(zone: Zone, settings: DnsSettings) -> dns.zone.Zone:
    """One zone from its row, its record sets loaded or loadable."""
    return build_zone(
        zone.name,
        zone.serial,
        zone.nameservers,
        (StoredSet(s.subname, s.type, s.ttl, s.records) for s in zone.rrsets),
        settings,
    )


def load_all(source: Session | UnitOfWork, settings: DnsSettings) -> dict[str, dns.zone.Zone]:
    """Every zone, keyed as the planes want (``"example.com."``)."""
    if isinstance(source, UnitOfWork):
        with source.reading():
            return _load_all(source.session, settings)
    return _load_all(source, settings)


def _load_all(session: Session, settings: DnsSettings) -> dict[str, dns.zone.Zone]:
    zones = session.execute(
        sa.select(Zone.id, Zone.name, Zone.serial, Zone.nameservers).order_by(Zone.id)
    ).all()
    sets: dict[int, list[StoredSet]] = {}
    rows = session.execute(
        sa.select(RRSet.zone_id, RRSet.subname, RRSet.type, RRSet.ttl, RRSet.records)
    )
    for zone_id, subname, rtype, ttl, records in rows:
        sets.setdefault(zone_id, []).append(StoredSet(subname, rtype, ttl, records))
    return {
        f"{name}.": build_zone(name, serial, nameservers, sets.get(zone_id, ()), settings)
        for zone_id, name, serial, nameservers in zones
    }


def version_token(source: Session | UnitOfWork) -> str:
    """Changes whenever a zone or a record set changes (one row read): poll it, and call
    :func:`load_all` when it differs from the last one seen. "" before the first zone."""
    if isinstance(source, UnitOfWork):
        with source.reading():
            return _token(source.session)
    return _token(source)


def _token(session: Session) -> str:
    return session.scalar(sa.select(DnsState.zones_token).where(DnsState.id == 1)) or ""
