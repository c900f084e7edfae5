"""Runs the roles: all of them in one process (the embedded default) or one alone.

Roles: `web` (pages and API), `worker` (the deadline sweeper; later the outbox and enforcement
retries). Later issues add `intake`, `traffic` and `dns`. Each role is an asyncio task; blocking
work (the sweeper's database transactions) runs in a thread so the web role stays responsive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine
from enum import StrEnum
from typing import Any

import uvicorn

from abusedesk.bootstrap import Desk
from abusedesk.cases.sweeper import sweep

log = logging.getLogger("abusedesk.runtime")


class RoleName(StrEnum):
    WEB = "web"
    WORKER = "worker"


async def run_web(desk: Desk, stop: asyncio.Event) -> None:
    from abusedesk.web.app import create_app  # the web stack is only imported by the web role

    config = uvicorn.Config(
        create_app(desk),
        host=desk.settings.web.host,
        port=desk.settings.web.port,
        log_level=desk.settings.log_level.lower(),
        access_log=False,
    )
    server = uvicorn.Server(config)
    # uvicorn takes SIGINT/SIGTERM while it serves and raises them again once it has shut
    # down, so the signal then reaches `serve`'s handler and stops the other roles too.
    log.info("web: serving on http://%s:%d", desk.settings.web.host, desk.settings.web.port)
    serving = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True
    await serving


async def run_worker(desk: Desk, stop: asyncio.Event) -> None:
    interval = desk.settings.sweep_interval_seconds
    log.info("worker: sweeping deadlines every %.0f s", interval)
    while not stop.is_set():
        try:
            await asyncio.to_thread(sweep, desk.uow(), desk.policy)
        except Exception:
            # A failed sweep rolls back whole and is retried on the next tick; it must not
            # stop the worker, and it must not pass silently.
            log.exception("worker: sweep failed; retrying in %.0f s", interval)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)


ROLES: dict[RoleName, Callable[[Desk, asyncio.Event], Coroutine[Any, Any, None]]] = {
    RoleName.WEB: run_web,
    RoleName.WORKER: run_worker,
}


async def serve(desk: Desk, roles: list[RoleName]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(ROLES[role](desk, stop), name=role.value) for role in roles]
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    log.info("stopped")


def run(desk: Desk, roles: list[RoleName]) -> None:
    asyncio.run(serve(desk, roles))
