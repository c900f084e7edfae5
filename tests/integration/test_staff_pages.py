"""The staff console over HTTP: every page for staff and none for customers, actions that change
cases (and nothing without the CSRF token), reported content shown as text, and search filters
that find what they should and nothing else."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa

from abusedesk.accounts import signin, totp
from abusedesk.accounts.choices import Role
from abusedesk.accounts.models import ScreeningEntry, User
from abusedesk.accounts.permissions import SYSTEM
from abusedesk.accounts.service import actor_for
from abusedesk.bootstrap import Desk
from abusedesk.cases import machine
from abusedesk.cases import service as cases
from abusedesk.cases.choices import CaseState, Event, Resolution, TimelineKind
from abusedesk.cases.models import ticket_tag
from abusedesk.clock import FakeClock
from abusedesk.enforce.choices import ActionKind, ActionState
from abusedesk.enforce.models import EnforcementAction
from abusedesk.intake.choices import ReportSource, ReportStatus
from abusedesk.intake.models import Report
from abusedesk.intake.receive import receive
from abusedesk.inventory import service as inventory
from abusedesk.inventory.choices import ServerStatus
from abusedesk.inventory.models import Account, Server
from abusedesk.inventory.schemas import DomainIn
from abusedesk.policy import Category
from tests import factories
from tests.web_client import PASSWORD, Web, add_user, csrf_token, form_token, served

HOSTILE = '<script>alert("x")</script><img src=x onerror="alert(1)">'


@pytest.fixture
def web(desk: Desk) -> Iterator[Web]:
    with served(desk) as served_web:
        yield served_web


@pytest.fixture
def acme(desk: Desk) -> factories.Customer:
    return factories.customer(desk, "C1001", servers=2, base="198.51.100")


def open_case(
    desk: Desk,
    customer: factories.Customer,
    category: Category = Category.SPAM,
    *,
    server: int | None = 0,
    resource: str = "",
    summary: str = "spam from the mailer",
    report_ids: tuple[int, ...] = (),
    evidence: dict[str, object] | None = None,
) -> int:
    opened = cases.open_case(
        desk.uow(),
        SYSTEM,
        cases.NewCase(
            customer.account_id,
            category,
            server_id=None if server is None else customer.server_ids[server],
            resource=resource,
            summary=summary,
            report_ids=report_ids,
            evidence=evidence or {},
        ),
        desk.policy,
    )
    return opened.case.id


def case_of(desk: Desk, case_id: int) -> cases.Case:
    return cases.get_case(desk.uow(), SYSTEM, case_id)


def staff(web: Web, role: Role = Role.ANALYST) -> httpx.Client:
    return web.signed_in(add_user(web.desk, role))


def staff_with_two_factor(web: Web, clock: FakeClock, role: Role) -> httpx.Client:
    """Legal and admin sign in with a code: enrolled through the service, then signed in with
    the login form as they would."""
    email = add_user(web.desk, role)
    with web.desk.uow() as uow:
        user = uow.session.scalar(sa.select(User).where(User.email == email))
        assert user is not None
        actor = actor_for(user)
    secret = totp.new_totp_secret()
    signin.enable_totp(web.desk.uow(), actor, secret, totp.code_at(secret, clock.now()))
    clock.advance(timedelta(seconds=31))  # the enrolment's code is used up
    client = web.client()
    answer = client.post(
        "/login",
        data={
            "email": email,
            "password": PASSWORD,
            "code": totp.code_at(secret, clock.now()),
            "csrf_token": form_token(client, "/login"),
        },
    )
    assert answer.status_code == 303, answer.text[:500]
    return client


def post(client: httpx.Client, path: str, data: dict[str, object], page: str) -> httpx.Response:
    """A form posted from `page`, with the token that page carries."""
    return client.post(path, data={**data, "csrf_token": form_token(client, page)})


def tickets_listed(html: str) -> set[int]:
    return {int(n) for n in re.findall(r'<a class="ticket" href="/staff/cases/(\d+)"', html)}


def flashes(client: httpx.Client, path: str) -> str:
    page = client.get(path)
    return " ".join(re.findall(r'<div class="flash[^"]*"[^>]*>(.*?)</div>', page.text, re.S))


# -- who sees the console -----------------------------------------------------------------------


def test_every_page_renders_for_staff_and_is_404_for_a_customer(
    web: Web, desk: Desk, acme: factories.Customer
) -> None:
    report_id = factories.report(desk, "jo@reporter.example", "Jo", body="spam seen")
    case_id = open_case(desk, acme, report_ids=(report_id,))
    pages = [
        "/staff",
        "/staff/queues",
        *(f"/staff/queues/{name}" for name in ("received", "needs_info", "not_ours", "unparsed")),
        *(f"/staff/queues/{name}" for name in ("due_soon", "overdue", "disconnected")),
        f"/staff/reports/{report_id}",
        f"/staff/reports/{report_id}/raw",
        "/staff/cases",
        f"/staff/cases/{case_id}",
        "/staff/accounts",
        f"/staff/accounts/{acme.reference}",
        "/staff/screening",
    ]
    analyst = staff(web)
    customer = web.signed_in(add_user(desk, Role.CUSTOMER, acme.reference))
    anonymous = web.client()
    for path in pages:
        assert analyst.get(path).status_code == 200, path
        refused = customer.get(path)
        assert refused.status_code == 404, path
        assert "There is no such page" in refused.text
        assert ticket_tag(case_id) not in refused.text
        away = anonymous.get(path)
        assert away.status_code == 303, path
        assert away.headers["location"].startswith("/login?next=")


def test_a_customer_cannot_act_on_a_case_through_the_console(
    web: Web, desk: Desk, acme: factories.Customer
) -> None:
    case_id = open_case(desk, acme)
    customer = web.signed_in(add_user(desk, Role.CUSTOMER, acme.reference))
    token = form_token(customer, "/portal")
    answer = customer.post(
        f"/staff/cases/{case_id}/events/disconnect",
        data={"reason": "self-inflicted", "csrf_token": token},
    )
    assert answer.status_code == 404
    assert case_of(desk, case_id).state is CaseState.OPEN


def test_unknown_queues_cases_and_actions_are_404(
    web: Web, desk: Desk, acme: factories.Customer
) -> None:
    case_id = open_case(desk, acme)
    analyst = staff(web)
    assert analyst.get("/staff/queues/everything").status_code == 404
    assert analyst.get("/staff/cases/999999").status_code == 404
    assert analyst.get("/staff/reports/999999").status_code == 404
    assert analyst.get("/staff/accounts/C9999").status_code == 404
    page = f"/staff/cases/{case_id}"
    assert post(analyst, f"{page}/events/acknowledge", {"reason": "x"}, page).status_code == 404


# -- actions ------------------------------------------------------------------------------------


def test_an_analyst_disconnects_and_later_reconnects(
    web: Web, desk: Desk, acme: factories.Customer
) -> None:
    case_id = open_case(desk, acme)
    page = f"/staff/cases/{case_id}"
    analyst = staff(web)
    html = analyst.get(page).text
    assert 'id="act-disconnect"' in html
    assert 'id="act-reconnect"' not in html

    answer = post(analyst, f"{page}/events/disconnect", {"reason": "still spamming"}, page)
    assert answer.status_code == 303
    assert answer.headers["location"] == page
    case = case_of(desk, case_id)
    assert case.state is CaseState.DISCONNECTED
    with desk.uow() as uow:
        server = uow.session.get(Server, acme.server_ids[0])
        assert server is not None
        assert server.status is ServerStatus.DISCONNECTED
        action = uow.session.scalar(
            sa.select(EnforcementAction).where(EnforcementAction.case_id == case_id)
        )
        assert action is not None
        assert (action.kind, action.state) == (ActionKind.DISCONNECT, ActionState.PENDING)
    html = analyst.get(page).text
    assert "disconnected; the enforcement action is on its way" in html
    assert 'id="act-disconnect"' not in html
    assert "The customer has not made contact yet" in html  # reconnect waits for contact
    assert 'id="enforcement"' in html
    assert "Disconnect</strong>" in html

    # The machine refuses a reconnection before the customer's contact, even if posted.
    refused = post(analyst, f"{page}/events/reconnect", {"reason": "early"}, page)
    assert refused.status_code == 409
    assert "has not made contact" in refused.text
    assert case_of(desk, case_id).state is CaseState.DISCONNECTED

    contact = {"reason": "the customer phoned: the mailer is removed"}
    assert post(analyst, f"{page}/events/customer_contact", contact, page).status_code == 303
    answer = post(analyst, f"{page}/events/reconnect", {"reason": "fix verified"}, page)
    assert answer.status_code == 303
    case = case_of(desk, case_id)
    assert (case.state, case.resolution) == (CaseState.CLOSED, Resolution.RESOLVED)
    kinds = [e.kind for e in case.timeline]
    assert TimelineKind.DISCONNECTED in kinds
    assert TimelineKind.RECONNECTED in kinds
    html = analyst.get(page).text
    assert "still spamming" in html
    assert "fix verified" in html


def test_a_post_without_the_csrf_token_changes_nothing(
    web: Web, desk: Desk, acme: factories.Customer
) -> None:
    case_id = open_case(desk, acme)
    analyst = staff(web)
    analyst.get(f"/staff/cases/{case_id}")
    for data in ({"reason": "forged"}, {"reason": "forged", "csrf_token": "not-the-token"}):
        answer = analyst.post(f"/staff/cases/{case_id}/events/disconnect", data=data)
        assert answer.status_code == 403
        assert "did not come from this site" in answer.text
    answer = analyst.post(
        "/staff/cases/bulk", data={"case_id": str(case_id), "action": "disconnect", "reason": "x"}
    )
    assert answer.status_code == 403
    answer = analyst.post(f"/staff/accounts/{acme.reference}/notes", data={"notes": "forged"})
    assert answer.status_code == 403
    assert case_of(desk, case_id).state is CaseState.OPEN
    assert [e.kind for e in case_of(desk, case_id).timeline] == [TimelineKind.OPENED]
    assert inventory.get_account(desk.uow(), SYSTEM, acme.reference).notes == ""


def test_a_refused_action_is_shown_beside_its_form_and_changes_nothing(
    web: Web, desk: Desk, acme: factories.Customer
) -> None:
    case_id = open_case(desk, acme)
    page = f"/staff/cases/{case_id}"
    analyst = staff(web)
    answer = post(analyst, f"{page}/events/disconnect", {"reason": "  "}, page)
    assert answer.status_code == 422
    assert re.search(
        r'<details class="action action-danger" id="act-disconnect" open>', answer.text
    )
    assert "needs a reason" in answer.text
    answer = post(
        analyst, f"{page}/events/change_deadline", {"deadline": "soon", "reason": "r"}, page
    )
    assert answer.status_code == 422
    assert "is not a date and time" in answer.text
    assert ">r</textarea>" in answer.text  # what was typed is kept
    assert case_of(desk, case_id).state is CaseState.OPEN


def test_each_action_of_the_case_page(
    web: Web, desk: Desk, clock: FakeClock, acme: factories.Customer
) -> None:
    analyst = staff(web)

    def act(case_id: int, path: str, data: dict[str, object]) -> cases.Case:
        page = f"/staff/cases/{case_id}"
        answer = post(analyst, f"{page}/{path}", data, page)
        assert answer.status_code == 303, answer.text[:2000]
        return case_of(desk, case_id)

    first = open_case(desk, acme, summary="first")
    later = clock.now() + timedelta(days=3)
    case = act(
        first,
        "events/change_deadline",
        {"deadline": later.strftime("%Y-%m-%dT%H:%M"), "reason": "customer on holiday"},
    )
    assert case.deadline_at == later.replace(second=0, microsecond=0)
    assert "the deadline is now" in flashes(analyst, f"/staff/cases/{first}")

    case = act(first, "message", {"text": "Please remove the mailer."})
    assert case.timeline[-1].kind is TimelineKind.MESSAGE_TO_CUSTOMER
    case = act(first, "note", {"text": "checked the headers"})
    assert (case.timeline[-1].kind, case.timeline[-1].note) == (
        TimelineKind.NOTE,
        "checked the headers",
    )
    case = act(first, "reclassify", {"category": "phishing", "reason": "a login form"})
    assert case.category is Category.PHISHING

    second = open_case(desk, acme, server=1, summary="second")
    answer = post(
        analyst,
        f"/staff/cases/{second}/merge",
        {"into": ticket_tag(first), "reason": "the same mailer"},
        f"/staff/cases/{second}",
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/staff/cases/{first}"
    merged = case_of(desk, second)
    assert (merged.state, merged.resolution) == (CaseState.CLOSED, Resolution.DUPLICATE)

    cases.report_fix(desk.uow(), SYSTEM, first, "removed", desk.policy)
    case = act(first, "events/verify_fix", {"reason": "blocklists clean"})
    assert (case.state, case.resolution) == (CaseState.CLOSED, Resolution.RESOLVED)

    third = open_case(desk, acme, Category.COPYRIGHT, summary="third")
    case = act(third, "events/close", {"resolution": "no_violation", "reason": "licensed"})
    assert (case.state, case.resolution) == (CaseState.CLOSED, Resolution.NO_VIOLATION)

    fourth = open_case(desk, acme, Category.FRAUD, summary="fourth")
    case = act(fourth, "events/terminate", {"reason": "fraud confirmed"})
    assert case.state is CaseState.TERMINATED


def test_the_actions_offered_follow_the_state_and_the_role(
    web: Web, desk: Desk, acme: factories.Customer
) -> None:
    case_id = open_case(desk, acme)
    page = f"/staff/cases/{case_id}"
    analyst, noc = staff(web, Role.ANALYST), staff(web, Role.NOC)
    offered = set(re.findall(r'id="act-([a-z_]+)"', analyst.get(page).text))
    assert offered == {
        "customer_contact",
        "change_deadline",
        "disconnect",
        "terminate",
        "close",
        "reclassify",
        "merge",
        "message",
        "note",
    }
    # NOC may not terminate (its role), and the page does not offer it.
    assert "terminate" not in set(re.findall(r'id="act-([a-z_]+)"', noc.get(page).text))
    cases.transition(
        desk.uow(),
        SYSTEM,
        case_id,
        machine.Command(Event.CLOSE, "done", resolution=Resolution.INVALID),
        desk.policy,
    )
    offered = set(re.findall(r'id="act-([a-z_]+)"', analyst.get(page).text))
    assert offered == {"message", "note"}


# -- reported content is text -------------------------------------------------------------------


def test_hostile_html_in_a_report_comes_out_escaped(
    web: Web, desk: Desk, acme: factories.Customer
) -> None:
    raw_id = factories.report(
        desk,
        "mallory@reporter.example",
        f"Mallory {HOSTILE}",
        status=ReportStatus.UNPARSED,
        body=f"Subject: {HOSTILE}\r\n\r\n<html><body>{HOSTILE}</body></html>",
    )
    with desk.uow() as uow:
        report = uow.session.get(Report, raw_id)
        assert report is not None
        report.error = f"no format understood {HOSTILE}"
        report.parsed = {"subject": HOSTILE, "findings": [{"description": HOSTILE}]}
        uow.commit()
    case_id = open_case(
        desk,
        acme,
        summary=f"summary {HOSTILE}",
        resource=f"http://bad.example/{HOSTILE}",
        report_ids=(raw_id,),
        evidence={"note": HOSTILE, HOSTILE: "key"},
    )
    analyst = staff(web)
    pages = [
        f"/staff/reports/{raw_id}",
        "/staff/queues/unparsed",
        f"/staff/cases/{case_id}",
        "/staff/cases",
        "/staff",
    ]
    for path in pages:
        html = analyst.get(path).text
        assert "<script>alert" not in html, path
        assert "<img src=x" not in html, path
        assert 'onerror="alert' not in html, path
        assert html.count("<script") == 1, path  # the console's own script, nothing else
    report_page = analyst.get(f"/staff/reports/{raw_id}").text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in report_page
    assert '<pre class="evidence raw">' in report_page

    raw = analyst.get(f"/staff/reports/{raw_id}/raw")
    assert raw.headers["content-disposition"].startswith("attachment;")
    assert raw.headers["content-type"].split(";")[0] in ("message/rfc822", "text/plain")
    assert raw.headers["x-content-type-options"] == "nosniff"
    assert HOSTILE.encode() in raw.content  # the download is the report as received


def test_attachments_are_listed_and_downloaded_as_opaque_files(
    web: Web, desk: Desk, acme: factories.Customer
) -> None:
    raw = (
        "From: jo@reporter.example\r\nSubject: phishing kit\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nSee the page attached.\r\n"
        "--b\r\nContent-Type: text/html\r\n"
        'Content-Disposition: attachment; filename="../kit page.html"\r\n\r\n'
        f"<html>{HOSTILE}</html>\r\n--b--\r\n"
    )
    report_id = receive(desk.uow(), raw.encode(), ReportSource.SMTP).report_id
    analyst = staff(web)
    page = analyst.get(f"/staff/reports/{report_id}").text
    link = re.search(rf'href="(/staff/reports/{report_id}/parts/\d+)" download>([^<]+)<', page)
    assert link is not None
    assert link.group(2) == "kit_page.html"
    part = analyst.get(link.group(1))
    assert part.status_code == 200
    assert part.headers["content-type"] == "application/octet-stream"
    assert part.headers["content-disposition"].startswith('attachment; filename="kit_page.html"')
    assert HOSTILE.encode() in part.content
    assert analyst.get(f"/staff/reports/{report_id}/parts/99").status_code == 404


def test_a_child_abuse_report_is_for_legal_alone(
    web: Web, desk: Desk, clock: FakeClock, acme: factories.Customer
) -> None:
    report_id = factories.report(
        desk, "hotline@ncmec.example", "Hotline", body="http://srv0.c1001.example/x hash 9f86d0"
    )
    case_id = open_case(
        desk,
        acme,
        Category.CSAM,
        report_ids=(report_id,),
        evidence={"urls": ["http://srv0.c1001.example/x"], "sha256": "9f86d0"},
    )
    analyst = staff(web)
    case_page = analyst.get(f"/staff/cases/{case_id}").text
    assert "for legal staff alone" in case_page
    assert "9f86d0" not in case_page
    assert "srv0.c1001.example/x" not in case_page
    report_page = analyst.get(f"/staff/reports/{report_id}").text
    assert "for legal staff alone" in report_page
    assert "9f86d0" not in report_page
    assert "hotline@ncmec.example" not in report_page
    assert analyst.get(f"/staff/reports/{report_id}/raw").status_code == 404

    legal = staff_with_two_factor(web, clock, Role.LEGAL)
    assert "9f86d0" in legal.get(f"/staff/cases/{case_id}").text
    assert "9f86d0" in legal.get(f"/staff/reports/{report_id}").text
    assert legal.get(f"/staff/reports/{report_id}/raw").status_code == 200


# -- search and bulk ----------------------------------------------------------------------------


@pytest.fixture
def two_accounts(desk: Desk, acme: factories.Customer) -> dict[str, int]:
    other = factories.customer(desk, "C2002", servers=1, base="203.0.113")
    inventory.create_domain(
        desk.uow(),
        SYSTEM,
        DomainIn(
            account_reference="C2002", name="shop.example", server_hostname=other.hostnames[0]
        ),
    )
    alice = factories.report(desk, "alice@reporter.example", "Alice Reporter")
    bob = factories.report(desk, "bob@other.example", "Bob")
    return {
        "spam": open_case(desk, acme, Category.SPAM, summary="bulk mail", report_ids=(alice,)),
        "phish": open_case(
            desk,
            other,
            Category.PHISHING,
            resource="http://login.shop.example/verify",
            summary="a fake bank login",
            report_ids=(bob,),
        ),
        "malware": open_case(desk, acme, Category.MALWARE, server=1, summary="a dropper"),
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {"spam", "phish", "malware"}),
        ("account=C1001", {"spam", "malware"}),
        ("account=C2002", {"phish"}),
        ("ip=198.51.100.1", {"spam"}),
        ("ip=198.51.100.2", {"malware"}),
        ("ip=203.0.113.1", {"phish"}),
        ("ip=192.0.2.1", set()),
        ("domain=shop.example", {"phish"}),
        ("domain=www.shop.example", {"phish"}),
        ("domain=elsewhere.example", set()),
        ("category=phishing", {"phish"}),
        ("category=malware&account=C1001", {"malware"}),
        ("category=malware&account=C2002", set()),
        ("state=open", {"spam", "phish", "malware"}),
        ("state=disconnected", set()),
        ("reporter=alice", {"spam"}),
        ("reporter=other.example", {"phish"}),
        ("reporter=nobody", set()),
        ("text=BANK", {"phish"}),
        ("text=dropper", {"malware"}),
    ],
)
def test_filters_find_what_they_should_and_nothing_else(
    web: Web, two_accounts: dict[str, int], query: str, expected: set[str]
) -> None:
    analyst = staff(web)
    answer = analyst.get(f"/staff/cases?{query}")
    assert answer.status_code == 200
    assert tickets_listed(answer.text) == {two_accounts[name] for name in expected}


def test_bad_filters_say_what_is_wrong(web: Web, two_accounts: dict[str, int]) -> None:
    analyst = staff(web)
    answer = analyst.get("/staff/cases?ip=not-an-address")
    assert answer.status_code == 422
    assert "is not an IP address" in answer.text
    assert not tickets_listed(answer.text)
    answer = analyst.get("/staff/cases?account=C9999")
    assert "Nothing found: no account C9999" in answer.text
    assert not tickets_listed(answer.text)
    assert analyst.get("/staff/cases?state=sleeping").status_code == 422


def test_search_pages_through_many_cases(web: Web, desk: Desk, acme: factories.Customer) -> None:
    ids = [open_case(desk, acme, resource=f"mailer-{n}") for n in range(30)]
    analyst = staff(web)
    first = analyst.get("/staff/cases?account=C1001")
    second = analyst.get("/staff/cases?account=C1001&page=2")
    assert tickets_listed(first.text) == set(ids[5:])  # newest first, 25 a page
    assert tickets_listed(second.text) == set(ids[:5])
    assert 'href="/staff/cases?account=C1001&amp;page=2"' in first.text


def test_a_bulk_action_reports_each_case(
    web: Web, desk: Desk, two_accounts: dict[str, int]
) -> None:
    spam, phish, malware = (two_accounts[k] for k in ("spam", "phish", "malware"))
    cases.transition(
        desk.uow(),
        SYSTEM,
        malware,
        machine.Command(Event.CLOSE, "handled", resolution=Resolution.INVALID),
        desk.policy,
    )
    analyst = staff(web)
    token = csrf_token(analyst.get("/staff/cases?category=").text)
    answer = analyst.post(
        "/staff/cases/bulk",
        data={
            "case_id": [str(spam), str(phish), str(malware)],
            "action": "disconnect",
            "reason": "a coordinated campaign",
            "back": "/staff/cases?state=open",
            "csrf_token": token,
        },
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/staff/cases?state=open"
    said = flashes(analyst, "/staff/cases")
    assert f"{ticket_tag(spam)}, {ticket_tag(phish)}: disconnected." in said
    assert f"Refused for {ticket_tag(malware)}: a case that is closed cannot take" in said
    assert case_of(desk, spam).state is CaseState.DISCONNECTED
    assert case_of(desk, phish).state is CaseState.DISCONNECTED
    assert case_of(desk, malware).state is CaseState.CLOSED


def test_a_bulk_deadline_change_needs_a_date(
    web: Web, desk: Desk, clock: FakeClock, two_accounts: dict[str, int]
) -> None:
    spam = two_accounts["spam"]
    before = case_of(desk, spam).deadline_at
    analyst = staff(web)
    page = "/staff/cases"
    data = {"case_id": str(spam), "action": "change_deadline", "reason": "agreed"}
    assert post(analyst, "/staff/cases/bulk", {**data, "deadline": ""}, page).status_code == 303
    assert "Nothing was done: a new deadline is needed" in flashes(analyst, page)
    assert case_of(desk, spam).deadline_at == before
    later = (clock.now() + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    assert post(analyst, "/staff/cases/bulk", {**data, "deadline": later}, page).status_code == 303
    assert case_of(desk, spam).deadline_at == clock.now() + timedelta(days=2)


# -- queues, reports, dashboard -----------------------------------------------------------------


def test_queues_list_what_is_waiting(
    web: Web, desk: Desk, clock: FakeClock, acme: factories.Customer
) -> None:
    unparsed = factories.report(desk, status=ReportStatus.UNPARSED, body="gibberish")
    needs = factories.report(desk, "jo@reporter.example", status=ReportStatus.NEEDS_INFO)
    soon = open_case(desk, acme, Category.SPAM)
    cut = open_case(desk, acme, Category.MALWARE, server=1)
    cases.transition(desk.uow(), SYSTEM, cut, machine.Command(Event.DISCONNECT, "cut"), desk.policy)
    deadline = case_of(desk, soon).deadline_at
    assert deadline is not None
    clock.set(deadline - timedelta(hours=1))
    analyst = staff(web)
    unparsed_page = analyst.get("/staff/queues/unparsed").text
    assert f'href="/staff/reports/{unparsed}"' in unparsed_page
    assert f'href="/staff/reports/{needs}"' not in unparsed_page
    assert f'href="/staff/reports/{needs}"' in analyst.get("/staff/queues/needs_info").text
    assert tickets_listed(analyst.get("/staff/queues/due_soon").text) == {soon}
    assert tickets_listed(analyst.get("/staff/queues/disconnected").text) == {cut}
    assert tickets_listed(analyst.get("/staff/queues/overdue").text) == set()
    clock.set(deadline + timedelta(minutes=1))
    assert tickets_listed(analyst.get("/staff/queues/overdue").text) == {soon}
    assert tickets_listed(analyst.get("/staff/queues/due_soon").text) == set()
    dashboard = analyst.get("/staff").text
    assert re.search(r'<span class="n">1</span>\s*<span class="what">Overdue</span>', dashboard)


def test_an_unparsed_report_is_reprocessed(web: Web, desk: Desk) -> None:
    report_id = factories.report(desk, status=ReportStatus.UNPARSED, body="still gibberish")
    analyst = staff(web)
    page = f"/staff/reports/{report_id}"
    assert "Reprocess</button>" in analyst.get(page).text
    answer = post(analyst, f"{page}/reprocess", {}, page)
    assert answer.status_code == 303
    assert f"R-{report_id:06d} was processed again" in flashes(analyst, page)
    with desk.uow() as uow:
        report = uow.session.get(Report, report_id)
        assert report is not None
        assert report.status is not ReportStatus.RECEIVED  # it went through the pipeline


def test_the_dashboard_of_an_empty_desk(web: Web) -> None:
    html = staff(web).get("/staff").text
    assert html.count("<svg") == 3
    assert "Nothing yet" in html
    assert "No cases yet." in html


def test_the_dashboard_draws_its_charts_without_script(
    web: Web, desk: Desk, acme: factories.Customer
) -> None:
    open_case(desk, acme, Category.SPAM)
    open_case(desk, acme, Category.PHISHING, server=1)
    html = staff(web).get("/staff").text
    assert html.count("<svg") == 3
    assert html.count("<script") == 1  # /static/abusedesk.js
    assert "Cases opened by category" in html
    assert "Deadlines met and missed" in html
    assert "Open cases by state" in html
    for queue in ("unparsed", "due_soon", "overdue", "disconnected"):
        assert f'href="/staff/queues/{queue}"' in html


def test_a_chart_only_where_the_case_has_a_time_series(
    web: Web, desk: Desk, acme: factories.Customer
) -> None:
    flood = open_case(
        desk,
        acme,
        Category.DENIAL_OF_SERVICE,
        evidence={
            "peak_pps": 910000,
            "series": [
                {"at": f"2026-03-02T08:{m:02d}:00+00:00", "pps": 1000 * m, HOSTILE: 8e6 * m}
                for m in range(0, 30, 5)
            ],
        },
    )
    plain = open_case(desk, acme, Category.SPAM, server=1, evidence={"rows": [{"ip": "x"}]})
    analyst = staff(web)
    with_chart = analyst.get(f"/staff/cases/{flood}").text
    assert with_chart.count("<svg") == 1
    assert "evidence.series" in with_chart
    assert "<script>alert" not in with_chart  # a measure's name is text in the chart too
    assert with_chart.count("<script") == 1
    assert "<svg" not in analyst.get(f"/staff/cases/{plain}").text


# -- accounts and screening ---------------------------------------------------------------------


def test_the_account_page_shows_what_the_account_holds_and_keeps_notes(
    web: Web, desk: Desk, acme: factories.Customer
) -> None:
    case_id = open_case(desk, acme)
    analyst = staff(web)
    page = f"/staff/accounts/{acme.reference}"
    html = analyst.get(page).text
    for hostname in acme.hostnames:
        assert hostname in html
    assert "198.51.100.1/32" in html
    assert "198.51.100.2/32" in html
    assert "abuse@c1001.example" in html
    assert f'href="/staff/cases/{case_id}"' in html
    answer = post(analyst, f"{page}/notes", {"notes": f"Slow to answer. {HOSTILE}"}, page)
    assert answer.status_code == 303
    with desk.uow() as uow:
        account = uow.session.get(Account, acme.account_id)
        assert account is not None
        assert account.notes == f"Slow to answer. {HOSTILE}"
    html = analyst.get(page).text
    assert "Slow to answer. &lt;script&gt;" in html
    assert analyst.get(f"/staff/accounts?q={acme.hostnames[1]}").headers["location"] == page
    assert analyst.get(f"/staff/accounts?q={acme.reference}").headers["location"] == page
    assert "No account&#39;s reference, name" in analyst.get("/staff/accounts?q=nothing").text
    # Part of a name lists the accounts that have it, and only those.
    factories.customer(desk, "C2002", base="203.0.113")
    listing = analyst.get("/staff/accounts", params={"q": "customer c100"}).text
    assert acme.reference in listing
    assert "C2002" not in listing
    assert "C2002" in analyst.get("/staff/accounts", params={"q": "abuse@c2002"}).text


def test_the_screening_list_is_read_by_staff_and_kept_by_legal(
    web: Web, desk: Desk, clock: FakeClock
) -> None:
    analyst = staff(web)
    html = analyst.get("/staff/screening").text
    assert "Add to the list" not in html
    token = csrf_token(html)
    entry = {"kind": "person", "name": "Eve", "emails": "eve@bad.example", "reason": "fraud"}
    refused = analyst.post("/staff/screening", data={**entry, "csrf_token": token})
    assert refused.status_code == 403

    legal = staff_with_two_factor(web, clock, Role.LEGAL)
    page = "/staff/screening"
    wrong = post(legal, page, {**entry, "reason": " "}, page)
    assert wrong.status_code == 422
    assert "needs the reason" in wrong.text
    assert 'value="Eve"' in wrong.text
    assert post(legal, page, entry, page).status_code == 303
    with desk.uow() as uow:
        added = uow.session.scalar(sa.select(ScreeningEntry))
        assert added is not None
        assert added.emails == ["eve@bad.example"]
        entry_id = added.id
    assert "eve@bad.example" in analyst.get(page).text
    removed = post(legal, f"/staff/screening/{entry_id}/remove", {"reason": "court ruling"}, page)
    assert removed.status_code == 303
    html = analyst.get(page).text
    assert "eve@bad.example" not in html
    assert "Show 1 removed entry" in html
    assert "court ruling" in analyst.get(f"{page}?removed=true").text
