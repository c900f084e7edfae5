"""The Acceptable Use Policy: the version the account accepted and when, and accepting the
current one (R1)."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import Response

from abusedesk.accounts import profile
from abusedesk.errors import ValidationError
from abusedesk.web import flash
from abusedesk.web.deps import CustomerActor, DeskDep
from abusedesk.web.portal.common import page_router, redirect
from abusedesk.web.templating import render

router = page_router()


@cache
def policy_text() -> list[str]:
    """The policy's text as shipped with the package, in paragraphs."""
    text = resources.files("abusedesk.policy").joinpath("aup.txt").read_text(encoding="utf-8")
    return [p.strip() for p in text.split("\n\n") if p.strip()]


@router.get("/policy")
def policy(request: Request, desk: DeskDep, actor: CustomerActor) -> Response:
    me = profile.own_account(desk.uow(), actor)
    current = profile.current_aup_version(desk.policy)
    return render(
        request,
        "portal/policy.html",
        {
            "title": "Acceptable Use Policy",
            "me": me,
            "account": me.account,
            "current": current,
            "pending": me.account.aup_version != current,
            "paragraphs": policy_text(),
        },
    )


@router.post("/policy/accept")
def accept(
    request: Request,
    desk: DeskDep,
    actor: CustomerActor,
    version: Annotated[str, Form()] = "",
    agree: Annotated[str, Form()] = "",
) -> Response:
    if not agree:
        flash.add(request, "Tick the box to say that you accept the policy.", flash.Level.ERROR)
        return redirect("/portal/policy")
    assert actor.account_id is not None
    try:
        profile.accept_aup(desk.uow(), actor, actor.account_id, version, desk.policy)
    except ValidationError as exc:
        flash.add(request, f"{exc}.", flash.Level.ERROR)
        return redirect("/portal/policy")
    flash.add(request, f"Thank you: the account accepts the policy, version {version}.")
    return redirect("/portal/policy")
