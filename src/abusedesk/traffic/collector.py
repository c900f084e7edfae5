"""The flow collector: the UDP sockets of the `traffic` role, read in batches and decoded.

How it reads, and why. Each listener (NetFlow/IPFIX, sFlow) is a non-blocking UDP socket with
a large receive buffer (``receive_buffer_bytes``, 32 MiB by default; the kernel caps it at
``net.core.rmem_max`` unless the process may use SO_RCVBUFFORCE, and the size granted is
logged). One thread of its own waits on both sockets with a selector, then drains each with
``recvfrom`` until it is empty or ``batch_size`` datagrams are read, and hands the batch to
``FlowDecoder.decode_many`` (each datagram its own ``bytes``, as the decoder requires).

A thread rather than asyncio datagram endpoints: an endpoint costs one event-loop callback per
datagram on the loop that also serves the web role, and a decode that runs on the loop stalls
both; here the event loop never sees a datagram, the socket calls release the GIL, and while a
batch decodes the kernel buffer holds what arrives (32 MiB is about 20 000 full-size NetFlow
datagrams, far more than one batch takes to decode). Batching is what makes the decode fast:
``decode_many`` reads every data set of a template in one numpy call.

What it counts (``abusedesk.metrics``): datagrams and records by format, decode errors by format
and kind (rejected datagrams, and data sets held for a template that has not arrived), datagrams
the kernel dropped (the socket's ``drops`` column in ``/proc/net/udp``), and sequence gaps. The
:class:`ExporterRegistry` keeps, per exporter address, format and observation domain, what it
sent and the sampling it uses. Decoded batches go to a :class:`FlowSink`.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from abusedesk import metrics, udp_batch
from abusedesk.traffic.choices import FlowFormat
from abusedesk.traffic.decode import DecodeResult, FlowDecoder, TemplateCache
from abusedesk.traffic.decode import sflow as sflow_decode
from abusedesk.traffic.decode.errors import DecodeError
from abusedesk.traffic.settings import TrafficSettings

log = logging.getLogger("abusedesk.traffic")

UNKNOWN = "unknown"  # the format label of a datagram that is none of ours
MAX_DATAGRAM = 65535
MAX_EXPORTERS = 10_000  # registry entries; spoofed sources must not grow it without end

_V5_HEAD = struct.Struct("!HHIIIIBBH")  # version, count, uptime, secs, nsecs, seq, engine, sampling
_V9_HEAD = struct.Struct("!HHIIII")  # version, count, uptime, secs, sequence, source id
_IPFIX_HEAD = struct.Struct("!HHIII")  # version, length, export time, sequence, domain


_V5, _V9, _IPFIX, _SFLOW = (
    FlowFormat.NETFLOW_V5.value,
    FlowFormat.NETFLOW_V9.value,
    FlowFormat.IPFIX.value,
    FlowFormat.SFLOW_V5.value,
)
_BY_VERSION = {5: _V5, 9: _V9, 10: _IPFIX}


def format_of(datagram: bytes) -> str:
    """The FlowFormat value of a datagram from its first bytes, or "unknown"."""
    if len(datagram) >= 4 and datagram[0] == 0:
        version = datagram[1]
        if version:
            return _BY_VERSION.get(version, UNKNOWN)
        if datagram[2] == 0 and datagram[3] == 5:
            return _SFLOW
    return UNKNOWN


# --------------------------------------------------------------------------- the sink


class FlowSink(Protocol):
    """Where decoded batches go: the aggregation windows (issue 5, item 3) implement this.

    ``result.flows`` has one row per flow (FLOW_DTYPE; ``first_ms``/``last_ms`` already
    stamped with the arrival time where the exporter gave none), ``result.origin[i]`` the
    index of flow ``i``'s datagram in the batch, and ``exporter_addresses[j]`` the source
    address of datagram ``j``. ``received_at`` is the batch's arrival time (epoch seconds).
    ``accept`` runs on the collector's thread: it must be quick, and must not raise.
    """

    def accept(
        self, result: DecodeResult, exporter_addresses: Sequence[str], received_at: float
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class ExporterTotals:
    flows: int = 0
    packets: int = 0  # scaled by the sampling rate
    bytes: int = 0  # scaled by the sampling rate
    counter_samples: int = 0


class RunningTotals:
    """The sink until the windows exist: running totals per exporter address, with packets and
    bytes multiplied by the sampling rate (an unsaid rate, 0, taken as the configured one)."""

    def __init__(self, settings: TrafficSettings) -> None:
        self.settings = settings
        self._totals: dict[str, ExporterTotals] = {}
        self._lock = threading.Lock()

    def accept(
        self, result: DecodeResult, exporter_addresses: Sequence[str], received_at: float
    ) -> None:
        flows = result.flows
        if not len(flows) and not len(result.counters):
            return
        origin = result.origin
        addresses = list(exporter_addresses)
        defaults = np.array(
            [self.settings.sampling_rate_for(a) for a in addresses], dtype=np.uint64
        )
        rates = flows["sampling_rate"].astype(np.uint64)
        rates = np.where(rates == 0, defaults[origin] if len(origin) else rates, rates)
        packets = flows["packets"].astype(np.uint64) * rates
        octets = flows["bytes"].astype(np.uint64) * rates
        n = len(addresses)
        per_flows = np.bincount(origin, minlength=n)
        per_packets = np.bincount(origin, weights=packets, minlength=n)
        per_bytes = np.bincount(origin, weights=octets, minlength=n)
        with self._lock:
            for j, address in enumerate(addresses):
                if not per_flows[j]:
                    continue
                old = self._totals.get(address, ExporterTotals())
                self._totals[address] = replace(
                    old,
                    flows=old.flows + int(per_flows[j]),
                    packets=old.packets + int(per_packets[j]),
                    bytes=old.bytes + int(per_bytes[j]),
                )
            if len(result.counters):
                # Counter samples carry no origin; sFlow batches come from its own socket.
                key = addresses[0] if len(set(addresses)) == 1 else "(several)"
                old = self._totals.get(key, ExporterTotals())
                self._totals[key] = replace(
                    old, counter_samples=old.counter_samples + len(result.counters)
                )

    def snapshot(self) -> dict[str, ExporterTotals]:
        with self._lock:
            return dict(self._totals)


# ---------------------------------------------------------------------- the registry


@dataclass(slots=True)
class Exporter:
    """One exporter's stream: its address, format and observation domain (NetFlow v9 source
    id, IPFIX observation domain, sFlow sub-agent, NetFlow v5 engine type and id)."""

    address: str
    format: str
    domain: int
    sampling_rate: int = 0  # learnt from the exporter; 0 while it has not said
    first_seen: float = 0.0
    last_seen: float = 0.0
    datagrams: int = 0
    records: int = 0
    decode_errors: int = 0
    sequence_gaps: int = 0
    agent: str | None = None  # sFlow: the agent address the datagrams name
    next_sequence: int | None = None


class ExporterRegistry:
    """Which exporters send to this collector, in memory; :meth:`snapshot` for the console."""

    def __init__(self) -> None:
        self._exporters: dict[tuple[str, str, int], Exporter] = {}
        self.lock = threading.Lock()  # held by the collector while it updates entries

    def entry(self, address: str, fmt: str, domain: int, now: float) -> Exporter | None:
        """The entry of a stream, made on first sight (None when the registry is full).
        Call with :attr:`lock` held."""
        key = (address, fmt, domain)
        found = self._exporters.get(key)
        if found is None:
            if len(self._exporters) >= MAX_EXPORTERS:
                return None
            found = self._exporters[key] = Exporter(address, fmt, domain, first_seen=now)
            log.info("traffic: new exporter %s (%s, domain %d)", address, fmt, domain)
        return found

    def snapshot(self) -> list[Exporter]:
        """Copies of every entry, by address, format and domain."""
        with self.lock:
            return [replace(e) for _, e in sorted(self._exporters.items())]

    def __len__(self) -> int:
        return len(self._exporters)


def _header(datagram: bytes, fmt: str) -> tuple[int, int | None, int, str | None]:
    """(domain, sequence, sampling rate from the header, sFlow agent) of a datagram."""
    if fmt == FlowFormat.NETFLOW_V5 and len(datagram) >= _V5_HEAD.size:
        *_, sequence, engine_type, engine_id, sampling = _V5_HEAD.unpack_from(datagram)
        return (engine_type << 8) | engine_id, sequence, sampling & 0x3FFF, None
    if fmt == FlowFormat.NETFLOW_V9 and len(datagram) >= _V9_HEAD.size:
        *_, sequence, source_id = _V9_HEAD.unpack_from(datagram)
        return source_id, sequence, 0, None
    if fmt == FlowFormat.IPFIX and len(datagram) >= _IPFIX_HEAD.size:
        *_, sequence, domain = _IPFIX_HEAD.unpack_from(datagram)
        return domain, sequence, 0, None
    if fmt == FlowFormat.SFLOW_V5:
        try:
            agent, sub_agent, sequence, _uptime = sflow_decode.agent(datagram)
        except DecodeError:
            return 0, None, 0, None
        return sub_agent, sequence, 0, agent
    return 0, None, 0, None


_HEAD_DTYPES = {
    FlowFormat.NETFLOW_V5.value: np.dtype(
        [("sequence", ">u4"), ("engine_type", "u1"), ("engine_id", "u1"), ("sampling", ">u2")]
    ),
    FlowFormat.NETFLOW_V9.value: np.dtype([("sequence", ">u4"), ("domain", ">u4")]),
    FlowFormat.IPFIX.value: np.dtype([("sequence", ">u4"), ("domain", ">u4")]),
}
_HEAD_AT = {  # where those fields start, and the header's whole size
    FlowFormat.NETFLOW_V5.value: (16, _V5_HEAD.size),
    FlowFormat.NETFLOW_V9.value: (12, _V9_HEAD.size),
    FlowFormat.IPFIX.value: (8, _IPFIX_HEAD.size),
}
_Run = tuple[int, list[int], list[int], list[int | None], list[str | None]]


def _headers(datagrams: Sequence[bytes], indices: list[int], fmt: str) -> list[_Run]:
    """One stream's datagrams (same sender and format) split by observation domain, in arrival
    order: (domain, their indices, header sampling rates, sequences, sFlow agents).

    NetFlow and IPFIX headers are read for all the datagrams at once (one numpy view over
    their fixed fields); sFlow's, whose agent address varies in length, and datagrams too
    short for a header, one at a time through :func:`_header`."""
    at = _HEAD_AT.get(fmt)
    whole = [j for j in indices if at is not None and len(datagrams[j]) >= at[1]]
    runs: dict[int, _Run] = {}
    if whole:
        assert at is not None
        start, _ = at
        dtype = _HEAD_DTYPES[fmt]
        end = start + dtype.itemsize
        heads = np.frombuffer(b"".join([datagrams[j][start:end] for j in whole]), dtype)
        sequences = heads["sequence"].astype(np.int64)
        if fmt == FlowFormat.NETFLOW_V5:
            domains = heads["engine_type"].astype(np.int64) << 8 | heads["engine_id"]
            header_rates = (heads["sampling"] & 0x3FFF).astype(np.int64)
        else:
            domains = heads["domain"].astype(np.int64)
            header_rates = np.zeros(len(whole), np.int64)
        for domain in np.unique(domains).tolist():
            pick = np.flatnonzero(domains == domain)
            chosen = [whole[i] for i in pick.tolist()]
            none: list[str | None] = [None] * len(chosen)
            runs[domain] = (
                domain,
                chosen,
                header_rates[pick].tolist(),
                sequences[pick].tolist(),
                none,
            )
    if len(whole) < len(indices):
        taken = set(whole)
        for j in indices:
            if j in taken:
                continue
            domain, sequence, header_rate, agent = _header(datagrams[j], fmt)
            run = runs.setdefault(domain, (domain, [], [], [], []))
            run[1].append(j)
            run[2].append(header_rate)
            run[3].append(sequence)
            run[4].append(agent)
    return list(runs.values())


def _account(
    entry: Exporter,
    fmt: str,
    run: list[int],
    header_rates: list[int],
    sequences: list[int | None],
    agents: list[str | None],
    failed: dict[int, DecodeError],
    per_datagram: np.ndarray,
    rates: np.ndarray,
) -> int:
    """Count one exporter stream's datagrams of a batch into its entry; returns the datagrams
    (NetFlow v5: flows) its sequence numbers say were missed."""
    entry.datagrams += len(run)
    if failed:
        kept = [i for i, j in enumerate(run) if j not in failed]
        entry.decode_errors += len(run) - len(kept)
        if not kept:
            return 0
        if len(kept) < len(run):
            run = [run[i] for i in kept]
            header_rates = [header_rates[i] for i in kept]
            sequences = [sequences[i] for i in kept]
            agents = [agents[i] for i in kept]
    at = np.array(run, dtype=np.intp)
    records = per_datagram[at]
    entry.records += int(records.sum())
    said = np.where(rates[at] > 0, rates[at], np.array(header_rates, dtype=np.int64))
    nonzero = np.flatnonzero(said)
    if len(nonzero):
        entry.sampling_rate = int(said[nonzero[-1]])
    agent = next((a for a in reversed(agents) if a is not None), None)
    if agent is not None:
        entry.agent = agent
    if fmt == FlowFormat.IPFIX:
        return 0  # IPFIX sequences count records, options included: not checked (see _gap)
    advance = records.tolist() if fmt == FlowFormat.NETFLOW_V5 else [1] * len(run)
    if None in sequences:  # an sFlow datagram without a readable header: one at a time
        return sum(_gap(entry, s, a) for s, a in zip(sequences, advance, strict=True))
    missed, entry.next_sequence = _gaps(
        entry.next_sequence, np.array(sequences, np.int64), np.array(advance, np.int64)
    )
    return missed


def _gaps(next_sequence: int | None, seq: np.ndarray, advance: np.ndarray) -> tuple[int, int]:
    """:func:`_gap` over a run of one stream's datagrams at once: (what was missed, the
    sequence expected next). Each datagram is compared with the one its predecessor announced."""
    expected = (seq + advance) & 0xFFFFFFFF
    previous = np.empty_like(seq)
    previous[1:] = expected[:-1]
    previous[0] = seq[0] if next_sequence is None else next_sequence
    diff = (seq - previous) & 0xFFFFFFFF
    return int(diff[(diff > 0) & (diff < 0x80000000)].sum()), int(expected[-1])


def _gap(exporter: Exporter, sequence: int | None, advance: int) -> int:
    """What the sequence says was missed since the last datagram, and note the next one.

    NetFlow v5 counts flows (``advance``: the records in this datagram), NetFlow v9 and sFlow
    count datagrams. IPFIX counts data records including options records, which this does not
    attribute to datagrams, so IPFIX sequences are not checked (``sequence`` is None).
    A sequence that goes backwards or jumps by more than half the space is a restart, not a gap.
    """
    if sequence is None:
        return 0
    missed = 0
    if exporter.next_sequence is not None:
        diff = (sequence - exporter.next_sequence) & 0xFFFFFFFF
        if 0 < diff < 0x80000000:
            missed = diff
    exporter.next_sequence = (sequence + advance) & 0xFFFFFFFF
    return missed


# --------------------------------------------------------------------- the collector


@dataclass(frozen=True, slots=True)
class Totals:
    datagrams: int = 0
    records: int = 0
    errors: int = 0
    dropped: int = 0


class Collector:
    """The sockets, the decoder, the registry and the sink of one `traffic` role.

    ``open()`` binds (port 0: any free port; :attr:`addresses` says which), ``run(halt)``
    reads until ``halt`` is set, ``close()`` closes. :meth:`process` is one batch's work.
    """

    def __init__(
        self,
        settings: TrafficSettings,
        sink: FlowSink,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.clock = clock
        self.decoder = FlowDecoder(TemplateCache(ttl_s=settings.template_expiry_seconds))
        self.registry = ExporterRegistry()
        self.sockets: dict[str, socket.socket] = {}
        self._selector: selectors.DefaultSelector | None = None
        self._drops_seen: dict[str, int] = {}
        self.totals = Totals()

    # ---- sockets

    def open(self) -> None:
        listeners = {"netflow": self.settings.netflow, "sflow": self.settings.sflow}
        self._selector = selectors.DefaultSelector()
        try:
            for name, listen in listeners.items():
                sock = _udp_socket(listen.host, listen.port)
                granted = _grow_buffer(sock, self.settings.receive_buffer_bytes)
                sock.setblocking(False)
                self.sockets[name] = sock
                self._selector.register(sock, selectors.EVENT_READ, name)
                self._drops_seen[name] = _socket_drops(sock) or 0
                host, port = sock.getsockname()[:2]
                what = "NetFlow v5/v9 and IPFIX" if name == "netflow" else "sFlow v5"
                log.info(
                    "traffic: %s listening on udp %s:%d (receive buffer %d KiB granted, "
                    "%d KiB asked)",
                    what,
                    host,
                    port,
                    granted // 1024,
                    self.settings.receive_buffer_bytes // 1024,
                )
                if granted < self.settings.receive_buffer_bytes:
                    log.warning(
                        "traffic: the kernel granted a smaller receive buffer than asked; "
                        "raise net.core.rmem_max to at least %d to absorb bursts",
                        self.settings.receive_buffer_bytes,
                    )
        except OSError:
            self.close()
            raise

    @property
    def addresses(self) -> dict[str, tuple[str, int]]:
        """Where each listener is bound: {"netflow": (host, port), "sflow": (host, port)}."""
        return {name: sock.getsockname()[:2] for name, sock in self.sockets.items()}

    def close(self) -> None:
        if self._selector is not None:
            self._selector.close()
            self._selector = None
        for sock in self.sockets.values():
            sock.close()
        self.sockets.clear()

    def __enter__(self) -> Collector:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the loop

    def run(self, halt: threading.Event) -> None:
        """Read, decode and hand on batches until ``halt`` is set; logs what it got at the end."""
        assert self._selector is not None, "open() first"
        settings = self.settings
        next_expiry = time.monotonic() + settings.expire_interval_seconds
        next_report = time.monotonic() + settings.report_interval_seconds
        limit = settings.batch_size
        readers = {}
        if _MultiReader.available():
            readers = {sock: _MultiReader(sock) for sock in self.sockets.values()}
        try:
            while not halt.is_set():
                ready = self._selector.select(timeout=0.2)
                datagrams: list[bytes] = []
                senders: list[str] = []
                for key, _ in ready:
                    reader = readers.get(key.fileobj)  # type: ignore[call-overload]
                    if reader is not None:
                        reader.read(datagrams, senders, limit)
                    else:
                        _drain(key.fileobj, datagrams, senders, limit)  # type: ignore[arg-type]
                if datagrams:
                    self.process(datagrams, senders, self.clock())
                tick = time.monotonic()
                if tick >= next_expiry:
                    next_expiry = tick + settings.expire_interval_seconds
                    self.decoder.cache.expire(self.clock())
                    self.read_drops()
                if tick >= next_report:
                    next_report = tick + settings.report_interval_seconds
                    self.report()
        finally:
            self.read_drops()
            self.report()

    def process(self, datagrams: Sequence[bytes], senders: Sequence[str], now: float) -> None:
        """Decode one batch, count it, update the registry, and give it to the sink."""
        n = len(datagrams)
        formats = [format_of(d) for d in datagrams]
        result = self.decoder.decode_many(zip(datagrams, senders, strict=True), now)
        flows = result.flows
        origin = result.origin
        failed = {index: error for index, error in result.failed}
        per_datagram = np.bincount(origin, minlength=n) if len(origin) else np.zeros(n, np.int64)
        rates = np.zeros(n, dtype=np.int64)
        if len(flows):
            said = flows["sampling_rate"] > 0
            rates[origin[said]] = flows["sampling_rate"][said]
            # Flows without times (sFlow) get the arrival time.
            stamp = flows["first_ms"] == 0
            if stamp.any():
                flows["first_ms"][stamp] = int(now * 1000)
                flows["last_ms"][stamp & (flows["last_ms"] == 0)] = int(now * 1000)

        by_format: dict[str, list[int]] = {}
        for fmt, count in zip(formats, per_datagram.tolist(), strict=True):
            seen = by_format.setdefault(fmt, [0, 0])
            seen[0] += 1
            seen[1] += count
        for fmt, (datagram_count, record_count) in by_format.items():
            metrics.traffic_datagrams.labels(fmt).inc(datagram_count)
            if record_count:
                metrics.traffic_records.labels(fmt).inc(record_count)
        for index, error in failed.items():
            metrics.traffic_decode_errors.labels(formats[index], error.kind.value).inc()
        for problem in result.problems:
            # Data sets held for their template: v9 or IPFIX; the problem does not say which
            # datagram, so the label is the batch's template format when there is one.
            fmt = next(
                (f for f in formats if f in (FlowFormat.IPFIX, FlowFormat.NETFLOW_V9)), UNKNOWN
            )
            metrics.traffic_decode_errors.labels(fmt, problem.kind.value).inc()

        gaps: dict[str, int] = {}
        streams: dict[tuple[str, str], list[int]] = {}
        for j, key in enumerate(zip(senders, formats, strict=True)):
            found = streams.get(key)
            if found is None:
                streams[key] = [j]
            else:
                found.append(j)
        with self.registry.lock:
            for (sender, fmt), indices in streams.items():
                for domain, run, header_rates, sequences, agents in _headers(
                    datagrams, indices, fmt
                ):
                    entry = self.registry.entry(sender, fmt, domain, now)
                    if entry is None:
                        continue
                    missed = _account(
                        entry,
                        fmt,
                        run,
                        header_rates,
                        sequences,
                        agents,
                        failed,
                        per_datagram,
                        rates,
                    )
                    entry.last_seen = now
                    if missed:
                        entry.sequence_gaps += missed
                        gaps[fmt] = gaps.get(fmt, 0) + missed
        for fmt, missed in gaps.items():
            metrics.traffic_sequence_gaps.labels(fmt).inc(missed)

        self.totals = replace(
            self.totals,
            datagrams=self.totals.datagrams + n,
            records=self.totals.records + len(flows),
            errors=self.totals.errors + len(failed),
        )
        try:
            self.sink.accept(result, senders, now)
        except Exception:
            log.exception("traffic: the flow sink failed on a batch of %d flows", len(flows))

    def read_drops(self) -> None:
        """Count what the kernel dropped on each socket since the last look."""
        for name, sock in self.sockets.items():
            drops = _socket_drops(sock)
            if drops is None:
                continue
            new = drops - self._drops_seen.get(name, 0)
            if new > 0:
                metrics.traffic_dropped.labels(name).inc(new)
                self.totals = replace(self.totals, dropped=self.totals.dropped + new)
                log.warning("traffic: the kernel dropped %d datagrams on the %s socket", new, name)
            self._drops_seen[name] = drops

    def report(self) -> None:
        t = self.totals
        log.info(
            "traffic: received %d datagrams, %d records, %d rejected, %d dropped, "
            "from %d exporters",
            t.datagrams,
            t.records,
            t.errors,
            t.dropped,
            len(self.registry),
        )


def _drain(sock: socket.socket, datagrams: list[bytes], senders: list[str], limit: int) -> None:
    """Read what waits on ``sock``, up to ``limit`` datagrams in all, one recvfrom each (the
    portable path; the collector uses :class:`_MultiReader` where recvmmsg exists)."""
    receive = sock.recvfrom
    append, sender = datagrams.append, senders.append
    while len(datagrams) < limit:
        try:
            data, address = receive(MAX_DATAGRAM)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # e.g. ICMP errors surfacing on the socket; keep reading
            log.debug("traffic: recvfrom: %s", exc)
            return
        append(data)
        sender(address[0])


class _MultiReader:
    """Reads up to ``count`` datagrams of one socket with one recvmmsg(2) call
    (:mod:`abusedesk.udp_batch`).

    Why: the reader's Python time is what limits it, and one call per 64 datagrams costs less
    of it than one per datagram. Buffers take ``count`` times the largest datagram, 4 MiB.
    """

    def __init__(self, sock: socket.socket, count: int = 64, size: int = MAX_DATAGRAM) -> None:
        self.fd, self.count = sock.fileno(), count
        self.batch = udp_batch.DatagramBatch(count, size)
        self.addresses: dict[bytes, str] = {}

    @classmethod
    def available(cls) -> bool:
        return udp_batch.available()

    def read(self, datagrams: list[bytes], senders: list[str], limit: int) -> None:
        batch, known = self.batch, self.addresses
        while len(datagrams) < limit:
            want = min(self.count, limit - len(datagrams))
            try:
                got = batch.receive(self.fd, want)
            except OSError as exc:
                log.debug("traffic: recvmmsg: %s", exc)
                return
            for i, payload in enumerate(batch.payloads(got)):
                if payload is None:
                    continue  # over 65 535 bytes: no UDP datagram is
                datagrams.append(payload)
                name = batch.sender(i)
                senders.append(known.get(name) or self._address(name))
            if got < want:
                return

    def _address(self, name: bytes) -> str:
        text = udp_batch.address_text(name)
        if len(self.addresses) < MAX_EXPORTERS:
            self.addresses[name] = text
        return text


_SO_RCVBUFFORCE = 33  # <asm-generic/socket.h>; Python's socket module does not name it


def _udp_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _grow_buffer(sock: socket.socket, size: int) -> int:
    """Ask for ``size`` bytes of receive buffer; returns what the kernel granted.

    SO_RCVBUFFORCE passes net.core.rmem_max when the process has CAP_NET_ADMIN; otherwise
    SO_RCVBUF is capped. Linux reports twice the usable size (bookkeeping), hence the halving.
    """
    force = getattr(socket, "SO_RCVBUFFORCE", _SO_RCVBUFFORCE if sys.platform == "linux" else None)
    try:
        if force is None:
            raise PermissionError
        sock.setsockopt(socket.SOL_SOCKET, force, size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    return granted // 2 if os.uname().sysname == "Linux" else granted


def _socket_drops(sock: socket.socket) -> int | None:
    """The kernel's drop count for this socket, from /proc/net/udp(6); None where there is none."""
    try:
        inode = os.fstat(sock.fileno()).st_ino
    except OSError:
        return None
    name = "udp6" if sock.family == socket.AF_INET6 else "udp"
    try:
        lines = Path("/proc/net", name).read_text().splitlines()[1:]
    except OSError:
        return None
    wanted = str(inode)
    for line in lines:
        columns = line.split()
        if len(columns) >= 13 and columns[9] == wanted:
            return int(columns[12])
    return None
