"""Packet captures of what a customer server does on the wire, built with scapy, for the real
exporters (softflowd, pmacctd) to replay into the collector.

Each builder returns a :class:`Capture`: Ethernet frames with their times, the server they are
about, and what they are. The remote side is always outside the test inventory (the
benchmarking range 198.18.0.0/15, TEST-NET-3), so a frame counts for exactly one of our
servers. Times start close to now and packets are a fraction of a millisecond apart, so a
capture spans about a second of traffic; the exporters keep those times in the flows (the
windows bucket by arrival time, so they matter only to the exporters' own flow timeouts).
"""

from __future__ import annotations

import ipaddress
import itertools
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw
from scapy.utils import wrpcap

SERVER_MAC, ROUTER_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
GAP = 0.0002  # seconds between packets
REMOTE_V4 = ipaddress.ip_network("198.18.0.0/15")  # RFC 2544: never a customer's
REMOTE_V6 = ipaddress.ip_network("2001:db8:ffff::/48")
CLIENTS_V4 = ipaddress.ip_network("203.0.113.0/24")
# Amplification ports a reflection trigger sends to: DNS, NTP, CLDAP (see traffic/windows.py).
REFLECTION_PORTS = (53, 123, 389)


@dataclass(frozen=True)
class Capture:
    """Frames to replay, in time order."""

    name: str
    server: str  # our address the capture is about
    packets: list[Packet]

    def write(self, path: Path) -> Path:
        """A classic pcap (Ethernet link type) of the frames, in time order."""
        wrpcap(str(path), sorted(self.packets, key=lambda p: float(p.time)))
        return path


class _Clock:
    """Packet times: ``start`` (default: now) and ``GAP`` apart."""

    def __init__(self, start: float | None = None) -> None:
        self.t = time.time() if start is None else start

    def __call__(self) -> float:
        self.t += GAP
        return self.t


def remote_hosts(count: int, offset: int = 0, v6: bool = False) -> list[str]:
    """``count`` distinct remote addresses, starting ``offset`` hosts into the remote range."""
    network = REMOTE_V6 if v6 else REMOTE_V4
    first = int(network.network_address) + 1 + offset
    return [str(ipaddress.ip_address(first + n)) for n in range(count)]


def _frame(src: str, dst: str, outbound: bool, layer: Packet, at: float) -> Packet:
    ip = IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst, ttl=64)
    ether = Ether(
        src=SERVER_MAC if outbound else ROUTER_MAC, dst=ROUTER_MAC if outbound else SERVER_MAC
    )
    # add_payload, not "/": the operator copies both sides, which doubles the build time
    ip.add_payload(layer)
    ether.add_payload(ip)
    ether.time = at
    return ether


# --------------------------------------------------------------------------- attacks


def syn_flood(
    server: str, victim: str, packets: int = 4000, port: int = 80, start: float | None = None
) -> Capture:
    """``server`` sends SYN-only packets from random source ports at one victim; no answer."""
    rng, clock = random.Random(1), _Clock(start)
    frames = [
        _frame(
            server,
            victim,
            True,
            TCP(sport=rng.randrange(1024, 65536), dport=port, flags="S"),
            clock(),
        )
        for _ in range(packets)
    ]
    return Capture("syn_flood", server, frames)


def reflection_trigger(
    server: str,
    reflectors: int = 150,
    per_reflector: int = 3,
    ports: Sequence[int] = REFLECTION_PORTS,
    start: float | None = None,
) -> Capture:
    """``server`` sends small UDP queries to amplification ports at many reflectors (the
    source a real trigger would spoof is left as the server's: that is what is attributable)."""
    rng, clock = random.Random(2), _Clock(start)
    frames = []
    for n, reflector in enumerate(remote_hosts(reflectors, offset=10_000, v6=":" in server)):
        port = ports[n % len(ports)]
        for _ in range(per_reflector):
            query = UDP(sport=rng.randrange(1024, 65536), dport=port)
            query.add_payload(Raw(b"\x00" * 30))
            frames.append(_frame(server, reflector, True, query, clock()))
    return Capture("reflection_trigger", server, frames)


def horizontal_scan(
    server: str, targets: int = 600, port: int = 22, start: float | None = None
) -> Capture:
    """``server`` sends one SYN to ``port`` of each of many addresses; few of them answer
    with a RST, as closed hosts do."""
    rng, clock = random.Random(3), _Clock(start)
    frames = []
    for n, target in enumerate(remote_hosts(targets, offset=20_000, v6=":" in server)):
        sport = rng.randrange(1024, 65536)
        frames.append(
            _frame(server, target, True, TCP(sport=sport, dport=port, flags="S"), clock())
        )
        if n % 10 == 0:
            rst = TCP(sport=port, dport=sport, flags="RA")
            frames.append(_frame(target, server, False, rst, clock()))
    return Capture("horizontal_scan", server, frames)


def vertical_scan(
    server: str, target: str, ports: int = 300, start: float | None = None
) -> Capture:
    """``server`` sends one SYN to each of ports 1..``ports`` of one address; closed ports
    answer with a RST."""
    clock = _Clock(start)
    frames = []
    for port in range(1, ports + 1):
        sport = 40_000 + port
        frames.append(
            _frame(server, target, True, TCP(sport=sport, dport=port, flags="S"), clock())
        )
        frames.append(
            _frame(target, server, False, TCP(sport=port, dport=sport, flags="RA"), clock())
        )
    return Capture("vertical_scan", server, frames)


def _tcp_session(
    client: str,
    server: str,
    sport: int,
    dport: int,
    request: bytes,
    response: bytes,
    clock: _Clock,
    client_is_ours: bool,
    segment: int = 1400,
) -> list[Packet]:
    """A whole TCP connection: handshake, request, response in segments, FIN both ways."""
    c_seq, s_seq = 1000, 5000
    ours = client_is_ours

    def c(flags: str, data: bytes = b"") -> Packet:
        layer = TCP(sport=sport, dport=dport, flags=flags, seq=c_seq, ack=s_seq)
        if data:
            layer.add_payload(Raw(data))
        return _frame(client, server, ours, layer, clock())

    def s(flags: str, data: bytes = b"") -> Packet:
        layer = TCP(sport=dport, dport=sport, flags=flags, seq=s_seq, ack=c_seq)
        if data:
            layer.add_payload(Raw(data))
        return _frame(server, client, not ours, layer, clock())

    frames = [c("S"), s("SA")]
    c_seq += 1
    s_seq += 1
    frames += [c("A"), c("PA", request)]
    c_seq += len(request)
    for offset in range(0, len(response), segment):
        chunk = response[offset : offset + segment]
        frames.append(s("PA", chunk))
        s_seq += len(chunk)
    frames.append(s("FA"))
    s_seq += 1
    frames.append(c("FA"))
    c_seq += 1
    frames.append(s("A"))
    return frames


def spam_burst(server: str, destinations: int = 300, start: float | None = None) -> Capture:
    """``server`` delivers one message by SMTP to each of many mail exchangers: whole TCP
    sessions to port 25, the exchangers answering."""
    rng, clock = random.Random(4), _Clock(start)
    message = b"EHLO srv\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\nDATA\r\n"
    message += b"Subject: cheap\r\n\r\n" + b"buy now " * 60 + b"\r\n.\r\nQUIT\r\n"
    frames = []
    for mx in remote_hosts(destinations, offset=30_000, v6=":" in server):
        sport = rng.randrange(1024, 65536)
        frames += _tcp_session(
            server, mx, sport, 25, message, b"250 OK\r\n" * 4, clock, client_is_ours=True
        )
    return Capture("spam_burst", server, frames)


def web_traffic(
    server: str, clients: int = 300, response_bytes: int = 2800, start: float | None = None
) -> Capture:
    """Many clients each fetch a page from ``server``'s port 443: a whole TCP session, the
    request in, the response out in segments, each client on its own ephemeral port. The
    server answers many addresses, as a scanner or a spammer would contact many, but
    everything it sends acknowledges a connection the client opened."""
    rng, clock = random.Random(5), _Clock(start)
    v6 = ":" in server
    pool = (
        remote_hosts(clients, offset=40_000, v6=True)
        if v6
        else [str(a) for a in itertools.islice(CLIENTS_V4.hosts(), 200)]
        + remote_hosts(max(clients - 200, 0), offset=40_000)
    )
    page = bytes(rng.randrange(256) for _ in range(response_bytes))
    frames = []
    for client in pool[:clients]:
        sport = rng.randrange(1024, 65536)
        frames += _tcp_session(
            client, server, sport, 443, b"\x16\x03\x01" + b"\x00" * 200, page, clock, False
        )
    return Capture("web_traffic", server, frames)
