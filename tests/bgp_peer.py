"""A real BGP peer for tests: BIRD on a loopback address of its own, and the exabgp driver's
settings to reach it. Needs `bird` (Debian bird2), `exabgp` and root (BIRD listens on port 179);
tests skip without them, except under CI=true, where a missing peer is a failure."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from abusedesk.enforce.choices import DriverName
from abusedesk.enforce.settings import EnforceSettings, ExabgpNeighbor, ExabgpSettings

IN_CI = os.environ.get("CI", "").lower() == "true"
WAIT_SECONDS = 30
BIRD_AS, EXABGP_AS = 65001, 65002


def _missing() -> str | None:
    for tool in ("bird", "birdc", "exabgp"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (apt-get install bird2 exabgp)"
    if os.geteuid() != 0:
        return "BIRD must listen on port 179, which needs root"
    return None


@pytest.fixture
def bgp_peers() -> None:
    missing = _missing()
    if missing is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true and a real BGP peer is missing: {missing}")
    pytest.skip(missing)


def wait_for(what: str, check: Callable[[], bool], seconds: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"after {seconds} s, still not: {what}")
        time.sleep(0.2)


@dataclass
class Bird:
    address: str
    ctl: Path
    log: Path

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            ["birdc", "-s", str(self.ctl), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return done.stdout + done.stderr

    def established(self) -> bool:
        return "Established" in self.cli("show", "protocols", "exa")

    def unicast(self) -> str:
        return self.cli("show", "route", "all")

    def flows(self, table: str = "flowtab4") -> str:
        return self.cli("show", "route", "table", table, "all")


def _free_loopback() -> str:
    """A loopback address of our own, so that two test runs at once do not share a BIRD."""
    for _ in range(50):
        address = f"127.{random.randint(1, 254)}.{random.randint(0, 254)}.{random.randint(1, 254)}"
        with socket.socket() as probe:
            try:
                probe.bind((address, 179))
            except OSError:
                continue
        return address
    raise RuntimeError("no free loopback address for BIRD")


BIRD_CONF = """
router id {address};
log "{log}" all;
protocol device {{ scan time 60; }}
flow4 table flowtab4;
flow6 table flowtab6;
protocol bgp exa {{
  local {address} port 179 as {bird_as};
  neighbor 127.0.0.1 as {exabgp_as};
  strict bind yes;
  passive on;
  multihop;
  ipv4 {{ import all; export none; }};
  ipv6 {{ import all; export none; }};
  flow4 {{ table flowtab4; import all; export none; }};
  flow6 {{ table flowtab6; import all; export none; }};
}}
"""


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Not tmp_path: a unix socket's path must stay under about 100 bytes.
    path = Path(tempfile.mkdtemp(prefix="abusedesk-bgp-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def bird(bgp_peers: None, workdir: Path) -> Iterator[Bird]:
    address = _free_loopback()
    conf, ctl, log = workdir / "bird.conf", workdir / "bird.ctl", workdir / "bird.log"
    conf.write_text(
        BIRD_CONF.format(address=address, log=log, bird_as=BIRD_AS, exabgp_as=EXABGP_AS)
    )
    out = (workdir / "bird.out").open("wb")
    process = subprocess.Popen(
        ["bird", "-f", "-c", str(conf), "-s", str(ctl), "-P", str(workdir / "bird.pid")],
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:
        peer = Bird(address, ctl, log)
        wait_for(
            "BIRD answers on its control socket", lambda: "exa" in peer.cli("show", "protocols")
        )
        yield peer
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        out.close()


def enforce_settings(bird: Bird, **exabgp: object) -> EnforceSettings:
    return EnforceSettings(
        default_driver=DriverName.EXABGP.value,
        exabgp=ExabgpSettings(
            neighbors=[
                ExabgpNeighbor(
                    address=bird.address,
                    local_address="127.0.0.1",
                    local_as=EXABGP_AS,
                    peer_as=BIRD_AS,
                    hold_time=30,
                )
            ],
            **exabgp,  # type: ignore[arg-type]
        ),
    )
