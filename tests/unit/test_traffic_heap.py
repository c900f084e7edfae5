"""glibc keeps the traffic role's freed batch memory (abusedesk.traffic.heap)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_the_thresholds_are_set_and_large_blocks_come_from_the_heap() -> None:
    # In a process of its own: the thresholds are process-wide and for good.
    program = """
import ctypes, numpy as np
from abusedesk.traffic.heap import keep_freed_memory
assert keep_freed_memory()
libc = ctypes.CDLL("libc.so.6")
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                 "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = Info
before = libc.mallinfo2().hblks
block = np.ones(3 * 1024 * 1024)  # 24 MiB: under the 32 MiB threshold, far above the default
mapped = libc.mallinfo2().hblks - before
del block
print(mapped, libc.mallinfo2().fordblks)
"""
    out = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    ).stdout.split()
    mapped, free_in_heap = int(out[0]), int(out[1])
    assert mapped == 0  # not a mapping of its own (glibc's default): from the heap
    assert free_in_heap >= 24 * 1024 * 1024  # and kept there once freed, not trimmed away
