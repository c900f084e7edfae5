"""The customer portal in a real browser: answering a ticket, another account's ticket, the
account's users and billing data, a disconnected server and a new AUP."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from abusedesk.accounts.choices import Role
from abusedesk.accounts.permissions import SYSTEM
from abusedesk.cases import machine
from abusedesk.cases import service as cases
from abusedesk.cases.choices import Event
from abusedesk.policy import Category
from tests import factories
from tests.browser.conftest import Screenshots, Site

PHONE = {"width": 390, "height": 844}


def open_case(site: Site, customer: factories.Customer, category: Category, summary: str) -> int:
    new = cases.NewCase(
        customer.account_id, category, server_id=customer.server_ids[0], summary=summary
    )
    return cases.open_case(site.desk.uow(), SYSTEM, new, site.desk.policy).case.id


def test_a_customer_signs_in_and_acknowledges_a_ticket_with_a_plan(
    site: Site, page: Page, shots: Screenshots
) -> None:
    customer = factories.customer(site.desk, "C1001", servers=2)
    case_id = open_case(
        site, customer, Category.SPAM, "Bulk mail from srv0.c1001.example to 40 000 addresses"
    )
    open_case(site, customer, Category.VULNERABLE_SERVICE, "Open memcached on UDP 11211")
    email = site.user(Role.CUSTOMER, "C1001")

    page.goto(f"{site.url}/portal")
    expect(page).to_have_url(f"{site.url}/login?next=%2Fportal")
    shots.take(page, "login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", "Correct-Horse-42")
    page.click("button[type=submit]:has-text('Sign in')")
    expect(page).to_have_url(f"{site.url}/portal")
    ticket = page.locator(".ticket-card", has_text="AD-000001")
    expect(ticket).to_contain_text("Acknowledge and tell us your plan by")
    expect(ticket.locator("time[data-countdown]")).to_have_text(re.compile(r"^in 2[34] hours"))
    shots.take(page, "tickets")

    ticket.get_by_role("link", name="Open AD-000001").click()
    expect(page).to_have_url(f"{site.url}/portal/tickets/{case_id}")
    expect(page.locator("h1")).to_contain_text("AD-000001")
    shots.take(page, "ticket-open")

    plan = "We suspended the mailing script today and will audit sign-ups."
    page.fill("textarea[name=plan]", plan)
    page.click("button:has-text('Acknowledge with this plan')")
    expect(page).to_have_url(f"{site.url}/portal/tickets/{case_id}")
    expect(page.locator(".flash")).to_contain_text("is acknowledged")
    expect(page.locator(".page-head .badge").first).to_have_text("Acknowledged")
    timeline = page.locator(".timeline")
    expect(timeline).to_contain_text("Acknowledged")
    expect(timeline).to_contain_text("We suspended the mailing script today")
    expect(page.locator(".next-step")).to_contain_text("Fix it, then report the fix")
    shots.take(page, "ticket-acknowledged")

    # The same pages at a phone's width.
    page.set_viewport_size(PHONE)
    shots.take(page, "ticket-acknowledged-phone")
    page.goto(f"{site.url}/portal")
    expect(page.locator(".ticket-card").first).to_be_visible()
    shots.take(page, "tickets-phone")


def test_a_customer_who_types_another_accounts_ticket_url_gets_404(
    site: Site, page: Page, shots: Screenshots
) -> None:
    factories.customer(site.desk, "C1001")
    theirs = factories.customer(site.desk, "C1002", base="203.0.113")
    secret = open_case(site, theirs, Category.PHISHING, "Phishing kit of the other customer")
    site.sign_in(page, site.user(Role.CUSTOMER, "C1001"))
    expect(page).to_have_url(f"{site.url}/portal")
    shots.take(page, "own-tickets")

    answer = page.goto(f"{site.url}/portal/tickets/{secret}")
    assert answer is not None
    assert answer.status == 404
    expect(page.locator("h1")).to_have_text("Not Found")
    expect(page.locator("main")).to_contain_text("There is no such page, or it is not yours")
    expect(page.locator("main")).not_to_contain_text("Phishing kit")
    shots.take(page, "foreign-ticket-404")

    missing = page.goto(f"{site.url}/portal/tickets/{secret + 1000}")
    assert missing is not None
    assert missing.status == 404


def test_an_owner_invites_a_user_and_confirms_billing(
    site: Site, page: Page, shots: Screenshots
) -> None:
    factories.customer(site.desk, "C1001")
    site.sign_in(page, site.user(Role.CUSTOMER, "C1001"))
    banner = page.locator(".banner", has_text="confirm your billing data")
    expect(banner).to_be_visible()
    shots.take(page, "tickets-with-banners")

    page.click("nav.mainnav >> text=Users")
    expect(page).to_have_url(f"{site.url}/portal/users")
    shots.take(page, "users")
    page.fill("input[name=email]", "sam.colleague@c1001.example")
    page.fill("input[name=name]", "Sam Colleague")
    page.select_option("select[name=role]", "manager")
    page.click("button:has-text('Send the invitation')")
    expect(page.locator(".flash")).to_contain_text("sam.colleague@c1001.example is invited")
    row = page.locator("tr", has_text="sam.colleague@c1001.example")
    expect(row).to_contain_text("Invited")
    expect(row.locator("select[name=role]")).to_have_value("manager")
    shots.take(page, "users-invited")

    page.click("nav.mainnav >> text=Billing")
    expect(page).to_have_url(f"{site.url}/portal/billing")
    expect(page.locator(".alert-warning")).to_contain_text("never been confirmed")
    shots.take(page, "billing-stale")
    page.fill("input[name=billing_name]", "Customer C1001 Ltd")
    page.fill("textarea[name=billing_address]", "1 Harbour Road\nPort Town PT1 2AB")
    page.fill("input[name=billing_email]", "billing@c1001.example")
    page.click("button:has-text('Confirm billing data')")
    expect(page.locator(".flash")).to_contain_text("billing data is confirmed")
    expect(page.locator(".alert-warning")).to_have_count(0)
    shots.take(page, "billing-confirmed")

    page.click("nav.mainnav >> text=Tickets")
    expect(page.locator(".banner", has_text="confirm your billing data")).to_have_count(0)
    shots.take(page, "tickets-after")


def test_a_disconnected_customer_sees_why_and_accepts_the_new_policy(
    site: Site, page: Page, shots: Screenshots
) -> None:
    customer = factories.customer(site.desk, "C1001", servers=3)
    case_id = open_case(site, customer, Category.NETWORK_ABUSE, "SSH brute force from srv0")
    command = machine.Command(Event.DISCONNECT, reason="the scanning went on after notice")
    cases.transition(site.desk.uow(), SYSTEM, case_id, command, site.desk.policy)
    site.sign_in(page, site.user(Role.CUSTOMER, "C1001"))
    expect(page.locator(".ticket-card")).to_contain_text("Contact us to get reconnected")

    page.click("nav.mainnav >> text=Services")
    cut = page.locator(".cut-off")
    expect(cut).to_contain_text("srv0.c1001.example is disconnected")
    expect(cut).to_contain_text("To get it back")
    shots.take(page, "services-disconnected")
    cut.get_by_role("link", name="Contact us on AD-000001").click()
    expect(page).to_have_url(f"{site.url}/portal/tickets/{case_id}")
    page.fill("textarea[name=message]", "The scanner was a compromised account; we removed it.")
    page.click("button:has-text('Send to the abuse desk')")
    expect(page.locator(".timeline")).to_contain_text("we removed it")
    shots.take(page, "ticket-contacted")

    page.click("nav.mainnav >> text=Policy")
    expect(page.locator(".policy-scroll")).to_contain_text("Methods of Resolution")
    shots.take(page, "policy-pending")
    page.check("input[name=agree]")
    page.click("button:has-text('Accept version')")
    expect(page.locator(".flash")).to_contain_text("accepts the policy")
    expect(page.locator(".ok-text")).to_have_text("You have accepted the current version.")
    shots.take(page, "policy-accepted")
