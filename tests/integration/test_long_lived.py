"""What a role keeps is frozen out of cycle collections; its startup garbage is not
(abusedesk.long_lived). Each check runs in a fresh interpreter: freezing is process-wide."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_objects_alive_are_frozen_and_garbage_cycles_are_collected_first() -> None:
    out = run(
        """
        import gc, weakref
        from abusedesk.long_lived import freeze_long_lived

        class Node:
            pass

        kept = [Node() for _ in range(10_000)]
        garbage = Node()
        garbage.self = garbage  # a cycle: only the cycle collector frees it
        dead = weakref.ref(garbage)
        del garbage
        before = gc.get_freeze_count()
        frozen = freeze_long_lived()
        print(frozen - before >= len(kept), dead() is None, gc.get_freeze_count() == frozen)
        print(sum(len(gc.get_objects(g)) for g in range(3)) < 1_000)
        """
    )
    assert out.splitlines() == ["True True True", "True"]


def test_the_worker_role_freezes_after_its_first_tick(tmp_path: Path) -> None:
    out = run(
        f"""
        import asyncio, gc
        from abusedesk.bootstrap import bootstrap
        from abusedesk.config import Settings
        from abusedesk.runtime import run_worker

        desk = bootstrap(Settings(home={str(tmp_path)!r}, sweep_interval_seconds=0.05))
        desk.migrate()
        print(gc.get_freeze_count())

        async def main():
            stop = asyncio.Event()
            task = asyncio.create_task(run_worker(desk, stop))
            for _ in range(600):
                await asyncio.sleep(0.05)
                if gc.get_freeze_count():
                    break
            stop.set()
            await task

        asyncio.run(main())
        print(gc.get_freeze_count() > 10_000)
        """
    )
    assert out.splitlines() == ["0", "True"]
