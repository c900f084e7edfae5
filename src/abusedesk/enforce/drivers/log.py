"""The embedded default: carries nothing out, logs and remembers what it would have done."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from abusedesk.enforce.choices import DriverName
from abusedesk.enforce.drivers.base import ActionSpec, Driver

log = logging.getLogger(__name__)


class LogDriver(Driver):
    name = DriverName.LOG.value

    def __init__(self) -> None:
        self.applied: list[ActionSpec] = []  # every action, in order, repeats included
        self.cuts: dict[int, ActionSpec] = {}  # server id → the cut that would be in force

    def apply(self, spec: ActionSpec) -> str:
        self.applied.append(spec)
        if spec.kind.cuts:
            self.cuts[spec.server_id] = spec
        else:
            self.cuts.pop(spec.server_id, None)
        addresses = ", ".join(spec.prefixes) or "no addresses"
        what = f"would {spec.kind.value} {spec.hostname} ({addresses})"
        log.info(
            "enforcement %s, action %d for %s: %s", what, spec.action_id, spec.ticket, spec.reason
        )
        return f"logged only: {what}"

    def reconcile(self, active: Sequence[ActionSpec]) -> None:
        self.cuts = {spec.server_id: spec for spec in active}
        log.info(
            "enforcement reconciled: %d servers would be cut%s",
            len(self.cuts),
            "".join(f"\n  {s.hostname} ({s.ticket})" for s in active),
        )
