"""What NetFlow v9 and IPFIX share once a set is found: data sets, options data, held sets."""

from __future__ import annotations

from abusedesk.traffic.decode._batch import Batch
from abusedesk.traffic.decode.errors import UnknownTemplate
from abusedesk.traffic.decode.templates import (
    Context,
    DomainState,
    HeldSet,
    Template,
    TemplateCache,
    TemplateKind,
)


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
