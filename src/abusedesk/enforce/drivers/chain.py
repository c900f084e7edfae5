"""Several drivers for one server, carried out in order: `exabgp+webhook` blackholes the
addresses, then has the orchestration suspend the machine (or end it, for a termination)."""

from __future__ import annotations

from collections.abc import Sequence

from abusedesk.enforce.choices import CHAIN_SEPARATOR
from abusedesk.enforce.drivers.base import ActionSpec, Driver, DriverError


class ChainDriver(Driver):
    def __init__(self, drivers: Sequence[Driver]) -> None:
        if not drivers:
            raise ValueError("a chain needs at least one driver")
        self.drivers = tuple(drivers)
        self.name = CHAIN_SEPARATOR.join(d.name for d in self.drivers)

    def apply(self, spec: ActionSpec) -> str:
        # Stop at the first failure: the action is retried whole, and the drivers before it
        # are idempotent, so they do nothing the second time that matters.
        notes = []
        for driver in self.drivers:
            try:
                notes.append(driver.apply(spec))
            except DriverError as exc:
                raise DriverError(f"{driver.name}: {exc}", temporary=exc.temporary) from exc
        return "; ".join(notes)

    def reconcile(self, active: Sequence[ActionSpec]) -> None:
        problems = []
        temporary = True
        for driver in self.drivers:
            try:
                driver.reconcile(active)
            except DriverError as exc:
                problems.append(f"{driver.name}: {exc}")
                temporary = temporary and exc.temporary
        if problems:
            raise DriverError("; ".join(problems), temporary=temporary)

    def close(self) -> None:
        """The registry owns the drivers of a chain and closes them itself."""
