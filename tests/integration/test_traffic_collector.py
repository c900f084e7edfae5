"""The flow collector on loopback: real UDP datagrams in, records at the sink, counters in
/metrics' registry, and a collector that survives garbage."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from abusedesk import metrics
from abusedesk.traffic.collector import Collector, RunningTotals
from abusedesk.traffic.decode import DecodeResult, address_text
from abusedesk.traffic.settings import TrafficSettings, UdpListen
from tests.flow_fixtures import (
    IN_CI,
    flows_dir,
    ipfix_message,
    ipfix_set,
    ipfix_template,
    read_pcap,
    udp_payload,
)


class Recorder:
    """A FlowSink that keeps every flow it is given, with its exporter's address."""

    def __init__(self, settings: TrafficSettings) -> None:
        self.totals = RunningTotals(settings)
        self.flows: list[np.ndarray] = []
        self.exporters: list[str] = []
        self.counters = 0
        self.changed = threading.Condition()

    def accept(
        self, result: DecodeResult, exporter_addresses: Sequence[str], received_at: float
    ) -> None:
        self.totals.accept(result, exporter_addresses, received_at)
        with self.changed:
            self.flows.append(result.flows.copy())
            self.exporters += [exporter_addresses[i] for i in result.origin.tolist()]
            self.counters += len(result.counters)
            self.changed.notify_all()

    @property
    def count(self) -> int:
        return sum(len(f) for f in self.flows)

    def all(self) -> np.ndarray:
        return np.concatenate(self.flows) if self.flows else np.zeros(0)

    def wait(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        with self.changed:
            assert self.changed.wait_for(condition, timeout), "the sink did not get it in time"


class Running:
    def __init__(self, collector: Collector, sink: Recorder) -> None:
        self.collector = collector
        self.sink = sink
        self.sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def send(self, listener: str, *datagrams: bytes) -> None:
        for datagram in datagrams:
            self.sender.sendto(datagram, self.collector.addresses[listener])


@contextmanager
def collector(**extra: object) -> Iterator[Running]:
    settings = TrafficSettings(
        netflow=UdpListen(port=0), sflow=UdpListen(port=0), expire_interval_seconds=0.2, **extra
    )
    sink = Recorder(settings)
    halt = threading.Event()
    with Collector(settings, sink) as running:
        thread = threading.Thread(target=running.run, args=(halt,), daemon=True)
        thread.start()
        peer = Running(running, sink)
        try:
            yield peer
        finally:
            halt.set()
            thread.join(timeout=5)
            peer.sender.close()
            assert not thread.is_alive()


def counter(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(f"{name}_total", labels) or 0.0


# --------------------------------------------------------------------- datagram builders

V5_RECORD = struct.Struct("!4s4s4sHHIIIIHHBBBBHHBBH")


def v5_datagram(flows: list[tuple[str, str, int, int, int]], seq: int = 0, rate: int = 0) -> bytes:
    """NetFlow v5 with one record per (src, dst, src port, dst port, packets)."""
    head = struct.pack("!HHIIIIBBH", 5, len(flows), 360_000, 1_700_000_000, 0, seq, 0, 0, rate)
    body = b"".join(
        V5_RECORD.pack(
            socket.inet_aton(src),
            socket.inet_aton(dst),
            b"\0" * 4,
            1,
            2,
            packets,
            packets * 100,
            350_000,
            359_000,
            sport,
            dport,
            0,
            0x02,
            6,
            0,
            0,
            0,
            24,
            24,
            0,
        )
        for src, dst, sport, dport, packets in flows
    )
    return head + body


IPFIX_FIELDS = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (2, 8), (1, 8)]


def ipfix_template_message(seq: int = 0) -> bytes:
    return ipfix_message([ipfix_set(2, ipfix_template(256, IPFIX_FIELDS))], seq=seq)


def ipfix_data_message(flows: list[tuple[str, str, int]], seq: int = 0) -> bytes:
    body = b"".join(
        socket.inet_aton(src)
        + socket.inet_aton(dst)
        + struct.pack("!HHBQQ", 1234, port, 17, 3, 300)
        for src, dst, port in flows
    )
    return ipfix_message([ipfix_set(256, body)], seq=seq)


def addresses(flows: np.ndarray, side: str) -> list[str]:
    return [
        address_text(int(f[f"{side}_hi"]), int(f[f"{side}_lo"]), int(f["ip_version"]))
        for f in flows
    ]


# ------------------------------------------------------------------------------ tests


def test_netflow_v5_reaches_the_sink_and_the_counters() -> None:
    before = counter("abusedesk_traffic_datagrams", format="netflow_v5")
    records_before = counter("abusedesk_traffic_records", format="netflow_v5")
    with collector(default_sampling_rate=10) as c:
        c.send("netflow", v5_datagram([("192.0.2.1", "198.51.100.7", 40000, 25, 3)] * 4, seq=0))
        c.send("netflow", v5_datagram([("192.0.2.2", "198.51.100.8", 40001, 80, 5)], seq=4))
        c.sink.wait(lambda: c.sink.count == 5)
        flows = c.sink.all()
        assert addresses(flows, "src") == ["192.0.2.1"] * 4 + ["192.0.2.2"]
        assert c.sink.exporters == ["127.0.0.1"] * 5
        # No sampling in the header: the configured default multiplies the volumes.
        totals = c.sink.totals.snapshot()["127.0.0.1"]
        assert (totals.flows, totals.packets) == (5, (4 * 3 + 5) * 10)
        [exporter] = c.collector.registry.snapshot()
        assert (exporter.address, exporter.format, exporter.datagrams, exporter.records) == (
            "127.0.0.1",
            "netflow_v5",
            2,
            5,
        )
        assert exporter.sequence_gaps == 0
    assert counter("abusedesk_traffic_datagrams", format="netflow_v5") - before == 2
    assert counter("abusedesk_traffic_records", format="netflow_v5") - records_before == 5


def test_a_sequence_gap_is_counted() -> None:
    before = counter("abusedesk_traffic_sequence_gaps", format="netflow_v5")
    with collector() as c:
        c.send("netflow", v5_datagram([("192.0.2.1", "198.51.100.7", 1, 2, 1)] * 2, seq=100))
        c.sink.wait(lambda: c.sink.count == 2)
        # Records 102..111 never arrived.
        c.send("netflow", v5_datagram([("192.0.2.1", "198.51.100.7", 1, 2, 1)], seq=112, rate=100))
        c.sink.wait(lambda: c.sink.count == 3)
        [exporter] = c.collector.registry.snapshot()
        assert exporter.sequence_gaps == 10
        assert exporter.sampling_rate == 100
    assert counter("abusedesk_traffic_sequence_gaps", format="netflow_v5") - before == 10


def test_garbage_is_counted_and_the_collector_keeps_running() -> None:
    truncated = counter("abusedesk_traffic_decode_errors", format="netflow_v5", kind="truncated")
    bad = counter("abusedesk_traffic_decode_errors", format="unknown", kind="bad_version")
    with collector() as c:
        whole = v5_datagram([("192.0.2.1", "198.51.100.7", 1, 2, 1)] * 3)
        c.send("netflow", whole[:40], b"\xde\xad\xbe\xef garbage", b"")
        c.send("sflow", b"\x00")
        c.send("netflow", whole)
        c.sink.wait(lambda: c.sink.count == 3)
        assert c.collector.totals.errors >= 3
    assert (
        counter("abusedesk_traffic_decode_errors", format="netflow_v5", kind="truncated")
        - truncated
        == 1
    )
    assert counter("abusedesk_traffic_decode_errors", format="unknown", kind="bad_version") > bad


def test_ipfix_template_before_data_over_the_wire() -> None:
    with collector() as c:
        c.send("netflow", ipfix_template_message(seq=0))
        c.send("netflow", ipfix_data_message([("10.0.0.1", "10.0.0.2", 53)] * 2, seq=0))
        c.sink.wait(lambda: c.sink.count == 2)
        flows = c.sink.all()
        assert addresses(flows, "dst") == ["10.0.0.2"] * 2
        assert flows["dst_port"].tolist() == [53, 53]
        assert flows["packets"].tolist() == [3, 3]


def test_ipfix_data_before_template_is_held_then_decoded() -> None:
    held = counter("abusedesk_traffic_decode_errors", format="ipfix", kind="unknown_template")
    with collector() as c:
        c.send("netflow", ipfix_data_message([("10.0.0.9", "10.0.0.10", 123)] * 3, seq=0))
        deadline = time.monotonic() + 5
        while c.collector.totals.datagrams < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert c.sink.count == 0
        c.send("netflow", ipfix_template_message(seq=3))
        c.sink.wait(lambda: c.sink.count == 3)
        assert addresses(c.sink.all(), "src") == ["10.0.0.9"] * 3
    assert (
        counter("abusedesk_traffic_decode_errors", format="ipfix", kind="unknown_template") > held
    )


def test_the_shared_fixture_datagrams_decode_over_udp() -> None:
    telegraf = flows_dir("telegraf")
    datagrams = {
        case: [p.read_bytes() for p in sorted((telegraf / case).glob("*.bin"))]
        for case in ("netflow_v5_example", "netflow_v9_example", "ipfix_example")
    }
    sflow = [udp_payload(f) for f in read_pcap(flows_dir("tcpdump") / "sflow_expanded.pcap")]
    before = {
        fmt: counter("abusedesk_traffic_datagrams", format=fmt)
        for fmt in ("netflow_v5", "netflow_v9", "ipfix", "sflow_v5")
    }
    with collector() as c:
        for group in datagrams.values():
            c.send("netflow", *group)
        c.send("sflow", *sflow)
        total = sum(len(g) for g in datagrams.values()) + len(sflow)
        deadline = time.monotonic() + 5
        while c.collector.totals.datagrams < total and time.monotonic() < deadline:
            time.sleep(0.01)
        assert c.collector.totals.datagrams == total
        assert c.collector.totals.errors == 0
        assert c.sink.count > 0
        formats = {e.format for e in c.collector.registry.snapshot()}
        assert formats == {"netflow_v5", "netflow_v9", "ipfix", "sflow_v5"}
        sflow_entries = [e for e in c.collector.registry.snapshot() if e.format == "sflow_v5"]
        assert all(e.agent for e in sflow_entries)
        # sFlow gives no flow times: the arrival time is stamped.
        assert (c.sink.all()["first_ms"] > 0).all()
    assert counter("abusedesk_traffic_datagrams", format="sflow_v5") - before["sflow_v5"] == len(
        sflow
    )
    assert counter("abusedesk_traffic_datagrams", format="ipfix") - before["ipfix"] == len(
        datagrams["ipfix_example"]
    )


def test_the_receive_buffer_is_enlarged_and_drops_are_readable() -> None:
    with collector(receive_buffer_bytes=1024 * 1024) as c:
        sock = c.collector.sockets["netflow"]
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= 200 * 1024
        c.collector.read_drops()  # /proc/net/udp has the socket; no drops on an idle socket
        assert c.collector.totals.dropped == 0


def test_root_gets_a_receive_buffer_beyond_rmem_max() -> None:
    import os

    if os.geteuid() != 0:
        pytest.skip("SO_RCVBUFFORCE needs CAP_NET_ADMIN (root here)")
    rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())
    with collector(receive_buffer_bytes=2 * rmem_max) as c:
        granted = c.collector.sockets["netflow"].getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        assert granted // 2 >= 2 * rmem_max  # Linux reports twice the size it was asked


def test_a_batch_of_several_streams_is_counted_per_stream() -> None:
    """Sequences checked in one batch as they would be one datagram at a time: per exporter
    and engine, in arrival order, a rejected datagram in between left out."""
    flow = ("192.0.2.1", "198.51.100.7", 1, 2, 1)

    def v5(seq: int, records: int, engine: int, rate: int = 0) -> bytes:
        data = bytearray(v5_datagram([flow] * records, seq=seq, rate=rate))
        data[20:22] = bytes((engine, 0))  # engine type, engine id
        return bytes(data)

    settings = TrafficSettings(netflow=UdpListen(port=0), sflow=UdpListen(port=0))
    c = Collector(settings, Recorder(settings))
    batch = [
        (v5(100, 2, engine=1), "192.0.2.10"),
        (v5(7, 1, engine=2), "192.0.2.10"),
        (b"\x00\x05garbage", "192.0.2.10"),  # rejected: too short for its header
        (v5(102, 1, engine=1, rate=10), "192.0.2.10"),
        (v5(110, 1, engine=1), "192.0.2.10"),  # 103..109 missed
        (v5(8, 3, engine=2), "192.0.2.10"),
        (v5(500, 1, engine=1), "192.0.2.11"),  # another exporter: a stream of its own
    ]
    before = counter("abusedesk_traffic_sequence_gaps", format="netflow_v5")
    c.process([d for d, _ in batch], [s for _, s in batch], 1_700_000_000.0)
    got = {(e.address, e.domain): e for e in c.registry.snapshot()}
    assert sorted(got) == [
        ("192.0.2.10", 0),
        ("192.0.2.10", 256),
        ("192.0.2.10", 512),
        (
            "192.0.2.11",
            256,
        ),
    ]
    one, two = got[("192.0.2.10", 256)], got[("192.0.2.10", 512)]
    assert (one.datagrams, one.records, one.sequence_gaps, one.next_sequence) == (3, 4, 7, 111)
    assert one.sampling_rate == 10  # the last that said one
    assert (two.datagrams, two.records, two.sequence_gaps, two.next_sequence) == (2, 4, 0, 11)
    assert got[("192.0.2.10", 0)].decode_errors == 1
    assert got[("192.0.2.11", 256)].sequence_gaps == 0
    assert counter("abusedesk_traffic_sequence_gaps", format="netflow_v5") - before == 7
    # The next batch goes on from where this one ended.
    c.process([v5(111, 1, engine=1), v5(12, 1, engine=2)], ["192.0.2.10"] * 2, 1_700_000_001.0)
    got = {(e.address, e.domain): e for e in c.registry.snapshot()}
    assert got[("192.0.2.10", 256)].sequence_gaps == 7
    assert got[("192.0.2.10", 512)].sequence_gaps == 1


# ------------------------------------------------------------------ softflowd (a real one)


def _pcap(path: Path, packets: list[tuple[str, str, int, int, int]]) -> None:
    """A classic pcap of Ethernet/IPv4/TCP packets: (src, dst, sport, dport, flags)."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for n, (src, dst, sport, dport, flags) in enumerate(packets):
        tcp = struct.pack("!HHIIBBHHH", sport, dport, n, 0, 5 << 4, flags, 65535, 0, 0)
        total = 20 + len(tcp)
        ip = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            total,
            n,
            0,
            64,
            6,
            0,
            socket.inet_aton(src),
            socket.inet_aton(dst),
        )
        words = struct.unpack("!10H", ip)
        checksum = sum(words)
        checksum = (checksum & 0xFFFF) + (checksum >> 16)
        checksum = ~((checksum & 0xFFFF) + (checksum >> 16)) & 0xFFFF
        ip = ip[:10] + struct.pack("!H", checksum) + ip[12:]
        frame = b"\x02\0\0\0\0\x01" + b"\x02\0\0\0\0\x02" + b"\x08\x00" + ip + tcp
        out.append(struct.pack("<IIII", 1_700_000_000 + n, 0, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))


@pytest.mark.parametrize("version", ["5", "9", "10"])
def test_softflowd_replays_a_pcap_into_the_collector(tmp_path: Path, version: str) -> None:
    softflowd = shutil.which("softflowd") or (
        "/usr/sbin/softflowd" if Path("/usr/sbin/softflowd").exists() else None
    )
    if softflowd is None:
        if IN_CI:
            pytest.fail("CI=true and softflowd is missing (.ci/run installs it)")
        pytest.skip("softflowd is not installed (apt-get install softflowd)")
    pcap = tmp_path / "scan.pcap"
    # A SYN to 20 ports of one target, from one source: 20 flows of one packet.
    _pcap(pcap, [("192.0.2.10", "198.51.100.20", 40000 + p, 1000 + p, 0x02) for p in range(20)])
    with collector() as c:
        host, port = c.collector.addresses["netflow"]
        subprocess.run(
            [softflowd, "-r", str(pcap), "-n", f"{host}:{port}", "-v", version],
            check=True,
            timeout=30,
            capture_output=True,
        )
        c.sink.wait(lambda: c.sink.count >= 20, timeout=10)
        flows = c.sink.all()
        assert set(addresses(flows, "src")) == {"192.0.2.10"}
        assert sorted(flows["dst_port"].tolist()) == [1000 + p for p in range(20)]
        assert c.collector.totals.errors == 0
