"""A stand-in for the `exabgp` command, for tests without BGP peers: it reads the `run` line of
the configuration it is given, starts that API process as ExaBGP does, appends every command
the process writes to `commands.log` beside the configuration, and answers each with "done"
(or "error" for a command it does not know), as ExaBGP does with `exabgp.api.ack`.

    python tests/fake_exabgp.py /path/exabgp.conf
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

KNOWN = ("announce route ", "withdraw route ", "announce flow route ", "withdraw flow route ")


def main() -> int:
    config = Path(sys.argv[1])
    run = re.search(r"^\s*run (.+);\s*$", config.read_text(), re.MULTILINE)
    assert run, "no run line"
    record = config.parent / "commands.log"
    child = subprocess.Popen(run[1].split(), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdin is not None
    assert child.stdout is not None

    def stop(_signum: int, _frame: object) -> None:
        child.terminate()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    print("fake exabgp up", flush=True)
    for raw in child.stdout:
        line = raw.decode().strip()
        with record.open("a") as f:
            f.write(line + "\n")
        ok = line.startswith(KNOWN) or line.startswith("announce eor ")
        child.stdin.write(b"done\n" if ok else b"error\n")
        child.stdin.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
