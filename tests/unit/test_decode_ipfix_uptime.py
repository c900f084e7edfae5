"""IPFIX flow times relative to systemInitTimeMilliseconds (160) when the 32-bit uptime counter
has wrapped: found by softflowd replaying a capture whose packets predate its own init time."""

from __future__ import annotations

import struct

import pytest

from abusedesk.traffic.decode import FlowDecoder
from tests.flow_fixtures import ipfix_message, ipfix_options_template, ipfix_set, ipfix_template

EXPORT_S = 1_700_000_000
FIELDS = [(8, 4), (22, 4), (21, 4)]  # source address, flowStart/EndSysUpTime


@pytest.mark.parametrize(
    ("up_ms", "start_before_ms"),
    [
        (100_000, 5_000),  # plain: up 100 s, the flow began 5 s before the export
        (2**32 + 100_000, 5_000),  # up 49.7 days and more: the counter wrapped
        (1_000, 5_000),  # the flow began before init (softflowd replaying an older capture)
    ],
)
def test_ipfix_uptime_times_survive_the_32_bit_wrap(up_ms: int, start_before_ms: int) -> None:
    export_ms = EXPORT_S * 1000
    init_ms = export_ms - up_ms
    start_ticks = (up_ms - start_before_ms) % 2**32
    end_ticks = (up_ms - 1_000) % 2**32
    message = ipfix_message(
        [
            ipfix_set(3, ipfix_options_template(700, 1, [(149, 4), (160, 8)])),
            ipfix_set(2, ipfix_template(300, FIELDS)),
            ipfix_set(700, struct.pack("!IQ", 1, init_ms)),
            ipfix_set(300, bytes([192, 0, 2, 1]) + struct.pack("!II", start_ticks, end_ticks)),
        ],
        export_s=EXPORT_S,
    )
    flow = FlowDecoder().decode(message, "192.0.2.9", now=0.0).flows[0]
    assert int(flow["first_ms"]) == export_ms - start_before_ms
    assert int(flow["last_ms"]) == export_ms - 1_000
