"""The SMTP listener: the address a provider's MTA forwards abuse@ to.

It accepts mail only for the configured recipients and within the size limit, and answers 250
only once the message is stored (intake/receive.py); if storing fails it answers 451, so the
sending MTA keeps the message and tries again. Nothing accepted is ever lost. Parsing and the
rest happen later, in the worker, from the stored copy.

Group commit. The messages of the sessions that reach DATA while a store is running wait for
it to end, then are stored together: one transaction, one audit seal, one commit
(``receive_many``), and each session is answered only once that commit has returned. A lone
message is stored at once, as before; under load the batches grow by themselves, up to
``_PER_COMMIT`` messages or ``_BYTES_PER_COMMIT`` bytes. If a batch cannot be stored, each of
its messages is tried alone, so that one the database refuses does not take the others with
it; one that still fails is answered 451.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from abusedesk.intake.choices import ReportSource
from abusedesk.intake.receive import Received, receive, receive_many
from abusedesk.intake.settings import IntakeSettings
from abusedesk.store.uow import UnitOfWork

log = logging.getLogger(__name__)

_PER_COMMIT = 64
_BYTES_PER_COMMIT = 32 * 1024 * 1024


@dataclass(slots=True)
class _Waiting:
    raw: bytes
    done: asyncio.Future[Received]


class IntakeHandler:
    def __init__(self, uow_factory: Callable[[], UnitOfWork], settings: IntakeSettings) -> None:
        self.uow_factory = uow_factory
        self.recipients = {r.strip().lower() for r in settings.recipients}
        self._waiting: list[_Waiting] = []
        self._storing: asyncio.Task[None] | None = None

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
            received = await self._store(raw)
        except Exception:
            # Say "try again" rather than lose it: the sending MTA keeps the message.
            log.exception("intake: could not store a message from %s", envelope.mail_from)
            return "451 4.3.0 Cannot store the message just now; please try again later"
        if received.duplicate:
            log.info("intake: report %d delivered again; kept once", received.report_id)
        else:
            log.info("intake: report %d stored (%d bytes)", received.report_id, len(raw))
        return f"250 2.0.0 Stored as report {received.report_id}"

    async def _store(self, raw: bytes) -> Received:
        """Stored, committed: the message's own `Received`, or the exception that kept it
        from being stored."""
        waiting = _Waiting(raw, asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        if self._storing is None:
            self._storing = asyncio.create_task(self._drain())
        # Shielded: a session that goes away meanwhile leaves its message to be stored all
        # the same (its MTA, having had no 250, sends it again; the copy is recognised).
        return await asyncio.shield(waiting.done)

    async def _drain(self) -> None:
        """Stores what waits, batch after batch, until nothing does."""
        try:
            while self._waiting:
                await self._store_batch(self._take())
        finally:
            self._storing = None
            if self._waiting:  # cancelled: the loop is ending
                for left in self._waiting:
                    _fail(left, RuntimeError("the listener is stopping"))
                self._waiting = []

    def _take(self) -> list[_Waiting]:
        size = 0
        for count, waiting in enumerate(self._waiting):
            size += len(waiting.raw)
            if count and (count >= _PER_COMMIT or size > _BYTES_PER_COMMIT):
                break
        else:
            count = len(self._waiting)
        batch, self._waiting = self._waiting[:count], self._waiting[count:]
        return batch

    async def _store_batch(self, batch: list[_Waiting]) -> None:
        if len(batch) > 1:
            raws = [w.raw for w in batch]
            try:
                stored = await asyncio.to_thread(
                    receive_many, self.uow_factory(), raws, ReportSource.SMTP
                )
            except Exception:
                log.warning(
                    "intake: a batch of %d messages could not be stored together; "
                    "storing each alone",
                    len(batch),
                    exc_info=True,
                )
            else:
                for waiting, received in zip(batch, stored, strict=True):
                    _settle(waiting, received)
                return
        for waiting in batch:
            try:
                received = await asyncio.to_thread(
                    receive, self.uow_factory(), waiting.raw, ReportSource.SMTP
                )
            except Exception as exc:
                _fail(waiting, exc)
            else:
                _settle(waiting, received)


def _settle(waiting: _Waiting, received: Received) -> None:
    if not waiting.done.done():
        waiting.done.set_result(received)


def _fail(waiting: _Waiting, exc: BaseException) -> None:
    if not waiting.done.done():
        waiting.done.set_exception(exc)


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
