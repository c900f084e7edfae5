"""The account's users (R1: they act for the account): owners and managers invite, remove and
re-role them; members see who they are."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

from fastapi import Form, Request
from fastapi.responses import Response

from abusedesk.accounts import members, profile
from abusedesk.accounts.choices import AccountRole
from abusedesk.accounts.permissions import Actor
from abusedesk.bootstrap import Desk
from abusedesk.errors import Conflict, PermissionDenied, ValidationError
from abusedesk.web import flash
from abusedesk.web.deps import CustomerActor, DeskDep
from abusedesk.web.portal.common import page_router, redirect
from abusedesk.web.templating import render

router = page_router()

ROLE_WORDS = {
    AccountRole.OWNER: "Everything a manager does, and grants or takes the owner role.",
    AccountRole.MANAGER: "Answers tickets, manages users, confirms billing data, accepts the AUP.",
    AccountRole.MEMBER: "Answers tickets and sees the account's services.",
}


@router.get("/users")
def users(request: Request, desk: DeskDep, actor: CustomerActor) -> Response:
    return _page(request, desk, actor)


def _page(
    request: Request,
    desk: Desk,
    actor: Actor,
    errors: dict[str, str] | None = None,
    typed: dict[str, str] | None = None,
) -> Response:
    me = profile.own_account(desk.uow(), actor)
    listed = members.list_members(desk.uow(), actor, me.account.id)
    # An owner may grant any role; a manager all but owner (members.py's rule, offered alike).
    offered = [
        r for r in AccountRole if me.account_role is AccountRole.OWNER or r is not AccountRole.OWNER
    ]
    context: dict[str, Any] = {
        "title": "Users",
        "me": me,
        "users": listed,
        "roles": [(r.value, r.value.capitalize()) for r in offered],
        "role_words": ROLE_WORDS,
        "invitation_days": desk.settings.auth.invitation_ttl.days,
        "errors": errors or {},
        "typed": typed or {"role": AccountRole.MEMBER.value},
    }
    status = HTTPStatus.UNPROCESSABLE_ENTITY if errors else HTTPStatus.OK
    return render(request, "portal/users.html", context, status_code=status)


@router.post("/users/invite")
def invite(
    request: Request,
    desk: DeskDep,
    actor: CustomerActor,
    email: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = AccountRole.MEMBER.value,
) -> Response:
    typed = {"email": email, "name": name, "role": role}
    if role not in AccountRole.__members__.values():
        return _page(request, desk, actor, {"role": "Choose one of the roles."}, typed)
    assert actor.account_id is not None
    try:
        user = members.invite_member(
            desk.uow(),
            actor,
            actor.account_id,
            email,
            name,
            AccountRole(role),
            desk.settings.base_url,
            desk.settings.auth,
        )
    except (ValidationError, Conflict) as exc:
        return _page(request, desk, actor, {"email": _sentence(exc)}, typed)
    flash.add(request, f"{user.email} is invited: we mailed a link to choose a password.")
    return redirect("/portal/users")


@router.post("/users/{user_id}/role")
def change_role(
    request: Request,
    desk: DeskDep,
    actor: CustomerActor,
    user_id: int,
    role: Annotated[str, Form()] = "",
) -> Response:
    if role not in AccountRole.__members__.values():
        flash.add(request, "Choose one of the roles.", flash.Level.ERROR)
        return redirect("/portal/users")
    try:
        user = members.set_member_role(desk.uow(), actor, user_id, AccountRole(role))
    except (ValidationError, Conflict, PermissionDenied) as exc:
        flash.add(request, _sentence(exc), flash.Level.ERROR)
        return redirect("/portal/users")
    flash.add(request, f"{user.email} is now {role}.")
    return redirect("/portal/users")


@router.post("/users/{user_id}/remove")
def remove(request: Request, desk: DeskDep, actor: CustomerActor, user_id: int) -> Response:
    try:
        members.remove_member(desk.uow(), actor, user_id)
    except (Conflict, PermissionDenied) as exc:
        flash.add(request, _sentence(exc), flash.Level.ERROR)
        return redirect("/portal/users")
    flash.add(request, "The user is removed: their sessions and API tokens no longer work.")
    return redirect("/portal/users")


def _sentence(exc: Exception) -> str:
    text = str(exc).strip()
    return (text[:1].upper() + text[1:]).rstrip(".") + "." if text else "That did not work."
