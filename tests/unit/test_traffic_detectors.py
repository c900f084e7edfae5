"""Detectors over synthetic windows: each attack fires its detector, ordinary traffic nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from abusedesk.policy import parse_policy
from abusedesk.policy.choices import Category
from abusedesk.policy.model import TrafficPolicy, TrafficThresholds
from abusedesk.traffic.detectors import detect, detect_all
from abusedesk.traffic.synthetic import addresses, flows
from abusedesk.traffic.windows import Windows, WindowSettings

NOW = 1_800_000_000.0
OURS = "203.0.113.10"
SERVER = 7
AT = datetime.fromtimestamp(NOW, UTC)


def run(batch, src_server=None, dst_server=None, policy: TrafficPolicy | None = None, **kw):
    windows = Windows(WindowSettings(), **kw)
    n = len(batch)
    src = np.full(n, SERVER) if src_server is None else src_server
    dst = np.full(n, -1) if dst_server is None else dst_server
    windows.add(batch, src, dst, NOW)
    return detect_all(windows, policy or TrafficPolicy(), NOW)


def kinds(found):
    return sorted(d.kind.value for d in found)


def test_syn_flood_fires_the_flood_detector():
    batch = flows(
        3000,
        OURS,
        "198.51.100.7",
        src_port=np.arange(3000) + 1024,
        dst_port=80,
        tcp_flags=0x02,
        packets=100,
        bytes=4000,
    )
    found = run(batch)
    assert kinds(found) == ["outbound_flood"]
    d = found[0]
    assert d.category is Category.DENIAL_OF_SERVICE
    assert {f.measure for f in d.fired} >= {"syn_packets_per_s", "syn_share"}
    assert d.top_addresses[0]["address"] == "198.51.100.7"
    ev = d.evidence()
    assert ev["series"][-1]["syn_packets_per_s"] == pytest.approx(5000)
    assert set(ev["series"][0]) == {"at", "syn_packets_per_s"}
    assert ev["sample_flows"][0]["dst"] == "198.51.100.7"


def test_ordinary_web_traffic_fires_nothing():
    clients = addresses("198.51.0.0/16", 2000)
    ports = np.arange(2000) % 20000 + 32768
    replies = flows(
        2000, OURS, clients, src_port=443, dst_port=ports, tcp_flags=0x1B, packets=20, bytes=20000
    )
    requests = flows(
        2000, clients, OURS, src_port=ports, dst_port=443, tcp_flags=0x1B, packets=15, bytes=1500
    )
    batch = np.concatenate([replies, requests])
    src = np.r_[np.full(2000, SERVER), np.full(2000, -1)]
    dst = np.r_[np.full(2000, -1), np.full(2000, SERVER)]
    assert run(batch, src, dst) == []


def test_reflection_trigger():
    batch = flows(
        200,
        OURS,
        addresses("192.0.2.0/24", 200),
        protocol=17,
        src_port=50000,
        dst_port=123,
        packets=100,
        bytes=4000,
    )
    found = run(batch)
    assert kinds(found) == ["reflection_trigger"]
    assert found[0].fired[0].peak == 200


def test_amplifier():
    victim = "198.51.100.99"
    out = flows(
        50,
        OURS,
        victim,
        protocol=17,
        src_port=11211,
        dst_port=np.arange(50) + 2000,
        packets=1000,
        bytes=1_000_000,
    )
    inbound = flows(
        50,
        victim,
        OURS,
        protocol=17,
        src_port=np.arange(50) + 2000,
        dst_port=11211,
        packets=1,
        bytes=60,
    )
    batch = np.concatenate([out, inbound])
    src = np.r_[np.full(50, SERVER), np.full(50, -1)]
    dst = np.r_[np.full(50, -1), np.full(50, SERVER)]
    found = run(batch, src, dst)
    assert kinds(found) == ["amplifier"]
    assert found[0].top_addresses[0]["address"] == victim
    assert found[0].top_ports[0]["port"] == 11211


def test_smtp_fan_out_is_spam():
    batch = flows(
        150,
        OURS,
        addresses("192.0.2.0/24", 150),
        src_port=40000,
        dst_port=25,
        packets=20,
        bytes=5000,
    )
    found = run(batch)
    assert kinds(found) == ["spam"]
    assert found[0].category is Category.SPAM


def test_horizontal_scan():
    batch = flows(
        300,
        OURS,
        addresses("198.18.0.0/23", 300),
        src_port=40000,
        dst_port=22,
        tcp_flags=0x02,
        packets=1,
        bytes=60,
    )
    found = run(batch)
    assert kinds(found) == ["horizontal_scan"]
    assert found[0].category is Category.NETWORK_ABUSE
    assert "port 22/tcp" in found[0].reason


def test_vertical_scan():
    batch = flows(
        500,
        OURS,
        "192.0.2.50",
        src_port=40000,
        dst_port=np.arange(1, 501),
        tcp_flags=0x02,
        packets=1,
        bytes=60,
    )
    found = run(batch)
    assert kinds(found) == ["vertical_scan"]
    assert "192.0.2.50" in found[0].reason


def test_brute_force():
    batch = flows(
        80,
        OURS,
        "192.0.2.50",
        src_port=np.arange(80) + 40000,
        dst_port=22,
        tcp_flags=0x1B,
        packets=12,
        bytes=3000,
    )
    found = run(batch)
    assert kinds(found) == ["brute_force"]
    assert found[0].fired[0].peak == 80


def test_inbound_attack_is_a_noc_alert():
    batch = flows(
        1000,
        addresses("198.18.0.0/22", 1000),
        OURS,
        protocol=17,
        src_port=123,
        dst_port=80,
        packets=20000,
        bytes=20_000_000,
    )
    found = run(batch, np.full(1000, -1), np.full(1000, SERVER))
    assert kinds(found) == ["inbound_attack"]
    assert found[0].category is None
    assert "top_sources" in found[0].evidence()


def test_sampling_scales_volumes():
    batch = flows(
        100,
        OURS,
        "198.51.100.7",
        src_port=40000,
        dst_port=80,
        tcp_flags=0x02,
        packets=20,
        bytes=1200,
        sampling_rate=100,
    )
    found = run(batch)
    assert kinds(found) == ["outbound_flood"]  # 100 flows x 20 packets x 100 / 60 s
    assert found[0].fired[0].peak == pytest.approx(100 * 20 * 100 / 60, rel=1e-3)


def test_allow_listed_server_is_not_flagged():
    batch = flows(
        300, OURS, addresses("198.18.0.0/23", 300), dst_port=22, tcp_flags=0x02, packets=1, bytes=60
    )
    assert run(batch, policy=TrafficPolicy(allow_servers=frozenset({SERVER}))) == []


def test_allow_listed_destinations_are_not_counted():
    batch = flows(
        300, OURS, addresses("198.18.0.0/23", 300), dst_port=22, tcp_flags=0x02, packets=1, bytes=60
    )
    assert run(batch, allow_destinations=["198.18.0.0/23"]) == []


def test_per_plan_and_per_server_thresholds():
    policy = parse_policy(
        "[traffic.plans.tiny]\nscan_addresses = 10\n[traffic.servers.7]\nspam_destinations = 5\n"
    ).traffic
    windows = Windows()
    scan = flows(
        20, OURS, addresses("192.0.2.0/24", 20), dst_port=23, tcp_flags=0x02, packets=1, bytes=60
    )
    mail = flows(8, OURS, addresses("192.0.2.0/24", 8), dst_port=25, packets=10, bytes=5000)
    batch = np.concatenate([scan, mail])
    windows.add(batch, np.full(28, SERVER), np.full(28, -1), NOW)
    assert kinds(detect_all(windows, policy, NOW)) == ["spam"]
    assert kinds(detect_all(windows, policy, NOW, {SERVER: "tiny"})) == ["horizontal_scan", "spam"]
    assert policy.thresholds(8, "tiny").spam_destinations == 100


def test_detect_on_an_empty_window_finds_nothing():
    assert detect(Windows().view(SERVER, NOW), TrafficThresholds(), AT) == []


def test_the_same_traffic_unsampled_does_not_flood():
    batch = flows(100, OURS, "198.51.100.7", dst_port=80, tcp_flags=0x02, packets=20, bytes=1200)
    assert run(batch) == []
