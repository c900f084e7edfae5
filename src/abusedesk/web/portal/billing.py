"""Billing data with the date it was last confirmed, and a button to confirm it (R2)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

from fastapi import Form, Request
from fastapi.responses import Response

from abusedesk.accounts import profile
from abusedesk.accounts.permissions import Actor
from abusedesk.bootstrap import Desk
from abusedesk.errors import ValidationError
from abusedesk.web import flash
from abusedesk.web.deps import CustomerActor, DeskDep
from abusedesk.web.portal.common import page_router, redirect
from abusedesk.web.templating import render

router = page_router()


@router.get("/billing")
def billing(request: Request, desk: DeskDep, actor: CustomerActor) -> Response:
    return _page(request, desk, actor)


def _page(
    request: Request,
    desk: Desk,
    actor: Actor,
    problems: list[str] | None = None,
    typed: dict[str, str] | None = None,
) -> Response:
    me = profile.own_account(desk.uow(), actor)
    account = me.account
    now = desk.clock.now()
    stale_after = desk.settings.auth.billing_stale_after
    context: dict[str, Any] = {
        "title": "Billing",
        "me": me,
        "account": account,
        "stale": profile.billing_is_stale(account.billing_confirmed_at, now, stale_after),
        "due_at": account.billing_confirmed_at + stale_after
        if account.billing_confirmed_at
        else None,
        "stale_days": stale_after.days,
        "problems": problems or [],
        "typed": typed
        or {
            "billing_name": account.billing_name,
            "billing_address": account.billing_address,
            "billing_email": account.billing_email,
        },
    }
    status = HTTPStatus.UNPROCESSABLE_ENTITY if problems else HTTPStatus.OK
    return render(request, "portal/billing.html", context, status_code=status)


@router.post("/billing")
def confirm(
    request: Request,
    desk: DeskDep,
    actor: CustomerActor,
    billing_name: Annotated[str, Form()] = "",
    billing_address: Annotated[str, Form()] = "",
    billing_email: Annotated[str, Form()] = "",
) -> Response:
    assert actor.account_id is not None
    try:
        profile.confirm_billing(
            desk.uow(), actor, actor.account_id, billing_name, billing_address, billing_email
        )
    except ValidationError as exc:
        typed = {
            "billing_name": billing_name,
            "billing_address": billing_address,
            "billing_email": billing_email,
        }
        return _page(request, desk, actor, exc.problems, typed)
    flash.add(request, "Thank you: your billing data is confirmed.")
    return redirect("/portal/billing")
