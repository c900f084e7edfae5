"""A Maildir source: every message in the folder is stored as a report, then moved into the
folder's `.Processed` sub-folder, so a second run takes only what is new. A message that cannot
be stored stays where it is for the next run."""

from __future__ import annotations

import logging
import mailbox
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from abusedesk.intake.choices import ReportSource
from abusedesk.intake.receive import receive
from abusedesk.store.uow import UnitOfWork

log = logging.getLogger(__name__)

PROCESSED = "Processed"


@dataclass(frozen=True, slots=True)
class MaildirResult:
    stored: int
    duplicates: int
    failed: int


def read_maildir(
    uow_factory: Callable[[], UnitOfWork],
    path: Path,
    progress: Callable[[int, int], None] | None = None,
) -> MaildirResult:
    box = mailbox.Maildir(path, factory=None, create=False)
    done = (
        box.add_folder(PROCESSED)
        if PROCESSED not in box.list_folders()
        else box.get_folder(PROCESSED)
    )
    keys = list(box.iterkeys())
    stored = duplicates = failed = 0
    for n, key in enumerate(keys, 1):
        try:
            raw = box.get_bytes(key)
            received = receive(uow_factory(), raw, ReportSource.MAILDIR)
        except Exception:
            log.exception("maildir: %s/%s could not be stored; left for the next run", path, key)
            failed += 1
        else:
            duplicates += received.duplicate
            stored += not received.duplicate
            # Moved only once stored: a crash between the two stores it again next time,
            # which receive() recognises as a redelivery.
            done.add(box.get_message(key))
            box.remove(key)
        if progress:
            progress(n, len(keys))
    return MaildirResult(stored, duplicates, failed)
