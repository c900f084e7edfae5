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
