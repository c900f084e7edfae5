"""The refuse-service list (R3): every staff member reads it; legal and admin keep it."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

from fastapi import Form, Request
from fastapi.responses import Response

from abusedesk.accounts import screening
from abusedesk.accounts.choices import ScreeningKind
from abusedesk.accounts.permissions import Actor, Permission
from abusedesk.bootstrap import Desk
from abusedesk.errors import Conflict, ValidationError
from abusedesk.web import flash
from abusedesk.web.deps import DeskDep, StaffActor
from abusedesk.web.staff.common import page_router, redirect
from abusedesk.web.templating import render

router = page_router()


def _context(desk: Desk, actor: Actor, show_removed: bool) -> dict[str, Any]:
    entries = screening.list_screening(desk.uow(), actor, include_removed=True)
    return {
        "title": "Screening list",
        "current": [e for e in entries if e.removed_at is None],
        "removed": [e for e in entries if e.removed_at is not None],
        "show_removed": show_removed,
        "can_edit": actor.can(Permission.SCREENING_EDIT),
        "kinds": [(k.value, k.value.capitalize()) for k in ScreeningKind],
        "form": {},
        "error": "",
        "problems": [],
        "failed": None,
    }


@router.get("/screening")
def screening_page(
    request: Request, desk: DeskDep, actor: StaffActor, removed: bool = False
) -> Response:
    return render(request, "staff/screening.html", _context(desk, actor, removed))


@router.post("/screening")
def screening_add(
    request: Request,
    desk: DeskDep,
    actor: StaffActor,
    kind: Annotated[str, Form()] = ScreeningKind.PERSON.value,
    name: Annotated[str, Form()] = "",
    emails: Annotated[str, Form()] = "",
    domains: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> Response:
    try:
        chosen = ScreeningKind(kind)
    except ValueError:
        chosen = ScreeningKind.PERSON
    try:
        entry = screening.add_screening(desk.uow(), actor, chosen, name, emails, domains, reason)
    except ValidationError as exc:
        context = _context(desk, actor, False)
        context.update(
            {
                "form": {
                    "kind": kind,
                    "name": name,
                    "emails": emails,
                    "domains": domains,
                    "reason": reason,
                },
                "error": str(exc),
                "problems": exc.problems,
            }
        )
        return render(
            request,
            "staff/screening.html",
            context,
            status_code=HTTPStatus.UNPROCESSABLE_ENTITY,
        )
    flash.add(request, f"Entry #{entry.id} is on the screening list.")
    return redirect("/staff/screening")


@router.post("/screening/{entry_id}/remove")
def screening_remove(
    request: Request,
    desk: DeskDep,
    actor: StaffActor,
    entry_id: int,
    reason: Annotated[str, Form()] = "",
) -> Response:
    try:
        screening.remove_screening(desk.uow(), actor, entry_id, reason)
    except (ValidationError, Conflict) as exc:
        context = _context(desk, actor, False)
        context.update({"failed": entry_id, "error": str(exc)})
        status = (
            HTTPStatus.UNPROCESSABLE_ENTITY
            if isinstance(exc, ValidationError)
            else HTTPStatus.CONFLICT
        )
        return render(request, "staff/screening.html", context, status_code=status)
    flash.add(request, f"Entry #{entry_id} is off the screening list; the record stays.")
    return redirect("/staff/screening")
