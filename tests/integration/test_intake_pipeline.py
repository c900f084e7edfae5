"""The intake pipeline end to end on real fixture reports: receive → process → report status,
cases and mail to the complainant."""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from abusedesk.accounts.permissions import SYSTEM
from abusedesk.audit.models import AuditEntry
from abusedesk.bootstrap import Desk
from abusedesk.cases.models import Case, case_reports
from abusedesk.intake import pipeline, verify
from abusedesk.intake.choices import ReportSource, ReportStatus
from abusedesk.intake.models import Report
from abusedesk.intake.pipeline import (
    ProcessResult,
    parse_reference,
    process,
    process_pending,
    report_reference,
)
from abusedesk.intake.receive import receive
from abusedesk.inventory import service as inventory
from abusedesk.inventory.schemas import AssignmentIn, ServerIn
from abusedesk.notify.choices import Audience, MessageTemplate
from abusedesk.notify.models import OutboxMessage
from abusedesk.policy import Category
from tests import factories

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "reports"
BASE_URL = "https://desk.example"
# The fixtures' events are years old: the addresses must have been ours since before them.
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


def fixture(name: str) -> bytes:
    path = FIXTURES / name
    if not path.is_file():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"fixture {path} is missing")
        pytest.skip(f"fixture {path} is absent")
    return path.read_bytes()


def own(desk: Desk, *addresses: str, reference: str = "C1001") -> factories.Customer:
    """A customer with one server per address, holding it since LONG_AGO."""
    found = factories.customer(desk, reference, servers=0)
    for n, address in enumerate(addresses):
        hostname = f"own{n}.{reference.lower()}.example"
        server = inventory.create_server(
            desk.uow(),
            SYSTEM,
            ServerIn(
                account_reference=reference,
                hostname=hostname,
                plan="vps-small",
                assignments=[AssignmentIn(prefix=f"{address}/32", valid_from=LONG_AGO)],
            ),
        )
        found.server_ids.append(server.id)
        found.hostnames.append(hostname)
    return found


def run(desk: Desk, raw: bytes, trusted: frozenset[str] = frozenset()) -> ProcessResult:
    got = receive(desk.uow(), raw, ReportSource.SMTP)
    return process(desk.uow, got.report_id, desk.policy, BASE_URL, trusted)


def rows(desk: Desk, model: Any, *where: Any) -> list[Any]:
    with desk.uow() as uow:
        return list(uow.session.execute(sa.select(model).where(*where)).scalars())


def report(desk: Desk, report_id: int) -> Report:
    with desk.uow() as uow:
        found = uow.session.get(Report, report_id)
        assert found is not None
        return found


def cases(desk: Desk) -> list[Case]:
    return rows(desk, Case)


def customer_mail(desk: Desk) -> list[OutboxMessage]:
    return [m for m in rows(desk, OutboxMessage) if m.audiences != [Audience.COMPLAINANT.value]]


def complainant_mail(desk: Desk) -> list[OutboxMessage]:
    return [m for m in rows(desk, OutboxMessage) if m.audiences == [Audience.COMPLAINANT.value]]


def complaint(sender: str, subject: str, body: str) -> bytes:
    head = f"From: {sender}\r\n" if sender else ""
    return (
        f"{head}To: abuse@provider.example\r\nSubject: {subject}\r\n"
        "Date: Mon, 02 Mar 2026 08:00:00 +0000\r\n"
        f"Message-ID: <{abs(hash((sender, subject, body)))}@victim.example>\r\n\r\n{body}\r\n"
    ).encode()


def test_reference_round_trip() -> None:
    assert report_reference(42) == "R-000042"
    assert parse_reference("Re: [R-000042] More information needed") == 42
    assert parse_reference("Re: R-000042 without brackets") is None


def test_arf_spam_about_our_server_opens_a_spam_case(desk: Desk) -> None:
    raw = fixture("arf/AOL_example_1.eml")
    owner = own(desk, "10.17.18.1")
    result = run(desk, raw)
    assert result.status is ReportStatus.ACCEPTED
    [case] = cases(desk)
    assert (case.category, case.server_id, case.resource) == (
        Category.SPAM,
        owner.server_ids[0],
        "10.17.18.1",
    )
    stored = report(desk, result.report_id)
    assert stored.status is ReportStatus.ACCEPTED
    assert stored.format == "arf"
    assert stored.parsed["findings"][0]["kind"] == "abuse"
    assert stored.complainant_email == "scomp@aol.net"
    with desk.uow() as uow:
        linked = uow.session.execute(sa.select(case_reports.c.report_id)).scalars().all()
    assert linked == [result.report_id]
    assert complainant_mail(desk) == []  # a feed gets no acknowledgement
    assert customer_mail(desk)  # the ticket went to the customer (R14)


def test_the_same_mail_twice_is_one_report_and_one_case(desk: Desk) -> None:
    raw = fixture("arf/AOL_example_1.eml")
    own(desk, "10.17.18.1")
    first = receive(desk.uow(), raw, ReportSource.SMTP)
    again = receive(desk.uow(), raw, ReportSource.SMTP)
    assert again.duplicate
    assert again.report_id == first.report_id
    assert process_pending(desk.uow, desk.policy, BASE_URL) == {"accepted": 1}
    assert process_pending(desk.uow, desk.policy, BASE_URL) == {}
    assert len(rows(desk, Report)) == 1
    assert len(cases(desk)) == 1


def test_receive_many_stores_a_batch_once_each_and_seals_it(desk: Desk) -> None:
    from abusedesk.audit.service import verify_log
    from abusedesk.intake.receive import receive_many

    before = complaint("Jane <jane@isp.example>", "spam", "198.51.100.1 spams")
    earlier = receive(desk.uow(), before, ReportSource.SMTP)
    one = complaint("Ann <ann@isp.example>", "spam", "198.51.100.2 spams")
    two = complaint("Bob <bob@isp.example>", "spam", "198.51.100.3 spams")
    # The same Message-ID with other bytes (a relay rewrote a header): a redelivery too.
    two_again = two.replace(b"To: abuse@provider.example", b"To: <abuse@provider.example>")
    got = receive_many(desk.uow(), [one, before, two, one, two_again], ReportSource.SMTP)
    assert [g.duplicate for g in got] == [False, True, False, True, True]
    assert got[1].report_id == earlier.report_id
    assert got[3].report_id == got[0].report_id
    assert got[4].report_id == got[2].report_id
    assert got[3].status_token == got[0].status_token
    stored = rows(desk, Report)
    assert sorted(r.id for r in stored) == sorted(
        {earlier.report_id, got[0].report_id, got[2].report_id}
    )
    with desk.uow().reading() as uow:
        assert bytes(uow.session.get(Report, got[2].report_id).raw) == two
    received = rows(desk, AuditEntry, AuditEntry.action == "report.received")
    assert sorted(int(e.object_id) for e in received) == sorted(r.id for r in stored)
    with desk.uow().reading() as uow:
        assert verify_log(uow.session).ok
    # Nothing new: nothing written, not even an audit entry.
    assert all(g.duplicate for g in receive_many(desk.uow(), [one, two], ReportSource.SMTP))
    assert len(rows(desk, AuditEntry, AuditEntry.action == "report.received")) == 3


def test_process_pending_takes_more_reports_than_one_transaction_holds(desk: Desk) -> None:
    own(desk, *(f"198.51.100.{n}" for n in range(1, 26)))
    for n in range(1, 26):
        body = f"Your server 198.51.100.{n} sends us spam all day."
        receive(
            desk.uow(), complaint(f"Pat {n} <pat{n}@isp.example>", "spam", body), ReportSource.SMTP
        )
    assert process_pending(desk.uow, desk.policy, BASE_URL, batch=12) == {"accepted": 12}
    assert process_pending(desk.uow, desk.policy, BASE_URL) == {"accepted": 13}
    assert len(cases(desk)) == 25
    assert rows(desk, Report, Report.status == ReportStatus.RECEIVED) == []


def test_shadowserver_rows_make_a_case_per_server_and_category(desk: Desk) -> None:
    raw = fixture("shadowserver/2015-01-01-scan_redis-sample-asn.csv.zip.eml")
    owner = own(desk, "98.126.92.5", "153.120.101.170")
    result = run(desk, raw)
    assert result.status is ReportStatus.ACCEPTED
    found = sorted(cases(desk), key=lambda c: c.resource)
    assert [(c.resource, c.category) for c in found] == [
        ("own0.c1001.example", Category.VULNERABLE_SERVICE),
        ("own1.c1001.example", Category.VULNERABLE_SERVICE),
    ]
    assert {c.server_id for c in found} == set(owner.server_ids)
    assert len(report(desk, result.report_id).parsed["findings"]) == 13  # the rest ignored


def test_a_feed_aggregates_rows_about_one_server_into_one_case(desk: Desk) -> None:
    raw = fixture("shadowserver/2015-01-01-scan_redis-sample-asn.csv.zip.eml")
    # One server holds both reported addresses: one case, both rows as its evidence.
    found = factories.customer(desk, "C1001", servers=0)
    inventory.create_server(
        desk.uow(),
        SYSTEM,
        ServerIn(
            account_reference="C1001",
            hostname="big.c1001.example",
            plan="dedicated",
            assignments=[
                AssignmentIn(prefix="98.126.92.5/32", valid_from=LONG_AGO),
                AssignmentIn(prefix="153.120.101.170/32", valid_from=LONG_AGO),
            ],
        ),
    )
    result = run(desk, raw)
    assert result.status is ReportStatus.ACCEPTED
    [case] = cases(desk)
    assert (case.resource, case.account_id) == ("big.c1001.example", found.account_id)


def test_xarf_v4_phishing_opens_a_phishing_case(desk: Desk) -> None:
    raw = fixture("xarf-v4/content-phishing.json")
    own(desk, "203.0.113.45")
    result = run(desk, raw)
    assert result.status is ReportStatus.ACCEPTED
    [case] = cases(desk)
    assert (case.category, case.resource) == (Category.PHISHING, "203.0.113.45")


def test_complaint_without_name_or_server_asks_once_then_a_reply_completes_it(
    desk: Desk,
) -> None:
    own(desk, "198.51.100.10")
    first = run(
        desk,
        complaint(
            "jane@victim.example",
            "Fake bank site",
            "One of your customers hosts a phishing page imitating my bank.",
        ),
    )
    assert first.status is ReportStatus.NEEDS_INFO
    assert first.missing == (verify.MISSING_NAME, verify.MISSING_LOCATION)
    [ask] = complainant_mail(desk)
    assert ask.template is MessageTemplate.NEEDS_INFO
    assert ask.recipients == ["jane@victim.example"]
    assert ask.context["missing"] == [verify.MISSING_NAME, verify.MISSING_LOCATION]
    assert ask.context["ticket"] == report_reference(first.report_id)
    assert cases(desk) == []
    assert customer_mail(desk) == []

    reply = run(
        desk,
        complaint(
            "Jane Doe <jane@victim.example>",
            f"Re: [{report_reference(first.report_id)}] More information needed",
            "The page is at http://198.51.100.10/secure/login.php",
        ),
    )
    assert reply.status is ReportStatus.ACCEPTED
    assert reply.continues == first.report_id
    [case] = cases(desk)
    assert case.category is Category.PHISHING  # from the first mail's words
    assert case.resource == "http://198.51.100.10/secure/login.php"
    assert "Jane" not in case.summary
    assert "jane@" not in case.summary
    later = report(desk, reply.report_id)
    assert later.parsed["continues"] == first.report_id
    assert later.complainant_name == "Jane Doe"
    assert report(desk, first.report_id).status is ReportStatus.ACCEPTED
    with desk.uow() as uow:
        linked = set(uow.session.execute(sa.select(case_reports.c.report_id)).scalars())
    assert linked == {first.report_id, reply.report_id}
    acks = [m for m in complainant_mail(desk) if m.template is MessageTemplate.COMPLAINANT_ACK]
    assert len(acks) == 1
    assert acks[0].recipients == ["jane@victim.example"]
    # One case: the acknowledgement carries its tag, so that an answer lands on it.
    assert acks[0].context["ticket"] == case.ticket
    assert acks[0].context["report"] == report_reference(first.report_id)
    assert acks[0].case_id == case.id
    token = report(desk, first.report_id).status_token
    assert acks[0].context["status_url"] == f"{BASE_URL}/report/status/{token}"


def test_a_reference_from_another_sender_does_not_continue_a_complaint(desk: Desk) -> None:
    own(desk, "198.51.100.10")
    first = run(desk, complaint("jane@victim.example", "Spam", "You send us spam."))
    assert first.status is ReportStatus.NEEDS_INFO
    other = run(
        desk,
        complaint(
            "Mallory <mallory@evil.example>",
            f"[{report_reference(first.report_id)}]",
            "It is 198.51.100.10, spam.",
        ),
    )
    assert other.continues is None
    assert report(desk, first.report_id).status is ReportStatus.NEEDS_INFO


def test_complaint_without_any_contact_waits_for_staff_and_mails_nobody(desk: Desk) -> None:
    own(desk, "198.51.100.10")
    result = run(desk, complaint("", "Spam", "198.51.100.10 sends spam to us."))
    assert result.status is ReportStatus.NEEDS_INFO
    assert verify.MISSING_CONTACT in result.missing
    assert rows(desk, OutboxMessage) == []
    assert cases(desk) == []


def test_complaint_about_an_address_nobody_owns_is_not_ours(desk: Desk) -> None:
    own(desk, "198.51.100.10")
    result = run(
        desk, complaint("Jane Doe <jane@victim.example>", "Spam", "192.0.2.99 spams my inbox.")
    )
    assert result.status is ReportStatus.NOT_OURS
    assert report(desk, result.report_id).status is ReportStatus.NOT_OURS
    assert cases(desk) == []
    assert rows(desk, OutboxMessage) == []


def test_garbage_is_unparsed_and_kept(desk: Desk) -> None:
    raw = b"\x00\x01\x02\xff\xfe\x00garbage\x00\x00"
    result = run(desk, raw)
    assert result.status is ReportStatus.UNPARSED
    with desk.uow() as uow:
        stored = uow.session.get(Report, result.report_id)
        assert stored is not None
        assert stored.status is ReportStatus.UNPARSED
        assert stored.raw == raw
        assert stored.error
    assert cases(desk) == []


def test_a_trusted_reporter_counts_as_verified(desk: Desk) -> None:
    own(desk, "198.51.100.10")
    # No display name: a stranger sending this would be asked for one.
    raw = complaint("alerts@partner.example", "Alert", "198.51.100.10 is sending spam.")
    untrusted = run(desk, raw)
    assert untrusted.status is ReportStatus.NEEDS_INFO
    trusted = run(
        desk,
        complaint("alerts@feeds.partner.example", "Alert", "198.51.100.10 is sending spam."),
        trusted=frozenset({"partner.example"}),
    )
    assert trusted.status is ReportStatus.ACCEPTED
    [case] = cases(desk)
    assert case.category is Category.SPAM


def test_process_pending_takes_received_reports_oldest_first(desk: Desk) -> None:
    own(desk, "10.17.18.1", "203.0.113.45")
    receive(desk.uow(), fixture("arf/AOL_example_1.eml"), ReportSource.SMTP)
    receive(desk.uow(), fixture("xarf-v4/content-phishing.json"), ReportSource.API)
    receive(desk.uow(), b"\x00\x01garbage\x00", ReportSource.API)
    assert process_pending(desk.uow, desk.policy, BASE_URL) == {"accepted": 2, "unparsed": 1}
    assert {c.category for c in cases(desk)} == {Category.SPAM, Category.PHISHING}
    assert rows(desk, Report, Report.status == ReportStatus.RECEIVED) == []


def test_an_unparsed_report_is_kept_and_reprocessed_after_a_fix(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    from abusedesk.accounts.permissions import SYSTEM
    from abusedesk.intake import pipeline
    from abusedesk.intake.choices import ReportSource, ReportStatus
    from abusedesk.intake.formats import MalformedReport
    from abusedesk.intake.receive import receive
    from abusedesk.intake.service import reprocess

    def broken(raw: bytes, *args: object, **kwargs: object) -> object:
        raise MalformedReport("a parser bug")

    real = pipeline.detect_and_parse
    monkeypatch.setattr(pipeline, "detect_and_parse", broken)
    raw = b"From: Jane Doe <jane@isp.example>\r\nSubject: spam\r\n\r\n198.51.100.1 spams us\r\n"
    received = receive(desk.uow(), raw, ReportSource.CLI)
    first = pipeline.process(desk.uow, received.report_id, desk.policy, "http://desk")
    assert first.status is ReportStatus.UNPARSED
    monkeypatch.setattr(pipeline, "detect_and_parse", real)  # the fix
    outcomes = reprocess(desk.uow, SYSTEM, desk.policy, "http://desk")
    assert sum(outcomes.values()) == 1
    assert "unparsed" not in outcomes
    assert reprocess(desk.uow, SYSTEM, desk.policy, "http://desk") == {}


def test_process_pending_undoes_a_report_that_breaks_alone(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    own(desk, "10.17.18.1", "203.0.113.45")
    arf = receive(desk.uow(), fixture("arf/AOL_example_1.eml"), ReportSource.SMTP)
    phish = receive(desk.uow(), fixture("xarf-v4/content-phishing.json"), ReportSource.API)
    real = pipeline.open_or_attach_many

    def breaks_on_phishing(uow: Any, actor: Any, news: Any, policy: Any) -> Any:
        opened = real(uow, actor, news, policy)  # written, then undone with its savepoint
        if any(new.category is Category.PHISHING for new in news):
            raise RuntimeError("a bug")
        return opened

    monkeypatch.setattr(pipeline, "open_or_attach_many", breaks_on_phishing)
    assert process_pending(desk.uow, desk.policy, BASE_URL) == {"accepted": 1, "failed": 1}
    assert {c.category for c in cases(desk)} == {Category.SPAM}
    [waiting] = rows(desk, Report, Report.status == ReportStatus.RECEIVED)
    assert waiting.id == phish.report_id != arf.report_id
    # Neither its audit entries nor its timeline rows survived the undo.
    actions = [a.action for a in rows(desk, AuditEntry, AuditEntry.object_type == "case")]
    assert actions == ["case.opened"]
    monkeypatch.setattr(pipeline, "open_or_attach_many", real)
    assert process_pending(desk.uow, desk.policy, BASE_URL) == {"accepted": 1}
    assert {c.category for c in cases(desk)} == {Category.SPAM, Category.PHISHING}


def test_a_batch_attaches_to_the_case_an_earlier_report_of_it_opened(desk: Desk) -> None:
    # One transaction for the batch, written without autoflush: the second complaint still
    # finds the case the first opened, and each complainant's acknowledgement carries its tag.
    own(desk, "198.51.100.7")
    for n in (1, 2):
        body = f"Your server 198.51.100.7 sends us spam, complaint {n}."
        receive(
            desk.uow(), complaint(f"Pat {n} <pat{n}@isp.example>", "spam", body), ReportSource.SMTP
        )
    assert process_pending(desk.uow, desk.policy, BASE_URL) == {"accepted": 2}
    [case] = cases(desk)
    with desk.uow() as uow:
        linked = uow.session.execute(
            sa.select(case_reports.c.report_id).where(case_reports.c.case_id == case.id)
        ).scalars()
        assert len(set(linked)) == 2
    acks = complainant_mail(desk)
    assert sorted(m.recipients[0] for m in acks) == ["pat1@isp.example", "pat2@isp.example"]
    assert {m.case_id for m in acks} == {case.id}
    assert {m.context["ticket"] for m in acks} == {case.ticket}
    assert all(m.template is MessageTemplate.COMPLAINANT_ACK and m.attempts == 0 for m in acks)


def test_a_report_attached_twice_to_one_case_is_linked_once(desk: Desk) -> None:
    from abusedesk.cases.service import NewCase, open_or_attach_many

    owner = own(desk, "198.51.100.8")
    first = receive(desk.uow(), complaint("A <a@isp.example>", "spam", "x"), ReportSource.SMTP)
    second = receive(desk.uow(), complaint("B <b@isp.example>", "spam", "y"), ReportSource.SMTP)
    new = NewCase(
        account_id=owner.account_id,
        category=Category.SPAM,
        server_id=owner.server_ids[0],
        resource="198.51.100.8",
        report_ids=[first.report_id],
    )
    with desk.uow() as uow:
        open_or_attach_many(uow, SYSTEM, [new], desk.policy)
        uow.commit()
    with desk.uow() as uow:
        # The first report is linked already, and named twice: one link each, no error.
        both = dataclasses.replace(
            new, report_ids=[first.report_id, second.report_id, first.report_id]
        )
        [opened] = open_or_attach_many(uow, SYSTEM, [both], desk.policy)
        assert not opened.created
        uow.commit()
    with desk.uow() as uow:
        links = uow.session.execute(sa.select(case_reports.c.report_id)).scalars().all()
    assert sorted(links) == sorted([first.report_id, second.report_id])


def test_the_complainant_is_redacted_whatever_the_case_and_script() -> None:
    from abusedesk.intake.formats import ParsedReport, ReportFormat

    redact = pipeline._redactor(
        ParsedReport(ReportFormat.HUMAN, reporter_name="Pat Example", reporter_email="pat@isp.ex")
    )
    assert redact("From PAT EXAMPLE <Pat@ISP.ex>.") == "From [complainant] <[complainant]>."
    assert redact("nothing of theirs here") == "nothing of theirs here"
    assert redact("") == ""
    # Beyond ASCII the pattern decides: IGNORECASE takes the long s for an s.
    assert redact("written by pat@iſp.ex — ü") == "written by [complainant] — ü"
    assert pipeline._redactor(ParsedReport(ReportFormat.HUMAN))("Pat Example") == "Pat Example"


def test_auto_submitted_is_read_from_the_header_block_alone() -> None:
    auto = pipeline._auto_submitted
    assert auto(b"From: a@b.example\r\nAuto-Submitted: auto-replied\r\n\r\nhello")
    assert auto(b"From: a@b.example\rAUTO-SUBMITTED: auto-generated\r\rhello")
    assert not auto(b"From: a@b.example\r\nAuto-Submitted: no\r\n\r\nhello")
    assert not auto(b"From: a@b.example\r\nSubject: Auto-Submitted: yes\r\n\r\nhello")
    assert not auto(b"From: a@b.example\r\n\r\nAuto-Submitted: auto-replied\r\n")
