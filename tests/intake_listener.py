"""The intake SMTP listener, run in a thread of its own for a test."""

from __future__ import annotations

import asyncio
import smtplib
import threading
from collections.abc import Callable

from abusedesk.intake.settings import IntakeSettings
from abusedesk.intake.smtp import serve_smtp
from abusedesk.store.uow import UnitOfWork


class Listener:
    def __init__(self, uow_factory: Callable[[], UnitOfWork], settings: IntakeSettings) -> None:
        self.loop = asyncio.new_event_loop()
        self.stop = asyncio.Event()
        self.settings = settings
        self.thread = threading.Thread(
            target=self.loop.run_until_complete, args=(self._serve(uow_factory),), daemon=True
        )

    async def _serve(self, uow_factory: Callable[[], UnitOfWork]) -> None:
        self.stop = asyncio.Event()
        await serve_smtp(uow_factory, self.settings, self.stop)

    def __enter__(self) -> Listener:
        self.thread.start()
        for _ in range(100):
            try:
                with smtplib.SMTP("127.0.0.1", self.settings.smtp.port, timeout=2) as probe:
                    probe.noop()
                return self
            except OSError:
                threading.Event().wait(0.05)
        raise AssertionError("the listener did not come up")

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(10)
        self.loop.close()
