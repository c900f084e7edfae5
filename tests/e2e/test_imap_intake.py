"""The IMAP poller against a real Dovecot: mail put in the mailbox (IMAP APPEND) is stored as a
report, only then moved to the processed folder; a redelivery is harmless; a message that cannot
be stored stays for the next poll. Over IMAPS, STARTTLS and plain IMAP on the loopback."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from imapclient import IMAPClient

from abusedesk.bootstrap import Desk
from abusedesk.cases.models import Case
from abusedesk.intake.choices import ImapTls, ReportSource, ReportStatus
from abusedesk.intake.imap import ImapError, poll_once
from abusedesk.intake.models import Report
from abusedesk.intake.pipeline import process_pending
from abusedesk.intake.settings import SmtpListen
from abusedesk.policy import Category
from abusedesk.runtime import run_intake
from abusedesk.store.engine import make_engine, make_session_factory
from abusedesk.store.uow import UnitOfWork
from tests.imap_peer import Dovecot, running_dovecot
from tests.integration.test_intake_pipeline import fixture, own
from tests.smtp_peer import free_port

BASE_URL = "https://desk.example"


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    yield from running_dovecot()


def complaint(n: int = 1) -> bytes:
    return (
        "From: Jane Doe <jane@isp.example>\r\n"
        "To: abuse@provider.example\r\n"
        f"Subject: Spam from your network ({n})\r\n"
        "Date: Mon, 02 Mar 2026 08:00:00 +0000\r\n"
        f"Message-ID: <imap-{n}@isp.example>\r\n"
        "\r\n"
        "Your server 198.51.100.1 sends us unsolicited bulk e-mail, every hour.\r\n"
    ).encode()


def reports(desk: Desk) -> list[Report]:
    with desk.uow().reading() as uow:
        return list(uow.session.execute(sa.select(Report).order_by(Report.id)).scalars())


def raw_of(desk: Desk, report_id: int) -> bytes:
    with desk.uow().reading() as uow:
        found = uow.session.get(Report, report_id)
        assert found is not None
        return bytes(found.raw)


def test_fixture_mail_is_stored_then_moved_and_becomes_a_case(desk: Desk, dovecot: Dovecot) -> None:
    mail = fixture("arf/AOL_example_1.eml").replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    owner = own(desk, "10.17.18.1")
    dovecot.append(mail)

    result = poll_once(desk.uow, dovecot.settings(ImapTls.IMAPS))

    assert (result.stored, result.duplicates, result.failed, result.moved) == (1, 0, 0, 1)
    assert dovecot.messages("INBOX") == []
    [(moved, flags)] = dovecot.messages("Processed")
    assert moved == mail
    assert b"\\Seen" not in flags  # fetched with PEEK: it looks as it did
    [report] = reports(desk)
    assert (report.source, report.status) == (ReportSource.IMAP, ReportStatus.RECEIVED)
    assert raw_of(desk, report.id) == mail

    assert process_pending(desk.uow, desk.policy, BASE_URL) == {"accepted": 1}
    with desk.uow().reading() as uow:
        [case] = uow.session.execute(sa.select(Case)).scalars().all()
    assert (case.category, case.server_id) == (Category.SPAM, owner.server_ids[0])


def test_a_redelivered_message_is_stored_once(desk: Desk, dovecot: Dovecot) -> None:
    settings = dovecot.settings(ImapTls.STARTTLS)
    dovecot.append(complaint(1))
    first = poll_once(desk.uow, settings)
    assert (first.stored, first.moved) == (1, 1)
    # The MTA delivers it again (a retry after a lost answer): moved away, not stored again.
    dovecot.append(complaint(1))
    dovecot.append(complaint(2))
    second = poll_once(desk.uow, settings)
    assert (second.stored, second.duplicates, second.moved) == (1, 1, 2)
    assert dovecot.messages("INBOX") == []
    assert len(dovecot.messages("Processed")) == 3
    assert [r.message_id for r in reports(desk)] == ["<imap-1@isp.example>", "<imap-2@isp.example>"]
    # An empty folder is a poll like any other.
    assert poll_once(desk.uow, settings).moved == 0


def test_a_message_that_cannot_be_stored_stays_for_the_next_poll(
    desk: Desk, dovecot: Dovecot, tmp_path: Path
) -> None:
    settings = dovecot.settings(ImapTls.PLAIN, imap_port=dovecot.port)
    dovecot.append(complaint(1))
    broken = make_engine(f"sqlite:///{tmp_path}/no-such-dir/db.sqlite3")
    try:
        failed = poll_once(lambda: UnitOfWork(make_session_factory(broken)), settings)
    finally:
        broken.dispose()
    assert (failed.stored, failed.failed, failed.moved) == (0, 1, 0)
    [(left, flags)] = dovecot.messages("INBOX")
    assert left == complaint(1)
    assert b"\\Deleted" not in flags
    assert dovecot.messages("Processed") == []
    assert reports(desk) == []

    again = poll_once(desk.uow, settings)
    assert (again.stored, again.moved) == (1, 1)
    assert dovecot.messages("INBOX") == []


def test_without_move_it_copies_flags_and_expunges_only_its_own(
    desk: Desk, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = IMAPClient.has_capability

    def no_move(self: IMAPClient, capability: str) -> bool:
        return capability.upper() != "MOVE" and real(self, capability)

    monkeypatch.setattr(IMAPClient, "has_capability", no_move)
    dovecot.append(complaint(1))
    # Someone else marked this one deleted and has not expunged it yet: not ours to remove.
    dovecot.append(complaint(2), flags=(b"\\Deleted",))
    result = poll_once(desk.uow, dovecot.settings())
    assert (result.stored, result.moved) == (1, 1)
    [(left, flags)] = dovecot.messages("INBOX")
    assert left == complaint(2)
    assert b"\\Deleted" in flags
    [(moved, moved_flags)] = dovecot.messages("Processed")
    assert moved == complaint(1)
    assert b"\\Deleted" not in moved_flags


def test_a_message_over_the_size_limit_is_left_in_the_folder(desk: Desk, dovecot: Dovecot) -> None:
    dovecot.append(complaint(1) + b"x" * 5000 + b"\r\n")
    dovecot.append(complaint(2))
    result = poll_once(desk.uow, dovecot.settings(max_message_bytes=2000))
    assert (result.stored, result.too_large, result.moved) == (1, 1, 1)
    [(left, _)] = dovecot.messages("INBOX")
    assert b"(1)" in left
    assert [r.message_id for r in reports(desk)] == ["<imap-2@isp.example>"]


def test_a_wrong_password_is_a_clear_error(desk: Desk, dovecot: Dovecot) -> None:
    dovecot.append(complaint(1))
    with pytest.raises(ImapError, match=r"IMAP 127\.0\.0\.1"):
        poll_once(desk.uow, dovecot.settings(imap_password="wrong"))
    assert len(dovecot.messages("INBOX")) == 1


def test_the_intake_role_polls_the_mailbox(desk: Desk, dovecot: Dovecot) -> None:
    desk.settings.intake = dovecot.settings(imap_interval=0.2, smtp=SmtpListen(port=free_port()))
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def role() -> None:
        nonlocal stop
        stop = asyncio.Event()
        await run_intake(desk, stop)

    thread = threading.Thread(target=loop.run_until_complete, args=(role(),), daemon=True)
    thread.start()
    try:
        dovecot.append(complaint(7))
        deadline = time.monotonic() + 20
        while not reports(desk):
            assert time.monotonic() < deadline, "the intake role did not poll the mailbox"
            time.sleep(0.1)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()
    [report] = reports(desk)
    assert report.source is ReportSource.IMAP


def test_the_command_polls_once(dovecot: Dovecot, tmp_path: Path) -> None:
    home = tmp_path / "var"
    settings = dovecot.settings()
    env = {
        **os.environ,
        "ABUSEDESK_HOME": str(home),
        "COLUMNS": "200",
        "ABUSEDESK_INTAKE__IMAP_HOST": settings.imap_host or "",
        "ABUSEDESK_INTAKE__IMAP_PORT": str(settings.imap_port),
        "ABUSEDESK_INTAKE__IMAP_USER": settings.imap_user,
        "ABUSEDESK_INTAKE__IMAP_PASSWORD": settings.imap_password.get_secret_value(),
        "ABUSEDESK_INTAKE__IMAP_CA_FILE": str(settings.imap_ca_file),
    }
    env.pop("ABUSEDESK_DATABASE_URL", None)
    cli = [sys.executable, "-m", "abusedesk.cli"]
    subprocess.run([*cli, "init"], env=env, check=True, capture_output=True, timeout=120)
    dovecot.append(complaint(1))
    done = subprocess.run(
        [*cli, "intake", "imap-poll", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 stored" in done.stdout
    assert "1 moved to Processed" in done.stdout
    assert dovecot.messages("INBOX") == []
