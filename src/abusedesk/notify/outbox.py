"""Writing messages to the outbox, inside the caller's transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from abusedesk.inventory.choices import ContactKind
from abusedesk.inventory.models import Account
from abusedesk.notify.choices import Audience, MessageTemplate, OutboxState
from abusedesk.notify.models import OutboxMessage
from abusedesk.notify.routing import AUDIENCES


def queue_for_account(
    session: Session,
    account: Account,
    template: MessageTemplate,
    context: dict[str, Any],
    now: datetime,
    case_id: int | None = None,
) -> list[OutboxMessage]:
    """One message per audience the template goes to, addressed to that audience's contacts.
    An audience with no contact falls back to the abuse contacts, so nothing goes unsent."""
    messages = []
    abuse = account.contact_emails(ContactKind.ABUSE)
    for audience in AUDIENCES[template]:
        if audience is Audience.COMPLAINANT:
            continue
        recipients = account.contact_emails(ContactKind(audience.value)) or abuse
        if audience is not Audience.ABUSE and recipients == abuse:
            continue  # the abuse contacts already receive it
        if not recipients:
            continue
        message = OutboxMessage(
            case_id=case_id,
            template=template,
            audience=audience,
            recipients=recipients,
            context=context,
            state=OutboxState.PENDING,
            created_at=now,
            next_attempt_at=now,
        )
        session.add(message)
        messages.append(message)
    return messages


def queue_for_complainant(
    session: Session,
    address: str,
    template: MessageTemplate,
    context: dict[str, Any],
    now: datetime,
    case_id: int | None = None,
) -> OutboxMessage:
    message = OutboxMessage(
        case_id=case_id,
        template=template,
        audience=Audience.COMPLAINANT,
        recipients=[address],
        context=context,
        state=OutboxState.PENDING,
        created_at=now,
        next_attempt_at=now,
    )
    session.add(message)
    return message
