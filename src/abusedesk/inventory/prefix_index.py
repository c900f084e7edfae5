"""Point-in-time longest-prefix match: "who owned this IP address at time t".

The index answers bulk questions (a feed of 100 000 rows, a flow window with
millions of addresses), so the lookup path is numpy all the way down; there is
no Python loop per address except where strings have to be parsed.

How it works
------------
* Every assignment is a CIDR prefix with a validity interval
  ``[valid_from, valid_until)``.  All finite ``valid_from``/``valid_until``
  instants, sorted, split time into *segments*; inside one segment the set of
  valid assignments is constant.
* Per address family, the start and end+1 of every prefix (whatever its
  validity) are sorted once into global *elementary intervals*.  For a segment,
  the valid prefixes are painted onto those intervals shortest-first, so the
  longest prefix ends up owning each interval; adjacent intervals with the same
  owner are merged.  The result is a sorted array of disjoint range starts and
  one owner per range: a lookup is one ``searchsorted`` plus a gather.
* The "now" table (``at=None``) is built eagerly and never evicted.  A past
  segment gets its own table, built lazily and kept in a bounded LRU cache,
  only when enough queries of the batch fall in it to repay the build.
* Other historical queries (a feed whose rows span hundreds of segments, a
  single ``lookup(addr, at)``) walk the history instead: an all-time table
  gives the deepest prefix ever assigned over the address, a sorted
  (prefix, segment) -> owner array says who held that prefix at that time,
  and queries whose prefix was unassigned then climb to its parent prefix.
  Each climb is one vectorised step for the whole batch; the number of steps
  is bounded by the nesting depth.

Time
----
Instants are aware datetimes, stored internally as int64 microseconds since
the Unix epoch.  ``at=None`` means "now", which - because this module reads no
clock - is defined as *the assignments whose ``valid_until`` is None*, whatever
their ``valid_from`` (an assignment that starts in the future already counts).
That is exactly the last time segment.  ``at`` may also be a numpy
``datetime64`` array with one (UTC) instant per address; NaT entries mean "now".

Addresses
---------
IPv4 addresses are ``uint32`` host-order integers.  IPv6 addresses are
``(N, 2)`` ``uint64`` arrays ``[hi, lo]``: ``hi`` is the first (most
significant) 64 bits, ``lo`` the last 64, i.e. ``value == (hi << 64) | lo``.
IPv4-mapped IPv6 addresses (``::ffff:192.0.2.1``) are IPv6 addresses here, as
in :mod:`ipaddress`; normalise them before the lookup if they should match
IPv4 assignments.
"""

from __future__ import annotations

import ipaddress
import operator
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import compress
from typing import NamedTuple, overload

import numpy as np
import numpy.typing as npt

__all__ = [
    "NO_OWNER",
    "Assignment",
    "InvalidPrefix",
    "ParsedAddresses",
    "PrefixIndex",
    "parse_addresses",
    "v4_to_array",
    "v6_to_array",
]

NO_OWNER = -1
"""Owner value returned by the bulk lookups where no assignment matches."""

U32 = npt.NDArray[np.uint32]
U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
IntP = npt.NDArray[np.intp]

_T_MIN = int(np.iinfo(np.int64).min)  # "since always"; also numpy's NaT
_T_MAX = int(np.iinfo(np.int64).max)  # "still valid"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_MASK64 = (1 << 64) - 1
_U64_ONE = np.uint64(1)
_U64_32 = np.uint64(32)
_LOW32 = np.uint64(0xFFFFFFFF)

# Below this many queries, sorting them first costs more than it saves.
_SORT_THRESHOLD = 2048
# Keeps the query index inside the low bits of a packed uint64 sort key.
_MAX_BATCH = 1 << 24
# Parsing chunk: one malformed string only pushes its own chunk to the slow path.
_PARSE_CHUNK = 4096
_DEFAULT_CACHE_SIZE = 32
# Prefix-length spellings accepted: decimal, at most three digits (as ipaddress, which
# allows leading zeros).  A dict lookup is several times faster than int() plus checks.
_LENGTHS = {f"{n:0{width}d}": n for width in (1, 2, 3) for n in range(min(10**width, 129))}


class InvalidPrefix(ValueError):
    """An assignment's prefix is not a valid, strict CIDR prefix."""


@dataclass(frozen=True, slots=True)
class Assignment:
    """One IP assignment: ``prefix`` belonged to ``owner`` during ``[valid_from, valid_until)``.

    ``prefix`` is ``"198.51.100.0/24"``, ``"2001:db8::/48"`` or a bare address
    (``/32`` or ``/128``); host bits must be zero.  ``owner`` is an opaque
    non-negative int.  Both instants are aware datetimes; ``valid_from=None``
    means "since always", ``valid_until=None`` means "still valid" (the bound is
    exclusive).  An interval with ``valid_from >= valid_until`` is never valid.
    Values are checked by :meth:`PrefixIndex.build`, not here, so that bulk
    construction stays cheap.
    """

    prefix: str
    owner: int
    valid_from: datetime | None = None
    valid_until: datetime | None = None


class ParsedAddresses(NamedTuple):
    """Result of :func:`parse_addresses`: one row per input string.

    ``family`` is 4, 6 or 0 (unparseable).  ``v4`` holds the IPv4 value where
    ``family == 4`` and 0 elsewhere; ``v6`` holds ``[hi, lo]`` where
    ``family == 6`` and zeros elsewhere.
    """

    family: npt.NDArray[np.int8]
    v4: U32
    v6: U64


# --------------------------------------------------------------------------- parsing


def _pack_address(text: str) -> tuple[bool, bytes]:
    """Return (is_v6, network-order bytes); ValueError if ``text`` is no address.

    inet_pton is strict (no leading zeros in IPv4, no zone ids) and an order of
    magnitude faster than ipaddress, which matters for a million prefixes.
    """
    if not isinstance(text, str):
        raise ValueError(f"not a string: {text!r}")
    is_v6 = ":" in text
    try:
        packed = socket.inet_pton(socket.AF_INET6 if is_v6 else socket.AF_INET, text)
    except (OSError, ValueError):
        raise ValueError(f"not an IP address: {text!r}") from None
    return is_v6, packed


def _parse_prefix(prefix: str) -> tuple[bool, bytes, int]:
    """Return (is_v6, network bytes, prefix length); host bits are checked later, in bulk."""
    if not isinstance(prefix, str):
        raise InvalidPrefix(f"prefix {prefix!r} is not a string")
    address, slash, length_text = prefix.partition("/")
    try:
        is_v6, packed = _pack_address(address)
    except ValueError:
        raise InvalidPrefix(f"prefix {prefix!r}: {address!r} is not an IP address") from None
    bits = 128 if is_v6 else 32
    if not slash:
        return is_v6, packed, bits
    digits = length_text.isascii() and length_text.isdigit() and len(length_text) <= 3
    if not digits or int(length_text) > bits:
        raise InvalidPrefix(f"prefix {prefix!r}: length must be an integer from 0 to {bits}")
    return is_v6, packed, int(length_text)


def _parse_chunk(chunk: Sequence[str], family: npt.NDArray[np.int8], v4: U32, v6: U64) -> None:
    """Parse one chunk into the output views; the fast path assumes clean input."""
    try:
        six = [":" in text for text in chunk]
        v4_texts = list(compress(chunk, [not s for s in six]))
        v6_texts = list(compress(chunk, six))
        pton = socket.inet_pton
        v4_bytes = b"".join([pton(socket.AF_INET, t) for t in v4_texts])
        v6_bytes = b"".join([pton(socket.AF_INET6, t) for t in v6_texts])
    except (OSError, ValueError, TypeError):
        _parse_chunk_slowly(chunk, family, v4, v6)
        return
    is_v6 = np.array(six, dtype=bool)
    family[:] = np.where(is_v6, 6, 4)
    v4[~is_v6] = np.frombuffer(v4_bytes, dtype=">u4")
    v6[is_v6] = np.frombuffer(v6_bytes, dtype=">u8").reshape(-1, 2)


def _parse_chunk_slowly(
    chunk: Sequence[str], family: npt.NDArray[np.int8], v4: U32, v6: U64
) -> None:
    for i, text in enumerate(chunk):
        try:
            is_v6, packed = _pack_address(text)
        except ValueError:
            continue
        if is_v6:
            family[i] = 6
            v6[i] = np.frombuffer(packed, dtype=">u8")
        else:
            family[i] = 4
            v4[i] = int.from_bytes(packed, "big")


def parse_addresses(addresses: Sequence[str]) -> ParsedAddresses:
    """Parse address strings (IPv4 and IPv6 mixed) into numeric arrays.

    Invalid entries (anything :func:`socket.inet_pton` rejects, non-strings,
    prefixes with a ``/``, zone ids, surrounding blanks) get ``family == 0``;
    nothing is raised.  Parsing is a Python-level loop over C calls - the only
    per-address loop in this module - at roughly half a microsecond a string.
    """
    n = len(addresses)
    family = np.zeros(n, dtype=np.int8)
    v4 = np.zeros(n, dtype=np.uint32)
    v6 = np.zeros((n, 2), dtype=np.uint64)
    for start in range(0, n, _PARSE_CHUNK):
        stop = min(start + _PARSE_CHUNK, n)
        chunk = addresses[start:stop]
        _parse_chunk(chunk, family[start:stop], v4[start:stop], v6[start:stop])
    return ParsedAddresses(family, v4, v6)


def _first_not(family: npt.NDArray[np.int8], wanted: int, addresses: Sequence[str]) -> None:
    bad = np.flatnonzero(family != wanted)
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{bad.size} of {family.size} entries are not IPv{wanted} addresses; "
            f"the first is #{i}: {addresses[i]!r}"
        )


def v4_to_array(addresses: Sequence[str]) -> U32:
    """Parse dotted-quad strings into a ``uint32`` array (host-order integers).

    Strict: raises ValueError, naming the first offender and how many there
    are, if any entry is not an IPv4 address (an IPv6 one included).  Use
    :func:`parse_addresses` to get a validity mask instead of an exception.
    """
    parsed = parse_addresses(addresses)
    _first_not(parsed.family, 4, addresses)
    return parsed.v4


def v6_to_array(addresses: Sequence[str]) -> U64:
    """Parse IPv6 strings into an ``(N, 2)`` ``uint64`` array of ``[hi, lo]`` halves.

    Strict like :func:`v4_to_array`: ValueError if any entry is not IPv6
    (plain IPv4 included; write it as ``::ffff:a.b.c.d`` if that is intended).
    """
    parsed = parse_addresses(addresses)
    _first_not(parsed.family, 6, addresses)
    return parsed.v6


# --------------------------------------------------------------------------- input coercion


def _to_us(moment: datetime, what: str) -> int:
    if not isinstance(moment, datetime):
        raise TypeError(f"{what} must be a datetime, got {type(moment).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (UTC), got naive {moment.isoformat()}")
    return (moment - _EPOCH) // _ONE_US


def _as_v4_array(addrs: npt.ArrayLike) -> U32:
    arr = np.asarray(addrs)
    if arr.ndim != 1:
        raise ValueError(f"IPv4 addresses must be a 1-D array, got shape {arr.shape}")
    if arr.dtype == np.uint32:
        return np.ascontiguousarray(arr)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"IPv4 addresses must be uint32 integers, got dtype {arr.dtype}")
    # Wrapping silently would turn a caller's bug into someone else's customer.
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 0xFFFFFFFF):
        raise ValueError("IPv4 address values must lie in 0 .. 2**32-1")
    return arr.astype(np.uint32)


def _as_v6_halves(addrs: npt.ArrayLike) -> tuple[U64, U64]:
    arr = np.asarray(addrs)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"IPv6 addresses must have shape (N, 2) [hi, lo], got {arr.shape}")
    if arr.dtype != np.uint64:
        if arr.dtype.kind not in "iu":
            raise TypeError(f"IPv6 addresses must be uint64 [hi, lo], got dtype {arr.dtype}")
        if arr.size and int(arr.min()) < 0:
            raise ValueError("IPv6 address halves must be non-negative")
        arr = arr.astype(np.uint64)
    return np.ascontiguousarray(arr[:, 0]), np.ascontiguousarray(arr[:, 1])


def _as_time_array(at: np.ndarray, n: int) -> I64:
    if at.dtype.kind != "M":
        raise TypeError(f"at must be a datetime64 array, got dtype {at.dtype}")
    if at.shape != (n,):
        raise ValueError(f"at must have one instant per address: shape ({n},), got {at.shape}")
    return at.astype("datetime64[us]").view(np.int64)


# --------------------------------------------------------------------------- range helpers


def _low_mask(nbits: npt.NDArray[np.int64]) -> U64:
    """uint64 masks with the low ``nbits`` bits set, for nbits in 0..64 (shifting by 64 is UB)."""
    shift = np.minimum(nbits, 63).astype(np.uint64)
    partial = (_U64_ONE << shift) - _U64_ONE
    return np.where(nbits >= 64, np.uint64(_MASK64), partial).astype(np.uint64)


def _expand_ranges(starts: IntP, stops: IntP) -> IntP:
    """Concatenate ``arange(start, stop)`` for every pair, without a Python loop."""
    counts = stops - starts
    ends = np.cumsum(counts)
    offsets = np.repeat(starts - (ends - counts), counts)
    return offsets + np.arange(int(ends[-1]) if ends.size else 0, dtype=np.intp)


def _run_starts(values: np.ndarray) -> npt.NDArray[np.bool_]:
    """True where a value differs from its predecessor (and at index 0)."""
    keep = np.empty(values.shape[0], dtype=bool)
    keep[:1] = True
    np.not_equal(values[1:], values[:-1], out=keep[1:])
    return keep


# --------------------------------------------------------------------------- per-family data


@dataclass(frozen=True, slots=True)
class _V4Table:
    """Disjoint ranges for one segment: ``starts[i]`` .. next start belongs to ``owners[i]``."""

    starts: U32  # starts[0] == 0, so every address falls in some range
    owners: I64


@dataclass(frozen=True, slots=True)
class _V6Table:
    """Like :class:`_V4Table` with 128-bit starts held as sorted (hi, lo) pairs."""

    hi: U64
    lo: U64
    owners: I64
    group_start: IntP  # first index with the same ``hi``: bounds the ``lo`` search
    lo_steps: int  # bisection steps that cover the largest same-``hi`` group


_Table = _V4Table | _V6Table


@dataclass(frozen=True, slots=True)
class _Family:
    """All assignments of one address family, sorted for painting, plus their history.

    Rows are sorted by (length, prefix, valid_from, owner): painting in that
    order lets longer prefixes overwrite shorter ones, and within one prefix the
    last valid row is the one the tie-break rules pick.

    The history part answers lookups with many different times without a table
    per time segment: ``everyone`` maps an address to the deepest prefix ever
    assigned over it (a prefix number, ``pid``), ``parent`` links each prefix
    to the next shorter one containing it, and ``history_keys`` /
    ``history_owner`` give, for key ``pid * stride + segment``, who held that
    prefix from that segment on (-1: nobody).
    """

    v6: bool
    point_hi: U64  # global elementary-interval starts (hi is all zero for IPv4)
    point_lo: U64
    length: npt.NDArray[np.int16]
    prefix_id: I64
    owner: I64
    valid_from: I64
    valid_until: I64
    first: IntP  # first elementary interval the prefix covers
    stop: IntP  # one past the last
    everyone: _Table
    parent: I64
    stride: int
    history_keys: I64
    history_owner: I64

    @property
    def size(self) -> int:
        """Rough cost of building one segment table, in array elements."""
        return self.owner.shape[0] + self.point_lo.shape[0]

    def table(self, at_us: int) -> _Table:
        """Disjoint-range table of the assignments valid at ``at_us``."""
        valid = (self.valid_from <= at_us) & (self.valid_until > at_us)
        rows = np.flatnonzero(valid)
        # Several rows of one prefix valid at once is a data error; keep the last in sort order.
        winners = rows[_run_starts(self.prefix_id[rows][::-1])[::-1]]
        painted, _ = _paint(self.point_lo.shape[0], self, winners, self.owner[winners])
        return _make_table(self.v6, self.point_hi, self.point_lo, painted)

    def walk(self, pids: I64, segments: IntP) -> I64:
        """Owners at per-query segments, climbing from each deepest prefix to its parents."""
        out = np.full(pids.shape[0], NO_OWNER, dtype=np.int64)
        if self.history_keys.shape[0] == 0:  # nothing was ever valid
            return out
        active = np.flatnonzero(pids >= 0)
        pid, segment = pids[active], segments[active]
        # Each round settles the queries whose current prefix was held; the rest climb one level.
        while active.size:
            at = _search_right(self.history_keys, pid * self.stride + segment) - 1
            # A probe that lands before its own prefix's keys reads the previous prefix's
            # closing key, whose owner is always "nobody": no extra check needed.
            owner = np.where(at >= 0, self.history_owner[np.maximum(at, 0)], NO_OWNER)
            done = owner >= 0
            out[active[done]] = owner[done]
            climb = np.flatnonzero(~done)
            pid = self.parent[pid[climb]]
            alive = pid >= 0
            active, pid, segment = active[climb][alive], pid[alive], segment[climb][alive]
        return out


def _paint(n_points: int, family: _Family | _Ranges, rows: IntP, values: I64) -> tuple[I64, I64]:
    """Paint ``values`` over the rows' interval ranges, shortest prefixes first.

    Returns the painted intervals and, per row, the value that lay under its
    first interval just before its own level was painted: for the all-time
    painting that is the row's parent prefix.
    """
    painted = np.full(n_points, NO_OWNER, dtype=np.int64)
    below = np.full(rows.shape[0], NO_OWNER, dtype=np.int64)
    if rows.size == 0:
        return painted, below
    cuts = np.flatnonzero(_run_starts(family.length[rows]))
    for begin, end in zip(cuts, [*cuts[1:], rows.size], strict=True):
        level = rows[begin:end]
        first, stop = family.first[level], family.stop[level]
        below[begin:end] = painted[first]
        # Same-length prefixes are disjoint, so no interval is written twice per level.
        painted[_expand_ranges(first, stop)] = np.repeat(values[begin:end], stop - first)
    return painted, below


@dataclass(frozen=True, slots=True)
class _Ranges:
    """The per-row columns :func:`_paint` needs, before a :class:`_Family` exists."""

    length: npt.NDArray[np.int16]
    first: IntP
    stop: IntP


def _make_table(v6: bool, point_hi: U64, point_lo: U64, painted: I64) -> _Table:
    keep = _run_starts(painted)  # merge neighbouring intervals with the same owner
    if v6:
        return _v6_table(point_hi[keep], point_lo[keep], painted[keep])
    return _V4Table(starts=point_lo[keep].astype(np.uint32), owners=painted[keep])


def _search_right(haystack: np.ndarray, needles: np.ndarray) -> IntP:
    """``searchsorted(side="right")``; big batches are sorted first, as random probes miss cache."""
    if needles.shape[0] < _SORT_THRESHOLD:
        return np.searchsorted(haystack, needles, side="right")
    order = np.argsort(needles)
    out = np.empty(needles.shape[0], dtype=np.intp)
    out[order] = np.searchsorted(haystack, needles[order], side="right")
    return out


def _v6_table(hi: U64, lo: U64, owners: I64) -> _V6Table:
    new_group = _run_starts(hi)
    index = np.arange(hi.shape[0], dtype=np.intp)
    group_start = np.maximum.accumulate(np.where(new_group, index, 0))
    group_sizes = np.diff(np.append(np.flatnonzero(new_group), hi.shape[0]))
    largest = int(group_sizes.max()) if group_sizes.size else 1
    return _V6Table(hi, lo, owners, group_start, largest.bit_length())


def _unique_points(v6: bool, hi: U64, lo: U64) -> tuple[U64, U64, IntP]:
    """Sorted distinct (hi, lo) pairs and, for every input pair, its index among them."""
    if v6:
        order = _lexsort_rare_ties((lo, hi))
    else:
        # IPv4 points are < 2**32: value and position pack into one uint64 for a SIMD sort.
        key = lo << _U64_32
        key |= np.arange(lo.shape[0], dtype=np.uint64)
        key.sort()
        order = (key & _LOW32).astype(np.intp)
    shi, slo = hi[order], lo[order]
    new = _run_starts(shi) | _run_starts(slo)
    rank = np.cumsum(new) - 1
    inverse = np.empty(order.shape[0], dtype=np.intp)
    inverse[order] = rank
    return shi[new], slo[new], inverse


def _lexsort_rare_ties(keys: tuple[np.ndarray, ...]) -> IntP:
    """Same permutation as ``np.lexsort(keys)`` (last key primary).

    lexsort pays a full stable sort per key; when the primary key rarely ties,
    sorting by it alone and lexsorting just the tied runs is about twice as fast.
    """
    primary = keys[-1]
    order = np.argsort(primary, kind="stable")
    repeat = ~_run_starts(primary[order])
    tied = repeat.copy()
    tied[:-1] |= repeat[1:]  # the first member of each run of ties
    spots = np.flatnonzero(tied)
    if spots.size:
        members = order[spots]
        order[spots] = members[np.lexsort(tuple(key[members] for key in keys))]
    return order


def _check_host_bits(
    v6: bool, hi: U64, lo: U64, length: npt.NDArray[np.int64], prefixes: Callable[[int], str]
) -> None:
    if v6:
        host_hi = _low_mask(np.clip(64 - length, 0, 64)) & hi
        host_lo = _low_mask(np.clip(128 - length, 0, 64)) & lo
        bad = np.flatnonzero((host_hi != 0) | (host_lo != 0))
    else:
        bad = np.flatnonzero(_low_mask(32 - length) & lo)
    if bad.size:
        text = prefixes(int(bad[0]))
        network = ipaddress.ip_network(text, strict=False)
        raise InvalidPrefix(
            f"prefix {text!r} has host bits set; the network is {network} "
            f"({bad.size} such prefix(es) in total)"
        )


def _prefix_ends(
    v6: bool, hi: U64, lo: U64, length: npt.NDArray[np.int64]
) -> tuple[U64, U64, npt.NDArray[np.bool_]]:
    """End+1 of every prefix as (hi, lo), and whether it runs off the top of the space."""
    if not v6:
        end = lo + (_U64_ONE << (32 - length).astype(np.uint64))
        return hi, end, end > np.uint64(0xFFFFFFFF)
    short = length <= 64
    hi_step = np.where(short, _U64_ONE << np.clip(64 - length, 0, 63).astype(np.uint64), 0)
    lo_step = np.where(short, 0, _U64_ONE << np.clip(128 - length, 0, 63).astype(np.uint64))
    end_lo = lo + lo_step.astype(np.uint64)
    carry = (~short) & (end_lo < lo)
    end_hi = hi + hi_step.astype(np.uint64) + carry.astype(np.uint64)
    # A /0 would step hi by 2**64, which the clipped shift cannot express; it always hits the top.
    top = (length == 0) | (short & (end_hi < hi)) | (carry & (hi == np.uint64(_MASK64)))
    return end_hi, end_lo, top


@dataclass(frozen=True, slots=True)
class _Columns:
    """Every assignment as columns; prefixes already split by family into packed bytes."""

    prefixes: list[str]
    is_v6: npt.NDArray[np.bool_]
    length: npt.NDArray[np.int64]
    owner: I64
    valid_from: I64
    valid_until: I64
    v4_packed: bytes
    v6_packed: bytes


def _columns(items: Sequence[Assignment]) -> _Columns:
    """Split assignments into columns with comprehensions: a per-row function call costs more."""
    prefixes = [a.prefix for a in items]
    is_v6, length, v4_packed, v6_packed = _parse_prefixes(prefixes)
    try:
        owner = np.array([operator.index(a.owner) for a in items], dtype=np.int64)
    except (TypeError, OverflowError):
        owner = np.full(len(items), -1, dtype=np.int64)
    bad = np.flatnonzero(owner < 0)
    if bad.size:
        item = items[int(bad[0])]
        raise ValueError(f"owner of {item.prefix!r} must be an int in 0 .. 2**63-1: {item.owner!r}")
    since = [_T_MIN if a.valid_from is None else _to_us(a.valid_from, "valid_from") for a in items]
    until = [
        _T_MAX if a.valid_until is None else _to_us(a.valid_until, "valid_until") for a in items
    ]
    return _Columns(
        prefixes=prefixes,
        is_v6=is_v6,
        length=length,
        owner=owner,
        valid_from=np.array(since, dtype=np.int64),
        valid_until=np.array(until, dtype=np.int64),
        v4_packed=v4_packed,
        v6_packed=v6_packed,
    )


def _parse_prefixes(
    prefixes: list[str],
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64], bytes, bytes]:
    """(is_v6, length, packed IPv4 networks, packed IPv6 networks) for clean input.

    Anything unusual drops to :func:`_parse_prefix`, whose only job then is to
    raise :class:`InvalidPrefix` with a precise message for the first culprit.
    """
    pton = socket.inet_pton
    try:
        split = [p.partition("/") for p in prefixes]
        six = [":" in address for address, _, _ in split]
        v4 = b"".join(
            [pton(socket.AF_INET, s[0]) for s, v6 in zip(split, six, strict=True) if not v6]
        )
        v6 = b"".join([pton(socket.AF_INET6, s[0]) for s, v6 in zip(split, six, strict=True) if v6])
        length = [
            _LENGTHS.get(t, -1) if slash else (128 if v6 else 32)
            for (_, slash, t), v6 in zip(split, six, strict=True)
        ]
    except (AttributeError, TypeError, ValueError, OSError):
        _raise_first_invalid(prefixes)
        raise  # _raise_first_invalid always raises; this keeps type checkers honest
    is_v6 = np.array(six, dtype=bool)
    lengths = np.array(length, dtype=np.int64)
    bad = np.flatnonzero((lengths < 0) | (lengths > np.where(is_v6, 128, 32)))
    if bad.size:
        _raise_first_invalid([prefixes[int(bad[0])]])
    return is_v6, lengths, v4, v6


def _raise_first_invalid(prefixes: list[str]) -> None:
    for prefix in prefixes:
        _parse_prefix(prefix)
    raise InvalidPrefix("invalid prefix")  # unreachable unless the two parsers disagree


def _make_family(v6: bool, cols: _Columns, boundaries: I64) -> _Family:
    rows = np.flatnonzero(cols.is_v6 == v6)
    lengths = cols.length[rows]
    if v6:
        halves = np.frombuffer(cols.v6_packed, dtype=">u8").reshape(-1, 2).astype(np.uint64)
        hi, lo = np.ascontiguousarray(halves[:, 0]), np.ascontiguousarray(halves[:, 1])
    else:
        lo = np.frombuffer(cols.v4_packed, dtype=">u4").astype(np.uint64)
        hi = np.zeros_like(lo)
    _check_host_bits(v6, hi, lo, lengths, lambda i: cols.prefixes[int(rows[i])])
    end_hi, end_lo, top = _prefix_ends(v6, hi, lo, lengths)
    n = lengths.shape[0]
    # Address 0 is always a range start, so every query lands in some range.
    all_hi = np.concatenate([np.zeros(1, np.uint64), hi, end_hi[~top]])
    all_lo = np.concatenate([np.zeros(1, np.uint64), lo, end_lo[~top]])
    point_hi, point_lo, inverse = _unique_points(v6, all_hi, all_lo)
    first = inverse[1 : n + 1]
    stop = np.full(n, point_lo.shape[0], dtype=np.intp)
    stop[~top] = inverse[n + 1 :]
    prefix_id = first.astype(np.int64) * 129 + lengths
    owners = cols.owner[rows]
    froms = cols.valid_from[rows]
    untils = cols.valid_until[rows]
    # One key ordering by (length, prefix): prefix_id stays below 2**36 for any realistic
    # input (it would take ~2.6e8 assignments), so the length can sit above it.
    order = _lexsort_rare_ties((owners, froms, (lengths << 36) | prefix_id))
    ranges = _Ranges(length=lengths[order].astype(np.int16), first=first[order], stop=stop[order])
    prefix_id, owners = prefix_id[order], owners[order]
    froms, untils = froms[order], untils[order]
    # All-time painting, one row per prefix, numbers each prefix and finds its parent.
    new_prefix = _run_starts(prefix_id)
    prefix_rows = np.flatnonzero(new_prefix)
    pids = np.arange(prefix_rows.shape[0], dtype=np.int64)
    deepest, parent = _paint(point_lo.shape[0], ranges, prefix_rows, pids)
    stride, history_keys, history_owner = _history(
        np.cumsum(new_prefix) - 1, owners, froms, untils, boundaries
    )
    return _Family(
        v6=v6,
        point_hi=point_hi,
        point_lo=point_lo,
        length=ranges.length,
        prefix_id=prefix_id,
        owner=owners,
        valid_from=froms,
        valid_until=untils,
        first=ranges.first,
        stop=ranges.stop,
        everyone=_make_table(v6, point_hi, point_lo, deepest),
        parent=parent,
        stride=stride,
        history_keys=history_keys,
        history_owner=history_owner,
    )


def _history(
    pid: I64, owner: I64, valid_from: I64, valid_until: I64, boundaries: I64
) -> tuple[int, I64, I64]:
    """Per prefix, who held it in each time segment, as sorted keys ``pid * stride + segment``.

    Rows arrive sorted by (prefix, valid_from, owner), so among overlapping
    rows of one prefix the highest row index is the one the tie-break picks.
    """
    n_bounds = boundaries.shape[0]
    stride = n_bounds + 2  # segments 0 .. n_bounds, plus "after the last one" for ends
    seg_from = np.searchsorted(boundaries, valid_from, side="right")
    seg_until = np.where(
        valid_until == _T_MAX, n_bounds + 1, np.searchsorted(boundaries, valid_until, side="right")
    )
    live = np.flatnonzero(seg_from < seg_until)  # empty or inverted intervals never count
    base = pid[live] * stride
    keys, inverse = np.unique(
        np.concatenate([base + seg_from[live], base + seg_until[live]]), return_inverse=True
    )
    first, stop = inverse[: live.shape[0]], inverse[live.shape[0] :]
    winner = np.full(keys.shape[0], -1, dtype=np.int64)
    np.maximum.at(winner, _expand_ranges(first, stop), np.repeat(live, stop - first))
    held = np.where(winner >= 0, owner[np.maximum(winner, 0)], NO_OWNER)
    return stride, keys.astype(np.int64), held


# --------------------------------------------------------------------------- table lookups


def _sort_key_order(values: U64, index_bits: int) -> IntP:
    """Permutation that (nearly) sorts ``values``: packs value and position in one uint64.

    ``np.sort`` on uint64 is SIMD-accelerated and several times faster than
    ``argsort``; the value keeps its top ``64 - index_bits`` bits, which is
    enough for the cache locality that makes ``searchsorted`` fast.
    """
    shift = np.uint64(index_bits)
    key = (values >> shift) << shift
    key |= np.arange(values.shape[0], dtype=np.uint64)
    key.sort()
    return (key & ((_U64_ONE << shift) - _U64_ONE)).astype(np.intp)


def _lookup_v4_table(table: _V4Table, addrs: U32) -> I64:
    n = addrs.shape[0]
    if n < _SORT_THRESHOLD:
        return table.owners[np.searchsorted(table.starts, addrs, side="right") - 1]
    if n > _MAX_BATCH:
        parts = [
            _lookup_v4_table(table, addrs[i : i + _MAX_BATCH]) for i in range(0, n, _MAX_BATCH)
        ]
        return np.concatenate(parts)
    # Exact sort: address in the high half, position in the low half.
    key = addrs.astype(np.uint64) << _U64_32
    key |= np.arange(n, dtype=np.uint64)
    key.sort()
    ranges = np.searchsorted(table.starts, (key >> _U64_32).astype(np.uint32), side="right")
    out = np.empty(n, dtype=np.int64)
    out[(key & _LOW32).astype(np.intp)] = table.owners[ranges - 1]
    return out


def _lookup_v6_table(table: _V6Table, hi: U64, lo: U64) -> I64:
    n = hi.shape[0]
    if n > _MAX_BATCH:
        parts = [
            _lookup_v6_table(table, hi[i : i + _MAX_BATCH], lo[i : i + _MAX_BATCH])
            for i in range(0, n, _MAX_BATCH)
        ]
        return np.concatenate(parts)
    order: IntP | None = None
    if n >= _SORT_THRESHOLD:
        order = _sort_key_order(hi, max(1, (n - 1).bit_length()))
        hi, lo = hi[order], lo[order]
    ranges = _locate_v6(table, hi, lo)
    if order is None:
        return table.owners[ranges]
    out = np.empty(n, dtype=np.int64)
    out[order] = table.owners[ranges]
    return out


def _locate_v6(table: _V6Table, hi: U64, lo: U64) -> IntP:
    """Index of the last range start <= each (hi, lo) query."""
    pos = np.searchsorted(table.hi, hi, side="right") - 1
    # Only queries whose hi equals a start's hi, below that start's lo, need the second level.
    refine = np.flatnonzero((table.hi[pos] == hi) & (table.lo[pos] > lo))
    if refine.size == 0:
        return pos
    query = lo[refine]
    low = table.group_start[pos[refine]]
    high = pos[refine]  # invariant: table.lo[high] > query, so the answer is in [low, high]
    for _ in range(table.lo_steps):
        mid = (low + high) >> 1
        above = table.lo[mid] > query
        high = np.where(above, mid, high)
        low = np.where(above, low, mid + 1)
    # low is the first start above the query; the one before it (maybe in a lower hi) owns it.
    pos[refine] = low - 1
    return pos


# --------------------------------------------------------------------------- the index


_Segments = int | IntP


class PrefixIndex:
    """Point-in-time longest-prefix match over IPv4 and IPv6 assignments.

    Build with :meth:`build`.  Lookups are safe from several threads (the
    segment cache is locked; tables are immutable).  Bulk lookups return int64
    arrays with :data:`NO_OWNER` (-1) where nobody held the address.
    """

    def __init__(
        self, v4: _Family, v6: _Family, boundaries: I64, count: int, cache_size: int
    ) -> None:
        self._families = {4: v4, 6: v6}
        self._boundaries = boundaries
        self._count = count
        self._cache_size = cache_size
        self._cache: OrderedDict[tuple[int, int], _Table] = OrderedDict()
        self._lock = threading.Lock()
        self._now_segment = int(boundaries.shape[0])
        self._now = {family: self._build_table(family, self._now_segment) for family in (4, 6)}

    @classmethod
    def build(
        cls, assignments: Iterable[Assignment], *, cache_size: int = _DEFAULT_CACHE_SIZE
    ) -> PrefixIndex:
        """Index ``assignments``; ``cache_size`` bounds the cached historical segment tables.

        Raises :class:`InvalidPrefix` for a malformed prefix or one with host
        bits set, ValueError for a negative or non-integer owner or a naive
        datetime, TypeError for a validity bound that is not a datetime.  The
        "now" tables are built here; historical ones on first use.
        """
        if cache_size < 0:
            raise ValueError("cache_size must be >= 0")
        items = assignments if isinstance(assignments, list | tuple) else list(assignments)
        cols = _columns(items)
        boundaries = _boundaries(cols)
        families = {v6: _make_family(v6, cols, boundaries) for v6 in (False, True)}
        return cls(families[False], families[True], boundaries, len(items), cache_size)

    def __len__(self) -> int:
        return self._count

    # ----------------------------------------------------------------- public lookups

    def lookup(
        self,
        address: str | ipaddress.IPv4Address | ipaddress.IPv6Address,
        at: datetime | None = None,
    ) -> int | None:
        """Owner of one address at ``at`` (None = now), or None if nobody held it.

        Raises ValueError for a string that is not an IP address (the bulk
        variants map those to -1 instead).
        """
        if at is not None and not isinstance(at, datetime):
            raise TypeError("lookup() takes a single datetime; use lookup_many() for arrays")
        if isinstance(address, ipaddress.IPv4Address):
            found = self.lookup_v4(np.array([int(address)], dtype=np.uint32), at)
        elif isinstance(address, ipaddress.IPv6Address):
            value = int(address)
            found = self.lookup_v6(np.array([[value >> 64, value & _MASK64]], np.uint64), at)
        else:
            is_v6, packed = _pack_address(address)
            if is_v6:
                found = self.lookup_v6(np.frombuffer(packed, ">u8").reshape(1, 2), at)
            else:
                found = self.lookup_v4(np.frombuffer(packed, ">u4"), at)
        owner = int(found[0])
        return None if owner == NO_OWNER else owner

    def lookup_many(self, addresses: Sequence[str], at: datetime | np.ndarray | None = None) -> I64:
        """Owners of address strings (IPv4 and IPv6 mixed); -1 for nobody or an unparseable string.

        ``at`` is None (now), one aware datetime for the batch, or a
        ``datetime64`` array with one UTC instant per address (NaT = now).
        """
        parsed = parse_addresses(addresses)
        times = self._times(at, parsed.family.shape[0])
        out = np.full(parsed.family.shape[0], NO_OWNER, dtype=np.int64)
        for family in (4, 6):
            rows = np.flatnonzero(parsed.family == family)
            if rows.size == 0:
                continue
            when = times if isinstance(times, int) else times[rows]
            if family == 4:
                out[rows] = self._run(4, when, parsed.v4[rows], None)
            else:
                out[rows] = self._run(6, when, parsed.v6[rows, 0], parsed.v6[rows, 1])
        return out

    def lookup_v4(self, addrs: npt.ArrayLike, at: datetime | np.ndarray | None = None) -> I64:
        """Owners of IPv4 addresses given as a 1-D ``uint32`` array; -1 for nobody.

        Other integer dtypes are accepted if every value fits in 32 bits.
        """
        values = _as_v4_array(addrs)
        return self._run(4, self._times(at, values.shape[0]), values, None)

    def lookup_v6(self, addrs: npt.ArrayLike, at: datetime | np.ndarray | None = None) -> I64:
        """Owners of IPv6 addresses given as an ``(N, 2)`` ``uint64`` array ``[hi, lo]``.

        ``hi`` is the most significant 64 bits: ``address == (hi << 64) | lo``;
        :func:`v6_to_array` produces this layout.  Returns -1 for nobody.
        """
        hi, lo = _as_v6_halves(addrs)
        return self._run(6, self._times(at, hi.shape[0]), hi, lo)

    # ----------------------------------------------------------------- segments

    def _times(self, at: datetime | np.ndarray | None, n: int) -> _Segments:
        """Map ``at`` to one segment number, or one per address."""
        if at is None:
            return self._now_segment
        if isinstance(at, np.ndarray):
            micros = _as_time_array(at, n)
            segments = np.searchsorted(self._boundaries, micros, side="right")
            segments[micros == _T_MIN] = self._now_segment  # NaT: no time given, so "now"
            return segments
        at_us = _to_us(at, "at")
        return int(np.searchsorted(self._boundaries, at_us, side="right"))

    def _run(self, family: int, segments: _Segments, a: np.ndarray, b: np.ndarray | None) -> I64:
        """Look up ``a`` (and ``b``, the IPv6 low halves) at the given segment(s).

        Now, and any segment with enough queries to repay building its table,
        go through a disjoint-range table; the rest walk the history.
        """
        fam = self._families[family]
        n = a.shape[0]
        if not isinstance(segments, int) and n and bool((segments == segments[0]).all()):
            segments = int(segments[0])
        if not isinstance(segments, int):
            return self._run_mixed(family, segments, a, b)
        if segments == self._now_segment or _table_pays_off(fam, n):
            return _lookup_table(self._table(family, segments), a, b, None)
        pids = _lookup_table(fam.everyone, a, b, None)
        return fam.walk(pids, np.full(n, segments, dtype=np.intp))

    def _run_mixed(self, family: int, segments: IntP, a: np.ndarray, b: np.ndarray | None) -> I64:
        fam = self._families[family]
        out = np.empty(a.shape[0], dtype=np.int64)
        distinct, counts = np.unique(segments, return_counts=True)
        tabled = distinct[(distinct == self._now_segment) | _table_pays_off(fam, counts)]
        use_table = np.isin(segments, tabled)
        table_rows = np.flatnonzero(use_table)
        for segment, positions in _grouped(segments[table_rows]):
            rows = table_rows[positions]
            out[rows] = _lookup_table(self._table(family, segment), a, b, rows)
        walk_rows = np.flatnonzero(~use_table)
        if walk_rows.size:
            pids = _lookup_table(fam.everyone, a, b, walk_rows)
            out[walk_rows] = fam.walk(pids, segments[walk_rows])
        return out

    def _table(self, family: int, segment: int) -> _Table:
        if segment == self._now_segment:
            return self._now[family]
        key = (family, segment)
        with self._lock:
            table = self._cache.get(key)
            if table is not None:
                self._cache.move_to_end(key)
                return table
        # Built outside the lock: a rare duplicate build beats serialising all lookups.
        table = self._build_table(family, segment)
        with self._lock:
            self._cache[key] = table
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return table

    def _build_table(self, family: int, segment: int) -> _Table:
        # Any instant of the segment will do; its first one is a boundary (or -inf for segment 0).
        at_us = _T_MIN if segment == 0 else int(self._boundaries[segment - 1])
        return self._families[family].table(at_us)


def _boundaries(cols: _Columns) -> I64:
    """Sorted distinct finite validity instants: they split time into constant segments."""
    since = cols.valid_from[cols.valid_from != _T_MIN]
    until = cols.valid_until[cols.valid_until != _T_MAX]
    return np.unique(np.concatenate([since, until])).astype(np.int64)


def _lookup_table(table: _Table, a: np.ndarray, b: np.ndarray | None, rows: IntP | None) -> I64:
    """Values of ``table`` at the queries (all, or those at ``rows``)."""
    part_a = a if rows is None else a[rows]
    if isinstance(table, _V4Table):
        return _lookup_v4_table(table, part_a)
    assert b is not None, "IPv6 lookups need the low halves"
    return _lookup_v6_table(table, part_a, b if rows is None else b[rows])


@overload
def _table_pays_off(family: _Family, queries: int) -> bool: ...
@overload
def _table_pays_off(family: _Family, queries: IntP) -> npt.NDArray[np.bool_]: ...
def _table_pays_off(family: _Family, queries: int | IntP) -> bool | npt.NDArray[np.bool_]:
    """Whether that many queries at one time justify building a whole segment table.

    A table costs about a tenth of a microsecond per row and range to build; a
    history walk about a microsecond per query.  Works on ints and arrays.
    """
    return (queries >= _SORT_THRESHOLD) & (queries * 8 >= family.size)


def _grouped(segments: IntP) -> Iterator[tuple[int, IntP]]:
    """Each distinct segment with the positions holding it."""
    if segments.shape[0] == 0:
        return
    order = np.argsort(segments, kind="stable")
    ordered = segments[order]
    cuts = np.flatnonzero(_run_starts(ordered))
    for begin, end in zip(cuts, [*cuts[1:], segments.shape[0]], strict=True):
        yield int(ordered[begin]), order[begin:end]
