"""R5 verification and classification rules: pure, values in, values out."""

from __future__ import annotations

from abusedesk.intake.classify import classify
from abusedesk.intake.formats.base import Finding, ParsedReport, ReportFormat
from abusedesk.intake.verify import (
    MISSING_CONTACT,
    MISSING_DESCRIPTION,
    MISSING_LOCATION,
    MISSING_NAME,
    combine,
    is_trusted,
    verify,
)
from abusedesk.policy import Category

PLACE = Finding(None, addresses=("198.51.100.1",), description="spam from here", kind="complaint")


def human(name: str = "", email: str = "", *findings: Finding) -> ParsedReport:
    return ParsedReport(ReportFormat.HUMAN, name, email, findings=findings)


def test_a_complete_complaint_is_verified() -> None:
    assert verify(human("Jane", "jane@victim.example", PLACE)).verified


def test_everything_missing_is_listed_in_order() -> None:
    check = verify(human("", "", Finding(None, kind="complaint")))
    assert check.missing == (MISSING_NAME, MISSING_CONTACT, MISSING_LOCATION, MISSING_DESCRIPTION)
    assert not check.verified
    assert not check.can_reply


def test_a_no_reply_sender_is_no_contact_for_a_person() -> None:
    assert verify(human("Jane", "noreply@victim.example", PLACE)).missing == (MISSING_CONTACT,)


def test_machine_formats_need_no_name_or_text() -> None:
    arf = ParsedReport(
        ReportFormat.ARF,
        "",
        "noreply@fbl.example",
        findings=(Finding(Category.SPAM, addresses=("192.0.2.1",), kind="abuse"),),
    )
    check = verify(arf)
    assert check.verified
    assert check.machine
    assert not check.can_reply


def test_trusted_addresses_and_domains() -> None:
    trusted = frozenset({"shadowserver.org", "abuse@feedback-loop.example"})
    assert is_trusted("autoreports@shadowserver.org", trusted)
    assert is_trusted("x@mail.shadowserver.org", trusted)
    assert is_trusted("ABUSE@feedback-loop.example", trusted)
    assert not is_trusted("other@feedback-loop.example", trusted)
    assert not is_trusted("x@notshadowserver.org", trusted)
    assert verify(human("", "x@shadowserver.org"), trusted).trusted


def test_combine_takes_both_halves() -> None:
    first = human("", "jane@victim.example", Finding(None, description="phishing", kind="c"))
    second = human("Jane", "jane@victim.example", Finding(None, addresses=("192.0.2.1",)))
    assert verify(combine(first, second)).verified


def test_classification_rules() -> None:
    complaint = Finding(None, kind="complaint")
    assert classify(ReportFormat.HUMAN, complaint, "a phishing page").category is Category.PHISHING
    assert classify(ReportFormat.HUMAN, complaint, "a trojan download").category is Category.MALWARE
    assert classify(ReportFormat.HUMAN, complaint, "pirated film").category is Category.COPYRIGHT
    assert classify(ReportFormat.HUMAN, complaint, "unsolicited mail").category is Category.SPAM
    assert (
        classify(ReportFormat.HUMAN, complaint, "he threatens me").category
        is Category.THREATS_HARASSMENT
    )
    fallback = classify(ReportFormat.HUMAN, complaint, "I do not like this site")
    assert fallback.category is Category.UNLAWFUL_CONTENT
    assert fallback.confidence < 0.5
    assert classify(ReportFormat.ARF, Finding(None, kind="auth-failure")).category is None
    assert classify(ReportFormat.ARF, Finding(None, kind="abuse")).category is Category.SPAM
    assert classify(ReportFormat.DMCA_TEXT, complaint).category is Category.COPYRIGHT
    assert (
        classify(ReportFormat.SHADOWSERVER, Finding(None, kind="scan_foo")).category
        is Category.VULNERABLE_SERVICE
    )
    assert classify(ReportFormat.SHADOWSERVER, Finding(None, kind="device_id")).category is None
    given = Finding(Category.MALWARE, kind="content/malware")
    assert classify(ReportFormat.XARF_V4, given).confidence == 1.0


def test_the_category_a_complainant_chose_decides_when_the_words_do_not() -> None:
    complaint = Finding(None, kind="complaint")
    chose = "It floods our network.\n\nCategory: denial_of_service\n"
    stated = classify(ReportFormat.HUMAN, complaint, chose)
    assert stated.category is Category.DENIAL_OF_SERVICE
    assert "chose" in stated.reason
    # What the complaint says outweighs the box ticked.
    words = classify(ReportFormat.HUMAN, complaint, "A phishing page.\n\nCategory: spam\n")
    assert words.category is Category.PHISHING
    # A category the policy does not know is no choice at all.
    unknown = classify(ReportFormat.HUMAN, complaint, "Odd.\n\nCategory: rudeness\n")
    assert unknown.category is Category.UNLAWFUL_CONTENT
