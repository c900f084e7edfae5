"""The SMTP listener: the address a provider's MTA forwards abuse@ to.

It accepts mail only for the configured recipients and within the size limit, and answers 250
only once the message is stored (intake/receive.py); if storing fails it answers 451, so the
sending MTA keeps the message and tries again. Nothing accepted is ever lost. Parsing and the
rest happen later, in the worker, from the stored copy.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from abusedesk.intake.choices import ReportSource
from abusedesk.intake.receive import receive
from abusedesk.intake.settings import IntakeSettings
from abusedesk.store.uow import UnitOfWork

log = logging.getLogger(__name__)


class IntakeHandler:
    def __init__(self, uow_factory: Callable[[], UnitOfWork], settings: IntakeSettings) -> None:
        self.uow_factory = uow_factory
        self.recipients = {r.strip().lower() for r in settings.recipients}

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address.strip().lower() not in self.recipients:
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        raw = envelope.original_content or envelope.content
        if not isinstance(raw, bytes):
            raw = str(raw).encode("utf-8", "surrogateescape")
        try:
            received = await asyncio.to_thread(receive, self.uow_factory(), raw, ReportSource.SMTP)
        except Exception:
            # Say "try again" rather than lose it: the sending MTA keeps the message.
            log.exception("intake: could not store a message from %s", envelope.mail_from)
            return "451 4.3.0 Cannot store the message just now; please try again later"
        if received.duplicate:
            log.info("intake: report %d delivered again; kept once", received.report_id)
        else:
            log.info("intake: report %d stored (%d bytes)", received.report_id, len(raw))
        return f"250 2.0.0 Stored as report {received.report_id}"


def smtp_factory(
    uow_factory: Callable[[], UnitOfWork], settings: IntakeSettings
) -> Callable[[], SMTP]:
    handler = IntakeHandler(uow_factory, settings)

    def build() -> SMTP:
        return SMTP(
            handler,
            hostname=settings.smtp.hostname,
            data_size_limit=settings.max_message_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
        )

    return build


async def serve_smtp(
    uow_factory: Callable[[], UnitOfWork], settings: IntakeSettings, stop: asyncio.Event
) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        smtp_factory(uow_factory, settings), settings.smtp.host, settings.smtp.port
    )
    log.info("intake: SMTP listening on %s:%d", settings.smtp.host, settings.smtp.port)
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
