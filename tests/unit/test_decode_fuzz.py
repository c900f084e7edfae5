"""Hostile input: random bytes, truncations, bit flips, splices and lying lengths, given to every
decoder, end in a DecodeError subclass or a result; nothing else escapes, nothing hangs."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from abusedesk.traffic.decode import (
    FLOW_DTYPE,
    DecodeError,
    DecodeErrorKind,
    DecodeResult,
    FlowDecoder,
    TemplateCache,
    ipfix,
    netflow_v5,
    netflow_v9,
    sflow,
)
from tests.flow_fixtures import (
    FLOWS,
    ipfix_message,
    ipfix_options_template,
    ipfix_set,
    ipfix_template,
    read_pcap,
    udp_payload,
    v9_datagram,
    varlen,
)

# Seeds that reach deep: synthetic datagrams of every kind, plus every shared fixture present
# (the fuzz still runs where the fixtures are not; test_decode_fixtures enforces them in CI).
SYNTHETIC_IPFIX = ipfix_message(
    [
        ipfix_set(2, ipfix_template(300, [(8, 4), (12, 4), (96, 65535), (7, 2), (100, 4, 9)])),
        ipfix_set(3, ipfix_options_template(301, 1, [(302, 4), (34, 4), (82, 65535)])),
        ipfix_set(300, bytes(8) + varlen(b"abc") + bytes(6) + bytes(8) + varlen(b"") + bytes(6)),
        ipfix_set(301, struct.pack("!II", 1, 100) + varlen(b"eth0")),
    ]
)
_V9_TEMPLATE = struct.pack("!HH", 256, 3) + struct.pack("!HHHHHH", 8, 4, 22, 4, 48, 1)
SYNTHETIC_V9 = v9_datagram(
    [
        struct.pack("!HH", 0, 4 + len(_V9_TEMPLATE)) + _V9_TEMPLATE,
        struct.pack("!HH", 256, 4 + 18) + bytes(18),
    ]
)
SYNTHETIC_V5 = struct.pack("!HHIIIIBBH", 5, 2, 1, 2, 3, 4, 0, 0, 0x4000 | 10) + bytes(96)
_HEADER = b"\x02" * 12 + b"\x81\x00\x00\x0a\x86\xdd" + bytes([0x60]) + bytes(39) + bytes(12)
_RAW = struct.pack("!IIII", 1, 200, 4, len(_HEADER)) + _HEADER
_SAMPLE = (
    struct.pack("!IIIIIIII", 1, 3, 10, 0, 0, 3, 4, 1) + struct.pack("!II", 1, len(_RAW)) + _RAW
)
SYNTHETIC_SFLOW = (
    struct.pack("!II4sIIII", 5, 1, bytes(4), 0, 0, 0, 1)
    + struct.pack("!II", 1, len(_SAMPLE))
    + _SAMPLE
)


def _seeds() -> list[bytes]:
    seeds = [SYNTHETIC_IPFIX, SYNTHETIC_V9, SYNTHETIC_V5, SYNTHETIC_SFLOW]
    if FLOWS.is_dir():
        seeds += [p.read_bytes() for p in sorted((FLOWS / "telegraf").glob("*/*.bin"))]
        for pcap in sorted((FLOWS / "tcpdump").glob("*.pcap")):
            seeds += [udp_payload(f) for f in read_pcap(pcap)[:6]]
    return seeds


SEEDS = _seeds()


def _primed() -> FlowDecoder:
    """A decoder that has seen every seed once, so mutated data sets meet their templates."""
    decoder = FlowDecoder()
    for seed in SEEDS:
        with contextlib.suppress(DecodeError):
            decoder.decode(seed, "fuzz", now=0.0)
    return decoder


def _survives(decode: Callable[[bytes], DecodeResult], data: bytes) -> None:
    try:
        result = decode(data)
    except DecodeError as error:
        kind = error.kind  # every error says its kind, for the collector's counter
    else:
        kind = None
    if kind is not None:
        assert kind in set(DecodeErrorKind)
        return
    assert result.flows.dtype == FLOW_DTYPE
    assert isinstance(result.flows, np.ndarray)


def _all_decoders(data: bytes, decoder: FlowDecoder) -> None:
    cache = decoder.cache
    _survives(lambda d: decoder.decode(d, "fuzz", now=1.0), data)
    _survives(netflow_v5.decode, data)
    _survives(sflow.decode, data)
    _survives(lambda d: netflow_v9.decode(d, cache, "fuzz", 1.0), data)
    _survives(lambda d: ipfix.decode(d, cache, "fuzz", 1.0), data)


FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes(data: bytes) -> None:
    _all_decoders(data, FlowDecoder())


@FUZZ
@given(
    st.sampled_from([b"\x00\x05", b"\x00\x09", b"\x00\x0a", b"\x00\x00\x00\x05"]),
    st.binary(max_size=600),
)
def test_random_bodies_behind_real_versions(version: bytes, body: bytes) -> None:
    _all_decoders(version + body, _primed())


@FUZZ
@given(st.sampled_from(range(len(SEEDS))), st.integers(min_value=0, max_value=4000))
def test_truncations(index: int, cut: int) -> None:
    seed = SEEDS[index]
    _all_decoders(seed[: cut % (len(seed) + 1)], _primed())


@FUZZ
@given(
    st.sampled_from(range(len(SEEDS))),
    st.lists(
        st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=7)), max_size=8
    ),
)
def test_bit_flips(index: int, flips: list[tuple[int, int]]) -> None:
    data = bytearray(SEEDS[index])
    for at, bit in flips:
        data[at % len(data)] ^= 1 << bit
    _all_decoders(bytes(data), _primed())


@FUZZ
@given(
    st.sampled_from(range(len(SEEDS))),
    st.integers(min_value=0),
    st.integers(min_value=0, max_value=64),
    st.binary(max_size=32),
)
def test_splices(index: int, at: int, cut: int, insert: bytes) -> None:
    seed = SEEDS[index]
    at %= len(seed) + 1
    _all_decoders(seed[:at] + insert + seed[at + cut :], _primed())


@FUZZ
@given(
    st.sampled_from(range(len(SEEDS))),
    st.integers(min_value=0),
    st.sampled_from([0, 1, 3, 4, 0x7F, 0xFF, 0xFFFF, 0x7FFF_FFFF, 0xFFFF_FFFF]),
)
def test_lying_length_and_count_fields(index: int, at: int, value: int) -> None:
    """Overwrite an aligned 16- or 32-bit word (where lengths and counts live) with a lie."""
    data = bytearray(SEEDS[index])
    if len(data) < 4:
        return
    at = (at % (len(data) - 3)) & ~1
    if value > 0xFFFF:
        data[at : at + 4] = struct.pack("!I", value)
    else:
        data[at : at + 2] = struct.pack("!H", value)
    _all_decoders(bytes(data), _primed())


@FUZZ
@given(
    st.lists(st.tuples(st.sampled_from(range(len(SEEDS))), st.integers(min_value=0)), max_size=12)
)
def test_batches_never_raise(picks: list[tuple[int, int]]) -> None:
    items = []
    for index, cut in picks:
        seed = SEEDS[index]
        items.append((seed[: cut % (len(seed) + 1)], f"exporter-{index % 3}"))
    result = FlowDecoder(TemplateCache(hold_sets=4)).decode_many(items, now=0.0)
    assert result.datagrams + len(result.failed) == len(items)
    assert all(isinstance(error, DecodeError) for _, error in result.failed)
