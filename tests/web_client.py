"""Driving the pages without a browser: the app served by uvicorn on loopback (as the e2e tier
serves the API), httpx clients with cookie jars of their own, users who can sign in, and the
CSRF token every form carries."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from abusedesk.accounts import service as accounts
from abusedesk.accounts.choices import AccountRole, Role
from abusedesk.accounts.permissions import SYSTEM
from abusedesk.bootstrap import Desk
from abusedesk.web.app import create_app
from tests.e2e.conftest import serve

PASSWORD = "Correct-Horse-42"  # the test users' password

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_emails = itertools.count(1)


def add_user(
    desk: Desk,
    role: Role = Role.CUSTOMER,
    account_reference: str | None = None,
    account_role: AccountRole | None = None,
    email: str | None = None,
    password: str = PASSWORD,
) -> str:
    """A user with a password; its e-mail address. A customer user is its account's owner
    unless told otherwise."""
    email = email or f"{role.value}{next(_emails)}@users.example"
    accounts.add_user(
        desk.uow(),
        SYSTEM,
        accounts.NewUser(
            email=email,
            role=role,
            password=password,
            name=email.split("@")[0].title(),
            account_reference=account_reference,
            account_role=account_role or (AccountRole.OWNER if role is Role.CUSTOMER else None),
        ),
    )
    return email


def csrf_token(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


@dataclass
class Web:
    """The served app and the desk behind it."""

    url: str
    desk: Desk
    _clients: list[httpx.Client] = field(default_factory=list)

    def client(self) -> httpx.Client:
        """A browser of its own; redirects are not followed, so a test sees each 303."""
        client = httpx.Client(base_url=self.url, follow_redirects=False, timeout=30)
        self._clients.append(client)
        return client

    def signed_in(self, email: str, password: str = PASSWORD) -> httpx.Client:
        client = self.client()
        sign_in(client, email, password)
        return client

    def close(self) -> None:
        for client in self._clients:
            client.close()


@contextmanager
def served(desk: Desk) -> Iterator[Web]:
    with serve(create_app(desk)) as url:
        web = Web(url, desk)
        try:
            yield web
        finally:
            web.close()


def form_token(client: httpx.Client, path: str) -> str:
    """The session's CSRF token, as the form at `path` carries it."""
    page = client.get(path)
    assert page.status_code == 200, (path, page.status_code)
    return csrf_token(page.text)


def sign_in(client: httpx.Client, email: str, password: str = PASSWORD) -> None:
    """GET /login, read the form's token, POST /login: as a person does."""
    token = form_token(client, "/login")
    answer = client.post("/login", data={"email": email, "password": password, "csrf_token": token})
    assert answer.status_code == 303, (answer.status_code, answer.text[:500])


def post_form(
    client: httpx.Client,
    path: str,
    data: dict[str, str],
    token_from: str,
    **kwargs: Any,
) -> httpx.Response:
    """POST a form as the page at `token_from` would: with the session's CSRF token."""
    token = form_token(client, token_from)
    return client.post(path, data={**data, "csrf_token": token}, **kwargs)
