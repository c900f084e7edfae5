"""What every page route is given: the desk, and who is signed in (staff or customer)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from abusedesk.accounts.permissions import Actor
from abusedesk.errors import NotFound
from abusedesk.web.api.deps import DeskDep
from abusedesk.web.session import require_actor


def page_actor(request: Request) -> Actor:
    return require_actor(request)


def staff_actor(request: Request) -> Actor:
    actor = require_actor(request)
    if not actor.is_staff:
        # The console's addresses do not exist for customers, as another account's ticket does
        # not: a 404, not a 403 that would confirm what is behind it.
        raise NotFound("no such page")
    return actor


def customer_actor(request: Request) -> Actor:
    actor = require_actor(request)
    if actor.is_staff:
        raise NotFound("the portal is for customers; staff use the console at /staff")
    return actor


PageActor = Annotated[Actor, Depends(page_actor)]
StaffActor = Annotated[Actor, Depends(staff_actor)]
CustomerActor = Annotated[Actor, Depends(customer_actor)]

__all__ = ["CustomerActor", "DeskDep", "PageActor", "StaffActor"]
