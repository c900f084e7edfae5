"""The customer portal over HTTP: every page for its customer, the answers to a ticket, the
account's users, billing data (R2) and the AUP (R1), and nothing of another account's."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from html import unescape

import httpx
import pytest
import sqlalchemy as sa

from abusedesk.accounts.choices import AccountRole, Role
from abusedesk.accounts.models import User
from abusedesk.accounts.permissions import SYSTEM
from abusedesk.bootstrap import Desk
from abusedesk.cases import machine
from abusedesk.cases import service as cases
from abusedesk.cases.choices import CaseState, Event, Resolution
from abusedesk.clock import FakeClock
from abusedesk.intake import service as intake
from abusedesk.intake.choices import ReportSource
from abusedesk.inventory.models import Account
from abusedesk.notify.choices import MessageTemplate
from abusedesk.notify.models import OutboxMessage
from abusedesk.policy import Category
from tests import factories
from tests.web_client import Web, add_user, form_token, post_form, served


@pytest.fixture
def web(desk: Desk) -> Iterator[Web]:
    with served(desk) as running:
        yield running


def open_case(desk: Desk, customer: factories.Customer, category: Category, summary: str) -> int:
    new = cases.NewCase(
        customer.account_id, category, server_id=customer.server_ids[0], summary=summary
    )
    return cases.open_case(desk.uow(), SYSTEM, new, desk.policy).case.id


def move(desk: Desk, case_id: int, event: Event, **fields: object) -> None:
    command = machine.Command(event, **fields)  # type: ignore[arg-type]
    cases.transition(desk.uow(), SYSTEM, case_id, command, desk.policy)


def state_of(desk: Desk, case_id: int) -> CaseState:
    return cases.get_case(desk.uow(), SYSTEM, case_id).state


def text(response: httpx.Response) -> str:
    return unescape(response.text)


def account(desk: Desk, account_id: int) -> Account:
    with desk.uow() as uow:
        found = uow.session.get(Account, account_id)
        assert found is not None
        return found


def user_by_email(desk: Desk, email: str) -> User | None:
    with desk.uow() as uow:
        return uow.session.scalar(sa.select(User).where(User.email == email))


def test_every_page_shows_its_customer_its_own_account(desk: Desk, web: Web) -> None:
    customer = factories.customer(desk, "C1001", servers=2)
    case_id = open_case(desk, customer, Category.SPAM, "Mass mail from srv0")
    client = web.signed_in(add_user(desk, account_reference="C1001"))
    expected = {
        "/portal": ["Tickets", "AD-000001", "Unsolicited bulk e-mail", "Mass mail from srv0"],
        f"/portal/tickets/{case_id}": ["What is due", "Timeline", "Opened", "Mass mail from srv0"],
        "/portal/services": ["srv0.c1001.example", "srv1.c1001.example", "198.51.100.2/32"],
        "/portal/users": ["Invite a user", "customer"],
        "/portal/billing": ["Billing data", "Confirm billing data"],
        "/portal/policy": ["Acceptable Use Policy", desk.policy.aup_version, "Thermo"],
    }
    for path, words in expected.items():
        page = client.get(path)
        assert page.status_code == 200, path
        for word in words:
            assert word in text(page), (path, word)
    # The address the desk's mails link to leads to the ticket.
    alias = client.get(f"/portal/cases/{case_id}")
    assert alias.status_code == 303
    assert alias.headers["location"] == f"/portal/tickets/{case_id}"


def test_the_list_says_what_is_due_and_by_when_open_tickets_first(
    desk: Desk, web: Web, clock: FakeClock
) -> None:
    customer = factories.customer(desk, "C1001")
    closed = open_case(desk, customer, Category.MALWARE, "An old infection")
    move(desk, closed, Event.CLOSE, reason="cleaned", resolution=Resolution.RESOLVED)
    fresh = open_case(desk, customer, Category.SPAM, "Fresh spam")
    acked = open_case(desk, customer, Category.PHISHING, "A fake bank")
    move(desk, acked, Event.ACKNOWLEDGE, plan="Taking it down")
    cut = open_case(desk, customer, Category.NETWORK_ABUSE, "Scanning")
    move(desk, cut, Event.DISCONNECT, reason="scanning went on")
    client = web.signed_in(add_user(desk, account_reference="C1001"))

    page = text(client.get("/portal"))
    deadline = cases.get_case(desk.uow(), SYSTEM, fresh).deadline_at
    assert deadline is not None
    assert "Acknowledge and tell us your plan by" in page
    assert deadline.strftime("%Y-%m-%d %H:%M UTC") in page
    assert f'datetime="{deadline.isoformat()}" data-countdown' in page
    assert "Fix it, then report the fix by" in page
    assert "Contact us to get reconnected" in page
    open_part, closed_part = page.split("Closed tickets", 1)
    for ticket in (fresh, acked, cut):
        assert f"/portal/tickets/{ticket}" in open_part
    assert f"/portal/tickets/{closed}" in closed_part
    assert f"/portal/tickets/{closed}" not in open_part


def test_a_customer_acknowledges_with_a_plan(desk: Desk, web: Web) -> None:
    customer = factories.customer(desk, "C1001")
    case_id = open_case(desk, customer, Category.SPAM, "Mass mail")
    client = web.signed_in(add_user(desk, account_reference="C1001"))
    path = f"/portal/tickets/{case_id}"

    empty = post_form(client, f"{path}/acknowledge", {"plan": "  "}, token_from=path)
    assert empty.status_code == 422
    assert "must say how" in text(empty)
    assert state_of(desk, case_id) is CaseState.OPEN

    done = post_form(
        client, f"{path}/acknowledge", {"plan": "We suspend the list today"}, token_from=path
    )
    assert done.status_code == 303
    assert done.headers["location"] == path
    assert state_of(desk, case_id) is CaseState.ACKNOWLEDGED
    page = text(client.get(path))
    assert "is acknowledged" in page  # the flash
    assert "We suspend the list today" in page.split("Timeline", 1)[1]
    # Acknowledged once: the form is gone, and a second post is refused without a change.
    assert f"{path}/acknowledge" not in page
    again = post_form(client, f"{path}/acknowledge", {"plan": "again"}, token_from=path)
    assert again.status_code == 303
    assert "was not done" in text(client.get(path))


def test_a_customer_replies_and_reports_the_fix(desk: Desk, web: Web) -> None:
    customer = factories.customer(desk, "C1001")
    case_id = open_case(desk, customer, Category.SPAM, "Mass mail")
    client = web.signed_in(add_user(desk, account_reference="C1001"))
    path = f"/portal/tickets/{case_id}"

    blank = post_form(client, f"{path}/reply", {"message": ""}, token_from=path)
    assert blank.status_code == 422
    reply = post_form(client, f"{path}/reply", {"message": "Which list was it?"}, token_from=path)
    assert reply.status_code == 303
    case = cases.get_case(desk.uow(), SYSTEM, case_id)
    assert case.customer_contacted
    assert "Which list was it?" in text(client.get(path))

    fixed = post_form(client, f"{path}/fix", {"note": "Removed the script"}, token_from=path)
    assert fixed.status_code == 303
    assert state_of(desk, case_id) is CaseState.FIX_REPORTED
    assert "we are checking your fix" in text(client.get(path))


def test_another_accounts_ticket_is_a_404_that_tells_nothing(desk: Desk, web: Web) -> None:
    mine = factories.customer(desk, "C1001")
    theirs = factories.customer(desk, "C1002", base="203.0.113")
    open_case(desk, mine, Category.SPAM, "Mine")
    secret = open_case(desk, theirs, Category.PHISHING, "Secret phishing kit of C1002")
    client = web.signed_in(add_user(desk, account_reference="C1001"))

    foreign = client.get(f"/portal/tickets/{secret}")
    missing = client.get("/portal/tickets/999999")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.text == missing.text  # word for word: nothing tells the two apart
    for leak in ("Secret phishing", "C1002", "srv0.c1002.example", "AD-000002"):
        assert leak not in foreign.text
    assert "Secret phishing" not in client.get("/portal").text

    # Nor can it be answered: refused as absent, and the case is as it was.
    path = f"/portal/tickets/{secret}/acknowledge"
    token = form_token(client, "/portal")
    answer = client.post(path, data={"plan": "mine now", "csrf_token": token})
    assert answer.status_code == 404
    assert state_of(desk, secret) is CaseState.OPEN


def test_staff_find_no_portal_and_strangers_are_sent_to_sign_in(desk: Desk, web: Web) -> None:
    customer = factories.customer(desk, "C1001")
    case_id = open_case(desk, customer, Category.SPAM, "Mass mail")
    staff = web.signed_in(add_user(desk, Role.ANALYST))
    for path in ("/portal", f"/portal/tickets/{case_id}", "/portal/users", "/portal/billing"):
        assert staff.get(path).status_code == 404, path
    stranger = web.client().get(f"/portal/tickets/{case_id}")
    assert stranger.status_code == 303
    assert stranger.headers["location"].startswith("/login?next=")


def test_the_complainant_is_hidden_except_where_the_policy_names_them(desk: Desk, web: Web) -> None:
    factories.customer(desk, "C1001")
    client = web.signed_in(add_user(desk, account_reference="C1001"))

    def complain(description: str, category: Category) -> int:
        raw = intake.structured_message(
            "Jane Roe", "jane@victim.example", description, ["198.51.100.1"], category
        )
        done = intake.submit(
            desk.uow, SYSTEM, raw, ReportSource.API, desk.policy, desk.settings.base_url
        )
        assert done.cases_opened, done
        return done.cases_opened[0]

    spam = complain("Spam to jane@victim.example from 198.51.100.1, signed Jane Roe", Category.SPAM)
    page = text(client.get(f"/portal/tickets/{spam}"))
    assert "198.51.100.1" in page
    assert "Who complained is not shown" in page
    for secret in ("Jane Roe", "jane@victim.example", "victim.example"):
        assert secret not in page
    assert "[complainant]" in page

    notice = complain(
        "198.51.100.1 copies our photographs, infringing our copyright", Category.COPYRIGHT
    )
    page = text(client.get(f"/portal/tickets/{notice}"))
    assert "Jane Roe <jane@victim.example>" in page
    assert "512(c)(3)" in page


def test_reported_content_is_shown_as_text(desk: Desk, web: Web) -> None:
    customer = factories.customer(desk, "C1001")
    hostile = '<script>alert("owned")</script><img src=x onerror=alert(1)>'
    case_id = open_case(desk, customer, Category.UNLAWFUL_CONTENT, hostile)
    client = web.signed_in(add_user(desk, account_reference="C1001"))
    page = client.get(f"/portal/tickets/{case_id}").text
    assert "<script>alert" not in page
    assert "<img src=x" not in page
    assert "&lt;script&gt;alert(&#34;owned&#34;)&lt;/script&gt;" in page


def test_disconnected_services_say_why_and_what_to_do(desk: Desk, web: Web) -> None:
    customer = factories.customer(desk, "C1001", servers=2)
    case_id = open_case(desk, customer, Category.NETWORK_ABUSE, "Scanning the world")
    move(desk, case_id, Event.DISCONNECT, reason="scanning went on")
    client = web.signed_in(add_user(desk, account_reference="C1001"))
    page = text(client.get("/portal/services"))
    assert "srv0.c1001.example is disconnected" in page
    assert f'href="/portal/tickets/{case_id}"' in page
    assert "Scanning the world" in page
    assert "To get it back" in page
    assert "Contact us on AD-000001" in page
    # The other server is not held by anything.
    row = page.split("srv1.c1001.example", 1)[1].split("</tr>", 1)[0]
    assert "Active" in row


def test_an_owner_invites_rerole_and_removes_a_user(desk: Desk, web: Web) -> None:
    factories.customer(desk, "C1001")
    client = web.signed_in(add_user(desk, account_reference="C1001"))

    bad = post_form(
        client,
        "/portal/users/invite",
        {"email": "not-an-address", "name": "X", "role": "member"},
        token_from="/portal/users",
    )
    assert bad.status_code == 422
    assert 'value="not-an-address"' in bad.text

    invited = post_form(
        client,
        "/portal/users/invite",
        {"email": "new.colleague@c1001.example", "name": "New Colleague", "role": "member"},
        token_from="/portal/users",
    )
    assert invited.status_code == 303
    page = text(client.get("/portal/users"))
    assert "new.colleague@c1001.example" in page
    assert "Invited" in page
    with desk.uow() as uow:
        user = uow.session.scalar(
            sa.select(User).where(User.email == "new.colleague@c1001.example")
        )
        assert user is not None
        assert user.account_role is AccountRole.MEMBER
        mails = uow.session.scalars(
            sa.select(OutboxMessage).where(OutboxMessage.template == MessageTemplate.INVITATION)
        ).all()
        assert [m.recipients for m in mails] == [["new.colleague@c1001.example"]]

    rerole = post_form(
        client, f"/portal/users/{user.id}/role", {"role": "manager"}, token_from="/portal/users"
    )
    assert rerole.status_code == 303
    assert "is now manager" in text(client.get("/portal/users"))
    removed = post_form(client, f"/portal/users/{user.id}/remove", {}, token_from="/portal/users")
    assert removed.status_code == 303
    assert "new.colleague@c1001.example" not in client.get("/portal/users").text


def test_a_member_cannot_invite(desk: Desk, web: Web) -> None:
    factories.customer(desk, "C1001")
    member = add_user(desk, account_reference="C1001", account_role=AccountRole.MEMBER)
    client = web.signed_in(member)
    page = text(client.get("/portal/users"))
    assert "Invite a user" not in page
    assert "owners and managers" in page
    # The list is there, read-only: no role or removal forms.
    assert member in page
    assert "/remove" not in client.get("/portal/users").text
    answer = post_form(
        client,
        "/portal/users/invite",
        {"email": "sneaky@c1001.example", "name": "S", "role": "owner"},
        token_from="/portal/users",
    )
    assert answer.status_code == 403
    with desk.uow() as uow:
        assert (
            uow.session.scalar(sa.select(User).where(User.email == "sneaky@c1001.example")) is None
        )
    # Nor confirm billing data, nor accept the AUP for the account.
    assert "Confirm billing data" not in client.get("/portal/billing").text
    billing = post_form(
        client,
        "/portal/billing",
        {"billing_name": "X", "billing_address": "Y", "billing_email": "x@c1001.example"},
        token_from="/portal/billing",
    )
    assert billing.status_code == 403


def test_stale_billing_is_flagged_until_confirmed(desk: Desk, web: Web, clock: FakeClock) -> None:
    customer = factories.customer(desk, "C1001")
    client = web.signed_in(add_user(desk, account_reference="C1001"))
    assert account(desk, customer.account_id).billing_confirmed_at is None
    assert "Please confirm your billing data" in client.get("/portal").text

    refused = post_form(
        client,
        "/portal/billing",
        {"billing_name": "", "billing_address": "1 Road", "billing_email": "bad"},
        token_from="/portal/billing",
    )
    assert refused.status_code == 422
    assert "the billing name is empty" in text(refused)
    assert 'value="bad"' in refused.text
    assert account(desk, customer.account_id).billing_confirmed_at is None

    confirmed = post_form(
        client,
        "/portal/billing",
        {
            "billing_name": "Customer C1001 Ltd",
            "billing_address": "1 Harbour Road\nPort Town",
            "billing_email": "billing@c1001.example",
        },
        token_from="/portal/billing",
    )
    assert confirmed.status_code == 303
    stored = account(desk, customer.account_id)
    assert stored.billing_confirmed_at == clock.now()
    assert stored.billing_address == "1 Harbour Road\nPort Town"
    assert "Please confirm your billing data" not in client.get("/portal").text
    assert clock.now().strftime("%Y-%m-%d %H:%M UTC") in client.get("/portal/billing").text

    # Half a year on, it is due again.
    clock.advance(desk.settings.auth.billing_stale_after + timedelta(minutes=1))
    assert "Please confirm your billing data" in client.get("/portal").text


def test_the_account_accepts_a_new_aup_version(desk: Desk, web: Web, clock: FakeClock) -> None:
    customer = factories.customer(desk, "C1001")
    client = web.signed_in(add_user(desk, account_reference="C1001"))
    current = desk.policy.aup_version
    assert "A new Acceptable Use Policy awaits" in client.get("/portal").text
    page = text(client.get("/portal/policy"))
    assert "has not accepted the policy yet" in page
    assert "Methods of Resolution" in page  # the text itself is shown

    unticked = post_form(
        client, "/portal/policy/accept", {"version": current}, token_from="/portal/policy"
    )
    assert unticked.status_code == 303
    assert account(desk, customer.account_id).aup_version is None
    stale = post_form(
        client,
        "/portal/policy/accept",
        {"version": "1999-01", "agree": "yes"},
        token_from="/portal/policy",
    )
    assert stale.status_code == 303
    assert "is now version" in text(client.get("/portal/policy"))
    assert account(desk, customer.account_id).aup_version is None

    accepted = post_form(
        client,
        "/portal/policy/accept",
        {"version": current, "agree": "yes"},
        token_from="/portal/policy",
    )
    assert accepted.status_code == 303
    stored = account(desk, customer.account_id)
    assert stored.aup_version == current
    assert stored.aup_accepted_at == clock.now()
    page = text(client.get("/portal/policy"))
    assert "You have accepted the current version" in page
    assert f"version {current}" in page
    assert "A new Acceptable Use Policy awaits" not in client.get("/portal").text


def test_a_manager_manages_members_but_not_owners(desk: Desk, web: Web) -> None:
    factories.customer(desk, "C1001")
    owner = add_user(desk, account_reference="C1001")
    manager = add_user(desk, account_reference="C1001", account_role=AccountRole.MANAGER)
    owner_row = user_by_email(desk, owner)
    assert owner_row is not None
    client = web.signed_in(manager)
    page = client.get("/portal/users").text
    assert owner in page
    assert f"/portal/users/{owner_row.id}/role" not in page
    assert f"/portal/users/{owner_row.id}/remove" not in page
    assert '<option value="owner"' not in page
    invited = post_form(
        client,
        "/portal/users/invite",
        {"email": "helper@c1001.example", "name": "Helper", "role": "member"},
        token_from="/portal/users",
    )
    assert invited.status_code == 303
    # A forged form that asks for the owner role is refused by the service all the same.
    forged = post_form(
        client,
        f"/portal/users/{owner_row.id}/role",
        {"role": "member"},
        token_from="/portal/users",
    )
    assert forged.status_code == 303
    assert "only an owner" in text(client.get("/portal/users")).lower()
    demoted = user_by_email(desk, owner)
    assert demoted is not None
    assert demoted.account_role is AccountRole.OWNER
