"""Datagrams in batches over loopback (abusedesk.udp_batch): received whole with their
senders, answered to each sender in one sendmmsg call, oversized ones flagged."""

from __future__ import annotations

import socket

import pytest

from abusedesk import udp_batch

pytestmark = pytest.mark.skipif(not udp_batch.available(), reason="no recvmmsg/sendmmsg here")


@pytest.fixture
def server():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


def _clients(n: int) -> list[socket.socket]:
    out = []
    for _ in range(n):
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.bind(("127.0.0.1", 0))
        c.settimeout(2)
        out.append(c)
    return out


def test_a_batch_is_received_and_each_sender_gets_its_own_answer(server) -> None:
    clients = _clients(3)
    try:
        sent = []
        for n in range(12):
            client = clients[n % 3]
            payload = f"query {n}".encode() * (n + 1)
            client.sendto(payload, server.getsockname())
            sent.append((client.getsockname(), payload))
        batch = udp_batch.DatagramBatch(count=8, size=512)
        got = batch.receive(server.fileno())
        assert got == 8  # the buffers' count, the rest waits for the next call
        payloads = batch.payloads(got)
        assert payloads == [p for _, p in sent[:8]]
        senders = [batch.sender(i) for i in range(got)]
        assert [(udp_batch.address_text(s), int.from_bytes(s[2:4], "big")) for s in senders] == [
            a for a, _ in sent[:8]
        ]
        # Answer all but the third, each with its query reversed.
        answers = [(i, p[::-1]) for i, p in enumerate(payloads) if i != 2 and p is not None]
        assert batch.reply(server.fileno(), answers) == 0
        for i, (address, payload) in enumerate(sent[:8]):
            if i == 2:
                continue
            client = clients[i % 3]
            data, source = client.recvfrom(4096)
            assert source == server.getsockname()
            assert data == payload[::-1], (i, address)
        # The next call gets the four that waited.
        assert batch.receive(server.fileno()) == 4
        assert batch.payloads(4) == [p for _, p in sent[8:]]
        assert batch.receive(server.fileno()) == 0  # nothing more: no wait, no error
    finally:
        for c in clients:
            c.close()


def test_a_datagram_longer_than_the_buffer_is_flagged_not_cut(server) -> None:
    (client,) = _clients(1)
    try:
        client.sendto(b"x" * 600, server.getsockname())
        client.sendto(b"short", server.getsockname())
        batch = udp_batch.DatagramBatch(count=4, size=512)
        got = batch.receive(server.fileno())
        assert batch.payloads(got) == [None, b"short"]
    finally:
        client.close()
