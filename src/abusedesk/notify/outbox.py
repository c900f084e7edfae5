"""Writing messages to the outbox, inside the caller's transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from abusedesk.inventory.choices import ContactKind
from abusedesk.inventory.models import Account
from abusedesk.notify.choices import Audience, MessageTemplate, OutboxState
from abusedesk.notify.models import OutboxMessage
from abusedesk.notify.routing import AUDIENCES, USER_TEMPLATES


def outbox_rows(
    account: Account,
    template: MessageTemplate,
    context: dict[str, Any],
    now: datetime,
    case_id: int | None = None,
) -> list[dict[str, Any]]:
    """The message to the account's contacts of each audience the template goes to. An
    audience with no contact of its own falls back to the abuse contacts, so nothing goes
    unsent; an account with no contact at all gets nothing (and the list is empty)."""
    abuse = account.contact_emails(ContactKind.ABUSE)
    audiences: list[str] = []
    recipients: dict[str, None] = {}
    for audience in AUDIENCES[template]:
        if audience in (Audience.COMPLAINANT, Audience.USER):  # an address of their own
            continue
        emails = account.contact_emails(ContactKind(audience.value)) or abuse
        if emails:
            audiences.append(audience.value)
            recipients.update(dict.fromkeys(emails))
    if not recipients:
        return []
    return [_row(template, audiences, list(recipients), context, now, case_id)]


def _row(
    template: MessageTemplate,
    audiences: list[str],
    recipients: list[str],
    context: dict[str, Any],
    now: datetime,
    case_id: int | None,
) -> dict[str, Any]:
    return {
        "case_id": case_id,
        "template": template,
        "audiences": audiences,
        "recipients": recipients,
        "context": context,
        "state": OutboxState.PENDING,
        "attempts": 0,
        "created_at": now,
        "next_attempt_at": now,
    }


def complainant_row(
    address: str,
    template: MessageTemplate,
    context: dict[str, Any],
    now: datetime,
    case_id: int | None = None,
) -> dict[str, Any]:
    """``queue_for_complainant``'s message as a row for ``UnitOfWork.insert_later`` (the keys of
    ``outbox_rows``): intake acknowledges most complaints, and the ORM's per-object flush cost
    more than the row's share of one insert at commit."""
    return _row(template, [Audience.COMPLAINANT.value], [address], context, now, case_id)


def queue_for_complainant(
    session: Session,
    address: str,
    template: MessageTemplate,
    context: dict[str, Any],
    now: datetime,
    case_id: int | None = None,
) -> OutboxMessage:
    return _queue_to(session, Audience.COMPLAINANT, address, template, context, now, case_id)


def queue_for_user(
    session: Session,
    address: str,
    template: MessageTemplate,
    context: dict[str, Any],
    now: datetime,
) -> OutboxMessage:
    """Mail to one user about the user's own sign-in (USER_TEMPLATES), at the address of the
    user record: never to the account's contacts, who are not necessarily that person."""
    if template not in USER_TEMPLATES:
        raise ValueError(f"{template.value} is not a mail to a user")
    return _queue_to(session, Audience.USER, address, template, context, now, None)


def _queue_to(
    session: Session,
    audience: Audience,
    address: str,
    template: MessageTemplate,
    context: dict[str, Any],
    now: datetime,
    case_id: int | None,
) -> OutboxMessage:
    message = OutboxMessage(
        case_id=case_id,
        template=template,
        audiences=[audience.value],
        recipients=[address],
        context=context,
        state=OutboxState.PENDING,
        created_at=now,
        next_attempt_at=now,
    )
    session.add(message)
    return message
