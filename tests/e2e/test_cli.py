"""The `abusedesk` command as an operator runs it: a real process, its exit code and output."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import dns.message
import dns.query
import httpx
import pytest

from tests.web_client import csrf_token

EXE = [sys.executable, "-m", "abusedesk.cli"]


def run(
    home: Path,
    *args: str,
    check: bool = True,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "ABUSEDESK_HOME": str(home), "COLUMNS": "200", **(env or {})}
    environment.pop("ABUSEDESK_DATABASE_URL", None)
    done = subprocess.run(
        [*EXE, *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
        check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("demo") / "var"
    out = run(home, "init", "--demo").stdout
    assert "20 customers, 100 servers" in out
    assert "admin@provider.example" in out
    (home.parent / "init.out").write_text(out)
    return home


def _printed_password(home: Path, email: str) -> str:
    """The password `init --demo` printed for a login, read from its table."""
    for line in (home.parent / "init.out").read_text().splitlines():
        cells = [cell.strip() for cell in re.split(r"[│|]", line)]
        if email in cells:
            return cells[cells.index(email) + 1]
    raise AssertionError(f"no printed login for {email}")


def _sign_in(client: httpx.Client, email: str, password: str) -> httpx.Response:
    form = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token, form[:500]
    return client.post(
        "/login", data={"email": email, "password": password, "csrf_token": token.group(1)}
    )


def test_help_reads_well() -> None:
    done = subprocess.run([*EXE, "--help"], capture_output=True, text=True, check=True)
    for command in ("init", "run", "case", "inventory", "audit", "policy", "user", "sweep"):
        assert command in done.stdout


def test_demo_provider_and_a_case_through_its_life(demo_home: Path) -> None:
    listed = run(demo_home, "case", "list", "--json").stdout
    # six cases opened by hand, and the spam burst the traffic detectors found
    assert listed.count('"ticket"') == 7
    opened = run(
        demo_home,
        "case",
        "open",
        "--account",
        "C1003",
        "--category",
        "phishing",
        "--server",
        "vps1.cobalt.example",
        "--summary",
        "kit",
    ).stdout
    ticket = opened.split()[1].rstrip(":")
    assert ticket.startswith("AD-")
    refused = run(demo_home, "case", "reconnect", ticket, "-r", "x", check=False)
    assert refused.returncode == 1
    assert "cannot take 'reconnect'" in refused.stderr
    run(demo_home, "case", "disconnect", ticket, "-r", "kit still up")
    run(demo_home, "case", "contact", ticket, "--note", "customer called")
    done = run(demo_home, "case", "reconnect", ticket, "-r", "kit removed").stdout
    assert "closed" in done
    shown = json.loads(run(demo_home, "case", "show", ticket, "--json").stdout)
    kinds = [e["kind"] for e in shown["timeline"]]
    assert kinds == ["opened", "disconnected", "customer_contact", "reconnected"]
    assert "intact" in run(demo_home, "audit", "verify").stdout


def test_a_customer_sees_only_its_own(demo_home: Path) -> None:
    mine = run(demo_home, "--as", "owner@acme.example", "case", "list", "--json").stdout
    rows = [json.loads(line) for line in mine.splitlines() if line.startswith("{")]
    assert rows
    assert {r["account"] for r in rows} == {"C1001"}
    other = run(demo_home, "--as", "owner@acme.example", "case", "show", "4", check=False)
    assert other.returncode == 1
    assert "no such case" in other.stderr


def test_locate_from_the_command_line(demo_home: Path) -> None:
    assert "C1001" in run(demo_home, "inventory", "locate", "198.18.1.9").stdout
    missing = run(demo_home, "inventory", "locate", "8.8.8.8", check=False)
    assert missing.returncode == 3


def test_a_bad_inventory_file_changes_nothing(demo_home: Path, tmp_path: Path) -> None:
    before = run(demo_home, "inventory", "export", "--format", "csv").stdout
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "account_reference,account_name,hostname,plan,prefixes\n"
        "C9,Nine,h1.nine.example,vps,10.0.0.1/24\n"
    )
    done = run(demo_home, "inventory", "import", str(bad), check=False)
    assert done.returncode == 1
    assert "line 2" in done.stderr
    assert "host bits" in done.stderr
    assert run(demo_home, "inventory", "export", "--format", "csv").stdout == before


def test_a_wrong_policy_is_refused_at_start_with_its_line(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[categories.spam]\nseverity = "urgent"\n')
    done = run(tmp_path / "var", "run", check=False, env={"ABUSEDESK_POLICY": str(policy)})
    assert done.returncode == 1
    assert f"{policy}:2:" in done.stderr
    assert "urgent" in done.stderr


def test_a_database_behind_the_code_is_named(tmp_path: Path) -> None:
    done = run(tmp_path / "empty", "case", "list", check=False)
    assert done.returncode == 1
    assert "abusedesk init" in done.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_run_serves_and_stops_cleanly(demo_home: Path) -> None:
    port = _free_port()
    netflow_port = _free_udp_port()
    dns_port = _free_udp_port()
    env = {
        **os.environ,
        "ABUSEDESK_HOME": str(demo_home),
        "ABUSEDESK_WEB__PORT": str(port),
        "ABUSEDESK_INTAKE__SMTP__PORT": str(_free_port()),
        "ABUSEDESK_TRAFFIC__NETFLOW__PORT": str(netflow_port),
        "ABUSEDESK_TRAFFIC__SFLOW__PORT": str(_free_udp_port()),
        "ABUSEDESK_DNS__PORT": str(dns_port),
    }
    env.pop("ABUSEDESK_DATABASE_URL", None)
    proc = subprocess.Popen(
        [*EXE, "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 90  # a loaded machine starts slowly
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        assert health.status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/api/docs").status_code == 200
        # The printed logins open the console and the portal on the demo data.
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10, follow_redirects=True) as analyst:
            email = "analyst@provider.example"
            assert _sign_in(analyst, email, _printed_password(demo_home, email)).url.path == (
                "/staff"
            )
            assert "Cases opened by category" in analyst.get("/staff").text
            assert "AD-000001" in analyst.get("/staff/cases").text
        with httpx.Client(base_url=base, timeout=10, follow_redirects=True) as owner:
            email = "owner@acme.example"
            portal = _sign_in(owner, email, _printed_password(demo_home, email))
            assert portal.url.path == "/portal"
            assert "Tickets" in portal.text
        assert httpx.get(f"{base}/report").status_code == 200
        # The traffic role collects: a NetFlow v5 datagram of one flow shows in /metrics.
        v5 = struct.pack("!HHIIIIBBH", 5, 1, 0, 0, 0, 0, 0, 0, 0) + bytes(48)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(v5, ("127.0.0.1", netflow_port))
        deadline = time.monotonic() + 10
        while 'abusedesk_traffic_records_total{format="netflow_v5"}' not in (
            scraped := httpx.get(f"{base}/metrics").text
        ):
            assert time.monotonic() < deadline, scraped
            time.sleep(0.2)
        # The dns role serves the demo zones, and an edit in the portal within seconds.
        query = dns.message.make_query("acme-demo.net.", "MX")
        answer = dns.query.udp(query, "127.0.0.1", port=dns_port, timeout=5)
        assert [rd.to_text() for rrset in answer.answer for rd in rrset] == [
            "10 mail.acme-demo.net."
        ]
        with httpx.Client(base_url=base, timeout=10, follow_redirects=True) as owner:
            email = "owner@acme.example"
            _sign_in(owner, email, _printed_password(demo_home, email))
            token = csrf_token(owner.get("/portal/dns/acme-demo.net").text)
            saved = owner.post(
                "/portal/dns/acme-demo.net/rrsets",
                data={"subname": "new", "type": "A", "records": "192.0.2.77", "csrf_token": token},
            )
            assert saved.status_code == 200, saved.text[:300]
        deadline = time.monotonic() + 15
        while True:
            query = dns.message.make_query("new.acme-demo.net.", "A")
            answer = dns.query.udp(query, "127.0.0.1", port=dns_port, timeout=5)
            if answer.answer:
                break
            assert time.monotonic() < deadline, answer.to_text()
            time.sleep(0.3)
        assert answer.answer[0][0].to_text() == "192.0.2.77"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "sweeping deadlines" in out
    assert "SMTP listening" in out
    assert f"NetFlow v5/v9 and IPFIX listening on udp 127.0.0.1:{netflow_port}" in out
    assert "traffic: received 1 datagrams, 1 records" in out
    assert "dns: serving 5 zones" in out
    assert "stopped" in out


def test_an_admin_resets_a_users_password_and_two_factor(demo_home: Path) -> None:
    reset = run(
        demo_home, "--as", "admin@provider.example", "user", "reset-password", "owner@acme.example"
    ).stdout
    assert "queued for owner@acme.example" in reset
    off = run(
        demo_home,
        "--as",
        "admin@provider.example",
        "user",
        "reset-two-factor",
        "legal@provider.example",
    ).stdout
    assert "two-factor sign-in of legal@provider.example is off" in off
    refused = run(
        demo_home,
        "--as",
        "owner@acme.example",
        "user",
        "reset-password",
        "legal@provider.example",
        check=False,
    )
    assert refused.returncode != 0
    assert "may not" in refused.stdout + refused.stderr
