"""The outbox worker: deliver due messages, retry with backoff, record what happened.

A message is claimed in one short transaction (`FOR UPDATE SKIP LOCKED`, so workers never take
the same row) that moves its next attempt a lease ahead, then sent with no transaction open,
then its outcome is written in a transaction of its own. No row lock is held across an SMTP
conversation, and a worker that dies mid-send leaves its claims to be taken again once the
lease ends: a message may then go out twice, with the same Message-ID, but is never lost.

Outcomes: sent; failed and retried later (exponential backoff, `retry_base_seconds` doubling up
to `retry_max_seconds`); or given up on (a permanent refusal, or `max_attempts` reached), which
is a failed row with no next attempt, left for staff to see. A message about a case leaves a
line on its timeline when it is sent, on its first failure and when it is given up on.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime
from typing import Any

import sqlalchemy as sa

from abusedesk import metrics
from abusedesk.accounts.permissions import MAILER, Actor
from abusedesk.cases import effects
from abusedesk.cases.choices import TimelineKind
from abusedesk.cases.models import Case
from abusedesk.config import Settings
from abusedesk.notify.choices import Audience, MessageTemplate, OutboxState
from abusedesk.notify.models import OutboxMessage
from abusedesk.notify.render import RenderedMessage, RenderError, render
from abusedesk.notify.routing import SECRET_CONTEXT_KEYS, USER_TEMPLATES
from abusedesk.notify.settings import NotifySettings
from abusedesk.notify.transport import DeliveryError, Transport
from abusedesk.policy import Policy
from abusedesk.store.uow import UnitOfWork

log = logging.getLogger(__name__)

# Messages claimed at a time. Each outcome is written as soon as it is known, so a crash may
# send one message twice; the rest of its claim waits for the lease to end.
CLAIM_SIZE = 10
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9.-]")


@dataclass(slots=True)
class DeliveryResult:
    sent: int = 0
    failed: int = 0  # will be tried again
    gave_up: int = 0

    @property
    def handled(self) -> int:
        return self.sent + self.failed + self.gave_up

    def __str__(self) -> str:
        return f"{self.sent} sent, {self.failed} to retry, {self.gave_up} given up"


@dataclass(frozen=True, slots=True)
class Claimed:
    """What a worker needs of an outbox row while no transaction is open."""

    id: int
    case_id: int | None
    template: MessageTemplate
    audiences: tuple[str, ...]
    recipients: tuple[str, ...]
    context: dict[str, Any]
    attempts: int

    @property
    def to_complainant(self) -> bool:
        return Audience.COMPLAINANT.value in self.audiences


@dataclass(frozen=True, slots=True)
class _Outcome:
    error: str | None = None
    temporary: bool = False
    refused: dict[str, str] | None = None
    message_id: str | None = None


def deliver_due(
    uow: UnitOfWork,
    transport: Transport,
    settings: Settings,
    policy: Policy,
    batch: int = 100,
    actor: Actor = MAILER,
) -> DeliveryResult:
    """Send up to `batch` messages whose time has come."""
    result = DeliveryResult()
    lease = _lease(settings)
    while result.handled < batch:
        want = min(CLAIM_SIZE, batch - result.handled)
        claimed = claim(uow, want, lease)
        for message in claimed:
            outcome = _attempt(message, transport, settings, policy, uow.clock.now())
            _record(uow, message, outcome, settings.notify, actor, result)
        if len(claimed) < want:
            break
    if result.handled:
        log.info("outbox: %s", result)
    return result


def _lease(settings: Settings) -> timedelta:
    # Long enough for every message of a claim to time out in each SMTP step, so a slow relay
    # does not let a second worker take (and send again) what the first is still sending.
    per_message = settings.smtp.timeout_seconds * 6
    return timedelta(seconds=max(300.0, CLAIM_SIZE * per_message))


def claim(uow: UnitOfWork, limit: int, lease: timedelta) -> list[Claimed]:
    """Take up to `limit` due messages for this worker until `lease` from now."""
    with uow:
        now = uow.clock.now()
        rows = list(
            uow.session.execute(
                sa.select(OutboxMessage)
                .where(
                    OutboxMessage.state.in_([OutboxState.PENDING, OutboxState.FAILED]),
                    OutboxMessage.next_attempt_at <= now,
                )
                .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).scalars()
        )
        claimed = []
        for row in rows:
            row.next_attempt_at = now + lease
            claimed.append(
                Claimed(
                    row.id,
                    row.case_id,
                    MessageTemplate(row.template),
                    tuple(row.audiences),
                    tuple(row.recipients),
                    dict(row.context),
                    row.attempts,
                )
            )
        uow.commit()
        return claimed


def _attempt(
    message: Claimed, transport: Transport, settings: Settings, policy: Policy, now: datetime
) -> _Outcome:
    if not message.recipients:
        return _Outcome("no recipients")
    notify = settings.notify
    try:
        rendered = render(
            message.template,
            message.context,
            # The account's own language where it has one; the desk's otherwise.
            str(message.context.get("language") or notify.language),
            settings.base_url,
            policy,
            now=now,
            templates_dir=notify.templates_dir,
            desk_name=notify.from_name,
        )
        email = build_message(message, rendered, notify, now)
    except RenderError as exc:
        return _Outcome(f"template: {exc}", temporary=not exc.permanent)
    except ValueError as exc:  # a header the email package refuses (a malformed address)
        return _Outcome(f"message: {exc}")
    message_id = str(email["Message-ID"])
    try:
        refused = transport.send(email)
    except DeliveryError as exc:
        return _Outcome(str(exc), exc.temporary, message_id=message_id)
    except Exception as exc:
        # A fault in a transport must not stop the queue or leave the message unexplained:
        # it is kept, shown to staff and retried like any temporary failure.
        log.exception("outbox %s: the transport failed", message.id)
        return _Outcome(f"{type(exc).__name__}: {exc}", temporary=True, message_id=message_id)
    return _Outcome(refused=refused, message_id=message_id)


def build_message(
    message: Claimed, rendered: RenderedMessage, notify: NotifySettings, now: datetime
) -> EmailMessage:
    """The mail for one outbox row: plain text and HTML alternatives, threaded per case."""
    domain = notify.from_address.rpartition("@")[2] or "localhost"
    ticket = message.context.get("ticket")
    email = EmailMessage(policy=default_policy)
    email["From"] = Address(notify.from_name, addr_spec=notify.from_address)
    email["To"] = ", ".join(message.recipients)
    if notify.reply_to:
        email["Reply-To"] = notify.reply_to
    email["Subject"] = rendered.subject
    email["Date"] = format_datetime(now)
    # The id stays the same on every attempt, so a receiver can drop a second copy.
    tag = _ID_UNSAFE.sub("", str(ticket or ""))
    email["Message-ID"] = (
        f"<outbox-{message.id}.{tag}@{domain}>" if tag else (f"<outbox-{message.id}@{domain}>")
    )
    if message.case_id is not None:
        # Every mail about a case answers one root id, so mail clients show the case as one
        # thread; the complainant's mail is a thread of its own.
        suffix = "-complainant" if message.to_complainant else ""
        root = f"<case-{message.case_id}{suffix}@{domain}>"
        email["In-Reply-To"] = root
        email["References"] = root
    if ticket:
        email["X-Abusedesk-Ticket"] = str(ticket)
    email["X-Abusedesk-Template"] = message.template.value
    # RFC 3834: vacation replies and other robots must not answer, or they would open a loop
    # with the desk's own intake of abuse@ mail.
    replying = message.template in (MessageTemplate.NEEDS_INFO, MessageTemplate.COMPLAINANT_ACK)
    email["Auto-Submitted"] = "auto-replied" if replying else "auto-generated"
    email["X-Auto-Response-Suppress"] = "All"
    email.set_content(rendered.text)
    email.add_alternative(rendered.html, subtype="html")
    return email


def backoff(notify: NotifySettings, failures: int) -> timedelta:
    """The wait after the `failures`-th failed attempt: the base, doubling, capped."""
    exponent = min(max(failures - 1, 0), 32)
    return timedelta(seconds=min(notify.retry_max_seconds, notify.retry_base_seconds * 2**exponent))


def _record(
    uow: UnitOfWork,
    message: Claimed,
    outcome: _Outcome,
    notify: NotifySettings,
    actor: Actor,
    result: DeliveryResult,
) -> None:
    with uow:
        now = uow.clock.now()
        row = uow.session.execute(
            sa.select(OutboxMessage).where(OutboxMessage.id == message.id).with_for_update()
        ).scalar_one()
        attempts = row.attempts = row.attempts + 1
        data: dict[str, Any] = {
            "outbox_id": message.id,
            "template": message.template.value,
            "audiences": list(message.audiences),
            "recipients": list(message.recipients),
            "attempt": attempts,
            "message_id": outcome.message_id,
        }
        if outcome.error is None:
            row.state = OutboxState.SENT
            row.sent_at = now
            row.next_attempt_at = None
            row.last_error = None
            if outcome.refused:
                row.last_error = "refused: " + "; ".join(
                    f"{a}: {r}" for a, r in outcome.refused.items()
                )
                data["refused"] = outcome.refused
            result.sent += 1
            kind, note, outcome_label = TimelineKind.MAIL_SENT, _sent_note(message), "sent"
            if outcome.refused and not message.to_complainant:
                note += f"; the mail server refused {', '.join(outcome.refused)}"
        else:
            row.state = OutboxState.FAILED
            row.last_error = outcome.error[:2000]
            data["error"] = outcome.error
            retry = outcome.temporary and attempts < notify.max_attempts
            if retry:
                row.next_attempt_at = now + backoff(notify, attempts)
                data["next_attempt_at"] = row.next_attempt_at.isoformat()
                result.failed += 1
                outcome_label = "failed"
                note = f"{_what(message)} could not be delivered yet; it will be tried again"
            else:
                row.next_attempt_at = None
                result.gave_up += 1
                outcome_label = "gave_up"
                note = f"{_what(message)} could not be delivered; the desk has given up on it"
            kind = TimelineKind.MAIL_FAILED
            log.warning(
                "outbox %s (%s): attempt %s failed, %s: %s",
                message.id,
                message.template.value,
                attempts,
                "will retry" if retry else "given up",
                outcome.error,
            )
        if row.next_attempt_at is None and message.template in USER_TEMPLATES:
            _forget_secrets(row)
        # The first failure and the last word go on the timeline; the retries in between
        # only count on the outbox row.
        if message.case_id is not None and (outcome_label != "failed" or attempts == 1):
            _on_timeline(uow, message, actor, kind, note, data)
        uow.commit()
    metrics.mail_outcomes.labels(message.template.value, outcome_label).inc()


def _forget_secrets(row: OutboxMessage) -> None:
    """A one-time link is kept only until its mail is sent or given up on: the outbox is shown
    to staff and kept long after, and the link must work for its recipient alone."""
    context = dict(row.context)
    for key in SECRET_CONTEXT_KEYS:
        if key in context:
            context[key] = "(removed once the mail was sent)"
    row.context = context


def _on_timeline(
    uow: UnitOfWork,
    message: Claimed,
    actor: Actor,
    kind: TimelineKind,
    note: str,
    data: dict[str, Any],
) -> None:
    case = uow.session.get(Case, message.case_id)
    if case is None:
        return
    if message.to_complainant:
        # A customer sees every timeline line but staff notes; a line about mail to the
        # complainant is a staff note, so nothing of the complainant reaches the customer.
        note = f"{note} ({kind.value.replace('_', ' ')})"
        kind = TimelineKind.NOTE
    effects.record(uow, case, actor, kind, note=note, data=data)


_NAMES = {
    MessageTemplate.TICKET_CREATED: "the ticket notice",
    MessageTemplate.REMINDER: "a reminder",
    MessageTemplate.DISCONNECTED: "the disconnection notice",
    MessageTemplate.RECONNECTED: "the reconnection notice",
    MessageTemplate.TERMINATED: "the termination notice",
    MessageTemplate.CLOSED: "the closing notice",
    MessageTemplate.FIX_REJECTED: "the notice that the fix was not accepted",
    MessageTemplate.DEADLINE_CHANGED: "the notice of the new deadline",
    MessageTemplate.STAFF_MESSAGE: "a message from the desk",
    MessageTemplate.NEEDS_INFO: "a request for more information to the complainant",
    MessageTemplate.COMPLAINANT_ACK: "the acknowledgement to the complainant",
    MessageTemplate.DMCA_FORWARD: "the DMCA notice",
    MessageTemplate.DNS_CHANGED: "the notice of a change to a DNS zone",
    MessageTemplate.DNS_LOAD_NOTICE: "the notice of potential DNS overuse",
    MessageTemplate.PASSWORD_RESET: "the password-reset link",
    MessageTemplate.INVITATION: "the invitation",
}


def _what(message: Claimed) -> str:
    name = _NAMES[message.template]
    return name[0].upper() + name[1:]


def _sent_note(message: Claimed) -> str:
    if message.to_complainant:
        return f"{_what(message)} was sent"
    contacts = ", ".join(message.audiences)
    return f"{_what(message)} was sent to the account's {contacts} contacts"
