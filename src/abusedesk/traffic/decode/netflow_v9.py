"""NetFlow v9 (RFC 3954): a 20-byte header, then template, options-template and data flowsets.

Shares its template machinery with IPFIX (:mod:`~abusedesk.traffic.decode.templates`); the
differences are here. The header has no message length (flowsets run to the end of the
datagram) and its count of records is not trusted for anything. Templates are keyed by the
header's source id. Fields have no enterprise numbers and no variable length. Options
templates give their scope and option fields as byte lengths, and the scope fields are v9
scope types (1 system, 2 interface, 3 line card, 4 cache, 5 template), not field types.
Times relative to sysUpTime become epoch milliseconds through the header's pair of sysUpTime
and export time.
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

VERSION = 9
HEADER = struct.Struct("!HHIIII")
HEADER_LENGTH = HEADER.size  # 20
TEMPLATE_FLOWSET = 0
OPTIONS_TEMPLATE_FLOWSET = 1
FIRST_DATA_FLOWSET = 256
_PAIR = struct.Struct("!HH")
_OPTIONS = struct.Struct("!HHH")


def walk(
    data: bytes | memoryview, exporter: Hashable, now: float, cache: TemplateCache, batch: Batch
) -> None:
    size = len(data)
    if size < HEADER_LENGTH:
        raise Truncated(f"NetFlow v9 header needs {HEADER_LENGTH} bytes, got {size}")
    version, _count, uptime, secs, sequence, source_id = HEADER.unpack_from(data)
    if version != VERSION:
        raise BadVersion(f"not NetFlow v9 (version {version})")
    state = cache.known.get((exporter, VERSION, source_id)) or cache.domain(
        exporter, VERSION, source_id
    )
    state.last_seen = now
    state.last_sequence = sequence
    view = memoryview(data)
    export_ms = secs * 1000
    ttl = cache.ttl_s
    templates = state.templates
    context: Context | None = None
    index = batch.index
    stage = batch.data.append
    offset = HEADER_LENGTH
    unpack = _PAIR.unpack_from
    while size - offset >= 4:
        set_id, set_length = unpack(view, offset)
        if set_length < 4:
            if not any(view[offset:size]):
                break  # zero padding to the end of the datagram, not a flowset
            raise Malformed(f"NetFlow v9 flowset {set_id} has length {set_length}")
        end = offset + set_length
        if end > size:
            raise Truncated(f"NetFlow v9 flowset {set_id} runs past the end of the datagram")
        if set_id >= FIRST_DATA_FLOWSET:
            if context is None:
                context = (export_ms, uptime, 0, state.rate, state.sampler_rates)
            template = templates.get(set_id)
            if (
                template is not None
                and template.fast
                and (ttl is None or now - template.refreshed <= ttl)
            ):
                record_length = template.record_length
                if record_length:
                    count = (set_length - 4) // record_length
                    if count:
                        stop = offset + 4 + count * record_length
                        stage((template, [view[offset + 4 : stop]], count, context, index))
            elif _sets.data_set(
                cache, state, set_id, view[offset + 4 : end], context, now, batch, source_id, True
            ):
                context = None
        elif set_id == TEMPLATE_FLOWSET:
            _templates(view[offset + 4 : end], cache, state, now, batch, source_id)
        elif set_id == OPTIONS_TEMPLATE_FLOWSET:
            _options_templates(view[offset + 4 : end], cache, state, now, batch, source_id)
        offset = end


def _templates(
    body: memoryview,
    cache: TemplateCache,
    state: DomainState,
    now: float,
    batch: Batch,
    source_id: int,
) -> None:
    end = len(body)
    pos = 0
    while end - pos >= 4:
        start = pos
        template_id, count = _PAIR.unpack_from(body, pos)
        pos += 4
        if count == 0:
            if template_id == 0:
                break  # zero padding at the end of the flowset
            raise Malformed(f"NetFlow v9 template {template_id} has no fields")
        if count * 4 > end - pos:
            raise Malformed(f"template {template_id} says {count} fields; its flowset holds fewer")
        fields_at = pos
        pos += 4 * count
        _learn(
            cache,
            state,
            now,
            batch,
            source_id,
            template_id,
            TemplateKind.DATA,
            body,
            fields_at,
            count,
            0,
            bytes(body[start:pos]),
        )


def _options_templates(
    body: memoryview,
    cache: TemplateCache,
    state: DomainState,
    now: float,
    batch: Batch,
    source_id: int,
) -> None:
    end = len(body)
    pos = 0
    while end - pos >= _OPTIONS.size:
        start = pos
        template_id, scope_length, option_length = _OPTIONS.unpack_from(body, pos)
        pos += _OPTIONS.size
        if template_id == 0 and scope_length == 0 and option_length == 0:
            break  # padding
        if scope_length % 4 or option_length % 4:
            raise Malformed(f"options template {template_id}: lengths not multiples of 4")
        if scope_length + option_length > end - pos:
            raise Malformed(f"options template {template_id} runs past its flowset")
        count = (scope_length + option_length) // 4
        fields_at = pos
        pos += scope_length + option_length
        _learn(
            cache,
            state,
            now,
            batch,
            source_id,
            template_id,
            TemplateKind.OPTIONS,
            body,
            fields_at,
            count,
            scope_length // 4,
            bytes(body[start:pos]),
        )


def _learn(
    cache: TemplateCache,
    state: DomainState,
    now: float,
    batch: Batch,
    source_id: int,
    template_id: int,
    kind: TemplateKind,
    body: memoryview,
    fields_at: int,
    count: int,
    scope_count: int,
    signature: bytes,
) -> None:
    template = cache.refresh(state, template_id, signature, now)
    if template is None or template.kind is not kind:
        pairs = (_PAIR.unpack_from(body, fields_at + 4 * i) for i in range(count))
        fields = tuple(FieldSpec(element, length, enterprise=0) for element, length in pairs)
        # NetFlow v9 has no variable-length encoding, and no room for a 65535-byte field.
        if any(f.variable for f in fields):
            raise Malformed(f"NetFlow v9 template {template_id} has a field of length 65535")
        compiled = compile_template(template_id, kind, fields, scope_count, signature, now)
        template = cache.store(state, compiled)
    batch.templates += 1
    _sets.recover(cache, state, template, now, batch, source_id, v9=True)


def decode(
    datagram: bytes | memoryview, cache: TemplateCache, exporter: Hashable, now: float
) -> DecodeResult:
    """Decode one NetFlow v9 datagram from ``exporter`` received at ``now`` (seconds)."""
    batch = Batch()
    walk(datagram, exporter, now, cache, batch)
    batch.datagrams = 1
    batch.formats.add(FlowFormat.NETFLOW_V9)
    return batch.result()
