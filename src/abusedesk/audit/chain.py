"""The hash chain, as pure functions: how an entry's hash is made and how a log is checked."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

GENESIS = "0" * 64


@dataclass(frozen=True, slots=True)
class ChainLink:
    seq: int
    at: datetime
    actor: str
    action: str
    object_type: str
    object_id: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


def digest(
    prev_hash: str,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    details: dict[str, Any],
) -> str:
    body = json.dumps(
        [seq, at.isoformat(), actor, action, object_type, object_id, details],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Problem:
    seq: int
    reason: str


def verify(links: Iterable[ChainLink], head_seq: int, head_hash: str) -> list[Problem]:
    """Every problem in the chain: an edited entry, a missing one, a cut tail."""
    problems: list[Problem] = []
    expected_seq = 1
    prev_hash = GENESIS
    for link in links:
        if link.seq != expected_seq:
            problems.append(
                Problem(expected_seq, f"entries {expected_seq}…{link.seq - 1} are missing")
            )
        if link.prev_hash != prev_hash:
            problems.append(Problem(link.seq, "does not follow the entry before it"))
        recomputed = digest(
            link.prev_hash,
            link.seq,
            link.at,
            link.actor,
            link.action,
            link.object_type,
            link.object_id,
            link.details,
        )
        if recomputed != link.hash:
            problems.append(Problem(link.seq, "content changed after it was written"))
        prev_hash = link.hash
        expected_seq = link.seq + 1
    last_seq = expected_seq - 1
    if last_seq != head_seq or prev_hash != head_hash:
        problems.append(
            Problem(last_seq, f"the log ends at {last_seq} but the head names {head_seq}")
        )
    return problems
