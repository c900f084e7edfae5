"""Keep freed memory in the process for the next batch, rather than handing it back at once.

The decoders, the windows and the prefix lookups make arrays of a few MiB per batch and free
them a moment later. glibc serves allocations above its mmap threshold (128 KiB, rising up to
32 MiB as such blocks are freed) with fresh mappings and trims the heap's top once 2 × that is
free: every batch then pays for its pages again, one fault per 4 KiB, which in a virtual
machine costs more than the arithmetic done on them (settling the windows ran about a fifth
faster with the pages kept). Raising both thresholds once, for the process that collects
flows, lets the heap reuse them. The cost is memory kept after a burst: at most what the
largest batch needed, never returned before the process ends.

Not glibc (musl, macOS): nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger("abusedesk.traffic")

# <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest (DEFAULT_MMAP_THRESHOLD_MAX, 64-bit)
TRIM_THRESHOLD = 512 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; True when they were set."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    if not done:
        log.debug("traffic: mallopt refused the thresholds; freed memory goes back as before")
    return done
