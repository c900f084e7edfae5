"""The public pages in a real browser: a complainant files a complaint with a file and follows
it on the private status page."""

from __future__ import annotations

import re

from playwright.sync_api import Browser, Page, expect

from abusedesk.policy import Category
from tests import factories
from tests.browser.conftest import Screenshots, Site

PHONE = {"width": 390, "height": 844}


def test_a_complainant_files_a_complaint_and_opens_its_status_page(
    site: Site, page: Page, browser: Browser, shots: Screenshots
) -> None:
    factories.customer(site.desk, "C1001", servers=2)
    page.goto(f"{site.url}/report")
    expect(page.locator("h1")).to_have_text("Report abuse")
    shots.take(page, "form")

    # Sent half filled: refused, each field says why, what was typed stays.
    page.fill("input[name=name]", "Jane Roe")
    page.click("button:has-text('Send the complaint')")
    expect(page.locator(".alert-error")).to_contain_text("The complaint was not sent")
    expect(page.locator("#f-email ~ .error-text")).to_contain_text("e-mail address")
    expect(page.locator("#f-resources ~ .error-text")).to_contain_text("Say where the problem is")
    expect(page.locator("input[name=name]")).to_have_value("Jane Roe")
    shots.take(page, "form-refused")

    page.fill("input[name=email]", "jane@victim.example")
    page.fill("textarea[name=resources]", "198.51.100.1\nhxxp://srv0.c1001[.]example/bank/login")
    page.select_option("select[name=category]", Category.PHISHING.value)
    page.fill(
        "textarea[name=description]",
        "A fake login page of my bank, <b>seen</b> 2026-03-02 08:00 UTC.",
    )
    page.set_input_files(
        "input[name=evidence]",
        files=[
            {"name": "fake-login.png", "mimeType": "image/png", "buffer": b"\x89PNG\r\n\x1a\n"},
            {"name": "headers.txt", "mimeType": "text/plain", "buffer": b"Received: ..."},
        ],
    )
    page.click("button:has-text('Send the complaint')")
    expect(page).to_have_url(re.compile(re.escape(f"{site.url}/report/status/") + r"[\w-]+$"))
    expect(page.locator(".flash")).to_contain_text("your complaint is received as R-000001")
    expect(page.locator("h1")).to_have_text("R-000001")
    expect(page.locator(".status-card")).to_contain_text("Passed to the customer")
    expect(page.locator("dl.facts")).to_contain_text("fake-login.png")
    expect(page.locator("pre.evidence")).to_contain_text("<b>seen</b>")  # shown as text
    link = page.locator(".link-box code").inner_text().strip()
    assert link == page.url
    shots.take(page, "status-after-filing")

    # The private link, opened later in another browser: the status, without the reminder.
    later = browser.new_context(viewport=PHONE, locale="en-GB")
    try:
        other = later.new_page()
        other.goto(link)
        expect(other.locator("h1")).to_have_text("R-000001")
        expect(other.locator(".status-card")).to_contain_text("who must answer it")
        expect(other.locator(".keep-link")).to_have_count(0)
        expect(other.locator("main")).not_to_contain_text("C1001")
        shots.take(other, "status-phone")
        other.goto(f"{site.url}/report")
        shots.take(other, "form-phone")
        missing = other.goto(f"{site.url}/report/status/not-a-token")
        assert missing is not None
        assert missing.status == 404
    finally:
        later.close()
