"""Synthetic flow arrays, for tests and benchmarks of the windows and detectors. Pure."""

from __future__ import annotations

import ipaddress

import numpy as np
import numpy.typing as npt

from abusedesk.traffic.decode.records import FLOW_DTYPE, V4_MAPPED, FlowArray


def address_halves(address: str) -> tuple[int, int, int]:
    """(hi, lo, ip_version) of an address as the decoders store it."""
    parsed = ipaddress.ip_address(address)
    if parsed.version == 4:
        return 0, V4_MAPPED | int(parsed), 4
    value = int(parsed)
    return value >> 64, value & 0xFFFF_FFFF_FFFF_FFFF, 6


def flows(
    n: int,
    src: str | list[str],
    dst: str | list[str],
    *,
    protocol: int | npt.ArrayLike = 6,
    src_port: int | npt.ArrayLike = 40000,
    dst_port: int | npt.ArrayLike = 80,
    packets: int | npt.ArrayLike = 10,
    bytes: int | npt.ArrayLike = 1000,
    tcp_flags: int | npt.ArrayLike = 0x1B,
    sampling_rate: int = 1,
    first_ms: int = 0,
) -> FlowArray:
    """``n`` flows; ``src``/``dst`` one address for all or one per flow; others broadcast."""
    out = np.zeros(n, FLOW_DTYPE)
    for side, value in (("src", src), ("dst", dst)):
        texts = [value] * n if isinstance(value, str) else list(value)
        if len(texts) != n:
            raise ValueError(f"{side}: {len(texts)} addresses for {n} flows")
        cache: dict[str, tuple[int, int, int]] = {}
        halves = [cache.setdefault(t, address_halves(t)) for t in texts]
        out[f"{side}_hi"] = [h[0] for h in halves]
        out[f"{side}_lo"] = [h[1] for h in halves]
        out["ip_version"] = [h[2] for h in halves]
    out["protocol"] = protocol
    out["src_port"] = src_port
    out["dst_port"] = dst_port
    out["packets"] = packets
    out["bytes"] = bytes
    out["tcp_flags"] = np.where(out["protocol"] == 6, tcp_flags, 0)
    out["sampling_rate"] = sampling_rate
    out["first_ms"] = first_ms
    out["last_ms"] = first_ms
    return out


def addresses(prefix: str, n: int, start: int = 1) -> list[str]:
    """``n`` consecutive addresses of ``prefix`` from host ``start``."""
    network = ipaddress.ip_network(prefix)
    base = int(network.network_address) + start
    return [str(ipaddress.ip_address(base + i)) for i in range(n)]
