"""The SMTP listener as an MTA sees it: 250 only once the message is stored, 451 when it cannot
be stored (so the sender retries), refusals for strangers' recipients and oversized mail."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
import sqlalchemy as sa

from abusedesk.bootstrap import Desk
from abusedesk.intake.choices import ReportSource, ReportStatus
from abusedesk.intake.models import Report
from abusedesk.intake.settings import IntakeSettings, SmtpListen
from abusedesk.store.uow import UnitOfWork
from tests.intake_listener import Listener
from tests.smtp_peer import free_port


def settings(**extra: object) -> IntakeSettings:
    return IntakeSettings(
        smtp=SmtpListen(port=free_port()), recipients=["abuse@provider.example"], **extra
    )


@pytest.fixture
def listener(desk: Desk) -> Iterator[Listener]:
    with Listener(desk.uow, settings(max_message_bytes=200_000)) as running:
        yield running


def complaint(body: str = "Your server 198.51.100.1 sends spam.") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Jane Doe <jane@isp.example>"
    message["To"] = "abuse@provider.example"
    message["Subject"] = "Spam from your network"
    message["Message-ID"] = "<complaint-1@isp.example>"
    message.set_content(body)
    return message


def reports(desk: Desk) -> list[Report]:
    with desk.uow().reading() as uow:
        return list(uow.session.execute(sa.select(Report).order_by(Report.id)).scalars())


def send(port: int, message: EmailMessage, to: str = "abuse@provider.example") -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.send_message(message, to_addrs=[to])


def test_a_complaint_is_stored_before_250(desk: Desk, listener: Listener) -> None:
    send(listener.settings.smtp.port, complaint())
    [report] = reports(desk)
    assert report.source is ReportSource.SMTP
    assert report.status is ReportStatus.RECEIVED
    assert report.message_id == "<complaint-1@isp.example>"
    with desk.uow().reading() as uow:
        raw = uow.session.get(Report, report.id).raw
    assert b"sends spam" in raw


def test_a_redelivered_message_is_kept_once(desk: Desk, listener: Listener) -> None:
    send(listener.settings.smtp.port, complaint())
    send(listener.settings.smtp.port, complaint())
    assert len(reports(desk)) == 1


def test_mail_for_other_addresses_is_refused(desk: Desk, listener: Listener) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(listener.settings.smtp.port, complaint(), to="postmaster@elsewhere.example")
    [(code, _)] = refused.value.recipients.values()
    assert code == 550
    assert reports(desk) == []


def test_oversized_mail_is_refused(desk: Desk, listener: Listener) -> None:
    with pytest.raises(smtplib.SMTPException) as refused:
        send(listener.settings.smtp.port, complaint("x" * 300_000))
    assert "552" in str(refused.value) or "size" in str(refused.value).lower()
    assert reports(desk) == []


def test_storage_failure_answers_451_so_the_sender_retries(desk: Desk, tmp_path) -> None:
    from abusedesk.store.engine import make_engine, make_session_factory

    broken = make_engine(f"sqlite:///{tmp_path}/no-such-dir/db.sqlite3")
    with (
        Listener(lambda: UnitOfWork(make_session_factory(broken)), settings()) as running,
        pytest.raises(smtplib.SMTPDataError) as refused,
    ):
        send(running.settings.smtp.port, complaint())
    assert refused.value.smtp_code == 451


def test_concurrent_sessions_are_stored_together_and_each_answered_with_its_own_report(
    desk: Desk, listener: Listener
) -> None:
    import threading

    from abusedesk.audit.service import verify_log

    answers: dict[str, bytes] = {}
    failures: list[BaseException] = []

    def session(n: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", listener.settings.smtp.port, timeout=30) as client:
                client.ehlo()
                for i in range(5):
                    message = complaint(f"Session {n}, message {i}: 198.51.100.{n} sends spam.")
                    del message["Message-ID"]
                    message["Message-ID"] = f"<s{n}-m{i}@isp.example>"
                    client.mail("jane@isp.example")
                    client.rcpt("abuse@provider.example")
                    code, reply = client.data(message.as_bytes())
                    assert code == 250, reply
                    answers[message["Message-ID"]] = reply
                    # The MTA did not see the 250 in time, and sends the same message again.
                    if i == 0:
                        client.mail("jane@isp.example")
                        client.rcpt("abuse@provider.example")
                        assert client.data(message.as_bytes())[1] == reply
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=session, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    stored = {r.message_id: r.id for r in reports(desk)}
    assert len(stored) == 40
    # Each 250 names the report its own message was stored as.
    for message_id, reply in answers.items():
        assert reply.endswith(f"report {stored[message_id]}".encode()), (message_id, reply)
    with desk.uow().reading() as uow:
        assert verify_log(uow.session).ok
