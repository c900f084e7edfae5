"""The account's servers and their status; a disconnected one says why (the ticket that cut
it) and what the customer must do to get it back (R16)."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from abusedesk.cases import service as cases
from abusedesk.web.deps import CustomerActor, DeskDep
from abusedesk.web.portal.common import next_step, page_router
from abusedesk.web.templating import render

router = page_router()


@router.get("/services")
def services(request: Request, desk: DeskDep, actor: CustomerActor) -> Response:
    assert actor.account_id is not None  # a customer always has one
    listed = cases.services_of_account(desk.uow(), actor, actor.account_id)
    labels = {c.value: rule.label for c, rule in desk.policy.categories.items()}
    return render(
        request,
        "portal/services.html",
        {
            "title": "Services",
            "services": listed,
            "held": [s for s in listed if s.held_by is not None],
            "steps": {s.held_by.id: next_step(s.held_by) for s in listed if s.held_by},
            "labels": labels,
        },
    )
