"""The NOC's page: attacks on customers (alerts to acknowledge), the flow exporters the
collectors hear, and the accounts told that their DNS load is a potential violation."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from abusedesk.clock import utc
from abusedesk.dns import overuse
from abusedesk.noc import service as noc
from abusedesk.traffic import service as traffic
from abusedesk.web import flash
from abusedesk.web.deps import DeskDep, StaffActor
from abusedesk.web.staff.common import page_router, redirect
from abusedesk.web.templating import render

router = page_router()

STALE_EXPORTER_SECONDS = 600  # an exporter not heard for this long is shown as silent


@router.get("/noc")
def noc_page(request: Request, desk: DeskDep, actor: StaffActor) -> Response:
    now = desk.clock.now()
    exporters = traffic.list_exporters(desk.uow(), actor)
    return render(
        request,
        "staff/noc.html",
        {
            "title": "NOC",
            "alerts": noc.list_alerts(desk.uow(), actor),
            "exporters": exporters,
            "silent": {
                e.id
                for e in exporters
                if (now - utc(e.last_seen_at)).total_seconds() > STALE_EXPORTER_SECONDS
            },
            "notices": overuse.running_notices(desk.uow(), actor),
            "netflow_port": desk.settings.traffic.netflow.port,
            "sflow_port": desk.settings.traffic.sflow.port,
        },
    )


@router.post("/noc/alerts/{alert_id}/acknowledge")
def acknowledge(request: Request, desk: DeskDep, actor: StaffActor, alert_id: int) -> Response:
    alert = noc.acknowledge(desk.uow(), actor, alert_id)
    flash.add(request, f"Alert on {alert.subject} acknowledged.")
    return redirect("/staff/noc")
