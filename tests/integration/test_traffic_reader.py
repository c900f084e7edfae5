"""The collector's batched socket reads (recvmmsg): every datagram whole, with its sender."""

from __future__ import annotations

import socket
import time

import pytest

from abusedesk.traffic.collector import _drain, _MultiReader

pytestmark = pytest.mark.skipif(not _MultiReader.available(), reason="no recvmmsg(2) here")


def _bound(family: int, host: str) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)  # the whole burst
    sock.bind((host, 0))
    sock.setblocking(False)
    return sock


def _wait_readable(sock: socket.socket) -> None:
    import select

    select.select([sock], [], [], 5)
    time.sleep(0.05)  # let the rest of the burst land


@pytest.mark.parametrize(
    ("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]
)
def test_a_batch_arrives_whole_in_order_with_its_senders(family: int, host: str) -> None:
    receiver = _bound(family, host)
    senders = [_bound(family, host) for _ in range(2)]
    payloads = [bytes([i % 251]) * (1 + i * 37) for i in range(150)] + [b"x" * 60_000]
    try:
        for i, payload in enumerate(payloads):
            senders[i % 2].sendto(payload, receiver.getsockname())
        _wait_readable(receiver)
        reader = _MultiReader(receiver, count=16)
        got: list[bytes] = []
        addresses: list[str] = []
        reader.read(got, addresses, limit=100)
        assert got == payloads[:100]  # the limit holds, across several recvmmsg calls
        reader.read(got, addresses, limit=1000)
        assert got == payloads
        assert addresses == [host] * len(payloads)
        reader.read(got, addresses, limit=1000)  # nothing waits: returns at once
        assert len(got) == len(payloads)
    finally:
        receiver.close()
        for sock in senders:
            sock.close()


def test_the_portable_path_reads_the_same() -> None:
    receiver = _bound(socket.AF_INET, "127.0.0.1")
    sender = _bound(socket.AF_INET, "127.0.0.1")
    try:
        for i in range(5):
            sender.sendto(bytes([i]) * 10, receiver.getsockname())
        _wait_readable(receiver)
        got: list[bytes] = []
        addresses: list[str] = []
        _drain(receiver, got, addresses, 10)
        assert got == [bytes([i]) * 10 for i in range(5)]
        assert addresses == ["127.0.0.1"] * 5
    finally:
        receiver.close()
        sender.close()
