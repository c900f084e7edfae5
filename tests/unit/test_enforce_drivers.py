"""Enforcement drivers against real local peers: a shell script, an HTTP server, a stand-in
ExaBGP; and which driver the registry picks for a server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from abusedesk.enforce import exabgp_relay
from abusedesk.enforce.choices import ActionKind, DriverName, parse_driver_chain
from abusedesk.enforce.drivers import ActionSpec, ChainDriver, Driver, DriverError, DriverRegistry
from abusedesk.enforce.drivers.exabgp import (
    ExabgpDriver,
    Route,
    RouteKind,
    announce_command,
    families,
    render_config,
    routes_for,
    withdraw_command,
)
from abusedesk.enforce.drivers.log import LogDriver
from abusedesk.enforce.drivers.script import ScriptDriver
from abusedesk.enforce.drivers.webhook import (
    EVENT_HEADER,
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookDriver,
    verify,
)
from abusedesk.enforce.settings import (
    EnforceSettings,
    ExabgpNeighbor,
    ExabgpSettings,
    ScriptSettings,
    WebhookSettings,
)
from tests.webhook_peer import webhook_receiver

SENT = datetime(2026, 3, 2, 9, 0, 5, tzinfo=UTC)


def spec(
    kind: ActionKind = ActionKind.DISCONNECT,
    action_id: int = 42,
    server_id: int = 7,
    hostname: str = "srv0.c1001.example",
    prefixes: tuple[str, ...] = ("198.51.100.7/32", "2001:db8:7::/64"),
    plan: str = "vps-small",
) -> ActionSpec:
    return ActionSpec(
        action_id=action_id,
        kind=kind,
        case_id=3,
        ticket="AD-000003",
        account_reference="C1001",
        server_id=server_id,
        hostname=hostname,
        prefixes=prefixes,
        reason="the response deadline passed",
        category="spam",
        plan=plan,
    )


# ---- the log driver -------------------------------------------------------------------------


def test_the_log_driver_records_what_it_would_do(caplog: pytest.LogCaptureFixture) -> None:
    driver = LogDriver()
    with caplog.at_level("INFO", logger="abusedesk.enforce.drivers.log"):
        note = driver.apply(spec())
    assert "would disconnect srv0.c1001.example (198.51.100.7/32, 2001:db8:7::/64)" in note
    assert "action 42 for AD-000003" in caplog.text
    assert set(driver.cuts) == {7}
    driver.apply(spec(ActionKind.RECONNECT, action_id=43))
    assert driver.cuts == {}
    driver.reconcile([spec(server_id=8), spec(server_id=9)])
    assert set(driver.cuts) == {8, 9}
    assert [s.action_id for s in driver.applied] == [42, 43]


# ---- the script driver ----------------------------------------------------------------------

RECORDER = """#!/bin/sh
# Records its arguments and stdin, then exits with the code in $DIR/exit (default 0).
dir=$(dirname "$0")
n=$(ls "$dir" | grep -c '^call-.*[.]args$' || true)
printf '%s\\n' "$@" > "$dir/call-$n.args"
cat > "$dir/call-$n.stdin"
echo "action id $ABUSEDESK_ACTION_ID"
code=$(cat "$dir/exit" 2>/dev/null || echo 0)
[ "$code" = 0 ] || echo "it went wrong: $code" >&2
exit "$code"
"""


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "enforce.sh"
    path.write_text(RECORDER)
    path.chmod(0o755)
    return path


def calls(script: Path) -> list[tuple[list[str], dict[str, object]]]:
    found = []
    for n in range(len(list(script.parent.glob("call-*.args")))):
        args = (script.parent / f"call-{n}.args").read_text().splitlines()
        stdin = json.loads((script.parent / f"call-{n}.stdin").read_text())
        found.append((args, stdin))
    return found


def test_the_script_gets_the_action_as_arguments_and_json(script: Path) -> None:
    driver = ScriptDriver(ScriptSettings(path=script), now=lambda: SENT.isoformat())
    note = driver.apply(spec())
    assert note == "enforce.sh disconnect srv0.c1001.example: exit 0: action id 42"
    [(args, stdin)] = calls(script)
    assert args == ["disconnect", "srv0.c1001.example", "198.51.100.7/32", "2001:db8:7::/64"]
    assert stdin == {
        "event": "action",
        "idempotency_key": "42",
        "sent_at": "2026-03-02T09:00:05+00:00",
        "action": spec().to_json(),
    }
    assert stdin["action"]["kind"] == "disconnect"  # type: ignore[index]


def test_a_script_that_exits_75_is_retried_and_1_is_not(script: Path) -> None:
    driver = ScriptDriver(ScriptSettings(path=script))
    (script.parent / "exit").write_text("75")
    with pytest.raises(DriverError, match=r"exit 75 .*it went wrong: 75") as temporary:
        driver.apply(spec(ActionKind.TERMINATE))
    assert temporary.value.temporary
    (script.parent / "exit").write_text("1")
    with pytest.raises(DriverError, match="exit 1: it went wrong: 1") as permanent:
        driver.apply(spec(ActionKind.TERMINATE))
    assert not permanent.value.temporary
    assert [args[0] for args, _ in calls(script)] == ["terminate", "terminate"]


def test_a_script_that_hangs_is_killed_and_retried(tmp_path: Path) -> None:
    path = tmp_path / "slow.sh"
    marker = tmp_path / "still-running"
    # The child of the script would outlive a kill of the script alone.
    path.write_text(f"#!/bin/sh\n(sleep 1; touch {marker}) &\nsleep 30\n")
    path.chmod(0o755)
    driver = ScriptDriver(ScriptSettings(path=path, timeout_seconds=0.3))
    started = time.monotonic()
    with pytest.raises(DriverError, match=r"no answer within 0\.3 s") as error:
        driver.apply(spec())
    assert error.value.temporary
    assert time.monotonic() - started < 5
    time.sleep(1.5)
    assert not marker.exists()  # the whole process group was ended


def test_a_missing_script_is_a_permanent_failure(tmp_path: Path) -> None:
    driver = ScriptDriver(ScriptSettings(path=tmp_path / "nowhere.sh"))
    with pytest.raises(DriverError, match="cannot run") as error:
        driver.apply(spec())
    assert not error.value.temporary


def test_the_script_reconciles_with_every_active_cut(script: Path) -> None:
    driver = ScriptDriver(ScriptSettings(path=script))
    driver.reconcile([spec(server_id=1), spec(server_id=2, hostname="srv1.c1001.example")])
    [(args, stdin)] = calls(script)
    assert args == ["reconcile"]
    assert stdin["event"] == "reconcile"
    assert [a["hostname"] for a in stdin["active"]] == [  # type: ignore[attr-defined]
        "srv0.c1001.example",
        "srv1.c1001.example",
    ]


# ---- the webhook driver ---------------------------------------------------------------------

SECRET = "s3cret-shared-with-the-orchestrator"


def webhook(url: str, timeout: float = 5.0) -> WebhookDriver:
    return WebhookDriver(
        WebhookSettings(
            url=url,
            secret=SecretStr(SECRET),
            timeout_seconds=timeout,
            headers={"Authorization": "Bearer t"},
        ),
        now=lambda: SENT,
    )


def test_the_webhook_posts_a_signed_body_with_an_idempotency_key() -> None:
    with webhook_receiver() as receiver:
        driver = webhook(receiver.url)
        try:
            note = driver.apply(spec())
            driver.apply(spec())  # again, as after a worker died before recording it
        finally:
            driver.close()
    assert note == "webhook acknowledged disconnect of srv0.c1001.example (HTTP 200)"
    first, second = receiver.requests
    assert first.path == "/hooks/abuse"
    assert verify(SECRET.encode(), first.body, first.headers[SIGNATURE_HEADER])
    assert first.headers[SIGNATURE_HEADER].startswith("sha256=")
    assert not verify(b"another secret", first.body, first.headers[SIGNATURE_HEADER])
    assert not verify(SECRET.encode(), first.body + b" ", first.headers[SIGNATURE_HEADER])
    assert first.headers[TIMESTAMP_HEADER] == str(int(SENT.timestamp()))
    assert first.headers[EVENT_HEADER] == "action"
    assert first.headers["Content-Type"] == "application/json"
    assert first.headers["Authorization"] == "Bearer t"
    assert first.headers[IDEMPOTENCY_HEADER] == "42"
    assert first.json == {
        "event": "action",
        "idempotency_key": "42",
        "sent_at": "2026-03-02T09:00:05+00:00",
        "action": spec().to_json(),
    }
    # The same action twice carries the same key, so the receiver can act once.
    assert second.json["idempotency_key"] == first.json["idempotency_key"]


@pytest.mark.parametrize(
    ("status", "temporary"),
    [(500, True), (503, True), (429, True), (408, True), (400, False), (404, False), (301, False)],
)
def test_webhook_answers_are_classified(status: int, temporary: bool) -> None:
    with webhook_receiver() as receiver:
        receiver.statuses = [status]
        driver = webhook(receiver.url)
        try:
            with pytest.raises(DriverError, match=f"HTTP {status}") as error:
                driver.apply(spec())
            assert error.value.temporary is temporary
            assert "acknowledged" in driver.apply(spec())  # the next answer is 200
        finally:
            driver.close()


def test_a_webhook_that_does_not_answer_in_time_is_retried() -> None:
    with webhook_receiver() as receiver:
        receiver.delay_seconds = 1.0
        driver = webhook(receiver.url, timeout=0.2)
        try:
            with pytest.raises(DriverError, match="timed out") as error:
                driver.apply(spec())
        finally:
            driver.close()
    assert error.value.temporary


def test_a_webhook_nobody_listens_on_is_retried() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    driver = webhook(f"http://127.0.0.1:{port}/")
    try:
        with pytest.raises(DriverError) as error:
            driver.apply(spec())
    finally:
        driver.close()
    assert error.value.temporary


def test_the_webhook_reconciles_with_every_active_cut() -> None:
    with webhook_receiver() as receiver:
        driver = webhook(receiver.url)
        try:
            driver.reconcile([spec(server_id=1)])
            driver.reconcile([])
        finally:
            driver.close()
    full, empty = receiver.requests
    assert full.headers[EVENT_HEADER] == "reconcile"
    assert IDEMPOTENCY_HEADER not in full.headers
    assert verify(SECRET.encode(), full.body, full.headers[SIGNATURE_HEADER])
    assert [a["server_id"] for a in full.json["active"]] == [1]
    assert empty.json["active"] == []


# ---- settings and the registry --------------------------------------------------------------


def test_driver_chains_parse_and_refuse_unknown_names() -> None:
    assert parse_driver_chain("exabgp + webhook") == (DriverName.EXABGP, DriverName.WEBHOOK)
    with pytest.raises(ValueError, match="unknown enforcement driver 'bgp'"):
        parse_driver_chain("bgp")
    with pytest.raises(ValueError, match="twice"):
        parse_driver_chain("log+log")


def test_settings_refuse_a_driver_that_is_not_configured() -> None:
    with pytest.raises(ValidationError, match="unknown enforcement driver"):
        EnforceSettings(plans={"vps": "carrier-pigeon"})
    with pytest.raises(ValidationError, match=r"enforce\.webhook\.url and \.secret"):
        EnforceSettings(default_driver="webhook", webhook=WebhookSettings(url="https://o.example"))
    with pytest.raises(ValidationError, match=r"enforce\.script\.path"):
        EnforceSettings(servers={"a.example": "script"})
    with pytest.raises(ValidationError, match=r"enforce\.exabgp\.neighbors"):
        EnforceSettings(default_driver="log+exabgp")
    with pytest.raises(ValidationError, match="community"):
        ExabgpSettings(communities=["65535:666", "70000:1"])
    with pytest.raises(ValidationError, match="IPv4"):
        ExabgpSettings(next_hop="100::1")


class Recording(Driver):
    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False

    def apply(self, spec: ActionSpec) -> str:
        return f"{self.name} did {spec.kind.value}"

    def reconcile(self, active: object) -> None:
        pass

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[tuple[DriverRegistry, dict[str, int]]]:
    settings = EnforceSettings(
        default_driver="log",
        plans={"dedicated": "script", "vps-small": "webhook+script"},
        servers={"special.example": "exabgp"},
        script=ScriptSettings(path=tmp_path / "x.sh"),
        webhook=WebhookSettings(url="https://orchestrator.example/hook", secret=SecretStr("k")),
        exabgp=ExabgpSettings(
            neighbors=[
                ExabgpNeighbor(
                    address="127.0.0.2", local_address="127.0.0.1", local_as=65002, peer_as=65001
                )
            ]
        ),
    )
    built: dict[str, int] = {}

    def builder(name: DriverName) -> object:
        def build() -> Driver:
            built[name.value] = built.get(name.value, 0) + 1
            return Recording(name.value)

        return build

    registry = DriverRegistry.from_settings(
        settings,
        tmp_path,
        overrides={name: builder(name) for name in DriverName},  # type: ignore[misc]
    )
    yield registry, built
    registry.close()


def test_the_registry_picks_by_server_then_plan_then_default(
    registry: tuple[DriverRegistry, dict[str, int]],
) -> None:
    reg, built = registry
    assert reg.name_for("special.example", "dedicated") == "exabgp"  # the server wins
    assert reg.name_for("other.example", "dedicated") == "script"  # then its plan
    assert reg.name_for("other.example", "vps-small") == "webhook+script"
    assert reg.name_for("other.example", "colo") == "log"  # then the default
    assert built == {}  # nothing is built before it is used
    chain = reg.driver_for("other.example", "vps-small")
    assert isinstance(chain, ChainDriver)
    assert chain.apply(spec()) == "webhook did disconnect; script did disconnect"
    assert reg.driver_for("other.example", "dedicated") is chain.drivers[1]  # shared
    assert reg.driver_for("x.example", "vps-small") is chain
    assert built == {"webhook": 1, "script": 1}
    assert reg.configured() == [
        DriverName.LOG,
        DriverName.SCRIPT,
        DriverName.WEBHOOK,
        DriverName.EXABGP,
    ]
    drivers = [reg.atomic(name) for name in DriverName]
    reg.close()
    assert all(d.closed for d in drivers)  # type: ignore[attr-defined]


def test_the_default_registry_builds_real_drivers(tmp_path: Path) -> None:
    reg = DriverRegistry.from_settings(EnforceSettings(), tmp_path)
    try:
        assert isinstance(reg.driver_for("any.example", "any"), LogDriver)
    finally:
        reg.close()


def test_a_chain_stops_at_the_first_failure() -> None:
    class Failing(Recording):
        def apply(self, spec: ActionSpec) -> str:
            raise DriverError("switch unreachable", temporary=True)

    first, failing, never = Recording("a"), Failing("b"), Recording("c")
    with pytest.raises(DriverError, match="b: switch unreachable") as error:
        ChainDriver([first, failing, never]).apply(spec())
    assert error.value.temporary


# ---- ExaBGP: routes and commands (pure) -----------------------------------------------------

BGP = ExabgpSettings(
    neighbors=[
        ExabgpNeighbor(
            address="192.0.2.254", local_address="192.0.2.10", local_as=65010, peer_as=65000
        )
    ]
)


def test_a_cut_blackholes_and_filters_every_prefix() -> None:
    routes, skipped = routes_for(["198.51.100.7/32", "203.0.113.0/24", "2001:db8::1/64"], BGP)
    assert skipped == []
    assert sorted(routes) == [
        Route(RouteKind.BLACKHOLE, "198.51.100.7/32"),
        Route(RouteKind.BLACKHOLE, "2001:db8::/64"),  # the prefix, normalised
        Route(RouteKind.BLACKHOLE, "203.0.113.0/24"),
        Route(RouteKind.FLOW, "198.51.100.7/32"),
        Route(RouteKind.FLOW, "2001:db8::/64"),
        Route(RouteKind.FLOW, "203.0.113.0/24"),
    ]
    host = Route(RouteKind.BLACKHOLE, "198.51.100.7/32")
    assert announce_command(host, BGP) == (
        "announce route 198.51.100.7/32 next-hop 192.0.2.1 community [65535:666 65535:65281]"
    )
    assert withdraw_command(host, BGP) == "withdraw route 198.51.100.7/32 next-hop 192.0.2.1"
    v6 = Route(RouteKind.BLACKHOLE, "2001:db8::/64")
    assert "next-hop 100::1 community [65535:666 65535:65281]" in announce_command(v6, BGP)
    flow = Route(RouteKind.FLOW, "198.51.100.7/32")
    assert announce_command(flow, BGP) == (
        "announce flow route { match { source 198.51.100.7/32; } then { discard; } }"
    )
    assert withdraw_command(flow, BGP).startswith("withdraw flow route { match { source 198.51")


def test_ipv6_and_flowspec_can_be_switched_off() -> None:
    settings = BGP.model_copy(update={"ipv6": False, "flowspec": False})
    routes, skipped = routes_for(["198.51.100.7/32", "2001:db8::/64"], settings)
    assert routes == {Route(RouteKind.BLACKHOLE, "198.51.100.7/32")}
    assert skipped == ["2001:db8::/64"]
    assert families(settings) == ["ipv4 unicast"]
    assert families(BGP) == ["ipv4 unicast", "ipv4 flow", "ipv6 unicast", "ipv6 flow"]
    with pytest.raises(DriverError, match="not an IP prefix") as error:
        routes_for(["not-an-address"], BGP)
    assert not error.value.temporary


def test_the_exabgp_configuration_names_the_relay_and_every_router() -> None:
    settings = BGP.model_copy(
        update={
            "neighbors": [
                *BGP.neighbors,
                ExabgpNeighbor(
                    address="2001:db8::fe",
                    local_address="2001:db8::10",
                    router_id="192.0.2.10",
                    local_as=65010,
                    peer_as=65000,
                    families=["ipv6 unicast"],
                    md5_password=SecretStr("pw"),
                    hold_time=30,
                ),
            ],
            "graceful_restart_seconds": 120,
        }
    )
    text = render_config(settings, "/venv/bin/python -m abusedesk.enforce.exabgp_relay /s/api.sock")
    assert "run /venv/bin/python -m abusedesk.enforce.exabgp_relay /s/api.sock;" in text
    assert "neighbor 192.0.2.254 {" in text
    assert "neighbor 2001:db8::fe {" in text
    assert "router-id 192.0.2.10;" in text
    assert "local-as 65010;" in text
    assert "peer-as 65000;" in text
    assert 'md5-password "pw";' in text
    assert "hold-time 30;" in text
    assert text.count("capability { graceful-restart 120; }") == 2
    assert text.count("api { processes [ abusedesk ]; }") == 2
    second = text.split("neighbor 2001:db8::fe")[1]
    assert "ipv6 unicast;" in second
    assert "ipv4 unicast;" not in second


# ---- ExaBGP: the relay and the driver, with a stand-in ExaBGP --------------------------------


def test_the_relay_copies_lines_both_ways(tmp_path: Path) -> None:
    path = tmp_path / "api.sock"
    relay = subprocess.Popen(
        [sys.executable, "-m", "abusedesk.enforce.exabgp_relay", str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert relay.stdin is not None
    assert relay.stdout is not None
    try:
        deadline = time.monotonic() + 10
        while not path.exists():
            assert time.monotonic() < deadline, "the relay did not bind"
            time.sleep(0.02)
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(5)
            client.connect(str(path))
            client.sendall(b"announce route 198.51.100.7/32 next-hop 192.0.2.1\nhalf a li")
            assert relay.stdout.readline() == b"announce route 198.51.100.7/32 next-hop 192.0.2.1\n"
            relay.stdin.write(b"done\n")
            relay.stdin.flush()
            assert client.recv(100) == b"done\n"
        # The half line of a client that went away is dropped, not joined to the next one's.
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))
            client.sendall(b"withdraw route 198.51.100.7/32 next-hop 192.0.2.1\n")
            assert relay.stdout.readline() == b"withdraw route 198.51.100.7/32 next-hop 192.0.2.1\n"
        relay.stdin.close()  # ExaBGP went away
        assert relay.wait(timeout=10) == 0
        assert not path.exists()
    finally:
        if relay.poll() is None:
            relay.kill()
            relay.wait()
        relay.stdout.close()


def test_relay_usage() -> None:
    assert exabgp_relay.main([]) == 64


FAKE = Path(__file__).parent.parent / "fake_exabgp.py"


@pytest.fixture
def fake_bgp(tmp_path: Path) -> Iterator[tuple[ExabgpDriver, Path]]:
    state = tmp_path / "exabgp"
    settings = BGP.model_copy(
        update={"command": [sys.executable, str(FAKE)], "startup_timeout_seconds": 15}
    )
    driver = ExabgpDriver(settings, state)
    yield driver, state / "commands.log"
    driver.close()


def sent(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_the_exabgp_driver_announces_once_and_withdraws_on_reconnect(
    fake_bgp: tuple[ExabgpDriver, Path],
) -> None:
    driver, log = fake_bgp
    note = driver.apply(spec(prefixes=("198.51.100.7/32",)))
    assert note == "exabgp: announced 198.51.100.7/32 blackhole, 198.51.100.7/32 flow"
    assert sent(log) == [
        "announce route 198.51.100.7/32 next-hop 192.0.2.1 community [65535:666 65535:65281]",
        "announce flow route { match { source 198.51.100.7/32; } then { discard; } }",
    ]
    # Applied again (a worker died before recording it): nothing more is sent.
    assert driver.apply(spec(prefixes=("198.51.100.7/32",))) == "exabgp: routes already as wanted"
    assert len(sent(log)) == 2
    note = driver.apply(spec(ActionKind.RECONNECT, action_id=43, prefixes=("198.51.100.7/32",)))
    assert note.startswith("exabgp: withdrew 198.51.100.7/32 blackhole")
    assert sent(log)[2:] == [
        "withdraw route 198.51.100.7/32 next-hop 192.0.2.1",
        "withdraw flow route { match { source 198.51.100.7/32; } then { discard; } }",
    ]
    assert driver.announced == set()
    config = (log.parent / "exabgp.conf").read_text()
    assert "abusedesk.enforce.exabgp_relay" in config
    assert oct(log.parent.stat().st_mode & 0o777) == "0o700"


def test_the_exabgp_driver_reconciles_and_survives_a_dead_exabgp(
    fake_bgp: tuple[ExabgpDriver, Path],
) -> None:
    driver, log = fake_bgp
    driver.apply(spec(server_id=1, prefixes=("198.51.100.1/32",)))
    driver.apply(spec(server_id=2, prefixes=("198.51.100.2/32",)))
    # Reconciliation: server 2 should no longer be cut, server 3 should be.
    driver.reconcile(
        [
            spec(server_id=1, prefixes=("198.51.100.1/32",)),
            spec(server_id=3, prefixes=("198.51.100.3/32",)),
        ]
    )
    assert {r.prefix for r in driver.announced} == {"198.51.100.1/32", "198.51.100.3/32"}
    assert "withdraw route 198.51.100.2/32 next-hop 192.0.2.1" in sent(log)
    # ExaBGP dies: the next call starts a new one and announces everything again.
    pid = driver.process.pid
    assert pid is not None
    os.kill(pid, 9)
    log.unlink()
    note = driver.apply(spec(server_id=4, prefixes=("198.51.100.4/32",)))
    assert note == (
        "exabgp: announced 198.51.100.4/32 blackhole, 198.51.100.4/32 flow; "
        "4 routes of other servers brought up to date"
    )
    assert driver.process.pid != pid
    announced = [line.split()[2] for line in sent(log) if line.startswith("announce route")]
    assert sorted(announced) == ["198.51.100.1/32", "198.51.100.3/32", "198.51.100.4/32"]


def test_a_driver_left_running_by_a_dead_worker_is_stopped(tmp_path: Path) -> None:
    state = tmp_path / "exabgp"
    settings = BGP.model_copy(update={"command": [sys.executable, str(FAKE)]})
    first = ExabgpDriver(settings, state)
    first.apply(spec())
    old = first.process.pid
    assert old is not None
    # The worker dies without closing its driver; a new worker's driver takes over.
    second = ExabgpDriver(settings, state)
    try:
        second.reconcile([spec()])
        assert second.process.pid != old
        assert first.process._popen is not None
        assert first.process._popen.wait(timeout=10) is not None  # the old one was stopped
    finally:
        second.close()
        first.close()
