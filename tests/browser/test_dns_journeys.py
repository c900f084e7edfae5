"""A customer manages a zone in the portal in a real browser: adds it, adds records, meets a
clear error beside a wrong field, edits a set, and reads the history; also on a phone."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from abusedesk.accounts.choices import Role
from tests import factories
from tests.browser.conftest import Screenshots, Site

ZONE = "bakery-c3001.net"


def test_a_customer_adds_a_zone_and_edits_its_records(
    site: Site, page: Page, shots: Screenshots
) -> None:
    factories.customer(site.desk, "C3001", servers=1, base="198.51.100")
    site.sign_in(page, site.user(Role.CUSTOMER, "C3001"))
    page.get_by_role("link", name="DNS").click()
    expect(page.get_by_role("heading", name="DNS zones")).to_be_visible()
    page.fill("#f-name", ZONE)
    page.get_by_role("button", name="Add the zone").click()
    expect(page.get_by_role("heading", name=ZONE)).to_be_visible()
    shots.take(page, "new-zone")

    page.fill("#f-subname", "www")
    page.select_option("#f-type", "A")
    page.fill("#f-records", "192.0.2.300")
    page.get_by_role("button", name="Save").click()
    error = page.locator("#edit .error-text")
    expect(error).to_be_visible()
    expect(page.locator("#f-records")).to_have_value("192.0.2.300")  # kept, to fix
    shots.take(page, "a-wrong-address")

    page.fill("#f-records", "192.0.2.30\n192.0.2.31")
    page.get_by_role("button", name="Save").click()
    records = page.locator("table.records")
    expect(records).to_contain_text("192.0.2.31")

    page.get_by_role("link", name="Edit").first.click()
    expect(page.get_by_role("heading", name="Edit A at www")).to_be_visible()
    page.fill("#f-records", "192.0.2.40")
    page.get_by_role("button", name="Save").click()
    expect(records).to_contain_text("192.0.2.40")
    expect(records).not_to_contain_text("192.0.2.31")
    expect(page.locator("#history")).to_contain_text("www")
    shots.take(page, "edited")

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    expect(records).to_be_visible()
    shots.take(page, "on-a-phone")
