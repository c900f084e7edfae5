"""The REST API over real HTTP: uvicorn on loopback, httpx as the client, the desk's database
behind it (SQLite, and PostgreSQL when ABUSEDESK_TEST_DATABASE_URL is set)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from abusedesk.accounts import service as accounts
from abusedesk.accounts.choices import Role
from abusedesk.accounts.permissions import SYSTEM
from abusedesk.bootstrap import bootstrap
from abusedesk.clock import FakeClock
from abusedesk.config import Settings
from abusedesk.store.engine import make_engine
from abusedesk.web.app import create_app
from tests import factories
from tests.e2e.conftest import Api, serve

V1 = "/api/v1"


def at(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def unnamed(response: httpx.Response, name: str) -> str:
    """The error message with the name it quotes taken out."""
    return str(response.json()["detail"]).replace(name, "<name>")


def open_case(client: httpx.Client, **body: Any) -> dict[str, Any]:
    response = client.post(f"{V1}/cases", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["created"] is True
    return response.json()["case"]


def post(client: httpx.Client, case: dict[str, Any], event: str, **body: Any) -> httpx.Response:
    return client.post(f"{V1}/cases/{case['id']}/{event}", json=body)


def moved(client: httpx.Client, case: dict[str, Any], event: str, **body: Any) -> dict[str, Any]:
    response = post(client, case, event, **body)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def c1(api: Api) -> factories.Customer:
    return factories.customer(api.desk, "C1001", servers=2, base="198.51.100")


@pytest.fixture
def c2(api: Api) -> factories.Customer:
    return factories.customer(api.desk, "C2002", servers=1, base="203.0.113")


# -- authentication -------------------------------------------------------------------------


@pytest.mark.parametrize("path", [f"{V1}/cases", f"{V1}/accounts", f"{V1}/cases/1"])
def test_no_token_is_401_with_a_bearer_challenge(api: Api, path: str) -> None:
    response = api.client().get(path)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer adk_not-a-token-anyone-was-given",
        "Bearer not-even-shaped-right",
        "Basic dXNlcjpwYXNz",
        "Bearer",
    ],
)
def test_a_bad_token_is_401(api: Api, authorization: str) -> None:
    api.token(Role.ADMIN)  # a real token exists; the one sent is not it
    response = httpx.get(
        f"{api.url}{V1}/cases", headers={"Authorization": authorization}, timeout=10
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_revoked_and_expired_tokens_stop_working(api: Api, clock: FakeClock) -> None:
    accounts.add_user(api.desk.uow(), SYSTEM, accounts.NewUser("ops@provider.example", Role.NOC))
    revoked = accounts.issue_token(api.desk.uow(), SYSTEM, "ops@provider.example", "one")
    expiring = accounts.issue_token(
        api.desk.uow(), SYSTEM, "ops@provider.example", "two", clock.now() + timedelta(hours=1)
    )
    assert api.client(revoked.token).get(f"{V1}/cases").status_code == 200
    assert api.client(expiring.token).get(f"{V1}/cases").status_code == 200

    accounts.revoke_token(api.desk.uow(), SYSTEM, revoked.record.prefix)
    clock.advance(timedelta(hours=2))

    assert api.client(revoked.token).get(f"{V1}/cases").status_code == 401
    assert api.client(expiring.token).get(f"{V1}/cases").status_code == 401


# -- who may do what ------------------------------------------------------------------------


def test_a_role_without_the_permission_is_403(api: Api, c1: factories.Customer) -> None:
    analyst = api.as_role(Role.ANALYST)
    noc = api.as_role(Role.NOC)
    customer = api.as_role(Role.CUSTOMER, c1.reference)
    case = open_case(analyst, account_reference=c1.reference, category="spam")

    assert post(customer, case, "disconnect", reason="I would rather not").status_code == 403
    assert post(customer, case, "close", resolution="invalid", reason="no").status_code == 403
    assert post(noc, case, "terminate", reason="noc may not terminate").status_code == 403
    account = {"reference": "C3003", "name": "Not by an analyst"}
    assert analyst.post(f"{V1}/accounts", json=account).status_code == 403
    assert customer.get(f"{V1}/accounts").status_code == 403
    opened = customer.post(
        f"{V1}/cases", json={"account_reference": c1.reference, "category": "spam"}
    )
    assert opened.status_code == 403
    # Refused means unchanged.
    assert analyst.get(f"{V1}/cases/{case['id']}").json()["state"] == "open"
    assert api.as_role(Role.ADMIN).get(f"{V1}/accounts/C3003").status_code == 404


def test_a_customer_sees_its_own_account_alone(
    api: Api, c1: factories.Customer, c2: factories.Customer
) -> None:
    staff = api.as_role(Role.ANALYST)
    mine = open_case(staff, account_reference=c1.reference, category="spam")
    theirs = open_case(staff, account_reference=c2.reference, category="spam")
    admin = api.as_role(Role.ADMIN)
    domain = {"account_reference": c2.reference, "name": "theirs.example"}
    assert admin.post(f"{V1}/domains", json=domain).status_code == 201
    customer = api.as_role(Role.CUSTOMER, c1.reference)

    assert customer.get(f"{V1}/cases/{mine['id']}").status_code == 200
    assert customer.get(f"{V1}/cases/{theirs['id']}").status_code == 404
    assert post(customer, theirs, "acknowledge", plan="not mine").status_code == 404
    assert [c["id"] for c in customer.get(f"{V1}/cases").json()] == [mine["id"]]
    # Naming the other account is the same as naming one that does not exist.
    other = customer.get(f"{V1}/cases", params={"account": c2.reference})
    absent = customer.get(f"{V1}/cases", params={"account": "C9999"})
    assert other.status_code == absent.status_code == 404
    assert unnamed(other, c2.reference) == unnamed(absent, "C9999")

    assert customer.get(f"{V1}/accounts/{c1.reference}").status_code == 200
    assert customer.get(f"{V1}/accounts/{c2.reference}").status_code == 404
    assert customer.get(f"{V1}/servers/{c2.hostnames[0]}").status_code == 404
    servers = customer.get(f"{V1}/servers").json()
    assert sorted(s["hostname"] for s in servers) == sorted(c1.hostnames)
    assert customer.get(f"{V1}/domains").json() == []
    # Staff see both.
    assert len(staff.get(f"{V1}/cases").json()) == 2


# -- the Methods of Resolution over HTTP ----------------------------------------------------


def test_open_acknowledge_fix_reject_fix_verify(
    api: Api, c1: factories.Customer, clock: FakeClock
) -> None:
    staff = api.as_role(Role.ANALYST)
    customer = api.as_role(Role.CUSTOMER, c1.reference)
    body = {
        "account_reference": c1.reference,
        "category": "spam",
        "server_hostname": c1.hostnames[0],
        "summary": "spamvertised URL",
    }
    case = open_case(staff, **body)
    assert case["state"] == "open"
    assert case["ticket"] == f"AD-{case['id']:06d}"
    assert at(case["deadline_at"]) == clock.now() + timedelta(hours=24)

    again = staff.post(f"{V1}/cases", json=body | {"summary": "a second report"})
    assert again.status_code == 200
    assert again.json()["created"] is False
    assert again.json()["case"]["id"] == case["id"]

    clock.advance(timedelta(hours=1))
    state = moved(customer, case, "acknowledge", plan="removing the page today")
    assert (state["state"], state["plan"]) == ("acknowledged", "removing the page today")
    assert customer.post(f"{V1}/cases/{case['id']}/report-fix").json()["state"] == "fix_reported"
    assert moved(staff, case, "reject-fix", reason="the URL still answers")["state"] == (
        "acknowledged"
    )
    assert moved(customer, case, "report-fix", note="really gone now")["state"] == "fix_reported"
    closed = moved(staff, case, "verify-fix")
    assert (closed["state"], closed["resolution"]) == ("closed", "resolved")
    assert closed["deadline_at"] is None

    full = customer.get(f"{V1}/cases/{case['id']}").json()
    assert full["account_reference"] == c1.reference
    assert full["server_hostname"] == c1.hostnames[0]
    assert at(full["closed_at"]) == clock.now()
    assert [e["kind"] for e in full["timeline"]] == [
        "opened",
        "report_attached",
        "acknowledged",
        "fix_reported",
        "fix_rejected",
        "fix_reported",
        "fix_verified",
    ]
    rejected = full["timeline"][4]
    assert (rejected["from_state"], rejected["to_state"]) == ("fix_reported", "acknowledged")
    assert rejected["note"] == "the URL still answers"


def test_disconnect_contact_reconnect(api: Api, c1: factories.Customer, clock: FakeClock) -> None:
    staff = api.as_role(Role.NOC)
    customer = api.as_role(Role.CUSTOMER, c1.reference)
    hostname = c1.hostnames[1]
    case = open_case(
        staff,
        account_reference=c1.reference,
        category="denial_of_service",
        server_hostname=hostname,
    )

    cut = moved(staff, case, "disconnect", reason="outbound flood")
    assert cut["state"] == "disconnected"
    assert at(cut["deadline_at"]) == clock.now() + timedelta(days=7)
    assert staff.get(f"{V1}/servers/{hostname}").json()["status"] == "disconnected"
    assert staff.get(f"{V1}/accounts/{c1.reference}").json()["status"] == "suspended"

    refused = post(staff, case, "reconnect", reason="too early")
    assert refused.status_code == 409
    assert "contact" in refused.json()["detail"]

    contacted = moved(customer, case, "contact", note="we found the compromised container")
    assert (contacted["state"], contacted["customer_contacted"]) == ("disconnected", True)
    back = moved(staff, case, "reconnect", reason="customer cleaned up")
    assert (back["state"], back["resolution"]) == ("closed", "resolved")
    assert staff.get(f"{V1}/servers/{hostname}").json()["status"] == "active"
    assert staff.get(f"{V1}/accounts/{c1.reference}").json()["status"] == "active"


def test_deadline_continued_violation_note_and_close(
    api: Api, c1: factories.Customer, clock: FakeClock
) -> None:
    staff = api.as_role(Role.ANALYST)
    case = open_case(staff, account_reference=c1.reference, category="spam")

    later = clock.now() + timedelta(days=3)
    moved_deadline = moved(staff, case, "deadline", deadline=later.isoformat(), reason="holiday")
    assert at(moved_deadline["deadline_at"]) == later
    # The default policy shortens the window of a continuing violation to four hours.
    shorter = moved(staff, case, "continued-violation", reason="new reports keep coming")
    assert at(shorter["deadline_at"]) == clock.now() + timedelta(hours=4)
    noted = staff.post(f"{V1}/cases/{case['id']}/notes", json={"text": "called the customer"})
    assert noted.status_code == 200
    closed = moved(staff, case, "close", resolution="no_violation", reason="lawful content")
    assert (closed["state"], closed["resolution"]) == ("closed", "no_violation")

    kinds = [e["kind"] for e in staff.get(f"{V1}/cases/{case['id']}").json()["timeline"]]
    assert kinds == ["opened", "deadline_changed", "continued_violation", "note", "closed"]
    again = post(staff, case, "close", resolution="invalid", reason="twice")
    assert again.status_code == 409


def test_terminate(api: Api, c1: factories.Customer) -> None:
    staff = api.as_role(Role.LEGAL)
    case = open_case(staff, account_reference=c1.reference, category="malware")
    assert moved(staff, case, "terminate", reason="third strike")["state"] == "terminated"
    assert staff.get(f"{V1}/accounts/{c1.reference}").json()["status"] == "terminated"
    assert post(staff, case, "disconnect", reason="already gone").status_code == 409


def test_an_event_the_state_does_not_allow_is_409(api: Api, c1: factories.Customer) -> None:
    staff = api.as_role(Role.ANALYST)
    case = open_case(staff, account_reference=c1.reference, category="spam")
    for event, body in [
        ("verify-fix", {}),
        ("reject-fix", {"reason": "nothing was reported"}),
        ("reconnect", {"reason": "nothing is cut"}),
    ]:
        response = post(staff, case, event, **body)
        assert response.status_code == 409, event
        assert "open" in response.json()["detail"]
    assert staff.get(f"{V1}/cases/{case['id']}").json()["state"] == "open"


def test_a_missing_plan_or_reason_is_422(
    api: Api, c1: factories.Customer, clock: FakeClock
) -> None:
    staff = api.as_role(Role.ANALYST)
    customer = api.as_role(Role.CUSTOMER, c1.reference)
    case = open_case(staff, account_reference=c1.reference, category="spam")

    # Left out: the request does not parse (FastAPI's own answer).
    missing = post(customer, case, "acknowledge")
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["body", "plan"]
    assert post(staff, case, "disconnect").status_code == 422
    assert post(staff, case, "close", reason="which resolution?").status_code == 422
    assert post(staff, case, "acknowledge", plan="x", surprise=1).status_code == 422

    # Present but empty: the state machine's answer, with every problem listed.
    blank = post(customer, case, "acknowledge", plan="   ")
    assert blank.status_code == 422
    assert blank.json()["problems"]
    assert "acknowledgement" in blank.json()["detail"]
    for event in ("disconnect", "terminate", "continued-violation"):
        response = post(staff, case, event, reason="")
        assert response.status_code == 422, event
        assert response.json()["problems"] == [response.json()["detail"]]

    naive = post(staff, case, "deadline", deadline="2026-03-09T09:00:00", reason="no zone")
    assert naive.status_code == 422
    past = (clock.now() - timedelta(hours=1)).isoformat()
    assert post(staff, case, "deadline", deadline=past, reason="past").status_code == 422
    assert staff.get(f"{V1}/cases/{case['id']}").json()["state"] == "open"


def test_case_filters(
    api: Api, c1: factories.Customer, c2: factories.Customer, clock: FakeClock
) -> None:
    staff = api.as_role(Role.ANALYST)
    spam = open_case(
        staff, account_reference=c1.reference, category="spam", server_hostname=c1.hostnames[0]
    )
    malware = open_case(
        staff,
        account_reference=c1.reference,
        category="malware",
        server_hostname=c1.hostnames[1],
        resource="http://bad.c1001.example/dropper.exe",
    )
    phishing = open_case(staff, account_reference=c2.reference, category="phishing")
    moved(staff, phishing, "close", resolution="invalid", reason="not ours")

    def ids(**params: Any) -> list[int]:
        response = staff.get(f"{V1}/cases", params=params)
        assert response.status_code == 200, response.text
        return [c["id"] for c in response.json()]

    assert ids() == [phishing["id"], malware["id"], spam["id"]]
    assert ids(account=c1.reference) == [malware["id"], spam["id"]]
    assert ids(server=c1.hostnames[1]) == [malware["id"]]
    assert ids(state=["open"]) == [malware["id"], spam["id"]]
    assert ids(state=["open", "closed"]) == [phishing["id"], malware["id"], spam["id"]]
    assert ids(category="spam") == [spam["id"]]
    assert ids(severity="high") == [phishing["id"], malware["id"]]
    assert ids(resource="dropper") == [malware["id"]]
    assert ids(due_before=(clock.now() + timedelta(hours=5)).isoformat()) == [malware["id"]]
    assert ids(limit=1, offset=1) == [malware["id"]]
    assert staff.get(f"{V1}/cases", params={"state": "sleeping"}).status_code == 422
    assert staff.get(f"{V1}/cases", params={"limit": 0}).status_code == 422
    assert staff.get(f"{V1}/cases", params={"server": "nowhere.example"}).status_code == 404

    listed = staff.get(f"{V1}/cases", params={"category": "malware"}).json()[0]
    assert listed["account_reference"] == c1.reference
    assert listed["server_hostname"] == c1.hostnames[1]
    assert listed["severity"] == "high"


# -- inventory ------------------------------------------------------------------------------


def test_inventory_round_trip(api: Api, clock: FakeClock) -> None:
    admin = api.as_role(Role.NOC)  # NOC keeps the inventory
    account = {
        "reference": "C4004",
        "name": "Example Hosting Ltd",
        "contacts": [{"kind": "abuse", "email": "Abuse@C4004.example"}],
    }
    created = admin.post(f"{V1}/accounts", json=account)
    assert created.status_code == 201, created.text
    assert created.json()["contacts"][0]["email"] == "abuse@c4004.example"
    assert admin.post(f"{V1}/accounts", json=account).status_code == 409
    assert admin.post(f"{V1}/accounts", json={"reference": "C5"}).status_code == 422

    patched = admin.patch(f"{V1}/accounts/C4004", json={"name": "Example Hosting GmbH"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["name"] == "Example Hosting GmbH"
    assert len(patched.json()["contacts"]) == 1
    assert admin.patch(f"{V1}/accounts/C4004", json={"name": None}).status_code == 422
    assert admin.patch(f"{V1}/accounts/C9999", json={"name": "x"}).status_code == 404

    server = {
        "account_reference": "C4004",
        "hostname": "Web1.C4004.example.",
        "plan": "dedicated-l",
        "prefixes": ["192.0.2.10/32"],
    }
    made = admin.post(f"{V1}/servers", json=server)
    assert made.status_code == 201, made.text
    assert made.json()["hostname"] == "web1.c4004.example"
    assert [a["prefix"] for a in made.json()["assignments"]] == ["192.0.2.10/32"]
    assert admin.post(f"{V1}/servers", json=server).status_code == 409
    unknown = admin.post(f"{V1}/servers", json=server | {"account_reference": "C9999"})
    assert unknown.status_code == 404

    changed = admin.patch(f"{V1}/servers/web1.c4004.example", json={"plan": "dedicated-xl"})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["plan"], changed.json()["account_reference"]) == (
        "dedicated-xl",
        "C4004",
    )

    # A start without an offset is UTC.
    start = clock.now().replace(tzinfo=None) + timedelta(hours=1)
    assigned = admin.post(
        f"{V1}/servers/web1.c4004.example/assignments",
        json={"prefix": "2001:db8:4004::/48", "valid_from": start.isoformat()},
    )
    assert assigned.status_code == 201, assigned.text
    assert assigned.json()["family"] == 6
    assert at(assigned.json()["valid_from"]) == clock.now() + timedelta(hours=1)
    clash = admin.post(
        f"{V1}/servers/web1.c4004.example/assignments", json={"prefix": "192.0.2.10/32"}
    )
    assert clash.status_code == 409
    clock.advance(timedelta(hours=2))
    ended = admin.post(f"{V1}/assignments/end", json={"prefix": "192.0.2.10/32"})
    assert ended.status_code == 200, ended.text
    assert at(ended.json()["valid_until"]) == clock.now()
    assert admin.post(f"{V1}/assignments/end", json={"prefix": "192.0.2.10/32"}).status_code == 404
    assert admin.post(f"{V1}/assignments/end", json={"prefix": "192.0.2.1/24"}).status_code == 422

    domain = {
        "account_reference": "C4004",
        "name": "shop.c4004.example",
        "server_hostname": "web1.c4004.example",
    }
    assert admin.post(f"{V1}/domains", json=domain).status_code == 201
    assert admin.post(f"{V1}/domains", json=domain).status_code == 409
    listed = admin.get(f"{V1}/domains", params={"account": "C4004"}).json()
    assert listed == [
        {
            "name": "shop.c4004.example",
            "account_reference": "C4004",
            "server_hostname": "web1.c4004.example",
            "created_at": listed[0]["created_at"],
        }
    ]
    assert [s["hostname"] for s in admin.get(f"{V1}/servers").json()] == ["web1.c4004.example"]

    detail = admin.get(f"{V1}/accounts/C4004").json()
    assert [s["hostname"] for s in detail["servers"]] == ["web1.c4004.example"]
    assert {a["prefix"]: a["valid_until"] is None for a in detail["servers"][0]["assignments"]} == {
        "192.0.2.10/32": False,
        "2001:db8:4004::/48": True,
    }
    assert detail["domains"][0]["server_hostname"] == "web1.c4004.example"
    assert [a["reference"] for a in admin.get(f"{V1}/accounts").json()] == ["C4004"]

    # History is not deleted: an account with a server stays.
    assert admin.delete(f"{V1}/accounts/C4004").status_code == 409
    assert admin.delete(f"{V1}/domains/shop.c4004.example").status_code == 204
    assert admin.delete(f"{V1}/domains/shop.c4004.example").status_code == 404
    spare = server | {"hostname": "spare.c4004.example", "prefixes": []}
    assert admin.post(f"{V1}/servers", json=spare).status_code == 201
    assert admin.delete(f"{V1}/servers/spare.c4004.example").status_code == 204
    assert admin.get(f"{V1}/servers/spare.c4004.example").status_code == 404

    assert (
        admin.post(f"{V1}/accounts", json={"reference": "C6006", "name": "Brief"}).status_code
        == 201
    )
    assert admin.delete(f"{V1}/accounts/C6006").status_code == 204
    assert admin.get(f"{V1}/accounts/C6006").status_code == 404


# -- operations and the API's description ---------------------------------------------------


def test_healthz(api: Api) -> None:
    response = api.client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "reachable"}


def test_healthz_is_503_without_a_database(tmp_path: Path, clock: FakeClock) -> None:
    gone = tmp_path / "no such directory" / "abusedesk.sqlite3"
    desk = bootstrap(
        Settings(home=tmp_path, database_url=f"sqlite:///{gone}"),
        clock=clock,
        engine=make_engine(f"sqlite:///{gone}"),
    )
    with serve(create_app(desk)) as url, httpx.Client(base_url=url, timeout=10) as client:
        response = client.get("/healthz")
    desk.engine.dispose()
    assert response.status_code == 503
    assert response.json()["database"] == "unreachable"


def test_metrics(api: Api, c1: factories.Customer) -> None:
    open_case(api.as_role(Role.ANALYST), account_reference=c1.reference, category="phishing")
    response = api.client().get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'abusedesk_cases_opened_total{category="phishing"}' in response.text
    assert "# TYPE abusedesk_case_transitions_total counter" in response.text


def test_openapi_and_docs(api: Api) -> None:
    spec = api.client().get("/api/openapi.json").json()
    assert spec["info"]["title"] == "abusedesk API"
    paths = spec["paths"]
    for path in [
        "/api/v1/cases",
        "/api/v1/cases/{case_id}",
        "/api/v1/cases/{case_id}/acknowledge",
        "/api/v1/cases/{case_id}/report-fix",
        "/api/v1/cases/{case_id}/verify-fix",
        "/api/v1/cases/{case_id}/reject-fix",
        "/api/v1/cases/{case_id}/contact",
        "/api/v1/cases/{case_id}/continued-violation",
        "/api/v1/cases/{case_id}/disconnect",
        "/api/v1/cases/{case_id}/reconnect",
        "/api/v1/cases/{case_id}/terminate",
        "/api/v1/cases/{case_id}/close",
        "/api/v1/cases/{case_id}/deadline",
        "/api/v1/cases/{case_id}/notes",
        "/api/v1/accounts",
        "/api/v1/accounts/{reference}",
        "/api/v1/servers",
        "/api/v1/servers/{hostname}",
        "/api/v1/servers/{hostname}/assignments",
        "/api/v1/assignments/end",
        "/api/v1/domains",
        "/api/v1/domains/{name}",
        "/healthz",
        "/metrics",
    ]:
        assert path in paths, path
    states = spec["components"]["schemas"]["CaseState"]["enum"]
    assert states == [
        "open",
        "acknowledged",
        "fix_reported",
        "disconnected",
        "terminated",
        "closed",
    ]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"

    docs = api.client().get("/api/docs")
    assert docs.status_code == 200
    assert docs.headers["content-type"].startswith("text/html")
    assert "swagger-ui" in docs.text
    assert "/api/openapi.json" in docs.text


def test_customers_see_the_desk_not_the_analyst_and_no_internal_notes(
    api: Api, c1: factories.Customer
) -> None:
    from abusedesk.cases.service import DESK_LABEL

    staff = api.as_role(Role.ANALYST)
    customer = api.as_role(Role.CUSTOMER, c1.reference)
    opened = staff.post(
        "/api/v1/cases",
        json={"account_reference": c1.reference, "category": "spam", "summary": "spam run"},
    )
    case_id = opened.json()["case"]["id"]
    staff.post(f"/api/v1/cases/{case_id}/notes", json={"text": "customer is a reseller; careful"})
    customer.post(f"/api/v1/cases/{case_id}/acknowledge", json={"plan": "closing the relay"})
    seen_by_staff = staff.get(f"/api/v1/cases/{case_id}").json()["timeline"]
    seen_by_customer = customer.get(f"/api/v1/cases/{case_id}").json()["timeline"]
    assert any("reseller" in e["note"] for e in seen_by_staff)
    assert not any("reseller" in e["note"] for e in seen_by_customer)
    assert any(e["actor"].startswith("analyst:") for e in seen_by_staff)
    actors = {e["actor"] for e in seen_by_customer}
    assert DESK_LABEL in actors
    assert not any(a.startswith("analyst:") for a in actors)
    assert all(e["data"] == {} for e in seen_by_customer)
    account = customer.get(f"/api/v1/accounts/{c1.reference}").json()
    assert account["notes"] == ""


def test_staff_reclassify_over_the_api(api: Api, c1: factories.Customer) -> None:
    staff = api.as_role(Role.ANALYST)
    opened = staff.post(
        "/api/v1/cases", json={"account_reference": c1.reference, "category": "spam"}
    )
    case_id = opened.json()["case"]["id"]
    body = {"category": "phishing", "severity": "high", "reason": "a phishing kit, not spam"}
    refused = api.as_role(Role.CUSTOMER, c1.reference).post(
        f"/api/v1/cases/{case_id}/reclassify", json=body
    )
    assert refused.status_code == 403
    done = staff.post(f"/api/v1/cases/{case_id}/reclassify", json=body)
    assert done.status_code == 200, done.text
    assert (done.json()["category"], done.json()["severity"]) == ("phishing", "high")
    missing = staff.post(f"/api/v1/cases/{case_id}/reclassify", json={"category": "spam"})
    assert missing.status_code == 422
