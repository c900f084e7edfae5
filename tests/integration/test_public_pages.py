"""The public complaint form and the complainant's private status page, over HTTP: bad input
refused clearly with nothing stored, evidence kept with the raw report, the rate limit, and a
status page that tells the complainant what became of the complaint and nothing of the
customer."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from email.parser import BytesParser
from email.policy import default as default_policy
from html import unescape

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import undefer

from abusedesk import demo
from abusedesk.accounts.permissions import SYSTEM
from abusedesk.bootstrap import Desk
from abusedesk.cases import service as cases
from abusedesk.cases.models import Case, case_reports
from abusedesk.clock import FakeClock
from abusedesk.intake import service as intake
from abusedesk.intake.choices import ReportSource, ReportStatus
from abusedesk.intake.models import Report
from abusedesk.intake.settings import FormLimits
from abusedesk.intake.verify import MISSING_NAME
from abusedesk.policy import Category
from tests import factories
from tests.web_client import Web, csrf_token, served


@pytest.fixture
def web(desk: Desk) -> Iterator[Web]:
    with served(desk) as running:
        yield running


def complaint(**changes: str) -> dict[str, str]:
    fields = {
        "name": "Jane Roe",
        "email": "jane@victim.example",
        "resources": "198.51.100.1",
        "category": Category.PHISHING.value,
        "description": "A fake login page of my bank, seen 2026-03-02 08:00 UTC.",
    }
    fields.update(changes)
    return fields


def file(
    client: httpx.Client,
    fields: dict[str, str],
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None,
) -> httpx.Response:
    token = csrf_token(client.get("/report").text)
    return client.post("/report", data={**fields, "csrf_token": token}, files=files)


def reports(desk: Desk) -> list[Report]:
    with desk.uow() as uow:
        query = sa.select(Report).options(undefer(Report.raw)).order_by(Report.id)
        return list(uow.session.scalars(query))


def status_page(client: httpx.Client, filed: httpx.Response) -> httpx.Response:
    assert filed.status_code == 303, filed.text[:2000]
    location = filed.headers["location"]
    assert location.startswith("/report/status/")
    page = client.get(location)
    assert page.status_code == 200
    return page


def test_the_form_is_public_and_protected(desk: Desk, web: Web) -> None:
    client = web.client()
    page = client.get("/report")
    assert page.status_code == 200
    assert 'enctype="multipart/form-data"' in page.text
    assert csrf_token(page.text)
    labels = unescape(page.text)
    assert "Phishing" in labels
    assert "Copyright or trademark infringement" in labels
    assert "Not sure: let the abuse desk decide" in labels
    assert "Excessive DNS load" not in labels  # measured by the provider, not reported

    forged = client.post("/report", data=complaint())
    assert forged.status_code == 403
    assert reports(desk) == []


def test_missing_fields_are_refused_each_with_its_reason(desk: Desk, web: Web) -> None:
    client = web.client()
    answer = file(
        client,
        complaint(
            name="", email="not an address", resources="somewhere", category="", description=""
        ),
    )
    assert answer.status_code == 422
    page = unescape(answer.text)
    assert "The complaint was not sent" in page
    for reason in (
        "Give your name",
        "not an e-mail address we can reply to",
        "Not an IP address, URL or domain: somewhere",
        "Choose what the complaint is about",
        "Describe the problem",
    ):
        assert reason in page
    # What was typed is kept, so nothing has to be typed twice.
    assert 'value="not an address"' in answer.text
    assert ">somewhere</textarea>" in answer.text
    assert reports(desk) == []


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        (
            [("evidence", (f"shot{n}.png", b"x" * 10, "image/png")) for n in range(3)],
            "At most 2 files; you chose 3",
        ),
        ([("evidence", ("huge.log", b"x" * 1001, "text/plain"))], "huge.log is 1 KB"),
        (
            [("evidence", (f"part{n}.log", b"x" * 900, "text/plain")) for n in range(2)],
            "together they may be at most",
        ),
    ],
    ids=["too-many", "too-large", "too-large-together"],
)
def test_evidence_over_the_limits_is_refused(
    desk: Desk, web: Web, files: list[tuple[str, tuple[str, bytes, str]]], reason: str
) -> None:
    desk.settings.intake.form = FormLimits(max_files=2, max_file_bytes=1000, max_total_bytes=1500)
    factories.customer(desk, "C1001")
    answer = file(web.client(), complaint(), files)
    assert answer.status_code == 422
    page = unescape(answer.text)
    assert reason in page
    assert "No file was kept" in page
    assert reports(desk) == []


def test_child_abuse_material_is_never_uploaded(desk: Desk, web: Web) -> None:
    files = [("evidence", ("image.jpg", b"\xff\xd8\xff", "image/jpeg"))]
    answer = file(web.client(), complaint(category=Category.CSAM.value), files)
    assert answer.status_code == 422
    assert "give only where it is" in unescape(answer.text)
    assert reports(desk) == []


def test_a_complaint_about_a_demo_server_becomes_a_case_with_its_evidence(
    desk: Desk, web: Web
) -> None:
    demo.seed(desk, customers=2, servers_per_customer=2)
    with desk.uow() as uow:
        before = uow.session.scalar(sa.select(sa.func.count()).select_from(Case))
    screenshot = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    client = web.client()
    filed = file(
        client,
        complaint(resources="198.18.1.1\nhttps://shop.acme.example/login"),
        [("evidence", ("fake-login.png", screenshot, "image/png"))],
    )
    page = unescape(status_page(client, filed).text)
    assert "received as R-" in page
    assert "Keep this link" in page
    assert "Passed to the customer" in page

    [stored] = reports(desk)
    assert stored.source is ReportSource.FORM
    assert stored.status is ReportStatus.ACCEPTED
    assert stored.client_address == "127.0.0.1"
    assert f"/report/status/{stored.status_token}" in page
    # The evidence is kept with the raw report, as an attachment of the mail the form built.
    message = BytesParser(policy=default_policy).parsebytes(stored.raw)
    [attached] = list(message.iter_attachments())
    assert attached.get_filename() == "fake-login.png"
    assert attached.get_content_type() == "image/png"
    assert attached.get_content() == screenshot

    with desk.uow() as uow:
        linked = uow.session.execute(
            sa.select(Case)
            .join(case_reports, case_reports.c.case_id == Case.id)
            .where(case_reports.c.report_id == stored.id)
        ).scalars()
        [case] = list(linked)
        assert uow.session.scalar(sa.select(sa.func.count()).select_from(Case)) == before + 1
        assert case.category is Category.PHISHING
        assert case.account.reference == "C1001"
        hostname, account_name = case.server.hostname if case.server else "", case.account.name
    # Nothing about whose server it is.
    for private in ("C1001", account_name, hostname):
        assert private not in page


def test_the_status_page_shows_hostile_html_as_text(desk: Desk, web: Web) -> None:
    factories.customer(desk, "C1001")
    client = web.client()
    hostile = '<script>alert("owned")</script><img src=x onerror=alert(1)> spam from us'
    page = status_page(client, file(client, complaint(description=hostile))).text
    assert "<script>alert" not in page
    assert "<img src=x" not in page
    assert "&lt;script&gt;alert(&#34;owned&#34;)&lt;/script&gt;" in page


def test_the_eleventh_complaint_within_the_window_is_refused(
    desk: Desk, web: Web, clock: FakeClock
) -> None:
    factories.customer(desk, "C1001")
    limits = desk.settings.intake.form
    client = web.client()
    for n in range(limits.per_address):
        answer = file(client, complaint(description=f"Phishing page number {n}"))
        assert answer.status_code == 303, n
    refused = file(client, complaint(description="One too many"))
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == str(int(limits.window.total_seconds()))
    assert "Too many complaints from your address" in unescape(refused.text)
    assert "One too many" in refused.text  # what was typed is still there
    assert len(reports(desk)) == limits.per_address
    assert all(r.client_address == "127.0.0.1" for r in reports(desk))

    clock.advance(limits.window + timedelta(seconds=1))
    assert file(client, complaint(description="A new hour")).status_code == 303
    assert len(reports(desk)) == limits.per_address + 1


def test_the_same_complaint_twice_is_one_report(desk: Desk, web: Web) -> None:
    factories.customer(desk, "C1001")
    client = web.client()
    first = file(client, complaint())
    again = file(client, complaint())
    assert again.headers["location"] == first.headers["location"]
    assert "already received" in unescape(client.get(again.headers["location"]).text)
    assert len(reports(desk)) == 1


def test_status_words_for_what_became_of_a_complaint(desk: Desk, web: Web) -> None:
    customer = factories.customer(desk, "C1001")
    client = web.client()

    not_ours = status_page(client, file(client, complaint(resources="192.0.2.77")))
    assert "Not ours" in not_ours.text
    assert "not our customers" in unescape(not_ours.text)

    # A mail that names no one: it waits for what is missing (R5).
    raw = intake.structured_message("", "who@victim.example", "spam", ["198.51.100.1"])
    done = intake.submit(
        desk.uow, SYSTEM, raw, ReportSource.SMTP, desk.policy, desk.settings.base_url
    )
    assert done.status is ReportStatus.NEEDS_INFO
    page = unescape(client.get(done.status_url.removeprefix(desk.settings.base_url)).text)
    assert "More information needed" in page
    assert MISSING_NAME in page

    accepted = status_page(client, file(client, complaint()))
    case_id = cases.list_cases(
        desk.uow(), SYSTEM, cases.CaseFilter(account_id=customer.account_id)
    )[0].id
    assert "who must answer it by a deadline" in accepted.text
    cases.acknowledge(desk.uow(), SYSTEM, case_id, "taking it down", desk.policy)
    again = client.get(str(accepted.url))
    assert "has acknowledged it" in again.text
    assert "Keep this link" not in again.text  # said once, right after filing


def test_an_unknown_status_link_is_not_found(web: Web) -> None:
    client = web.client()
    for token in ("nope", "x" * 64, "x" * 200):
        answer = client.get(f"/report/status/{token}")
        assert answer.status_code == 404
        assert "There is no such page" in answer.text


def test_an_upload_far_over_the_limit_is_refused_before_it_is_read(desk: Desk, web: Web) -> None:
    desk.settings.intake.form = FormLimits(max_total_bytes=1000)
    huge = [("evidence", ("dump.bin", b"\0" * (1024 * 1024 + 2000), "application/octet-stream"))]
    answer = file(web.client(), complaint(), huge)
    assert answer.status_code == 413
    assert "too large" in answer.text
    assert reports(desk) == []
