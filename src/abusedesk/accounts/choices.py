from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """Who a user is. Staff roles see every account; a customer user sees its own account."""

    CUSTOMER = "customer"
    ANALYST = "analyst"
    NOC = "noc"
    LEGAL = "legal"
    ADMIN = "admin"

    @property
    def is_staff(self) -> bool:
        return self is not Role.CUSTOMER


class AccountRole(StrEnum):
    """A customer user's role inside its own account (R1: users act for the account)."""

    OWNER = "owner"
    MANAGER = "manager"
    MEMBER = "member"

    @property
    def manages_members(self) -> bool:
        """An owner or manager invites, removes and re-roles the account's users (R1)."""
        return self is not AccountRole.MEMBER


# Roles that may not sign in with a password alone: they reach every customer's data (admin) or
# law-enforcement and child-abuse material (legal).
TOTP_REQUIRED_ROLES = frozenset({Role.ADMIN, Role.LEGAL})


class TokenPurpose(StrEnum):
    """Why a one-time link was mailed: both end with the user choosing a password."""

    RESET = "reset"
    INVITATION = "invitation"


class ScreeningKind(StrEnum):
    """Who the refuse-service list names (R3)."""

    PERSON = "person"
    GROUP = "group"
    BUSINESS = "business"
