"""An operator's executable carries each action out.

    <path> disconnect|reconnect|terminate <hostname> <prefix>...   the action's JSON on stdin
    <path> reconcile                                                the active cuts' JSON on stdin

Exit 0: done. Exit 75 (EX_TEMPFAIL): try again later. Anything else, a signal or the timeout:
failed (a timeout is retried, the rest waits for staff).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from abusedesk.enforce.choices import DriverName
from abusedesk.enforce.drivers.base import (
    ActionSpec,
    Driver,
    DriverError,
    action_message,
    reconcile_message,
)
from abusedesk.enforce.settings import ScriptSettings

EX_TEMPFAIL = 75
_OUTPUT_KEPT = 500  # characters of stdout/stderr kept in a timeline line or an error


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ScriptDriver(Driver):
    name = DriverName.SCRIPT.value

    def __init__(self, settings: ScriptSettings, now: Callable[[], str] = _now_iso) -> None:
        if settings.path is None:
            raise ValueError("the script driver needs enforce.script.path")
        self.path: Path = settings.path
        self.timeout = settings.timeout_seconds
        self._now = now

    def apply(self, spec: ActionSpec) -> str:
        out = self._run(
            [spec.kind.value, spec.hostname, *spec.prefixes],
            action_message(spec, self._now()),
            {
                "ABUSEDESK_ACTION_ID": str(spec.action_id),
                "ABUSEDESK_ACTION_KIND": spec.kind.value,
                "ABUSEDESK_IDEMPOTENCY_KEY": spec.idempotency_key,
            },
        )
        return f"{self.path.name} {spec.kind.value} {spec.hostname}: exit 0" + (
            f": {out}" if out else ""
        )

    def reconcile(self, active: Sequence[ActionSpec]) -> None:
        self._run(["reconcile"], reconcile_message(active, self._now()), {})

    def _run(self, args: list[str], message: dict[str, Any], env: dict[str, str]) -> str:
        stdin = json.dumps(message, indent=2).encode()
        try:
            # A session of its own, so that a timeout ends the script's children as well.
            process = subprocess.Popen(  # noqa: S603 - the operator's own configured executable
                [str(self.path), *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={**os.environ, **env},
                start_new_session=True,
            )
        except OSError as exc:
            raise DriverError(f"cannot run {self.path}: {exc.strerror}", temporary=False) from exc
        try:
            stdout, stderr = process.communicate(stdin, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            raise DriverError(
                f"{self.path.name} {args[0]}: no answer within {self.timeout:g} s", temporary=True
            ) from None
        output = _tail(stdout)
        if process.returncode == 0:
            return output
        problem = _tail(stderr) or output
        if process.returncode == EX_TEMPFAIL:
            raise DriverError(
                f"{self.path.name} {args[0]}: exit 75 (try later): {problem}", temporary=True
            )
        if process.returncode < 0:
            reason = f"killed by {signal.Signals(-process.returncode).name}"
        else:
            reason = f"exit {process.returncode}"
        raise DriverError(f"{self.path.name} {args[0]}: {reason}: {problem}", temporary=False)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=5)
    # Not communicate(): a child that left the group could hold the pipes open for ever.
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()


def _tail(data: bytes) -> str:
    text = data.decode(errors="replace").strip()
    return text if len(text) <= _OUTPUT_KEPT else "…" + text[-_OUTPUT_KEPT:]
