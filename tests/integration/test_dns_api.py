"""Managed DNS over the REST API, served by uvicorn on loopback: zones, record sets by name and
type, per-field errors, another account's zone as 404, zone files in and out, the history."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import httpx
import pytest

from abusedesk.accounts import service as accounts
from abusedesk.accounts.choices import AccountRole, Role
from abusedesk.accounts.permissions import SYSTEM
from abusedesk.bootstrap import Desk
from abusedesk.web.app import create_app
from tests import factories
from tests.e2e.conftest import Api, serve

V1 = "/api/v1"
ZONE = "c1001-shop.net"
_emails = itertools.count(1)


@pytest.fixture
def api(desk: Desk) -> Iterator[Api]:
    factories.customer(desk, "C1001")
    factories.customer(desk, "C2002", base="203.0.113")
    with serve(create_app(desk)) as url:
        served = Api(url, desk)
        yield served
        served.close()


def client(
    api: Api,
    role: Role = Role.CUSTOMER,
    reference: str | None = "C1001",
    account_role: AccountRole | None = AccountRole.OWNER,
) -> httpx.Client:
    email = f"{role.value}{next(_emails)}@users.example"
    new = accounts.NewUser(
        email=email,
        role=role,
        account_reference=reference if role is Role.CUSTOMER else None,
        account_role=account_role if role is Role.CUSTOMER else None,
    )
    accounts.add_user(api.desk.uow(), SYSTEM, new)
    return api.client(accounts.issue_token(api.desk.uow(), SYSTEM, email, "dns").token)


def created(owner: httpx.Client, name: str = ZONE) -> dict:
    response = owner.post(f"{V1}/zones", json={"name": name})
    assert response.status_code == 201, response.text
    return response.json()


def test_a_customer_manages_its_zone_through_the_api(api: Api) -> None:
    owner = client(api)
    zone = created(owner, "C1001-Shop.net.")
    assert zone["name"] == ZONE
    assert zone["account"] == "C1001"
    assert zone["rrsets"] == []
    path = f"{V1}/zones/{ZONE}/rrsets"

    response = owner.put(f"{path}/www/A", json={"ttl": 300, "records": ["192.0.2.1"]})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "subname": "www",
        "name": f"www.{ZONE}.",
        "type": "A",
        "ttl": 300,
        "records": ["192.0.2.1"],
    }
    response = owner.put(f"{path}/@/mx", json={"records": ["10 mail"]})
    assert response.json()["records"] == [f"10 mail.{ZONE}."]
    assert response.json()["ttl"] == 3600  # the provider's default
    assert owner.get(f"{path}/@/MX").json()["subname"] == ""
    listed = owner.get(f"{V1}/zones").json()
    assert [z["name"] for z in listed] == [ZONE]
    detail = owner.get(f"{V1}/zones/{ZONE}").json()
    assert [(s["subname"], s["type"]) for s in detail["rrsets"]] == [("", "MX"), ("www", "A")]

    assert owner.delete(f"{path}/www/A").status_code == 204
    assert owner.get(f"{path}/www/A").status_code == 404
    history = owner.get(f"{V1}/zones/{ZONE}/history").json()
    assert [h["kind"] for h in history] == [
        "rrset_deleted",
        "rrset_created",
        "rrset_created",
        "zone_created",
    ]
    assert history[0]["before"] == {"ttl": 300, "records": ["192.0.2.1"]}
    assert owner.delete(f"{V1}/zones/{ZONE}").status_code == 204
    assert owner.get(f"{V1}/zones/{ZONE}").status_code == 404


def test_refusals_name_each_field(api: Api) -> None:
    owner = client(api)
    created(owner)
    response = owner.put(
        f"{V1}/zones/{ZONE}/rrsets/www/A", json={"ttl": 1, "records": ["192.0.2.1", "nope"]}
    )
    assert response.status_code == 422
    problems = response.json()["problems"]
    assert any(p.startswith("ttl: ") for p in problems)
    assert any(p.startswith("records[1]: not a valid A record") for p in problems)
    response = owner.put(f"{V1}/zones/{ZONE}/rrsets/@/SOA", json={"records": ["x"]})
    assert response.status_code == 422
    assert response.json()["problems"][0].startswith("type: ")
    for name in ("localhost", "co.uk", "foo.test"):
        response = owner.post(f"{V1}/zones", json={"name": name})
        assert response.status_code == 422, name
        assert response.json()["problems"][0].startswith("name: ")
    assert owner.post(f"{V1}/zones", json={"name": ZONE}).status_code == 409


def test_another_accounts_zone_is_404_and_its_subdomain_409(api: Api) -> None:
    owner = client(api)
    created(owner)
    stranger = client(api, reference="C2002")
    for method, path, body in [
        ("GET", f"{V1}/zones/{ZONE}", None),
        ("DELETE", f"{V1}/zones/{ZONE}", None),
        ("GET", f"{V1}/zones/{ZONE}/history", None),
        ("GET", f"{V1}/zones/{ZONE}/export", None),
        ("PUT", f"{V1}/zones/{ZONE}/rrsets/www/A", {"records": ["192.0.2.1"]}),
        ("DELETE", f"{V1}/zones/{ZONE}/rrsets/www/A", None),
        ("POST", f"{V1}/zones/{ZONE}/import", None),
    ]:
        if method == "POST":
            response = stranger.post(
                path, content="www A 192.0.2.1\n", headers={"Content-Type": "text/dns"}
            )
        else:
            response = stranger.request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
    assert stranger.get(f"{V1}/zones").json() == []
    response = stranger.post(f"{V1}/zones", json={"name": f"www.{ZONE}"})
    assert response.status_code == 409
    # A customer cannot create a zone in another account's name.
    response = stranger.post(f"{V1}/zones", json={"name": "c2002-own.net", "account": "C1001"})
    assert response.status_code == 404
    member = client(api, account_role=AccountRole.MEMBER)
    assert member.get(f"{V1}/zones/{ZONE}").status_code == 200
    response = member.put(f"{V1}/zones/{ZONE}/rrsets/www/A", json={"records": ["192.0.2.1"]})
    assert response.status_code == 403


def test_zone_file_import_and_export(api: Api) -> None:
    owner = client(api)
    created(owner)
    text = f"$ORIGIN {ZONE}.\n$TTL 600\n@ IN MX 10 mail\nmail IN A 192.0.2.25\n"
    response = owner.post(
        f"{V1}/zones/{ZONE}/import", content=text, headers={"Content-Type": "text/dns"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["created"] == 2
    response = owner.post(
        f"{V1}/zones/{ZONE}/import",
        content=text + "bad IN A 999.1.1.1\n",
        headers={"Content-Type": "text/plain"},
    )
    assert response.status_code == 422
    assert response.json()["problems"][0].startswith("text: near line")
    exported = owner.get(f"{V1}/zones/{ZONE}/export")
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/dns")
    assert "mail 600 IN A 192.0.2.25" in exported.text
    response = owner.post(
        f"{V1}/zones/{ZONE}/import?replace=true",
        content=exported.text,
        headers={"Content-Type": "text/dns"},
    )
    assert response.json()["unchanged"] == 2
    assert response.json()["created"] == 0


def test_staff_change_any_zone_and_its_name_servers(api: Api) -> None:
    owner = client(api)
    created(owner)
    noc = client(api, Role.NOC)
    analyst = client(api, Role.ANALYST)
    assert [z["name"] for z in analyst.get(f"{V1}/zones?account=C1001").json()] == [ZONE]
    response = analyst.put(f"{V1}/zones/{ZONE}/rrsets/www/A", json={"records": ["192.0.2.1"]})
    assert response.status_code == 403
    response = noc.put(
        f"{V1}/zones/{ZONE}/rrsets/www/A",
        json={"records": ["192.0.2.1"], "reason": "restoring the customer's web site"},
    )
    assert response.status_code == 200, response.text
    response = noc.put(
        f"{V1}/zones/{ZONE}/nameservers",
        json={"nameservers": ["ns1.other-dns.net", "ns2.other-dns.net"]},
    )
    assert response.status_code == 200, response.text
    assert response.json()["nameservers"] == ["ns1.other-dns.net.", "ns2.other-dns.net."]
    response = owner.put(f"{V1}/zones/{ZONE}/nameservers", json={"nameservers": []})
    assert response.status_code == 403
    history = owner.get(f"{V1}/zones/{ZONE}/history").json()
    assert history[0]["kind"] == "nameservers_changed"
    assert history[0]["staff"] is True
    # Staff create zones in a named account.
    response = noc.post(f"{V1}/zones", json={"name": "c2002-shop.net", "account": "C2002"})
    assert response.status_code == 201, response.text
    assert response.json()["account"] == "C2002"


def test_the_dns_api_needs_a_token_and_is_described(api: Api) -> None:
    assert api.client().get(f"{V1}/zones").status_code == 401
    paths = api.client().get("/api/openapi.json").json()["paths"]
    for path in [
        "/api/v1/zones",
        "/api/v1/zones/{name}",
        "/api/v1/zones/{name}/rrsets/{subname}/{rtype}",
        "/api/v1/zones/{name}/import",
        "/api/v1/zones/{name}/export",
        "/api/v1/zones/{name}/history",
    ]:
        assert path in paths, path
