"""Replies threaded into cases: a mail whose subject carries a case's tag, from the customer or
the complainant, goes on the case's timeline instead of becoming a new complaint; from anyone
else, or for a case that does not exist, it is a complaint like any other."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from abusedesk.accounts import service as accounts
from abusedesk.accounts.choices import Role
from abusedesk.accounts.permissions import SYSTEM, Actor
from abusedesk.bootstrap import Desk
from abusedesk.cases import machine
from abusedesk.cases.choices import CaseState, Event, Resolution, TimelineKind
from abusedesk.cases.models import Case, ticket_tag
from abusedesk.cases.service import get_case, timeline_for, transition
from abusedesk.intake.choices import ReportStatus
from abusedesk.intake.pipeline import ProcessResult, report_reference
from abusedesk.notify.choices import MessageTemplate
from abusedesk.notify.models import OutboxMessage
from tests.integration.test_intake_pipeline import (
    cases,
    complainant_mail,
    complaint,
    own,
    report,
    rows,
    run,
)

CUSTOMER = "abuse@c1001.example"  # the account's abuse contact (tests/factories.py)
JANE = "Jane Doe <jane@victim.example>"


def reply(sender: str, subject: str, body: str, **headers: str) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "abuse@provider.example"
    message["Subject"] = subject
    message["Message-ID"] = f"<{abs(hash((sender, subject, body)))}@reply.example>"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return bytes(message)


QUOTED = (
    "We have shut the mail relay down and are cleaning the server.\n"
    "\n"
    "On Mon, 2 Mar 2026 at 09:00, Abuse Desk <abuse@provider.example> wrote:\n"
    "> Your server 198.51.100.10 sends spam.\n"
    "> Please act within 24 hours.\n"
)


@pytest.fixture
def opened(desk: Desk) -> Case:
    """A case opened by Jane's complaint about a spamming server."""
    own(desk, "198.51.100.10")
    first = run(desk, complaint(JANE, "Spam", "198.51.100.10 sends us unsolicited bulk mail."))
    assert first.status is ReportStatus.ACCEPTED
    [case] = cases(desk)
    return case


def timeline(desk: Desk, case_id: int) -> list[tuple[TimelineKind, str, str]]:
    case = get_case(desk.uow(), SYSTEM, case_id)
    return [(e.kind, e.actor, e.note) for e in case.timeline]


def outbox_count(desk: Desk) -> int:
    return len(rows(desk, OutboxMessage))


def test_the_customer_answering_the_ticket_is_customer_contact(desk: Desk, opened: Case) -> None:
    mails = outbox_count(desk)
    result = run(desk, reply(CUSTOMER, f"Re: [{opened.ticket}] Abuse report: spam", QUOTED))
    assert result.status is ReportStatus.THREADED
    assert result.threaded == [opened.id]
    assert len(cases(desk)) == 1  # no new case
    kind, actor, note = timeline(desk, opened.id)[-1]
    assert (kind, actor) == (TimelineKind.CUSTOMER_CONTACT, f"customer:{CUSTOMER}")
    assert note == "We have shut the mail relay down and are cleaning the server."
    [case] = cases(desk)
    assert case.customer_contacted
    assert case.state is CaseState.OPEN
    stored = report(desk, result.report_id)
    assert stored.status is ReportStatus.THREADED
    assert stored.parsed["threaded"]["cases"] == [opened.id]
    assert stored.parsed["threaded"]["from"] == "customer"
    assert stored.complainant_email == ""  # the customer is no complainant
    assert outbox_count(desk) == mails  # nothing answers a threaded mail


@pytest.mark.parametrize("tag", ["AD-{id}", "ad-{id:06d}", "[ AD-{id:06d} ]"])
def test_the_tag_is_read_loosely(desk: Desk, opened: Case, tag: str) -> None:
    subject = "Re: " + tag.format(id=opened.id) + " fixed"
    result = run(desk, reply(CUSTOMER, subject, "Fixed."))
    assert result.status is ReportStatus.THREADED


def test_a_customer_user_counts_as_the_customer(desk: Desk, opened: Case) -> None:
    accounts.add_user(
        desk.uow(),
        SYSTEM,
        accounts.NewUser(email="ops@c1001.example", role=Role.CUSTOMER, account_reference="C1001"),
    )
    result = run(desk, reply("Ops <OPS@c1001.example>", f"[{opened.ticket}]", "On it."))
    assert result.status is ReportStatus.THREADED
    assert timeline(desk, opened.id)[-1][:2] == (
        TimelineKind.CUSTOMER_CONTACT,
        "customer:ops@c1001.example",
    )


def test_the_complainant_writing_again_is_a_staff_only_line(desk: Desk, opened: Case) -> None:
    mails = outbox_count(desk)
    result = run(
        desk,
        reply(JANE, f"Re: [{opened.ticket}] We have received your abuse report", "It goes on."),
    )
    assert result.status is ReportStatus.THREADED
    kind, actor, note = timeline(desk, opened.id)[-1]
    assert (kind, actor, note) == (
        TimelineKind.COMPLAINANT_MESSAGE,
        "complainant:jane@victim.example",
        "It goes on.",
    )
    stored = report(desk, result.report_id)
    assert stored.complainant_email == "jane@victim.example"
    assert stored.parsed["threaded"]["from"] == "complainant"
    # The customer's view of the timeline does not show it: it names the complainant.
    customer = Actor("customer:abuse@c1001.example", Role.CUSTOMER, account_id=opened.account_id)
    seen = [e.kind for e in timeline_for(customer, get_case(desk.uow(), SYSTEM, opened.id))]
    assert TimelineKind.COMPLAINANT_MESSAGE not in seen
    assert outbox_count(desk) == mails


def test_a_tagged_mail_from_a_stranger_is_a_new_complaint(desk: Desk, opened: Case) -> None:
    result = run(
        desk,
        reply(
            "Mallory Smith <mallory@elsewhere.example>",
            f"Re: [{opened.ticket}]",
            "198.51.100.10 spams me too, unsolicited bulk mail every day.",
        ),
    )
    assert result.status is ReportStatus.ACCEPTED
    assert result.threaded == []
    assert result.cases_attached == [opened.id]  # as any complaint about the same server
    assert TimelineKind.COMPLAINANT_MESSAGE not in [k for k, _, _ in timeline(desk, opened.id)]


def test_a_tag_naming_no_case_is_a_new_complaint(desk: Desk, opened: Case) -> None:
    result = run(desk, reply(CUSTOMER, f"Re: [{ticket_tag(opened.id + 40)}]", "Who are you?"))
    assert result.status is not ReportStatus.THREADED
    assert result.threaded == []


def test_an_automatic_reply_is_threaded_but_is_no_contact(desk: Desk, opened: Case) -> None:
    mails = outbox_count(desk)
    result = run(
        desk,
        reply(
            CUSTOMER,
            f"Out of office: [{opened.ticket}] Abuse report",
            "I am away until Monday.",
            Auto_Submitted="auto-replied",
        ),
    )
    assert result.status is ReportStatus.THREADED
    kind, actor, note = timeline(desk, opened.id)[-1]
    assert (kind, actor, note) == (
        TimelineKind.NOTE,
        f"customer:{CUSTOMER}",
        "I am away until Monday.",
    )
    [case] = cases(desk)
    assert not case.customer_contacted
    assert outbox_count(desk) == mails
    assert report(desk, result.report_id).parsed["threaded"]["auto_submitted"] is True


def test_an_automatic_reply_from_the_complainant_is_threaded_and_not_answered(
    desk: Desk, opened: Case
) -> None:
    mails = outbox_count(desk)
    result = run(
        desk,
        reply(
            JANE,
            f"Auto: [{opened.ticket}]",
            "Thank you, ticket noted.",
            Auto_Submitted="auto-replied",
        ),
    )
    assert result.status is ReportStatus.THREADED
    assert timeline(desk, opened.id)[-1][0] is TimelineKind.COMPLAINANT_MESSAGE
    assert outbox_count(desk) == mails


def test_the_customer_answering_a_closed_case_is_kept_as_a_note(desk: Desk, opened: Case) -> None:
    close = machine.Command(Event.CLOSE, reason="handled", resolution=Resolution.RESOLVED)
    transition(desk.uow(), SYSTEM, opened.id, close, desk.policy)
    result = run(desk, reply(CUSTOMER, f"Re: [{opened.ticket}] Ticket closed", "Thanks!"))
    assert result.status is ReportStatus.THREADED
    assert timeline(desk, opened.id)[-1][:3] == (
        TimelineKind.NOTE,
        f"customer:{CUSTOMER}",
        "Thanks!",
    )
    [case] = cases(desk)
    assert case.state is CaseState.CLOSED


def test_the_acknowledgement_names_the_one_case_or_else_the_report(desk: Desk) -> None:
    # Two customers: one complaint naming a server of each makes a case in each account.
    own(desk, "198.51.100.10")
    own(desk, "198.51.100.11", reference="C1002")
    one = run(desk, complaint(JANE, "Spam", "198.51.100.10 sends us unsolicited bulk mail."))
    two = run(
        desk,
        complaint(
            "John Roe <john@victim.example>",
            "Spam",
            "198.51.100.10 and 198.51.100.11 send us unsolicited bulk mail.",
        ),
    )
    assert len(one.cases_opened) == 1
    assert len(two.cases_opened + two.cases_attached) == 2
    acks = {
        m.recipients[0]: m
        for m in complainant_mail(desk)
        if m.template is MessageTemplate.COMPLAINANT_ACK
    }
    jane, john = acks["jane@victim.example"], acks["john@victim.example"]
    assert (jane.context["ticket"], jane.case_id) == (
        ticket_tag(one.cases_opened[0]),
        one.cases_opened[0],
    )
    assert (john.context["ticket"], john.case_id) == (report_reference(two.report_id), None)


def test_a_reply_to_a_report_that_went_to_several_cases_reaches_each(desk: Desk) -> None:
    # Two customers: one complaint naming a server of each makes a case in each account.
    own(desk, "198.51.100.10")
    own(desk, "198.51.100.11", reference="C1002")
    first: ProcessResult = run(
        desk,
        complaint(JANE, "Spam", "198.51.100.10 and 198.51.100.11 send us unsolicited bulk mail."),
    )
    both = sorted(first.cases_opened)
    assert len(both) == 2
    reference = report_reference(first.report_id)
    result = run(desk, reply(JANE, f"Re: [{reference}] We have received your report", "More."))
    assert result.status is ReportStatus.THREADED
    assert sorted(result.threaded) == both
    for case_id in both:
        assert timeline(desk, case_id)[-1][0] is TimelineKind.COMPLAINANT_MESSAGE
    # From someone else, the same reference is just a complaint.
    other = run(desk, reply("Mallory <mallory@elsewhere.example>", f"Re: [{reference}]", "Hi."))
    assert other.status is not ReportStatus.THREADED


def test_a_threaded_reply_is_delivered_once(desk: Desk, opened: Case) -> None:
    raw = reply(CUSTOMER, f"Re: [{opened.ticket}]", "Fixed it.")
    run(desk, raw)
    again = run(desk, raw)  # the same mail, received again: recognised, not processed twice
    assert again.status is None
    contacts = [k for k, _, _ in timeline(desk, opened.id) if k is TimelineKind.CUSTOMER_CONTACT]
    assert len(contacts) == 1


def test_html_only_replies_are_read_as_text(desk: Desk, opened: Case) -> None:
    message = EmailMessage()
    message["From"] = CUSTOMER
    message["Subject"] = f"RE: [{opened.ticket}]"
    message.set_content(
        "<html><body><p>Cleaned up <b>today</b>.</p><script>alert(1)</script>"
        "<blockquote>old</blockquote></body></html>",
        subtype="html",
    )
    result = run(desk, bytes(message))
    assert result.status is ReportStatus.THREADED
    note = timeline(desk, opened.id)[-1][2]
    assert "Cleaned up" in note
    assert "alert" not in note
    assert "<" not in note
