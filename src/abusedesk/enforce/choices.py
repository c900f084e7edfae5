"""Enforcement: the actions that disconnect, reconnect and terminate, kept as records."""

from __future__ import annotations

from enum import StrEnum


class ActionKind(StrEnum):
    DISCONNECT = "disconnect"
    RECONNECT = "reconnect"
    TERMINATE = "terminate"

    @property
    def cuts(self) -> bool:
        """Whether the server is cut off once the action is carried out (terminate cuts too)."""
        return self is not ActionKind.RECONNECT


class ActionState(StrEnum):
    PENDING = "pending"  # written by the case engine, not yet carried out
    APPLIED = "applied"  # the driver confirmed it
    FAILED = "failed"  # the last attempt failed; retried at next_attempt_at (never if NULL)
    REVERTED = "reverted"  # a disconnection undone by a reconnection
    # Never carried out: a later action for the same server was decided before it applied, and
    # each action states the whole wanted condition of its server, so the older one is moot.
    SUPERSEDED = "superseded"


UNFINISHED_STATES = (ActionState.PENDING, ActionState.FAILED)


class DriverName(StrEnum):
    """The drivers that carry actions out. Configuration may chain them: `exabgp+webhook`."""

    LOG = "log"  # the embedded default: records and logs what it would do
    SCRIPT = "script"  # an operator's executable
    WEBHOOK = "webhook"  # an HTTP POST to the provider's orchestration
    EXABGP = "exabgp"  # BGP blackhole (RFC 7999) and FlowSpec through ExaBGP


CHAIN_SEPARATOR = "+"


def parse_driver_chain(value: str) -> tuple[DriverName, ...]:
    """`"exabgp+webhook"` → (EXABGP, WEBHOOK); ValueError names what is wrong."""
    parts = [p.strip() for p in value.split(CHAIN_SEPARATOR)]
    known = ", ".join(d.value for d in DriverName)
    names: list[DriverName] = []
    for part in parts:
        try:
            name = DriverName(part)
        except ValueError:
            raise ValueError(f"unknown enforcement driver {part!r} (known: {known})") from None
        if name in names:
            raise ValueError(f"driver {part!r} appears twice in {value!r}")
        names.append(name)
    return tuple(names)
