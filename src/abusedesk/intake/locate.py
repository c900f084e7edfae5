"""Locating a report's findings: who owned each address, URL and domain at the event's time.

A feed brings 100 000 rows, so addresses are not looked up one at a time: every address of every
finding (and every URL whose host is an address) goes through the prefix index in one vectorised
call (``inventory.locate.locate_addresses``), each with its own finding's event time. Names
(host names, domains) are few and repeat; each distinct one is looked up once per report. The
servers and accounts found are read in a handful of queries, not one per row.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.orm import Session, contains_eager
from sqlalchemy.orm.util import identity_key

from abusedesk.intake.formats._columns import NO_TIME, ColumnarRows
from abusedesk.intake.formats.base import FeedRows, Finding
from abusedesk.inventory.locate import Location, Via, locate_addresses, locate_in, target_host
from abusedesk.inventory.models import Server

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# Bound parameters per IN (...) query: SQLite's limit is far above, but plans stay small.
_IDS_PER_QUERY = 500


@dataclass(frozen=True, slots=True)
class Located:
    """Where each finding (by its index) was located. Kept as parallel lists, not a list per
    finding: a feed's 100 000 rows would otherwise make 100 000 small containers for nothing."""

    target: list[str | None]  # what located the finding (as reported), None: nothing did
    place: list[Location | None]  # whose it was, for the first customer concerned
    # Findings that concern more than one customer: every (target, place), the first included.
    several: dict[int, list[tuple[str, Location]]]

    def of(self, i: int) -> list[tuple[str, Location]]:
        """Each customer concerned by finding ``i`` once, by the first target it owns."""
        if i in self.several:
            return self.several[i]
        target, place = self.target[i], self.place[i]
        return [] if target is None or place is None else [(target, place)]


def targets(finding: Finding) -> list[str]:
    """What a finding names, addresses first (they are what a report is surest of), then URLs,
    then domains; each once."""
    if not finding.urls and not finding.domains and len(finding.addresses) == 1:
        return [finding.addresses[0]]
    return list(dict.fromkeys([*finding.addresses, *finding.urls, *finding.domains]))


def locate_findings(session: Session, findings: Sequence[Finding], default_at: datetime) -> Located:
    """Per finding, each customer concerned once, by the first of the finding's targets it owns
    (in ``targets`` order), at the finding's event time (``default_at`` when it has none)."""
    # Every address to look up, as parallel lists: its finding, its place among the finding's
    # targets, the target as reported, the address and the time. The loop runs once per row.
    slot_finding: list[int] = []
    slot_position: list[int] = []
    slot_target: list[str] = []
    texts: list[str] = []
    times: list[int] = []
    micros: dict[datetime, int] = {}
    named: list[tuple[int, int, str, str]] = []
    for i, finding in enumerate(findings):
        at = finding.event_time or default_at
        when = micros.get(at)
        if when is None:
            when = micros[at] = (at - _EPOCH) // _MICROSECOND
        if not finding.urls and not finding.domains:
            # A feed's row: addresses alone, which the parsers give in canonical form.
            addresses = finding.addresses
            for j, address in enumerate(
                addresses if len(addresses) == 1 else dict.fromkeys(addresses)
            ):
                slot_finding.append(i)
                slot_position.append(j)
                slot_target.append(address)
                texts.append(address)
                times.append(when)
            continue
        n_addresses = len(dict.fromkeys(finding.addresses))  # they come first in targets
        for j, target in enumerate(targets(finding)):
            host = target if j < n_addresses else target_host(target)
            if not host:
                continue
            if j < n_addresses or _is_address(host):
                slot_finding.append(i)
                slot_position.append(j)
                slot_target.append(target)
                texts.append(host)
                times.append(when)
            else:
                named.append((i, j, target, host))

    n = len(findings)
    result = Located([None] * n, [None] * n, {})
    first_at: dict[int, int] = {}  # the position among its targets of what located a finding
    pending: dict[int, list[tuple[int, str, Location]]] = {}  # findings located twice or more
    if texts:
        at_array = np.array(times, dtype=np.int64).view("datetime64[us]")
        servers = locate_addresses(session, texts, at_array).server_ids.tolist()
        places = _server_locations(session, {s for s in servers if s >= 0})
        for i, j, target, server_id in zip(
            slot_finding, slot_position, slot_target, servers, strict=True
        ):
            if server_id >= 0:
                place = places.get(server_id)
                if place is not None:
                    _found(result, first_at, pending, i, j, target, place)
    names: dict[str, Location | None] = {}
    for i, j, target, host in named:
        if host not in names:
            names[host] = locate_in(session, host)
        place = names[host]
        if place is not None:
            _found(result, first_at, pending, i, j, target, place)
    for i, hits in pending.items():
        hits.sort(key=lambda hit: hit[0])
        seen: dict[int, tuple[str, Location]] = {}
        for _, target, place in hits:
            seen.setdefault(place.account_id, (target, place))
        result.several[i] = list(seen.values())
        result.target[i], result.place[i] = result.several[i][0]
    return result


def locate_rows(
    session: Session, rows: FeedRows, default_at: datetime
) -> tuple[npt.NDArray[np.int64], dict[int, Location]]:
    """A feed's rows by their one address each, at each row's time (``default_at`` for a row
    without one), without making a Finding per row: the server id per row (-1: nobody's), and
    each server found."""
    times = _row_times(rows, (default_at - _EPOCH) // _MICROSECOND).view("datetime64[us]")
    servers = locate_addresses(session, rows.addresses, times).server_ids
    found = np.unique(servers[servers >= 0]).tolist()
    places = _server_locations(session, set(found))
    if len(places) < len(found):
        # A server the index knows but the table no longer has (deleted since the index was
        # built) locates nothing.
        servers = np.where(np.isin(servers, list(places)), servers, -1)
    return servers, places


def _row_times(rows: FeedRows, fallback: int) -> npt.NDArray[np.int64]:
    """Each row's time in microseconds since the epoch, ``fallback`` for a row without one."""
    if isinstance(rows, ColumnarRows):  # kept as microseconds already: no datetime per row
        micros = rows.time_micros()
        return np.where(micros == NO_TIME, fallback, micros)
    known = {at: (at - _EPOCH) // _MICROSECOND for at in set(rows.times) if at is not None}
    return np.array([fallback if at is None else known[at] for at in rows.times], dtype=np.int64)


def _found(
    result: Located,
    first_at: dict[int, int],
    pending: dict[int, list[tuple[int, str, Location]]],
    i: int,
    j: int,
    target: str,
    place: Location,
) -> None:
    first = result.place[i]
    if first is None:
        result.target[i], result.place[i] = target, place
        first_at[i] = j
        return
    hits = pending.get(i)
    if hits is None:
        hits = pending[i] = [(first_at[i], result.target[i] or "", first)]
    hits.append((j, target, place))


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


_SERVERS = (
    sa.select(Server)
    .join(Server.account)
    .options(contains_eager(Server.account))
    .where(Server.id.in_(sa.bindparam("ids", expanding=True)))
)
_HELD_ROWS = "abusedesk_located_servers"


def _server_locations(session: Session, server_ids: set[int]) -> dict[int, Location]:
    """One Location per server found; a server the index knows but the table no longer has
    (deleted since the index was built) locates nothing. Servers and accounts already in the
    session are not read again."""
    out: dict[int, Location] = {}
    ids = []
    for server_id in sorted(server_ids):
        known = session.identity_map.get(identity_key(Server, server_id))
        if isinstance(known, Server) and "account" in known.__dict__:
            account = known.account
            out[server_id] = Location(
                account.id, account.reference, account.name, server_id, known.hostname, Via.ADDRESS
            )
        else:
            ids.append(server_id)
    for start in range(0, len(ids), _IDS_PER_QUERY):
        # The rows as objects, not columns, held for as long as the session lives (its
        # identity map holds them weakly): the case service then finds each case's account
        # and server there without a query of its own.
        servers = list(
            session.execute(_SERVERS, {"ids": ids[start : start + _IDS_PER_QUERY]}).scalars()
        )
        session.info.setdefault(_HELD_ROWS, []).extend(servers)
        for server in servers:
            account = server.account
            out[server.id] = Location(
                account.id, account.reference, account.name, server.id, server.hostname, Via.ADDRESS
            )
    return out
