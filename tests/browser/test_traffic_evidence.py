"""A NOC engineer reads a traffic detection on its case page in a real browser: what fired,
the window charted against its threshold, the top destinations, and a CSV download."""

from __future__ import annotations

import csv
import io

import numpy as np
from playwright.sync_api import Page, expect

from abusedesk.accounts.choices import Role
from abusedesk.traffic.decode.records import DecodeResult
from abusedesk.traffic.detectors import Detection
from abusedesk.traffic.findings import TrafficFindings, open_cases_for
from abusedesk.traffic.settings import TrafficSettings
from abusedesk.traffic.synthetic import addresses, flows
from tests import factories
from tests.browser.conftest import Screenshots, Site


def test_a_spam_burst_reads_on_its_case_page(site: Site, page: Page, shots: Screenshots) -> None:
    desk = site.desk
    factories.customer(desk, "C2001", servers=1, base="198.51.100")
    found: list[Detection] = []
    sink = TrafficFindings(
        TrafficSettings(), desk.policy.traffic, desk.session_factory, found.extend, detect_every=0
    )
    burst = flows(
        400,
        "198.51.100.1",
        addresses("203.0.113.0/24", 200) + addresses("192.0.2.0/24", 200),
        dst_port=25,
        packets=12,
        bytes=4000,
    )
    result = DecodeResult(format=None, flows=burst, origin=np.zeros(len(burst), np.int32))
    sink.accept(result, ["192.0.2.254"], 1_800_000_000.0)
    assert [d.kind.value for d in found] == ["spam"]
    (opened,) = open_cases_for(desk, found)

    site.sign_in(page, site.user(Role.NOC))
    page.goto(f"{site.url}/staff/cases/{opened.case.id}")
    evidence = page.locator("#evidence-1")
    expect(evidence.locator("table.fired")).to_contain_text("SMTP destinations")
    expect(evidence.locator("figure.chart svg")).to_be_visible()
    expect(evidence).to_contain_text("TCP/25")
    shots.take(page, "spam-evidence")

    with page.expect_download() as download:
        evidence.get_by_role("link", name="CSV").nth(2).click()  # the top destinations
    saved = download.value.path()
    rows = list(csv.DictReader(io.StringIO(saved.read_text())))
    assert len(rows) == 10
    assert all(row["address"] for row in rows)
