"""Cutting servers off with BGP: a long-running ExaBGP fed through its API.

A disconnection (or termination) announces, for each of the server's prefixes,
- a remote-triggered blackhole: `announce route P next-hop N community [65535:666 65535:65281]`
  (RFC 7999 BLACKHOLE, and NO_EXPORT so it stays in the AS); a /32 (/128) for a host, the
  prefix itself when the server has a larger one. It drops traffic *to* the server.
- with `flowspec` on, `announce flow route { match { source P; } then { discard; } }`: drops
  what the server sends, which stops an outbound flood at the edge.
A reconnection withdraws them.

How the worker talks to ExaBGP: the driver writes `exabgp.conf` into its state directory
(`$ABUSEDESK_HOME/exabgp/`) and starts ExaBGP, whose API process is
`python -m abusedesk.enforce.exabgp_relay <state>/api.sock`. The driver sends each command over
that socket and waits for ExaBGP's "done". ExaBGP keeps what it was told in its RIB and sends
it to every router as each session comes up (again after a flap).

The driver keeps its own view: the routes each cut server should have (`wanted`) and the
routes ExaBGP has acknowledged (`announced`), and only ever sends the difference. So applying
an action twice sends nothing the second time, and a route two cuts share stays until both
are lifted. ExaBGP starts with an empty RIB: when it is (re)started, by the worker or after
it died, the driver re-announces everything it wants, and `reconcile` (called when the worker
starts) sets `wanted` from the database. That is all a restart needs.
"""

from __future__ import annotations

import atexit
import contextlib
import getpass
import ipaddress
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from abusedesk.enforce.choices import DriverName
from abusedesk.enforce.drivers.base import ActionSpec, Driver, DriverError
from abusedesk.enforce.settings import ExabgpNeighbor, ExabgpSettings

log = logging.getLogger(__name__)

PROCESS_NAME = "abusedesk"
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux, 104 on the BSDs


# ---- pure: routes, commands, configuration --------------------------------------------------


class RouteKind(StrEnum):
    BLACKHOLE = "blackhole"
    FLOW = "flow"


@dataclass(frozen=True, order=True, slots=True)
class Route:
    kind: RouteKind
    prefix: str  # canonical: 198.51.100.7/32, 2001:db8::/64

    @property
    def version(self) -> int:
        return 6 if ":" in self.prefix else 4

    def __str__(self) -> str:
        return f"{self.prefix} {self.kind.value}"


def routes_for(
    prefixes: Iterable[str], settings: ExabgpSettings
) -> tuple[frozenset[Route], list[str]]:
    """The routes that cut off a server with these prefixes, and the prefixes left uncut
    (IPv6 when it is switched off)."""
    routes: set[Route] = set()
    skipped: list[str] = []
    for text in prefixes:
        try:
            network = ipaddress.ip_network(text.strip(), strict=False)
        except ValueError as exc:
            raise DriverError(f"not an IP prefix: {text!r}", temporary=False) from exc
        if network.version == 6 and not settings.ipv6:
            skipped.append(str(network))
            continue
        routes.add(Route(RouteKind.BLACKHOLE, str(network)))
        if settings.flowspec:
            routes.add(Route(RouteKind.FLOW, str(network)))
    return frozenset(routes), skipped


def announce_command(route: Route, settings: ExabgpSettings) -> str:
    if route.kind is RouteKind.FLOW:
        return f"announce flow route {{ match {{ source {route.prefix}; }} then {{ discard; }} }}"
    communities = " ".join(settings.communities)
    next_hop = _next_hop(route, settings)
    return f"announce route {route.prefix} next-hop {next_hop} community [{communities}]"


def withdraw_command(route: Route, settings: ExabgpSettings) -> str:
    if route.kind is RouteKind.FLOW:
        return f"withdraw flow route {{ match {{ source {route.prefix}; }} then {{ discard; }} }}"
    return f"withdraw route {route.prefix} next-hop {_next_hop(route, settings)}"


def _next_hop(route: Route, settings: ExabgpSettings) -> str:
    return settings.next_hop_v6 if route.version == 6 else settings.next_hop


def families(settings: ExabgpSettings, neighbor: ExabgpNeighbor | None = None) -> list[str]:
    if neighbor is not None and neighbor.families is not None:
        return list(neighbor.families)
    result = ["ipv4 unicast"]
    if settings.flowspec:
        result.append("ipv4 flow")
    if settings.ipv6:
        result.append("ipv6 unicast")
        if settings.flowspec:
            result.append("ipv6 flow")
    return result


def render_config(settings: ExabgpSettings, run: str) -> str:
    """exabgp.conf: one API process (the relay) and one block per router."""
    lines = [
        "# Written by abusedesk each time its ExaBGP driver starts: edits here are lost.",
        "# Change [enforce.exabgp] in the abusedesk configuration instead.",
        "",
        f"process {PROCESS_NAME} {{",
        f"    run {run};",
        "    encoder text;",
        "}",
    ]
    for neighbor in settings.neighbors:
        router_id = neighbor.router_id or neighbor.local_address
        lines += [
            "",
            f"neighbor {neighbor.address} {{",
            '    description "abusedesk enforcement";',
            f"    router-id {router_id};",
            f"    local-address {neighbor.local_address};",
            f"    local-as {neighbor.local_as};",
            f"    peer-as {neighbor.peer_as};",
            # Keep what was announced, so that it is sent again when a session comes back.
            "    adj-rib-out true;",
        ]
        if neighbor.hold_time is not None:
            lines.append(f"    hold-time {neighbor.hold_time};")
        if neighbor.md5_password is not None:
            password = neighbor.md5_password.get_secret_value()
            if any(c in password for c in '";\n\\ '):
                raise DriverError(
                    f"neighbor {neighbor.address}: md5_password may not contain quotes, "
                    "semicolons, spaces or backslashes",
                    temporary=False,
                )
            lines.append(f'    md5-password "{password}";')
        if settings.graceful_restart_seconds:
            # The routers keep our routes while the driver restarts; End-of-RIB, sent once the
            # driver has re-announced everything, tells them to drop what was not re-announced.
            lines += [
                "    manual-eor true;",
                f"    capability {{ graceful-restart {settings.graceful_restart_seconds}; }}",
            ]
        lines += [
            "    family {",
            *(f"        {family};" for family in families(settings, neighbor)),
            "    }",
            f"    api {{ processes [ {PROCESS_NAME} ]; }}",
            "}",
        ]
    return "\n".join(lines) + "\n"


def exabgp_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """ExaBGP's settings for running under the worker (Debian's defaults assume a system
    service: user `exabgp`, named pipes under /run/exabgp)."""
    env = dict(os.environ if base is None else base)
    env.update(
        {
            "exabgp_daemon_user": getpass.getuser(),
            "exabgp_daemon_drop": "false",
            "exabgp_daemon_daemonize": "false",
            "exabgp_daemon_pid": "",
            "exabgp_api_cli": "false",
            "exabgp_api_ack": "true",  # the driver waits for each command's "done"
            "exabgp_api_encoder": "text",
            # If the relay dies, ExaBGP exits and the driver starts both afresh: one way to fail.
            "exabgp_api_respawn": "false",
            "exabgp_api_terminate": "true",
            "exabgp_log_destination": "stdout",
            "exabgp_tcp_bind": "",  # ExaBGP connects out; it listens on no port
        }
    )
    return env


# ---- the ExaBGP process ---------------------------------------------------------------------


class ExabgpProcess:
    """One ExaBGP and its relay, started from the state directory, talked to over the socket."""

    def __init__(self, settings: ExabgpSettings, state_dir: Path) -> None:
        self.settings = settings
        self.state_dir = state_dir
        self.config_path = state_dir / "exabgp.conf"
        self.socket_path = state_dir / "api.sock"
        self.pid_path = state_dir / "exabgp.pid"
        self.log_path = state_dir / "exabgp.log"
        self._popen: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._buffer = b""

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None and self._sock is not None

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o700)  # the socket there takes commands to the routers
        socket_path = str(self.socket_path.resolve())
        if len(socket_path.encode()) > _SOCKET_PATH_MAX:
            raise DriverError(
                f"the API socket path is too long for a unix socket: {socket_path}",
                temporary=False,
            )
        run = [sys.executable, "-m", "abusedesk.enforce.exabgp_relay", socket_path]
        if any(any(c.isspace() for c in part) for part in run):
            raise DriverError(
                f"ExaBGP's `run` cannot hold spaces: {' '.join(run)}", temporary=False
            )
        self._stop_stale()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        self.config_path.write_text(render_config(self.settings, " ".join(run)))
        with self.log_path.open("ab") as log_file:
            try:
                self._popen = subprocess.Popen(  # noqa: S603 - the configured ExaBGP
                    [*self.settings.command, str(self.config_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    env=exabgp_environment(),
                    cwd=self.state_dir,
                    # Its own session: a terminal's ^C reaches the worker, which then stops
                    # ExaBGP in its own way (see stop()).
                    start_new_session=True,
                )
            except OSError as exc:
                raise DriverError(
                    f"cannot start ExaBGP ({' '.join(self.settings.command)}): {exc.strerror}",
                    temporary=False,
                ) from exc
        self.pid_path.write_text(f"{self._popen.pid}\n")
        log.info("ExaBGP started, pid %d, config %s", self._popen.pid, self.config_path)
        self._connect()

    def _connect(self) -> None:
        assert self._popen is not None
        deadline = time.monotonic() + self.settings.startup_timeout_seconds
        while True:
            code = self._popen.poll()
            if code is not None:
                self._popen = None
                raise DriverError(
                    f"ExaBGP exited at start (status {code}): {self.log_tail()}", temporary=True
                )
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(self.socket_path))
            except OSError:
                sock.close()
                if time.monotonic() > deadline:
                    self.stop()
                    raise DriverError(
                        f"ExaBGP's API did not come up within "
                        f"{self.settings.startup_timeout_seconds:g} s: {self.log_tail()}",
                        temporary=True,
                    ) from None
                time.sleep(0.05)
                continue
            sock.settimeout(self.settings.command_timeout_seconds)
            self._sock, self._buffer = sock, b""
            return

    def send(self, command: str) -> None:
        """One API command, acknowledged by ExaBGP. A lost connection or a missing answer
        leaves the process unusable: it is stopped, and the next call starts a new one."""
        if "\n" in command or "\r" in command:
            raise DriverError(f"refusing a command with a line break: {command!r}", temporary=False)
        if self._sock is None:
            raise DriverError("ExaBGP is not running", temporary=True)
        try:
            self._sock.sendall(command.encode() + b"\n")
            while True:
                answer = self._read_line()
                if answer == "done":
                    return
                if answer == "error":
                    raise DriverError(f"ExaBGP refused: {command}", temporary=False)
                log.debug("ExaBGP said %r", answer)  # not an answer to a command: skip it
        except (OSError, EOFError) as exc:
            self.stop()
            what = "no answer" if isinstance(exc, TimeoutError) else f"connection lost ({exc})"
            raise DriverError(f"ExaBGP: {what} to {command!r}", temporary=True) from exc

    def _read_line(self) -> str:
        assert self._sock is not None
        while b"\n" not in self._buffer:
            chunk = self._sock.recv(4096)
            if not chunk:
                raise EOFError("ExaBGP closed the API")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode(errors="replace").strip()

    def stop(self, keep_routes: bool = False) -> None:
        """Stop ExaBGP. It then closes its sessions and the routers drop its routes, unless
        `keep_routes` (with graceful restart): it is killed without a word, so that the
        routers keep the routes, marked stale, until the next driver re-announces them."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
        popen, self._popen = self._popen, None
        if popen is not None:
            _end(popen.pid, popen, signal.SIGKILL if keep_routes else signal.SIGTERM)
        with contextlib.suppress(FileNotFoundError):
            self.pid_path.unlink()

    def _stop_stale(self) -> None:
        """An ExaBGP left by a worker that died without stopping it still holds the sessions;
        stop it (only if /proc shows it is ExaBGP on our configuration)."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return
        if str(self.config_path).encode() in cmdline:
            log.warning("stopping ExaBGP pid %d left by an earlier worker", pid)
            _end(pid, None, signal.SIGTERM)

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:])


def _end(pid: int, popen: subprocess.Popen[bytes] | None, first: signal.Signals) -> None:
    """Send `first`, wait a while, then SIGKILL; bounded either way."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, first)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if popen is not None:
            if popen.poll() is not None:
                return
        elif not _running(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if popen is not None:
        popen.wait(timeout=10)


def _running(pid: int) -> bool:
    """Whether a process we may not be the parent of still runs (a zombie does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


# ---- the driver -----------------------------------------------------------------------------


class ExabgpDriver(Driver):
    name = DriverName.EXABGP.value

    def __init__(self, settings: ExabgpSettings, state_dir: Path) -> None:
        self.settings = settings
        self.process = ExabgpProcess(settings, state_dir)
        self.wanted: dict[int, frozenset[Route]] = {}  # server id → its cut's routes
        self.announced: set[Route] = set()  # acknowledged by the running ExaBGP
        self._reconciled = False  # `wanted` holds every cut, not only those applied since start
        self._eor_due = False
        self._lock = threading.Lock()
        self._closed = False

    def apply(self, spec: ActionSpec) -> str:
        routes, skipped = routes_for(spec.prefixes, self.settings)
        with self._lock:
            mine = routes | self.wanted.get(spec.server_id, frozenset())
            if spec.kind.cuts:
                self.wanted[spec.server_id] = routes
            else:
                self.wanted.pop(spec.server_id, None)
            added, removed = self._sync()
        # The note goes on this server's case: it names this server's routes only.
        done = []
        if own := [r for r in added if r in mine]:
            done.append("announced " + ", ".join(map(str, own)))
        if own := [r for r in removed if r in mine]:
            done.append("withdrew " + ", ".join(map(str, own)))
        if not done:
            done.append(
                "routes already as wanted" if routes or not spec.kind.cuts else "no prefixes"
            )
        if others := sum(r not in mine for r in [*added, *removed]):
            done.append(f"{others} routes of other servers brought up to date")
        if skipped:
            done.append(f"not blackholed (IPv6 is off): {', '.join(skipped)}")
        return "exabgp: " + "; ".join(done)

    def reconcile(self, active: Sequence[ActionSpec]) -> None:
        with self._lock:
            self.wanted = {
                spec.server_id: routes_for(spec.prefixes, self.settings)[0]
                for spec in active
                if spec.kind.cuts
            }
            self._reconciled = True
            added, removed = self._sync()
        log.info(
            "exabgp reconciled: %d servers cut, %d routes announced, %d withdrawn",
            len(self.wanted),
            len(added),
            len(removed),
        )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self.process.stop(keep_routes=bool(self.settings.graceful_restart_seconds))
            self.announced.clear()
            with contextlib.suppress(Exception):
                atexit.unregister(self.close)

    def _sync(self) -> tuple[list[Route], list[Route]]:
        if self._closed:
            raise DriverError("the exabgp driver is closed", temporary=True)
        was_running = self.process.alive()
        try:
            return self._sync_once()
        except DriverError:
            # Only an ExaBGP that was running and is now gone is worth a second try: one that
            # answered "error", or failed to start, would do the same again.
            if not was_running or self.process.alive():
                raise
        # It died since the last call (found out only now, on the socket) or hung: once more
        # with a new one, which is then told everything again.
        return self._sync_once()

    def _sync_once(self) -> tuple[list[Route], list[Route]]:
        if not self.process.alive():
            if self.process.pid is not None:
                log.warning("ExaBGP (pid %s) has gone: starting it again", self.process.pid)
                self.process.stop()
            self.announced.clear()  # a new ExaBGP starts with an empty RIB
            self.process.start()
            self._eor_due = bool(self.settings.graceful_restart_seconds)
            atexit.register(self.close)
        want = frozenset().union(*self.wanted.values())
        added = sorted(want - self.announced)
        removed = sorted(self.announced - want)
        # Cut first, restore after: a failure half-way leaves too much cut, never too little.
        for route in added:
            self.process.send(announce_command(route, self.settings))
            self.announced.add(route)
        for route in removed:
            self.process.send(withdraw_command(route, self.settings))
            self.announced.discard(route)
        if self._eor_due and self._reconciled:
            for family in families(self.settings):
                self.process.send(f"announce eor {family}")
            self._eor_due = False
        return added, removed
