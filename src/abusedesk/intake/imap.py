"""An IMAP source: a mailbox that abuse@ is delivered to, polled (imapclient).

Each poll takes every message of one folder, oldest first, stores it raw through the same
``receive()`` as the SMTP listener and the Maildir reader (source ``imap``), and only once it is
stored moves it to the processed folder: with MOVE (RFC 6851) where the server has it, else by
COPY, the ``\\Deleted`` flag and EXPUNGE (UID EXPUNGE with UIDPLUS, so that nothing another
client marked deleted goes with it). A message whose storing fails stays in the folder for the
next poll; a poll that dies between storing and moving stores it again next time, which
``receive()`` recognises as a redelivery. Nothing is fetched with a flag-setting command
(``BODY.PEEK``), so a message left behind looks as it did.

A message larger than the intake's size limit is left in the folder, untouched, and logged at
each poll: the SMTP listener would refuse it, and here there is nobody to refuse it to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from abusedesk.errors import AbuseDeskError
from abusedesk.intake.choices import ImapTls, ReportSource
from abusedesk.intake.receive import receive
from abusedesk.intake.settings import IntakeSettings
from abusedesk.store.uow import UnitOfWork

log = logging.getLogger(__name__)

DELETED = rb"\Deleted"
# Bytes fetched in one FETCH: a folder of a thousand reports is not held in memory at once.
_FETCH_BYTES = 32 * 1024 * 1024
_TIMEOUT_SECONDS = 60.0


class ImapError(AbuseDeskError):
    """The mailbox could not be polled: the server could not be reached, refused the login or
    a command. Nothing was lost: what was not stored stays in the folder."""


@dataclass(frozen=True, slots=True)
class ImapResult:
    stored: int
    duplicates: int  # delivered before (same Message-ID, or same bytes): moved, not stored again
    failed: int  # could not be stored: left in the folder for the next poll
    too_large: int  # over the size limit: left in the folder
    moved: int


def poll_once(uow_factory: Callable[[], UnitOfWork], settings: IntakeSettings) -> ImapResult:
    """One poll of the configured folder. Raises ImapError when the server cannot be used."""
    if not settings.imap_host:
        raise ImapError("no IMAP server is configured (intake.imap_host)")
    try:
        with _connected(settings) as client:
            return _poll(client, uow_factory, settings)
    except (IMAPClientError, OSError, ssl.SSLError) as exc:
        raise ImapError(
            f"IMAP {settings.imap_host}:{settings.imap_port_or_default}: {exc}"
        ) from exc


async def serve_imap(
    uow_factory: Callable[[], UnitOfWork], settings: IntakeSettings, stop: asyncio.Event
) -> None:
    """Poll every ``imap_interval`` seconds until ``stop``; a failed poll is logged and tried
    again at the next interval, it does not stop the intake role."""
    log.info(
        "intake: polling IMAP %s:%d folder %s every %.0f s",
        settings.imap_host,
        settings.imap_port_or_default,
        settings.imap_folder,
        settings.imap_interval,
    )
    while not stop.is_set():
        try:
            result = await asyncio.to_thread(poll_once, uow_factory, settings)
        except ImapError as exc:
            log.error("intake: %s; trying again in %.0f s", exc, settings.imap_interval)
        except Exception:
            log.exception("intake: the IMAP poll failed; trying again")
        else:
            if result.stored or result.duplicates or result.failed or result.too_large:
                log.info("intake: IMAP poll: %s", result)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=settings.imap_interval)


@contextmanager
def _connected(settings: IntakeSettings) -> Iterator[IMAPClient]:
    host, port, tls = settings.imap_host or "", settings.imap_port_or_default, settings.imap_tls
    context = ssl.create_default_context(
        cafile=str(settings.imap_ca_file) if settings.imap_ca_file else None
    )
    client = IMAPClient(
        host,
        port,
        ssl=tls is ImapTls.IMAPS,
        ssl_context=context if tls is ImapTls.IMAPS else None,
        timeout=_TIMEOUT_SECONDS,
    )
    try:
        if tls is ImapTls.STARTTLS:
            client.starttls(context)
        client.login(settings.imap_user, settings.imap_password.get_secret_value())
        yield client
    finally:
        with contextlib.suppress(IMAPClientError, OSError):
            client.logout()


def _poll(
    client: IMAPClient, uow_factory: Callable[[], UnitOfWork], settings: IntakeSettings
) -> ImapResult:
    processed = settings.imap_processed_folder
    if not client.folder_exists(processed):
        client.create_folder(processed)
    client.select_folder(settings.imap_folder)
    uids = sorted(client.search(["NOT", "DELETED"]))
    if not uids:
        return ImapResult(0, 0, 0, 0, 0)
    sizes = {
        uid: int(data.get(b"RFC822.SIZE", 0))
        for uid, data in client.fetch(uids, ["RFC822.SIZE"]).items()
    }
    stored = duplicates = failed = too_large = moved = 0
    for batch in _batches(uids, sizes, settings.max_message_bytes):
        wanted = [uid for uid in batch if sizes.get(uid, 0) <= settings.max_message_bytes]
        too_large += len(batch) - len(wanted)
        for uid in set(batch) - set(wanted):
            log.warning(
                "intake: IMAP message %s is %d bytes, over the %d-byte limit; left in %s",
                uid,
                sizes.get(uid, 0),
                settings.max_message_bytes,
                settings.imap_folder,
            )
        if not wanted:
            continue
        bodies = client.fetch(wanted, ["BODY.PEEK[]"])
        done: list[int] = []
        for uid in wanted:
            raw = bodies.get(uid, {}).get(b"BODY[]")
            if not isinstance(raw, bytes):
                # Gone meanwhile (another client moved it), or the server sent nothing.
                failed += 1
                continue
            try:
                received = receive(uow_factory(), raw, ReportSource.IMAP)
            except Exception:
                log.exception("intake: IMAP message %s could not be stored; left for later", uid)
                failed += 1
                continue
            duplicates += received.duplicate
            stored += not received.duplicate
            done.append(uid)
        # Moved only once stored (receive committed): a crash before this line stores the same
        # messages again on the next poll, which receive() recognises.
        _move(client, done, processed)
        moved += len(done)
    return ImapResult(stored, duplicates, failed, too_large, moved)


def _batches(uids: list[int], sizes: dict[int, int], limit: int) -> Iterator[list[int]]:
    batch: list[int] = []
    total = 0
    for uid in uids:
        size = min(sizes.get(uid, 0), limit)
        if batch and total + size > _FETCH_BYTES:
            yield batch
            batch, total = [], 0
        batch.append(uid)
        total += size
    if batch:
        yield batch


def _move(client: IMAPClient, uids: list[int], folder: str) -> None:
    if not uids:
        return
    if client.has_capability("MOVE"):
        client.move(uids, folder)
        return
    client.copy(uids, folder)
    client.add_flags(uids, [DELETED], silent=True)
    if client.has_capability("UIDPLUS"):
        client.uid_expunge(uids)
    else:
        # Without UIDPLUS, EXPUNGE removes every message flagged deleted in the folder,
        # including any another client flagged: those were on their way out anyway.
        client.expunge()
