"""The kinds and states of managed DNS."""

from __future__ import annotations

from enum import StrEnum


class PlaneKind(StrEnum):
    BUILTIN = "builtin"  # the asyncio server of the `dns` role (small installs, tests)
    KNOT = "knot"  # Knot DNS, configured and reloaded by abusedesk (production)


class ZoneChangeKind(StrEnum):
    """What one line of a zone's history records."""

    ZONE_CREATED = "zone_created"
    RRSET_CREATED = "rrset_created"
    RRSET_REPLACED = "rrset_replaced"
    RRSET_DELETED = "rrset_deleted"
    ZONE_IMPORTED = "zone_imported"  # the summary line; each set it changed has a line too
    NAMESERVERS_CHANGED = "nameservers_changed"  # staff: the apex NS overridden or restored

    @property
    def label(self) -> str:
        return self.value.replace("_", " ").capitalize()


class NoticeState(StrEnum):
    """Where an account stands on R11's path: told of a potential violation, then a case."""

    NOTIFIED = "notified"  # told of a potential violation, asked to move busy zones
    CASE_OPENED = "case_opened"  # still over notice_grace later: a dns_overuse case
    ENDED = "ended"  # the load went back within the policy
