"""A traffic detection's evidence on the case page: what fired against which threshold, the
window charted with its threshold, the top destinations and ports, sample flows; each table as
CSV, to staff only."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import numpy as np
import pytest

from abusedesk.accounts.choices import Role
from abusedesk.bootstrap import Desk
from abusedesk.traffic.decode.records import DecodeResult
from abusedesk.traffic.detectors import Detection
from abusedesk.traffic.findings import TrafficFindings, open_cases_for
from abusedesk.traffic.settings import TrafficSettings
from abusedesk.traffic.synthetic import addresses, flows
from abusedesk.web.evidence import to_csv
from tests import factories
from tests.integration.test_staff_pages import staff
from tests.web_client import Web, add_user, served

NOW = 1_800_000_000.0
TARGETS = addresses("198.18.0.0/23", 300)


@pytest.fixture
def web(desk: Desk) -> Iterator[Web]:
    with served(desk) as served_web:
        yield served_web


def scan_case(desk: Desk) -> tuple[int, factories.Customer]:
    """A horizontal SSH scan from the customer's server, found by the real detectors."""
    customer = factories.customer(desk, "C1001", servers=1, base="198.51.100")
    found: list[Detection] = []
    sink = TrafficFindings(
        TrafficSettings(), desk.policy.traffic, desk.session_factory, found.extend, detect_every=0
    )
    scan = flows(300, "198.51.100.1", TARGETS, dst_port=22, tcp_flags=0x02, packets=1, bytes=60)
    origin = np.zeros(len(scan), np.int32)
    sink.accept(DecodeResult(format=None, flows=scan, origin=origin), ["192.0.2.1"], NOW)
    assert [d.kind.value for d in found] == ["horizontal_scan"]
    (opened,) = open_cases_for(desk, found)
    return opened.case.id, customer


def test_the_case_page_shows_what_fired_the_window_and_the_flows(web: Web, desk: Desk) -> None:
    case_id, _ = scan_case(desk)
    html = staff(web).get(f"/staff/cases/{case_id}").text
    assert "Horizontal scan" in html
    assert "What fired" in html
    assert "Top destinations" in html
    assert "TCP/22" in html  # the top port, by protocol name
    assert "198.51.100.1:40000" in html  # a sample flow from the server
    assert "SYN" in html  # its flags as letters
    assert html.count("<svg") == 1  # the window, with its threshold dashed
    assert "threshold" in html.split("<svg", 1)[1].split("</svg>", 1)[0]
    for table in ("fired", "series", "destinations", "ports", "flows"):
        assert f"/staff/cases/{case_id}/evidence/1/{table}.csv" in html


def test_each_table_downloads_as_csv(web: Web, desk: Desk) -> None:
    case_id, _ = scan_case(desk)
    analyst = staff(web)
    answer = analyst.get(f"/staff/cases/{case_id}/evidence/1/destinations.csv")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert len(rows) == 10  # the top ten of 300 scanned addresses
    assert {r["address"] for r in rows} <= set(TARGETS)
    flows_csv = list(
        csv.DictReader(
            io.StringIO(analyst.get(f"/staff/cases/{case_id}/evidence/1/flows.csv").text)
        )
    )
    assert flows_csv
    assert all(r["src"] == "198.51.100.1" and r["dst_port"] == "22" for r in flows_csv)
    assert {r["protocol"] for r in flows_csv} == {"TCP"}
    fired = list(
        csv.DictReader(
            io.StringIO(analyst.get(f"/staff/cases/{case_id}/evidence/1/fired.csv").text)
        )
    )
    assert float(fired[0]["peak"]) >= float(fired[0]["threshold"])
    series = analyst.get(f"/staff/cases/{case_id}/evidence/1/series.csv").text
    assert series.splitlines()[0].startswith("at,")


def test_unknown_tables_and_evidence_numbers_are_not_found(web: Web, desk: Desk) -> None:
    case_id, _ = scan_case(desk)
    analyst = staff(web)
    assert analyst.get(f"/staff/cases/{case_id}/evidence/1/passwords.csv").status_code == 404
    assert analyst.get(f"/staff/cases/{case_id}/evidence/2/flows.csv").status_code == 404
    assert analyst.get(f"/staff/cases/{case_id}/evidence/0/flows.csv").status_code == 404
    assert analyst.get(f"/staff/cases/{case_id + 99}/evidence/1/flows.csv").status_code == 404


def test_a_customer_cannot_download_the_console_csv(web: Web, desk: Desk) -> None:
    case_id, customer = scan_case(desk)
    owner = web.signed_in(add_user(desk, Role.CUSTOMER, customer.reference))
    assert owner.get(f"/staff/cases/{case_id}/evidence/1/flows.csv").status_code == 404


def test_csv_cells_that_a_spreadsheet_would_run_are_defused() -> None:
    text = to_csv(["a", "b"], [['=HYPERLINK("x")', "-1+1"], ["@SUM(A1)", 5]])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[1] == ['\'=HYPERLINK("x")', "'-1+1"]
    assert rows[2] == ["'@SUM(A1)", "5"]


def test_the_customer_reads_the_same_evidence_on_its_ticket(web: Web, desk: Desk) -> None:
    case_id, customer = scan_case(desk)
    owner = web.signed_in(add_user(desk, Role.CUSTOMER, customer.reference))
    html = owner.get(f"/portal/tickets/{case_id}").text
    assert "What fired" in html
    assert "198.51.100.1:40000" in html  # their own server's flows
    assert html.count("<svg") == 1
    link = f"/portal/tickets/{case_id}/evidence/1/flows.csv"
    assert link in html
    rows = list(csv.DictReader(io.StringIO(owner.get(link).text)))
    assert rows
    assert all(r["src"] == "198.51.100.1" for r in rows)
    other = factories.customer(desk, "C2002", servers=1, base="203.0.113")
    stranger = web.signed_in(add_user(desk, Role.CUSTOMER, other.reference))
    assert stranger.get(link).status_code == 404
    assert stranger.get(f"/portal/tickets/{case_id}").status_code == 404
