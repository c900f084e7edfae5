from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from abusedesk.audit import chain

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def build(n: int) -> list[chain.ChainLink]:
    links, prev = [], chain.GENESIS
    for seq in range(1, n + 1):
        at = T0 + timedelta(minutes=seq)
        details = {"n": seq}
        digest = chain.digest(
            prev, seq, at, "analyst:a@x", "case.opened", "case", str(seq), details
        )
        links.append(
            chain.ChainLink(
                seq, at, "analyst:a@x", "case.opened", "case", str(seq), details, prev, digest
            )
        )
        prev = digest
    return links


def test_an_intact_chain_verifies() -> None:
    links = build(5)
    assert chain.verify(links, 5, links[-1].hash) == []
    assert chain.verify([], 0, chain.GENESIS) == []


def test_an_edited_entry_is_found() -> None:
    links = build(5)
    links[2] = dataclasses.replace(links[2], actor="admin:mallory@x")
    problems = chain.verify(links, 5, links[-1].hash)
    assert [p.seq for p in problems] == [3]
    assert "changed" in problems[0].reason


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link() -> None:
    links = build(5)
    forged = dataclasses.replace(links[2], details={"n": 99})
    forged = dataclasses.replace(
        forged,
        hash=chain.digest(
            forged.prev_hash,
            3,
            forged.at,
            forged.actor,
            forged.action,
            forged.object_type,
            forged.object_id,
            forged.details,
        ),
    )
    links[2] = forged
    problems = chain.verify(links, 5, links[-1].hash)
    assert [p.seq for p in problems] == [4]


def test_a_deleted_entry_is_found() -> None:
    links = build(5)
    del links[1]
    problems = chain.verify(links, 5, links[-1].hash)
    assert any("missing" in p.reason for p in problems)


def test_a_cut_tail_is_found_by_the_head() -> None:
    links = build(5)
    head = links[-1].hash
    problems = chain.verify(links[:3], 5, head)
    assert any("head names 5" in p.reason for p in problems)
