"""The pure parts of sign-in and the account pages: TOTP, the screening matcher, stale billing,
the two mails to a user, the settings and who may keep the screening list."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyotp
import pytest

from abusedesk.accounts.choices import Role, ScreeningKind
from abusedesk.accounts.permissions import GRANTS, Permission
from abusedesk.accounts.profile import billing_is_stale
from abusedesk.accounts.screening_match import normalise_name, screening_matches
from abusedesk.accounts.totp import (
    STEP_SECONDS,
    code_at,
    is_valid_secret,
    matching_step,
    new_totp_secret,
    time_step,
    totp_qr_svg,
    totp_uri,
)
from abusedesk.accounts.validators import normalise_email, split_list
from abusedesk.config import Settings
from abusedesk.errors import ValidationError
from abusedesk.notify.choices import MessageTemplate
from abusedesk.notify.render import render
from abusedesk.policy import Policy, load_policy

NOW = datetime(2026, 3, 2, 9, 0, 10, tzinfo=UTC)

# -- TOTP -----------------------------------------------------------------------------------


def test_a_new_secret_is_160_random_bits_in_base32() -> None:
    secrets = {new_totp_secret() for _ in range(50)}
    assert len(secrets) == 50
    for secret in secrets:
        assert re.fullmatch(r"[A-Z2-7]{32}", secret)
        assert is_valid_secret(secret)
    assert not is_valid_secret("not base32!")
    assert not is_valid_secret("ABC")  # too short to be a secret


def test_codes_are_the_ones_an_authenticator_app_shows() -> None:
    secret = new_totp_secret()
    # pyotp is what the app would compute: the same 30-second steps, six digits.
    assert code_at(secret, NOW) == pyotp.TOTP(secret).at(NOW)
    assert matching_step(secret, pyotp.TOTP(secret).at(NOW), NOW) == time_step(NOW)


def test_one_step_either_side_is_accepted_and_no_more() -> None:
    secret = new_totp_secret()
    step = timedelta(seconds=STEP_SECONDS)
    assert matching_step(secret, code_at(secret, NOW - step), NOW) == time_step(NOW) - 1
    assert matching_step(secret, code_at(secret, NOW + step), NOW) == time_step(NOW) + 1
    assert matching_step(secret, code_at(secret, NOW - 2 * step), NOW) is None
    assert matching_step(secret, code_at(secret, NOW + 2 * step), NOW) is None


def test_a_code_is_refused_at_or_before_the_last_step_accepted() -> None:
    secret = new_totp_secret()
    code = code_at(secret, NOW)
    accepted = matching_step(secret, code, NOW)
    assert accepted is not None
    assert matching_step(secret, code, NOW, after=accepted) is None
    earlier = code_at(secret, NOW - timedelta(seconds=STEP_SECONDS))
    assert matching_step(secret, earlier, NOW, after=accepted) is None
    later = code_at(secret, NOW + timedelta(seconds=STEP_SECONDS))
    assert matching_step(secret, later, NOW, after=accepted) == accepted + 1


@pytest.mark.parametrize("typed", ["", "12345", "1234567", "abcdef", "12 34 5x"])
def test_what_is_not_six_digits_is_no_code(typed: str) -> None:
    assert matching_step(new_totp_secret(), typed, NOW) is None


def test_a_code_typed_with_spaces_counts() -> None:
    secret = new_totp_secret()
    code = code_at(secret, NOW)
    assert matching_step(secret, f" {code[:3]} {code[3:]} ", NOW) == time_step(NOW)


def test_the_uri_and_qr_code_carry_the_secret_account_and_issuer() -> None:
    secret = new_totp_secret()
    uri = totp_uri(secret, "ann@example.com", "Thermo Abuse")
    assert uri.startswith("otpauth://totp/Thermo%20Abuse:ann%40example.com?")
    assert f"secret={secret}" in uri
    assert "issuer=Thermo%20Abuse" in uri
    parsed = pyotp.parse_uri(uri)
    assert parsed.secret == secret
    svg = totp_qr_svg(uri)
    assert svg.startswith("<svg")
    assert "<?xml" not in svg  # inline in a page
    assert svg.rstrip().endswith("</svg>")
    assert totp_qr_svg(uri + "x") != svg


# -- screening ------------------------------------------------------------------------------


@dataclass
class Entry:
    id: int
    name: str = ""
    emails: list[Any] = field(default_factory=list)
    domains: list[Any] = field(default_factory=list)
    kind: ScreeningKind = ScreeningKind.BUSINESS
    reason: str = "card fraud in 2025"


def test_names_match_ignoring_case_and_white_space() -> None:
    entries = [Entry(1, name="Bad  Actor Hosting"), Entry(2, name="Someone Else")]
    [match] = screening_matches(entries, "  bad actor\thosting ", [], [])
    assert match.entry_id == 1
    assert match.reason == "card fraud in 2025"
    assert match.why == ("the name 'Bad  Actor Hosting'",)
    assert screening_matches(entries, "Bad Actor Hosting Ltd", [], []) == []
    assert normalise_name("ＡＣＭＥ  Ltd") == "acme ltd"  # full-width letters are letters


def test_any_of_several_names_matches_and_empty_ones_never_do() -> None:
    entries = [Entry(1, name="Mallory Jones", kind=ScreeningKind.PERSON), Entry(2)]
    assert [m.entry_id for m in screening_matches(entries, ["Acme", "mallory jones"], [], [])] == [
        1
    ]
    assert screening_matches(entries, ["", "  "], [], []) == []


def test_an_email_matches_exactly_and_not_by_its_domain_alone() -> None:
    entries = [Entry(1, emails=["mallory@gmail.example"])]
    [match] = screening_matches(entries, "", ["Mallory@Gmail.Example"], [])
    assert match.why == ("the e-mail mallory@gmail.example",)
    # One listed mailbox at a shared provider must not refuse everyone else there.
    assert screening_matches(entries, "", ["alice@gmail.example"], []) == []


def test_a_listed_domain_covers_its_addresses_and_subdomains_only() -> None:
    entries = [Entry(7, domains=["evil.example"])]
    assert screening_matches(entries, "", ["ceo@evil.example"], [])[0].why == (
        "the e-mail ceo@evil.example (domain evil.example)",
    )
    assert screening_matches(entries, "", ["ops@mail.EVIL.example"], [])[0].entry_id == 7
    assert screening_matches(entries, "", [], ["shop.evil.example."])[0].why == (
        "the domain shop.evil.example (evil.example)",
    )
    assert screening_matches(entries, "", [], ["evil.example"])[0].why == (
        "the domain evil.example",
    )
    # A name that merely ends in the same letters is another domain.
    assert screening_matches(entries, "", ["a@notevil.example"], ["notevil.example"]) == []


def test_every_reason_is_given_and_every_entry_reported() -> None:
    entries = [
        Entry(1, name="Acme", domains=["acme.example"]),
        Entry(2, emails=["boss@acme.example"], kind=ScreeningKind.PERSON, reason="threats"),
    ]
    matches = screening_matches(entries, "ACME", ["boss@acme.example"], ["www.acme.example"])
    assert [m.entry_id for m in matches] == [1, 2]
    assert matches[0].why == (
        "the name 'Acme'",
        "the e-mail boss@acme.example (domain acme.example)",
        "the domain www.acme.example (acme.example)",
    )
    assert "#2" in matches[1].describe()
    assert "threats" in matches[1].describe()
    assert "person" in matches[1].describe()


def test_idna_domains_match_their_unicode_form() -> None:
    entries = [Entry(1, domains=["xn--bcher-kva.example"])]
    assert screening_matches(entries, "", [], ["shop.bücher.example"])[0].entry_id == 1


# -- billing and validators -----------------------------------------------------------------


def test_billing_is_stale_when_never_confirmed_or_confirmed_too_long_ago() -> None:
    half_year = timedelta(days=180)
    assert billing_is_stale(None, NOW, half_year)
    assert not billing_is_stale(NOW, NOW, half_year)
    assert not billing_is_stale(NOW - half_year + timedelta(seconds=1), NOW, half_year)
    assert billing_is_stale(NOW - half_year, NOW, half_year)


def test_emails_are_normalised_or_refused() -> None:
    assert normalise_email("  Ann@Example.COM ") == "ann@example.com"
    for bad in ["ann", "ann@", "ann@example", "a b@example.com", "x" * 250 + "@example.com"]:
        with pytest.raises(ValidationError):
            normalise_email(bad)


def test_a_list_field_takes_lines_commas_or_a_list() -> None:
    assert split_list("a@x.example, b@x.example\nc@x.example;;\n\n a@x.example") == [
        "a@x.example",
        "b@x.example",
        "c@x.example",
    ]
    assert split_list(["one", " ", "two", "one"]) == ["one", "two"]
    assert split_list("") == []


# -- the two mails to a user ----------------------------------------------------------------


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(None)


def test_the_reset_mail_carries_the_link_and_no_ticket(policy: Policy) -> None:
    link = "https://abuse.provider.example/password-reset/tok-123"
    out = render(
        MessageTemplate.PASSWORD_RESET,
        {
            "name": "Ann <b>",
            "email": "ann@example.com",
            "link": link,
            "deadline": (NOW + timedelta(hours=1)).isoformat(),
        },
        "en",
        "https://abuse.provider.example/",
        policy,
        now=NOW,
    )
    assert out.subject == "Reset your password for Abuse Desk"
    assert "[" not in out.subject  # no ticket tag: a reply reaches no case
    assert f"  {link}\n" in out.text
    assert "until Monday 02 March 2026, 10:00 UTC (1 hour from now)" in " ".join(out.text.split())
    assert "ann@example.com" in out.text
    assert f'href="{link}"' in out.html
    assert "Ann &lt;b&gt;" in out.html
    assert "keep <strong>" not in out.html  # the case mails' footer about the tag


def test_the_invitation_names_the_account_and_who_invited(policy: Policy) -> None:
    out = render(
        MessageTemplate.INVITATION,
        {
            "name": "",
            "email": "bob@example.com",
            "link": "https://abuse.provider.example/password-reset/tok-456",
            "deadline": (NOW + timedelta(days=7)).isoformat(),
            "account_name": "Example Hosting Ltd",
            "account_reference": "C1001",
            "invited_by": "Ann Owner",
        },
        "en",
        "https://abuse.provider.example",
        policy,
        now=NOW,
    )
    assert out.subject == "You are invited to the Example Hosting Ltd account at Abuse Desk"
    assert "Ann Owner has invited you" in out.text
    assert "Example Hosting Ltd (C1001)" in out.text
    assert "https://abuse.provider.example/password-reset/tok-456" in out.html
    assert "(7 days from now)" in " ".join(out.text.split())


# -- settings and permissions ---------------------------------------------------------------


def test_auth_settings_have_defaults_and_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    defaults = Settings().auth
    assert defaults.max_failed_logins == 5
    assert defaults.lockout == timedelta(minutes=15)
    assert defaults.password_reset_ttl == timedelta(hours=1)
    assert defaults.invitation_ttl == timedelta(days=7)
    assert defaults.billing_stale_after == timedelta(days=180)
    assert defaults.totp_issuer == "abusedesk"
    assert defaults.session_max_age == timedelta(hours=12)
    monkeypatch.setenv("ABUSEDESK_AUTH__MAX_FAILED_LOGINS", "3")
    monkeypatch.setenv("ABUSEDESK_AUTH__LOCKOUT", "PT30M")
    monkeypatch.setenv("ABUSEDESK_AUTH__TOTP_ISSUER", "Thermo")
    auth = Settings().auth
    assert (auth.max_failed_logins, auth.lockout, auth.totp_issuer) == (
        3,
        timedelta(minutes=30),
        "Thermo",
    )


def test_legal_and_admin_keep_the_screening_list_and_all_staff_see_it() -> None:
    editors = {role for role, grants in GRANTS.items() if Permission.SCREENING_EDIT in grants}
    viewers = {role for role, grants in GRANTS.items() if Permission.SCREENING_VIEW in grants}
    assert editors == {Role.LEGAL, Role.ADMIN}
    assert viewers == {Role.ANALYST, Role.NOC, Role.LEGAL, Role.ADMIN}
