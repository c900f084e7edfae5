"""POST /api/v1/reports: a raw mail, XARF JSON, or a structured complaint, over HTTP."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from abusedesk.accounts.choices import Role
from abusedesk.accounts.permissions import SYSTEM
from abusedesk.inventory import service as inventory
from abusedesk.inventory.schemas import AssignmentIn
from tests import factories
from tests.e2e.conftest import Api

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "reports"


@pytest.fixture
def customer(api: Api) -> factories.Customer:
    return factories.customer(api.desk, "C1001", servers=1, base="198.51.100")


def test_a_structured_complaint_opens_a_case(api: Api, customer: factories.Customer) -> None:
    staff = api.as_role(Role.ANALYST)
    body = {
        "complainant_name": "Jane Doe",
        "complainant_email": "jane@isp.example",
        "description": "A phishing page imitating our bank is hosted on your server.",
        "resources": ["http://198.51.100.1/bank/login.php"],
        "category": "phishing",
    }
    answer = staff.post("/api/v1/reports", json=body)
    assert answer.status_code == 202, answer.text
    done = answer.json()
    assert done["status"] == "accepted"
    assert done["reference"].startswith("R-")
    assert len(done["cases_opened"]) == 1
    case = staff.get(f"/api/v1/cases/{done['cases_opened'][0]}").json()
    assert case["category"] == "phishing"
    assert case["account_reference"] == "C1001"
    again = staff.post("/api/v1/reports", json=body)
    assert again.json()["duplicate"] is True


def test_an_incomplete_complaint_needs_info(api: Api, customer: factories.Customer) -> None:
    staff = api.as_role(Role.ANALYST)
    raw = b"From: someone@isp.example\r\nSubject: help\r\n\r\nyour 198.51.100.1 attacks us\r\n"
    answer = staff.post("/api/v1/reports", content=raw, headers={"Content-Type": "message/rfc822"})
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "needs_info"
    assert answer.json()["missing"]
    assert answer.json()["cases_opened"] == []


def test_an_xarf_report_is_taken_as_sent(api: Api) -> None:
    sample = FIXTURES / "xarf-v4" / "content-phishing.json"
    if not sample.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{sample} is missing and CI=true")
        pytest.skip(f"{sample} is not here")
    c = factories.customer(api.desk, "C2002", servers=1, base="203.0.113")
    inventory.assign_prefix(
        api.desk.uow(),
        SYSTEM,
        c.hostnames[0],
        AssignmentIn(prefix="203.0.113.45/32", valid_from="2020-01-01T00:00:00Z"),
    )
    staff = api.as_role(Role.ANALYST)
    answer = staff.post(
        "/api/v1/reports", content=sample.read_bytes(), headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "accepted"
    [case_id] = answer.json()["cases_opened"]
    assert staff.get(f"/api/v1/cases/{case_id}").json()["category"] == "phishing"


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b"{not json", "application/json", 422),
        (b'{"complainant_email": "x@y.example"}', "application/json", 422),
        (b"<html></html>", "text/html", 422),
        (b"", "message/rfc822", 422),
    ],
)
def test_bad_input_is_refused_clearly(
    api: Api, content: bytes, content_type: str, status: int
) -> None:
    answer = api.as_role(Role.ANALYST).post(
        "/api/v1/reports", content=content, headers={"Content-Type": content_type}
    )
    assert answer.status_code == status, answer.text
    assert answer.json()["detail"]


def test_customers_may_not_submit_reports(api: Api, customer: factories.Customer) -> None:
    answer = api.as_role(Role.CUSTOMER, "C1001").post(
        "/api/v1/reports",
        content=b"From: a@b.example\r\n\r\nx\r\n",
        headers={"Content-Type": "message/rfc822"},
    )
    assert answer.status_code == 403


def test_an_oversized_report_is_refused(api: Api) -> None:
    limit = api.desk.settings.intake.max_message_bytes
    answer = api.as_role(Role.ANALYST).post(
        "/api/v1/reports", content=b"x" * (limit + 1), headers={"Content-Type": "text/plain"}
    )
    assert answer.status_code == 422
    assert "limit" in answer.json()["detail"]
