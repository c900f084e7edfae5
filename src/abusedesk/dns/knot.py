"""Knot DNS as the data plane (production): abusedesk writes the zone files and ``knot.conf``,
drives ``knotd`` through ``knotc``, and reads the per-zone counters of Knot's ``mod-stats``.

The directory (``[dns.knot] directory``, by default ``ABUSEDESK_HOME/knot``) holds::

    knot.conf      written by abusedesk, rewritten whenever the zone list changes
    zones/         one ``<zone>.zone`` per zone (``$ORIGIN`` first), written then renamed
    run/           knotd's rundir: knot.sock (the control socket knotc talks to), knot.pid
    db/            knotd's storage (timers; the journal is off)
    knot.log       knotd's log; its last lines go into :class:`KnotError` when knotd fails
    knotd.stderr   what knotd printed before its log was open (bad configuration)

How changes reach knotd, and why. Every new or changed zone file is first checked with
``knotc zone-check`` (parsed and checked as knotd would load it), so a zone Knot refuses is an
error here with Knot's reason, and knotd keeps serving the previous version. A changed zone is
then reloaded with ``knotc zone-reload ZONE``; zones added or removed go through one
configuration transaction (``conf-begin``, ``conf-set`` / ``conf-unset zone[…]``,
``conf-commit``), and ``knot.conf`` is rewritten to match so that a restarted knotd serves the
same zones. Not ``knotc reload``: it instantiates every module afresh, which zeroes the
``mod-stats`` counters of every zone, so one new zone would cost everyone's counts since the
last reading; a transaction touches only the zones it names. :meth:`KnotPlane.publish` returns
once ``zone-status`` shows each zone at its new serial (not ``zone-reload -b``, which also
waits for the NOTIFY to every secondary: five seconds for each that does not answer). Knot
sends the NOTIFY itself when a zone loads with a new serial. knotc talks to the control socket
(``-s``) rather than reading knot.conf (``-c``) for everything but ``zone-check``: a third of
the time of a call.

Counters: ``knotc zone-stats -- mod-stats`` for all zones at once. By default Knot counts
response codes only: ``queries`` is their sum (one response per query; a zone transfer's
response counts too), ``nxdomain`` the NXDOMAIN one, and ``by_type`` stays empty. With
``[dns.knot] count_query_types`` it also counts query types, and ``queries`` is then their sum
(zone transfers are not queries: Knot counts them apart), ``by_type`` per type, those Knot has
no counter of its own for as ``"OTHER"``.
The counters are made monotonic here: when knotd restarted (its pid changed) or Knot's
counters went down (an operator's ``knotc reload``), the last reading is carried over, so only
what was counted between the last reading and the restart is lost. A zone removed starts again
from zero if it comes back.

``accounting=False`` leaves ``mod-stats`` out (zeros are reported): the benchmark's anchor for
what the accounting costs.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rdatatype
import dns.zone

from abusedesk.dns.plane import ZoneCounters
from abusedesk.dns.settings import DnsSettings, TsigKey

log = logging.getLogger(__name__)

STATS_MODULE = "mod-stats/abusedesk"
START_TIMEOUT = 15.0  # seconds for knotd to answer after it was started
STOP_TIMEOUT = 15.0
KNOTC_TIMEOUT = 30.0
LOAD_TIMEOUT = 60.0  # for knotd to load a zone after zone-reload
TSIG_ALGORITHMS = frozenset(
    {"hmac-md5", "hmac-sha1", "hmac-sha224", "hmac-sha256", "hmac-sha384", "hmac-sha512"}
)
_ZONE_NAME = re.compile(r"^(?:[a-z0-9_-]{1,63}\.)+$")  # what a file name and knot.conf can hold
_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")
_STATUS_LINE = re.compile(r"^\[(?P<zone>[^\]]+)\] serial: (?P<serial>\d+|-)")
_STAT_LINE = re.compile(
    r"^\[(?P<zone>[^\]]+)\] mod-stats\.(?P<counter>[a-z-]+)\[(?P<index>[^\]]+)\] = (?P<value>\d+)$"
)


class KnotError(RuntimeError):
    """knotd or knotc failed; the message carries Knot's own words."""


@dataclass(frozen=True, slots=True)
class KnotPaths:
    directory: Path

    @property
    def config(self) -> Path:
        return self.directory / "knot.conf"

    @property
    def zones(self) -> Path:
        return self.directory / "zones"

    @property
    def run(self) -> Path:
        return self.directory / "run"

    @property
    def socket(self) -> Path:
        return self.run / "knot.sock"  # Knot's default control socket, in the rundir

    @property
    def db(self) -> Path:
        return self.directory / "db"

    @property
    def log(self) -> Path:
        return self.directory / "knot.log"

    @property
    def stderr(self) -> Path:
        return self.directory / "knotd.stderr"


def zone_file_name(origin: str) -> str:
    """``example.com.`` → ``example.com.zone``; refuses what cannot be a safe file name."""
    if not _ZONE_NAME.match(origin):
        raise ValueError(f"zone name {origin!r} is not a lower-case absolute host name")
    return f"{origin[:-1]}.zone"


def zone_text(origin: str, zone: dns.zone.Zone) -> str:
    """The zone file as Knot reads it: ``$ORIGIN`` first, then the records, sorted."""
    if zone.origin is None or zone.origin.to_text().lower() != origin:
        raise ValueError(f"zone published as {origin!r} has origin {zone.origin}")
    return zone.to_text(sorted=True, relativize=True, want_origin=True)


def _quote(value: str | Path) -> str:
    text = str(value)
    if any(c in text for c in '"\\\n\r'):
        raise ValueError(f"cannot put {text!r} into knot.conf")
    return f'"{text}"'


def _listen(host: str, port: int) -> str:
    return f"{ipaddress.ip_address(host)}@{port}"


def _check_tsig(key: TsigKey) -> None:
    if key.algorithm not in TSIG_ALGORITHMS:
        raise ValueError(f"TSIG algorithm {key.algorithm!r} is not one Knot knows")
    if not _ZONE_NAME.match(key.name.lower().rstrip(".") + "."):
        raise ValueError(f"TSIG key name {key.name!r} is not a host name")
    if not _BASE64.match(key.secret):
        raise ValueError("the TSIG secret is not base64")


def render_config(
    settings: DnsSettings,
    paths: KnotPaths,
    port: int,
    zones: Iterable[str],
    *,
    accounting: bool = True,
) -> str:
    """knot.conf for these zones (origins as :meth:`KnotPlane.publish` takes them)."""
    secondaries = settings.secondary_endpoints()
    key = settings.tsig
    lines = [
        "# Written by abusedesk (abusedesk.dns.knot); edits are overwritten.",
        "server:",
        f"    rundir: {_quote(paths.run)}",
        f"    listen: {_listen(settings.host, port)}",  # UDP and TCP alike
        "",
        "log:",
        f"  - target: {_quote(paths.log)}",
        "    any: info",
        "",
        "database:",
        f"    storage: {_quote(paths.db)}",
        "",
    ]
    if key is not None:
        _check_tsig(key)
        lines += [
            "key:",
            f"  - id: {key.name}",
            f"    algorithm: {key.algorithm}",
            f"    secret: {key.secret}",
            "",
        ]
    remotes = [f"secondary-{i}" for i in range(len(secondaries))]
    if secondaries:
        lines.append("remote:")
        for rid, secondary in zip(remotes, secondaries, strict=True):
            lines += [f"  - id: {rid}", f"    address: {secondary.address}@{secondary.port}"]
            if key is not None:
                lines.append(f"    key: {key.name}")
        addresses = sorted({s.address for s in secondaries})
        lines += ["", "acl:", "  - id: transfer", f"    address: [{', '.join(addresses)}]"]
        lines.append("    action: transfer")
        if key is not None:
            lines.append(f"    key: {key.name}")  # transfers must be signed with it
        lines.append("")
    if accounting:
        # Only the counters abusedesk reads: every counter costs Knot work per query, and the
        # query-type one (a counter per type) about a tenth of its rate in bench/bench_dns.py.
        by_type = "on" if settings.knot.count_query_types else "off"
        lines += [
            "mod-stats:",
            f"  - id: {STATS_MODULE.split('/')[1]}",
            f"    query-type: {by_type}",
            "    response-code: on",
            "    request-protocol: off",
            "    server-operation: off",
            "    request-bytes: off",
            "    response-bytes: off",
            "    edns-presence: off",
            "    flag-presence: off",
            "    reply-nodata: off",
            "    query-size: off",
            "    reply-size: off",
            "",
        ]
    lines += [
        "template:",
        "  - id: default",
        f"    storage: {_quote(paths.zones)}",
        "    semantic-checks: on",
        "    zonefile-sync: -1",  # the files are abusedesk's: Knot never writes them back
        "    zonefile-load: whole",
        "    journal-content: none",
    ]
    if secondaries:
        lines += ["    acl: transfer", f"    notify: [{', '.join(remotes)}]"]
    lines.append("")
    zones = sorted(zones)
    if zones:
        lines.append("zone:")
    for origin in zones:
        lines += [f"  - domain: {origin}", f"    file: {_quote(zone_file_name(origin))}"]
        if accounting:
            lines.append(f"    module: {STATS_MODULE}")
    return "\n".join(lines) + "\n"


def parse_zone_stats(text: str) -> dict[str, ZoneCounters]:
    """What ``knotc zone-stats -- mod-stats`` prints, as counters per zone (lower-case
    absolute names). Zones that counted nothing are absent, as Knot leaves them out."""
    counters: dict[str, ZoneCounters] = {}
    responses: dict[str, int] = {}  # per zone, all response codes: the queries without types
    for line in text.splitlines():
        match = _STAT_LINE.match(line.strip())
        if match is None:
            continue
        zone = match["zone"].lower()
        zone = zone if zone.endswith(".") else zone + "."
        entry = counters.setdefault(zone, ZoneCounters())
        value = int(match["value"])
        if match["counter"] == "query-type":
            rtype = match["index"].upper()
            entry.queries += value
            entry.by_type[rtype] = entry.by_type.get(rtype, 0) + value
        elif match["counter"] == "response-code":
            responses[zone] = responses.get(zone, 0) + value
            if match["index"] == "NXDOMAIN":
                entry.nxdomain += value
    for zone, entry in counters.items():
        if not entry.by_type:  # Knot counted no query types: every response is a query
            entry.queries = responses.get(zone, 0)
    return counters


def _went_down(now: ZoneCounters, before: ZoneCounters) -> bool:
    return (
        now.queries < before.queries
        or now.nxdomain < before.nxdomain
        or any(now.by_type.get(t, 0) < n for t, n in before.by_type.items())
    )


def _write_atomically(path: Path, text: str, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def free_port(host: str) -> int:
    """A port free for both UDP and TCP on `host` (Knot cannot bind port 0 and tell us)."""
    family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = tcp.getsockname()[1]
            with socket.socket(family, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
                return port
    raise KnotError(f"no free port on {host}")


class KnotPlane:
    """The :class:`~abusedesk.dns.plane.DataPlane` backed by Knot DNS (see the module doc)."""

    def __init__(self, settings: DnsSettings, home: Path, *, accounting: bool = True) -> None:
        self.settings = settings
        directory = Path(settings.knot.directory) if settings.knot.directory else home / "knot"
        self.paths = KnotPaths(directory.resolve())  # knotd is not run from here: absolute paths
        self.accounting = accounting
        self.port = settings.port or free_port(settings.host)
        self._zones: dict[str, str] = {}  # origin → the text Knot has loaded
        self._serials: dict[str, int] = {}  # origin → the serial of that text
        self._process: subprocess.Popen[bytes] | None = None
        self._running = False
        self._lock = threading.Lock()
        self._last: dict[str, ZoneCounters] = {}
        self._carry: dict[str, ZoneCounters] = {}
        self._epoch: str | None = None  # knotd's pid at the last reading
        # Fail here, not at the first publish, on settings Knot cannot take.
        render_config(settings, self.paths, self.port, (), accounting=accounting)

    @property
    def address(self) -> tuple[str, int]:
        return self.settings.host, self.port

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        with self._lock:
            for directory in (self.paths.directory, self.paths.zones, self.paths.run):
                directory.mkdir(parents=True, exist_ok=True)
            self.paths.db.mkdir(exist_ok=True)
            self._write_config()
            if self.settings.knot.manage_daemon:
                if self._knotc_ok("status"):
                    raise KnotError(f"a knotd already runs with {self.paths.config}; stop it first")
                # Its stderr to a file, not a pipe nobody reads while it runs.
                with self.paths.stderr.open("wb") as stderr:
                    self._process = subprocess.Popen(  # noqa: S603 - the configured knotd
                        [self.settings.knot.knotd, "-c", str(self.paths.config)],
                        stdin=subprocess.DEVNULL,
                        stdout=stderr,
                        stderr=stderr,
                    )
            else:
                self._knotc("reload")  # the host's knotd: make it serve what knot.conf says
            try:
                self._wait_until_answering()
            except KnotError:
                if self._process is not None:  # started, but not answering: not left behind
                    self._process.kill()
                    self._process.wait()
                    self._process = None
                raise
            self._running = True
            self._wait_loaded(sorted(self._zones))

    def stop(self) -> None:
        with self._lock:
            self._running = False
            process, self._process = self._process, None
            if process is None:
                return  # a host-run knotd is the host's to stop
            if process.poll() is None:
                with contextlib.suppress(KnotError):
                    self._knotc("stop")
                try:
                    process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    log.warning("knotd did not stop within %.0f s: killed", STOP_TIMEOUT)
                    process.kill()
                    process.wait()

    def _wait_until_answering(self) -> None:
        query = dns.message.make_query(".", dns.rdatatype.SOA)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self._process is not None and self._process.poll() is not None:
                process, self._process = self._process, None
                try:
                    stderr = self.paths.stderr.read_text(errors="replace")
                except OSError:
                    stderr = ""
                raise KnotError(
                    f"knotd exited with status {process.returncode}: "
                    f"{stderr.strip() or self._log_tail()}"
                )
            if self._knotc_ok("status"):
                try:  # any answer will do: REFUSED, since it serves no root zone
                    dns.query.udp(query, self.settings.host, port=self.port, timeout=0.2)
                    return
                except (dns.exception.Timeout, OSError):
                    pass
            if time.monotonic() > deadline:
                raise KnotError(
                    f"knotd did not answer on {self.settings.host}@{self.port} within "
                    f"{START_TIMEOUT:.0f} s: {self._log_tail()}"
                )
            time.sleep(0.05)

    # ------------------------------------------------------------------ zones

    def publish(self, zones: Mapping[str, dns.zone.Zone]) -> None:
        """See :class:`~abusedesk.dns.plane.DataPlane`. A zone Knot refuses keeps the version
        Knot serves (or stays unserved if new) while every other change goes through; then
        :class:`KnotError` names the refused zones with Knot's reasons."""
        texts = {origin: zone_text(origin, zone) for origin, zone in zones.items()}
        serials = {origin: zone.get_soa().serial for origin, zone in zones.items()}
        for origin in texts:
            zone_file_name(origin)  # refuse a bad name before anything is written
        with self._lock:
            previous = self._zones
            added = sorted(texts.keys() - previous.keys())
            removed = sorted(previous.keys() - texts.keys())
            changed = sorted(o for o in texts.keys() & previous.keys() if texts[o] != previous[o])
            self.paths.zones.mkdir(parents=True, exist_ok=True)
            for origin in added + changed:
                _write_atomically(self._zone_path(origin), texts[origin], 0o644)
            self._serials.update(serials)
            self._zones = dict(texts)
            if added or removed:
                self._write_config()  # before zone-check, which finds the zones in it
            refused = self._check(added + changed) if self._running else {}
            for origin in refused:
                if origin not in previous:  # never served: not served now either
                    del self._zones[origin]
                    self._zone_path(origin).unlink()
                elif previous[origin]:  # the file back to what Knot serves, for a restart
                    _write_atomically(self._zone_path(origin), previous[origin], 0o644)
                    self._zones[origin] = previous[origin]
                else:
                    self._zones[origin] = ""
            added = [o for o in added if o not in refused]
            changed = [o for o in changed if o not in refused]
            if refused and any(o not in previous for o in refused):
                self._write_config()
            if self._running:
                if added or removed:
                    try:
                        self._transaction(added, removed)  # knotd loads the added zones
                    except KnotError:
                        # Knot serves what it served: so do we. "" differs from any text, so
                        # the changed zones are written and reloaded again at the next publish.
                        self._zones = previous | {o: "" for o in changed}
                        self._write_config()
                        raise
                self._knotc_if("zone-reload", *changed)
                self._wait_loaded(added + changed)
            for origin in removed:
                with contextlib.suppress(FileNotFoundError):
                    self._zone_path(origin).unlink()
                self._last.pop(origin, None)
                self._carry.pop(origin, None)
            if refused:
                reasons = "; ".join(f"{o}: {why}" for o, why in sorted(refused.items()))
                raise KnotError(f"Knot refuses {len(refused)} zone(s): {reasons}")

    def _zone_path(self, origin: str) -> Path:
        return self.paths.zones / zone_file_name(origin)

    def _transaction(self, added: Sequence[str], removed: Sequence[str]) -> None:
        self._knotc("conf-begin")
        try:
            for origin in removed:
                self._knotc("conf-unset", f"zone[{origin}]")
            for origin in added:
                self._knotc("conf-set", f"zone[{origin}]")
                self._knotc("conf-set", f"zone[{origin}].file", zone_file_name(origin))
                if self.accounting:
                    self._knotc("conf-set", f"zone[{origin}].module", STATS_MODULE)
            self._knotc("conf-commit")
        except BaseException:
            with contextlib.suppress(KnotError):
                self._knotc("conf-abort")
            raise

    def _check(self, origins: Sequence[str]) -> dict[str, str]:
        """``knotc zone-check``: the zone files parsed and checked as knotd would load them.
        The zones Knot refuses, with its reasons."""
        if not origins or self._run_knotc("zone-check", *origins, local=True).returncode == 0:
            return {}
        refused = {}
        for origin in origins:  # which ones: rare, so one call each
            done = self._run_knotc("zone-check", origin, local=True)
            if done.returncode != 0:
                reasons = done.stderr.strip() or done.stdout.strip() or "refused"
                refused[origin] = reasons.replace("\n", "; ")
        return refused

    def _wait_loaded(self, origins: Sequence[str]) -> None:
        """Until knotd serves each zone at its new serial. Not ``zone-reload -b``: that waits
        for the NOTIFY to the secondaries too, five seconds for each one that does not answer."""
        waiting = {o: self._serials[o] for o in origins}
        deadline = time.monotonic() + LOAD_TIMEOUT
        while waiting:
            for line in self._knotc("zone-status", *waiting, "+serial").splitlines():
                match = _STATUS_LINE.match(line.strip())
                if match and match["serial"] != "-":
                    origin = match["zone"].lower()
                    if waiting.get(origin) == int(match["serial"]):
                        del waiting[origin]
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise KnotError(
                    f"knotd did not load {', '.join(sorted(waiting))} within "
                    f"{LOAD_TIMEOUT:.0f} s: {self._log_tail()}"
                )
            time.sleep(0.02)

    # ------------------------------------------------------------------ counters

    def counters(self) -> dict[str, ZoneCounters]:
        with self._lock:
            served = list(self._zones)
            if self.accounting and self._running and served:
                raw = parse_zone_stats(self._knotc("zone-stats", "--", "mod-stats"))
                # A new knotd (its pid changed) counts from zero, even if it has already
                # counted past the last reading; counters that went down say so too (a reload).
                epoch = self._knotd_pid()
                restarted = self._epoch is not None and epoch != self._epoch
                self._epoch = epoch
                for origin in served:
                    now = raw.get(origin, ZoneCounters())
                    before = self._last.get(origin)
                    if before is not None and (restarted or _went_down(now, before)):
                        self._carry.setdefault(origin, ZoneCounters()).add(before)
                    self._last[origin] = now
            result: dict[str, ZoneCounters] = {}
            for origin in served:
                total = ZoneCounters()
                total.add(self._carry.get(origin, ZoneCounters()))
                total.add(self._last.get(origin, ZoneCounters()))
                result[origin] = total
            return result

    def _knotd_pid(self) -> str:
        try:
            return (self.paths.run / "knot.pid").read_text().strip()
        except OSError:
            return ""

    # ------------------------------------------------------------------ knotc, files

    def _write_config(self) -> None:
        text = render_config(
            self.settings, self.paths, self.port, self._zones, accounting=self.accounting
        )
        # 0640: it holds the TSIG secret; a host-run knotd reads it through its group.
        _write_atomically(self.paths.config, text, 0o640)

    def _run_knotc(self, *args: str, local: bool = False) -> subprocess.CompletedProcess[str]:
        # The control socket rather than -c: knotc then skips parsing knot.conf (a third of
        # the time of a call). Local operations (zone-check) need the configuration.
        where = ["-c", str(self.paths.config)] if local else ["-s", str(self.paths.socket)]
        command = [self.settings.knot.knotc, *where, *args]
        try:
            return subprocess.run(  # noqa: S603 - the configured knotc
                command, capture_output=True, text=True, timeout=KNOTC_TIMEOUT, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise KnotError(f"knotc {' '.join(args)}: {exc}") from exc

    def _knotc(self, *args: str) -> str:
        done = self._run_knotc(*args)
        if done.returncode != 0:
            message = (done.stderr.strip() or done.stdout.strip() or "failed").replace("\n", "; ")
            raise KnotError(f"knotc {' '.join(args)}: {message}")
        return done.stdout

    def _knotc_if(self, command: str, *zones: str) -> None:
        if zones:
            self._knotc(command, *zones)

    def _knotc_ok(self, *args: str) -> bool:
        try:
            return self._run_knotc("-t", "1", *args).returncode == 0
        except KnotError:
            return False

    def _log_tail(self, lines: int = 8) -> str:
        try:
            tail = self.paths.log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return "(no log)"
        return "; ".join(tail) or "(empty log)"
