"""The pages in a real browser: Debian's chromium driven by Playwright, against a real uvicorn.

Each journey saves a screenshot of every page it visits under test-output/screenshots/<test>/,
so a person can review the look. Without chromium the tests skip, except under CI=true, where a
missing browser is a failure.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from abusedesk.accounts.choices import AccountRole, Role
from abusedesk.bootstrap import Desk, bootstrap
from abusedesk.config import Settings
from abusedesk.web.app import create_app
from tests.e2e.conftest import serve
from tests.web_client import PASSWORD, add_user

IN_CI = os.environ.get("CI", "").lower() == "true"
OUTPUT = Path(os.environ.get("ABUSEDESK_TEST_OUTPUT", Path(__file__).parents[2] / "test-output"))

try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # pragma: no cover - the test extra installs it
    sync_playwright = None


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    missing = None
    if sync_playwright is None:
        missing = "the playwright package is not installed (scripts/setup test)"
    elif path is None:
        missing = "Debian's chromium is not installed (apt-get install chromium)"
    if missing:
        if IN_CI:
            pytest.fail(f"CI=true and the browser tests cannot run: {missing}")
        pytest.skip(missing)
    assert path is not None
    return path


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    executable = _chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 860}, locale="en-GB")
    context.set_default_timeout(10_000)
    opened = context.new_page()
    yield opened
    context.close()


@dataclass
class Screenshots:
    """Numbered screenshots of each page a journey visits."""

    directory: Path
    _numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def take(self, page: Page, name: str) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{next(self._numbers):02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Screenshots:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    directory = OUTPUT / "screenshots" / name
    if directory.exists():
        shutil.rmtree(directory)
    return Screenshots(directory)


@dataclass
class Site:
    """The served app, the desk behind it, and a way to make users who can sign in."""

    url: str
    desk: Desk

    def user(
        self,
        role: Role,
        account_reference: str | None = None,
        account_role: AccountRole | None = None,
        email: str | None = None,
    ) -> str:
        return add_user(self.desk, role, account_reference, account_role, email)

    def sign_in(self, page: Page, email: str, password: str = PASSWORD) -> None:
        page.goto(f"{self.url}/login")
        page.fill("input[name=email]", email)
        page.fill("input[name=password]", password)
        page.click("button[type=submit]:has-text('Sign in')")
        page.wait_for_load_state()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """A desk of its own on a SQLite file (the embedded default), served on loopback."""
    settings = Settings(home=tmp_path / "home")
    desk = bootstrap(settings)
    desk.migrate()
    with serve(create_app(desk)) as url:
        desk.settings.public_url = url
        yield Site(url, desk)
    desk.engine.dispose()
