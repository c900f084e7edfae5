"""Flow decoders: NetFlow v5, NetFlow v9, IPFIX and sFlow v5 datagrams in, numpy records out.

Pure: no I/O, no clock (the receive time is passed in), no database. The one state is the
template cache (templates, sampling and held data sets per exporter and domain), which the
caller owns through a :class:`FlowDecoder`.

Usage::

    decoder = FlowDecoder()
    result = decoder.decode(payload, exporter="192.0.2.1", now=clock.time())
    result.flows          # numpy array of FLOW_DTYPE
    result.counters       # sFlow interface counters, COUNTER_DTYPE
    result.options        # NetFlow v9 / IPFIX options records
    result.problems       # data sets held for a template that has not arrived (counted)

    batch = decoder.decode_many([(payload, exporter), ...], now=...)   # the fast path
    batch.failed          # [(index, DecodeError)] for datagrams that were rejected
    batch.origin          # per flow, the index of its datagram in the input

``decode`` raises a :class:`DecodeError` subclass for a datagram it rejects; ``decode_many``
never raises for one datagram, it lists it in ``failed`` and goes on. The format is told by
the first bytes: NetFlow's 16-bit version 5, 9 or 10 (IPFIX), sFlow's 32-bit version 5. See
docs/traffic.md.
"""

from __future__ import annotations

import struct
from collections.abc import Hashable, Iterable

from abusedesk.traffic.choices import FlowFormat
from abusedesk.traffic.decode import ipfix, netflow_v5, netflow_v9, sflow
from abusedesk.traffic.decode._batch import Batch
from abusedesk.traffic.decode.errors import (
    BadVersion,
    DecodeError,
    DecodeErrorKind,
    Malformed,
    Truncated,
    UnknownTemplate,
)
from abusedesk.traffic.decode.records import (
    COUNTER_DTYPE,
    FLOW_DTYPE,
    DecodeResult,
    OptionsRecord,
    address_text,
)
from abusedesk.traffic.decode.templates import TemplateCache

__all__ = [
    "COUNTER_DTYPE",
    "FLOW_DTYPE",
    "BadVersion",
    "DecodeError",
    "DecodeErrorKind",
    "DecodeResult",
    "FlowDecoder",
    "Malformed",
    "OptionsRecord",
    "TemplateCache",
    "Truncated",
    "UnknownTemplate",
    "address_text",
    "detect",
]


def detect(datagram: bytes | memoryview) -> FlowFormat:
    """The format of a datagram, from its version field; BadVersion if it is none of ours."""
    if len(datagram) < 4:
        raise Truncated(f"a flow datagram has at least 4 bytes, this has {len(datagram)}")
    version = (datagram[0] << 8) | datagram[1]
    if version == 5:
        return FlowFormat.NETFLOW_V5
    if version == 9:
        return FlowFormat.NETFLOW_V9
    if version == 10:
        return FlowFormat.IPFIX
    if version == 0 and datagram[2] == 0 and datagram[3] == 5:
        return FlowFormat.SFLOW_V5
    raise BadVersion(
        f"not a flow datagram this decoder reads (first bytes {bytes(datagram[:4]).hex()})"
    )


class FlowDecoder:
    """Decodes datagrams of every format for any number of exporters."""

    def __init__(self, cache: TemplateCache | None = None) -> None:
        self.cache = cache if cache is not None else TemplateCache()

    def decode(self, datagram: bytes | memoryview, exporter: Hashable, now: float) -> DecodeResult:
        """Decode one datagram from ``exporter`` (any hashable: its address) received at ``now``."""
        batch = Batch()
        batch.formats.add(self._walk(datagram, exporter, now, batch))
        batch.datagrams = 1
        return batch.result()

    def decode_many(
        self, datagrams: Iterable[tuple[bytes | memoryview, Hashable]], now: float
    ) -> DecodeResult:
        """Decode a batch of ``(datagram, exporter)``, in order, into one result.

        Datagrams are walked one by one (templates and sampling learnt from one apply to the
        next), but their records are read together, one numpy call per template: this is the
        path a collector that reads in batches should take. The records are read from the
        datagrams' own memory when the call ends, so a receive buffer must not be reused for
        the next datagram of the same batch (give each its own ``bytes``).
        """
        batch = Batch()
        walk = self._walk
        formats = batch.formats
        for index, (datagram, exporter) in enumerate(datagrams):
            batch.index = index
            mark = batch.mark()
            try:
                formats.add(walk(datagram, exporter, now, batch))
            except DecodeError as error:
                batch.rollback(mark)
                batch.failed.append((index, error))
                continue
            batch.datagrams += 1
        return batch.result()

    def _walk(
        self, datagram: bytes | memoryview, exporter: Hashable, now: float, batch: Batch
    ) -> FlowFormat:
        try:
            # The version is in the first two bytes (sFlow: the first four); this is detect()
            # without its calls, since it runs once per datagram.
            if len(datagram) >= 4 and datagram[0] == 0:
                version = datagram[1]
                if version == 10:
                    ipfix.walk(datagram, exporter, now, self.cache, batch)
                    return FlowFormat.IPFIX
                if version == 9:
                    netflow_v9.walk(datagram, exporter, now, self.cache, batch)
                    return FlowFormat.NETFLOW_V9
                if version == 5:
                    netflow_v5.walk(datagram, batch)
                    return FlowFormat.NETFLOW_V5
                if version == 0 and datagram[2] == 0 and datagram[3] == 5:
                    sflow.walk(datagram, batch)
                    return FlowFormat.SFLOW_V5
            return detect(datagram)  # raises the right error
        except (struct.error, IndexError, ValueError, OverflowError) as exc:
            # The walks check every length before reading; this is the net under that rule.
            raise Malformed(f"flow datagram could not be read: {exc}") from exc
