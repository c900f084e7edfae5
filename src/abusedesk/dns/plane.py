"""The one interface every data plane offers (the built-in server, Knot DNS).

The zones travel as :class:`dns.zone.Zone` objects, as ``dns.zone.from_text(text, origin)``
makes them (relativized, dnspython's default), each with its SOA and apex NS already in place:
the service builds them from the database (:mod:`abusedesk.dns.snapshot`) and the plane only
serves what it is given. Counters are cumulative since the plane started; the load recorder
takes differences every five minutes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import dns.zone


@dataclass
class ZoneCounters:
    """What a plane counted for one zone since it started."""

    queries: int = 0
    nxdomain: int = 0
    by_type: dict[str, int] = field(default_factory=dict)  # "A", "AAAA", "TYPE65534", …

    def add(self, other: ZoneCounters) -> None:
        self.queries += other.queries
        self.nxdomain += other.nxdomain
        for rtype, n in other.by_type.items():
            self.by_type[rtype] = self.by_type.get(rtype, 0) + n


class DataPlane(Protocol):
    """A name server that serves the zones it is given."""

    def start(self) -> None:
        """Starts serving (binds its sockets, or starts the daemon). Returns once it answers."""

    def stop(self) -> None:
        """Stops serving and releases what it holds."""

    def publish(self, zones: Mapping[str, dns.zone.Zone]) -> None:
        """Serves exactly these zones from now on (keyed by origin in text, absolute and
        lower-case: ``"example.com."``). Zones not given are no longer served (REFUSED); a
        zone whose SOA serial went up is reloaded and its secondaries notified. No restart."""

    def counters(self) -> dict[str, ZoneCounters]:
        """Cumulative counters per served zone, keyed like :meth:`publish`."""
