from __future__ import annotations

import mailbox
from email.message import EmailMessage
from pathlib import Path

import sqlalchemy as sa

from abusedesk.bootstrap import Desk
from abusedesk.intake.choices import ReportSource
from abusedesk.intake.maildir import PROCESSED, read_maildir
from abusedesk.intake.models import Report


def mail(n: int) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"reporter{n}@isp.example"
    message["Subject"] = f"complaint {n}"
    message["Message-ID"] = f"<m{n}@isp.example>"
    message.set_content(f"Server 198.51.100.{n} is attacking us.")
    return message


def test_messages_are_stored_then_moved_away(desk: Desk, tmp_path: Path) -> None:
    box = mailbox.Maildir(tmp_path / "abuse", create=True)
    for n in range(3):
        box.add(mail(n))
    first = read_maildir(desk.uow, tmp_path / "abuse")
    assert (first.stored, first.duplicates, first.failed) == (3, 0, 0)
    assert len(box) == 0
    assert len(box.get_folder(PROCESSED)) == 3
    with desk.uow().reading() as uow:
        rows = list(uow.session.execute(sa.select(Report.source, Report.message_id)))
    assert sorted(rows) == [(ReportSource.MAILDIR, f"<m{n}@isp.example>") for n in range(3)]
    box.add(mail(3))
    box.add(mail(0))  # delivered again
    second = read_maildir(desk.uow, tmp_path / "abuse")
    assert (second.stored, second.duplicates) == (1, 1)
