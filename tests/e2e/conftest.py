"""The web app served by a real uvicorn on loopback, and users with API tokens to call it."""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from abusedesk.accounts import service as accounts
from abusedesk.accounts.choices import Role
from abusedesk.accounts.permissions import SYSTEM
from abusedesk.bootstrap import Desk
from abusedesk.web.app import create_app


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run `app` in a background thread on a free loopback port; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # ws="none": the API has no websockets, and importing a websocket library could warn.
    config = uvicorn.Config(app, log_level="warning", access_log=False, ws="none", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


_emails = itertools.count(1)


@dataclass
class Api:
    """The served app and the desk behind it."""

    url: str
    desk: Desk
    _clients: list[httpx.Client] = field(default_factory=list)

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client = httpx.Client(base_url=self.url, headers=headers, timeout=10)
        self._clients.append(client)
        return client

    def close(self) -> None:
        for client in self._clients:
            client.close()

    def token(self, role: Role, account_reference: str | None = None) -> str:
        """A new user of that role (a customer user of that account) and a token for it."""
        email = f"{role.value}{next(_emails)}@users.example"
        new = accounts.NewUser(email=email, role=role, account_reference=account_reference)
        accounts.add_user(self.desk.uow(), SYSTEM, new)
        return accounts.issue_token(self.desk.uow(), SYSTEM, email, "e2e").token

    def as_role(self, role: Role, account_reference: str | None = None) -> httpx.Client:
        return self.client(self.token(role, account_reference))


@pytest.fixture
def api(desk: Desk) -> Iterator[Api]:
    with serve(create_app(desk)) as url:
        served = Api(url, desk)
        yield served
        served.close()


# The real BGP peer's fixtures (BIRD), for the tests that need it.
from tests.bgp_peer import bgp_peers, bird, workdir  # noqa: E402, F401
