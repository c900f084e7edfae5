"""The staff console in a real browser: an analyst disconnects a server and later reconnects
it; a morning's round of the dashboard, a queue, a filtered search and a bulk action; and the
same pages on a phone. Every page visited is saved as a screenshot."""

from __future__ import annotations

import re
from datetime import timedelta

import sqlalchemy as sa
from playwright.sync_api import Page, expect

from abusedesk.accounts import signin, totp
from abusedesk.accounts.choices import Role
from abusedesk.accounts.models import User
from abusedesk.accounts.permissions import SYSTEM
from abusedesk.accounts.service import actor_for
from abusedesk.cases import service as cases
from abusedesk.cases.models import ticket_tag
from abusedesk.intake.choices import ReportStatus
from abusedesk.policy import Category
from abusedesk.runtime import Worker
from tests import factories
from tests.browser.conftest import PASSWORD, Screenshots, Site

HOSTILE = '<script>alert("x")</script><img src=x onerror="alert(1)">'


def open_case(
    site: Site,
    customer: factories.Customer,
    category: Category,
    server: int = 0,
    summary: str = "",
    report_ids: tuple[int, ...] = (),
    evidence: dict[str, object] | None = None,
) -> int:
    return cases.open_case(
        site.desk.uow(),
        SYSTEM,
        cases.NewCase(
            customer.account_id,
            category,
            server_id=customer.server_ids[server],
            summary=summary,
            report_ids=report_ids,
            evidence=evidence or {},
        ),
        site.desk.policy,
    ).case.id


def refuse_dialogs(page: Page) -> list[str]:
    """Every alert() the page would show: reported content must never run one."""
    seen: list[str] = []

    def dismiss(dialog: object) -> None:
        seen.append(dialog.message)  # type: ignore[attr-defined]
        dialog.dismiss()  # type: ignore[attr-defined]

    page.on("dialog", dismiss)
    return seen


def fits_the_width(page: Page) -> None:
    """Nothing wider than the window: tables scroll inside their own frame."""
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 1, f"{page.url} is {overflow}px wider than the window"


def run_the_worker(site: Site) -> None:
    worker = Worker(site.desk)
    try:
        worker.tick()
    finally:
        worker.close()


def test_an_analyst_disconnects_and_later_reconnects_a_server(
    site: Site, page: Page, shots: Screenshots
) -> None:
    acme = factories.customer(site.desk, "C1001", servers=2)
    complaint = factories.report(
        site.desk,
        "abuse@blocklist.example",
        "Blocklist Operations",
        body="198.51.100.1 sent 40 000 messages to our spam traps in the last hour.",
    )
    case_id = open_case(
        site,
        acme,
        Category.SPAM,
        summary="Spam trap hits from 198.51.100.1",
        report_ids=(complaint,),
        evidence={"trap_hits": 40000, "listed_on": ["blocklist.example"]},
    )
    ticket = ticket_tag(case_id)
    dialogs = refuse_dialogs(page)

    site.sign_in(page, site.user(Role.ANALYST))
    expect(page).to_have_url(f"{site.url}/staff")
    shots.take(page, "dashboard")

    # Found through search, by the customer's account.
    page.click("nav.mainnav a:has-text('Cases')")
    page.fill("#f-account", "C1001")
    page.click("button:has-text('Search')")
    expect(page.locator("table.cases tbody tr")).to_have_count(1)
    shots.take(page, "search")
    page.click(f"a.ticket:has-text('{ticket}')")
    expect(page).to_have_url(f"{site.url}/staff/cases/{case_id}")
    expect(page.locator("h1")).to_contain_text(ticket)
    expect(page.locator("#reports")).to_contain_text("Blocklist Operations")
    shots.take(page, "case-open")

    page.click("#act-disconnect > summary")
    page.fill("#disconnect-reason", "Still sending spam an hour after the ticket.")
    page.click("#act-disconnect button[type=submit]")
    expect(page.locator(".flash")).to_contain_text(f"{ticket}: disconnected")
    expect(page.locator(".case-head .badges")).to_contain_text("Disconnected")
    expect(page.locator("#server")).to_contain_text("Disconnected")
    expect(page.locator("#enforcement")).to_contain_text("Pending")
    expect(page.locator(".case-clock")).to_contain_text("Termination due")
    shots.take(page, "case-disconnected")

    # The log driver (the embedded default) carries the action out on the worker's tick.
    run_the_worker(site)
    page.reload()
    expect(page.locator("#enforcement")).to_contain_text("Applied")

    page.click("#customer a[href='/staff/accounts/C1001']")
    expect(page).to_have_url(f"{site.url}/staff/accounts/C1001")
    expect(page.locator("table").first).to_contain_text("Disconnected")
    shots.take(page, "account")

    # Later, from the disconnected queue: the customer has called and fixed it.
    page.click("nav.mainnav a:has-text('Queues')")
    shots.take(page, "queues")
    page.click("a:has-text('Disconnected')")
    expect(page.locator("table.cases")).to_contain_text(ticket)
    shots.take(page, "queue-disconnected")
    page.click(f"a.ticket:has-text('{ticket}')")
    expect(page.locator("#act-reconnect")).to_contain_text("has not made contact yet")
    page.click("#act-customer_contact > summary")
    page.fill("#customer_contact-reason", "Phoned: the compromised mailer is removed.")
    page.click("#act-customer_contact button[type=submit]")
    expect(page.locator(".flash")).to_contain_text("contact is recorded")
    page.click("#act-reconnect > summary")
    page.fill("#reconnect-reason", "No trap hits for six hours.")
    shots.take(page, "case-reconnect-form")
    page.click("#act-reconnect button[type=submit]")
    expect(page.locator(".flash")).to_contain_text(f"{ticket}: reconnected")
    expect(page.locator(".case-head .badges")).to_contain_text("Closed")
    expect(page.locator(".case-clock")).to_contain_text("Resolved")
    expect(page.locator("#server")).to_contain_text("Active")
    timeline = page.locator("#timeline")
    expect(timeline).to_contain_text("Disconnected")
    expect(timeline).to_contain_text("Still sending spam an hour after the ticket.")
    expect(timeline).to_contain_text("Reconnected")
    expect(timeline).to_contain_text("No trap hits for six hours.")
    expect(page.locator("#enforcement")).to_contain_text("Reconnect")
    fits_the_width(page)
    shots.take(page, "case-reconnected")
    assert dialogs == []


def test_dashboard_queue_search_and_a_bulk_action(
    site: Site, page: Page, shots: Screenshots
) -> None:
    acme = factories.customer(site.desk, "C1001", servers=3)
    other = factories.customer(site.desk, "C2002", servers=1, base="203.0.113")
    spam = [open_case(site, acme, Category.SPAM, server=n, summary="bulk mail") for n in (0, 1)]
    phishing = open_case(site, acme, Category.PHISHING, server=2, summary="fake bank")
    elsewhere = open_case(site, other, Category.SPAM, summary="newsletter")
    unparsed = factories.report(
        site.desk,
        "someone@example.net",
        status=ReportStatus.UNPARSED,
        body=f"<html><body>{HOSTILE} Your server is attacking us!</body></html>",
    )
    dialogs = refuse_dialogs(page)

    site.sign_in(page, site.user(Role.ANALYST))
    expect(page.locator(".chart svg")).to_have_count(3)
    expect(page.locator("a.stat:has-text('Unparsed') .n")).to_have_text("1")
    fits_the_width(page)
    shots.take(page, "dashboard")

    page.click("a.stat:has-text('Unparsed')")
    expect(page).to_have_url(f"{site.url}/staff/queues/unparsed")
    shots.take(page, "queue-unparsed")
    page.click(f"a.ticket:has-text('R-{unparsed:06d}')")
    raw = page.locator("pre.raw")
    expect(raw).to_contain_text("<script>alert")  # shown as text, not run
    expect(page.locator("button:has-text('Reprocess')")).to_be_visible()
    shots.take(page, "report")

    page.click("nav.mainnav a:has-text('Cases')")
    page.fill("#f-account", "C1001")
    page.select_option("#f-category", "spam")
    page.click("button:has-text('Search')")
    expect(page).to_have_url(re.compile(r"/staff/cases\?account=C1001&.*category=spam"))
    rows = page.locator("table.cases tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("table.cases")).not_to_contain_text(ticket_tag(phishing))
    expect(page.locator("table.cases")).not_to_contain_text(ticket_tag(elsewhere))
    shots.take(page, "search-filtered")

    page.check("input[data-select-all]")
    for box in page.locator("input[name=case_id]").all():
        expect(box).to_be_checked()
    page.select_option("#f-action", "disconnect")
    page.fill("#f-reason", "A spam run from two servers of one account.")
    shots.take(page, "bulk-form")
    page.click("button:has-text('Apply to selected')")
    expect(page).to_have_url(re.compile(r"/staff/cases\?account=C1001&category=spam$"))
    flash = page.locator(".flash")
    expect(flash).to_contain_text(f"{ticket_tag(spam[0])}, {ticket_tag(spam[1])}: disconnected")
    expect(page.locator("table.cases .badge.state-disconnected")).to_have_count(2)
    shots.take(page, "bulk-done")

    # The dashboard's disconnected tile counts them.
    page.click("nav.mainnav a:has-text('Dashboard')")
    expect(page.locator("a.stat:has-text('Disconnected') .n")).to_have_text("2")
    shots.take(page, "dashboard-after")
    assert dialogs == []


def test_the_console_reads_on_a_phone(site: Site, page: Page, shots: Screenshots) -> None:
    acme = factories.customer(site.desk, "C1001", servers=1)
    factories.report(site.desk, "noc@isp.example", "ISP NOC", status=ReportStatus.NEEDS_INFO)
    case_id = open_case(
        site,
        acme,
        Category.DENIAL_OF_SERVICE,
        summary="Outbound UDP flood from srv0",
        evidence={
            "peak_pps": 910000,
            "series": [
                {"at": f"2026-03-02T08:{m:02d}:00+00:00", "pps": 150000 + 9000 * m}
                for m in range(0, 60, 5)
            ],
        },
    )
    page.set_viewport_size({"width": 390, "height": 844})
    site.sign_in(page, site.user(Role.NOC))
    for name, path in [
        ("dashboard", "/staff"),
        ("queue", "/staff/queues/needs_info"),
        ("cases", "/staff/cases"),
        ("case", f"/staff/cases/{case_id}"),
        ("account", "/staff/accounts/C1001"),
        ("screening", "/staff/screening"),
    ]:
        page.goto(f"{site.url}{path}")
        expect(page.locator("h1")).to_be_visible()
        fits_the_width(page)
        shots.take(page, f"phone-{name}")
    # The flood's traffic is drawn on its case page.
    page.goto(f"{site.url}/staff/cases/{case_id}")
    expect(page.locator("#evidence .chart svg")).to_have_count(1)


def sign_in_with_a_code(site: Site, page: Page, role: Role) -> None:
    """Legal and admin sign in with a second factor: enrolled through the service with the
    previous step's code, then signed in through the form with the current one."""
    email = site.user(role)
    with site.desk.uow() as uow:
        user = uow.session.scalar(sa.select(User).where(User.email == email))
        assert user is not None
        actor = actor_for(user)
    secret = totp.new_totp_secret()
    now = site.desk.clock.now()
    earlier = totp.code_at(secret, now - timedelta(seconds=totp.STEP_SECONDS))
    signin.enable_totp(site.desk.uow(), actor, secret, earlier)
    page.goto(f"{site.url}/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("summary:has-text('authenticator')")
    page.fill("input[name=code]", totp.code_at(secret, site.desk.clock.now()))
    page.click("button[type=submit]:has-text('Sign in')")
    expect(page).to_have_url(f"{site.url}/staff")


def test_legal_keeps_the_screening_list(site: Site, page: Page, shots: Screenshots) -> None:
    sign_in_with_a_code(site, page, Role.LEGAL)
    page.click("nav.mainnav a:has-text('Screening')")
    expect(page.locator("table.screening")).to_contain_text("The list is empty.")
    page.click("summary:has-text('Add an entry')")
    page.select_option("#f-kind", "business")
    page.fill("#f-name", "Bulletproof Mailers Ltd")
    page.fill("#f-emails", "sales@bulletproof.example, ceo@bulletproof.example")
    page.fill("#f-domains", "bulletproof.example")
    page.fill("#f-reason", "Terminated twice for spam operations; court order 2025-114.")
    shots.take(page, "screening-add")
    page.click("button:has-text('Add to the list')")
    expect(page.locator(".flash")).to_contain_text("is on the screening list")
    row = page.locator("table.screening tbody tr").first
    expect(row).to_contain_text("Bulletproof Mailers Ltd")
    expect(row).to_contain_text("ceo@bulletproof.example")
    fits_the_width(page)
    shots.take(page, "screening-listed")
    row.locator("summary:has-text('Remove')").click()
    row.locator("textarea[name=reason]").fill("The order was set aside on appeal.")
    row.locator("button:has-text('Remove')").click()
    expect(page.locator(".flash")).to_contain_text("off the screening list")
    expect(page.locator("table.screening")).to_contain_text("The list is empty.")
    page.click("a:has-text('Show 1 removed entry')")
    expect(page.locator("main")).to_contain_text("The order was set aside on appeal.")
    shots.take(page, "screening-removed")
