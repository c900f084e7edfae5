"""The sliding windows per customer server: direction, sampling, distinct counts, expiry."""

from __future__ import annotations

import numpy as np
import pytest

from abusedesk.traffic.synthetic import addresses, flows
from abusedesk.traffic.windows import IN, OUT, Windows, WindowSettings, in_prefixes

NOW = 1_800_000_000.0


def test_outbound_and_inbound_come_from_the_address_that_is_ours():
    batch = flows(2, ["203.0.113.10", "198.51.100.1"], ["198.51.100.1", "203.0.113.10"], packets=6)
    windows = Windows()
    windows.add(batch, [7, -1], [-1, 7], NOW)
    view = windows.view(7, NOW)
    assert view.total("out_packets")[-1] == 6
    assert view.total("in_packets")[-1] == 6
    assert view.total("out_tcp_flows")[-1] == 1
    kinds = sorted(int(k) for k in view.contacts["kind"])
    assert kinds == [OUT, IN]


def test_a_flow_between_two_of_our_servers_counts_for_both():
    batch = flows(1, "203.0.113.10", "203.0.113.20", packets=4, bytes=400)
    windows = Windows()
    windows.add(batch, [7], [8], NOW)
    assert windows.view(7, NOW).total("out_bytes")[-1] == 400
    assert windows.view(7, NOW).total("in_bytes")[-1] == 0
    assert windows.view(8, NOW).total("in_bytes")[-1] == 400
    assert windows.view(8, NOW).total("out_bytes")[-1] == 0


def test_a_flow_where_neither_side_is_ours_is_foreign():
    windows = Windows()
    windows.add(flows(3, "198.51.100.1", "198.51.100.2"), [-1] * 3, [-1] * 3, NOW)
    assert windows.foreign == 3
    assert windows.servers(NOW) == []


def test_sampling_scales_volumes_but_not_distinct_counts():
    batch = flows(
        10, "203.0.113.10", addresses("192.0.2.0/24", 10), packets=2, bytes=100, sampling_rate=50
    )
    windows = Windows()
    windows.add(batch, np.full(10, 7), np.full(10, -1), NOW)
    view = windows.view(7, NOW)
    assert view.total("out_packets")[-1] == 10 * 2 * 50
    assert view.total("out_bytes")[-1] == 10 * 100 * 50
    assert view.total("out_flows")[-1] == 500
    assert len(np.unique(view.contacts["lo"])) == 10  # seen destinations, not scaled


def test_an_unsaid_rate_takes_the_default():
    batch = flows(1, "203.0.113.10", "192.0.2.1", packets=1, sampling_rate=0)
    windows = Windows(WindowSettings(default_sampling_rate=8))
    windows.add(batch, [7], [-1], NOW)
    assert windows.view(7, NOW).total("out_packets")[-1] == 8
    windows.add(batch, [7], [-1], NOW, default_rates=[100])
    assert windows.view(7, NOW).total("out_packets")[-1] == 108


def test_batches_merge_into_one_bucket_and_contacts_sum():
    windows = Windows()
    for _ in range(3):
        windows.add(
            flows(2, "203.0.113.10", "192.0.2.1", dst_port=[80, 443]), [7, 7], [-1, -1], NOW
        )
    view = windows.view(7, NOW)
    assert view.total("out_flows")[-1] == 6
    out = view.contacts[view.contacts["kind"] == OUT]
    assert sorted(out["port"].tolist()) == [80, 443]
    assert out["flows"].tolist() == [3.0, 3.0]


def test_buckets_slide_and_expire_with_the_passed_in_time():
    windows = Windows(WindowSettings(bucket_seconds=60, buckets=3))
    batch = flows(1, "203.0.113.10", "192.0.2.1", packets=5)
    windows.add(batch, [7], [-1], NOW)
    windows.add(batch, [7], [-1], NOW + 60)
    view = windows.view(7, NOW + 60)
    assert view.total("out_packets")[-2:].tolist() == [5, 5]
    assert len(view.starts) == 3
    assert windows.servers(NOW + 240) == []
    assert windows.buckets == {}


def test_contacts_are_capped_per_server_and_marked_saturated():
    windows = Windows(WindowSettings(contact_cap=50))
    windows.add(
        flows(200, "203.0.113.10", addresses("192.0.2.0/24", 200)),
        np.full(200, 7),
        np.full(200, -1),
        NOW,
    )
    view = windows.view(7, NOW)
    assert len(view.contacts) == 50
    assert view.saturated
    assert view.total("out_flows")[-1] == 200  # volumes are not capped


def test_samples_are_kept_per_class():
    windows = Windows(WindowSettings(samples_per_class=3))
    windows.add(
        flows(20, "203.0.113.10", "192.0.2.1", dst_port=25), np.full(20, 7), np.full(20, -1), NOW
    )
    assert len(windows.view(7, NOW).samples) == 3


def test_in_prefixes_handles_v4_and_v6():
    batch = flows(3, "203.0.113.10", ["192.0.2.9", "192.0.3.1", "2001:db8::5"])
    mask = in_prefixes(batch["dst_hi"], batch["dst_lo"], ["192.0.2.0/24", "2001:db8::/32"])
    assert mask.tolist() == [True, False, True]


def test_mismatched_owner_arrays_are_refused():
    with pytest.raises(ValueError, match="one entry per flow"):
        Windows().add(flows(2, "203.0.113.10", "192.0.2.1"), [7], [-1, -1], NOW)


# --------------------------------------------------------------------------- lazy settling


def _random_batch(rng: np.random.Generator, n: int):
    """Flows of five servers (10.0.0.0/29) with a few hundred remotes, both directions."""
    ours = [f"10.0.0.{i}" for i in range(5)]
    remotes = [f"198.18.{i // 256}.{i % 256}" for i in range(300)] + ["2001:db8::7"]
    pick_ours = rng.integers(0, 5, n)
    pick_remote = rng.integers(0, len(remotes), n)
    outbound = rng.random(n) < 0.6
    src = [
        ours[o] if out else remotes[r]
        for o, r, out in zip(pick_ours, pick_remote, outbound, strict=True)
    ]
    dst = [
        remotes[r] if out else ours[o]
        for o, r, out in zip(pick_ours, pick_remote, outbound, strict=True)
    ]
    batch = flows(
        n,
        src,
        dst,
        protocol=rng.choice([6, 17, 1], n),
        src_port=rng.choice([53, 123, 40000, 50000], n),
        dst_port=rng.choice([22, 25, 80, 123, 53, 9999], n),
        packets=rng.integers(1, 60, n),
        bytes=rng.integers(40, 90_000, n),
        tcp_flags=rng.choice([0x02, 0x12, 0x1B], n),
        sampling_rate=int(rng.choice([0, 1, 10])),
    )
    owner = np.array([int(a.rsplit(".", 1)[1]) + 100 for a in ours])
    src_server = np.where(outbound, owner[pick_ours], -1)
    dst_server = np.where(outbound, -1, owner[pick_ours])
    return batch, src_server, dst_server


def _reference(batches, settings: WindowSettings):
    """Per server: measures of the last bucket and contacts {key: [flows, packets, bytes]},
    one flow at a time, as the module docstring defines them."""
    measures: dict[int, dict[str, float]] = {}
    contacts: dict[int, dict[tuple, list[float]]] = {}
    amp = {19, 53, 123, 161, 389, 1900, 3702, 11211}
    for batch, src, dst in batches:
        for f, s, d in zip(batch, src, dst, strict=True):
            rate = float(f["sampling_rate"]) or float(max(settings.default_sampling_rate, 1))
            for server, side in ((int(s), "out"), (int(d), "in")):
                if server < 0:
                    continue
                proto = {6: "tcp", 17: "udp", 1: "icmp"}.get(int(f["protocol"]), "other")
                m = measures.setdefault(server, {})
                w = {"packets": f["packets"] * rate, "bytes": f["bytes"] * rate, "flows": rate}
                for what, v in w.items():
                    for name in (f"{side}_{what}", f"{side}_{proto}_{what}"):
                        m[name] = m.get(name, 0) + v
                    if proto == "udp" and int(f["dst_port"]) in amp:
                        m[f"{side}_amp_to_{what}"] = m.get(f"{side}_amp_to_{what}", 0) + v
                    if proto == "udp" and int(f["src_port"]) in amp:
                        m[f"{side}_amp_from_{what}"] = m.get(f"{side}_amp_from_{what}", 0) + v
                if proto == "tcp" and int(f["tcp_flags"]) & 0x12 == 0x02:
                    m[f"{side}_syn_flows"] = m.get(f"{side}_syn_flows", 0) + rate
                    m[f"{side}_syn_packets"] = m.get(f"{side}_syn_packets", 0) + w["packets"]
                if side == "out" and proto == "tcp" and int(f["dst_port"]) == 25:
                    m["out_smtp_flows"] = m.get("out_smtp_flows", 0) + rate
                remote = ("dst" if side == "out" else "src") + "_lo"
                rows = [(OUT if side == "out" else IN, int(f["dst_port"]))]
                if side == "out" and proto == "udp" and int(f["src_port"]) in amp:
                    rows.append((2, int(f["src_port"])))  # AMP_FROM
                for kind, port in rows:
                    key = (kind, int(f["protocol"]), port, int(f[remote]))
                    row = contacts.setdefault(server, {}).setdefault(key, [0.0, 0.0, 0.0])
                    row[0] += rate
                    row[1] += w["packets"]
                    row[2] += w["bytes"]
    return measures, contacts


@pytest.mark.parametrize("merge_rows", [1, 1 << 20])
@pytest.mark.parametrize("pending_flows", [1, 150, 1_000_000])
def test_settling_in_chunks_and_steps_matches_one_flow_at_a_time(
    monkeypatch, pending_flows, merge_rows
):
    import abusedesk.traffic.windows as module

    monkeypatch.setattr(module, "_CHUNK", 64)  # several chunks per settle
    # 1: contact runs merged at every settle, unread; 1 << 20: only when the bucket is read
    monkeypatch.setattr(module, "_MERGE_ROWS", merge_rows)
    rng = np.random.default_rng(pending_flows)
    settings = WindowSettings(pending_flows=pending_flows)
    windows = Windows(settings)
    batches = [_random_batch(rng, int(rng.integers(1, 200))) for _ in range(8)]
    for i, (batch, src, dst) in enumerate(batches):
        windows.add(batch, src, dst, NOW)
        if i == 3:
            windows.servers(NOW)  # settle halfway: later batches merge into settled rows
    measures, contacts = _reference(batches, settings)
    assert windows.servers(NOW) == sorted(measures)
    for server, expected in measures.items():
        view = windows.view(server, NOW)
        for name in view_names(view):
            assert view.total(name)[-1] == pytest.approx(expected.get(name, 0)), name
        got = {
            (int(c["kind"]), int(c["proto"]), int(c["port"]), int(c["lo"])): [
                c["flows"],
                c["packets"],
                c["bytes"],
            ]
            for c in view.contacts
        }
        assert len(got) == len(view.contacts)  # one row per key
        assert got.keys() == contacts[server].keys()
        for key, sums in contacts[server].items():
            assert got[key] == pytest.approx(sums), key


def view_names(view):
    from abusedesk.traffic.windows import MEASURES

    return [m for m in MEASURES if "short_bf" not in m]


def test_samples_are_the_first_to_arrive_across_settles():
    windows = Windows(WindowSettings(samples_per_class=3, pending_flows=2))
    for port in range(1000, 1006):
        windows.add(flows(1, "203.0.113.10", "192.0.2.1", src_port=port), [7], [-1], NOW)
    samples = windows.view(7, NOW).samples
    assert [int(s["flow"]["src_port"]) for s in samples] == [1000, 1001, 1002]


def test_a_batch_with_only_allow_listed_destinations_leaves_no_server():
    windows = Windows(allow_destinations=["192.0.2.0/24"])
    windows.add(flows(3, "203.0.113.10", "192.0.2.1"), [7] * 3, [-1] * 3, NOW)
    assert windows.servers(NOW) == []
    assert windows.view(7, NOW).total("out_flows")[-1] == 0
