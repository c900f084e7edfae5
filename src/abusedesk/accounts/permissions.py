"""Who may do what. Checked in the service layer, so every adapter gets the same answer."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from abusedesk.accounts.choices import Role
from abusedesk.errors import NotFound, PermissionDenied


class Permission(StrEnum):
    CASE_VIEW = "case.view"
    CASE_RESPOND = "case.respond"  # acknowledge, report a fix, write to the desk
    CASE_OPEN = "case.open"
    CASE_DECIDE = "case.decide"  # verify or reject a fix, deadlines, disconnect, close
    CASE_RECONNECT = "case.reconnect"
    CASE_TERMINATE = "case.terminate"
    CASE_ZERO_TOLERANCE = "case.zero_tolerance"  # reconnect after csam and the like
    INVENTORY_VIEW = "inventory.view"
    INVENTORY_EDIT = "inventory.edit"
    USERS_MANAGE = "users.manage"
    AUDIT_VIEW = "audit.view"
    SCREENING_VIEW = "screening.view"  # the refuse-service list (R3)
    SCREENING_EDIT = "screening.edit"  # add to it, remove from it, override it for one account
    DNS_VIEW = "dns.view"  # zones, their records and history (a customer: its own account's)
    # Create, edit, import and delete zones and records; a customer user also needs the owner
    # or manager role in its account (checked in dns.service, like members.py does).
    DNS_EDIT = "dns.edit"
    DNS_NAMESERVERS = "dns.nameservers"  # override a zone's apex NS (the provider's alone)


_P = Permission
_STAFF_COMMON = frozenset(
    {
        _P.CASE_VIEW,
        _P.CASE_RESPOND,
        _P.CASE_OPEN,
        _P.CASE_DECIDE,
        _P.INVENTORY_VIEW,
        _P.SCREENING_VIEW,
        _P.DNS_VIEW,
    }
)

GRANTS: dict[Role, frozenset[Permission]] = {
    Role.CUSTOMER: frozenset({_P.CASE_VIEW, _P.CASE_RESPOND, _P.DNS_VIEW, _P.DNS_EDIT}),
    Role.ANALYST: _STAFF_COMMON | {_P.CASE_RECONNECT, _P.CASE_TERMINATE},
    Role.NOC: _STAFF_COMMON
    | {_P.CASE_RECONNECT, _P.INVENTORY_EDIT, _P.DNS_EDIT, _P.DNS_NAMESERVERS},
    Role.LEGAL: _STAFF_COMMON
    | {
        _P.CASE_RECONNECT,
        _P.CASE_TERMINATE,
        _P.CASE_ZERO_TOLERANCE,
        _P.AUDIT_VIEW,
        _P.SCREENING_EDIT,
    },
    Role.ADMIN: frozenset(Permission),
}


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is acting: a signed-in user, a token's owner, or the system itself."""

    label: str
    role: Role
    user_id: int | None = None
    account_id: int | None = None

    @property
    def is_staff(self) -> bool:
        return self.role.is_staff

    def can(self, permission: Permission) -> bool:
        return permission in GRANTS[self.role]

    def require(self, permission: Permission) -> None:
        if not self.can(permission):
            raise PermissionDenied(f"{self.role.value} may not {permission.value}")

    def require_account(self, account_id: int, what: str = "object") -> None:
        """Customers see only their own account; another account's object does not exist."""
        if not self.is_staff and self.account_id != account_id:
            raise NotFound(f"no such {what}")


SYSTEM = Actor(label="system", role=Role.ADMIN)
SWEEPER = Actor(label="sweeper", role=Role.ADMIN)
ENFORCER = Actor(label="enforcer", role=Role.ADMIN)
MAILER = Actor(label="mailer", role=Role.ADMIN)
