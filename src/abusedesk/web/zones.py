"""Managed DNS pages (R10, R11), one set of routes mounted twice: in the portal, where a
customer edits its own account's zones, and in the console, where staff edit any zone (each
change audited and the customer told) and set a zone's name servers.

Every change goes through :mod:`abusedesk.dns.service`; a refusal comes back beside the field
it concerns, with what was typed kept.
"""

# No `from __future__ import annotations`: the routes are built in a function, and FastAPI
# must see the actor dependency (a local) as a value, not as a name to look up in the module.
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from http import HTTPStatus
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import RedirectResponse, Response

from abusedesk.accounts.permissions import Actor, Permission
from abusedesk.bootstrap import Desk
from abusedesk.dns import overuse
from abusedesk.dns import service as zones
from abusedesk.dns.validate import CUSTOMER_TYPES
from abusedesk.errors import Conflict, FieldErrors, NotFound, PermissionDenied, ValidationError
from abusedesk.web import csrf, flash
from abusedesk.web.deps import DeskDep, customer_actor, staff_actor
from abusedesk.web.staff import charts, mime
from abusedesk.web.templating import render

MAX_IMPORT_BYTES = 1024 * 1024  # a zone file; larger is not a customer's zone
TYPES = sorted(CUSTOMER_TYPES, key=lambda t: (t not in ("A", "AAAA", "CNAME", "MX", "TXT"), t))
REFUSED = (ValidationError, Conflict, PermissionDenied)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Mount:
    """Where the pages live and who may see them."""

    base: str  # "/portal/dns" or "/staff/dns"
    staff: bool


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, HTTPStatus.SEE_OTHER)


def _errors(exc: Exception) -> dict[str, str]:
    """A refusal as messages per field; "" holds what belongs to no field."""
    if isinstance(exc, FieldErrors):
        return {field: "; ".join(messages) for field, messages in exc.by_field().items()}
    return {"": str(exc)}


@dataclass(frozen=True, slots=True)
class ZonePage:
    """A request about one zone's page: who asks, and the page to show them."""

    request: Request
    desk: Desk
    actor: Actor
    name: str
    # The zone's page; keywords open a refused form: failed, errors, typed, edit.
    show: Callable[..., Response]

    def change(
        self,
        failed: str,
        change: Callable[[], T],
        done: Callable[[T], str],
        to: str,
        *,
        errors: Callable[[Exception], dict[str, str]] = _errors,
        typed: dict[str, str] | None = None,
        edit: tuple[str, str] | None = None,
    ) -> Response:
        """One of the page's forms, read already: `change` calls the service. A refusal shows
        the page again with the `failed` form open, `errors` of the refusal beside its fields
        and `typed` kept; done, the flash `done` says of what `change` returned, and a redirect
        to `to`."""
        try:
            result = change()
        except (*REFUSED, NotFound) as exc:
            return self.show(failed=failed, errors=errors(exc), typed=typed, edit=edit)
        flash.add(self.request, done(result))
        return _see_other(to)


def build_router(mount: Mount, actor_of: Callable[[Request], Actor]) -> APIRouter:
    router = APIRouter(dependencies=[Depends(csrf.protect)], include_in_schema=False)
    ActorDep = Annotated[Actor, Depends(actor_of)]  # noqa: N806 - a type, named as one
    base = mount.base

    def zone_list(
        request: Request,
        desk: Desk,
        actor: Actor,
        search: str = "",
        errors: dict[str, str] | None = None,
        typed: dict[str, str] | None = None,
    ) -> Response:
        found = zones.list_zones(desk.uow(), actor, search=search, limit=500)
        notice = (
            None
            if actor.is_staff or actor.account_id is None
            else overuse.account_notice(desk.uow(), actor, actor.account_id)
        )
        context: dict[str, Any] = {
            "title": "DNS zones",
            "mount": mount,
            "zones": found,
            "search": search,
            "notice": notice,
            "can_edit": actor.can(Permission.DNS_EDIT),
            "errors": errors or {},
            "typed": typed or {},
            "nameservers": desk.settings.dns.nameservers,
        }
        status = HTTPStatus.UNPROCESSABLE_ENTITY if errors else HTTPStatus.OK
        return render(request, "dns/zones.html", context, status_code=status)

    @router.get(base)
    def zones_page(request: Request, desk: DeskDep, actor: ActorDep, q: str = "") -> Response:
        return zone_list(request, desk, actor, q)

    @router.post(base)
    def create_zone(
        request: Request,
        desk: DeskDep,
        actor: ActorDep,
        name: Annotated[str, Form()] = "",
        account: Annotated[str, Form()] = "",
    ) -> Response:
        owner: str | int | None = account.strip() if mount.staff else actor.account_id
        typed = {"name": name, "account": account}
        if not owner:
            return zone_list(request, desk, actor, "", {"account": "Name the account."}, typed)
        try:
            zone = zones.create_zone(desk.uow(), actor, owner, name)
        except (*REFUSED, NotFound) as exc:
            found = _errors(exc)
            found.setdefault("name", found.pop("", ""))
            return zone_list(request, desk, actor, "", found, typed)
        flash.add(
            request,
            f"Zone {zone.name} created: add its records, then point it at our name servers.",
        )
        return _see_other(f"{base}/{zone.name}")

    def zone_page(
        request: Request,
        desk: Desk,
        actor: Actor,
        name: str,
        *,
        failed: str = "",
        errors: dict[str, str] | None = None,
        typed: dict[str, str] | None = None,
        edit: tuple[str, str] | None = None,
    ) -> Response:
        zone = zones.get_zone(desk.uow(), actor, name)
        history = zones.zone_history(desk.uow(), actor, zone.name, limit=50)
        load = overuse.zone_load(desk.uow(), actor, zone.name, desk.clock.now())
        series = charts.find_series(load, "load")
        editing = None
        if edit is not None:
            editing = next(
                (s for s in zone.rrsets if (s.subname, s.type) == edit),
                None,
            )
        if typed is None and editing is not None:
            typed = {
                "subname": editing.subname or "@",
                "type": editing.type,
                "ttl": str(editing.ttl),
                "records": "\n".join(editing.records),
            }
        context: dict[str, Any] = {
            "title": zone.name,
            "mount": mount,
            "zone": zone,
            "history": history,
            "load_chart": charts.time_series(series[0]) if series else None,
            "load_total": sum(float(p["queries_per_s"]) for p in load) * 300,
            "types": [(t, t) for t in TYPES],
            "failed": failed,
            "errors": errors or {},
            "typed": typed or {"subname": "", "type": "A", "ttl": ""},
            "editing": editing,
            "can_edit": actor.can(Permission.DNS_EDIT),
            "can_nameservers": actor.can(Permission.DNS_NAMESERVERS),
            "default_nameservers": desk.settings.dns.nameservers,
            "ttl_bounds": (desk.settings.dns.min_ttl, desk.settings.dns.max_ttl),
            "default_ttl": desk.settings.dns.default_ttl,
        }
        status = HTTPStatus.UNPROCESSABLE_ENTITY if errors else HTTPStatus.OK
        return render(request, "dns/zone.html", context, status_code=status)

    def on_zone(request: Request, desk: DeskDep, actor: ActorDep, name: str) -> ZonePage:
        return ZonePage(request, desk, actor, name, partial(zone_page, request, desk, actor, name))

    ZonePageDep = Annotated[ZonePage, Depends(on_zone)]  # noqa: N806 - a type, named as one

    @router.get(base + "/{name}")
    def zone_view(page: ZonePageDep, edit: str = "") -> Response:
        key = tuple(edit.split("/", 1)) if "/" in edit else None
        wanted = (("" if key[0] == "@" else key[0]), key[1]) if key else None
        return page.show(edit=wanted)

    @router.post(base + "/{name}/rrsets")
    def put_rrset(
        page: ZonePageDep,
        subname: Annotated[str, Form()] = "",
        type: Annotated[str, Form()] = "",
        ttl: Annotated[str, Form()] = "",
        records: Annotated[str, Form()] = "",
        reason: Annotated[str, Form()] = "",
        editing: Annotated[str, Form()] = "",
    ) -> Response:
        typed = {"subname": subname, "type": type, "ttl": ttl, "records": records, "reason": reason}
        lines = [line.strip() for line in records.splitlines() if line.strip()]
        try:
            seconds = int(ttl) if ttl.strip() else None
        except ValueError:
            return page.show(
                failed="rrset",
                typed=typed,
                errors={"ttl": "The TTL is a whole number of seconds."},
            )
        if not lines:
            errors = {"records": "Give at least one record; to remove the set, use Delete."}
            return page.show(failed="rrset", typed=typed, errors=errors)
        owner, rtype = subname.strip(), type.strip().upper()
        return page.change(
            "rrset",
            lambda: zones.put_rrset(
                page.desk.uow(),
                page.actor,
                page.name,
                owner,
                rtype,
                seconds,
                lines,
                page.desk.settings.dns,
                reason=reason.strip(),
            ),
            lambda _: f"{rtype} records at {owner or '@'} saved; served within seconds.",
            f"{base}/{page.name}#records",
            typed=typed,
            edit=(owner, rtype) if editing else None,
        )

    @router.post(base + "/{name}/rrsets/delete")
    def delete_rrset(
        page: ZonePageDep,
        subname: Annotated[str, Form()] = "",
        type: Annotated[str, Form()] = "",
        reason: Annotated[str, Form()] = "",
    ) -> Response:
        # Deleting is a button in the list of sets: a refusal is a flash, not a form again.
        records = f"{base}/{page.name}#records"
        try:
            zones.delete_rrset(
                page.desk.uow(), page.actor, page.name, subname, type, reason=reason.strip()
            )
        except (*REFUSED, NotFound) as exc:
            flash.add(page.request, "; ".join(_errors(exc).values()), flash.Level.ERROR)
            return _see_other(records)
        flash.add(page.request, f"{type} records at {subname or '@'} deleted.")
        return _see_other(records)

    @router.post(base + "/{name}/import")
    async def import_zone(
        page: ZonePageDep,
        text: Annotated[str, Form()] = "",
        file: Annotated[UploadFile | None, File()] = None,
        replace: Annotated[str, Form()] = "",
        reason: Annotated[str, Form()] = "",
    ) -> Response:
        content = text
        if file is not None and file.filename:
            raw = await file.read(MAX_IMPORT_BYTES + 1)
            if len(raw) > MAX_IMPORT_BYTES:
                errors = {"text": f"The file is over {MAX_IMPORT_BYTES // 1024} KiB."}
                return page.show(failed="import", errors=errors)
            try:
                content = raw.decode("utf-8")
            except UnicodeDecodeError:
                errors = {"text": "The file is not UTF-8 text."}
                return page.show(failed="import", errors=errors)
        if not content.strip():
            errors = {"text": "Paste a zone file or choose one."}
            return page.show(failed="import", errors=errors)

        def errors_of(exc: Exception) -> dict[str, str]:
            # The import form has one field: every error goes to it, named by its set.
            found = _errors(exc)
            found.setdefault("text", "")
            lines = [f"{k}: {v}" if k and k != "text" else v for k, v in found.items() if v]
            return {"text": "; ".join(lines)}

        return page.change(
            "import",
            lambda: zones.import_zone_file(
                page.desk.uow(),
                page.actor,
                page.name,
                content,
                page.desk.settings.dns,
                replace=bool(replace),
                reason=reason.strip(),
            ),
            lambda result: (
                f"Imported: {result.created} sets added, {result.replaced} replaced, "
                f"{result.deleted} deleted, {result.unchanged} unchanged."
                + (" " + " ".join(result.notes) if result.notes else "")
            ),
            f"{base}/{page.name}",
            errors=errors_of,
            typed={"text": content[:MAX_IMPORT_BYTES]},
        )

    @router.get(base + "/{name}/export")
    def export_zone(desk: DeskDep, actor: ActorDep, name: str) -> Response:
        text = zones.export_zone_file(desk.uow(), actor, name, desk.settings.dns)
        return mime.download(text.encode(), f"{name.rstrip('.')}.zone", "text/dns; charset=utf-8")

    @router.post(base + "/{name}/delete")
    def delete_zone(
        page: ZonePageDep,
        confirm: Annotated[str, Form()] = "",
        reason: Annotated[str, Form()] = "",
    ) -> Response:
        name = page.name
        if confirm.strip().rstrip(".").lower() != name.rstrip(".").lower():
            errors = {"confirm": f"Type {name} to confirm."}
            return page.show(failed="delete", errors=errors)
        return page.change(
            "delete",
            lambda: zones.delete_zone(page.desk.uow(), page.actor, name, reason=reason.strip()),
            lambda _: f"Zone {name} deleted; we no longer answer for it.",
            base,
        )

    if mount.staff:

        @router.post(base + "/{name}/nameservers")
        def set_nameservers(
            page: ZonePageDep,
            nameservers: Annotated[str, Form()] = "",
            reason: Annotated[str, Form()] = "",
        ) -> Response:
            hosts = [h.strip() for h in nameservers.replace(",", "\n").splitlines() if h.strip()]
            return page.change(
                "nameservers",
                lambda: zones.set_nameservers(
                    page.desk.uow(), page.actor, page.name, hosts, reason=reason.strip()
                ),
                lambda _: f"Name servers of {page.name} changed; the customer is told.",
                f"{base}/{page.name}",
                # The list is one field: its errors go there, each named by its entry.
                errors=lambda exc: {
                    "nameservers": "; ".join(
                        f"{k}: {v}" if k else v for k, v in _errors(exc).items()
                    )
                },
                typed={"nameservers": nameservers, "reason": reason},
            )

    return router


portal_router = build_router(Mount("/portal/dns", staff=False), customer_actor)
staff_router = build_router(Mount("/staff/dns", staff=True), staff_actor)
