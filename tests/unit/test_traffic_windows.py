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
