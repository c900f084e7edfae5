"""The outbox worker against a real SMTP server (aiosmtpd): what customers receive, retries,
giving up, TLS and AUTH, the file transport, and what must never be in a customer's mail."""

from __future__ import annotations

import hashlib
import threading
from datetime import timedelta
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from abusedesk.accounts.choices import Role
from abusedesk.accounts.permissions import Actor
from abusedesk.bootstrap import Desk
from abusedesk.cases import service as cases
from abusedesk.cases import sweeper
from abusedesk.cases.choices import TimelineKind
from abusedesk.cases.models import Case
from abusedesk.clock import FakeClock
from abusedesk.config import Settings
from abusedesk.intake.choices import ReportSource, ReportStatus
from abusedesk.intake.models import Report
from abusedesk.notify.choices import MessageTemplate, OutboxState
from abusedesk.notify.models import OutboxMessage
from abusedesk.notify.outbox import queue_for_complainant
from abusedesk.notify.service import DeliveryResult, deliver_due
from abusedesk.notify.settings import NotifySettings, SmtpSecurity, SmtpSettings
from abusedesk.notify.settings import Transport as TransportKind
from abusedesk.notify.transport import FileTransport, SmtpTransport, make_transport
from abusedesk.policy import Category
from tests import factories
from tests.integration.test_case_service import ANALYST
from tests.smtp_peer import SmtpPeer, free_port, password_checker, self_signed, smtp_peer

FROM = "abuse@provider.example"


@pytest.fixture
def peer() -> Any:
    with smtp_peer() as server:
        yield server


def settings_for(desk: Desk, port: int, **smtp: Any) -> Settings:
    return desk.settings.model_copy(
        update={
            "smtp": SmtpSettings(
                host="127.0.0.1", port=port, timeout_seconds=5, helo_name="desk.test", **smtp
            ),
            "notify": NotifySettings(
                transport=TransportKind.SMTP,
                from_address=FROM,
                from_name="Thermo Abuse Desk",
                reply_to="abuse-replies@provider.example",
            ),
        }
    )


def deliver(desk: Desk, settings: Settings) -> DeliveryResult:
    return deliver_due(desk.uow(), SmtpTransport(settings.smtp), settings, desk.policy)


def open_spam(desk: Desk, c: factories.Customer, **new: Any) -> Case:
    return cases.open_case(
        desk.uow(),
        ANALYST,
        cases.NewCase(c.account_id, Category.SPAM, server_id=c.server_ids[0], **new),
        desk.policy,
    ).case


def outbox(desk: Desk) -> list[OutboxMessage]:
    with desk.uow() as uow:
        return list(
            uow.session.execute(sa.select(OutboxMessage).order_by(OutboxMessage.id)).scalars()
        )


def subject(mail: EmailMessage) -> str:
    # A subject that does not fit the first line is folded before its first word, and the
    # email package keeps the fold's space when it reads it back.
    return str(mail["Subject"]).strip()


def kinds(desk: Desk, case_id: int) -> list[TimelineKind]:
    return [e.kind for e in cases.get_case(desk.uow(), ANALYST, case_id).timeline]


def test_the_ticket_mail_reaches_the_abuse_and_technical_contacts(
    desk: Desk, peer: SmtpPeer, clock: FakeClock
) -> None:
    c = factories.customer(desk)
    case = open_spam(desk, c, summary="4 000 spam messages to spamtrap addresses")
    settings = settings_for(desk, peer.port)

    result = deliver(desk, settings)

    assert (result.sent, result.failed, result.gave_up) == (1, 0, 0)
    [got] = peer.received
    assert got.mail_from == FROM
    assert got.rcpt_tos == ["abuse@c1001.example", "noc@c1001.example"]
    mail = got.message
    [row] = outbox(desk)
    assert subject(mail).startswith(f"[{case.ticket}] ")
    assert "Unsolicited bulk e-mail" in subject(mail)
    assert mail["From"] == f"Thermo Abuse Desk <{FROM}>"
    assert mail["To"] == "abuse@c1001.example, noc@c1001.example"
    assert mail["Reply-To"] == "abuse-replies@provider.example"
    assert mail["Message-ID"] == f"<outbox-{row.id}.{case.ticket}@provider.example>"
    assert mail["References"] == f"<case-{case.id}@provider.example>"
    assert mail["In-Reply-To"] == f"<case-{case.id}@provider.example>"
    assert mail["X-Abusedesk-Ticket"] == case.ticket
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["Date"].datetime == clock.now()
    assert mail.get_content_type() == "multipart/alternative"
    text = mail.get_body(("plain",))
    html = mail.get_body(("html",))
    assert text is not None
    assert html is not None
    assert f"http://127.0.0.1:8080/portal/cases/{case.id}" in text.get_content()
    assert "within 24 hours" in text.get_content()
    assert "4 000 spam messages" in text.get_content()
    assert f'href="http://127.0.0.1:8080/portal/cases/{case.id}"' in html.get_content()

    assert row.state is OutboxState.SENT
    assert row.sent_at == clock.now()
    assert row.attempts == 1
    assert row.next_attempt_at is None
    assert kinds(desk, case.id) == [TimelineKind.OPENED, TimelineKind.MAIL_SENT]
    sent_line = cases.get_case(desk.uow(), ANALYST, case.id).timeline[-1]
    assert sent_line.actor == "mailer"
    assert sent_line.data["message_id"] == mail["Message-ID"]
    assert deliver(desk, settings).sent == 0  # sent once, not again


def test_reminder_and_disconnection_mail_follow_the_sweeper(
    desk: Desk, peer: SmtpPeer, clock: FakeClock
) -> None:
    c = factories.customer(desk)
    case = open_spam(desk, c)
    settings = settings_for(desk, peer.port)
    assert deliver(desk, settings).sent == 1

    clock.advance(timedelta(hours=12))
    assert sweeper.sweep(desk.uow(), desk.policy).reminders == 1
    assert deliver(desk, settings).sent == 1
    reminder = peer.received[-1].message
    assert subject(reminder).startswith(f"[{case.ticket}] Reminder: 12 hours left")
    body = reminder.get_body(("plain",))
    assert body is not None
    assert "Time left: 12 hours." in body.get_content()

    clock.advance(timedelta(hours=12))
    assert sweeper.sweep(desk.uow(), desk.policy).disconnected == 1
    assert deliver(desk, settings).sent == 1
    got = peer.received[-1]
    # Disconnection concerns the billing contact too.
    assert got.rcpt_tos == ["abuse@c1001.example", "noc@c1001.example", "billing@c1001.example"]
    cut = got.message
    assert subject(cut).startswith(f"[{case.ticket}] Services disconnected")
    text = cut.get_body(("plain",))
    assert text is not None
    assert "the open deadline passed" in text.get_content()
    assert "HOW TO GET SERVICE BACK" in text.get_content()
    assert "7 days from now" in text.get_content()  # the termination deadline
    # One thread per case.
    roots = {m.message["References"] for m in peer.received}
    assert roots == {f"<case-{case.id}@provider.example>"}
    assert len({m.message["Message-ID"] for m in peer.received}) == 3


def test_a_temporary_refusal_is_retried_with_backoff_then_delivered(
    desk: Desk, peer: SmtpPeer, clock: FakeClock
) -> None:
    c = factories.customer(desk)
    case = open_spam(desk, c)
    settings = settings_for(desk, peer.port)
    peer.recorder.data_answers = ["451 4.3.0 Try again later", "451 4.3.0 Still busy"]
    start = clock.now()

    assert deliver(desk, settings).failed == 1
    [row] = outbox(desk)
    assert row.state is OutboxState.FAILED
    assert row.attempts == 1
    assert row.next_attempt_at == start + timedelta(seconds=60)  # retry_base_seconds
    assert row.last_error is not None
    assert "451 4.3.0 Try again later" in row.last_error
    assert deliver(desk, settings).handled == 0  # not due yet

    clock.advance(timedelta(seconds=60))
    assert deliver(desk, settings).failed == 1
    [row] = outbox(desk)
    assert row.attempts == 2
    assert row.next_attempt_at == clock.now() + timedelta(seconds=120)  # doubled

    clock.advance(timedelta(seconds=120))
    assert deliver(desk, settings).sent == 1
    [row] = outbox(desk)
    assert (row.state, row.attempts, row.next_attempt_at) == (OutboxState.SENT, 3, None)
    assert len(peer.received) == 1
    # The first failure and the delivery are on the timeline; the retry between them is not.
    assert kinds(desk, case.id) == [
        TimelineKind.OPENED,
        TimelineKind.MAIL_FAILED,
        TimelineKind.MAIL_SENT,
    ]


def test_backoff_is_capped_and_attempts_run_out(
    desk: Desk, peer: SmtpPeer, clock: FakeClock
) -> None:
    c = factories.customer(desk)
    case = open_spam(desk, c)
    settings = settings_for(desk, peer.port)
    settings.notify.retry_base_seconds = 100
    settings.notify.retry_max_seconds = 150
    settings.notify.max_attempts = 3
    peer.recorder.data_answers = ["421 4.7.0 Try again later"] * 5

    waits = []
    for _ in range(2):
        assert deliver(desk, settings).failed == 1
        [row] = outbox(desk)
        assert row.next_attempt_at is not None
        waits.append(row.next_attempt_at - clock.now())
        clock.set(row.next_attempt_at)
    assert waits == [timedelta(seconds=100), timedelta(seconds=150)]
    assert deliver(desk, settings).gave_up == 1
    [row] = outbox(desk)
    assert (row.state, row.attempts, row.next_attempt_at) == (OutboxState.FAILED, 3, None)
    clock.advance(timedelta(days=30))
    assert deliver(desk, settings).handled == 0  # given up means no more attempts
    assert kinds(desk, case.id)[-1] is TimelineKind.MAIL_FAILED


def test_a_permanent_refusal_gives_up_at_once(desk: Desk, peer: SmtpPeer, clock: FakeClock) -> None:
    c = factories.customer(desk)
    case = open_spam(desk, c)
    settings = settings_for(desk, peer.port)
    peer.recorder.rcpt_answer = "550 5.1.1 No such user"

    result = deliver(desk, settings)

    assert (result.sent, result.failed, result.gave_up) == (0, 0, 1)
    [row] = outbox(desk)
    assert (row.state, row.attempts, row.next_attempt_at) == (OutboxState.FAILED, 1, None)
    assert row.last_error is not None
    assert "550 5.1.1 No such user" in row.last_error
    line = cases.get_case(desk.uow(), ANALYST, case.id).timeline[-1]
    assert line.kind is TimelineKind.MAIL_FAILED
    assert "given up" in line.note
    assert "550" in line.data["error"]
    clock.advance(timedelta(days=1))
    peer.recorder.rcpt_answer = None
    assert deliver(desk, settings).handled == 0
    assert peer.received == []


def test_a_recipient_refused_among_others_is_noted_on_a_sent_message(
    desk: Desk, peer: SmtpPeer
) -> None:
    c = factories.customer(desk)
    case = open_spam(desk, c)
    peer.recorder.refuse = {"noc@c1001.example": "550 5.1.1 Mailbox unavailable"}

    assert deliver(desk, settings_for(desk, peer.port)).sent == 1

    [got] = peer.received
    assert got.rcpt_tos == ["abuse@c1001.example"]
    [row] = outbox(desk)
    assert row.state is OutboxState.SENT
    assert row.last_error == "refused: noc@c1001.example: 550 5.1.1 Mailbox unavailable"
    line = cases.get_case(desk.uow(), ANALYST, case.id).timeline[-1]
    assert line.kind is TimelineKind.MAIL_SENT
    assert line.note.endswith("the mail server refused noc@c1001.example")


def test_an_unreachable_relay_is_a_temporary_failure(desk: Desk, clock: FakeClock) -> None:
    c = factories.customer(desk)
    open_spam(desk, c)
    settings = settings_for(desk, free_port())  # nothing listens there

    assert deliver(desk, settings).failed == 1
    [row] = outbox(desk)
    assert row.state is OutboxState.FAILED
    assert row.next_attempt_at == clock.now() + timedelta(seconds=60)
    assert row.last_error is not None
    assert "ConnectionRefused" in row.last_error


def test_starttls_and_auth_as_configured(desk: Desk, tmp_path: Path, clock: FakeClock) -> None:
    cert = self_signed(tmp_path)
    c = factories.customer(desk)
    open_spam(desk, c)
    with smtp_peer(
        tls_context=cert.server_context(),
        require_starttls=True,
        auth_required=True,
        authenticator=password_checker("mailer", "s3cret"),
    ) as server:
        plain = settings_for(desk, server.port)
        assert deliver(desk, plain).failed == 1  # the relay wants STARTTLS: retried, not lost
        [row] = outbox(desk)
        assert row.last_error is not None
        assert "530" in row.last_error

        clock.advance(timedelta(minutes=1))
        wrong = settings_for(
            desk,
            server.port,
            security=SmtpSecurity.STARTTLS,
            ca_file=cert.cert_file,
            username="mailer",
            password="wrong",
        )
        assert deliver(desk, wrong).failed == 1
        [row] = outbox(desk)
        assert row.last_error is not None
        assert "authentication" in row.last_error

        clock.advance(timedelta(minutes=2))
        good = settings_for(
            desk,
            server.port,
            security=SmtpSecurity.STARTTLS,
            ca_file=cert.cert_file,
            username="mailer",
            password="s3cret",
        )
        assert deliver(desk, good).sent == 1
        [got] = server.received
        assert got.tls
        assert got.login == "mailer"


def test_starttls_checks_the_certificate(desk: Desk, tmp_path: Path) -> None:
    cert = self_signed(tmp_path)
    c = factories.customer(desk)
    open_spam(desk, c)
    with smtp_peer(tls_context=cert.server_context(), require_starttls=True) as server:
        untrusted = settings_for(desk, server.port, security=SmtpSecurity.STARTTLS)
        assert deliver(desk, untrusted).failed == 1
        [row] = outbox(desk)
        assert row.last_error is not None
        assert "CERTIFICATE_VERIFY_FAILED" in row.last_error
        assert server.received == []


def test_implicit_tls(desk: Desk, tmp_path: Path) -> None:
    cert = self_signed(tmp_path)
    c = factories.customer(desk)
    open_spam(desk, c)
    with smtp_peer(ssl_context=cert.server_context()) as server:
        settings = settings_for(
            desk, server.port, security=SmtpSecurity.TLS, ca_file=cert.cert_file
        )
        assert deliver(desk, settings).sent == 1
        [got] = server.received
        assert got.tls


def test_the_file_transport_writes_a_parseable_eml(desk: Desk) -> None:
    c = factories.customer(desk)
    case = open_spam(desk, c)
    settings = desk.settings  # the embedded default: files under home/mail
    transport = make_transport(settings)
    assert isinstance(transport, FileTransport)

    assert deliver_due(desk.uow(), transport, settings, desk.policy).sent == 1

    [row] = outbox(desk)
    [path] = sorted((settings.home / "mail").iterdir())
    assert path.name == f"outbox-{row.id}.{case.ticket}@provider.example.eml"
    mail = BytesParser(_class=EmailMessage, policy=default_policy).parsebytes(path.read_bytes())
    assert subject(mail).startswith(f"[{case.ticket}] ")
    assert mail["To"] == "abuse@c1001.example, noc@c1001.example"
    body = mail.get_body(("plain",))
    assert body is not None
    assert case.ticket in body.get_content()


def test_an_operator_template_is_used_and_a_broken_one_is_retried(
    desk: Desk, peer: SmtpPeer, tmp_path: Path, clock: FakeClock
) -> None:
    c = factories.customer(desk)
    case = open_spam(desk, c)
    settings = settings_for(desk, peer.port)
    settings.notify.templates_dir = tmp_path
    (tmp_path / "en").mkdir()
    broken = tmp_path / "en" / "ticket_created.txt.j2"
    broken.write_text("Dear {{ no_such_value }}\n")

    assert deliver(desk, settings).failed == 1
    [row] = outbox(desk)
    assert row.last_error is not None
    assert "no_such_value" in row.last_error

    broken.write_text("Ticket {{ ticket }} for {{ account_reference }}: act {{ time_left }}.\n")
    (tmp_path / "en" / "ticket_created.subject.j2").write_text("Please act on {{ resource }}")
    clock.advance(timedelta(minutes=1))
    assert deliver(desk, settings).sent == 1
    mail = peer.received[-1].message
    assert subject(mail) == f"[{case.ticket}] Please act on srv0.c1001.example"
    body = mail.get_body(("plain",))
    assert body is not None
    assert body.get_content().rstrip() == (
        f"Ticket {case.ticket} for C1001: act 23 hours and 59 minutes."
    )


def test_complainant_mail_goes_to_the_complainant_and_stays_off_the_customer_timeline(
    desk: Desk, peer: SmtpPeer
) -> None:
    c = factories.customer(desk)
    case = open_spam(desk, c)
    with desk.uow() as uow:
        queue_for_complainant(
            uow.session,
            "reporter@complainant.example",
            MessageTemplate.COMPLAINANT_ACK,
            {"ticket": case.ticket, "status_url": "http://127.0.0.1:8080/report/status/t0k"},
            desk.clock.now(),
            case_id=case.id,
        )
        uow.commit()
    settings = settings_for(desk, peer.port)

    assert deliver(desk, settings).sent == 2
    [ack] = [m for m in peer.received if m.rcpt_tos == ["reporter@complainant.example"]]
    assert ack.message["References"] == f"<case-{case.id}-complainant@provider.example>"
    assert ack.message["Auto-Submitted"] == "auto-replied"  # RFC 3834: an answer to their mail
    body = ack.message.get_body(("plain",))
    assert body is not None
    assert "http://127.0.0.1:8080/report/status/t0k" in body.get_content()
    assert "Customer C1001" not in ack.content.decode()

    customer = Actor("customer:ops@c1001.example", Role.CUSTOMER, account_id=c.account_id)
    seen = cases.timeline_for(customer, cases.get_case(desk.uow(), customer, case.id))
    assert [e.kind for e in seen] == [TimelineKind.OPENED, TimelineKind.MAIL_SENT]
    assert all("complainant" not in e.note for e in seen)
    assert all(e.data == {} for e in seen)
    staff = kinds(desk, case.id)
    assert staff.count(TimelineKind.NOTE) == 1  # the acknowledgement, as a staff note


def test_a_customer_mail_carries_no_other_customer_and_no_hidden_complainant(
    desk: Desk, peer: SmtpPeer
) -> None:
    mine = factories.customer(desk, "C1001")
    theirs = factories.customer(desk, "C2002", base="203.0.113")
    with desk.uow() as uow:
        raw = b"From: Jane Complainant <jane@complainant.example>\r\n\r\nSpam from you."
        report = Report(
            received_at=desk.clock.now(),
            source=ReportSource.SMTP,
            raw=raw,
            size=len(raw),
            sha256=hashlib.sha256(raw).hexdigest(),
            status=ReportStatus.ACCEPTED,
            complainant_name="Jane Complainant",
            complainant_email="jane@complainant.example",
        )
        uow.session.add(report)
        uow.commit()
        report_id = report.id
    open_spam(desk, mine, summary="spam seen at a spamtrap", report_ids=[report_id])
    open_spam(desk, theirs, summary="spam seen at another spamtrap")
    settings = settings_for(desk, peer.port)

    assert deliver(desk, settings).sent == 2

    [to_mine] = [m for m in peer.received if "abuse@c1001.example" in m.rcpt_tos]
    [to_theirs] = [m for m in peer.received if "abuse@c2002.example" in m.rcpt_tos]
    for got, other, their_summary in (
        (to_mine, "c2002", "seen at another spamtrap"),
        (to_theirs, "c1001", "seen at a spamtrap"),
    ):
        mail = got.message
        parts = [str(mail)] + [p.get_content() for p in mail.walk() if not p.is_multipart()]
        everything = "\n".join(parts).lower()
        assert other not in everything  # reference, name, hostnames, contacts
        assert their_summary not in everything
        assert "jane" not in everything
        assert "complainant.example" not in everything
        assert all(other not in r for r in got.rcpt_tos)
    # The complainant's own mail was not sent to the customer either.
    assert "jane@complainant.example" not in to_mine.rcpt_tos


def test_two_workers_send_every_message_exactly_once(desk: Desk) -> None:
    for n in range(12):
        factories.customer(desk, f"C{3000 + n}", base=f"10.0.{n}")
    for c_id in _account_ids(desk):
        cases.open_case(desk.uow(), ANALYST, cases.NewCase(c_id, Category.PHISHING), desk.policy)
    sent: list[str] = []
    lock = threading.Lock()

    class Recording:
        def send(self, message: EmailMessage) -> dict[str, str]:
            with lock:
                sent.append(str(message["Message-ID"]))
            return {}

    results: list[DeliveryResult] = []

    def work() -> None:
        results.append(deliver_due(desk.uow(), Recording(), desk.settings, desk.policy, batch=1000))

    workers = [threading.Thread(target=work) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(sent) == 12
    assert len(set(sent)) == 12
    assert sum(r.sent for r in results) == 12
    assert all(m.state is OutboxState.SENT for m in outbox(desk))


def _account_ids(desk: Desk) -> list[int]:
    from abusedesk.inventory.models import Account

    with desk.uow() as uow:
        return list(uow.session.execute(sa.select(Account.id).order_by(Account.id)).scalars())


def test_each_account_gets_mail_in_its_own_language(
    desk: Desk, peer: SmtpPeer, tmp_path: Path
) -> None:
    from abusedesk.accounts.permissions import SYSTEM
    from abusedesk.inventory.schemas import AccountPatch
    from abusedesk.inventory.service import update_account

    french = factories.customer(desk, "C1001")
    english = factories.customer(desk, "C2002", base="203.0.113")
    update_account(desk.uow(), SYSTEM, "C1001", AccountPatch(language="fr"))
    settings = settings_for(desk, peer.port)
    settings.notify.templates_dir = tmp_path
    (tmp_path / "fr").mkdir()
    (tmp_path / "fr" / "ticket_created.subject.j2").write_text(
        "Signalement d'abus : {{ resource }}"
    )
    french_case = open_spam(desk, french)
    english_case = open_spam(desk, english)
    assert deliver(desk, settings).sent == 2
    subjects = {subject(r.message) for r in peer.received}
    assert f"[{french_case.ticket}] Signalement d'abus : srv0.c1001.example" in subjects
    # No French template for the body: it falls back to English, and so does the other account.
    assert any(s.startswith(f"[{english_case.ticket}] Abuse report") for s in subjects)
