"""Collects what the per-datagram walks find, then decodes it in as few numpy calls as it can.

The walks (header, sets, samples) are Python and cost a few microseconds per datagram; the
records themselves are never touched one by one. Every data set of one compiled template,
from every datagram of the call, is joined and read with one ``np.frombuffer`` and mapped to
the flow layout once; NetFlow v5 records likewise, and sFlow sampled headers are decoded as
one matrix. Flows come out grouped: v5 first, then one group per template in the order the
templates were first met, then sFlow; arrival order holds within a group.

Each flow also gets the index, in the call's input, of the datagram it came from
(``DecodeResult.origin``), so that a collector can tell its exporters' flows apart in a batch.

The walks append straight into the batch's lists. Before each datagram the batch notes how
long they are (:meth:`Batch.mark`); a datagram that is rejected is cut back off
(:meth:`Batch.rollback`), and any data set it put on hold is taken back, so it contributes
nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from abusedesk.traffic.choices import FlowFormat
from abusedesk.traffic.decode.errors import DecodeError
from abusedesk.traffic.decode.records import (
    COUNTER_DTYPE,
    DecodeResult,
    FlowArray,
    OptionsRecord,
    empty_counters,
    empty_flows,
)
from abusedesk.traffic.decode.templates import (
    Context,
    DomainState,
    HeldSet,
    Template,
    _RecordContext,
)

Chunk = memoryview | bytes
Mark = tuple[int, int, int, int, int, int, int, int, int]


class Batch:
    """The findings of one decode call. Walks append to ``data``, ``v5``, ``sflow``, ..."""

    __slots__ = (
        "counters",
        "data",
        "datagrams",
        "failed",
        "formats",
        "held",
        "index",
        "options",
        "problems",
        "recovered",
        "sflow",
        "sflow_origin",
        "templates",
        "v5",
    )

    def __init__(self) -> None:
        self.index = 0  # of the datagram being walked, in the call's input
        # (template, chunks, record count, context, datagram index) per data set
        self.data: list[tuple[Template, Sequence[Chunk], int, Context, int]] = []
        # (records, count, (export ms, sysUpTime, sampling field, sequence), index) per datagram
        self.v5: list[tuple[Chunk, int, tuple[int, int, int, int], int]] = []
        self.sflow: list[tuple[Any, ...]] = []  # one staged flow sample each
        self.sflow_origin: list[int] = []
        # Data sets this call put on hold, so that a rejected datagram's can be taken back.
        self.held: list[tuple[DomainState, HeldSet]] = []
        self.counters: list[tuple[int, ...]] = []  # rows of COUNTER_DTYPE
        self.options: list[OptionsRecord] = []
        self.problems: list[DecodeError] = []
        self.failed: list[tuple[int, DecodeError]] = []
        self.templates = 0
        self.recovered = 0
        self.datagrams = 0
        self.formats: set[FlowFormat] = set()

    def mark(self) -> Mark:
        return (
            len(self.data),
            len(self.v5),
            len(self.sflow),
            len(self.counters),
            len(self.options),
            len(self.problems),
            self.templates,
            self.recovered,
            len(self.held),
        )

    def rollback(self, mark: Mark) -> None:
        del self.data[mark[0] :]
        del self.v5[mark[1] :]
        del self.sflow[mark[2] :]
        del self.sflow_origin[mark[2] :]
        del self.counters[mark[3] :]
        del self.options[mark[4] :]
        del self.problems[mark[5] :]
        self.templates = mark[6]
        self.recovered = mark[7]
        for state, early in self.held[mark[8] :]:
            if early in state.held:
                state.held.remove(early)
        del self.held[mark[8] :]

    def result(self) -> DecodeResult:
        from abusedesk.traffic.decode import netflow_v5, sflow

        parts: list[FlowArray] = []
        origins: list[np.ndarray] = []
        if self.v5:
            v5_chunks, v5_counts, v5_headers, v5_indexes = zip(*self.v5, strict=True)
            parts.append(netflow_v5.to_flows(v5_chunks, v5_counts, v5_headers))
            origins.append(np.repeat(np.asarray(v5_indexes, dtype=np.int32), v5_counts))
        groups: dict[int, tuple[Template, list[Chunk], list[int], list[Context], list[int]]] = {}
        last = None
        for template, chunks_of_set, count, context, index in self.data:
            if template is not last:  # runs of one template are the rule: look it up once
                last = template
                group = groups.get(id(template))
                if group is None:
                    group = groups[id(template)] = (template, [], [], [], [])
                chunks, counts, contexts, indexes = group[1], group[2], group[3], group[4]
            chunks.extend(chunks_of_set)
            counts.append(count)
            contexts.append(context)
            indexes.append(index)
        for template, chunks_of_group, counts_of_group, contexts, indexes in groups.values():
            parts.append(_group_flows(template, chunks_of_group, counts_of_group, contexts))
            origins.append(np.repeat(np.asarray(indexes, dtype=np.int32), counts_of_group))
        if self.sflow:
            parts.append(sflow.to_flows(self.sflow))
            origins.append(np.asarray(self.sflow_origin, dtype=np.int32))
        if not parts:
            flows = empty_flows()
            origin = np.zeros(0, dtype=np.int32)
        elif len(parts) == 1:
            flows, origin = parts[0], origins[0]
        else:
            flows, origin = np.concatenate(parts), np.concatenate(origins)
        counters = (
            np.array(self.counters, dtype=COUNTER_DTYPE) if self.counters else empty_counters()
        )
        fmt = next(iter(self.formats)) if len(self.formats) == 1 else None
        return DecodeResult(
            format=fmt,
            flows=flows,
            origin=origin,
            counters=counters,
            options=self.options,
            problems=self.problems,
            failed=self.failed,
            datagrams=self.datagrams,
            templates=self.templates,
            recovered=self.recovered,
        )


def _group_flows(
    template: Template, chunks: list[Chunk], counts: list[int], contexts: list[Context]
) -> FlowArray:
    assert template.dtype is not None
    count = sum(counts)
    if template.fixed_length == 0:
        # Only variable-length fields: nothing the flow layout reads, but the records count.
        raw = np.zeros(count, dtype=template.dtype)
    else:
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        raw = np.frombuffer(data, dtype=template.dtype, count=count)
    return template.to_flows(raw, _RecordContext(contexts, counts))
