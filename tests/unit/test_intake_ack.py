"""The complainant's acknowledgement: the case's tag in the subject when the complaint went to
one case, the report's reference otherwise; either way the answer finds its way back."""

from __future__ import annotations

from abusedesk.intake.replies import case_tag, report_tag
from abusedesk.notify.choices import MessageTemplate
from abusedesk.notify.render import render
from abusedesk.policy import load_policy

STATUS = "https://desk.example/report/status/tok"


def ack(ticket: str, report: str) -> tuple[str, str, str]:
    done = render(
        MessageTemplate.COMPLAINANT_ACK,
        {"ticket": ticket, "report": report, "resource": "198.51.100.7", "status_url": STATUS},
        "en",
        "https://desk.example",
        load_policy(None),
    )
    return done.subject, done.text, done.html


def test_one_case_its_tag_and_the_report_beside_it() -> None:
    subject, text, html = ack("AD-000123", "R-000042")
    assert subject == "[AD-000123] We have received your abuse report"
    assert "AD-000123 (your report R-000042)" in " ".join(text.split())
    assert "[AD-000123] in the subject" in " ".join(text.split())
    assert "(your report R-000042)" in html
    # What the reply's subject will carry leads back to the case.
    assert case_tag("Re: " + subject) == 123


def test_several_cases_the_report_reference() -> None:
    subject, text, _ = ack("R-000042", "R-000042")
    assert subject == "[R-000042] We have received your abuse report"
    assert "your report R-" not in text
    assert report_tag("Re: " + subject) == 42
    assert case_tag("Re: " + subject) is None
