"""NetFlow v9 and IPFIX templates: compiled once into numpy dtypes, cached per exporter.

A template is compiled once, when it arrives, into:

* a big-endian numpy structured dtype whose ``itemsize`` is the record length and whose named
  fields are only the elements the flow layout uses (the rest of the record is skipped by the
  offsets), so a whole data set is one ``np.frombuffer``;
* a mapping plan (:meth:`Template.to_flows`) that fills :data:`FLOW_DTYPE` columns from those
  fields with a fixed handful of vectorised numpy operations, converting times and addresses.

Templates with variable-length fields (IPFIX, RFC 7011 §7) take a slower path: each record is
walked in Python to cut out its variable-length fields, the fixed parts are joined, and the
result goes through the same dtype and plan.

Enterprise-specific elements (an IPFIX field with the enterprise bit, kept as ``(pen, id)``)
are compiled into the record length and skipped: the flow layout has no column for them. In
options records they are kept raw under ``(pen, id)``. RFC 5103 reverse elements
(PEN 29305) are enterprise elements here too: a biflow becomes one flow with its forward
counters.

The cache is keyed by (exporter, version, observation domain / source id) and then template
id. A template that arrives again with the same definition only has its refresh time moved;
a changed definition is compiled anew. A template not sent again for ``ttl_s`` seconds
(RFC 7011 §8.4; 30 minutes by default) is forgotten; times are passed in, never read.

Data before its template: the data set is held (copied, with its header context) in a small
per-domain buffer, bounded in sets and in age, and decoded when the template arrives, with
the records counted in ``DecodeResult.recovered``. Routers resend templates every few seconds
or minutes, so without the hold a collector that restarts loses that much traffic from every
exporter. What does not fit is dropped and reported as ``UnknownTemplate(held=False)``.

Sampling: options records teach a domain its sampling rate, from samplingInterval (34),
samplerRandomInterval (50), samplingPacketInterval/Space (305/306), samplingSize/Population
(309/310) or samplingProbability (311). With a samplerId (48) or selectorId (302) the rate
belongs to that sampler, and data records that carry 48 or 302 look it up; otherwise it is the
domain's rate for every later record. A data record that carries samplingInterval (34) itself
uses its own. The algorithm (35, 49, 304) does not change the multiplier and is only kept in
the options record. systemInitTimeMilliseconds (160) lets IPFIX sysUpTime-relative times
(21/22) become absolute.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from abusedesk.traffic.choices import Direction
from abusedesk.traffic.decode.errors import Malformed
from abusedesk.traffic.decode.records import (
    FLOW_DTYPE,
    V4_MAPPED,
    ElementKey,
    FlowArray,
    OptionsRecord,
)

VARIABLE = 0xFFFF  # RFC 7011 §7: the field length that announces a variable-length field
MAX_TEMPLATES_PER_DOMAIN = 1024
MAX_DOMAINS_PER_EXPORTER = 256
NTP_UNIX_OFFSET_S = 2_208_988_800  # seconds from 1900-01-01 (NTP era 0) to 1970-01-01
_U32 = 1 << 32
_U16 = struct.Struct("!H")


class TemplateKind(Enum):
    DATA = "data"
    OPTIONS = "options"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of a template: an element id, its length, and its enterprise number (0: IANA)."""

    element: int
    length: int
    enterprise: int = 0

    @property
    def key(self) -> ElementKey:
        return (self.enterprise, self.element) if self.enterprise else self.element

    @property
    def variable(self) -> bool:
        return self.length == VARIABLE


# Each flow-layout role and the IANA elements that can fill it, best first; and the lengths an
# element must have to be read for it (integers may use reduced-size encoding, RFC 7011 §6.2).
_INT = (1, 2, 3, 4, 5, 6, 7, 8)
_ROLES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "src4": ((8,), (4,)),
    "dst4": ((12,), (4,)),
    "src6": ((27,), (16,)),
    "dst6": ((28,), (16,)),
    "src_port": ((7, 180, 182), _INT),
    "dst_port": ((11, 181, 183), _INT),
    "protocol": ((4,), _INT),
    "tcp_flags": ((6,), _INT),
    "tos": ((5,), _INT),
    # Delta counts first; total counts (85, 86) only when an exporter sends nothing else.
    "packets": ((2, 86), _INT),
    "bytes": ((1, 85), _INT),
    "in_if": ((10,), _INT),
    "out_if": ((14,), _INT),
    "direction": ((61,), _INT),
    "ip_version": ((60,), _INT),
    "start_ms": ((152,), _INT),
    "end_ms": ((153,), _INT),
    "start_s": ((150,), _INT),
    "end_s": ((151,), _INT),
    "start_us": ((154,), (8,)),
    "end_us": ((155,), (8,)),
    "start_ns": ((156,), (8,)),
    "end_ns": ((157,), (8,)),
    "start_delta_us": ((158,), _INT),
    "end_delta_us": ((159,), _INT),
    "start_uptime": ((22,), _INT),
    "end_uptime": ((21,), _INT),
    "rate": ((34,), _INT),
    "sampler": ((48, 302), _INT),
}


# What a data set's records need from their datagram and domain, taken when it arrived, as a
# plain tuple (one is made per data set, on the hot path): export time in epoch ms; the NetFlow
# v9 header's sysUpTime, or -1 for IPFIX; IPFIX systemInitTimeMilliseconds learnt from options
# (0 unknown); the domain's sampling rate (0 unknown); and its sampler table, a snapshot (the
# domain replaces that dict, never mutates it).
Context = tuple[int, int, int, int, dict[int, int]]
# Literal indices, so that the checker knows which element of a Context each one reads.
EXPORT_MS: Final = 0
UPTIME_MS: Final = 1
INIT_MS: Final = 2
RATE: Final = 3
SAMPLERS: Final = 4


class Template:
    """A compiled template. Build with :func:`compile_template`."""

    __slots__ = (
        "dtype",
        "fast",
        "fields",
        "fixed_length",
        "kind",
        "min_length",
        "odd",
        "plain",
        "record_length",
        "refreshed",
        "roles",
        "runs",
        "scope_count",
        "signature",
        "template_id",
    )

    def __init__(
        self,
        template_id: int,
        kind: TemplateKind,
        fields: tuple[FieldSpec, ...],
        scope_count: int,
        signature: bytes,
        refreshed: float,
    ) -> None:
        self.template_id = template_id
        self.kind = kind
        self.fields = fields
        self.scope_count = scope_count
        self.signature = signature
        self.refreshed = refreshed
        variable = any(f.variable for f in fields)
        fixed = [f for f in fields if not f.variable]
        # Runs of fixed bytes between variable fields: the slow path copies these and skips
        # the rest; the fixed-only layout they add up to is what the dtype describes.
        runs: list[int] = [0]
        for f in fields:
            if f.variable:
                runs.append(0)
            else:
                runs[-1] += f.length
        self.runs: tuple[int, ...] | None = tuple(runs) if variable else None
        fixed_length = sum(f.length for f in fixed)
        self.fixed_length = fixed_length
        self.record_length: int | None = None if variable else fixed_length
        self.min_length = fixed_length + sum(1 for f in fields if f.variable)
        self.roles: dict[str, tuple[str, int]] = {}
        self.dtype = self._compile(fixed, fixed_length) if kind is TemplateKind.DATA else None
        # Columns copied as they are: those of a numpy integer width go in one multi-field
        # assignment (a quarter faster than one per field); odd widths are assembled.
        present = [role for role in _PLAIN if role in self.roles]
        self.plain = [role for role in present if self.roles[role][1] in (1, 2, 4, 8)]
        self.odd = [role for role in present if self.roles[role][1] not in (1, 2, 4, 8)]
        # The walks' inline path: a data template of fixed length, staged without a call.
        self.fast = kind is TemplateKind.DATA and not variable

    @property
    def variable(self) -> bool:
        return self.runs is not None

    def _compile(self, fixed: list[FieldSpec], itemsize: int) -> np.dtype:
        offsets: dict[int, tuple[int, int]] = {}
        at = 0
        for f in fixed:
            if f.enterprise == 0 and f.element not in offsets:
                offsets[f.element] = (at, f.length)
            at += f.length
        names: list[str] = []
        formats: list[object] = []
        places: list[int] = []
        for role, (elements, lengths) in _ROLES.items():
            for element in elements:
                found = offsets.get(element)
                if found is None or found[1] not in lengths:
                    continue
                offset, length = found
                names.append(role)
                formats.append(_numpy_format(role, length))
                places.append(offset)
                self.roles[role] = (role, length)
                break
        return np.dtype(
            {"names": names, "formats": formats, "offsets": places, "itemsize": max(itemsize, 1)}
        )

    # ------------------------------------------------------------------ data records

    def count(self, set_length: int) -> int:
        """Records in a data set body of ``set_length`` bytes of a fixed-length template."""
        assert self.record_length is not None
        return set_length // self.record_length if self.record_length else 0

    def fixed_parts(self, body: memoryview) -> tuple[list[memoryview], int]:
        """Cut the variable-length fields out of every record of a data set body.

        Returns the fixed parts, in order (joined, they form records of the fixed-only
        layout), and the record count. What is left after the last whole record must be
        shorter than the shortest possible record: it is padding (RFC 7011 §3.3.1).
        """
        runs = self.runs
        assert runs is not None
        parts: list[memoryview] = []
        end = len(body)
        pos = 0
        count = 0
        min_length = self.min_length
        last = runs[-1]
        inner = runs[:-1]
        while end - pos >= min_length and min_length:
            for run in inner:
                if run:
                    parts.append(body[pos : pos + run])
                    pos += run
                if pos >= end:
                    raise Malformed(f"template {self.template_id}: record runs past its set")
                length = body[pos]
                pos += 1
                if length == 255:
                    if pos + 2 > end:
                        raise Malformed(f"template {self.template_id}: record runs past its set")
                    length = _U16.unpack_from(body, pos)[0]
                    pos += 2
                pos += length
            if last:
                parts.append(body[pos : pos + last])
                pos += last
            if pos > end:
                raise Malformed(f"template {self.template_id}: record runs past its set")
            count += 1
        return parts, count

    def to_flows(self, raw: np.ndarray, ctx: _RecordContext) -> FlowArray:
        """Fill the flow layout from records of this template's dtype: a few column operations."""
        n = raw.shape[0]
        out = np.zeros(n, dtype=FLOW_DTYPE)
        roles = self.roles
        self._addresses(raw, out, roles)
        if self.plain:
            out[self.plain] = raw[self.plain]
        for role in self.odd:
            out[role] = _uint(raw, *roles[role])
        if "tcp_flags" in roles:
            name, length = roles["tcp_flags"]
            out["tcp_flags"] = raw[name] if length == 1 else _uint(raw, name, length) & 0xFF
        if "direction" in roles:
            name, length = roles["direction"]
            value = raw[name] if length == 1 else np.minimum(_uint(raw, name, length), 255)
            out["direction"] = _DIRECTIONS.take(value)
        out["first_ms"] = self._time(raw, ctx, "start")
        out["last_ms"] = self._time(raw, ctx, "end")
        out["sampling_rate"] = self._rates(raw, ctx)
        return out

    def _addresses(
        self, raw: np.ndarray, out: np.ndarray, roles: dict[str, tuple[str, int]]
    ) -> None:
        has4 = "src4" in roles or "dst4" in roles
        has6 = "src6" in roles or "dst6" in roles
        v6: npt.NDArray[np.bool_] | None = None
        if has4:
            if "src4" in roles:
                np.bitwise_or(raw["src4"], np.uint64(V4_MAPPED), out=out["src_lo"])
            if "dst4" in roles:
                np.bitwise_or(raw["dst4"], np.uint64(V4_MAPPED), out=out["dst_lo"])
            out["ip_version"] = 4
        if has6:
            if has4:
                v6 = self._is_v6(raw, roles)
            for side in ("src", "dst"):
                role = side + "6"
                if role not in roles:
                    continue
                halves = raw[role]
                if v6 is not None:
                    out[side + "_hi"] = np.where(v6, halves[:, 0], out[side + "_hi"])
                    out[side + "_lo"] = np.where(v6, halves[:, 1], out[side + "_lo"])
                else:
                    out[side + "_hi"] = halves[:, 0]
                    out[side + "_lo"] = halves[:, 1]
            out["ip_version"] = 6 if v6 is None else np.where(v6, 6, 4)

    @staticmethod
    def _is_v6(raw: np.ndarray, roles: dict[str, tuple[str, int]]) -> npt.NDArray[np.bool_]:
        """For a template with both address families: which records are IPv6."""
        if "ip_version" in roles:
            return np.asarray(_uint(raw, *roles["ip_version"]) == 6)
        v4_set = np.zeros(raw.shape[0], dtype=bool)
        for role in ("src4", "dst4"):
            if role in roles:
                v4_set |= raw[role] != 0
        return ~v4_set

    def _time(self, raw: np.ndarray, ctx: _RecordContext, side: str) -> npt.NDArray[np.int64] | int:
        roles = self.roles
        if side + "_ms" in roles:
            return _uint(raw, *roles[side + "_ms"])  # the assignment casts to int64
        if side + "_s" in roles:
            return _uint(raw, *roles[side + "_s"]).astype(np.int64) * 1000
        for unit in ("_us", "_ns"):
            if side + unit in roles:
                ntp = raw[side + unit].astype(np.uint64)
                seconds = (ntp >> np.uint64(32)).astype(np.int64) - NTP_UNIX_OFFSET_S
                fraction = ((ntp & np.uint64(0xFFFF_FFFF)) * np.uint64(1000)) >> np.uint64(32)
                return np.where(ntp == 0, 0, seconds * 1000 + fraction.astype(np.int64))
        if side + "_delta_us" in roles:
            delta = _uint(raw, *roles[side + "_delta_us"]).astype(np.int64) // 1000
            return ctx.export_ms() - delta
        if side + "_uptime" in roles:
            return ctx.from_uptime(_uint(raw, *roles[side + "_uptime"]))
        return 0

    def _rates(self, raw: np.ndarray, ctx: _RecordContext) -> npt.NDArray[np.int64] | int:
        roles = self.roles
        if "rate" in roles:
            own = _uint(raw, *roles["rate"]).astype(np.int64)
            return np.where(own > 0, own, ctx.rates())
        if "sampler" in roles:
            return ctx.sampler_rates(_uint(raw, *roles["sampler"]))
        return ctx.rates()

    # ------------------------------------------------------------------ options records

    def options_records(self, body: memoryview, domain: int, v9_scope: bool) -> list[OptionsRecord]:
        """Every record of an options data set, values raw (this path is rare and small)."""
        fields = self.fields
        records: list[OptionsRecord] = []
        end = len(body)
        pos = 0
        min_length = self.min_length
        while min_length and end - pos >= min_length:
            scope: dict[ElementKey, bytes] = {}
            values: dict[ElementKey, bytes] = {}
            for i, f in enumerate(fields):
                length = f.length
                if length == VARIABLE:
                    if pos >= end:
                        raise Malformed(f"template {self.template_id}: record runs past its set")
                    length = body[pos]
                    pos += 1
                    if length == 255:
                        if pos + 2 > end:
                            raise Malformed(
                                f"template {self.template_id}: record runs past its set"
                            )
                        length = _U16.unpack_from(body, pos)[0]
                        pos += 2
                if pos + length > end:
                    raise Malformed(f"template {self.template_id}: record runs past its set")
                value = bytes(body[pos : pos + length])
                pos += length
                if i < self.scope_count:
                    scope.setdefault(f.key, value)
                else:
                    values.setdefault(f.key, value)
            records.append(OptionsRecord(self.template_id, domain, scope, values))
        return records


def _numpy_format(role: str, length: int) -> object:
    if role in ("src6", "dst6"):
        return (">u8", (2,))
    if length in (1, 2, 4, 8):
        return f">u{length}"
    return ("u1", (length,))


def _uint(raw: np.ndarray, name: str, length: int) -> np.ndarray:
    """An unsigned big-endian field of any length from 1 to 8 bytes, as numbers."""
    column = raw[name]
    if length in (1, 2, 4, 8):
        return column
    value = np.zeros(raw.shape[0], dtype=np.uint64)
    for i in range(length):
        value = (value << np.uint64(8)) | column[:, i]
    return value


# flowDirection (61): 0 ingress, 1 egress; anything else is unknown.
_DIRECTIONS = np.zeros(256, dtype=np.uint8)
_DIRECTIONS[0], _DIRECTIONS[1] = Direction.INGRESS, Direction.EGRESS

# Roles whose name is their column's, filled by a plain copy.
_PLAIN = ("src_port", "dst_port", "protocol", "tos", "packets", "bytes", "in_if", "out_if")


class _RecordContext:
    """Per-record context of a group of data sets, computed only when a template asks.

    A value that is the same for every set of the group (the usual case within one batch)
    stays a scalar, which numpy broadcasts for free.
    """

    __slots__ = ("_contexts", "_counts")

    def __init__(self, contexts: Sequence[Context], counts: Sequence[int]) -> None:
        self._contexts = contexts
        self._counts = counts

    def _per_record(self, field: Literal[0, 1, 2, 3]) -> npt.NDArray[np.int64] | int:
        contexts = self._contexts
        first = contexts[0][field]
        for context in contexts:
            if context[field] != first:
                values = np.asarray([c[field] for c in contexts], dtype=np.int64)
                return np.repeat(values, self._counts)
        return first

    def export_ms(self) -> npt.NDArray[np.int64] | int:
        return self._per_record(EXPORT_MS)

    def rates(self) -> npt.NDArray[np.int64] | int:
        return self._per_record(RATE)

    def from_uptime(self, ticks: np.ndarray) -> npt.NDArray[np.int64]:
        """sysUpTime milliseconds to epoch milliseconds.

        NetFlow v9: the header pairs sysUpTime with the export time. The distance back from
        the header's uptime is taken modulo 2**32, so that a wrapped counter still works, and
        read as signed, so that a time a little after the export (clock skew) stays one.
        IPFIX: from systemInitTimeMilliseconds when an options record has given it, else 0;
        the uptime at export is then the export time less the init time, read the same way
        (a router up for more than 49.7 days wraps the counter; softflowd replaying a capture
        gives flows that started before its own init time).
        """
        uptime = self._per_record(UPTIME_MS)
        export = self.export_ms()
        ticks32 = ticks.astype(np.uint32)
        if np.all(np.asarray(uptime) >= 0):
            back = (np.asarray(uptime).astype(np.uint32) - ticks32).view(np.int32)
            return export - back.astype(np.int64)
        init = np.asarray(self._per_record(INIT_MS), dtype=np.int64)
        since_init = (np.asarray(export, dtype=np.int64) - init).astype(np.uint32)
        v10 = np.where(init > 0, export - (since_init - ticks32).view(np.int32).astype(np.int64), 0)
        if np.all(np.asarray(uptime) < 0):
            return v10
        back = (np.asarray(uptime).astype(np.uint32) - ticks32).view(np.int32)
        v9 = export - back.astype(np.int64)
        return np.where(np.asarray(uptime) >= 0, v9, v10)

    def sampler_rates(self, samplers: np.ndarray) -> npt.NDArray[np.int64] | int:
        tables = {id(c[SAMPLERS]): c[SAMPLERS] for c in self._contexts}
        if not any(tables.values()):
            return self.rates()
        counts = self._counts
        rates = np.repeat(np.asarray([c[RATE] for c in self._contexts], dtype=np.int64), counts)
        owner = None
        if len(tables) > 1:
            owner = np.repeat(
                np.asarray([id(c[SAMPLERS]) for c in self._contexts], dtype=np.int64), counts
            )
        samplers = samplers.astype(np.int64)
        for key, table in tables.items():
            if not table:
                continue
            ids = np.fromiter(table.keys(), dtype=np.int64, count=len(table))
            values = np.fromiter(table.values(), dtype=np.int64, count=len(table))
            order = np.argsort(ids)
            ids, values = ids[order], values[order]
            slot = np.clip(np.searchsorted(ids, samplers), 0, ids.size - 1)
            hit = ids[slot] == samplers
            if owner is not None:
                hit &= owner == key
            rates = np.where(hit, values[slot], rates)
        return rates


def compile_template(
    template_id: int,
    kind: TemplateKind,
    fields: tuple[FieldSpec, ...],
    scope_count: int,
    signature: bytes,
    now: float,
) -> Template:
    if template_id < 256:
        raise Malformed(f"template id {template_id} is reserved (below 256)")
    if not fields:
        raise Malformed(f"template {template_id} has no fields")
    return Template(template_id, kind, fields, scope_count, signature, now)


# ---------------------------------------------------------------------- the cache


@dataclass(frozen=True, slots=True, eq=False)
class HeldSet:
    """A data set that arrived before its template, waiting for it."""

    template_id: int
    body: bytes
    context: Context
    received: float


@dataclass(eq=False, slots=True)
class DomainState:
    """What one exporter's observation domain (IPFIX) or source id (v9) has taught us."""

    templates: dict[int, Template] = field(default_factory=dict)
    rate: int = 0
    sampler_rates: dict[int, int] = field(default_factory=dict)
    init_ms: int = 0
    held: deque[HeldSet] = field(default_factory=deque)
    last_sequence: int | None = None
    last_seen: float = 0.0

    def learn(self, record: OptionsRecord, scope_has_elements: bool) -> None:
        """Take sampling and system-init time from one options record.

        NetFlow v9 scope fields are scope types, not elements, so only IPFIX scopes are read.
        """
        source = {**record.scope, **record.values} if scope_has_elements else record.values

        def number(key: int) -> int | None:
            raw = source.get(key)
            return None if raw is None else _as_uint(raw)

        init = number(160)
        if init:
            self.init_ms = init
        rate = _rate_of(number, source)
        if not rate:
            return
        sampler = number(48)
        if sampler is None:
            sampler = number(302)
        if sampler is None:
            self.rate = rate
        elif self.sampler_rates.get(sampler) != rate:
            # A new dict, never a mutation: contexts taken earlier keep their snapshot.
            self.sampler_rates = {**self.sampler_rates, sampler: rate}


def _as_uint(raw: bytes) -> int | None:
    return int.from_bytes(raw, "big") if 0 < len(raw) <= 8 else None


def _rate_of(number: Callable[[int], int | None], source: dict[ElementKey, bytes]) -> int:
    for key in (34, 50):
        rate = number(key)
        if rate:
            return rate
    interval, space = number(305), number(306)
    if interval:
        return (interval + (space or 0)) // interval
    size, population = number(309), number(310)
    if size and population:
        return max(1, population // size)
    probability = source.get(311)
    if probability is not None and len(probability) == 8:
        p = struct.unpack("!d", probability)[0]
        if 0 < p <= 1:
            return max(1, round(1 / p))
    return 0


class TemplateCache:
    """Templates and sampling per (exporter, version, domain); the decoders' only state.

    ``ttl_s``: a template not refreshed (sent again) for this long is forgotten (None: never).
    ``hold_sets`` / ``hold_s``: how many early data sets one domain keeps, and for how long.
    """

    def __init__(
        self, ttl_s: float | None = 1800.0, hold_sets: int = 64, hold_s: float = 120.0
    ) -> None:
        self.ttl_s = ttl_s
        self.hold_sets = hold_sets
        self.hold_s = hold_s
        # Read directly by the walks, once per datagram; :meth:`domain` adds to it.
        self.known: dict[tuple[Hashable, int, int], DomainState] = {}
        self._per_exporter: dict[tuple[Hashable, int], int] = {}

    def domain(self, exporter: Hashable, version: int, domain: int) -> DomainState:
        key = (exporter, version, domain)
        state = self.known.get(key)
        if state is None:
            owner = (exporter, version)
            known = self._per_exporter.get(owner, 0)
            if known >= MAX_DOMAINS_PER_EXPORTER:
                raise Malformed(f"more than {MAX_DOMAINS_PER_EXPORTER} domains from one exporter")
            self._per_exporter[owner] = known + 1
            state = self.known[key] = DomainState()
        return state

    def find(self, state: DomainState, template_id: int, now: float) -> Template | None:
        template = state.templates.get(template_id)
        if template is None:
            return None
        if self.ttl_s is not None and now - template.refreshed > self.ttl_s:
            del state.templates[template_id]
            return None
        return template

    def refresh(
        self, state: DomainState, template_id: int, signature: bytes, now: float
    ) -> Template | None:
        """The cached template if ``signature`` (its definition's bytes) is unchanged, refreshed.

        Routers resend every template every few seconds; this spares the compile.
        """
        old = state.templates.get(template_id)
        if old is None or old.signature != signature:
            return None
        old.refreshed = now
        return old

    def store(self, state: DomainState, template: Template) -> Template:
        """Add or refresh a template; returns the one to use (the old one if unchanged)."""
        old = state.templates.get(template.template_id)
        if old is not None and old.signature == template.signature and old.kind is template.kind:
            old.refreshed = template.refreshed
            return old
        if old is None and len(state.templates) >= MAX_TEMPLATES_PER_DOMAIN:
            raise Malformed(f"more than {MAX_TEMPLATES_PER_DOMAIN} templates in one domain")
        state.templates[template.template_id] = template
        return template

    def withdraw(self, state: DomainState, template_id: int, kind: TemplateKind | None) -> None:
        """IPFIX template withdrawal (RFC 7011 §8.1); ids 2 and 3 withdraw every template."""
        if template_id in (2, 3):
            wanted = TemplateKind.DATA if template_id == 2 else TemplateKind.OPTIONS
            for tid in [t for t, tpl in state.templates.items() if tpl.kind is wanted]:
                del state.templates[tid]
        else:
            state.templates.pop(template_id, None)

    def hold(self, state: DomainState, held: HeldSet) -> bool:
        """Keep an early data set; False when the domain's buffer is full of fresh sets."""
        while state.held and held.received - state.held[0].received > self.hold_s:
            state.held.popleft()
        if len(state.held) >= self.hold_sets:
            return False
        state.held.append(held)
        return True

    def take_held(self, state: DomainState, template_id: int, now: float) -> list[HeldSet]:
        if not state.held:
            return []
        ready = [
            h
            for h in state.held
            if h.template_id == template_id and now - h.received <= self.hold_s
        ]
        if ready:
            state.held = deque(h for h in state.held if h.template_id != template_id)
        return ready

    def expire(self, now: float) -> int:
        """Forget expired templates and stale held sets everywhere; returns how many went."""
        gone = 0
        for state in self.known.values():
            if self.ttl_s is not None:
                old = [t for t, tpl in state.templates.items() if now - tpl.refreshed > self.ttl_s]
                for tid in old:
                    del state.templates[tid]
                gone += len(old)
            while state.held and now - state.held[0].received > self.hold_s:
                state.held.popleft()
                gone += 1
        return gone

    def __len__(self) -> int:
        return sum(len(s.templates) for s in self.known.values())

    def domains(self) -> dict[tuple[Hashable, int, int], DomainState]:
        """Every domain's state, for a collector's exporter registry (sampling, last seen)."""
        return dict(self.known)
