"""The built-in data plane: an authoritative server over UDP and TCP on ``[dns] host:port``
(127.0.0.1:5353 by default), answering from :mod:`abusedesk.dns.answers`.

It runs an event loop of its own (uvloop when importable) on a thread of its own, so that it
serves the same way inside the multi-role process and alone, and a burst of queries never
stalls the loop of the other roles. :meth:`BuiltinPlane.publish` may be called from any
thread: it prepares the new zones aside, swaps them in at once (no restart, no query sees half
of a change), and sends NOTIFY for the zones that are new or whose serial went up.

UDP: one datagram, one answer; larger than the requester's EDNS payload (at most 1232 bytes, 512
without EDNS) it comes back truncated, and the client retries over TCP. TCP: length-prefixed
messages, any number per connection, closed after ``TCP_IDLE`` seconds without a query; beyond
``TCP_MAX`` open connections new ones are closed at once.

Secondaries (``[dns] secondaries``) are written ``192.0.2.7`` (port 53), ``192.0.2.7:5300``,
``2001:db8::7`` or ``[2001:db8::7]:5300``. AXFR (and IXFR, answered with the whole zone) is
served over TCP to their addresses only, from any source port, and must be signed with the
``[dns] tsig`` key when one is set; everyone else is REFUSED (a bad signature: NOTAUTH). NOTIFY
goes over UDP to each secondary's address and port, signed with the same key, and is retried
``NOTIFY_TRIES`` times until the secondary answers.

Run alone (the benchmark does)::

    python -m abusedesk.dns.server --zone-file FILE --origin NAME [--zone-file FILE --origin
        NAME …] [--host 127.0.0.1] [--port 5353] [--secondary ADDR …] [--tsig [ALG:]NAME:SECRET]

It prints ``listening on HOST PORT`` once it answers (``--port 0``: a free port) and serves
until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import ipaddress
import logging
import signal
import socket
import threading
from collections.abc import Callable, Mapping, Sequence

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.tsigkeyring
import dns.zone

from abusedesk import udp_batch
from abusedesk.dns.answers import Answerer, question_type
from abusedesk.dns.plane import ZoneCounters
from abusedesk.dns.settings import DnsSettings, TsigKey

log = logging.getLogger("abusedesk.dns")

TCP_IDLE = 10.0  # seconds a TCP connection may wait between queries
TCP_MAX = 256  # open TCP connections at most
NOTIFY_TRIES = 3
NOTIFY_TIMEOUT = 2.0  # seconds per try
XFR_MESSAGE_BYTES = 16_000  # records per transfer message, by their uncompressed size
UDP_BUFFER = 4 * 1024 * 1024  # receive buffer asked for: bursts wait in the kernel
UDP_BATCH = 64  # datagrams answered per wake-up before the loop serves TCP again
UDP_ROUNDS = 4  # batches answered per wake-up (batched reader) before TCP gets a turn
UDP_QUERY_MAX = 4096  # bytes; a query is a question and an OPT record, far below this

_XFR = (dns.rdatatype.AXFR, dns.rdatatype.IXFR)


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # uvloop is optional (not built for every platform)
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _unmapped(address: str) -> str:
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


class _UdpReader:
    """Reads the UDP socket whenever the loop sees it readable, until it is empty or
    ``UDP_BATCH`` datagrams are answered. Cheaper than a datagram endpoint: no protocol
    callback per datagram, and the socket calls are bound once (about 15 % more queries per
    CPU second here)."""

    def __init__(self, sock: socket.socket, answer: Callable[[bytes], bytes | None]) -> None:
        self.recvfrom = sock.recvfrom
        self.sendto = sock.sendto
        self.answer = answer
        self.send_errors = 0  # responses the kernel would not take (a full send buffer)

    def __call__(self) -> None:
        recvfrom, sendto, answer = self.recvfrom, self.sendto, self.answer
        for _ in range(UDP_BATCH):
            try:
                data, addr = recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # an ICMP error queued on the socket: nothing to read
                log.debug("dns: udp error %s", exc)
                return
            response = answer(data)
            if response is not None:
                try:
                    sendto(response, addr)
                except OSError:
                    self.send_errors += 1


class _BatchUdpReader:
    """As :class:`_UdpReader`, a batch of datagrams per system call each way
    (:mod:`abusedesk.udp_batch`): about a third less CPU per answer here, most of it the
    kernel's."""

    def __init__(self, sock: socket.socket, answer: Callable[[bytes], bytes | None]) -> None:
        self.fd = sock.fileno()
        self.answer = answer
        self.batch = udp_batch.DatagramBatch(UDP_BATCH, UDP_QUERY_MAX)
        self.send_errors = 0

    def __call__(self) -> None:
        batch, answer, fd = self.batch, self.answer, self.fd
        for _ in range(UDP_ROUNDS):
            try:
                got = batch.receive(fd)
            except OSError as exc:  # an ICMP error queued on the socket: nothing to read
                log.debug("dns: udp error %s", exc)
                return
            if not got:
                return
            indices: list[int] = []
            responses: list[bytes] = []
            for i, query in enumerate(batch.payloads(got)):
                if query is not None:  # longer than any query: dropped, as a malformed one is
                    response = answer(query)
                    if response is not None:
                        indices.append(i)
                        responses.append(response)
            self.send_errors += batch.reply_to(fd, indices, responses)
            if got < UDP_BATCH:
                return  # the socket is empty: back to the loop


class _Tcp(asyncio.Protocol):
    def __init__(self, plane: BuiltinPlane) -> None:
        self.plane = plane
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.peer = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.plane.tcp_open >= TCP_MAX:
            transport.abort()  # type: ignore[attr-defined]
            return
        self.plane.tcp_open += 1
        self.plane.connections.add(self)
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = _unmapped(peer[0]) if peer else ""
        self._arm()

    def _arm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        assert self.transport is not None
        self.timer = asyncio.get_running_loop().call_later(TCP_IDLE, self.transport.close)

    def data_received(self, data: bytes) -> None:
        if self.transport is None:
            return
        buf = self.buffer
        buf += data
        while len(buf) >= 2:
            size = buf[0] << 8 | buf[1]
            if len(buf) < 2 + size:
                break
            message = bytes(buf[2 : 2 + size])
            del buf[: 2 + size]
            for response in self.plane.tcp_responses(message, self.peer):
                self.transport.write(len(response).to_bytes(2, "big") + response)
        self._arm()

    # A client that asks without reading the answers: stop reading it until it catches up.
    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.plane.tcp_open -= 1
            self.plane.connections.discard(self)
            self.transport = None
        if self.timer is not None:
            self.timer.cancel()


class BuiltinPlane:
    """The `builtin` data plane (:class:`abusedesk.dns.plane.DataPlane`). After :meth:`start`,
    ``port`` is the port bound (useful when the settings say 0)."""

    def __init__(self, settings: DnsSettings, *, answerer: Answerer | None = None) -> None:
        self.settings = settings
        self.answerer = answerer if answerer is not None else Answerer()
        self.port = settings.port
        self.tcp_open = 0
        self.secondaries = [(s.address, s.port) for s in settings.secondary_endpoints()]
        self._allowed = {host for host, _ in self.secondaries}
        self._keyring: dict[dns.name.Name, dns.tsig.Key] | None = None
        self._keyname: dns.name.Name | None = None
        if settings.tsig is not None:
            self._keyname = dns.name.from_text(settings.tsig.name)
            key = dns.tsig.Key(self._keyname, settings.tsig.secret, settings.tsig.algorithm)
            self._keyring = {self._keyname: key}
        self.notified: dict[tuple[str, str, int], int] = {}  # (zone, host, port) → serial acked
        self.udp: _UdpReader | _BatchUdpReader | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.connections: set[_Tcp] = set()

    # -- DataPlane ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        ready = threading.Event()
        failed: list[BaseException] = []
        loop = _new_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                udp, tcp = loop.run_until_complete(self._bind())
            except BaseException as exc:  # handed to the caller of start()
                failed.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.remove_reader(udp.fileno())
                udp.close()
                tcp.close()
                for connection in list(self.connections):
                    connection.abort()
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(asyncio.sleep(0))  # aborted connections finish closing
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="dns-builtin", daemon=True)
        self._thread.start()
        ready.wait()
        if failed:
            self._thread.join()
            self._thread = self._loop = None
            raise failed[0]
        log.info("dns: builtin plane on %s port %d", self.settings.host, self.port)

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already closed
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._loop = self._thread = None

    def publish(self, zones: Mapping[str, dns.zone.Zone]) -> None:
        changed = self.answerer.publish(zones)
        loop = self._loop
        if changed and self.secondaries and loop is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(self._notify_all(changed), loop)

    def counters(self) -> dict[str, ZoneCounters]:
        return self.answerer.counters()

    # -- sockets -----------------------------------------------------------------------------

    async def _bind(self) -> tuple[socket.socket, asyncio.AbstractServer]:
        loop = asyncio.get_running_loop()
        host, port = self.settings.host, self.settings.port
        family = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0][0]
        for _ in range(20):  # port 0: UDP picks, TCP must get the same one
            udp = socket.socket(family, socket.SOCK_DGRAM)
            with contextlib.suppress(OSError):
                udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_BUFFER)
            try:
                udp.bind((host, port))
            except OSError:
                udp.close()
                raise
            bound = udp.getsockname()[1]
            tcp = socket.socket(family, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind((host, bound))
            except OSError:
                udp.close()
                tcp.close()
                if port:
                    raise
                continue
            break
        else:
            raise OSError(f"no port free for both UDP and TCP on {host}")
        tcp.listen(128)
        udp.setblocking(False)
        tcp.setblocking(False)
        self.port = bound
        reader = _BatchUdpReader if udp_batch.available() else _UdpReader
        self.udp = reader(udp, self.answerer.answer)
        loop.add_reader(udp.fileno(), self.udp)
        server = await loop.create_server(lambda: _Tcp(self), sock=tcp)
        return udp, server

    def tcp_responses(self, message: bytes, peer: str) -> list[bytes]:
        """The messages that answer one query received over TCP."""
        if question_type(message) in _XFR:
            try:
                return self._transfer(message, peer)
            except Exception:  # a zone that cannot be rendered must not kill the connection
                log.exception("dns: zone transfer to %s failed", peer)
                return [_rcode_only(message, dns.rcode.SERVFAIL)]
        response = self.answerer.answer(message, udp=False)
        return [response] if response is not None else []

    # -- zone transfers and NOTIFY -------------------------------------------------------------

    def _transfer(self, message: bytes, peer: str) -> list[bytes]:
        if peer not in self._allowed:
            log.info("dns: zone transfer refused to %s (not a secondary)", peer)
            return [_rcode_only(message, dns.rcode.REFUSED)]
        try:
            query = dns.message.from_wire(message, keyring=self._keyring)
        except (dns.message.UnknownTSIGKey, dns.tsig.PeerError, dns.tsig.BadSignature) as exc:
            log.info("dns: zone transfer refused to %s (%s)", peer, exc)
            return [_rcode_only(message, dns.rcode.NOTAUTH)]
        except Exception:
            return [_rcode_only(message, dns.rcode.FORMERR)]
        if self._keyring is not None and not query.had_tsig:
            log.info("dns: zone transfer refused to %s (unsigned)", peer)
            return [_rcode_only(message, dns.rcode.REFUSED)]
        if query.opcode() != dns.opcode.QUERY or len(query.question) != 1:
            return [_rcode_only(message, dns.rcode.FORMERR)]
        zone = self.answerer.zone(query.question[0].name)
        if zone is None:
            response = dns.message.make_response(query)
            response.set_rcode(dns.rcode.NOTAUTH)
            return [response.to_wire()]
        return axfr_messages(query, zone)

    async def _notify_all(self, zones: Sequence[str]) -> None:
        await asyncio.gather(
            *(self._notify(zone, host, port) for zone in zones for host, port in self.secondaries)
        )

    async def _notify(self, zone_name: str, host: str, port: int) -> None:
        zone = self.answerer.zone(zone_name)
        if zone is None:
            return
        query, serial = self._notify_message(zone)
        wire = query.to_wire()
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect((host, port))  # only the secondary's datagrams come back
            for attempt in range(1, NOTIFY_TRIES + 1):
                try:
                    sock.send(wire)
                    data = await asyncio.wait_for(loop.sock_recv(sock, 65535), NOTIFY_TIMEOUT)
                except (TimeoutError, OSError) as exc:
                    log.info(
                        "dns: NOTIFY %s to %s:%d, try %d: %r", zone_name, host, port, attempt, exc
                    )
                    continue
                try:
                    response = dns.message.from_wire(
                        data, keyring=query.keyring, request_mac=query.mac
                    )
                except Exception as exc:  # malformed, or unsigned: the secondary's problem
                    log.warning(
                        "dns: NOTIFY %s to %s:%d: bad answer: %s", zone_name, host, port, exc
                    )
                    return
                if not query.is_response(response):
                    continue
                rcode = response.rcode()
                if rcode == dns.rcode.NOERROR:
                    self.notified[(zone_name, host, port)] = serial
                else:
                    text = dns.rcode.to_text(rcode)
                    log.warning("dns: NOTIFY %s to %s:%d: %s", zone_name, host, port, text)
                return
            log.warning("dns: NOTIFY %s to %s:%d: no answer", zone_name, host, port)
        finally:
            sock.close()

    def _notify_message(self, zone: dns.zone.Zone) -> tuple[dns.message.Message, int]:
        """NOTIFY for a zone (RFC 1996): AA, the SOA asked, and the new SOA in the answer."""
        origin: dns.name.Name = zone.origin  # type: ignore[assignment]
        soa = zone.get_rdataset(origin, dns.rdatatype.SOA)
        assert soa is not None
        query = dns.message.make_query(origin, dns.rdatatype.SOA)
        query.flags = dns.flags.AA
        query.set_opcode(dns.opcode.NOTIFY)
        absolute = dns.rrset.RRset(origin, soa.rdclass, soa.rdtype)
        for rd in soa:  # relative names in the zone; the message has no origin
            mname = rd.mname.derelativize(origin)  # type: ignore[attr-defined]
            rname = rd.rname.derelativize(origin)  # type: ignore[attr-defined]
            absolute.add(rd.replace(mname=mname, rname=rname), soa.ttl)
        query.answer.append(absolute)
        if self._keyring is not None:
            query.use_tsig(self._keyring, self._keyname)
        return query, soa[0].serial  # type: ignore[attr-defined]


def _rcode_only(message: bytes, rcode: dns.rcode.Rcode) -> bytes:
    """A response with the query's ID and question, or the bare header when it does not parse."""
    try:
        query = dns.message.from_wire(message, question_only=True)
        response = dns.message.make_response(query)
        response.set_rcode(rcode)
        return response.to_wire()
    except Exception:
        return message[:2] + bytes((0x80 | (message[2] & 0x79), rcode)) + bytes(8)


def axfr_messages(query: dns.message.Message, zone: dns.zone.Zone) -> list[bytes]:
    """The zone as AXFR response messages (RFC 5936): the SOA, every other record set, the SOA
    again; signed as one TSIG stream when the query was signed."""
    origin: dns.name.Name = zone.origin  # type: ignore[assignment]
    soa_rds = zone.get_rdataset(origin, dns.rdatatype.SOA)
    assert soa_rds is not None
    soa = dns.rrset.RRset(origin, soa_rds.rdclass, soa_rds.rdtype)
    soa.update(soa_rds)
    rrsets = [soa]
    for name, rds in zone.iterate_rdatasets():
        owner = name.derelativize(origin)
        if owner == origin and rds.rdtype == dns.rdatatype.SOA:
            continue
        rrset = dns.rrset.RRset(owner, rds.rdclass, rds.rdtype)
        rrset.update(rds)
        rrsets.append(rrset)
    rrsets.append(soa)
    chunks: list[list[dns.rrset.RRset]] = [[]]
    size = 0
    for rrset in rrsets:
        buf = io.BytesIO()
        rrset.to_wire(buf, None, origin)
        if chunks[-1] and size + buf.tell() > XFR_MESSAGE_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(rrset)
        size += buf.tell()
    out = []
    ctx = None
    for chunk in chunks:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        response.answer = chunk
        out.append(response.to_wire(origin=origin, multi=True, tsig_ctx=ctx, max_size=65535))
        ctx = response.tsig_ctx
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m abusedesk.dns.server", description="Serve zone files until SIGTERM."
    )
    parser.add_argument("--zone-file", action="append", required=True, help="a zone file")
    parser.add_argument("--origin", action="append", required=True, help="its origin, in order")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5353)
    parser.add_argument(
        "--secondary", action="append", default=[], help="may transfer, is notified (repeat)"
    )
    parser.add_argument("--tsig", help="the transfer key, as kdig -y takes it: [alg:]name:secret")
    args = parser.parse_args(argv)
    if len(args.zone_file) != len(args.origin):
        parser.error("give one --origin per --zone-file")
    tsig = None
    if args.tsig:
        parts = args.tsig.split(":")
        if len(parts) not in (2, 3):
            parser.error("--tsig is [alg:]name:secret")
        algorithm = parts[0] if len(parts) == 3 else "hmac-sha256"
        tsig = TsigKey(name=parts[-2], algorithm=algorithm, secret=parts[-1])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    zones = {}
    for path, origin in zip(args.zone_file, args.origin, strict=True):
        zone = dns.zone.from_file(path, origin)
        zones[zone.origin.to_text().lower()] = zone  # type: ignore[union-attr]
    settings = DnsSettings(host=args.host, port=args.port, secondaries=args.secondary, tsig=tsig)
    plane = BuiltinPlane(settings)
    plane.start()
    plane.publish(zones)
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    print(f"listening on {args.host} {plane.port}", flush=True)
    while not done.wait(1.0):
        pass
    plane.stop()


if __name__ == "__main__":
    main()
