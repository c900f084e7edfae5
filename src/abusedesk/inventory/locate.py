"""Who a reported thing belongs to: an address, host name, URL, e-mail address or domain,
at a time, mapped to an account and a server.

Addresses go through the vectorised prefix index (longest prefix, aware of time), rebuilt when
the assignments change; names go through the servers' host names and the accounts' domains.
"""

from __future__ import annotations

import ipaddress
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.orm import Session

from abusedesk.accounts.permissions import Actor, Permission
from abusedesk.inventory.models import Account, Domain, InventoryState, IPAssignment, Server
from abusedesk.inventory.prefix_index import Assignment, PrefixIndex
from abusedesk.store.uow import UnitOfWork


class Via(StrEnum):
    ADDRESS = "address"
    HOSTNAME = "hostname"
    DOMAIN = "domain"


@dataclass(frozen=True, slots=True)
class Location:
    account_id: int
    account_reference: str
    account_name: str
    server_id: int | None
    hostname: str | None
    via: Via
    prefix: str | None = None  # the assignment that matched, for an address
    domain: str | None = None  # the registered domain that matched, for a name


_DEFANG = [
    (re.compile(r"\[(\.|dot)\]|\((\.|dot)\)", re.I), "."),
    (re.compile(r"^hxxp", re.I), "http"),
]


def target_host(target: str) -> str:
    """The host part of whatever was reported, with the usual defanging undone.

    >>> target_host("hxxps://www.example[.]com:8443/login.php")
    'www.example.com'
    >>> target_host("mailer@bad.example")
    'bad.example'
    >>> target_host("[2001:db8::1]:25")
    '2001:db8::1'
    """
    text = target.strip()
    for pattern, replacement in _DEFANG:
        text = pattern.sub(replacement, text)
    if "://" in text:
        text = urlsplit(text).hostname or ""
    elif "@" in text and "/" not in text:
        text = text.rsplit("@", 1)[1]
    if text.startswith("["):  # [v6]:port
        text = text[1 : text.find("]")] if "]" in text else text[1:]
    elif text.count(":") == 1:  # host:port
        text = text.split(":", 1)[0]
    else:
        text = text.split("/", 1)[0]
    return text.rstrip(".").lower()


_FINGERPRINT = sa.select(
    sa.select(InventoryState.assignments_token).where(InventoryState.id == 1).scalar_subquery(),
    sa.select(sa.func.count(IPAssignment.id)).scalar_subquery(),
)
# session.info: the index this session has checked, when it checks only once (hold_index).
_HELD = "abusedesk_prefix_index_held"


class _Index:
    """The prefix index of one database, with the rows its owner ids stand for."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fingerprint: tuple[object, ...] | None = None
        self.index = PrefixIndex.build([])
        self.server_of: npt.NDArray[np.int64] = np.full(1, -1, dtype=np.int64)
        self.account_of: npt.NDArray[np.int64] = np.full(1, -1, dtype=np.int64)
        self.prefix_of: dict[int, str] = {}

    def refresh(self, session: Session) -> None:
        # One query for both halves of the fingerprint: it runs for every report located.
        token, count = session.execute(_FINGERPRINT).one()
        fingerprint = (token, count)
        if fingerprint == self.fingerprint:
            return
        rows = session.execute(
            sa.select(
                IPAssignment.id,
                IPAssignment.prefix,
                IPAssignment.valid_from,
                IPAssignment.valid_until,
                IPAssignment.server_id,
                Server.account_id,
            ).join(Server, Server.id == IPAssignment.server_id)
        ).all()
        size = max((r.id for r in rows), default=0) + 1
        server_of = np.full(size, -1, dtype=np.int64)
        account_of = np.full(size, -1, dtype=np.int64)
        for r in rows:
            server_of[r.id] = r.server_id
            account_of[r.id] = r.account_id
        self.index = PrefixIndex.build(
            Assignment(r.prefix, r.id, r.valid_from, r.valid_until) for r in rows
        )
        self.server_of, self.account_of = server_of, account_of
        self.prefix_of = {r.id: r.prefix for r in rows}
        self.fingerprint = fingerprint


_indexes: dict[str, _Index] = {}
_indexes_lock = threading.Lock()


def _index_for(session: Session) -> _Index:
    key = str(session.get_bind().engine.url)
    with _indexes_lock:
        index = _indexes.get(key)
        if index is None:  # not setdefault: an _Index is costly to build only to throw away
            index = _indexes[key] = _Index()
    # object, not the Any of info.get: "held is index" would narrow index to Any | None
    held: object = session.info.get(_HELD)
    if held is index:
        return index
    with index.lock:
        index.refresh(session)
    if held is not None:
        session.info[_HELD] = index
    return index


def hold_index(session: Session) -> None:
    """From now on this session checks the prefix index for freshness once, at its next
    lookup, and then keeps what it found: for a batch job whose session is one short
    transaction (the intake worker's ten reports), which would otherwise check before each
    report. Assignments changed by others meanwhile are seen by the next session."""
    session.info.setdefault(_HELD, False)


def locate(
    uow: UnitOfWork, actor: Actor, target: str, at: datetime | None = None
) -> Location | None:
    actor.require(Permission.INVENTORY_VIEW)
    with uow.reading():
        return locate_in(uow.session, target, at)


def locate_in(session: Session, target: str, at: datetime | None = None) -> Location | None:
    """Within the caller's transaction (intake and detectors locate as part of their work)."""
    host = target_host(target)
    if not host:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return _locate_name(session, host)
    index = _index_for(session)
    owner = index.index.lookup(address, at)
    if owner is None:
        return None
    server = session.get(Server, int(index.server_of[owner]))
    if server is None:
        return None
    return Location(
        server.account_id,
        server.account.reference,
        server.account.name,
        server.id,
        server.hostname,
        Via.ADDRESS,
        prefix=index.prefix_of.get(owner),
    )


def _locate_name(session: Session, host: str) -> Location | None:
    server = session.scalar(sa.select(Server).where(Server.hostname == host))
    if server is not None:
        account = server.account
        return Location(
            account.id, account.reference, account.name, server.id, server.hostname, Via.HOSTNAME
        )
    labels = host.split(".")
    candidates = [".".join(labels[i:]) for i in range(len(labels) - 1)] or [host]
    domain = session.scalar(
        sa.select(Domain)
        .where(Domain.name.in_(candidates))
        .order_by(sa.func.length(Domain.name).desc())
        .limit(1)
    )
    if domain is None:
        return None
    owner: Account = domain.account
    return Location(
        owner.id,
        owner.reference,
        owner.name,
        domain.server_id,
        domain.server.hostname if domain.server else None,
        Via.DOMAIN,
        domain=domain.name,
    )


@dataclass(frozen=True, slots=True)
class BulkLocation:
    """Per address: the server and account ids, -1 where nobody had it."""

    server_ids: npt.NDArray[np.int64]
    account_ids: npt.NDArray[np.int64]


def locate_addresses(
    session: Session, addresses: Sequence[str], at: datetime | np.ndarray | None = None
) -> BulkLocation:
    """Many addresses at once (a feed, a flow window): one vectorised pass, no query per row."""
    index = _index_for(session)
    owners = index.index.lookup_many(addresses, at)
    return _owners_to_ids(index, owners)


def current_index(session: Session) -> _Index:
    """The prefix index of this session's database, refreshed if the assignments changed; a
    caller that looks up in many batches (the flow collector) keeps it and calls again now and
    then to refresh."""
    return _index_for(session)


def server_ids_of_packed(
    index: _Index,
    ip_version: npt.NDArray[np.uint8],
    hi: npt.NDArray[np.uint64],
    lo: npt.NDArray[np.uint64],
) -> npt.NDArray[np.int64]:
    """The server holding each address now (-1: none), for addresses packed as the flow
    decoders give them: IPv6 as two 64-bit halves, IPv4 in the low 32 bits."""
    v4 = ip_version == 4
    if v4.all():  # the common batch: no masks to apply or fill
        owners = index.index.lookup_v4((lo & np.uint64(0xFFFF_FFFF)).astype(np.uint32))
    else:
        owners = np.full(len(ip_version), -1, dtype=np.int64)
        v6 = ip_version == 6
        if v4.any():
            owners[v4] = index.index.lookup_v4((lo[v4] & np.uint64(0xFFFF_FFFF)).astype(np.uint32))
        if v6.any():
            owners[v6] = index.index.lookup_v6(np.stack([hi[v6], lo[v6]], axis=1))
    # -1 (none) reads the last entry; the where puts -1 back. No account ids: not asked for.
    return np.where(owners >= 0, index.server_of[owners], -1)


def _owners_to_ids(index: _Index, owners: npt.NDArray[np.int64]) -> BulkLocation:
    found = owners >= 0
    safe = np.where(found, owners, 0)
    return BulkLocation(
        np.where(found, index.server_of[safe], -1), np.where(found, index.account_of[safe], -1)
    )
