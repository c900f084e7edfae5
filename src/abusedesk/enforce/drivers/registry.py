"""Which driver carries out an action for a server: `servers[hostname]`, else `plans[plan]`,
else `default_driver`. Each driver is built on first use and shared by every chain naming it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from abusedesk.enforce.choices import DriverName, parse_driver_chain
from abusedesk.enforce.drivers.base import Driver
from abusedesk.enforce.drivers.chain import ChainDriver
from abusedesk.enforce.settings import EnforceSettings

log = logging.getLogger(__name__)

Builder = Callable[[], Driver]


def default_builders(settings: EnforceSettings, home: Path) -> dict[DriverName, Builder]:
    # Imported here: the webhook brings httpx and the exabgp driver subprocess machinery,
    # which an installation that logs only never needs.
    def log_driver() -> Driver:
        from abusedesk.enforce.drivers.log import LogDriver

        return LogDriver()

    def script() -> Driver:
        from abusedesk.enforce.drivers.script import ScriptDriver

        return ScriptDriver(settings.script)

    def webhook() -> Driver:
        from abusedesk.enforce.drivers.webhook import WebhookDriver

        return WebhookDriver(settings.webhook)

    def exabgp() -> Driver:
        from abusedesk.enforce.drivers.exabgp import ExabgpDriver

        return ExabgpDriver(settings.exabgp, home / "exabgp")

    return {
        DriverName.LOG: log_driver,
        DriverName.SCRIPT: script,
        DriverName.WEBHOOK: webhook,
        DriverName.EXABGP: exabgp,
    }


class DriverRegistry:
    def __init__(self, settings: EnforceSettings, builders: Mapping[DriverName, Builder]) -> None:
        self.settings = settings
        self._builders = dict(builders)
        self._built: dict[DriverName, Driver] = {}
        self._chains: dict[str, Driver] = {}

    @classmethod
    def from_settings(
        cls,
        settings: EnforceSettings,
        home: Path,
        overrides: Mapping[DriverName, Builder] | None = None,
    ) -> DriverRegistry:
        """`overrides` replaces some builders (tests hand in their own drivers)."""
        return cls(settings, {**default_builders(settings, home), **(overrides or {})})

    def name_for(self, hostname: str, plan: str) -> str:
        """The driver (or chain) configured for a server, normalised: `exabgp+webhook`."""
        chosen = self.settings.servers.get(hostname)
        if chosen is None:
            chosen = self.settings.plans.get(plan, self.settings.default_driver)
        return "+".join(name.value for name in parse_driver_chain(chosen))

    def driver_for(self, hostname: str, plan: str) -> Driver:
        return self.driver_named(self.name_for(hostname, plan))

    def driver_named(self, name: str) -> Driver:
        chain = parse_driver_chain(name)
        if len(chain) == 1:
            return self.atomic(chain[0])
        key = "+".join(n.value for n in chain)
        if key not in self._chains:
            self._chains[key] = ChainDriver([self.atomic(n) for n in chain])
        return self._chains[key]

    def atomic(self, name: DriverName) -> Driver:
        if name not in self._built:
            self._built[name] = self._builders[name]()
        return self._built[name]

    def configured(self) -> list[DriverName]:
        """Every single driver the configuration can pick, in a stable order."""
        used = self.settings.drivers_used()
        return [name for name in DriverName if name in used]

    def close(self) -> None:
        for name, driver in list(self._built.items()):
            try:
                driver.close()
            except Exception:  # one driver failing to close must not keep the others open
                log.exception("closing the %s driver failed", name.value)
        self._built.clear()
        self._chains.clear()
