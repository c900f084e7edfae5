"""Changing managed DNS: zones and record sets, zone files in and out, the apex NS override.
The only way to change a zone. Every change checks the rules of :mod:`abusedesk.dns.validate`
against the whole zone, raises the zone's serial, writes a line of the zone's history and an
audit entry in one transaction; a change made by staff also queues a mail to the customer.

The data planes learn of a change by polling :func:`abusedesk.dns.snapshot.version_token`:
the database is the truth, and a plane that is down catches up when it polls again.

Who may do what: every staff role reads (`dns.view`); NOC and admins change any zone
(`dns.edit`) and the name servers (`dns.nameservers`); a customer user reads its own account's
zones, and changes them when it is the account's owner or a manager. Another account's zone
answers as one that does not exist.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.zone
import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from abusedesk.accounts.choices import AccountRole
from abusedesk.accounts.models import User
from abusedesk.accounts.permissions import SYSTEM, Actor, Permission
from abusedesk.dns import snapshot, validate
from abusedesk.dns.choices import ZoneChangeKind
from abusedesk.dns.models import RRSet, Zone, ZoneChange
from abusedesk.dns.serial import next_serial
from abusedesk.dns.settings import DnsSettings
from abusedesk.dns.validate import RRSetData, RRSetKey
from abusedesk.errors import Conflict, FieldError, FieldErrors, NotFound, PermissionDenied
from abusedesk.inventory.models import Account, IPAssignment, Server
from abusedesk.notify.choices import MessageTemplate
from abusedesk.notify.models import OutboxMessage
from abusedesk.notify.outbox import outbox_rows
from abusedesk.store.uow import UnitOfWork

MAX_ZONE_FILE = 1024 * 1024  # characters of an imported zone file
MAX_NAMESERVERS = 13  # what fits a classic 512-octet referral
_GENERATE = re.compile(r"^\s*\$GENERATE\b", re.IGNORECASE | re.MULTILINE)
_MAIL_LINES = 20  # changes listed in one mail to the customer; the history has them all


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What an import changed (counted in record sets), and what it ignored, in words."""

    zone: str
    serial: int
    created: int = 0
    replaced: int = 0
    deleted: int = 0
    unchanged: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.replaced or self.deleted)


# -- zones ----------------------------------------------------------------------------------


def create_zone(uow: UnitOfWork, actor: Actor, account: str | int, name: str) -> Zone:
    """A new, empty zone (the provider's SOA and NS only) for the account (its reference or
    id). Refused: a name validate.zone_name refuses, an existing zone, a name inside or above
    another account's zone, and a reverse zone for addresses the account does not hold."""
    actor.require(Permission.DNS_EDIT)
    canonical = validate.zone_name(name)
    with uow:
        owner = _account(uow.session, actor, account)
        _require_editor(uow.session, actor, owner.id)
        _refuse_overlap(uow.session, owner.id, canonical)
        if validate.is_reverse(canonical):
            _require_addresses(uow.session, owner.id, canonical)
        now = uow.clock.now()
        zone = Zone(
            account=owner,
            name=canonical,
            serial=next_serial(0, now.date()),
            nameservers=[],
            created_at=now,
            updated_at=now,
            rrsets=[],
        )
        uow.session.add(zone)
        uow.session.flush()
        _record_change(
            uow,
            actor,
            zone,
            ZoneChangeKind.ZONE_CREATED,
            f"zone {canonical} created",
            "dns.zone.create",
            {"zone": canonical, "account": owner.reference},
        )
        return zone


def delete_zone(uow: UnitOfWork, actor: Actor, name: str, *, reason: str = "") -> None:
    """The zone, its records, history and load samples; the audit log keeps what happened."""
    with uow:
        zone = _zone_for_edit(uow, actor, name)
        sets = len(zone.rrsets)
        _tell_customer(uow, actor, zone, [f"zone {zone.name} deleted"], reason)
        uow.audit(
            actor.label,
            "dns.zone.delete",
            "dns_zone",
            zone.id,
            {"zone": zone.name, "account": zone.account.reference, "rrsets": sets}
            | ({"reason": reason} if reason else {}),
        )
        uow.session.delete(zone)
        uow.commit()


def list_zones(
    uow: UnitOfWork,
    actor: Actor,
    account: str | None = None,
    search: str = "",
    limit: int = 100,
    offset: int = 0,
) -> list[Zone]:
    """Zones by name, with their account loaded (not their record sets). Staff see every
    account's, or one account's by reference; a customer its own account's alone."""
    actor.require(Permission.DNS_VIEW)
    query = sa.select(Zone).options(selectinload(Zone.account))
    with uow.reading():
        if not actor.is_staff:
            query = query.where(Zone.account_id == actor.account_id)
        if account is not None:
            account_id = uow.session.scalar(
                sa.select(Account.id).where(Account.reference == account)
            )
            if account_id is None or not (actor.is_staff or account_id == actor.account_id):
                raise NotFound(f"no account {account}")
            query = query.where(Zone.account_id == account_id)
        if text := search.strip().lower():
            query = query.where(Zone.name.contains(text, autoescape=True))
        return list(
            uow.session.scalars(query.order_by(Zone.name).limit(min(limit, 1000)).offset(offset))
        )


def get_zone(uow: UnitOfWork, actor: Actor, name: str) -> Zone:
    """The zone with its account and record sets (ordered by name, then type)."""
    actor.require(Permission.DNS_VIEW)
    with uow.reading():
        return _zone(uow.session, actor, name)


def zone_history(
    uow: UnitOfWork, actor: Actor, name: str, limit: int = 100, offset: int = 0
) -> list[ZoneChange]:
    """The zone's changes, newest first."""
    actor.require(Permission.DNS_VIEW)
    with uow.reading():
        zone = _zone(uow.session, actor, name, load_sets=False)
        return list(
            uow.session.scalars(
                sa.select(ZoneChange)
                .where(ZoneChange.zone_id == zone.id)
                .order_by(ZoneChange.id.desc())
                .limit(min(limit, 1000))
                .offset(offset)
            )
        )


def set_nameservers(
    uow: UnitOfWork, actor: Actor, name: str, nameservers: Sequence[str], *, reason: str = ""
) -> Zone:
    """Staff: the zone's apex NS from now on (and its SOA MNAME, the first); an empty list
    goes back to the provider's name servers. Errors on ``nameservers[i]``."""
    actor.require(Permission.DNS_NAMESERVERS)
    hosts = _nameserver_names(nameservers)
    with uow:
        zone = _zone_for_edit(uow, actor, name)
        before = list(zone.nameservers)
        if hosts == before:
            return zone
        _require_glue(zone, hosts)
        zone.nameservers = hosts
        _touch(uow, zone)
        shown = ", ".join(hosts) if hosts else "the provider's name servers"
        _record_change(
            uow,
            actor,
            zone,
            ZoneChangeKind.NAMESERVERS_CHANGED,
            f"name servers: {shown}",
            "dns.zone.nameservers",
            {"zone": zone.name, "before": before, "after": hosts},
            reason=reason,
            subname="",
            rtype="NS",
            before={"nameservers": before},
            after={"nameservers": hosts},
        )
        return zone


# -- record sets ----------------------------------------------------------------------------


def put_rrset(
    uow: UnitOfWork,
    actor: Actor,
    zone_name: str,
    subname: str,
    rtype: str,
    ttl: int | None,
    records: Sequence[str],
    settings: DnsSettings,
    *,
    reason: str = "",
) -> RRSet | None:
    """Create or replace the set of one name and type ("" or "@" for the apex; a TTL of None
    takes the default). No records deletes the set. Raises FieldErrors on ``subname``,
    ``type``, ``ttl``, ``records`` and ``records[i]``. The set returned (None when deleted)
    is unchanged, and the serial too, when it already held exactly these records."""
    actor.require(Permission.DNS_EDIT)
    if not records:
        with uow:
            zone = _zone_for_edit(uow, actor, zone_name)
            key = _key(zone.name, subname, rtype)
            if _find(zone, key) is None:
                return None
        delete_rrset(uow, actor, zone_name, subname, rtype, reason=reason)
        return None
    with uow:
        zone = _zone_for_edit(uow, actor, zone_name)
        data = validate.rrset(zone.name, subname, rtype, ttl, records, settings)
        current = _sets(zone)
        before = current.get(data.key)
        if before is not None and _same(before, data):
            return _find(zone, data.key)
        proposed = dict(current)
        proposed[data.key] = data
        problems = validate.check_zone(zone.name, proposed, settings, focus={data.key})
        if problems:
            raise FieldErrors(validate.problems_as_errors(problems))
        row = _write(uow, zone, data)
        _touch(uow, zone)
        _record_change(
            uow,
            actor,
            zone,
            ZoneChangeKind.RRSET_REPLACED if before else ZoneChangeKind.RRSET_CREATED,
            _set_summary(data.key, before, data),
            "dns.rrset.put",
            {"zone": zone.name, "subname": data.subname, "type": data.type, "ttl": data.ttl}
            | {"records": list(data.records)},
            reason=reason,
            subname=data.subname,
            rtype=data.type,
            before=_as_json(before),
            after=_as_json(data),
        )
        return row


def delete_rrset(
    uow: UnitOfWork,
    actor: Actor,
    zone_name: str,
    subname: str,
    rtype: str,
    *,
    reason: str = "",
) -> None:
    """Refused when the zone would break a rule without it (the glue of a delegation)."""
    actor.require(Permission.DNS_EDIT)
    with uow:
        zone = _zone_for_edit(uow, actor, zone_name)
        key = _key(zone.name, subname, rtype)
        current = _sets(zone)
        before = current.pop(key, None)
        row = _find(zone, key)
        if before is None or row is None:
            raise NotFound(f"no {key[1]} records at {key[0] or '@'} in {zone.name}")
        # The settings' bounds only limit what is added; a deletion needs none of them.
        problems = validate.check_zone(zone.name, current, DnsSettings(), {key})
        if problems:
            raise FieldErrors(validate.problems_as_errors(problems))
        zone.rrsets.remove(row)
        _touch(uow, zone)
        _record_change(
            uow,
            actor,
            zone,
            ZoneChangeKind.RRSET_DELETED,
            _set_summary(key, before, None),
            "dns.rrset.delete",
            {"zone": zone.name, "subname": key[0], "type": key[1]},
            reason=reason,
            subname=key[0],
            rtype=key[1],
            before=_as_json(before),
        )


# -- zone files -----------------------------------------------------------------------------


def import_zone_file(
    uow: UnitOfWork,
    actor: Actor,
    zone_name: str,
    text: str,
    settings: DnsSettings,
    *,
    replace: bool = False,
    reason: str = "",
) -> ImportResult:
    """Record sets from a zone file (RFC 1035 master file syntax, as dnspython reads it; names
    relative to the zone unless absolute). Each set in the file replaces the set of its name
    and type; with `replace`, sets the file does not name are deleted too. The SOA and the
    apex NS in the file are ignored (notes say so), names outside the zone are skipped, and
    `$INCLUDE` and `$GENERATE` are refused. All or nothing: every set is checked, and every
    error raised at once (FieldErrors on ``text``, or ``<name>/<type> <field>``)."""
    actor.require(Permission.DNS_EDIT)
    with uow:
        zone = _zone_for_edit(uow, actor, zone_name)
        incoming, notes = read_zone_file(zone.name, text, settings)
        current = _sets(zone)
        proposed = {} if replace else dict(current)
        proposed.update(incoming)
        problems = validate.check_zone(
            zone.name, proposed, settings, focus=None if replace else set(incoming)
        )
        if problems:
            raise FieldErrors(validate.problems_as_errors(problems, prefix=True))
        created = [k for k in incoming if k not in current]
        replaced = [k for k in incoming if k in current and not _same(current[k], incoming[k])]
        unchanged = [k for k in incoming if k in current and _same(current[k], incoming[k])]
        deleted = [k for k in current if k not in proposed]
        result = ImportResult(
            zone.name,
            zone.serial,
            len(created),
            len(replaced),
            len(deleted),
            len(unchanged),
            notes,
        )
        if not result.changed:
            return result
        _touch(uow, zone)
        lines: list[str] = []
        for key in sorted(created):
            _write(uow, zone, incoming[key])
            lines.append(_set_summary(key, None, incoming[key]))
            _set_history(
                uow, zone, actor, ZoneChangeKind.RRSET_CREATED, key, None, incoming[key],
                lines[-1] + " (import)",
            )  # fmt: skip
        for key in sorted(replaced):
            _write(uow, zone, incoming[key])
            lines.append(_set_summary(key, current[key], incoming[key]))
            _set_history(
                uow, zone, actor, ZoneChangeKind.RRSET_REPLACED, key, current[key],
                incoming[key], lines[-1] + " (import)",
            )  # fmt: skip
        for key in sorted(deleted):
            row = _find(zone, key)
            if row is not None:
                zone.rrsets.remove(row)
            lines.append(_set_summary(key, current[key], None))
            _set_history(
                uow, zone, actor, ZoneChangeKind.RRSET_DELETED, key, current[key], None,
                lines[-1] + " (import)",
            )  # fmt: skip
        counts = (
            f"{len(created)} created, {len(replaced)} replaced, {len(deleted)} deleted, "
            f"{len(unchanged)} unchanged"
        )
        _record_change(
            uow,
            actor,
            zone,
            ZoneChangeKind.ZONE_IMPORTED,
            f"zone file imported: {counts}",
            "dns.zone.import",
            {
                "zone": zone.name,
                "replace": replace,
                "created": len(created),
                "replaced": len(replaced),
                "deleted": len(deleted),
            },
            reason=reason,
            mail=lines,
        )
        return dataclasses.replace(result, serial=zone.serial)


def export_zone_file(uow: UnitOfWork, actor: Actor, name: str, settings: DnsSettings) -> str:
    """The zone as a master file, SOA and apex NS included, names relative to `$ORIGIN`:
    what the data planes serve. Importing it again changes nothing."""
    actor.require(Permission.DNS_VIEW)
    with uow.reading():
        zone = _zone(uow.session, actor, name)
        built = snapshot.zone_of(zone, settings)
    body = built.to_text(sorted=True, relativize=True, want_origin=True)
    header = f"; zone {zone.name}, serial {zone.serial}, exported from abusedesk\n"
    return header + f"$TTL {settings.default_ttl}\n" + body


def read_zone_file(
    zone: str, text: str, settings: DnsSettings
) -> tuple[dict[RRSetKey, RRSetData], list[str]]:
    """The record sets of a zone file, each checked on its own (pure: no database), and notes on
    what was ignored. FieldErrors on ``text`` or ``<owner>/<type> <field>``."""
    if not isinstance(text, str) or not text.strip():
        raise FieldErrors([FieldError("text", "the zone file is empty")])
    if len(text) > MAX_ZONE_FILE:
        raise FieldErrors(
            [FieldError("text", f"a zone file is at most {MAX_ZONE_FILE} characters")]
        )
    if _GENERATE.search(text):
        raise FieldErrors([FieldError("text", "$GENERATE is not supported: list the records")])
    origin = validate.origin_of(zone)
    try:
        parsed = dns.zone.from_text(
            text,
            origin=origin,
            relativize=True,
            check_origin=False,
            allow_include=False,
            rdclass=dns.rdataclass.IN,
        )
    except dns.zone.UnknownOrigin as exc:
        raise FieldErrors([FieldError("text", "the file has no $ORIGIN")]) from exc
    except validate.PARSE_ERRORS as exc:
        raise FieldErrors([FieldError("text", _where(exc))]) from exc
    notes: list[str] = []
    errors: list[FieldError] = []
    incoming: dict[RRSetKey, RRSetData] = {}
    for name, rdataset in parsed.iterate_rdatasets():
        rtype = dns.rdatatype.to_text(rdataset.rdtype)
        owner = "" if name == dns.name.empty else name.to_text().lower()
        where = f"{owner or '@'}/{rtype}"
        if rtype == "SOA":
            notes.append("the SOA in the file is ignored: the provider's SOA is served")
            continue
        if rtype == "NS" and owner == "":
            notes.append(
                "the zone's own NS records in the file are ignored: the provider's name "
                "servers serve it"
            )
            continue
        texts = [rd.to_text(origin=origin, relativize=False) for rd in rdataset]
        try:
            data = validate.rrset(zone, owner, rtype, rdataset.ttl, texts, settings)
        except FieldErrors as exc:
            errors.extend(FieldError(f"{where} {e.field}", e.message) for e in exc.errors)
            continue
        incoming[data.key] = data
    if errors:
        raise FieldErrors(errors)
    if not incoming and not notes:
        raise FieldErrors([FieldError("text", f"the file holds no records of {zone}")])
    return incoming, notes


def _where(exc: BaseException) -> str:
    # dnspython says "<string>:7: message": where is what the customer needs.
    text = str(exc).strip() or type(exc).__name__
    if "CNAME" in text and "not compatible" in text:  # dnspython refuses it as it reads
        return "a CNAME is alone at its name (RFC 2181 §10.1): the file has other data beside one"
    match = re.match(r"^<[a-z]+>:(\d+):\s*(.*)$", text, re.DOTALL)
    # dnspython names the line its reader was on, sometimes the one after the culprit.
    return f"near line {match.group(1)}: {match.group(2)}" if match else text


# -- helpers --------------------------------------------------------------------------------


def _canonical_name(name: str) -> str:
    return name.strip().rstrip(".").lower() if isinstance(name, str) else ""


def _zone(session: Session, actor: Actor, name: str, load_sets: bool = True) -> Zone:
    options = [selectinload(Zone.account)]
    if load_sets:
        options.append(selectinload(Zone.rrsets))
    canonical = _canonical_name(name)
    zone = session.scalar(sa.select(Zone).where(Zone.name == canonical).options(*options))
    if zone is None or not (actor.is_staff or zone.account_id == actor.account_id):
        raise NotFound(f"no zone {canonical}")
    return zone


def _zone_for_edit(uow: UnitOfWork, actor: Actor, name: str) -> Zone:
    """The zone, locked against a concurrent change (PostgreSQL), for an editor."""
    actor.require(Permission.DNS_EDIT)
    canonical = _canonical_name(name)
    zone_id = uow.session.scalar(sa.select(Zone.id).where(Zone.name == canonical).with_for_update())
    if zone_id is None:
        raise NotFound(f"no zone {canonical}")
    zone = _zone(uow.session, actor, canonical)
    _require_editor(uow.session, actor, zone.account_id)
    return zone


def _account(session: Session, actor: Actor, account: str | int) -> Account:
    if isinstance(account, int):
        found = session.get(Account, account)
    else:
        found = session.scalar(sa.select(Account).where(Account.reference == account))
    if found is None or not (actor.is_staff or found.id == actor.account_id):
        raise NotFound(f"no account {account}")
    return found


def _require_editor(session: Session, actor: Actor, account_id: int) -> None:
    """Staff with `dns.edit`; a customer user who is its account's owner or a manager."""
    actor.require(Permission.DNS_EDIT)
    if actor.is_staff:
        return
    actor.require_account(account_id, "zone")
    user = session.get(User, actor.user_id) if actor.user_id is not None else None
    if (
        user is None
        or user.account_id != account_id
        or user.account_role not in (AccountRole.OWNER, AccountRole.MANAGER)
    ):
        raise PermissionDenied("only the account's owners and managers change its DNS zones")


def _refuse_overlap(session: Session, account_id: int, name: str) -> None:
    if session.scalar(sa.select(Zone.id).where(Zone.name == name)) is not None:
        raise Conflict(f"a zone {name} exists already")
    labels = name.split(".")
    above = [".".join(labels[i:]) for i in range(1, len(labels))]
    rows = session.execute(
        sa.select(Zone.name, Zone.account_id).where(
            sa.or_(Zone.name.in_(above), Zone.name.endswith("." + name, autoescape=True))
        )
    ).all()
    for other, owner in rows:
        if owner == account_id:
            continue  # an account may split its own domain into zones
        if other in above:
            raise Conflict(f"{name} is inside the zone {other} of another account")
        raise Conflict(f"{name} holds the zone {other} of another account")


def _require_addresses(session: Session, account_id: int, name: str) -> None:
    """A reverse zone only for addresses routed to the account's servers now."""
    network = validate.reverse_network(name)
    prefixes = session.scalars(
        sa.select(IPAssignment.prefix)
        .join(Server, Server.id == IPAssignment.server_id)
        .where(
            Server.account_id == account_id,
            IPAssignment.family == network.version,
            IPAssignment.valid_until.is_(None),
        )
    ).all()
    for prefix in prefixes:
        held = ipaddress.ip_network(prefix, strict=False)
        if held.version == network.version and network.subnet_of(held):  # type: ignore[arg-type]
            return
    raise FieldErrors(
        [FieldError("name", f"{network} is not (all) routed to this account's servers")]
    )


def _nameserver_names(nameservers: Sequence[str]) -> list[str]:
    if isinstance(nameservers, str):
        raise FieldErrors([FieldError("nameservers", "give the name servers as a list")])
    if len(nameservers) > MAX_NAMESERVERS:
        raise FieldErrors([FieldError("nameservers", f"at most {MAX_NAMESERVERS} name servers")])
    if len(nameservers) == 1:
        raise FieldErrors(
            [FieldError("nameservers", "a zone needs at least two name servers (RFC 1034 §4.1)")]
        )
    hosts: list[str] = []
    errors: list[FieldError] = []
    for i, text in enumerate(nameservers):
        here = f"nameservers[{i}]"
        host = _host_name(text)
        if host is None:
            errors.append(FieldError(here, f"{text!r} is not a host name"))
        elif host + "." in hosts:
            errors.append(FieldError(here, f"{host} is named twice"))
        else:
            hosts.append(host + ".")
    if errors:
        raise FieldErrors(errors)
    return hosts


def _host_name(text: object) -> str | None:
    """A name server's host name: letters, digits and hyphens, two labels or more (a name
    server may well live under a special-use or public-suffix name's rules; not a zone's)."""
    if not isinstance(text, str):
        return None
    raw = text.strip().rstrip(".").lower()
    labels = raw.split(".")
    if len(labels) < 2 or len(raw) > 253:
        return None
    if not all(re.match(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$", label) for label in labels):
        return None
    return raw


def _require_glue(zone: Zone, hosts: Sequence[str]) -> None:
    origin = validate.origin_of(zone.name)
    sets = _sets(zone)
    errors = []
    for i, host in enumerate(hosts):
        name = dns.name.from_text(host)
        if not name.is_subdomain(origin):
            continue
        relative = name.relativize(origin)
        owner = "" if relative == dns.name.empty else relative.to_text().lower()
        if (owner, "A") not in sets and (owner, "AAAA") not in sets:
            errors.append(
                FieldError(f"nameservers[{i}]", f"{host} is inside the zone: add its A or AAAA")
            )
    if errors:
        raise FieldErrors(errors)


def _key(zone: str, subname: str, rtype: str) -> RRSetKey:
    owner = validate.subname(zone, subname)
    kind = rtype.strip().upper() if isinstance(rtype, str) else ""
    try:
        kind = dns.rdatatype.to_text(dns.rdatatype.from_text(kind))
    except validate.PARSE_ERRORS as exc:
        raise FieldErrors([FieldError("type", f"{rtype!r} is not a record type")]) from exc
    return (owner, kind)


def _sets(zone: Zone) -> dict[RRSetKey, RRSetData]:
    return {
        (s.subname, s.type): RRSetData(s.subname, s.type, s.ttl, tuple(s.records))
        for s in zone.rrsets
    }


def _find(zone: Zone, key: RRSetKey) -> RRSet | None:
    return next((s for s in zone.rrsets if (s.subname, s.type) == key), None)


def _same(a: RRSetData, b: RRSetData) -> bool:
    return a.ttl == b.ttl and sorted(a.records) == sorted(b.records)


def _write(uow: UnitOfWork, zone: Zone, data: RRSetData) -> RRSet:
    now = uow.clock.now()
    row = _find(zone, data.key)
    if row is None:
        row = RRSet(
            subname=data.subname,
            type=data.type,
            ttl=data.ttl,
            records=list(data.records),
            updated_at=now,
        )
        zone.rrsets.append(row)
    else:
        row.ttl = data.ttl
        row.records = list(data.records)
        row.updated_at = now
    return row


def _touch(uow: UnitOfWork, zone: Zone) -> None:
    now = uow.clock.now()
    zone.serial = next_serial(zone.serial, now.date())
    zone.updated_at = now


def _as_json(data: RRSetData | None) -> dict[str, Any] | None:
    return None if data is None else {"ttl": data.ttl, "records": list(data.records)}


def _set_summary(key: RRSetKey, before: RRSetData | None, after: RRSetData | None) -> str:
    where = f"{key[0] or '@'} {key[1]}"
    if after is None:
        return f"{where} deleted"
    records = "; ".join(after.records)
    if len(records) > 200:
        records = records[:199] + "…"
    verb = "replaced" if before is not None else "added"
    return f"{where} {verb}: TTL {after.ttl}, {records}"


def _history(
    uow: UnitOfWork,
    zone: Zone,
    actor: Actor,
    kind: ZoneChangeKind,
    summary: str,
    *,
    subname: str | None = None,
    rtype: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    uow.insert_later(
        ZoneChange,
        {
            "zone_id": zone.id,
            "at": uow.clock.now(),
            "actor": actor.label,
            "staff": actor.is_staff,
            "kind": kind,
            "subname": subname,
            "type": rtype,
            "summary": summary,
            "serial": zone.serial,  # the serial the change ends with: _touch comes first
            "before": before,
            "after": after,
        },
    )


def _set_history(
    uow: UnitOfWork,
    zone: Zone,
    actor: Actor,
    kind: ZoneChangeKind,
    key: RRSetKey,
    before: RRSetData | None,
    after: RRSetData | None,
    summary: str,
) -> None:
    _history(
        uow,
        zone,
        actor,
        kind,
        summary,
        subname=key[0],
        rtype=key[1],
        before=_as_json(before),
        after=_as_json(after),
    )


def _record_change(
    uow: UnitOfWork,
    actor: Actor,
    zone: Zone,
    kind: ZoneChangeKind,
    summary: str,
    action: str,
    details: dict[str, Any],
    *,
    reason: str = "",
    mail: Sequence[str] | None = None,
    subname: str | None = None,
    rtype: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """How every change to a zone that stays ends: its history line (`summary`, and `subname`,
    `rtype`, `before` and `after` as :func:`_history` takes them), the audit entry `action`
    with `details` and the reason when one is given, the customer's mail (the lines of `mail`,
    the summary alone when None) and the commit that makes them one. The serial is touched
    already where the change raises it: the history records the serial the change ends with."""
    _history(
        uow, zone, actor, kind, summary, subname=subname, rtype=rtype, before=before, after=after
    )
    uow.audit(
        actor.label,
        action,
        "dns_zone",
        zone.id,
        details | ({"reason": reason} if reason else {}),
    )
    _tell_customer(uow, actor, zone, [summary] if mail is None else mail, reason)
    uow.commit()


def _tell_customer(
    uow: UnitOfWork, actor: Actor, zone: Zone, changes: Iterable[str], reason: str
) -> None:
    """Staff changed a customer's zone: the account's technical (or abuse) contacts are told,
    in the same transaction as the change. The built-in SYSTEM actor (seeding, the demo) is
    nobody the customer needs to hear of."""
    if not actor.is_staff or actor == SYSTEM:
        return
    lines = list(changes)
    if len(lines) > _MAIL_LINES:
        lines = [*lines[:_MAIL_LINES], f"… and {len(lines) - _MAIL_LINES} more (see the history)"]
    account = zone.account
    context: Mapping[str, Any] = {
        "ticket": "",  # about no case: no tag in the subject, no thread
        "account_reference": account.reference,
        "account_name": account.name,
        "language": account.language,
        "zone": zone.name,
        "changes": lines,
        "note": reason,
    }
    for row in outbox_rows(account, MessageTemplate.DNS_CHANGED, dict(context), uow.clock.now()):
        uow.insert_later(OutboxMessage, row)
