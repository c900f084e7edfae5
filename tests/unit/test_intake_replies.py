"""Reading replies (pure): the tags in a subject, the quoted history trimmed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from abusedesk.intake.replies import case_tag, read_reply, report_tag, trim_quoted


@pytest.mark.parametrize(
    ("subject", "case_id"),
    [
        ("Re: [AD-000123] Abuse report: spam", 123),
        ("RE: AD-123 fixed", 123),
        ("Fwd: ad-000042: hello", 42),
        ("[ AD-7 ]", 7),
        ("Re: [R-000042] and [AD-000009]", 9),
        ("Re: LOAD-1 values", None),
        ("AD-12345x", None),
        ("xAD-5", None),
        ("ROAD-5 works", None),
        ("", None),
    ],
)
def test_case_tags(subject: str, case_id: int | None) -> None:
    assert case_tag(subject) == case_id


def test_report_tags_need_their_brackets() -> None:
    assert report_tag("Re: [R-000042] More information needed") == 42
    assert report_tag("Re: R-000042") is None


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        (
            "We fixed it.\n\nOn Mon, 2 Mar 2026 at 09:00, Abuse Desk <a@p.example> wrote:\n> x\n",
            "We fixed it.",
        ),
        ("Fixed.\nOn Mon, 2 Mar 2026, Abuse Desk <a@p.example>\nwrote:\n> x", "Fixed."),
        ("Done.\n\n-----Original Message-----\nFrom: Abuse\nSent: today\n", "Done."),
        (
            "Done.\n\nFrom: Abuse Desk <a@p.example>\nSent: Monday, March 2, 2026\nTo: me\n\nold",
            "Done.",
        ),
        ("Erledigt.\n\nAm 02.03.2026 um 09:00 schrieb Abuse Desk <a@p.example>:\n> x", "Erledigt."),
        ("Fait.\n\nLe lun. 2 mars 2026, Abuse <a@p.example> a écrit :\n> x", "Fait."),
        ("Answer one\n> quoted\nanswer two\n", "Answer one\nanswer two"),
        ("From: me, to you: it is fixed.\nSee you.", "From: me, to you: it is fixed.\nSee you."),
        ("Fixed.\r\n\r\n________________________________\r\nFrom: desk", "Fixed."),
    ],
)
def test_quoted_history_is_trimmed(text: str, kept: str) -> None:
    assert trim_quoted(text) == kept


def test_a_reply_is_read_from_its_headers() -> None:
    raw = (
        b"From: Ops Team <OPS@Customer.example>\r\nSubject: Re: [AD-000003] Reminder\r\n"
        b"Auto-Submitted: auto-replied\r\nMessage-ID: <a@b>\r\n\r\nAway.\r\n"
    )
    found = read_reply(raw)
    assert found is not None
    assert (found.case_id, found.report_id, found.sender, found.auto_submitted) == (
        3,
        None,
        "ops@customer.example",
        True,
    )
    assert found.text(raw) == "Away."


def test_mail_without_a_tag_is_no_reply() -> None:
    assert read_reply(b"From: a@b.example\r\nSubject: spam\r\n\r\nbody") is None
    assert read_reply(b'{"Version": "4"}') is None


@given(st.binary(max_size=2000))
def test_reading_replies_never_raises(raw: bytes) -> None:
    found = read_reply(b"Subject: [AD-1]\r\n" + raw)
    if found is not None:
        found.text(b"Subject: [AD-1]\r\n" + raw)


@given(st.text(max_size=2000))
def test_trimming_never_raises_and_never_grows(text: str) -> None:
    assert len(trim_quoted(text)) <= len(text)
