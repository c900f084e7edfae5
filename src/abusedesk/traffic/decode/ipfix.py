"""IPFIX (RFC 7011): a 16-byte message header, then template, options-template and data sets.

Templates and options templates are compiled and cached per (exporter, observation domain)
by :mod:`~abusedesk.traffic.decode.templates`; data sets of a known fixed-length template are
staged as they are, without looking at a record; see that module for variable-length fields,
enterprise elements, template expiry and withdrawal, sampling, and data that arrives before its
template.

Lengths are checked before they are used: a set shorter than its own header or reaching past
the message is rejected, as is a template whose field count is larger than its set. One
leniency, seen in the wild (telegraf issue 14370): a last set that runs past the header's
message length but not past the datagram is read, the datagram being what UDP delivered.
"""

from __future__ import annotations

import struct
from collections.abc import Hashable

from abusedesk.traffic.choices import FlowFormat
from abusedesk.traffic.decode import _sets
from abusedesk.traffic.decode._batch import Batch
from abusedesk.traffic.decode.errors import BadVersion, Malformed, Truncated
from abusedesk.traffic.decode.records import DecodeResult
from abusedesk.traffic.decode.templates import (
    Context,
    DomainState,
    FieldSpec,
    TemplateCache,
    TemplateKind,
    compile_template,
)

VERSION = 10
HEADER = struct.Struct("!HHIII")
HEADER_LENGTH = HEADER.size  # 16
TEMPLATE_SET = 2
OPTIONS_TEMPLATE_SET = 3
FIRST_DATA_SET = 256
_PAIR = struct.Struct("!HH")
_PEN = struct.Struct("!I")
_SCOPE = struct.Struct("!H")


def walk(
    data: bytes | memoryview, exporter: Hashable, now: float, cache: TemplateCache, batch: Batch
) -> None:
    size = len(data)
    if size < HEADER_LENGTH:
        raise Truncated(f"IPFIX header needs {HEADER_LENGTH} bytes, got {size}")
    version, length, export_s, sequence, domain = HEADER.unpack_from(data)
    if version != VERSION:
        raise BadVersion(f"not IPFIX (version {version})")
    if length < HEADER_LENGTH:
        raise Malformed(f"IPFIX message length {length} is shorter than its header")
    if length > size:
        raise Truncated(f"IPFIX message length {length}, datagram {size} bytes")
    state = cache.known.get((exporter, VERSION, domain)) or cache.domain(exporter, VERSION, domain)
    state.last_seen = now
    state.last_sequence = sequence
    view = memoryview(data)
    export_ms = export_s * 1000
    ttl = cache.ttl_s
    templates = state.templates
    context: Context | None = None
    index = batch.index
    stage = batch.data.append
    offset = HEADER_LENGTH
    limit = length
    unpack = _PAIR.unpack_from
    while limit - offset >= 4:
        set_id, set_length = unpack(view, offset)
        if set_length < 4:
            if not any(view[offset:limit]):
                break  # zero padding to the end of the message, not a set
            raise Malformed(f"IPFIX set {set_id} has length {set_length}")
        end = offset + set_length
        if end > limit:
            if end > size:
                raise Truncated(f"IPFIX set {set_id} runs past the end of the message")
            limit = end
        if set_id >= FIRST_DATA_SET:
            if context is None:
                context = (export_ms, -1, state.init_ms, state.rate, state.sampler_rates)
            template = templates.get(set_id)
            if (
                template is not None
                and template.fast
                and (ttl is None or now - template.refreshed <= ttl)
            ):
                # The common case, kept inline: a fixed-length data set is staged untouched.
                record_length = template.record_length
                if record_length:
                    count = (set_length - 4) // record_length
                    if count:
                        stop = offset + 4 + count * record_length
                        stage((template, [view[offset + 4 : stop]], count, context, index))
            elif _sets.data_set(
                cache, state, set_id, view[offset + 4 : end], context, now, batch, domain, False
            ):
                context = None  # options changed the sampling rate for the sets after this one
        elif set_id == TEMPLATE_SET:
            _templates(view[offset + 4 : end], cache, state, now, batch, domain, options=False)
        elif set_id == OPTIONS_TEMPLATE_SET:
            _templates(view[offset + 4 : end], cache, state, now, batch, domain, options=True)
        # Set ids 0, 1 (NetFlow v9's) and 4-255 are reserved: skipped by their length.
        offset = end


def _templates(
    body: memoryview,
    cache: TemplateCache,
    state: DomainState,
    now: float,
    batch: Batch,
    domain: int,
    options: bool,
) -> None:
    """Read a template or options-template set; learn, refresh or withdraw each template."""
    end = len(body)
    pos = 0
    kind = TemplateKind.OPTIONS if options else TemplateKind.DATA
    while end - pos >= 4:
        start = pos
        template_id, count = _PAIR.unpack_from(body, pos)
        pos += 4
        if count == 0:
            if template_id == 0:
                break  # zero padding at the end of the set
            cache.withdraw(state, template_id, kind)
            continue
        scope_count = 0
        if options:
            if end - pos < 2:
                raise Malformed(f"options template {template_id} runs past its set")
            scope_count = _SCOPE.unpack_from(body, pos)[0]
            pos += 2
            if not 0 < scope_count <= count:
                raise Malformed(f"options template {template_id}: scope count {scope_count}")
        if count * 4 > end - pos:
            raise Malformed(f"template {template_id} says {count} fields; its set holds fewer")
        fields_start = pos
        for _ in range(count):
            if end - pos < 4:
                raise Malformed(f"template {template_id} runs past its set")
            pos += 8 if body[pos] & 0x80 else 4
        if pos > end:
            raise Malformed(f"template {template_id} runs past its set")
        signature = bytes(body[start:pos])
        template = cache.refresh(state, template_id, signature, now)
        if template is None or template.kind is not kind:
            fields = _fields(body, fields_start, count)
            compiled = compile_template(template_id, kind, fields, scope_count, signature, now)
            template = cache.store(state, compiled)
        batch.templates += 1
        _sets.recover(cache, state, template, now, batch, domain, v9=False)


def _fields(body: memoryview, pos: int, count: int) -> tuple[FieldSpec, ...]:
    fields: list[FieldSpec] = []
    for _ in range(count):
        element, field_length = _PAIR.unpack_from(body, pos)
        pos += 4
        enterprise = 0
        if element & 0x8000:
            enterprise = _PEN.unpack_from(body, pos)[0]
            pos += 4
            element &= 0x7FFF
        fields.append(FieldSpec(element, field_length, enterprise))
    return tuple(fields)


def decode(
    datagram: bytes | memoryview, cache: TemplateCache, exporter: Hashable, now: float
) -> DecodeResult:
    """Decode one IPFIX message from ``exporter`` received at ``now`` (seconds)."""
    batch = Batch()
    walk(datagram, exporter, now, cache, batch)
    batch.datagrams = 1
    batch.formats.add(FlowFormat.IPFIX)
    return batch.result()
