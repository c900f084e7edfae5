"""Datagrams in batches: recvmmsg(2) and sendmmsg(2) through ctypes (Linux).

Python's socket module reads and writes one datagram a call. A UDP server answering tens of
thousands of datagrams a second then spends a good part of its time entering and leaving the
kernel; one call per batch of up to ``count`` datagrams amortises that, and ctypes calls give
the GIL up like socket calls do. :class:`DatagramBatch` holds the buffers (allocated once): the
kernel's per-message lengths are read, and the next call's fields reset, through numpy views of
the message headers rather than one ctypes attribute at a time.

:func:`available` says whether this platform has both calls; callers keep a plain
``recvfrom``/``sendto`` path for the others.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import socket
import sys
from typing import Any

import numpy as np


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.POINTER(_IoVec)),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("hdr", _MsgHdr), ("len", ctypes.c_uint)]


SOCKADDR = 128  # sizeof(struct sockaddr_storage)
MSG_DONTWAIT = 0x40
MSG_TRUNC = 0x20


def _libc_calls() -> tuple[Any, Any]:
    if not sys.platform.startswith("linux"):
        return None, None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        receive, send = libc.recvmmsg, libc.sendmmsg
    except (OSError, AttributeError):
        return None, None
    receive.argtypes = [
        ctypes.c_int,
        ctypes.POINTER(_MMsgHdr),
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_void_p,
    ]
    receive.restype = ctypes.c_int
    send.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    send.restype = ctypes.c_int
    return receive, send


_RECVMMSG, _SENDMMSG = _libc_calls()


def available() -> bool:
    return _RECVMMSG is not None and _SENDMMSG is not None


def _bytes(array: ctypes.Array[Any]) -> memoryview:
    # The same memory as plain bytes: numpy's stubs for Python 3.11 take no ctypes array.
    return memoryview(array).cast("B")


def _u32_fields(messages: ctypes.Array[_MMsgHdr], count: int) -> np.ndarray:
    return np.frombuffer(_bytes(messages), dtype=np.uint32).reshape(count, -1)


class DatagramBatch:
    """Buffers for up to ``count`` datagrams of at most ``size`` bytes each, received with one
    :meth:`receive` and answered with one :meth:`reply`."""

    def __init__(self, count: int = 64, size: int = 65535) -> None:
        if not available():
            raise OSError("recvmmsg/sendmmsg are not available here")
        self.count, self.size = count, size
        self.buffer = ctypes.create_string_buffer(count * size)
        self.names = ctypes.create_string_buffer(count * SOCKADDR)
        self.iovecs = (_IoVec * count)()
        self.messages = (_MMsgHdr * count)()
        base, names = ctypes.addressof(self.buffer), ctypes.addressof(self.names)
        for i in range(count):
            self.iovecs[i].base, self.iovecs[i].len = base + i * size, size
            hdr = self.messages[i].hdr
            hdr.name, hdr.namelen = names + i * SOCKADDR, SOCKADDR
            hdr.iov, hdr.iovlen = ctypes.pointer(self.iovecs[i]), 1
        fields = _u32_fields(self.messages, count)
        self.lengths = fields[:, _MMsgHdr.len.offset // 4]
        self.name_lengths = fields[:, _MsgHdr.namelen.offset // 4]
        self.flags = fields[:, _MsgHdr.flags.offset // 4]
        self.view = memoryview(self.buffer).cast("B")
        self.name_view = memoryview(self.names).cast("B")
        # Replies: headers of their own, naming the address each query came from; their one
        # iovec each points into the joined replies of the call.
        self.reply_iovecs = (_IoVec * count)()
        self.replies = (_MMsgHdr * count)()
        for i in range(count):
            self.replies[i].hdr.iov, self.replies[i].hdr.iovlen = (
                ctypes.pointer(self.reply_iovecs[i]),
                1,
            )
        reply_words = np.frombuffer(_bytes(self.replies), dtype=np.uint64).reshape(count, -1)
        self.reply_names = reply_words[:, 0]
        self.reply_name_lengths = _u32_fields(self.replies, count)[:, _MsgHdr.namelen.offset // 4]
        self.reply_io = np.frombuffer(_bytes(self.reply_iovecs), dtype=np.uint64).reshape(count, 2)
        self._names_at = names

    def receive(self, fd: int, limit: int | None = None) -> int:
        """Read up to ``limit`` (default ``count``) datagrams without waiting; how many came.
        Raises OSError for errors other than "nothing to read"."""
        want = self.count if limit is None else min(limit, self.count)
        self.name_lengths[:want] = SOCKADDR
        self.flags[:want] = 0
        got = _RECVMMSG(fd, self.messages, want, MSG_DONTWAIT, None)
        if got < 0:
            code = ctypes.get_errno()
            if code in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                return 0
            raise OSError(code, os.strerror(code))
        return got

    def payloads(self, got: int) -> list[bytes | None]:
        """The datagrams of the last :meth:`receive`; None for one longer than ``size``."""
        lengths = self.lengths[:got].tolist()
        view, size = self.view, self.size
        out: list[bytes | None] = [
            view[start : start + length].tobytes()
            for start, length in zip(range(0, got * size, size), lengths, strict=True)
        ]
        truncated = self.flags[:got] & MSG_TRUNC
        if truncated.any():
            for i in np.flatnonzero(truncated).tolist():
                out[i] = None
        return out

    def sender(self, i: int) -> bytes:
        """The raw socket address datagram ``i`` came from (a struct sockaddr)."""
        start = i * SOCKADDR
        return self.name_view[start : start + int(self.name_lengths[i])].tobytes()

    def reply(self, fd: int, answers: list[tuple[int, bytes]]) -> int:
        """Send each (datagram index, payload) back to the address that datagram came from,
        in one call where the kernel takes them all; returns how many it did not take (a full
        send buffer: dropped, as a busy server drops)."""
        if not answers:
            return 0
        indices, payloads = zip(*answers, strict=True)
        return self.reply_to(fd, list(indices), list(payloads))

    def reply_to(self, fd: int, indices: list[int], payloads: list[bytes]) -> int:
        """As :meth:`reply`, the datagram indices and the payloads in two lists."""
        n = len(payloads)
        if not n:
            return 0
        blob = b"".join(payloads)
        sizes = np.fromiter(map(len, payloads), dtype=np.uint64, count=n)
        index = np.array(indices, dtype=np.int64)
        at = ctypes.cast(ctypes.c_char_p(blob), ctypes.c_void_p).value or 0
        starts = np.zeros(n, np.uint64)
        np.cumsum(sizes[:-1], out=starts[1:])
        self.reply_io[:n, 0] = starts + np.uint64(at)
        self.reply_io[:n, 1] = sizes
        self.reply_names[:n] = np.uint64(self._names_at) + index.astype(np.uint64) * SOCKADDR
        self.reply_name_lengths[:n] = self.name_lengths[index]
        sent = 0
        while sent < n:
            first = ctypes.addressof(self.replies) + sent * ctypes.sizeof(_MMsgHdr)
            done = _SENDMMSG(fd, first, n - sent, 0)
            if done <= 0:
                code = ctypes.get_errno() if done < 0 else 0
                if code == errno.EINTR:
                    continue
                break
            sent += done
        del blob  # kept alive until here: the kernel read the replies from it
        return n - sent


def address_text(name: bytes) -> str:
    """The address of a raw struct sockaddr, as text ("?" for a family it is not)."""
    family = int.from_bytes(name[:2], sys.byteorder)
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, name[4:8])
    if family == socket.AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, name[8:24])
    return "?"
