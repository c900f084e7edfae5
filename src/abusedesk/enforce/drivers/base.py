"""The one interface every enforcement driver implements, and the value it is given.

DriverError               a driver could not carry an action out
 ├── temporary=True       retried with backoff (timeouts, 5xx, EX_TEMPFAIL, a dead process)
 └── temporary=False      kept as failed for staff to look at; retried only by hand

Drivers are idempotent: an action may reach a driver twice (a worker that dies between the
driver's answer and its commit carries the action out again), so each carries the action's id
as an idempotency key or keeps its own view of what it has done.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from abusedesk.enforce.choices import ActionKind


class DriverError(Exception):
    def __init__(self, message: str, *, temporary: bool) -> None:
        super().__init__(message)
        self.temporary = temporary


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """Everything a driver needs to carry out one action, read from the database beforehand,
    so that drivers never touch it."""

    action_id: int
    kind: ActionKind
    case_id: int
    ticket: str
    account_reference: str
    server_id: int
    hostname: str
    prefixes: tuple[str, ...]  # the server's current IPv4 and IPv6 prefixes
    reason: str = ""
    category: str = ""
    plan: str = ""

    @property
    def idempotency_key(self) -> str:
        return str(self.action_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "action_id": self.action_id,
            "kind": self.kind.value,
            "case_id": self.case_id,
            "ticket": self.ticket,
            "account_reference": self.account_reference,
            "server_id": self.server_id,
            "hostname": self.hostname,
            "plan": self.plan,
            "prefixes": list(self.prefixes),
            "reason": self.reason,
            "category": self.category,
        }


class Driver(ABC):
    """Carries actions out on the network or the provider's systems.

    - `apply(spec)`: disconnect cuts the server off; reconnect undoes the disconnection of the
      same server; terminate cuts it off and ends its services. Returns a line for the case
      timeline saying what was done; raises DriverError when it was not.
    - `reconcile(active)`: make the network match exactly the given cuts (disconnect or
      terminate specs, one per server): cut what is missing, restore what is cut and should
      not be. Called when the worker starts and every reconcile interval.
    - `close()`: release processes and connections.
    """

    name: str

    @abstractmethod
    def apply(self, spec: ActionSpec) -> str: ...

    @abstractmethod
    def reconcile(self, active: Sequence[ActionSpec]) -> None: ...

    def close(self) -> None:  # noqa: B027 - most drivers hold nothing
        """Release what the driver holds."""


def action_message(spec: ActionSpec, sent_at: str) -> dict[str, Any]:
    """What the webhook posts and a script reads on stdin for one action."""
    return {
        "event": "action",
        "idempotency_key": spec.idempotency_key,
        "sent_at": sent_at,
        "action": spec.to_json(),
    }


def reconcile_message(active: Sequence[ActionSpec], sent_at: str) -> dict[str, Any]:
    """The whole set of cuts that should be in force, and nothing else."""
    return {
        "event": "reconcile",
        "sent_at": sent_at,
        "active": [spec.to_json() for spec in active],
    }
