"""Benchmark PrefixIndex bulk lookups against pytricia (a C Patricia trie).

Usage: python bench/bench_locate.py [--prefixes N] [--lookups N] [--markdown FILE]

Both sides index the same randomly generated, realistically nested prefixes
(IPv4 /16../32, IPv6 /32../128) and answer the same random lookups, most of
which fall inside some prefix.  PrefixIndex is timed on its bulk numeric path
(``lookup_v4`` / ``lookup_v6``) and on its string path (``lookup_many``,
parsing included); pytricia is timed the way it is normally used: ``.get()``
on each address string in a Python loop.  Every answer is cross-checked.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# One core: keep any threaded numpy backend from helping itself to the other.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pytricia

try:
    from abusedesk.inventory.prefix_index import Assignment, PrefixIndex
except ImportError:  # running from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from abusedesk.inventory.prefix_index import Assignment, PrefixIndex

SEED = 20240601
REPEATS = 3
HIT_SHARE = 0.9  # the rest are uniformly random addresses, mostly misses
TARGETS = {"IPv4": 5_000_000, "IPv6": 2_000_000}
MIN_RATIO = 5.0
M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


@dataclass(frozen=True)
class Prefixes:
    """Prefixes as 128-bit (hi, lo) networks and lengths; IPv4 uses lo only."""

    hi: np.ndarray
    lo: np.ndarray
    length: np.ndarray


@dataclass(frozen=True)
class Result:
    family: str
    prefixes: int
    lookups: int
    hit_rate: float
    ours_build: float
    ours_rate: float
    ours_strings_rate: float
    tricia_build: float
    tricia_rate: float
    agree: bool

    @property
    def ratio(self) -> float:
        return self.ours_rate / self.tricia_rate


# --------------------------------------------------------------------------- data generation


def top_mask(length: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(hi, lo) masks with the top ``length`` bits of a ``width``-bit address set."""
    length = length.astype(np.int64)
    if width == 32:
        host = (32 - length).astype(np.uint64)
        lo = (np.uint64(0xFFFFFFFF) >> host) << host
        return np.zeros_like(lo), lo
    hi_bits = np.clip(length, 0, 64)
    lo_bits = np.clip(length - 64, 0, 64)
    return _top_bits(hi_bits), _top_bits(lo_bits)


def _top_bits(count: np.ndarray) -> np.ndarray:
    shift = np.clip(64 - count, 0, 63).astype(np.uint64)
    return np.where(count == 0, np.uint64(0), (M64 >> shift) << shift).astype(np.uint64)


def random_words(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)


def children(
    rng: np.random.Generator, parents: Prefixes, n: int, lengths: tuple[int, int], width: int
) -> Prefixes:
    """``n`` random prefixes, each inside a random parent (so nesting is real)."""
    pick = rng.integers(0, parents.length.size, n)
    p_hi, p_lo, p_len = parents.hi[pick], parents.lo[pick], parents.length[pick]
    length = rng.integers(lengths[0], lengths[1] + 1, n)
    length = np.maximum(length, p_len + 1)
    m_hi, m_lo = top_mask(length, width)
    r_hi = random_words(rng, n) if width == 128 else np.zeros(n, np.uint64)
    r_lo = random_words(rng, n)
    if width == 32:
        r_lo &= np.uint64(0xFFFFFFFF)
    return Prefixes((p_hi | r_hi) & m_hi, (p_lo | r_lo) & m_lo, length)


def unique_prefixes(parts: list[Prefixes], n: int, rng: np.random.Generator) -> Prefixes:
    hi = np.concatenate([p.hi for p in parts])
    lo = np.concatenate([p.lo for p in parts])
    length = np.concatenate([p.length for p in parts])
    table = np.stack([hi, lo, length.astype(np.uint64)], axis=1)
    table = np.unique(table, axis=0)
    table = table[rng.permutation(table.shape[0])[:n]]
    return Prefixes(table[:, 0].copy(), table[:, 1].copy(), table[:, 2].astype(np.int64))


def v4_prefixes(rng: np.random.Generator, n: int) -> Prefixes:
    n16 = max(16, n // 250)
    slash16 = rng.choice(65536, size=min(n16, 65536), replace=False).astype(np.uint64) << 16
    top = Prefixes(np.zeros_like(slash16), slash16, np.full(slash16.size, 16))
    mid = children(rng, top, int(n * 0.25), (17, 24), 32)
    leaf = children(rng, mid, int(n * 1.1), (25, 32), 32)
    return unique_prefixes([top, mid, leaf], n, rng)


def v6_prefixes(rng: np.random.Generator, n: int) -> Prefixes:
    n32 = max(16, n // 500)
    # Global unicast 2000::/3, one /32 per organisation.
    hi = (np.uint64(0x2000_0000) | rng.integers(0, 2**29, n32, dtype=np.uint64)) << np.uint64(32)
    top = Prefixes(hi, np.zeros_like(hi), np.full(n32, 32))
    sites = children(rng, top, int(n * 0.15), (33, 56), 128)
    nets = children(rng, sites, int(n * 0.45), (57, 64), 128)
    hosts = children(rng, nets, int(n * 0.5), (65, 128), 128)
    return unique_prefixes([top, sites, nets, hosts], n, rng)


def random_lookups(rng: np.random.Generator, pfx: Prefixes, n: int, width: int) -> Prefixes:
    """Addresses: HIT_SHARE inside random prefixes, the rest anywhere."""
    hits = int(n * HIT_SHARE)
    pick = rng.integers(0, pfx.length.size, hits)
    m_hi, m_lo = top_mask(pfx.length[pick], width)
    r_hi = random_words(rng, n) if width == 128 else np.zeros(n, np.uint64)
    r_lo = random_words(rng, n)
    if width == 32:
        r_lo &= np.uint64(0xFFFFFFFF)
    r_hi[:hits] = pfx.hi[pick] | (r_hi[:hits] & ~m_hi)
    r_lo[:hits] = pfx.lo[pick] | (r_lo[:hits] & ~m_lo)
    order = rng.permutation(n)
    return Prefixes(r_hi[order], r_lo[order], np.full(n, width))


def to_strings(addr: Prefixes, width: int) -> list[str]:
    if width == 32:
        raw = addr.lo.astype(">u4").tobytes()
        return [socket.inet_ntop(socket.AF_INET, raw[i : i + 4]) for i in range(0, len(raw), 4)]
    raw = np.stack([addr.hi, addr.lo], axis=1).astype(">u8").tobytes()
    return [socket.inet_ntop(socket.AF_INET6, raw[i : i + 16]) for i in range(0, len(raw), 16)]


# --------------------------------------------------------------------------- timing


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def median_time(fn: Callable[[], object], repeats: int = REPEATS) -> tuple[float, object]:
    runs = [timed(fn) for _ in range(repeats)]
    return statistics.median(t for t, _ in runs), runs[-1][1]


def tricia_lookup(trie: pytricia.PyTricia, addresses: list[str]) -> np.ndarray:
    get = trie.get
    return np.array([get(a, -1) for a in addresses], dtype=np.int64)


def run_family(name: str, width: int, n_prefixes: int, n_lookups: int) -> Result:
    rng = np.random.default_rng(SEED + width)
    make = v4_prefixes if width == 32 else v6_prefixes
    pfx = make(rng, n_prefixes)
    owners = rng.permutation(pfx.length.size)
    networks = to_strings(pfx, width)
    prefix_texts = [
        f"{net}/{length}" for net, length in zip(networks, pfx.length.tolist(), strict=True)
    ]
    addr = random_lookups(rng, pfx, n_lookups, width)
    addr_texts = to_strings(addr, width)
    print(f"{name}: {len(prefix_texts):,} prefixes, {n_lookups:,} lookups", file=sys.stderr)

    assignments = [
        Assignment(p, int(o)) for p, o in zip(prefix_texts, owners.tolist(), strict=True)
    ]
    ours_build, index = timed(lambda: PrefixIndex.build(assignments))
    assert isinstance(index, PrefixIndex)
    if width == 32:
        numeric = addr.lo.astype(np.uint32)
        ours_time, ours = median_time(lambda: index.lookup_v4(numeric))
    else:
        numeric = np.stack([addr.hi, addr.lo], axis=1)
        ours_time, ours = median_time(lambda: index.lookup_v6(numeric))
    strings_time, ours_strings = median_time(lambda: index.lookup_many(addr_texts))

    def build_trie() -> pytricia.PyTricia:
        trie = pytricia.PyTricia(width)
        for text, owner in zip(prefix_texts, owners.tolist(), strict=True):
            trie[text] = owner
        return trie

    tricia_build, trie = timed(build_trie)
    tricia_time, theirs = median_time(lambda: tricia_lookup(trie, addr_texts))

    assert isinstance(ours, np.ndarray)
    assert isinstance(theirs, np.ndarray)
    agree = bool(np.array_equal(ours, theirs) and np.array_equal(ours_strings, theirs))
    if not agree:
        bad = np.flatnonzero(ours != theirs)[:5]
        for i in bad:
            print(
                f"  mismatch {addr_texts[i]}: ours {ours[i]} pytricia {theirs[i]}", file=sys.stderr
            )
    return Result(
        family=name,
        prefixes=len(prefix_texts),
        lookups=n_lookups,
        hit_rate=float(np.mean(theirs >= 0)),
        ours_build=ours_build,
        ours_rate=n_lookups / ours_time,
        ours_strings_rate=n_lookups / strings_time,
        tricia_build=tricia_build,
        tricia_rate=n_lookups / tricia_time,
        agree=agree,
    )


# --------------------------------------------------------------------------- report


def markdown(results: list[Result]) -> str:
    head = (
        "| family | prefixes | lookups | hit rate | build ours (s) | build pytricia (s) "
        "| ours lookups/s (numeric) | ours lookups/s (strings, parsing incl.) "
        "| pytricia lookups/s | ratio ours/pytricia | target met | answers agree |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n"
    )
    rows = []
    for r in results:
        met = r.ours_rate >= TARGETS[r.family] and r.ratio >= MIN_RATIO
        rows.append(
            f"| {r.family} | {r.prefixes:,} | {r.lookups:,} | {r.hit_rate:.1%} "
            f"| {r.ours_build:.2f} | {r.tricia_build:.2f} | {r.ours_rate:,.0f} "
            f"| {r.ours_strings_rate:,.0f} | {r.tricia_rate:,.0f} | {r.ratio:.1f}x "
            f"| {'yes' if met else 'NO'} | {'yes' if r.agree else 'NO'} |"
        )
    note = (
        f"\nTargets: >= {TARGETS['IPv4']:,} IPv4 and >= {TARGETS['IPv6']:,} IPv6 lookups/s "
        f"on the numeric path, and >= {MIN_RATIO:.0f}x pytricia. Lookup times are the median "
        f"of {REPEATS} runs, one core, numpy {np.__version__}.\n"
    )
    return head + "\n".join(rows) + "\n" + note


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefixes", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=1_000_000)
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    results = [
        run_family("IPv4", 32, args.prefixes, args.lookups),
        run_family("IPv6", 128, args.prefixes, args.lookups),
    ]
    table = markdown(results)
    print(table)
    if args.markdown:
        args.markdown.write_text(table)
    return 0 if all(r.agree for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
