"""Customer accounts as the desk sees them: what they hold, their cases, and the desk's notes."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated
from urllib.parse import quote

from fastapi import Form, Query, Request
from fastapi.responses import Response

from abusedesk.accounts import members, profile
from abusedesk.accounts.permissions import Actor
from abusedesk.bootstrap import Desk
from abusedesk.cases import service as cases
from abusedesk.errors import NotFound, ValidationError
from abusedesk.inventory import service as inventory
from abusedesk.web import flash
from abusedesk.web.deps import DeskDep, StaffActor
from abusedesk.web.staff.common import PAGE_SIZE, Paging, page_router, redirect
from abusedesk.web.templating import render

router = page_router()

ACCOUNT_CASES = 25


def _account_url(reference: str) -> str:
    return f"/staff/accounts/{quote(reference, safe='')}"


def _find(desk: Desk, actor: Actor, text: str) -> str | None:
    """The account a search names: by its reference, or by one of its servers' host names."""
    try:
        return inventory.get_account(desk.uow(), actor, text).reference
    except NotFound:
        pass
    try:
        return inventory.get_server(desk.uow(), actor, text).account.reference
    except NotFound:
        return None


@router.get("/accounts")
def account_list(
    request: Request,
    desk: DeskDep,
    actor: StaffActor,
    q: str = "",
    page: Annotated[int, Query(ge=1)] = 1,
) -> Response:
    error = ""
    text = q.strip()
    if text and page == 1:
        reference = _find(desk, actor, text)
        if reference is not None:
            return redirect(_account_url(reference))
    offset = (page - 1) * PAGE_SIZE
    # One more than a page: whether there is a next page, without counting every account.
    found = inventory.list_accounts(desk.uow(), actor, PAGE_SIZE + 1, offset, search=text)
    if text and not found:
        error = f"No account's reference, name or e-mail, and no server's name, has “{text}”."
    return render(
        request,
        "staff/accounts.html",
        {
            "title": "Accounts",
            "accounts": found[:PAGE_SIZE],
            "page": page,
            "more": len(found) > PAGE_SIZE,
            "q": q,
            "error": error,
        },
    )


def _account_context(desk: Desk, actor: Actor, reference: str, page: int) -> dict[str, object]:
    account = inventory.get_account(desk.uow(), actor, reference)
    filt = cases.CaseFilter(account_id=account.id)
    paging = Paging.of(page, cases.count_cases(desk.uow(), actor, filt), ACCOUNT_CASES)
    found = cases.list_cases(
        desk.uow(),
        actor,
        cases.CaseFilter(account_id=account.id, limit=paging.size, offset=paging.offset),
    )
    now = desk.clock.now()
    return {
        "title": f"{account.reference} · {account.name}",
        "account": account,
        "cases": found,
        "paging": paging,
        "users": members.list_members(desk.uow(), actor, account.id),
        "billing_stale": profile.billing_is_stale(
            account.billing_confirmed_at, now, desk.settings.auth.billing_stale_after
        ),
        "aup_current": profile.current_aup_version(desk.policy),
        "notes_error": "",
        "notes": account.notes,
    }


@router.get("/accounts/{reference}")
def account_page(
    request: Request,
    desk: DeskDep,
    actor: StaffActor,
    reference: str,
    page: Annotated[int, Query(ge=1)] = 1,
) -> Response:
    return render(request, "staff/account.html", _account_context(desk, actor, reference, page))


@router.post("/accounts/{reference}/notes")
def account_notes(
    request: Request,
    desk: DeskDep,
    actor: StaffActor,
    reference: str,
    notes: Annotated[str, Form()] = "",
) -> Response:
    account_id = inventory.resolve_references(desk.uow(), actor, reference, None).account_id
    assert account_id is not None
    try:
        profile.set_account_notes(desk.uow(), actor, account_id, notes)
    except ValidationError as exc:
        context = _account_context(desk, actor, reference, 1)
        context.update({"notes_error": str(exc), "notes": notes})
        return render(
            request, "staff/account.html", context, status_code=HTTPStatus.UNPROCESSABLE_ENTITY
        )
    flash.add(request, f"The notes on {reference} are saved.")
    return redirect(_account_url(reference) + "#notes")
