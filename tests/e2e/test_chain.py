"""The whole chain, end to end, on a fake clock, against real peers: a complaint mailed to the
intake SMTP listener; the worker (as `abusedesk run --role worker` runs it) verifies and locates
it, opens the case, mails the ticket over SMTP, reminds, disconnects at the deadline by announcing
a blackhole and a FlowSpec rule to BIRD, and mails that; the customer makes contact and fixes it;
staff reconnect over the API, the routes are withdrawn, the case closes. And the other ending:
disconnected, no resolution in time, terminated.
"""

from __future__ import annotations

import dataclasses
import smtplib
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage

import httpx
import pytest

from abusedesk.accounts.choices import Role
from abusedesk.accounts.permissions import SYSTEM
from abusedesk.bootstrap import Desk
from abusedesk.cases.choices import CaseState
from abusedesk.clock import FakeClock
from abusedesk.intake.settings import IntakeSettings, SmtpListen
from abusedesk.inventory.choices import AccountStatus, ServerStatus
from abusedesk.inventory.service import get_account
from abusedesk.notify.settings import NotifySettings, SmtpSettings, Transport
from abusedesk.runtime import Worker
from tests import factories
from tests.bgp_peer import Bird, enforce_settings, wait_for
from tests.e2e.conftest import Api
from tests.intake_listener import Listener
from tests.smtp_peer import Received, SmtpPeer, free_port, smtp_peer

SERVER_V4 = "198.51.100.1/32"


@pytest.fixture
def mailbox() -> Iterator[SmtpPeer]:
    with smtp_peer() as peer:
        yield peer


@pytest.fixture
def worker(desk: Desk, bird: Bird, mailbox: SmtpPeer, workdir) -> Iterator[Worker]:
    settings = desk.settings.model_copy(
        update={
            "home": workdir / "home",
            "smtp": SmtpSettings(host=mailbox.host, port=mailbox.port),
            "notify": NotifySettings(
                transport=Transport.SMTP, from_address="abuse@provider.example"
            ),
            "enforce": enforce_settings(bird),
        }
    )
    running = Worker(dataclasses.replace(desk, settings=settings))
    running.start()
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
def intake(desk: Desk) -> Iterator[Listener]:
    settings = IntakeSettings(
        smtp=SmtpListen(port=free_port()), recipients=["abuse@provider.example"]
    )
    with Listener(desk.uow, settings) as running:
        yield running


def complain(intake: Listener, body: str, subject: str = "Abuse from your network") -> None:
    message = EmailMessage()
    message["From"] = "Jane Doe <jane@isp.example>"
    message["To"] = "abuse@provider.example"
    message["Subject"] = subject
    message.set_content(body)
    with smtplib.SMTP("127.0.0.1", intake.settings.smtp.port, timeout=10) as client:
        client.send_message(message)


def to_customer(mailbox: SmtpPeer) -> list[Received]:
    return [r for r in mailbox.received if "jane@isp.example" not in r.rcpt_tos]


def subjects(mailbox: SmtpPeer) -> list[str]:
    # A long subject is folded on the wire and read back with a leading space.
    return [str(r.message["Subject"]).strip() for r in to_customer(mailbox)]


def case_of(api: httpx.Client, case_id: int) -> dict:
    response = api.get(f"/api/v1/cases/{case_id}")
    assert response.status_code == 200, response.text
    return response.json()


def test_complaint_to_disconnection_to_reconnection(
    api: Api,
    desk: Desk,
    clock: FakeClock,
    worker: Worker,
    mailbox: SmtpPeer,
    bird: Bird,
    intake: Listener,
) -> None:
    c = factories.customer(desk)
    staff = api.as_role(Role.ANALYST)
    customer = api.as_role(Role.CUSTOMER, c.reference)

    # A complaint arrives by mail; the worker verifies it (R5), locates the server, opens a
    # ticket in the customer's account (R14), acknowledges the complainant.
    complain(
        intake,
        "Your server 198.51.100.1 sends us spam: unsolicited bulk e-mail, "
        "hundreds of messages an hour since this morning.",
    )
    worker.tick()
    [listed] = staff.get("/api/v1/cases").json()
    case_id, ticket = listed["id"], listed["ticket"]
    assert listed["category"] == "spam"
    [ack] = [r for r in mailbox.received if r.rcpt_tos == ["jane@isp.example"]]
    # The complaint went to one case: the acknowledgement carries its tag, for the answer.
    assert str(ack.message["Subject"]).startswith(f"[{ticket}] ")
    assert ack.message["Auto-Submitted"] == "auto-replied"

    [ticket_mail] = to_customer(mailbox)
    assert subjects(mailbox)[0].startswith(f"[{ticket}] Abuse report")
    assert sorted(ticket_mail.rcpt_tos) == ["abuse@c1001.example", "noc@c1001.example"]
    ticket_text = ticket_mail.message.get_body(("plain",)).get_content()
    assert "198.51.100.1" in ticket_text
    assert "jane" not in ticket_text.lower()  # the complainant stays hidden

    # Half-way through the 24 hours: a reminder (R18). Nobody acknowledges.
    clock.advance(timedelta(hours=12))
    worker.tick()
    assert subjects(mailbox)[1].startswith(f"[{ticket}] Reminder: 12 hours left")
    clock.advance(timedelta(hours=10))
    worker.tick()
    assert subjects(mailbox)[2].startswith(f"[{ticket}] Reminder: 2 hours left")

    # The deadline passes: disconnected (R16), the blackhole and FlowSpec rule announced.
    clock.advance(timedelta(hours=2))
    worker.tick()
    assert case_of(staff, case_id)["state"] == CaseState.DISCONNECTED.value
    wait_for("the BGP session is up", bird.established)
    wait_for("BIRD holds the blackhole", lambda: SERVER_V4 in bird.unicast())
    assert "(65535,666)" in bird.unicast()
    wait_for("BIRD holds the FlowSpec rule", lambda: "src 198.51.100.1/32" in bird.flows())
    disconnected_mail = to_customer(mailbox)[-1]
    assert subjects(mailbox)[-1].startswith(f"[{ticket}] Services disconnected")
    assert "billing@c1001.example" in disconnected_mail.rcpt_tos
    assert "disconnect" in disconnected_mail.message.get_body(("plain",)).get_content().lower()

    # The customer makes contact and fixes it; staff reconnect: the routes are withdrawn.
    assert (
        customer.post(f"/api/v1/cases/{case_id}/contact", json={"note": "MTA closed"}).status_code
        == 200
    )
    back = staff.post(f"/api/v1/cases/{case_id}/reconnect", json={"reason": "verified clean"})
    assert back.status_code == 200, back.text
    worker.tick()
    wait_for("the blackhole is withdrawn", lambda: SERVER_V4 not in bird.unicast())
    wait_for("the FlowSpec rule is withdrawn", lambda: "198.51.100.1" not in bird.flows())
    final = case_of(staff, case_id)
    assert final["state"] == CaseState.CLOSED.value
    assert final["resolution"] == "resolved"
    assert (
        "reconnect" in to_customer(mailbox)[-1].message.get_body(("plain",)).get_content().lower()
    )
    kinds = [e["kind"] for e in final["timeline"]]
    for kind in (
        "opened",
        "mail_sent",
        "reminder_sent",
        "deadline_passed",
        "enforcement_applied",
        "customer_contact",
        "reconnected",
    ):
        assert kind in kinds, kinds


def test_disconnected_then_terminated_when_nothing_is_resolved(
    api: Api, desk: Desk, clock: FakeClock, worker: Worker, mailbox: SmtpPeer, bird: Bird
) -> None:
    c = factories.customer(desk)
    staff = api.as_role(Role.ANALYST)
    opened = staff.post(
        "/api/v1/cases",
        json={
            "account_reference": c.reference,
            "category": "phishing",
            "server_hostname": c.hostnames[0],
            "summary": "Bank phishing kit",
        },
    )
    case_id = opened.json()["case"]["id"]
    worker.tick()

    clock.advance(timedelta(hours=4))  # phishing is high severity: 4 hours
    worker.tick()
    assert case_of(staff, case_id)["state"] == CaseState.DISCONNECTED.value
    wait_for("BIRD holds the blackhole", lambda: SERVER_V4 in bird.unicast())

    clock.advance(desk.policy.termination_grace)  # R17: no resolution in time
    worker.tick()
    assert case_of(staff, case_id)["state"] == CaseState.TERMINATED.value
    account = get_account(desk.uow(), SYSTEM, c.reference)
    assert account.status is AccountStatus.TERMINATED
    assert {s.status for s in account.servers} == {ServerStatus.TERMINATED}
    terminated_mail = mailbox.received[-1]
    assert "Services terminated" in subjects(mailbox)[-1]
    assert "terminat" in terminated_mail.message.get_body(("plain",)).get_content().lower()
    # A terminated server stays cut off at the network.
    assert SERVER_V4 in bird.unicast()
