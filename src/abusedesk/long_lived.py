"""Take what a long-running role has built out of the cycle collector's reach.

By the time a role has done its first round of work, the process holds what it keeps until it
ends: SQLAlchemy's mappers and compiled statements, the prefix index, the parsers' tables, the
imported modules. Python's cycle collector walks all of it again at every full collection,
and the intake worker's steady trickle of surviving objects (a session's rows, a transaction's
cases) brings one about every few hundred reports: there, those full collections were about a
sixth of the worker's CPU time. ``gc.freeze`` moves every object alive at that moment into a
permanent generation that collections skip (the use the standard library documents it for).
What is made afterwards is collected as before; what is frozen and later dropped is freed by
reference counting like anything else, and only a frozen *cycle* would stay, which is why it is
done once the startup garbage has been collected.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger("abusedesk.runtime")


def freeze_long_lived() -> int:
    """Collect, then move every object alive into the permanent generation; how many are
    frozen in all."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.debug("%d long-lived objects left out of cycle collections", frozen)
    return frozen
