"""NetFlow v9 (RFC 3954): a 20-byte header, then template, options-template and data flowsets.

Shares its walk and template machinery with IPFIX (:mod:`~abusedesk.traffic.decode._sets`,
:mod:`~abusedesk.traffic.decode.templates`); the differences are here, in :data:`DIALECT` and
the options-template flowset. The header has no message length (flowsets run to the end of the
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
from abusedesk.traffic.decode.errors import Malformed
from abusedesk.traffic.decode.records import DecodeResult
from abusedesk.traffic.decode.templates import DomainState, TemplateCache, TemplateKind

VERSION = 9
# 20 bytes: version, record count, sysUpTime, export secs, sequence, source id.
HEADER = struct.Struct("!HHIIII")
TEMPLATE_FLOWSET = 0
OPTIONS_TEMPLATE_FLOWSET = 1
_OPTIONS = struct.Struct("!HHH")


def _options_templates(
    body: memoryview,
    cache: TemplateCache,
    state: DomainState,
    now: float,
    batch: Batch,
    source_id: int,
) -> None:
    """Read an options-template flowset, whose scope and option fields are given in bytes."""
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
        fields_at = pos
        pos += scope_length + option_length
        _sets.learn(
            cache,
            state,
            now,
            batch,
            source_id,
            DIALECT,
            template_id,
            TemplateKind.OPTIONS,
            body,
            fields_at,
            (scope_length + option_length) // 4,
            scope_length // 4,
            bytes(body[start:pos]),
        )


DIALECT = _sets.Dialect(
    name="NetFlow v9",
    version=VERSION,
    header=HEADER,
    template_set=TEMPLATE_FLOWSET,
    options_set=OPTIONS_TEMPLATE_FLOWSET,
    set_word="flowset",
    unit="datagram",
    v9=True,
    read_options=_options_templates,
)
walk = _sets.walker(DIALECT)


def decode(
    datagram: bytes | memoryview, cache: TemplateCache, exporter: Hashable, now: float
) -> DecodeResult:
    """Decode one NetFlow v9 datagram from ``exporter`` received at ``now`` (seconds)."""
    return _sets.decode_one(walk, FlowFormat.NETFLOW_V9, datagram, cache, exporter, now)
