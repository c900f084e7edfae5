"""IPFIX (RFC 7011): a 16-byte message header, then template, options-template and data sets.

The walk over sets and template sets is NetFlow v9's too
(:mod:`~abusedesk.traffic.decode._sets`, told apart by :data:`DIALECT`). Templates and options
templates are compiled and cached per (exporter, observation domain) by
:mod:`~abusedesk.traffic.decode.templates`; data sets of a known fixed-length template are
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
from abusedesk.traffic.decode.records import DecodeResult
from abusedesk.traffic.decode.templates import DomainState, TemplateCache

VERSION = 10
# 16 bytes: version, message length, export secs, sequence, observation domain.
HEADER = struct.Struct("!HHIII")
TEMPLATE_SET = 2
OPTIONS_TEMPLATE_SET = 3


def _options_templates(
    body: memoryview,
    cache: TemplateCache,
    state: DomainState,
    now: float,
    batch: Batch,
    domain: int,
) -> None:
    # Laid out as a template set, with a scope field count after each field count.
    _sets.template_set(body, cache, state, now, batch, domain, DIALECT, options=True)


DIALECT = _sets.Dialect(
    name="IPFIX",
    version=VERSION,
    header=HEADER,
    template_set=TEMPLATE_SET,
    options_set=OPTIONS_TEMPLATE_SET,
    set_word="set",
    unit="message",
    v9=False,
    read_options=_options_templates,
)
walk = _sets.walker(DIALECT)


def decode(
    datagram: bytes | memoryview, cache: TemplateCache, exporter: Hashable, now: float
) -> DecodeResult:
    """Decode one IPFIX message from ``exporter`` received at ``now`` (seconds)."""
    return _sets.decode_one(walk, FlowFormat.IPFIX, datagram, cache, exporter, now)
