"""The built-in data plane on loopback: dnspython queries over UDP and TCP, truncation and the
TCP retry, zone transfers (allowed, refused, TSIG), NOTIFY to a secondary that is a plain UDP
socket, zones swapped by publish(), counters, and a server that survives garbage."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator

import dns.flags
import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.xfr
import dns.zone
import pytest

from abusedesk.dns import server
from abusedesk.dns.server import BuiltinPlane
from abusedesk.dns.settings import DnsSettings, Secondary, TsigKey

SECRET = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA=="
KEY = TsigKey(name="transfer.provider.example.", algorithm="hmac-sha256", secret=SECRET)
KEYRING = dns.tsigkeyring.from_text({KEY.name: ("hmac-sha256", SECRET)})


def zone_text(serial: int = 1, web: str = "192.0.2.80", extra: int = 0) -> str:
    lines = [
        "$TTL 300",
        f"@ SOA ns1.provider.example. hostmaster.provider.example. {serial} 3600 600 864000 60",
        "@ NS ns1.provider.example.",
        "@ NS ns2.provider.example.",
        f"web A {web}",
        "www CNAME web",
        "big TXT " + " ".join(f'"{c * 200}"' for c in "abc"),
        "big TXT " + " ".join(f'"{c * 200}"' for c in "def"),
    ]
    lines += [f"host{i} A 198.51.100.{i % 250}" for i in range(extra)]
    return "\n".join(lines) + "\n"


def make_zone(serial: int = 1, web: str = "192.0.2.80", extra: int = 0) -> dns.zone.Zone:
    return dns.zone.from_text(zone_text(serial, web, extra), "example.com.")


@pytest.fixture
def secondary() -> Iterator[socket.socket]:
    """A UDP socket standing for a secondary: it receives NOTIFY."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(10)
    yield sock
    sock.close()


@pytest.fixture
def plane(secondary: socket.socket) -> Iterator[BuiltinPlane]:
    port = secondary.getsockname()[1]
    settings = DnsSettings(host="127.0.0.1", port=0, secondaries=[f"127.0.0.1:{port}"], tsig=KEY)
    p = BuiltinPlane(settings)
    p.start()
    p.publish({"example.com.": make_zone()})
    yield p
    p.stop()


def signed(name: str, rdtype: str = "AXFR", keyring: dict = KEYRING) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype)
    q.use_tsig(keyring, keyname=KEY.name)
    return q


def tcp_exchange(q: dns.message.Message, port: int, source: str = "127.0.0.1") -> bytes:
    """One query over TCP, the response's bytes back (read without verifying anything)."""
    wire = q.to_wire()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        sock.sendall(struct.pack("!H", len(wire)) + wire)
        stream = sock.makefile("rb")
        (size,) = struct.unpack("!H", stream.read(2))
        return stream.read(size)


def query(name: str, rdtype: str = "A", **kw: object) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]
    q.flags &= ~dns.flags.RD
    return q


def test_udp_and_tcp_answer_the_same(plane: BuiltinPlane) -> None:
    assert plane.port > 0
    q = query("www.example.com")
    udp = dns.query.udp(q, "127.0.0.1", timeout=5, port=plane.port)
    tcp = dns.query.tcp(q, "127.0.0.1", timeout=5, port=plane.port)
    for r in (udp, tcp):
        assert r.flags & dns.flags.AA
        assert [rrset.rdtype for rrset in r.answer] == [dns.rdatatype.CNAME, dns.rdatatype.A]
    assert udp.answer == tcp.answer
    nx = dns.query.udp(query("nope.example.com"), "127.0.0.1", timeout=5, port=plane.port)
    assert nx.rcode() == dns.rcode.NXDOMAIN
    refused = dns.query.udp(query("example.org"), "127.0.0.1", timeout=5, port=plane.port)
    assert refused.rcode() == dns.rcode.REFUSED


def test_truncation_then_tcp_retry(plane: BuiltinPlane) -> None:
    q = query("big.example.com", "TXT")
    truncated = dns.query.udp(q, "127.0.0.1", timeout=5, port=plane.port)
    assert truncated.flags & dns.flags.TC
    r, used_tcp = dns.query.udp_with_fallback(q, "127.0.0.1", timeout=5, port=plane.port)
    assert used_tcp
    assert not r.flags & dns.flags.TC
    assert len(r.answer[0]) == 2


def test_several_queries_on_one_tcp_connection(plane: BuiltinPlane) -> None:
    queries = [query(n) for n in ("web.example.com", "www.example.com", "nope.example.com")]
    payload = b"".join(struct.pack("!H", len(w)) + w for w in (q.to_wire() for q in queries))
    with socket.create_connection(("127.0.0.1", plane.port), timeout=5) as sock:
        sock.sendall(payload[:7])  # a message split across segments
        time.sleep(0.05)
        sock.sendall(payload[7:])
        stream = sock.makefile("rb")
        for q in queries:
            (size,) = struct.unpack("!H", stream.read(2))
            r = dns.message.from_wire(stream.read(size))
            assert q.is_response(r)


def test_a_client_that_reads_slowly_gets_every_answer(plane: BuiltinPlane) -> None:
    wire = query("big.example.com", "TXT").to_wire()
    count = 3000  # about 4 MB of answers: the server stops reading until they are taken
    with socket.create_connection(("127.0.0.1", plane.port), timeout=10) as sock:
        writer = threading.Thread(
            target=sock.sendall, args=((struct.pack("!H", len(wire)) + wire) * count,)
        )
        writer.start()
        time.sleep(0.5)
        stream = sock.makefile("rb")
        for _ in range(count):
            (size,) = struct.unpack("!H", stream.read(2))
            assert len(stream.read(size)) == size
        writer.join()


def test_an_idle_tcp_connection_is_closed(
    plane: BuiltinPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "TCP_IDLE", 0.3)
    with socket.create_connection(("127.0.0.1", plane.port), timeout=5) as sock:
        assert sock.recv(10) == b""  # closed by the server, not by the 5 s timeout


def test_axfr_signed_by_a_secondary(plane: BuiltinPlane) -> None:
    plane.publish({"example.com.": make_zone(serial=5, extra=3000)})
    zone = dns.zone.Zone("example.com.")
    dns.query.inbound_xfr(
        "127.0.0.1", zone, port=plane.port, timeout=10, query=signed("example.com.")
    )
    assert zone == make_zone(serial=5, extra=3000)  # several messages, one TSIG stream


def test_axfr_refused_unsigned_or_badly_signed(plane: BuiltinPlane) -> None:
    with pytest.raises(dns.xfr.TransferError) as refused:
        dns.query.inbound_xfr("127.0.0.1", dns.zone.Zone("example.com."), port=plane.port)
    assert refused.value.rcode == dns.rcode.REFUSED
    wrong = dns.tsigkeyring.from_text({KEY.name: ("hmac-sha256", "d3Jvbmcgc2VjcmV0")})
    r = dns.message.from_wire(tcp_exchange(signed("example.com.", keyring=wrong), plane.port))
    assert r.rcode() == dns.rcode.NOTAUTH  # unsigned: the key did not verify


def test_axfr_refused_to_an_address_that_is_not_a_secondary(plane: BuiltinPlane) -> None:
    data = tcp_exchange(signed("example.com."), plane.port, source="127.0.0.2")
    assert dns.message.from_wire(data).rcode() == dns.rcode.REFUSED


def test_axfr_of_a_zone_not_served(plane: BuiltinPlane) -> None:
    q = signed("example.org.")
    r = dns.query.tcp(q, "127.0.0.1", timeout=5, port=plane.port)  # signed: verified
    assert r.rcode() == dns.rcode.NOTAUTH


def test_publish_swaps_zones_and_notifies_the_secondary(
    plane: BuiltinPlane, secondary: socket.socket
) -> None:
    first, peer = secondary.recvfrom(4096)  # the NOTIFY of the first publish
    assert dns.message.from_wire(first, keyring=KEYRING).opcode() == dns.opcode.NOTIFY
    reply = dns.message.make_response(dns.message.from_wire(first, keyring=KEYRING))
    secondary.sendto(reply.to_wire(), peer)

    plane.publish({"example.com.": make_zone(serial=2, web="192.0.2.81")})
    r = dns.query.udp(query("web.example.com"), "127.0.0.1", timeout=5, port=plane.port)
    assert [rd.address for rd in r.answer[0]] == ["192.0.2.81"]  # type: ignore[attr-defined]

    data, peer = secondary.recvfrom(4096)
    notify = dns.message.from_wire(data, keyring=KEYRING)  # signed with the key: verified
    assert notify.opcode() == dns.opcode.NOTIFY
    assert notify.flags & dns.flags.AA
    assert notify.question[0].name.to_text() == "example.com."
    assert notify.question[0].rdtype == dns.rdatatype.SOA
    assert notify.answer[0][0].serial == 2  # type: ignore[attr-defined]
    secondary.sendto(dns.message.make_response(notify).to_wire(), peer)
    key = ("example.com.", "127.0.0.1", secondary.getsockname()[1])
    deadline = time.monotonic() + 10
    while plane.notified.get(key) != 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert plane.notified[key] == 2

    plane.publish({"example.com.": make_zone(serial=2, web="192.0.2.81")})  # same serial
    secondary.settimeout(0.5)
    with pytest.raises(TimeoutError):
        secondary.recvfrom(4096)

    plane.publish({})
    r = dns.query.udp(query("web.example.com"), "127.0.0.1", timeout=5, port=plane.port)
    assert r.rcode() == dns.rcode.REFUSED


def test_counters_count_what_was_answered(plane: BuiltinPlane) -> None:
    for name, rdtype in [("web.example.com", "A")] * 5 + [
        ("nope.example.com", "AAAA"),
        ("web.example.com", "MX"),
    ]:
        dns.query.udp(query(name, rdtype), "127.0.0.1", timeout=5, port=plane.port)
    dns.query.tcp(query("web.example.com"), "127.0.0.1", timeout=5, port=plane.port)
    counted = plane.counters()["example.com."]
    assert counted.queries == 8
    assert counted.nxdomain == 1
    assert counted.by_type == {"A": 6, "AAAA": 1, "MX": 1}


def test_garbage_does_not_stop_the_server(plane: BuiltinPlane) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        for junk in (b"", b"\x00", b"\xff" * 11, b"\x12\x34" + b"\xff" * 40, bytes(range(256))):
            sock.sendto(junk, ("127.0.0.1", plane.port))
    with socket.create_connection(("127.0.0.1", plane.port), timeout=5) as sock:
        sock.sendall(b"\x00\x05hello\x00\x00")  # a bad message, then an empty one
    r = dns.query.udp(query("web.example.com"), "127.0.0.1", timeout=5, port=plane.port)
    assert r.rcode() == dns.rcode.NOERROR
    assert plane.answerer.internal_errors == 0


def test_two_planes_cannot_share_a_port(plane: BuiltinPlane) -> None:
    other = BuiltinPlane(DnsSettings(host="127.0.0.1", port=plane.port))
    with pytest.raises(OSError, match="in use"):
        other.start()


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("::1 is not configured")
    p = BuiltinPlane(DnsSettings(host="::1", port=0))
    p.start()
    try:
        p.publish({"example.com.": make_zone()})
        r = dns.query.udp(query("web.example.com"), "::1", timeout=5, port=p.port)
        assert r.answer
    finally:
        p.stop()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.7", ("192.0.2.7", 53)),
        ("192.0.2.7:5300", ("192.0.2.7", 5300)),
        ("2001:db8::7", ("2001:db8::7", 53)),
        ("[2001:db8::7]:5300", ("2001:db8::7", 5300)),
        ("[2001:db8::7]", ("2001:db8::7", 53)),
    ],
)
def test_secondary_addresses(text: str, expected: tuple[str, int]) -> None:
    parsed = Secondary.parse(text)
    assert (parsed.address, parsed.port) == expected


def test_a_secondary_must_be_an_address() -> None:
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6"):
        Secondary.parse("ns2.provider.example")
    with pytest.raises(ValueError, match=r"ns2\.provider\.example"):
        DnsSettings(secondaries=["ns2.provider.example"])  # refused when the settings load
