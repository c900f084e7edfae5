"""PrefixIndex: point-in-time longest-prefix match, checked against a naive ipaddress loop."""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import random
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import TypeVar
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from abusedesk.inventory import prefix_index
from abusedesk.inventory.prefix_index import (
    NO_OWNER,
    Assignment,
    InvalidPrefix,
    PrefixIndex,
    parse_addresses,
    v4_to_array,
    v6_to_array,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
US = timedelta(microseconds=1)
SINCE_ALWAYS = datetime.min.replace(tzinfo=UTC)
T = TypeVar("T", int, np.ndarray)

# --------------------------------------------------------------------------- reference


def valid_at(a: Assignment, at: datetime | None) -> bool:
    if at is None:
        return a.valid_until is None
    if a.valid_from is not None and at < a.valid_from:
        return False
    return a.valid_until is None or at < a.valid_until


@functools.cache
def network_of(prefix: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(prefix)


def reference(assignments: Sequence[Assignment], address: str, at: datetime | None) -> int | None:
    """The obvious loop: every assignment, ipaddress containment, explicit tie-breaks."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    best: tuple[int, datetime, int] | None = None
    for a in assignments:
        network = network_of(a.prefix)
        if network.version != ip.version or ip not in network or not valid_at(a, at):
            continue
        key = (network.prefixlen, a.valid_from or SINCE_ALWAYS, a.owner)
        if best is None or key > best:
            best = key
    return None if best is None else best[2]


def as_owner(found: int | None) -> int:
    return NO_OWNER if found is None else found


def dt64(times: Sequence[datetime | None]) -> np.ndarray:
    """UTC datetime64[us] array; None becomes NaT."""
    naive = [None if t is None else t.astimezone(UTC).replace(tzinfo=None) for t in times]
    return np.array(
        [np.datetime64("NaT") if t is None else np.datetime64(t, "us") for t in naive],
        dtype="datetime64[us]",
    )


def always_table(family: object, queries: T) -> T:
    """Stand-in for _table_pays_off: every historical time gets a segment table."""
    return queries >= 0


def never_table(family: object, queries: T) -> T:
    """Stand-in for _table_pays_off: every historical lookup walks the prefix history."""
    return queries < 0


POLICIES = {"tables": always_table, "walk": never_table, "default": prefix_index._table_pays_off}


@contextlib.contextmanager
def policy(name: str) -> Iterator[None]:
    """Historical lookups have two strategies; tests pin one to check both against the reference."""
    with mock.patch.object(prefix_index, "_table_pays_off", POLICIES[name]):
        yield


def v6_pair(address: str) -> list[int]:
    value = int(ipaddress.IPv6Address(address))
    return [value >> 64, value & ((1 << 64) - 1)]


# --------------------------------------------------------------------------- nesting


NESTED = [
    Assignment("10.20.0.0/16", 16),
    Assignment("10.20.30.0/24", 24),
    Assignment("10.20.30.40", 32),
    Assignment("2001:db8::/32", 132),
    Assignment("2001:db8:1::/48", 148),
    Assignment("2001:db8:1:2::/64", 164),
    Assignment("2001:db8:1:2::77/128", 228),
]


@pytest.fixture(scope="module")
def nested() -> PrefixIndex:
    return PrefixIndex.build(NESTED)


@pytest.mark.parametrize(
    ("address", "owner"),
    [
        ("10.20.0.0", 16),
        ("10.20.30.39", 24),
        ("10.20.30.40", 32),
        ("10.20.30.41", 24),
        ("10.20.30.0", 24),
        ("10.20.30.255", 24),
        ("10.20.29.255", 16),
        ("10.20.31.0", 16),
        ("10.20.255.255", 16),
        ("10.19.255.255", None),
        ("10.21.0.0", None),
        ("2001:db8::", 132),
        ("2001:db8:1::", 148),
        ("2001:db8:1:1:ffff:ffff:ffff:ffff", 148),
        ("2001:db8:1:2::", 164),
        ("2001:db8:1:2::76", 164),
        ("2001:db8:1:2::77", 228),
        ("2001:db8:1:2::78", 164),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", 164),
        ("2001:db8:1:3::", 148),
        ("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 132),
        ("2001:db9::", None),
        ("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", None),
    ],
)
def test_longest_prefix_wins(nested: PrefixIndex, address: str, owner: int | None) -> None:
    assert nested.lookup(address) == owner
    assert nested.lookup(ipaddress.ip_address(address)) == owner
    assert reference(NESTED, address, None) == owner


def test_bulk_paths_agree_with_scalar(nested: PrefixIndex) -> None:
    v4 = ["10.20.30.40", "10.20.30.41", "10.21.0.0", "10.20.0.1"]
    v6 = ["2001:db8:1:2::77", "2001:db8:1:3::", "::1"]
    assert nested.lookup_v4(v4_to_array(v4)).tolist() == [32, 24, -1, 16]
    assert nested.lookup_v6(v6_to_array(v6)).tolist() == [228, 148, -1]
    assert nested.lookup_many(v4 + v6).tolist() == [32, 24, -1, 16, 228, 148, -1]
    assert len(nested) == len(NESTED)


def test_lookup_many_mixed_and_bad_strings(nested: PrefixIndex) -> None:
    addresses = [
        "10.20.30.40",
        "not an address",
        "2001:db8::1",
        "",
        "10.20.30.40/32",
        " 10.20.30.40",
        "010.20.30.40",
        "10.20.30.256",
        "fe80::1%eth0",
        "2001:db8::1::2",
        None,
        b"10.20.30.40",
        "10.20.30.41",
    ]
    assert nested.lookup_many(addresses).tolist() == [32, -1, 132] + [-1] * 9 + [24]  # type: ignore[arg-type]


def test_lookup_many_empty(nested: PrefixIndex) -> None:
    assert nested.lookup_many([]).shape == (0,)
    assert nested.lookup_v4(np.zeros(0, np.uint32)).shape == (0,)
    assert nested.lookup_v6(np.zeros((0, 2), np.uint64)).shape == (0,)
    assert nested.lookup_v4(np.zeros(0, np.uint32), at=dt64([])).shape == (0,)


def test_scalar_lookup_rejects_bad_input(nested: PrefixIndex) -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        nested.lookup("10.20.30.400")
    with pytest.raises(TypeError):
        nested.lookup("10.20.30.40", at=dt64([T0]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timezone-aware"):
        nested.lookup("10.20.30.40", at=datetime(2024, 1, 1))


# --------------------------------------------------------------------------- boundaries


EDGES = [
    Assignment("0.0.0.0/0", 1),
    Assignment("255.255.255.255/32", 2),
    Assignment("0.0.0.0/32", 3),
    Assignment("255.255.255.0/24", 4),
    Assignment("128.0.0.0/1", 5),
    Assignment("::/0", 11),
    Assignment("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", 12),
    Assignment("::/128", 13),
    Assignment("ffff:ffff:ffff:ffff::/64", 14),
    Assignment("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120", 15),
    Assignment("::ffff:ffff:ffff:ff00/120", 16),  # end+1 carries from lo into hi
    Assignment("0:0:0:1::/64", 17),
    Assignment("8000::/1", 18),
]


@pytest.mark.parametrize(
    ("address", "owner"),
    [
        ("0.0.0.0", 3),
        ("0.0.0.1", 1),
        ("127.255.255.255", 1),
        ("128.0.0.0", 5),
        ("255.255.254.255", 5),
        ("255.255.255.0", 4),
        ("255.255.255.254", 4),
        ("255.255.255.255", 2),
        ("::", 13),
        ("::1", 11),
        ("::ffff:ffff:ffff:feff", 11),
        ("::ffff:ffff:ffff:ff00", 16),
        ("::ffff:ffff:ffff:ffff", 16),
        ("0:0:0:1::", 17),
        ("0:0:0:1:ffff:ffff:ffff:ffff", 17),
        ("0:0:0:2::", 11),
        ("7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 11),
        ("8000::", 18),
        ("ffff:ffff:ffff:fffe:ffff:ffff:ffff:ffff", 18),
        ("ffff:ffff:ffff:ffff::", 14),
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:feff", 14),
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00", 15),
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 15),
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 12),
    ],
)
def test_edges_of_the_address_space(address: str, owner: int) -> None:
    index = PrefixIndex.build(EDGES)
    assert reference(EDGES, address, None) == owner
    assert index.lookup(address) == owner
    assert index.lookup_many([address]).tolist() == [owner]


def test_extreme_numeric_values() -> None:
    index = PrefixIndex.build(EDGES)
    v4 = np.array([0, 1, 2**31, 2**32 - 2, 2**32 - 1], dtype=np.uint32)
    assert index.lookup_v4(v4).tolist() == [3, 1, 5, 4, 2]
    top = 2**64 - 1
    v6 = np.array([[0, 0], [0, 1], [top, top], [top, 0], [2**63, 0]], dtype=np.uint64)
    assert index.lookup_v6(v6).tolist() == [13, 11, 12, 14, 18]


def test_empty_index_and_single_family() -> None:
    empty = PrefixIndex.build([])
    assert len(empty) == 0
    assert empty.lookup("192.0.2.1") is None
    assert empty.lookup_many(["192.0.2.1", "2001:db8::1"]).tolist() == [-1, -1]
    only_v6 = PrefixIndex.build(iter([Assignment("2001:db8::/32", 7)]))
    assert only_v6.lookup("192.0.2.1") is None
    assert only_v6.lookup("2001:db8::1") == 7


def test_ipv4_mapped_ipv6_is_not_ipv4() -> None:
    index = PrefixIndex.build([Assignment("192.0.2.0/24", 1)])
    assert index.lookup("::ffff:192.0.2.1") is None
    assert index.lookup("192.0.2.1") == 1


# --------------------------------------------------------------------------- time


HISTORY = [
    # 198.51.100.0/24 moved from customer 1 to customer 2 at T0 + 2h; before T0 nobody had it.
    Assignment("198.51.100.0/24", 1, valid_from=T0, valid_until=T0 + 2 * HOUR),
    Assignment("198.51.100.0/24", 2, valid_from=T0 + 2 * HOUR),
    # One address of it was carved out for customer 3 during [T0 + 1h, T0 + 3h).
    Assignment("198.51.100.9/32", 3, valid_from=T0 + HOUR, valid_until=T0 + 3 * HOUR),
    Assignment("2001:db8:aa::/48", 4, valid_until=T0 + HOUR),
    Assignment("2001:db8:aa::/48", 5, valid_from=T0 + HOUR),
    # Starts in the future: "now" (at=None) already counts it.
    Assignment("203.0.113.0/24", 6, valid_from=T0 + 1000 * HOUR),
]


@pytest.mark.parametrize(
    ("address", "at", "owner"),
    [
        ("198.51.100.9", T0 - US, None),
        ("198.51.100.9", T0, 1),
        ("198.51.100.9", T0 + HOUR - US, 1),
        ("198.51.100.9", T0 + HOUR, 3),
        ("198.51.100.8", T0 + HOUR, 1),
        ("198.51.100.9", T0 + 2 * HOUR - US, 3),
        ("198.51.100.9", T0 + 2 * HOUR, 3),
        ("198.51.100.8", T0 + 2 * HOUR, 2),
        ("198.51.100.9", T0 + 3 * HOUR - US, 3),
        ("198.51.100.9", T0 + 3 * HOUR, 2),
        ("198.51.100.9", None, 2),
        ("2001:db8:aa::1", T0 - 1000 * HOUR, 4),
        ("2001:db8:aa::1", T0 + HOUR - US, 4),
        ("2001:db8:aa::1", T0 + HOUR, 5),
        ("2001:db8:aa::1", None, 5),
        ("203.0.113.1", None, 6),
        ("203.0.113.1", T0, None),
        ("203.0.113.1", T0 + 1000 * HOUR, 6),
    ],
)
def test_reassignment_over_time(address: str, at: datetime | None, owner: int | None) -> None:
    index = PrefixIndex.build(HISTORY)
    assert reference(HISTORY, address, at) == owner
    assert index.lookup(address, at) == owner
    assert index.lookup_many([address], at).tolist() == [as_owner(owner)]


def test_per_address_times() -> None:
    index = PrefixIndex.build(HISTORY)
    rows = [
        ("198.51.100.9", T0 + HOUR),
        ("198.51.100.9", T0 - HOUR),
        ("2001:db8:aa::1", T0),
        ("198.51.100.9", None),  # NaT: no time on the row, so "now"
        ("2001:db8:aa::1", T0 + 5 * HOUR),
        ("198.51.100.9", T0),
        ("garbage", T0),
        ("203.0.113.1", T0),
    ]
    addresses = [a for a, _ in rows]
    times = [t for _, t in rows]
    expected = [as_owner(reference(HISTORY, a, t)) for a, t in rows]
    assert expected == [3, -1, 4, 2, 5, 1, -1, -1]
    assert index.lookup_many(addresses, dt64(times)).tolist() == expected
    v4_rows = [i for i, (a, _) in enumerate(rows) if a.startswith("198.")]
    v4 = v4_to_array([addresses[i] for i in v4_rows])
    at = dt64([times[i] for i in v4_rows])
    assert index.lookup_v4(v4, at).tolist() == [expected[i] for i in v4_rows]


def test_time_array_units_and_zones() -> None:
    index = PrefixIndex.build(HISTORY)
    seconds = dt64([T0 + HOUR]).astype("datetime64[s]")
    nanos = dt64([T0 + HOUR - US]).astype("datetime64[ns]")
    assert index.lookup_many(["198.51.100.9"], seconds).tolist() == [3]
    assert index.lookup_many(["198.51.100.9"], nanos).tolist() == [1]
    plus_two = (T0 + HOUR).astimezone(timezone(timedelta(hours=2)))
    assert index.lookup("198.51.100.9", plus_two) == 3


def test_time_array_must_match() -> None:
    index = PrefixIndex.build(HISTORY)
    with pytest.raises(ValueError, match="one instant per address"):
        index.lookup_many(["198.51.100.9", "198.51.100.8"], dt64([T0]))
    with pytest.raises(TypeError, match="datetime64"):
        index.lookup_many(["198.51.100.9"], np.array([1], dtype=np.int64))
    with pytest.raises(ValueError, match="timezone-aware"):
        index.lookup_many(["198.51.100.9"], datetime(2024, 1, 1))


def test_overlapping_rows_of_one_prefix() -> None:
    rows = [
        Assignment("192.0.2.0/24", 1, valid_from=T0),
        Assignment("192.0.2.0/24", 2, valid_from=T0 + HOUR),  # later start wins
        Assignment("192.0.2.0/24", 9),  # since always: the earliest start
        Assignment("2001:db8::/32", 3, valid_from=T0),
        Assignment("2001:db8::/32", 4, valid_from=T0),  # same start: higher owner wins
    ]
    index = PrefixIndex.build(rows)
    assert index.lookup("192.0.2.1", T0 - US) == 9
    assert index.lookup("192.0.2.1", T0) == 1
    assert index.lookup("192.0.2.1", T0 + HOUR) == 2
    assert index.lookup("192.0.2.1") == 2
    assert index.lookup("2001:db8::1", T0) == 4
    assert index.lookup("2001:db8::1") == 4


def test_empty_and_inverted_intervals_are_never_valid() -> None:
    rows = [
        Assignment("192.0.2.0/24", 1, valid_from=T0, valid_until=T0),
        Assignment("192.0.2.0/25", 2, valid_from=T0 + HOUR, valid_until=T0),
    ]
    index = PrefixIndex.build(rows)
    for at in (T0 - US, T0, T0 + HOUR, None):
        assert index.lookup("192.0.2.1", at) is None


@pytest.mark.parametrize("cache_size", [0, 1])
def test_tiny_segment_cache_stays_correct(cache_size: int) -> None:
    index = PrefixIndex.build(HISTORY, cache_size=cache_size)
    with policy("tables"):
        for _ in range(3):
            for at in (T0, T0 + HOUR, T0 + 2 * HOUR, None, T0 - HOUR):
                assert index.lookup("198.51.100.9", at) == reference(HISTORY, "198.51.100.9", at)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "prefix",
    [
        "198.51.100.7/24",
        "2001:db8::1/48",
        "11.0.0.0/7",
        "::1/0",
        "0.0.0.1/0",
        "2001:db8:0:0:8000::/64",
        "2001:db8:0:0:4000::/65",
    ],
)
def test_host_bits_are_rejected(prefix: str) -> None:
    with pytest.raises(InvalidPrefix, match="host bits") as caught:
        PrefixIndex.build([Assignment("192.0.2.0/24", 1), Assignment(prefix, 2)])
    assert repr(prefix) in str(caught.value)
    assert str(ipaddress.ip_network(prefix, strict=False)) in str(caught.value)


@pytest.mark.parametrize(
    "prefix",
    [
        "1.2.3.4/33",
        "::/129",
        "1.2.3/24",
        "01.2.3.0/24",
        "1.2.3.4/",
        "1.2.3.4/-1",
        "1.2.3.4/+8",
        "1.2.3.4/ 8",
        "1.2.3.4/٣",
        "1.2.3.4/0032",
        "bogus",
        "",
        "/24",
        "2001:db8::/32/1",
        "fe80::%eth0/64",
        " 1.2.3.0/24",
    ],
)
def test_malformed_prefixes_are_rejected(prefix: str) -> None:
    with pytest.raises(InvalidPrefix) as caught:
        PrefixIndex.build([Assignment("192.0.2.0/24", 1), Assignment(prefix, 2)])
    assert repr(prefix) in str(caught.value)


def test_non_string_prefix_is_rejected() -> None:
    with pytest.raises(InvalidPrefix, match="not a string"):
        PrefixIndex.build([Assignment(None, 1)])  # type: ignore[arg-type]


@pytest.mark.parametrize("owner", [-1, 2**63, 1.5, "7"])
def test_bad_owner_is_rejected(owner: object) -> None:
    with pytest.raises(ValueError, match="owner"):
        PrefixIndex.build([Assignment("192.0.2.0/24", owner)])  # type: ignore[arg-type]


def test_naive_validity_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        PrefixIndex.build([Assignment("192.0.2.0/24", 1, valid_from=datetime(2024, 1, 1))])
    with pytest.raises(ValueError, match="valid_until"):
        PrefixIndex.build([Assignment("192.0.2.0/24", 1, valid_until=datetime(2024, 1, 1))])


def test_numeric_inputs_are_checked(nested: PrefixIndex) -> None:
    assert nested.lookup_v4(np.array([0x0A141E28], dtype=np.int64)).tolist() == [32]
    with pytest.raises(ValueError, match="2\\*\\*32"):
        nested.lookup_v4(np.array([2**32], dtype=np.int64))
    with pytest.raises(ValueError, match="2\\*\\*32"):
        nested.lookup_v4(np.array([-1], dtype=np.int64))
    with pytest.raises(TypeError):
        nested.lookup_v4(np.array([1.0]))
    with pytest.raises(ValueError, match="1-D"):
        nested.lookup_v4(np.zeros((2, 2), np.uint32))
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        nested.lookup_v6(np.zeros(4, np.uint64))
    with pytest.raises(ValueError, match="non-negative"):
        nested.lookup_v6(np.array([[-1, 0]], dtype=np.int64))


# --------------------------------------------------------------------------- parsing helpers


def test_string_helpers() -> None:
    assert v4_to_array(["0.0.0.0", "255.255.255.255", "10.20.30.40"]).tolist() == [
        0,
        2**32 - 1,
        0x0A141E28,
    ]
    assert v4_to_array([]).dtype == np.uint32
    pairs = v6_to_array(["::", "2001:db8::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"])
    assert pairs.dtype == np.uint64
    assert pairs.tolist() == [[0, 0], v6_pair("2001:db8::1"), [2**64 - 1, 2**64 - 1]]
    with pytest.raises(ValueError, match=r"#1: '2001:db8::1'"):
        v4_to_array(["10.0.0.1", "2001:db8::1"])
    with pytest.raises(ValueError, match="2 of 3"):
        v6_to_array(["::1", "10.0.0.1", "nope"])
    parsed = parse_addresses(["10.0.0.1", "::1", "nope", "1.2.3.4.5"])
    assert parsed.family.tolist() == [4, 6, 0, 0]
    assert parsed.v4.tolist() == [0x0A000001, 0, 0, 0]
    assert parsed.v6.tolist() == [[0, 0], [0, 1], [0, 0], [0, 0]]


def test_parsing_many_chunks_with_dirt() -> None:
    rng = random.Random(7)
    values = [rng.getrandbits(32) for _ in range(10_000)]
    texts = [str(ipaddress.IPv4Address(v)) for v in values]
    texts[5000] = "dirt"  # only its chunk takes the slow path
    parsed = parse_addresses(texts)
    assert parsed.family[5000] == 0
    keep = np.ones(len(values), dtype=bool)
    keep[5000] = False
    assert (parsed.family[keep] == 4).all()
    assert parsed.v4[keep].tolist() == [v for i, v in enumerate(values) if i != 5000]


# --------------------------------------------------------------------------- random, large


def random_assignments(rng: random.Random, n: int) -> list[Assignment]:
    """Random nested prefixes clustered around a few seeds, with random validity."""
    seeds4 = [rng.getrandbits(32) for _ in range(4)]
    seeds6 = [rng.getrandbits(128) for _ in range(4)]
    instants = [None, *[T0 + k * HOUR for k in range(4)]]
    rows = []
    for owner in range(n):
        v6 = rng.random() < 0.5
        bits = 128 if v6 else 32
        value = rng.choice(seeds6 if v6 else seeds4) ^ rng.getrandbits(rng.choice([4, 12, 40, 70]))
        value &= (1 << bits) - 1
        length = rng.randint(max(0, bits - 80), bits)
        network = ipaddress.ip_network((value >> (bits - length) << (bits - length), length))
        start, end = sorted(rng.sample(instants[1:], 2)) if rng.random() < 0.4 else (None, None)
        if rng.random() < 0.3:
            start, end = rng.choice(instants), rng.choice(instants)
        rows.append(Assignment(str(network), owner, start, end))
    return rows


def random_queries(rng: random.Random, rows: list[Assignment], n: int) -> list[str]:
    out = []
    for _ in range(n):
        network = ipaddress.ip_network(rng.choice(rows).prefix)
        edge = rng.choice(
            [
                int(network.network_address),
                int(network.broadcast_address),
                int(network.network_address) - 1,
                int(network.broadcast_address) + 1,
                int(network.network_address) + rng.randrange(network.num_addresses),
            ]
        )
        edge %= 1 << network.max_prefixlen
        out.append(
            str(ipaddress.ip_address(edge) if network.version == 6 else ipaddress.IPv4Address(edge))
        )
    return out


@pytest.mark.parametrize("strategy", list(POLICIES))
def test_large_batches_match_reference(strategy: str) -> None:
    """Above the sort threshold the lookups sort, search and un-permute; check that path."""
    rng = random.Random(2024)
    rows = random_assignments(rng, 60)
    queries = random_queries(rng, rows, 6000)
    times = [
        rng.choice([None, T0 - US, T0, T0 + HOUR + US, T0 + 2 * HOUR, T0 + 9 * HOUR])
        for _ in queries
    ]
    index = PrefixIndex.build(rows)
    expected_now = [as_owner(reference(rows, q, None)) for q in queries]
    expected_then = [as_owner(reference(rows, q, t)) for q, t in zip(queries, times, strict=True)]
    with policy(strategy):
        assert index.lookup_many(queries).tolist() == expected_now
        assert index.lookup_many(queries, dt64(times)).tolist() == expected_then
        for at in (T0, T0 + HOUR + US, None):
            expected = [as_owner(reference(rows, q, at)) for q in queries]
            assert index.lookup_many(queries, at).tolist() == expected
    assert any(e != -1 for e in expected_then)
    assert len(set(expected_then)) > 10


# --------------------------------------------------------------------------- hypothesis

INSTANTS = [T0 + k * HOUR for k in range(5)]
# Strategies are built once: constructing them inside every draw dominated the runtime.
MAYBE_INSTANT = st.one_of(st.none(), st.sampled_from(INSTANTS))
NUDGE = st.sampled_from([-US, timedelta(0), US])
VERSION = st.sampled_from([4, 6])
SEED_LISTS = {
    4: st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=3),
    6: st.lists(st.integers(0, 2**128 - 1), min_size=1, max_size=3),
}
FLIPS = {
    bits: st.sampled_from([0, 1, 3, 8, 20, 64, 66, bits]).flatmap(
        lambda width, bits=bits: st.integers(0, (1 << min(width, bits)) - 1)
    )
    for bits in (32, 128)
}
LENGTHS = {
    4: st.one_of(st.sampled_from([0, 1, 8, 16, 23, 24, 25, 30, 31, 32]), st.integers(0, 32)),
    6: st.one_of(st.sampled_from([0, 1, 32, 48, 63, 64, 65, 120, 127, 128]), st.integers(0, 128)),
}
EDGE_OFFSETS = st.integers(0, 3)
Scenario = tuple[list[Assignment], list[str], list[datetime | None]]


def draw_address(draw: st.DrawFn, version: int, seeds: list[int]) -> int:
    """An address near one of a few seeds, so prefixes nest and queries hit them."""
    seed = seeds[draw(st.integers(0, len(seeds) - 1))]
    return seed ^ draw(FLIPS[32 if version == 4 else 128])


def text_of(version: int, value: int) -> str:
    return str(ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value))


def draw_assignment(draw: st.DrawFn, owner: int, seeds: dict[int, list[int]]) -> Assignment:
    version = draw(VERSION)
    bits = 32 if version == 4 else 128
    length = draw(LENGTHS[version])
    network = draw_address(draw, version, seeds[version]) >> (bits - length) << (bits - length)
    prefix = f"{text_of(version, network)}/{length}"
    return Assignment(prefix, owner, draw(MAYBE_INSTANT), draw(MAYBE_INSTANT))


def draw_query(draw: st.DrawFn, rows: list[Assignment], seeds: dict[int, list[int]]) -> str:
    if rows and draw(st.booleans()):
        # The edges of an existing prefix: first, last, and one either side.
        network = network_of(rows[draw(st.integers(0, len(rows) - 1))].prefix)
        size = network.num_addresses
        offset = [-1, 0, size - 1, size][draw(EDGE_OFFSETS)]
        value = (int(network.network_address) + offset) % (1 << network.max_prefixlen)
        return text_of(network.version, value)
    version = draw(VERSION)
    return text_of(version, draw_address(draw, version, seeds[version]))


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    seeds = {version: draw(SEED_LISTS[version]) for version in (4, 6)}
    rows = [draw_assignment(draw, owner, seeds) for owner in range(draw(st.integers(0, 25)))]
    queries = [draw_query(draw, rows, seeds) for _ in range(draw(st.integers(1, 30)))]
    times = []
    for _ in queries:
        at = draw(MAYBE_INSTANT)
        times.append(None if at is None else at + draw(NUDGE))
    return rows, queries, times


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_matches_naive_reference(scenario: Scenario) -> None:
    rows, queries, times = scenario
    index = PrefixIndex.build(rows)
    assert len(index) == len(rows)
    for strategy in ("tables", "walk"):
        with policy(strategy):
            check_against_reference(index, rows, queries, times)


def check_against_reference(
    index: PrefixIndex, rows: list[Assignment], queries: list[str], times: list[datetime | None]
) -> None:
    # One time for the whole batch, for each distinct time in the scenario.
    for at in {None, *times}:
        expected = [as_owner(reference(rows, q, at)) for q in queries]
        assert index.lookup_many(queries, at).tolist() == expected
        assert [as_owner(index.lookup(q, at)) for q in queries] == expected
    # One time per address, NaT meaning now.
    expected = [as_owner(reference(rows, q, t)) for q, t in zip(queries, times, strict=True)]
    assert index.lookup_many(queries, dt64(times)).tolist() == expected
    # The numeric entry points agree with the string one.
    parsed = parse_addresses(queries)
    for family, lookup, values in (
        (4, index.lookup_v4, parsed.v4),
        (6, index.lookup_v6, parsed.v6),
    ):
        rows_of = np.flatnonzero(parsed.family == family)
        at = dt64([times[i] for i in rows_of])
        assert lookup(values[rows_of], at).tolist() == [expected[i] for i in rows_of]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(-2, 2), st.integers(0, 2**64 - 1)),
        max_size=60,
    )
)
def test_tie_aware_sort_matches_lexsort(rows: list[tuple[int, int, int]]) -> None:
    """The build's faster sort must order exactly like np.lexsort, ties and stability included."""
    from abusedesk.inventory.prefix_index import _lexsort_rare_ties

    small = np.array([r[0] for r in rows], dtype=np.int64)
    signed = np.array([r[1] for r in rows], dtype=np.int64)
    wide = np.array([r[2] for r in rows], dtype=np.uint64)
    for keys in ((signed, small), (wide, small), (small, signed, wide), (wide, small, signed)):
        assert _lexsort_rare_ties(keys).tolist() == np.lexsort(keys).tolist()
