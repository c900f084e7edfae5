"""The API process ExaBGP runs for abusedesk: a relay between a unix socket and ExaBGP.

ExaBGP reads API commands from the stdout of a process it starts itself, and writes its
answers ("done" or "error", one per command) to that process's stdin. The enforcement driver
lives in another process (the worker), so this relay listens on a unix socket, copies each
complete line it receives to stdout (flushed at once), and copies ExaBGP's answers back to the
connected client. It exits when ExaBGP goes away (end of stdin).

Standard library only, and nothing of abusedesk: it starts quickly and cannot fail on imports.

    python -m abusedesk.enforce.exabgp_relay /path/to/api.sock
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import sys

_STDIN = 0
_CHUNK = 65536


def relay(path: str) -> int:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # left by an ExaBGP that was killed
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    umask = os.umask(0o177)  # only the owner may talk to the routers
    try:
        server.bind(path)
    finally:
        os.umask(umask)
    ours = os.stat(path).st_ino
    server.listen(1)
    selector = selectors.DefaultSelector()
    selector.register(server, selectors.EVENT_READ, "accept")
    selector.register(_STDIN, selectors.EVENT_READ, "exabgp")
    out = sys.stdout.buffer
    client: socket.socket | None = None
    pending = b""

    def drop_client() -> None:
        nonlocal client, pending
        if client is not None:
            selector.unregister(client)
            client.close()
        # A partial line of a client that went away must not be joined to the next one's.
        client, pending = None, b""

    try:
        while True:
            for key, _ in selector.select():
                if key.data == "accept":
                    conn, _addr = server.accept()
                    drop_client()  # one driver at a time: the newest is the live one
                    client = conn
                    selector.register(client, selectors.EVENT_READ, "client")
                elif key.data == "exabgp":
                    answer = os.read(_STDIN, _CHUNK)
                    if not answer:
                        return 0  # ExaBGP has gone
                    if client is not None:
                        try:
                            client.sendall(answer)
                        except OSError:
                            drop_client()
                elif client is not None:
                    try:
                        data = client.recv(_CHUNK)
                    except OSError:
                        data = b""
                    if not data:
                        drop_client()
                        continue
                    pending += data
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        if line.strip():
                            out.write(line.rstrip(b"\r") + b"\n")
                    out.flush()
    finally:
        drop_client()
        server.close()
        # Only our own socket: a relay that outlives its ExaBGP by a moment must not remove
        # the socket its successor has just bound at the same path.
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == ours:
                os.unlink(path)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m abusedesk.enforce.exabgp_relay SOCKET", file=sys.stderr)
        return 64
    try:
        return relay(args[0])
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
