"""SOA serial numbers: RFC 1982 arithmetic, and the next serial of a zone. Pure."""

from __future__ import annotations

from datetime import date

SERIAL_BITS = 32
_MOD = 1 << SERIAL_BITS
_HALF = 1 << (SERIAL_BITS - 1)


def serial_gt(a: int, b: int) -> bool:
    """`a` is after `b` in sequence space (RFC 1982 §3.2)."""
    return (a < b and b - a > _HALF) or (a > b and a - b < _HALF)


def next_serial(current: int, today: date) -> int:
    """The serial after `current`: `YYYYMMDD00` of today when that is after it (the form people
    read at a glance), otherwise `current + 1` in sequence space. Always after `current`, so
    secondaries and the data planes see every change, even past a hundred changes a day or a
    serial a former provider set far ahead."""
    dated = today.year * 1_000_000 + today.month * 10_000 + today.day * 100
    if serial_gt(dated, current):
        return dated
    return (current + 1) % _MOD
