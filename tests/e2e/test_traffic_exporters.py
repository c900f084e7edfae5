"""Real exporters into a running collector (issue 5, item 6): pcaps of a SYN flood, a UDP
reflection trigger, a horizontal and a vertical scan, a spam burst and ordinary web traffic,
replayed by softflowd (NetFlow v5, v9, IPFIX) and by pmacctd's sfprobe plugin (sFlow v5) into
the traffic role's collector, analysis thread, windows, detectors and case service, on a test
database: each attack opens its case against the server that sent it, and web traffic opens none.

The thresholds are the production policy's, with every *rate* divided by ``RATE_SCALE``: a
capture is a few thousand packets where a real attack is millions, while the windows still
average over a one-minute bucket. Distinct counts (reflectors, SMTP destinations, scanned
addresses and ports) keep their production values. Each capture is sized from those thresholds
with a margin (pmacctd drops the last few packets of a file).

Determinism: the collector's clock is pinned to the moment the role starts, so a replay never
straddles two buckets. After the exporter exits, a marker datagram is sent to the same socket:
when the analysis has seen it, it has folded everything the exporter sent before it into the
windows. Then the detection step runs once, over the whole replay (the scheduled one never
comes: the pinned clock does not reach ``detect_every``), and opens its cases.
"""

from __future__ import annotations

import math
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from abusedesk.accounts.permissions import SYSTEM
from abusedesk.bootstrap import Desk
from abusedesk.cases.models import Case, CaseEvent
from abusedesk.inventory import service as inventory
from abusedesk.inventory.schemas import ServerIn
from abusedesk.policy import load_policy
from abusedesk.policy.choices import Category
from abusedesk.policy.model import TrafficPolicy
from abusedesk.traffic.choices import DetectionKind
from abusedesk.traffic.collector import Collector
from abusedesk.traffic.decode import DecodeResult
from abusedesk.traffic.decode.records import V4_MAPPED
from abusedesk.traffic.findings import Analysis, TrafficFindings, report_detections
from abusedesk.traffic.settings import TrafficSettings, UdpListen
from abusedesk.traffic.windows import WindowSettings
from tests import factories
from tests import traffic_pcaps as pcaps
from tests.flow_fixtures import IN_CI
from tests.integration.test_traffic_collector import v5_datagram

RATE_SCALE = 100
RATES = (
    "flood_pps",
    "flood_bps",
    "flood_syn_pps",
    "reflection_pps",
    "amplifier_bps",
    "inbound_pps",
    "inbound_bps",
)
BUCKET = WindowSettings().bucket_seconds
MARGIN = 1.5  # captures carry this many times what a threshold needs
WAIT_SECONDS = 60

ATTACKER, WEB_SERVER = "198.51.100.1", "198.51.100.2"  # the test inventory's two servers
VICTIM = "198.18.250.1"
ATTACKER_V6, VICTIM_V6 = "2001:db8:100::1", "2001:db8:ffff::1"
MARKER = ("192.0.2.1", "192.0.2.2", 7, 9, 1)  # a flow of no server's: marks the end of a replay
MARKER_SOURCE = "127.0.0.2"  # not the exporters' address, so no registry entry is shared


# ---------------------------------------------------------------------------- the policy


def scaled(policy: TrafficPolicy) -> TrafficPolicy:
    """The production traffic policy with every rate threshold divided by ``RATE_SCALE``."""

    def down(values: Mapping[str, float]) -> dict[str, float]:
        return {k: (v / RATE_SCALE if k in RATES else v) for k, v in values.items()}

    plans = {
        name: replace(t, **down({r: getattr(t, r) for r in RATES}))
        for name, t in policy.plans.items()
    }
    servers = {sid: down(values) for sid, values in policy.servers.items()}
    return replace(policy, plans=plans, servers=servers)


TEST_POLICY = scaled(load_policy().traffic)
LIMITS = TEST_POLICY.thresholds(0, "vps-small")  # the plan the factories give servers


def enough(threshold: float) -> int:
    return math.ceil(MARGIN * threshold)


# ---------------------------------------------------------------------------- the captures


@dataclass(frozen=True)
class Attack:
    build: Callable[[], pcaps.Capture]
    category: Category
    kind: DetectionKind


ATTACKS = {
    # SYN-only packets at one victim: the SYN figure of the outbound flood.
    "syn_flood": Attack(
        lambda: pcaps.syn_flood(ATTACKER, VICTIM, packets=enough(LIMITS.flood_syn_pps * BUCKET)),
        Category.DENIAL_OF_SERVICE,
        DetectionKind.OUTBOUND_FLOOD,
    ),
    "reflection_trigger": Attack(
        lambda: pcaps.reflection_trigger(
            ATTACKER,
            reflectors=enough(LIMITS.reflection_reflectors),
            per_reflector=max(
                2,
                math.ceil(
                    enough(LIMITS.reflection_pps * BUCKET) / enough(LIMITS.reflection_reflectors)
                ),
            ),
        ),
        Category.DENIAL_OF_SERVICE,
        DetectionKind.REFLECTION_TRIGGER,
    ),
    "horizontal_scan": Attack(
        lambda: pcaps.horizontal_scan(ATTACKER, targets=enough(LIMITS.scan_addresses)),
        Category.NETWORK_ABUSE,
        DetectionKind.HORIZONTAL_SCAN,
    ),
    "vertical_scan": Attack(
        lambda: pcaps.vertical_scan(ATTACKER, VICTIM, ports=enough(LIMITS.scan_ports)),
        Category.NETWORK_ABUSE,
        DetectionKind.VERTICAL_SCAN,
    ),
    "spam_burst": Attack(
        lambda: pcaps.spam_burst(ATTACKER, destinations=enough(LIMITS.spam_destinations)),
        Category.SPAM,
        DetectionKind.SPAM,
    ),
}
# More clients than the distinct-count thresholds a careless detector would trip on.
WEB_CLIENTS = enough(
    max(LIMITS.scan_addresses, LIMITS.spam_destinations, LIMITS.reflection_reflectors)
)


@pytest.fixture(scope="session")
def captures(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The pcap of a capture, built on first use and kept for the session (scapy is slow)."""
    directory = tmp_path_factory.mktemp("pcaps")
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            if name == "web_traffic":
                capture = pcaps.web_traffic(WEB_SERVER, clients=WEB_CLIENTS)
            elif name == "vertical_scan_v6":
                capture = pcaps.vertical_scan(ATTACKER_V6, VICTIM_V6, enough(LIMITS.scan_ports))
            else:
                capture = ATTACKS[name].build()
            built[name] = capture.write(directory / f"{name}.pcap")
        return built[name]

    return get


# ---------------------------------------------------------------------------- the exporters


def _tool(name: str, package: str) -> str:
    found = shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.exists()), None
    )
    if found is None:
        if IN_CI:
            pytest.fail(f"CI=true and `{name}` is missing (.ci/run installs {package})")
        pytest.skip(f"`{name}` is not installed (apt-get install {package})")
    return found


def softflowd(version: str) -> Callable[[Path, tuple[str, int], Path], None]:
    def replay(pcap: Path, collector: tuple[str, int], workdir: Path) -> None:
        binary = _tool("softflowd", "softflowd")
        host, port = collector
        subprocess.run(
            [binary, "-r", str(pcap), "-n", f"{host}:{port}", "-v", version],
            check=True,
            timeout=WAIT_SECONDS,
            capture_output=True,
        )

    return replay


def pmacctd_sflow(pcap: Path, collector: tuple[str, int], workdir: Path) -> None:
    """pmacctd reads the file and exports every packet as an sFlow sample (1 in 1)."""
    binary = _tool("pmacctd", "pmacct")
    host, port = collector
    config = workdir / "sfprobe.conf"
    config.write_text(
        "daemonize: false\n"
        f"pcap_savefile: {pcap}\n"
        "plugins: sfprobe[sf]\n"
        f"sfprobe_receiver[sf]: {host}:{port}\n"
        "sfprobe_agentip[sf]: 127.0.0.1\n"
        "plugin_buffer_size: 200\n"
    )
    done = subprocess.run(
        [binary, "-f", str(config)], timeout=WAIT_SECONDS, capture_output=True, text=True
    )
    said = done.stdout + done.stderr
    # At the end of a savefile the sfprobe plugin flushes and exits; when it is quicker than
    # the core's own shutdown, the core logs "connection lost … no more plugins active" and
    # exits 1 although everything was exported (pmacct 1.7.7). The case checked after this
    # is what shows the export happened.
    finished = "Shutting down on user request" in said and (
        done.returncode == 0 or "no more plugins active" in said
    )
    assert finished, f"pmacctd exited {done.returncode}:\n{said[-2000:]}"


@dataclass(frozen=True)
class Exporter:
    listener: str  # which of the collector's sockets it sends to
    replay: Callable[[Path, tuple[str, int], Path], None]


EXPORTERS = {
    "softflowd-v5": Exporter("netflow", softflowd("5")),
    "softflowd-v9": Exporter("netflow", softflowd("9")),
    "softflowd-ipfix": Exporter("netflow", softflowd("10")),
    "pmacctd-sflow": Exporter("sflow", pmacctd_sflow),
}


# ---------------------------------------------------------------------------- the role


def _is_marker(result: DecodeResult) -> bool:
    src = V4_MAPPED | int.from_bytes(socket.inet_aton(MARKER[0]), "big")
    dst = V4_MAPPED | int.from_bytes(socket.inet_aton(MARKER[1]), "big")
    flows = result.flows
    return bool(((flows["src_lo"] == src) & (flows["dst_lo"] == dst)).any())


class MarkedFindings(TrafficFindings):
    """The role's findings, which also say when the marker flow has been analysed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.marked = threading.Event()

    def accept(
        self, result: DecodeResult, exporter_addresses: Sequence[str], received_at: float
    ) -> None:
        super().accept(result, exporter_addresses, received_at)
        if _is_marker(result):
            self.marked.set()


@dataclass
class Role:
    collector: Collector
    findings: MarkedFindings
    now: float  # the collector's pinned clock

    def replay(self, exporter: Exporter, pcap: Path, workdir: Path) -> None:
        """Run the exporter over ``pcap``, then wait until the analysis has seen all of it."""
        address = self.collector.addresses[exporter.listener]
        exporter.replay(pcap, address, workdir)
        # What the exporter sent is queued on the socket before the marker: loopback keeps order.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.bind((MARKER_SOURCE, 0))
            sender.sendto(v5_datagram([MARKER]), address)
        assert self.findings.marked.wait(WAIT_SECONDS), "the analysis never saw the marker"
        self.findings.detect(self.now)


@pytest.fixture
def role(desk: Desk) -> Iterator[Role]:
    settings = TrafficSettings(netflow=UdpListen(port=0), sflow=UdpListen(port=0))
    findings = MarkedFindings(
        settings, TEST_POLICY, desk.session_factory, report_detections(desk), detect_every=60
    )
    analysis = Analysis(findings)
    pinned = time.time()
    halt = threading.Event()
    with Collector(settings, analysis, clock=lambda: pinned) as collector:
        analysis.start()
        reader = threading.Thread(target=collector.run, args=(halt,), daemon=True)
        reader.start()
        try:
            yield Role(collector, findings, pinned)
        finally:
            halt.set()
            reader.join(timeout=5)
            analysis.stop()
    assert findings.errors == 0
    assert collector.totals.errors == 0
    assert collector.totals.dropped == 0


def _cases(desk: Desk) -> list[tuple[Case, list[dict[str, object]]]]:
    with desk.uow().reading() as uow:
        cases = list(uow.session.scalars(sa.select(Case).order_by(Case.id)))
        out = []
        for case in cases:
            events = uow.session.scalars(
                sa.select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id)
            )
            evidence = [e.data["evidence"] for e in events if (e.data or {}).get("evidence")]
            out.append((case, evidence))
        return out


# ---------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("exporter", list(EXPORTERS))
@pytest.mark.parametrize("attack", list(ATTACKS))
def test_an_attack_replayed_by_a_real_exporter_opens_its_case(
    desk: Desk,
    role: Role,
    captures: Callable[[str], Path],
    tmp_path: Path,
    attack: str,
    exporter: str,
) -> None:
    customer = factories.customer(desk, "C1001", servers=2, base="198.51.100")
    pcap = captures(attack)
    role.replay(EXPORTERS[exporter], pcap, tmp_path)

    expected = ATTACKS[attack]
    found = _cases(desk)
    assert [(c.server_id, c.category) for c, _ in found] == [
        (customer.server_ids[0], expected.category)
    ], [c.summary for c, _ in found]
    case, evidence = found[0]
    assert {e["kind"] for e in evidence} == {expected.kind.value}, case.summary
    fired = evidence[0]
    assert fired["server_id"] == customer.server_ids[0]
    assert all(f["peak"] >= f["threshold"] for f in fired["fired"])
    # The whole capture was seen: its margin over the threshold, less what pmacctd drops.
    assert fired["fired"][0]["peak"] >= (MARGIN - 0.1) * fired["fired"][0]["threshold"]
    samples = fired["sample_flows"]
    assert samples, "the evidence carries sample flows"
    assert all(s["src"] == ATTACKER for s in samples)
    # The exporters' flow times (the arrival time for sFlow) are today's, not decades off.
    assert all(abs(s["first_ms"] / 1000 - time.time()) < 3600 for s in samples), samples


@pytest.mark.parametrize("exporter", [e for e in EXPORTERS if e != "softflowd-v5"])
def test_an_ipv6_scan_opens_its_case(
    desk: Desk, role: Role, captures: Callable[[str], Path], tmp_path: Path, exporter: str
) -> None:
    """NetFlow v5 has no IPv6; v9 and IPFIX (softflowd's templates 2048 and 2049) and sFlow do."""
    factories.customer(desk, "C1001", servers=1, base="198.51.100")
    server = inventory.create_server(
        desk.uow(),
        SYSTEM,
        ServerIn(
            account_reference="C1001",
            hostname="srv6.c1001.example",
            plan="vps-small",
            prefixes=[f"{ATTACKER_V6}/128"],
        ),
    )
    role.replay(EXPORTERS[exporter], captures("vertical_scan_v6"), tmp_path)
    found = _cases(desk)
    assert [(c.server_id, c.category) for c, _ in found] == [(server.id, Category.NETWORK_ABUSE)]
    [(case, evidence)] = found
    assert {e["kind"] for e in evidence} == {DetectionKind.VERTICAL_SCAN.value}
    assert f"target {VICTIM_V6}" in case.summary
    assert all(s["src"] == ATTACKER_V6 for s in evidence[0]["sample_flows"])


@pytest.mark.parametrize("exporter", list(EXPORTERS))
def test_ordinary_web_traffic_replayed_by_a_real_exporter_opens_no_case(
    desk: Desk, role: Role, captures: Callable[[str], Path], tmp_path: Path, exporter: str
) -> None:
    customer = factories.customer(desk, "C1001", servers=2, base="198.51.100")
    role.replay(EXPORTERS[exporter], captures("web_traffic"), tmp_path)
    # It did arrive, both ways: a flow (softflowd) or sample (sFlow) at least per session.
    window = role.findings.windows.view(customer.server_ids[1], role.now)
    assert window.total("in_tcp_flows").sum() >= WEB_CLIENTS
    assert window.total("out_tcp_flows").sum() >= WEB_CLIENTS
    assert _cases(desk) == []
    assert role.findings.detections == 0
