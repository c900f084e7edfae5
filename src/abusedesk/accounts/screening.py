"""The refuse-service list (R3): people, groups and businesses the provider will not serve.

All staff see it (SCREENING_VIEW); legal and admin keep it (SCREENING_EDIT). It is checked when
an account is created or reactivated (inventory.service.create_account and update_account): a
match refuses with Conflict naming the entry and its reason, unless the actor holds
SCREENING_EDIT and gives an override reason, which is audited. The same people who keep the list
make its exceptions; a NOC engineer who meets a match asks them.

Not checked: the bulk inventory import (an admin loading the provider's existing customer base,
which predates the list), and reconnection at the end of an abuse case (the same customer,
restored by the case's own process).
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from abusedesk.accounts.choices import ScreeningKind
from abusedesk.accounts.models import ScreeningEntry
from abusedesk.accounts.permissions import Actor, Permission
from abusedesk.accounts.screening_match import (
    ScreeningMatch,
    normalise_domain,
    screening_matches,
)
from abusedesk.accounts.validators import email_problem, split_list
from abusedesk.errors import Conflict, NotFound, ValidationError
from abusedesk.inventory.schemas import normalise_hostname
from abusedesk.store.uow import UnitOfWork

__all__ = [
    "ScreeningMatch",
    "add_screening",
    "gate",
    "list_screening",
    "override_details",
    "remove_screening",
    "screen",
    "screen_candidate",
    "screening_matches",
]

NAME_MAX = 200


def list_screening(
    uow: UnitOfWork, actor: Actor, *, include_removed: bool = False
) -> list[ScreeningEntry]:
    actor.require(Permission.SCREENING_VIEW)
    with uow.reading():
        query = sa.select(ScreeningEntry).order_by(ScreeningEntry.id)
        if not include_removed:
            query = query.where(ScreeningEntry.removed_at.is_(None))
        return list(uow.session.scalars(query))


def add_screening(
    uow: UnitOfWork,
    actor: Actor,
    kind: ScreeningKind,
    name: str,
    emails: str | Iterable[str],
    domains: str | Iterable[str],
    reason: str,
) -> ScreeningEntry:
    """A new entry. `emails` and `domains` are lists, or text with one per line or separated by
    commas. It needs a reason and at least one of a name, an e-mail or a domain; every problem
    is reported at once."""
    actor.require(Permission.SCREENING_EDIT)
    kind = ScreeningKind(kind)
    name = " ".join(name.split())
    reason = reason.strip()
    problems = []
    addresses = list(dict.fromkeys(e.lower() for e in split_list(emails)))
    problems += [why for e in addresses if (why := email_problem(e))]
    hosts = []
    for raw in split_list(domains):
        try:
            hosts.append(normalise_hostname(normalise_domain(raw)))
        except ValueError as exc:
            problems.append(str(exc))
    if len(name) > NAME_MAX:
        problems.append(f"a name has at most {NAME_MAX} characters")
    if not (name or addresses or hosts):
        problems.append("an entry needs a name, an e-mail address or a domain")
    if not reason:
        problems.append("an entry needs the reason service is refused")
    if problems:
        raise ValidationError("; ".join(problems), problems)
    with uow:
        entry = ScreeningEntry(
            kind=kind,
            name=name,
            emails=addresses,
            domains=list(dict.fromkeys(hosts)),
            reason=reason,
            added_by=actor.label,
            added_at=uow.clock.now(),
        )
        uow.session.add(entry)
        uow.session.flush()
        uow.audit(
            actor.label,
            "screening.add",
            "screening",
            entry.id,
            {
                "kind": kind.value,
                "name": name,
                "emails": addresses,
                "domains": entry.domains,
                "reason": reason,
            },
        )
        uow.commit()
        return entry


def remove_screening(uow: UnitOfWork, actor: Actor, entry_id: int, reason: str) -> ScreeningEntry:
    """Take an entry off the list; it stays on record with who removed it and why."""
    actor.require(Permission.SCREENING_EDIT)
    reason = reason.strip()
    if not reason:
        raise ValidationError("say why the entry is removed")
    with uow:
        entry = uow.session.get(ScreeningEntry, entry_id, with_for_update=True)
        if entry is None:
            raise NotFound(f"no screening entry #{entry_id}")
        if entry.removed_at is not None:
            raise Conflict(f"screening entry #{entry_id} was removed already")
        entry.removed_at = uow.clock.now()
        entry.removed_by = actor.label
        entry.removal_reason = reason
        uow.audit(actor.label, "screening.remove", "screening", entry.id, {"reason": reason})
        uow.commit()
        return entry


def screen(
    session: Session, name: str | Iterable[str], emails: Iterable[str], domains: Iterable[str]
) -> list[ScreeningMatch]:
    """The current entries a candidate matches, within the caller's transaction."""
    entries = session.scalars(
        sa.select(ScreeningEntry).where(ScreeningEntry.removed_at.is_(None))
    ).all()
    return screening_matches(entries, name, emails, domains)


def screen_candidate(
    uow: UnitOfWork, name: str | Iterable[str], emails: Iterable[str], domains: Iterable[str]
) -> list[ScreeningMatch]:
    """The check on its own, for a page that warns before anything is submitted."""
    with uow.reading():
        return screen(uow.session, name, emails, domains)


def gate(
    session: Session,
    actor: Actor,
    what: str,
    name: str | Iterable[str],
    emails: Iterable[str],
    domains: Iterable[str],
    override_reason: str | None,
) -> list[ScreeningMatch]:
    """Refuse `what` (an account being created or reactivated) if the candidate is on the list.
    Returns the matches an override let through (empty when nothing matched), for the caller
    to audit. Raises Conflict naming each entry and its reason, or PermissionDenied when an
    actor without SCREENING_EDIT tries to override."""
    matches = screen(session, name, emails, domains)
    if not matches:
        return []
    if not (override_reason and override_reason.strip()):
        raise Conflict(
            f"{what} is refused by the screening list: " + "; ".join(m.describe() for m in matches)
        )
    actor.require(Permission.SCREENING_EDIT)
    return matches


def override_details(matches: list[ScreeningMatch], override_reason: str) -> dict[str, object]:
    return {
        "entries": [m.entry_id for m in matches],
        "matched": [list(m.why) for m in matches],
        "reason": override_reason.strip(),
    }
