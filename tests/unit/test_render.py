"""Rendering outbox messages: every template, the operator's overrides, languages, escaping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from abusedesk.notify.choices import MessageTemplate
from abusedesk.notify.render import SHIPPED, RenderError, duration_words, render
from abusedesk.notify.routing import USER_TEMPLATES
from abusedesk.policy import Policy, load_policy

OPENED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
BASE_URL = "https://abuse.provider.example/"
COMPLAINANT_TEMPLATES = {MessageTemplate.NEEDS_INFO, MessageTemplate.COMPLAINANT_ACK}


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(None)


def case_context(**changes: Any) -> dict[str, Any]:
    """What cases.effects.message_context gives for a spam case opened at OPENED."""
    context: dict[str, Any] = {
        "ticket": "AD-000123",
        "case_id": 123,
        "account_reference": "C1001",
        "account_name": "Example Hosting Ltd",
        "category": "spam",
        "severity": "normal",
        "state": "open",
        "resource": "srv0.c1001.example",
        "server": "srv0.c1001.example",
        "deadline": (OPENED + timedelta(hours=24)).isoformat(),
        "summary": "Spam run from 198.51.100.1: 4 000 messages to spamtrap addresses.",
        "note": "",
    }
    context.update(changes)
    return context


def context_for(template: MessageTemplate) -> dict[str, Any]:
    if template is MessageTemplate.NEEDS_INFO:
        return {
            "ticket": "AD-000123",
            "missing": ["your name and contact details", "the address of the server"],
        }
    if template is MessageTemplate.COMPLAINANT_ACK:
        return {
            "ticket": "AD-000123",
            "status_url": "https://abuse.provider.example/report/status/tok123",
        }
    if template is MessageTemplate.DMCA_FORWARD:
        return case_context(
            category="copyright",
            notice="I, Rita Rights <rita@rights.example>, state under penalty of perjury…",
        )
    if template is MessageTemplate.TERMINATED:
        return case_context(
            state="terminated",
            deadline=None,
            note="the disconnected deadline passed",
            retention="Logs and evidence are kept for 90 days, then deleted.",
        )
    if template is MessageTemplate.DNS_LOAD_NOTICE:
        return case_context(
            reason="over the policy in 95% of the last 6 hours: peak 12.0% of all queries",
            peak_share_percent=12.0,
            peak_qps=840,
            grace_days=7,
            zones=["shop-c1001.net", "c1001-cdn.net"],
        )
    if template is MessageTemplate.STAFF_MESSAGE:
        return case_context(note="Please send us the mail logs of 2 March.")
    return case_context(note="a reason given by staff")


# Mail to a user about the user's own sign-in has no ticket: tests/unit/test_signin_pure.py.
@pytest.mark.parametrize("template", sorted(set(MessageTemplate) - USER_TEMPLATES))
def test_every_template_renders_with_a_realistic_context(
    template: MessageTemplate, policy: Policy
) -> None:
    out = render(template, context_for(template), "en", BASE_URL, policy, now=OPENED)
    assert out.subject.startswith("[AD-000123] ")
    assert "\n" not in out.subject
    assert "AD-000123" in out.text
    assert out.html.lstrip().startswith("<!DOCTYPE html>")
    assert "AD-000123" in out.html
    if template in COMPLAINANT_TEMPLATES:
        assert "/portal" not in out.text  # a complainant has no portal
    else:
        assert "Example Hosting Ltd" in out.text
        assert "https://abuse.provider.example/portal/cases/123" in out.text
        assert 'href="https://abuse.provider.example/portal/cases/123"' in out.html


@pytest.mark.parametrize("template", list(MessageTemplate))
def test_every_template_ships_its_three_parts(template: MessageTemplate) -> None:
    for part in ("subject", "txt", "html"):
        assert (SHIPPED / "en" / f"{template.value}.{part}.j2").is_file()


def test_ticket_created_says_what_when_how_and_what_follows(policy: Policy) -> None:
    out = render(
        MessageTemplate.TICKET_CREATED,
        case_context(),
        "en",
        BASE_URL,
        policy,
        now=OPENED + timedelta(seconds=2),
    )
    assert out.subject == ("[AD-000123] Abuse report: Unsolicited bulk e-mail - srv0.c1001.example")
    text = out.text
    assert "Unsolicited bulk e-mail" in text  # the policy's label, not the id
    assert "Spam run from 198.51.100.1" in text
    assert "srv0.c1001.example" in text
    assert "within 24 hours" in text
    assert "Tuesday 03 March 2026, 09:00 UTC" in text
    assert "keeping [AD-000123] in the subject" in text
    assert "disconnected" in text
    assert "terminated" in text


def test_a_ticket_that_disconnects_at_once_says_so_instead_of_a_deadline(policy: Policy) -> None:
    out = render(
        MessageTemplate.TICKET_CREATED,
        case_context(category="csam", severity="critical", deadline=None),
        "en",
        BASE_URL,
        policy,
        now=OPENED,
    )
    assert "disconnected at once" in out.text
    assert "within" not in out.text


def test_a_reminder_says_how_long_is_left(policy: Policy) -> None:
    out = render(
        MessageTemplate.REMINDER,
        case_context(),
        "en",
        BASE_URL,
        policy,
        now=OPENED + timedelta(hours=22),
    )
    assert "2 hours left" in out.subject
    assert "Time left: 2 hours." in out.text
    assert "not yet received your acknowledgement" in out.text


def test_terminated_carries_the_retention_note_only_when_given(policy: Policy) -> None:
    context = context_for(MessageTemplate.TERMINATED)
    with_note = render(MessageTemplate.TERMINATED, context, "en", BASE_URL, policy)
    assert "kept for 90 days" in with_note.text
    assert "kept for 90 days" in with_note.html
    assert "final" in with_note.text
    del context["retention"]
    without = render(MessageTemplate.TERMINATED, context, "en", BASE_URL, policy)
    assert "WHAT WE KEEP" not in without.text


def test_needs_info_lists_what_is_missing(policy: Policy) -> None:
    out = render(
        MessageTemplate.NEEDS_INFO,
        context_for(MessageTemplate.NEEDS_INFO),
        "en",
        BASE_URL,
        policy,
    )
    assert "  - your name and contact details\n  - the address of the server\n" in out.text
    assert "<li>the address of the server</li>" in out.html


def test_html_is_escaped_and_text_is_not(policy: Policy) -> None:
    context = case_context(summary='<script>alert("x")</script> & <b>bold</b>')
    out = render(MessageTemplate.TICKET_CREATED, context, "en", BASE_URL, policy)
    assert "<script>" not in out.html
    assert "&lt;script&gt;" in out.html
    assert "&amp; &lt;b&gt;bold&lt;/b&gt;" in out.html
    assert '<script>alert("x")</script>' in out.text


def test_a_subject_is_one_line_whatever_the_context_holds(policy: Policy) -> None:
    context = case_context(resource="evil.example\r\nBcc: victim@elsewhere.example\u2028X")
    out = render(MessageTemplate.TICKET_CREATED, context, "en", BASE_URL, policy)
    assert "\r" not in out.subject
    assert "\n" not in out.subject
    assert "\u2028" not in out.subject
    assert out.subject.endswith("evil.example Bcc: victim@elsewhere.example X")


def test_dmca_forward_only_where_the_policy_names_the_complainant(policy: Policy) -> None:
    context = context_for(MessageTemplate.DMCA_FORWARD)
    out = render(MessageTemplate.DMCA_FORWARD, context, "en", BASE_URL, policy)
    assert "rita@rights.example" in out.text
    assert "512(g)(3)" in out.text
    with pytest.raises(RenderError) as caught:
        render(
            MessageTemplate.DMCA_FORWARD, {**context, "category": "spam"}, "en", BASE_URL, policy
        )
    assert caught.value.permanent


def test_an_operator_template_replaces_the_shipped_one(tmp_path: Path, policy: Policy) -> None:
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "ticket_created.subject.j2").write_text(
        "{{ tag }} Action required for {{ account_reference }}\n"
    )
    (tmp_path / "en" / "reminder.subject.j2").write_text("Reminder from {{ desk_name }}\n")
    out = render(
        MessageTemplate.TICKET_CREATED,
        case_context(),
        "en",
        BASE_URL,
        policy,
        now=OPENED,
        templates_dir=tmp_path,
    )
    assert out.subject == "[AD-000123] Action required for C1001"
    assert "within" in out.text  # the parts not overridden are the shipped ones
    # A subject without the tag gets it: replies find their case by it.
    reminder = render(
        MessageTemplate.REMINDER,
        case_context(),
        "en",
        BASE_URL,
        policy,
        templates_dir=tmp_path,
        desk_name="Thermo Abuse",
    )
    assert reminder.subject == "[AD-000123] Reminder from Thermo Abuse"


def test_a_missing_language_falls_back_to_english_template_by_template(
    tmp_path: Path, policy: Policy
) -> None:
    english = render(MessageTemplate.TICKET_CREATED, case_context(), "en", BASE_URL, policy)
    assert render(MessageTemplate.TICKET_CREATED, case_context(), "fr", BASE_URL, policy) == (
        english
    )
    (tmp_path / "de").mkdir()
    (tmp_path / "de" / "ticket_created.subject.j2").write_text(
        "{{ tag }} Missbrauchsmeldung: {{ resource }}"
    )
    german = render(
        MessageTemplate.TICKET_CREATED,
        case_context(),
        "de",
        BASE_URL,
        policy,
        templates_dir=tmp_path,
    )
    assert german.subject == "[AD-000123] Missbrauchsmeldung: srv0.c1001.example"
    assert german.text == english.text
    assert '<html lang="en">' in german.html  # the page is the English one


def test_a_language_cannot_name_a_path(policy: Policy) -> None:
    out = render(MessageTemplate.CLOSED, case_context(), "../../etc", BASE_URL, policy)
    assert '<html lang="en">' in out.html


def test_a_template_naming_an_unknown_value_fails_loudly(tmp_path: Path, policy: Policy) -> None:
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "closed.txt.j2").write_text("Dear {{ customer_name }}\n")
    with pytest.raises(RenderError, match="customer_name") as caught:
        render(
            MessageTemplate.CLOSED, case_context(), "en", BASE_URL, policy, templates_dir=tmp_path
        )
    assert not caught.value.permanent  # the operator can fix the template; worth retrying


def test_a_context_without_a_ticket_is_refused(policy: Policy) -> None:
    with pytest.raises(RenderError, match="no ticket"):
        render(MessageTemplate.NEEDS_INFO, {"missing": []}, "en", BASE_URL, policy)


@pytest.mark.parametrize(
    ("delta", "words"),
    [
        (timedelta(hours=24), "24 hours"),
        (timedelta(hours=24) - timedelta(seconds=2), "24 hours"),
        (timedelta(hours=36), "36 hours"),
        (timedelta(hours=1, minutes=30), "1 hour and 30 minutes"),
        (timedelta(minutes=45), "45 minutes"),
        (timedelta(minutes=1), "1 minute"),
        (timedelta(seconds=10), "less than a minute"),
        (timedelta(days=7), "7 days"),
        (timedelta(days=3, hours=12), "3 days and 12 hours"),
        (timedelta(hours=4), "4 hours"),
    ],
)
def test_durations_in_words(delta: timedelta, words: str) -> None:
    assert duration_words(delta) == words
