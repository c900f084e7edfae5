"""What NetFlow v9 and IPFIX share: the datagram walk, template sets, data sets, held sets.

The two formats lay out their sets alike (a 16-bit id and length, then a body) and their
template sets alike (an id and a field count, then pairs of element and length). What tells
them apart is a :class:`Dialect`: the header, the set ids, the words of the error texts, and
the v9 rules (no message length, sysUpTime in the header, no enterprise bit, no variable
length, no withdrawal, an options-template layout of its own, scope types for elements).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Protocol

from abusedesk.traffic.choices import FlowFormat
from abusedesk.traffic.decode._batch import Batch
from abusedesk.traffic.decode.errors import BadVersion, Malformed, Truncated, UnknownTemplate
from abusedesk.traffic.decode.records import DecodeResult
from abusedesk.traffic.decode.templates import (
    Context,
    DomainState,
    FieldSpec,
    HeldSet,
    Template,
    TemplateCache,
    TemplateKind,
    compile_template,
)

FIRST_DATA_SET = 256  # in both formats; the ids below are template sets or reserved
_PAIR = struct.Struct("!HH")
_PEN = struct.Struct("!I")
_SCOPE = struct.Struct("!H")

# Reads one options-template set: its body, the cache, the domain, now, the batch, domain id.
OptionsReader = Callable[[memoryview, TemplateCache, DomainState, float, Batch, int], None]


@dataclass(frozen=True, slots=True)
class Dialect:
    """NetFlow v9 or IPFIX, as far as the walk needs to tell them apart."""

    name: str  # how error texts name the format
    version: int  # the header's first field; also part of the template cache's key
    header: struct.Struct  # fields as in each format's module; v9's has one more
    template_set: int
    options_set: int
    set_word: str  # "flowset" in v9's words, "set" in IPFIX's
    unit: str  # what a set must not run past: the v9 datagram, the IPFIX message
    v9: bool
    read_options: OptionsReader


class Walk(Protocol):
    """Walk one datagram from ``exporter`` received at ``now``, staging into ``batch``."""

    def __call__(
        self,
        data: bytes | memoryview,
        exporter: Hashable,
        now: float,
        cache: TemplateCache,
        batch: Batch,
    ) -> None: ...


def walker(dialect: Dialect) -> Walk:
    """The walk of one dialect, made once per format at import.

    A closure rather than a function taking the dialect: the walk runs once per datagram, and
    an extra call and the dialect's attribute reads there cost about 3% of NetFlow v9's decode
    speed against a walk of its own; this way about 2%.
    """
    name = dialect.name
    version = dialect.version
    header = dialect.header
    header_length = header.size
    v9 = dialect.v9
    template_set_id = dialect.template_set
    options_set_id = dialect.options_set
    read_options = dialect.read_options

    def walk(
        data: bytes | memoryview, exporter: Hashable, now: float, cache: TemplateCache, batch: Batch
    ) -> None:
        size = len(data)
        if size < header_length:
            raise Truncated(f"{name} header needs {header_length} bytes, got {size}")
        if v9:
            seen, _count, uptime, export_s, sequence, domain = header.unpack_from(data)
            limit = size  # no message length: flowsets run to the end of the datagram
        else:
            seen, limit, export_s, sequence, domain = header.unpack_from(data)
            uptime = -1  # no sysUpTime: relative times go through systemInitTimeMilliseconds
        if seen != version:
            raise BadVersion(f"not {name} (version {seen})")
        if not v9:
            if limit < header_length:
                raise Malformed(f"IPFIX message length {limit} is shorter than its header")
            if limit > size:
                raise Truncated(f"IPFIX message length {limit}, datagram {size} bytes")
        state = cache.known.get((exporter, version, domain)) or cache.domain(
            exporter, version, domain
        )
        state.last_seen = now
        state.last_sequence = sequence
        view = memoryview(data)
        export_ms = export_s * 1000
        ttl = cache.ttl_s
        templates = state.templates
        context: Context | None = None
        index = batch.index
        stage = batch.data.append
        offset = header_length
        unpack = _PAIR.unpack_from
        while limit - offset >= 4:
            set_id, set_length = unpack(view, offset)
            if set_length < 4:
                if not any(view[offset:limit]):
                    break  # zero padding to the end of the message, not a set
                raise Malformed(f"{name} {dialect.set_word} {set_id} has length {set_length}")
            end = offset + set_length
            if end > limit:
                # Read all the same when the datagram holds it: the datagram is what UDP
                # delivered, and some IPFIX exporters get the message length wrong.
                if end > size:
                    raise Truncated(
                        f"{name} {dialect.set_word} {set_id} runs past the end of the"
                        f" {dialect.unit}"
                    )
                limit = end
            if set_id >= FIRST_DATA_SET:
                if context is None:
                    # v9 times are relative to the header's sysUpTime, never to an init time.
                    init_ms = 0 if v9 else state.init_ms
                    context = (export_ms, uptime, init_ms, state.rate, state.sampler_rates)
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
                elif data_set(
                    cache, state, set_id, view[offset + 4 : end], context, now, batch, domain, v9
                ):
                    context = None  # options changed the sampling rate for the sets after it
            elif set_id == template_set_id:
                body = view[offset + 4 : end]
                template_set(body, cache, state, now, batch, domain, dialect, False)
            elif set_id == options_set_id:
                read_options(view[offset + 4 : end], cache, state, now, batch, domain)
            # Other ids below 256 are reserved (in IPFIX, 0 and 1 are v9's): skipped.
            offset = end

    return walk


def decode_one(
    walk: Walk,
    flow_format: FlowFormat,
    datagram: bytes | memoryview,
    cache: TemplateCache,
    exporter: Hashable,
    now: float,
) -> DecodeResult:
    """Decode one datagram with ``walk`` into a result of its own."""
    batch = Batch()
    walk(datagram, exporter, now, cache, batch)
    batch.datagrams = 1
    batch.formats.add(flow_format)
    return batch.result()


def template_set(
    body: memoryview,
    cache: TemplateCache,
    state: DomainState,
    now: float,
    batch: Batch,
    domain: int,
    dialect: Dialect,
    options: bool,
) -> None:
    """Read a template set (an IPFIX options-template set with ``options``).

    Each template is learnt, refreshed or (IPFIX) withdrawn.
    """
    end = len(body)
    pos = 0
    kind = TemplateKind.OPTIONS if options else TemplateKind.DATA
    v9 = dialect.v9
    while end - pos >= 4:
        start = pos
        template_id, count = _PAIR.unpack_from(body, pos)
        pos += 4
        if count == 0:
            if template_id == 0:
                break  # zero padding at the end of the set
            if v9:
                raise Malformed(f"{dialect.name} template {template_id} has no fields")
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
            raise Malformed(
                f"template {template_id} says {count} fields; its {dialect.set_word} holds fewer"
            )
        fields_at = pos
        if v9:
            pos += 4 * count
        else:
            # An IPFIX field with the enterprise bit carries a 4-byte enterprise number.
            for _ in range(count):
                if end - pos < 4:
                    raise Malformed(f"template {template_id} runs past its set")
                pos += 8 if body[pos] & 0x80 else 4
            if pos > end:
                raise Malformed(f"template {template_id} runs past its set")
        learn(
            cache,
            state,
            now,
            batch,
            domain,
            dialect,
            template_id,
            kind,
            body,
            fields_at,
            count,
            scope_count,
            bytes(body[start:pos]),
        )


def learn(
    cache: TemplateCache,
    state: DomainState,
    now: float,
    batch: Batch,
    domain: int,
    dialect: Dialect,
    template_id: int,
    kind: TemplateKind,
    body: memoryview,
    fields_at: int,
    count: int,
    scope_count: int,
    signature: bytes,
) -> None:
    """Take one template whose ``count`` fields start at ``fields_at`` in ``body``.

    ``signature`` is its definition's bytes: one seen before only has its refresh time moved,
    which spares the compile (routers resend every template every few seconds).
    """
    template = cache.refresh(state, template_id, signature, now)
    if template is None or template.kind is not kind:
        fields = _fields(body, fields_at, count, enterprise_bit=not dialect.v9)
        # NetFlow v9 has no variable-length encoding, and no room for a 65535-byte field.
        if dialect.v9 and any(f.variable for f in fields):
            raise Malformed(f"{dialect.name} template {template_id} has a field of length 65535")
        compiled = compile_template(template_id, kind, fields, scope_count, signature, now)
        template = cache.store(state, compiled)
    batch.templates += 1
    recover(cache, state, template, now, batch, domain, dialect.v9)


def _fields(body: memoryview, pos: int, count: int, enterprise_bit: bool) -> tuple[FieldSpec, ...]:
    fields: list[FieldSpec] = []
    for _ in range(count):
        element, field_length = _PAIR.unpack_from(body, pos)
        pos += 4
        enterprise = 0
        # In v9 the top bit is part of the field type (vendor types such as Cisco's 33000+).
        if enterprise_bit and element & 0x8000:
            enterprise = _PEN.unpack_from(body, pos)[0]
            pos += 4
            element &= 0x7FFF
        fields.append(FieldSpec(element, field_length, enterprise))
    return tuple(fields)


def data_set(
    cache: TemplateCache,
    state: DomainState,
    template_id: int,
    body: memoryview,
    context: Context,
    now: float,
    batch: Batch,
    domain: int,
    v9: bool,
) -> bool:
    """Decode (or hold) one data set by its template; True if it taught the domain options."""
    template = cache.find(state, template_id, now)
    if template is None:
        early = HeldSet(template_id, bytes(body), context, now)
        held = cache.hold(state, early)
        if held:
            batch.held.append((state, early))
        what = "held for its template" if held else "dropped: the hold buffer is full"
        batch.problems.append(
            UnknownTemplate(
                f"data set for unknown template {template_id} in domain {domain}, {what}",
                template_id,
                domain,
                held,
            )
        )
        return False
    return with_template(template, state, body, context, batch, domain, v9) < 0


def with_template(
    template: Template,
    state: DomainState,
    body: memoryview,
    context: Context,
    batch: Batch,
    domain: int,
    v9: bool,
) -> int:
    """Stage a data set's records; returns their count, or minus the count of options records."""
    if template.kind is TemplateKind.DATA:
        if template.runs is None:
            count = template.count(len(body))
            if count:
                assert template.record_length is not None
                batch.data.append(
                    (
                        template,
                        [body[: count * template.record_length]],
                        count,
                        context,
                        batch.index,
                    )
                )
            return count
        parts, count = template.fixed_parts(body)
        if count:
            batch.data.append((template, parts, count, context, batch.index))
        return count
    records = template.options_records(body, domain, v9_scope=v9)
    for record in records:
        state.learn(record, scope_has_elements=not v9)
    batch.options.extend(records)
    return -len(records)


def recover(
    cache: TemplateCache,
    state: DomainState,
    template: Template,
    now: float,
    batch: Batch,
    domain: int,
    v9: bool,
) -> None:
    """A template has arrived: decode the data sets that were held waiting for it."""
    for held in cache.take_held(state, template.template_id, now):
        count = with_template(
            template, state, memoryview(held.body), held.context, batch, domain, v9
        )
        if count > 0:
            batch.recovered += count
