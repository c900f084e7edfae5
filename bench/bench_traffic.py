"""Benchmark the traffic path: decode + aggregate on one core, and the live collector.

Usage: python bench/bench_traffic.py [--datagrams N] [--servers N] [--rate N] [--seconds S]
                                     [--markdown FILE] [--no-live]

(a) Decode + aggregate. The datagrams of ``bench_decode`` (NetFlow v5, v9, IPFIX, sFlow v5),
with addresses drawn against an inventory of ``--servers`` customer servers (one /24 each, as
many prefixes): 45 % of the flows leave one of our servers, 45 % come to one, 10 % are transit.
Timed, in CPU seconds of this process, best of 3: decoding alone (``FlowDecoder.decode_many``
in batches of 512 datagrams); decode + aggregate, i.e. what the analysis thread does per batch
(``TrafficFindings``: the owners of both addresses through the inventory's prefix index,
``locate.server_ids_of_packed``, then ``Windows.add``); settling the windows once afterwards
(the measures, contacts and samples of every server, which the detectors read every
``detect_every`` seconds), until the first server's figures are read (that first view builds
the contact rows from the merged columns); and one run of every detector over every server. Beside it, the
PyPI ``netflow`` package decoding the same datagrams (1 in 10), as in ``bench_decode``.

(b) Live, over loopback. A sender process paces datagrams (NetFlow v5, 30 records each, and
NetFlow v9) at ``--rate`` datagrams/s for ``--seconds`` into: the `traffic` role's collector
(``Collector`` with ``Analysis`` and ``TrafficFindings`` behind it, in a process of its own;
only the database refresh of the prefix index is replaced by the same in-memory index), and
nfdump's ``nfcapd`` (Debian package ``nfdump``). Each receiver's CPU time (utime + stime from
``/proc/PID/stat``) from its start to the end of the stream and its drain, per record it
received; datagrams sent and counted, and what the kernel dropped on the receiving socket.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
try:
    import abusedesk  # noqa: F401
except ImportError:  # running from a checkout without an installed package
    sys.path.insert(0, str(HERE.parent / "src"))

import bench_decode as bd  # noqa: E402
from abusedesk.config import Settings  # noqa: E402
from abusedesk.inventory import locate  # noqa: E402
from abusedesk.inventory.prefix_index import Assignment, PrefixIndex  # noqa: E402
from abusedesk.policy import Policy, load_policy  # noqa: E402
from abusedesk.policy.model import TrafficPolicy  # noqa: E402
from abusedesk.traffic.decode import FlowDecoder  # noqa: E402
from abusedesk.traffic.detectors import detect_all  # noqa: E402
from abusedesk.traffic.findings import TrafficFindings  # noqa: E402
from abusedesk.traffic.heap import keep_freed_memory  # noqa: E402
from abusedesk.traffic.windows import Windows  # noqa: E402

SEED = 20240602
REPEATS = 3
BATCH = 512
TARGET = 2_000_000  # records/s, decode + aggregate, template formats, one core
MIN_RATIO = 10.0
NOW = 1_800_000_000.0
FIRST_SERVER_ID = 1000
OUR_BASE = 0x0A000000  # 10.0.0.0: server i holds 10.x.y.0/24, x.y = i
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- inventory


def inventory(servers: int) -> locate._Index:
    """The prefix index as ``locate.current_index`` hands it to TrafficFindings."""
    index = locate._Index()
    index.index = PrefixIndex.build(
        [Assignment(f"10.{i // 256}.{i % 256}.0/24", i) for i in range(servers)]
    )
    index.server_of = np.arange(servers, dtype=np.int64) + FIRST_SERVER_ID
    index.account_of = np.arange(servers, dtype=np.int64) // 4
    return index


def values_for(servers: int) -> bd.Values:
    """bench_decode's record values with one address of ours in 90 % of the flows."""

    def values(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        v = bd._record_values(rng, n)
        host = rng.integers(0, servers, n, dtype=np.uint32) * 256 + rng.integers(1, 255, n)
        ours = (OUR_BASE + host).astype(np.uint32)
        foreign = v["dst"]
        u = rng.random(n)
        outbound, transit = u < 0.45, u >= 0.9
        src = np.where(outbound, ours, foreign)
        dst = np.where(outbound, foreign, ours)
        dst = np.where(transit, rng.integers(0xC0000000, 0xDFFFFFFF, n, dtype=np.uint32), dst)
        v["src"], v["dst"] = src.astype(np.uint32), dst.astype(np.uint32)
        return v

    return values


BUILDERS: dict[str, tuple[str, Callable[..., list[bytes]]]] = {
    "v5": ("NetFlow v5", bd.v5_datagrams),
    "v9": ("NetFlow v9", bd.v9_datagrams),
    "ipfix": ("IPFIX", bd.ipfix_datagrams),
    "sflow": ("sFlow v5", bd.sflow_datagrams),
}


# --------------------------------------------------------------------------- (a) one core


def cpu_best(fn: Callable[[], object]) -> tuple[float, object]:
    runs, value = [], None
    for _ in range(REPEATS):
        start = time.process_time()
        value = fn()
        runs.append(time.process_time() - start)
    return min(runs), value


def decode_batches(datagrams: list[bytes]) -> list:
    decoder = FlowDecoder()
    out = []
    for start in range(0, len(datagrams), BATCH):
        items = [(d, "192.0.2.1") for d in datagrams[start : start + BATCH]]
        out.append(decoder.decode_many(items, now=NOW))
    return out


def owners(index: locate._Index, flows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What TrafficFindings.owners does."""
    version = flows["ip_version"]
    return (
        locate.server_ids_of_packed(index, version, flows["src_hi"], flows["src_lo"]),
        locate.server_ids_of_packed(index, version, flows["dst_hi"], flows["dst_lo"]),
    )


def fold(datagrams: list[bytes], index: locate._Index) -> tuple[Windows, int]:
    """Decode, look up the owners and add to the windows, batch by batch, as the analysis
    thread does (TrafficFindings._accept, defaults of an exporter that has not said a rate)."""
    decoder = FlowDecoder()
    windows = Windows()
    records = 0
    for start in range(0, len(datagrams), BATCH):
        items = [(d, "192.0.2.1") for d in datagrams[start : start + BATCH]]
        result = decoder.decode_many(items, now=NOW)
        flows = result.flows
        src, dst = owners(index, flows)
        windows.add(flows, src, dst, NOW, np.ones(len(items))[result.origin])
        records += len(flows)
    return windows, records


@dataclass(frozen=True)
class Folded:
    fmt: str
    datagrams: int
    records: int
    ours_share: float  # flows with at least one address of ours
    decode: float  # records/s
    aggregate: float  # decode + owners + windows.add, records/s
    settle_ns: float  # per record, settling the windows once
    detect_s: float  # one detect_all over every server
    servers_seen: int
    anchor: float | None  # netflow package, records/s

    @property
    def with_settle(self) -> float:
        return 1 / (1 / self.aggregate + self.settle_ns * 1e-9)

    @property
    def ratio(self) -> float | None:
        return self.aggregate / self.anchor if self.anchor else None


def run_fold(key: str, datagrams: list[bytes], index: locate._Index) -> Folded:
    name = BUILDERS[key][0]
    print(f"{name}: {len(datagrams):,} datagrams", file=sys.stderr)
    decode_time, results = cpu_best(lambda: decode_batches(datagrams))
    records = sum(len(r.flows) for r in results)  # type: ignore[attr-defined]
    ours = 0
    for r in results:  # type: ignore[attr-defined]
        src, dst = owners(index, r.flows)
        ours += int(np.count_nonzero((src >= 0) | (dst >= 0)))
    fold_time, (windows, folded) = cpu_best(lambda: fold(datagrams, index))  # type: ignore[misc]
    assert folded == records
    settle_runs, detect_runs, seen = [], [], 0
    for _ in range(REPEATS):
        windows, _n = fold(datagrams, index)
        start = time.process_time()
        servers = windows.servers(NOW)
        # Until a server's figures can be read: the first view builds its buckets' contact
        # rows from the merged columns (Windows keeps them as columns until then).
        windows.view(servers[0], NOW)
        settle_runs.append(time.process_time() - start)
        seen = len(servers)
        start = time.process_time()
        detect_all(windows, TrafficPolicy(), NOW)
        detect_runs.append(time.process_time() - start)
    anchor_rate = None
    if key != "sflow":
        share = datagrams[: max(bd.TEMPLATE_EVERY, len(datagrams) // bd.ANCHOR_SHARE)]
        anchor_time, (their_records, _total) = bd.best_time(lambda: bd.anchor(name, share))  # type: ignore[misc]
        anchor_rate = their_records / anchor_time
    return Folded(
        name,
        len(datagrams),
        records,
        ours / max(records, 1),
        records / decode_time,
        records / fold_time,
        min(settle_runs) / records * 1e9,
        min(detect_runs),
        seen,
        anchor_rate,
    )


# --------------------------------------------------------------------------- (b) live


def cpu_seconds(*pids: int) -> float:
    """utime + stime of processes (all their threads), from /proc/PID/stat."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def send(port: int, path: Path, rate: int, seconds: float) -> dict[str, float]:
    """The sender process: the datagrams in ``path`` (length-prefixed), cyclically, paced at
    ``rate`` a second, with their sequence numbers rewritten to run on."""
    blob = path.read_bytes()
    datagrams, at = [], 0
    while at < len(blob):
        (size,) = struct.unpack_from("!I", blob, at)
        datagrams.append(bytearray(blob[at + 4 : at + 4 + size]))
        at += 4 + size
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    target = ("127.0.0.1", port)
    total = int(rate * seconds)
    v5_seq = v9_seq = 0
    sent = records = 0
    start = time.perf_counter()
    sendto = sock.sendto
    n = len(datagrams)
    while sent < total:
        due = int((time.perf_counter() - start) * rate) + 1
        if due <= sent:
            time.sleep(max(0.0, (sent / rate) - (time.perf_counter() - start)))
            continue
        for _ in range(min(due, total) - sent):
            d = datagrams[sent % n]
            if d[1] == 5:
                struct.pack_into("!I", d, 16, v5_seq)
                count = struct.unpack_from("!H", d, 2)[0]
                v5_seq = (v5_seq + count) & 0xFFFFFFFF
                records += count
            elif d[1] == 9:
                struct.pack_into("!I", d, 12, v9_seq)
                v9_seq = (v9_seq + 1) & 0xFFFFFFFF
            sendto(d, target)
            sent += 1
    elapsed = time.perf_counter() - start
    return {"sent": sent, "seconds": elapsed, "rate": sent / elapsed, "v5_records": records}


class InMemoryFindings(TrafficFindings):
    """TrafficFindings with the bench's prefix index rather than one read from a database."""

    index: locate._Index | None = None

    def _refresh(self, now: float) -> None:
        if InMemoryFindings.index is None:
            InMemoryFindings.index = inventory(int(os.environ["ABUSEDESK_BENCH_SERVERS"]))
        self._index, self._plans = InMemoryFindings.index, {}


def in_memory_findings(settings: Settings, policy: Policy) -> TrafficFindings:
    """The analysis child's findings (abusedesk.traffic.offload): no database, no cases."""
    return InMemoryFindings(settings.traffic, policy.traffic, lambda: None, lambda found: None)


def serve(port: int, servers: int) -> None:
    """Our receiver process: the traffic role's collector with the analysis behind it, in a
    child process, as `abusedesk run --role traffic` runs them."""
    import logging

    from abusedesk import metrics
    from abusedesk.traffic.collector import Collector
    from abusedesk.traffic.offload import AnalysisProcess
    from abusedesk.traffic.settings import TrafficSettings, UdpListen

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    keep_freed_memory()  # as the traffic role does
    os.environ["ABUSEDESK_BENCH_SERVERS"] = str(servers)
    traffic = TrafficSettings(
        netflow=UdpListen(host="127.0.0.1", port=port), sflow=UdpListen(host="127.0.0.1", port=0)
    )
    analysis = AnalysisProcess(
        Settings(traffic=traffic), load_policy(), findings=in_memory_findings
    )
    collector = Collector(traffic, analysis)
    collector.open()
    granted = collector.sockets["netflow"].getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
    halt = threading.Event()
    analysis.start()
    reader = threading.Thread(target=collector.run, args=(halt,), name="traffic-reader")
    reader.start()
    print(json.dumps({"ready": True, "buffer": granted, "child": analysis.pid}), flush=True)
    sys.stdin.readline()  # the parent says the stream is over and drained
    halt.set()
    reader.join()
    analysis.stop(timeout=600)
    collector.close()
    summary = analysis.summary or {}
    skipped = metrics.traffic_batches_skipped._value.get()  # type: ignore[attr-defined]
    t = collector.totals
    print(
        json.dumps(
            {
                "datagrams": t.datagrams,
                "records": t.records,
                "errors": t.errors,
                "dropped": t.dropped,
                "skipped_batches": skipped,
                "analysed": summary.get("flows", 0),
                "findings_errors": summary.get("errors", 0),
                "servers": summary.get("servers", 0),
                "settle_s": summary.get("settle_s", 0.0),
            }
        ),
        flush=True,
    )


@dataclass(frozen=True)
class Live:
    receiver: str
    fmt: str
    sent: int
    send_rate: float
    counted: int  # datagrams the receiver counted
    records: int
    dropped: int | None  # kernel drops on the receiving socket
    cpu: float  # receiver CPU seconds
    detail: str


_PACER: list[str] = []


def _pacer() -> list[str]:
    """The sender's command: bench/udp_pace.c compiled (sendmmsg, a few % of a core at
    50 000 datagrams/s), or this script's Python sender where there is no C compiler."""
    if not _PACER:
        cc = shutil.which("cc") or shutil.which("gcc")
        binary = Path(tempfile.gettempdir()) / f"abusedesk_udp_pace_{os.getpid()}"
        built = cc and subprocess.run(
            [cc, "-O2", "-o", str(binary), str(HERE / "udp_pace.c")], check=False
        )
        if built and built.returncode == 0:
            atexit.register(binary.unlink, missing_ok=True)
            _PACER.append(str(binary))
        else:
            print("no C compiler: the Python sender may not hold the rate", file=sys.stderr)
            _PACER.extend([sys.executable, __file__, "--send"])
    return _PACER


def _sender(port: int, path: Path, rate: int, seconds: float) -> dict[str, float]:
    out = subprocess.run(
        [*_pacer(), str(port), str(path), str(rate), str(seconds)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def live_ours(fmt: str, path: Path, rate: int, seconds: float, servers: int) -> Live:
    port = free_udp_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), str(servers)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    ready = json.loads(proc.stdout.readline())
    pids = [proc.pid, ready["child"]]  # the collector and its analysis process
    cpu0 = cpu_seconds(*pids)
    sent = _sender(port, path, rate, seconds)
    _drain_wait(*pids)
    cpu = cpu_seconds(*pids) - cpu0
    proc.stdin.write("stop\n")
    proc.stdin.flush()
    stats = json.loads(proc.stdout.readline())
    cpu += stats["settle_s"]  # the last settle, done as the child stops
    proc.wait(timeout=60)
    return Live(
        "abusedesk collector + analysis",
        fmt,
        int(sent["sent"]),
        sent["rate"],
        stats["datagrams"],
        stats["records"],
        stats["dropped"],
        cpu,
        f"receive buffer {ready['buffer'] // 1024} KiB; analysed {stats['analysed']:,} flows "
        f"({stats['skipped_batches']:.0f} batches skipped by a full analysis queue), "
        f"{stats['servers']:,} servers, settled in {stats['settle_s']:.2f} s; "
        f"{stats['errors']} datagrams rejected",
    )


def _drain_wait(*pids: int, quiet: float = 1.0) -> None:
    """Wait until the processes have used no CPU for ``quiet`` seconds: they have drained."""
    last = cpu_seconds(*pids)
    while True:
        time.sleep(quiet)
        now = cpu_seconds(*pids)
        if now - last < 0.02 * quiet:
            return
        last = now


def _udp_drops(port: int) -> int | None:
    """The kernel's drop count of the UDP socket bound to 127.0.0.1:port."""
    wanted = f"0100007F:{port:04X}"
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 13 and cols[1] == wanted:
            return int(cols[12])
    return None


def live_nfcapd(fmt: str, path: Path, rate: int, seconds: float) -> Live | None:
    nfcapd, nfdump = shutil.which("nfcapd"), shutil.which("nfdump")
    if not nfcapd or not nfdump:
        print("nfcapd not found (apt-get install nfdump): skipped", file=sys.stderr)
        return None
    port = free_udp_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [nfcapd, "-b", "127.0.0.1", "-p", str(port), "-w", tmp, "-t", "3600",
             "-B", str(32 * 1024 * 1024)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(100):
            if _udp_drops(port) is not None:
                break
            time.sleep(0.05)
        cpu0 = cpu_seconds(proc.pid)
        sent = _sender(port, path, rate, seconds)
        _drain_wait(proc.pid)
        cpu = cpu_seconds(proc.pid) - cpu0
        dropped = _udp_drops(port)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        out = subprocess.run(
            [nfdump, "-R", tmp, "-I"], capture_output=True, text=True, check=False
        ).stdout
    stats = dict(
        (k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in out.splitlines())
    )
    flows = int(stats.get("Flows", "0"))
    return Live(
        "nfdump nfcapd",
        fmt,
        int(sent["sent"]),
        sent["rate"],
        -1,
        flows,
        dropped,
        cpu,
        f"writes every flow to its file; sequence failures {stats.get('Sequence failures', '?')}",
    )


# --------------------------------------------------------------------------- report


def markdown(folded: list[Folded], live: list[Live], args: argparse.Namespace) -> str:
    lines = [
        "| format | datagrams | records | with an address of ours | decode records/s "
        "| decode + aggregate records/s | settling the windows, ns/record "
        "| decode + aggregate + settle records/s | detectors, all servers (s) "
        "| netflow package records/s | ratio (decode + aggregate / netflow) "
        "| target met (settling included) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for f in folded:
        anchor = f"{f.anchor:,.0f}" if f.anchor else "n/a"
        ratio = f"{f.ratio:.1f}x" if f.ratio else "n/a"
        met = "-"
        if f.fmt in ("NetFlow v9", "IPFIX"):
            # Settling is where the windows' figures are computed: part of aggregating.
            met = "yes" if f.with_settle >= TARGET and (f.ratio or 0) >= MIN_RATIO else "NO"
        lines.append(
            f"| {f.fmt} | {f.datagrams:,} | {f.records:,} | {f.ours_share:.0%} | {f.decode:,.0f} "
            f"| {f.aggregate:,.0f} | {f.settle_ns:,.0f} | {f.with_settle:,.0f} "
            f"| {f.detect_s:.2f} ({f.servers_seen:,} servers) | {anchor} | {ratio} | {met} |"
        )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    text = "\n".join(lines) + (
        f"\n\nInventory: {args.servers:,} servers, one /24 each. Batches of {BATCH} datagrams; "
        f"CPU time of one process, best of {REPEATS}; the netflow package decodes 1 datagram "
        f"in {bd.ANCHOR_SHARE} of the same stream. Target: decode + aggregate >= {TARGET:,} "
        f"records/s for NetFlow v9 and IPFIX, settling the windows included (filing a batch "
        f"only defers the work to the settle), and >= {MIN_RATIO:.0f}x the netflow package.\n"
    )
    if live:
        text += (
            "\n| receiver | stream | datagrams sent | sent/s | datagrams counted | records "
            "| kernel drops | receiver CPU s | CPU µs/record | lost | notes |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|\n"
        )
        for r in live:
            counted = f"{r.counted:,}" if r.counted >= 0 else "n/a"
            lost = "n/a"
            if r.counted >= 0:
                lost = (
                    "none" if r.counted == r.sent and not r.dropped else f"{r.sent - r.counted:,}"
                )
            per = r.cpu / r.records * 1e6 if r.records else float("nan")
            drops = "n/a" if r.dropped is None else f"{r.dropped:,}"
            text += (
                f"| {r.receiver} | {r.fmt} | {r.sent:,} | {r.send_rate:,.0f} | {counted} "
                f"| {r.records:,} | {drops} | {r.cpu:.2f} | {per:.2f} | {lost} | {r.detail} |\n"
            )
        by = {(r.receiver.split()[0], r.fmt): r for r in live}
        for fmt in dict.fromkeys(r.fmt for r in live):
            ours, theirs = by.get(("abusedesk", fmt)), by.get(("nfdump", fmt))
            if ours and theirs and ours.records and theirs.records:
                q = (ours.cpu / ours.records) / (theirs.cpu / theirs.records)
                text += f"\n{fmt}: abusedesk CPU per record is {q:.2f}x nfcapd's."
        text += (
            f"\n\nThe sender paces {args.rate:,} datagrams/s for {args.seconds:g} s over "
            "loopback, from a process of its own; each receiver runs alone.\n"
        )
    text += (
        f"\nLoad average when the run ended (1, 5, 15 min): {load}, on {os.cpu_count()} cores.\n"
    )
    return text


SECTION = (
    "## The traffic path: decode + aggregate, and the live collector\n\n"
    "`bench/bench_traffic.py`. (a) Records per CPU second on one core from the datagrams of "
    "the decode benchmark, with 90 % of the flows carrying one address of ours: decoding, "
    "then decode + aggregate as the analysis thread does it (the owners of both addresses "
    "through the inventory's prefix index, then `Windows.add`), then what settling the "
    "windows costs once (it runs when the detectors read them, every `detect_every` "
    "seconds; timed until the first server's figures are read), and one run of the detectors over every server; beside the PyPI `netflow` "
    "package decoding the same datagrams. (b) A sender process paces datagrams over loopback "
    "into the `traffic` role's collector and into nfdump's `nfcapd`: datagrams sent and "
    "counted, kernel drops, and each receiver's CPU time per record (ours: the collector's "
    "process and its analysis child, which runs at niceness 10 and skips whole batches, "
    "counted, when the two cores are not enough for it, the reader and the sender).\n\n"
)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--send"]:
        print(json.dumps(send(int(argv[1]), Path(argv[2]), int(argv[3]), float(argv[4]))))
        return 0
    if argv[:1] == ["--serve"]:
        serve(int(argv[1]), int(argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--datagrams", type=int, default=20_000)
    parser.add_argument("--servers", type=int, default=4_000)
    parser.add_argument("--rate", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--only", choices=list(BUILDERS))
    parser.add_argument("--no-live", action="store_true")
    parser.add_argument("--no-fold", action="store_true")
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    keep_freed_memory()  # as the traffic role does
    rng = np.random.default_rng(SEED)
    values = values_for(args.servers)
    index = inventory(args.servers)
    folded: list[Folded] = []
    streams: dict[str, list[bytes]] = {}
    for key, (_name, build) in BUILDERS.items():
        if args.only and key != args.only:
            continue
        count = args.datagrams if key != "sflow" else args.datagrams // 2
        datagrams = build(rng, count, values)
        streams[key] = datagrams
        if not args.no_fold:
            folded.append(run_fold(key, datagrams, index))
    live: list[Live] = []
    if not args.no_live:
        for key in ("v5", "v9"):
            datagrams = streams.get(key) or BUILDERS[key][1](rng, 5_000, values)
            with tempfile.NamedTemporaryFile(suffix=".dgrams") as f:
                f.write(b"".join(struct.pack("!I", len(d)) + d for d in datagrams))
                f.flush()
                name = BUILDERS[key][0]
                print(f"live {name}: abusedesk", file=sys.stderr)
                live.append(live_ours(name, Path(f.name), args.rate, args.seconds, args.servers))
                print(f"live {name}: nfcapd", file=sys.stderr)
                theirs = live_nfcapd(name, Path(f.name), args.rate, args.seconds)
                if theirs:
                    live.append(theirs)
    table = markdown(folded, live, args)
    print(table)
    if args.markdown:
        args.markdown.write_text(SECTION + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
