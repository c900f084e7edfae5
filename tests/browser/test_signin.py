"""Signing in: a locked-out login, and a form posted without its CSRF token."""

from __future__ import annotations

import httpx
from playwright.sync_api import Page, expect

from abusedesk.accounts.choices import Role
from tests.browser.conftest import Screenshots, Site


def test_a_staff_user_signs_in_and_out(site: Site, page: Page, shots: Screenshots) -> None:
    email = site.user(Role.ANALYST)
    page.goto(f"{site.url}/staff")
    expect(page).to_have_url(f"{site.url}/login?next=%2Fstaff")
    shots.take(page, "login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", "Correct-Horse-42")
    page.click("button[type=submit]:has-text('Sign in')")
    expect(page).to_have_url(f"{site.url}/staff")
    expect(page.locator(".usermenu")).to_contain_text(email)
    shots.take(page, "dashboard")
    page.click("button:has-text('Sign out')")
    expect(page).to_have_url(f"{site.url}/login")
    expect(page.locator(".flash")).to_contain_text("signed out")
    page.goto(f"{site.url}/staff")
    expect(page).to_have_url(f"{site.url}/login?next=%2Fstaff")


def test_a_login_is_locked_after_repeated_failures(
    site: Site, page: Page, shots: Screenshots
) -> None:
    email = site.user(Role.ANALYST)
    limit = site.desk.settings.auth.max_failed_logins
    for attempt in range(limit - 1):
        site.sign_in(page, email, password=f"wrong-password-{attempt}")
        expect(page.locator(".alert-error")).to_contain_text("wrong")
    shots.take(page, "wrong-password")
    # The last failure the policy allows locks the account, and says so.
    site.sign_in(page, email, password="wrong-password-last")
    expect(page.locator(".alert-error")).to_contain_text("locked until")
    # The right password no longer opens it: the account is locked for a while.
    site.sign_in(page, email)
    expect(page.locator(".alert-error")).to_contain_text("locked until")
    expect(page).to_have_url(f"{site.url}/login")
    shots.take(page, "locked")
    page.goto(f"{site.url}/staff")
    expect(page).to_have_url(f"{site.url}/login?next=%2Fstaff")


def test_a_post_without_the_csrf_token_is_refused(
    site: Site, page: Page, shots: Screenshots
) -> None:
    email = site.user(Role.ANALYST)
    site.sign_in(page, email)
    expect(page).to_have_url(f"{site.url}/staff")
    # The browser's own session cookie, a form that leaves the token out: a forged post.
    page.evaluate(
        """() => {
            const form = document.createElement('form');
            form.method = 'post';
            form.action = '/logout';
            document.body.appendChild(form);
            form.submit();
        }"""
    )
    page.wait_for_load_state()
    expect(page.locator("h1")).to_have_text("Forbidden")
    expect(page.locator("main")).to_contain_text("did not come from this site")
    shots.take(page, "csrf-refused")
    # It changed nothing: the session is still signed in.
    page.goto(f"{site.url}/staff")
    expect(page).to_have_url(f"{site.url}/staff")


def test_a_forged_post_from_another_client_is_refused(site: Site) -> None:
    """Without the browser: a token from another session does not pass either."""
    email = site.user(Role.ANALYST)
    with httpx.Client(base_url=site.url, follow_redirects=False) as other:
        other.get("/login")
        foreign = other.cookies.get("abusedesk_session")
    with httpx.Client(base_url=site.url, follow_redirects=False) as client:
        form = client.get("/login").text
        assert 'name="csrf_token"' in form
        answer = client.post(
            "/login",
            data={"email": email, "password": "Correct-Horse-42", "csrf_token": foreign or "x"},
        )
        assert answer.status_code == 403
        right = client.post(
            "/login",
            data={
                "email": email,
                "password": "Correct-Horse-42",
                "csrf_token": form.split('name="csrf_token" value="')[1].split('"')[0],
            },
        )
        assert right.status_code == 303
        assert right.headers["location"] == "/staff"
