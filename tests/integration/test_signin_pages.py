"""The sign-in pages over HTTP: password resets by mailed link, two-factor enrolment and sign-in,
sessions that end when the password changes, and the cookie's flags."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa

from abusedesk.accounts.choices import Role
from abusedesk.accounts.totp import code_at
from abusedesk.bootstrap import Desk
from abusedesk.clock import FakeClock
from abusedesk.notify.choices import MessageTemplate
from abusedesk.notify.models import OutboxMessage
from tests.web_client import PASSWORD, Web, add_user, csrf_token, form_token, served

NEW_PASSWORD = "Another-Horse-77"


@pytest.fixture
def web(desk: Desk) -> Iterator[Web]:
    with served(desk) as running:
        yield running


def _reset_links(desk: Desk, email: str) -> list[str]:
    with desk.uow().reading() as uow:
        rows = uow.session.scalars(
            sa.select(OutboxMessage).where(OutboxMessage.template == MessageTemplate.PASSWORD_RESET)
        ).all()
        return [row.context["link"] for row in rows if email in row.recipients]


def _path(link: str) -> str:
    return "/" + link.split("/", 3)[3]


def test_a_password_is_reset_through_the_mailed_link_once(web: Web, desk: Desk) -> None:
    email = add_user(desk, Role.ANALYST)
    browser = web.client()
    token = form_token(browser, "/password-reset")
    answer = browser.post("/password-reset", data={"email": email, "csrf_token": token})
    assert answer.status_code == 200
    assert "is on its way" in answer.text
    [link] = _reset_links(desk, email)
    path = _path(link)

    form = browser.get(path)
    assert form.status_code == 200
    assert email in form.text
    token = csrf_token(form.text)
    differ = browser.post(
        path, data={"password": NEW_PASSWORD, "confirm": "something-else-1", "csrf_token": token}
    )
    assert differ.status_code == 422
    assert "differ" in differ.text
    weak = browser.post(path, data={"password": "short", "confirm": "short", "csrf_token": token})
    assert weak.status_code == 422
    assert "at least" in weak.text

    done = browser.post(
        path, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD, "csrf_token": token}
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/login"
    # The link worked once.
    assert browser.get(path).status_code == 404
    # The new password signs in; the old one does not.
    old = web.client()
    login_token = form_token(old, "/login")
    refused = old.post(
        "/login", data={"email": email, "password": PASSWORD, "csrf_token": login_token}
    )
    assert refused.status_code == 401
    web.signed_in(email, NEW_PASSWORD)


def test_a_reset_for_an_unknown_address_answers_the_same_and_sends_nothing(
    web: Web, desk: Desk
) -> None:
    known = add_user(desk, Role.ANALYST)
    browser = web.client()
    answers = []
    for email in (known, "nobody@users.example"):
        token = form_token(browser, "/password-reset")
        page = browser.post("/password-reset", data={"email": email, "csrf_token": token})
        answers.append((page.status_code, page.text.replace(email, "EMAIL")))
    assert answers[0] == answers[1]
    assert _reset_links(desk, "nobody@users.example") == []
    assert len(_reset_links(desk, known)) == 1


def test_a_reset_ends_the_sessions_signed_in_before_it(web: Web, desk: Desk) -> None:
    email = add_user(desk, Role.ANALYST)
    before = web.signed_in(email)
    assert before.get("/staff").status_code == 200
    browser = web.client()
    token = form_token(browser, "/password-reset")
    browser.post("/password-reset", data={"email": email, "csrf_token": token})
    path = _path(_reset_links(desk, email)[0])
    token = csrf_token(browser.get(path).text)
    browser.post(
        path, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD, "csrf_token": token}
    )
    answer = before.get("/staff")
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/login")


def test_an_admin_enrols_two_factor_before_anything_else_then_signs_in_with_codes(
    web: Web, desk: Desk, clock: FakeClock
) -> None:
    email = add_user(desk, Role.ADMIN)
    browser = web.client()
    token = form_token(browser, "/login")
    held = browser.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token})
    assert held.status_code == 303
    assert held.headers["location"] == "/account/two-factor"
    # Held at enrolment: the console is out of reach.
    blocked = browser.get("/staff")
    assert blocked.status_code == 303
    assert blocked.headers["location"] == "/account/two-factor"

    page = browser.get("/account/two-factor")
    assert page.status_code == 200
    assert "<svg" in page.text
    match = re.search(r"data-totp-secret>([A-Z2-7]+)<", page.text)
    assert match
    secret = match.group(1)
    token = csrf_token(page.text)
    wrong = browser.post("/account/two-factor", data={"code": "000000", "csrf_token": token})
    assert wrong.status_code == 422
    code = code_at(secret, clock.now())
    enrolled = browser.post("/account/two-factor", data={"code": code, "csrf_token": token})
    assert enrolled.status_code == 303
    assert enrolled.headers["location"] == "/login"

    # From now on the password alone does not sign in.
    token = form_token(browser, "/login")
    ask = browser.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token})
    assert ask.status_code == 401
    assert "six-digit code" in ask.text
    clock.advance(timedelta(seconds=30))
    code = code_at(secret, clock.now())
    data = {"email": email, "password": PASSWORD, "code": code, "csrf_token": token}
    assert browser.post("/login", data=data).headers["location"] == "/staff"
    # The same code does not open a second session.
    other = web.client()
    data["csrf_token"] = form_token(other, "/login")
    reused = other.post("/login", data=data)
    assert reused.status_code == 401
    assert "has been used" in reused.text


def test_the_session_cookie_is_http_only_and_same_site(web: Web, desk: Desk) -> None:
    browser = web.client()
    answer = browser.get("/login")
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "secure" not in cookie  # served over plain HTTP on loopback


def test_the_cookie_is_secure_when_the_site_is_served_over_tls(desk: Desk) -> None:
    desk.settings.public_url = "https://abuse.provider.example"
    with served(desk) as running:
        answer = running.client().get("/login")
    assert "; secure" in answer.headers["set-cookie"].lower()


def test_sign_in_never_sends_a_user_to_another_site(web: Web, desk: Desk) -> None:
    email = add_user(desk, Role.ANALYST)
    browser = web.client()
    for target, expected in (
        ("https://evil.example/", "/staff"),
        ("//evil.example/x", "/staff"),
        ("/staff/cases", "/staff/cases"),
    ):
        token = form_token(browser, "/login")
        answer = browser.post(
            "/login",
            data={"email": email, "password": PASSWORD, "next": target, "csrf_token": token},
        )
        assert answer.headers["location"] == expected
        browser.post("/logout", data={"csrf_token": form_token(browser, "/staff")})


def test_a_customer_is_sent_to_the_portal_and_staff_to_the_console(web: Web, desk: Desk) -> None:
    from tests.factories import customer

    account = customer(desk, "C2001")
    owner = add_user(desk, Role.CUSTOMER, account.reference)
    client = web.signed_in(owner)
    home = client.get("/")
    assert home.headers["location"] == "/portal"
    assert client.get("/staff").status_code == 404
    analyst = web.signed_in(add_user(desk, Role.ANALYST))
    assert analyst.get("/").headers["location"] == "/staff"
    assert analyst.get("/portal").status_code == 404
