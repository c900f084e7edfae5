"""A real IMAP server for tests: Dovecot (Debian `dovecot-imapd`) on loopback ports of its own,
one user with a Maildir, plain IMAP (with STARTTLS) and IMAPS with a self-signed certificate.
Tests skip without Dovecot, except under CI=true, where a missing server is a failure.

Run as root, Dovecot needs three things a default install has: an unprivileged user for its
internal processes (`dovecot`) and one for its login processes (`dovenull`), and a user to
read and write the mail as, which may not be root ("Mail access not allowed for root"): here
`nobody`. Its files live in a short directory of their own rather than under pytest's
tmp_path, for two reasons: Dovecot's unix sockets must stay under ~100 bytes of path, and
`nobody` must be able to walk down to the Maildir, which pytest's 0700 directories forbid.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from imapclient import IMAPClient

from abusedesk.intake.choices import ImapTls
from abusedesk.intake.settings import IntakeSettings
from tests.smtp_peer import free_port, self_signed

DOVECOT = Path("/usr/sbin/dovecot")
IMAP_BINARY = Path("/usr/lib/dovecot/imap")
IN_CI = os.environ.get("CI", "").lower() == "true"
USER, PASSWORD = "abuse", "s3cret-for-tests"
WAIT_SECONDS = 20

CONFIG = """
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
instance_name = abusedesk-test-{port}
default_internal_user = {internal_user}
default_login_user = {login_user}
mail_uid = {mail_uid}
mail_gid = {mail_gid}
first_valid_uid = {mail_uid}
first_valid_gid = {mail_gid}
mail_location = maildir:{root}/mail/%u
disable_plaintext_auth = no
auth_mechanisms = plain login
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/passwd
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
"""


def missing() -> str | None:
    if not DOVECOT.exists():
        return f"{DOVECOT} is not installed (apt-get install dovecot-imapd)"
    if not IMAP_BINARY.exists():
        return f"{IMAP_BINARY} is missing: dovecot-core without dovecot-imapd"
    if os.geteuid() == 0:
        for user in ("dovecot", "dovenull", "nobody"):
            try:
                pwd.getpwnam(user)
            except KeyError:
                return f"Dovecot run as root needs the system user {user!r}"
    return None


@dataclass
class Dovecot:
    host: str
    port: int  # plain IMAP, STARTTLS offered
    tls_port: int  # IMAPS
    ca_file: Path  # the self-signed certificate, for a client to trust
    root: Path
    process: subprocess.Popen[bytes]

    def settings(self, tls: ImapTls = ImapTls.IMAPS, **extra: Any) -> IntakeSettings:
        """The intake's settings to poll this server's INBOX."""
        values: dict[str, Any] = {
            "imap_host": self.host,
            "imap_port": self.tls_port if tls is ImapTls.IMAPS else self.port,
            "imap_user": USER,
            "imap_password": PASSWORD,
            "imap_tls": tls,
            "imap_ca_file": self.ca_file,
            "imap_processed_folder": "Processed",
            **extra,
        }
        return IntakeSettings(**values)

    def client(self) -> IMAPClient:
        """A client of our own (over IMAPS), to put mail in and look at the folders."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        client = IMAPClient(self.host, self.tls_port, ssl=True, ssl_context=context, timeout=10)
        client.login(USER, PASSWORD)
        return client

    def append(self, raw: bytes, folder: str = "INBOX", flags: tuple[bytes, ...] = ()) -> None:
        with self.client() as client:
            client.append(folder, raw, flags=flags)

    def messages(self, folder: str = "INBOX") -> list[tuple[bytes, tuple[bytes, ...]]]:
        """Each message of the folder: its bytes and its flags; [] when there is no folder."""
        with self.client() as client:
            if not client.folder_exists(folder):
                return []
            client.select_folder(folder, readonly=True)
            uids = client.search()
            if not uids:
                return []
            found = client.fetch(uids, ["BODY.PEEK[]", "FLAGS"])
            return [(found[uid][b"BODY[]"], tuple(found[uid][b"FLAGS"])) for uid in sorted(uids)]

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _serving(host: str, port: int, context: ssl.SSLContext | None = None) -> bool:
    """Whether the port greets like an IMAP server (over TLS when a context is given)."""
    try:
        with socket.create_connection((host, port), timeout=1) as plain:
            if context is None:
                return plain.recv(64).startswith(b"* OK")
            with context.wrap_socket(plain, server_hostname=host) as sock:
                return sock.recv(64).startswith(b"* OK")
    except OSError:
        return False


def start_dovecot(root: Path) -> Dovecot:
    """Dovecot under `root`, serving; stop it with stop_dovecot."""
    root.chmod(0o711)  # the mail user walks through to its Maildir
    (root / "mail").mkdir()
    (root / "run").mkdir()
    (root / "state").mkdir()
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        mail_uid, mail_gid = nobody.pw_uid, nobody.pw_gid
        internal_user, login_user = "dovecot", "dovenull"
        os.chown(root / "mail", mail_uid, mail_gid)
    else:
        mail_uid, mail_gid = os.geteuid(), os.getegid()
        internal_user = login_user = pwd.getpwuid(os.geteuid()).pw_name
    cert = self_signed(root)
    (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}:::::\n")
    port, tls_port = free_port(), free_port()
    conf = root / "dovecot.conf"
    conf.write_text(
        CONFIG.format(
            root=root,
            port=port,
            tls_port=tls_port,
            internal_user=internal_user,
            login_user=login_user,
            mail_uid=mail_uid,
            mail_gid=mail_gid,
            cert=cert.cert_file,
            key=cert.key_file,
        )
    )
    output = (root / "dovecot.out").open("wb")
    process = subprocess.Popen(
        [str(DOVECOT), "-F", "-c", str(conf)], stdout=output, stderr=subprocess.STDOUT
    )
    output.close()
    server = Dovecot("127.0.0.1", port, tls_port, cert.cert_file, root, process)
    deadline = time.monotonic() + WAIT_SECONDS
    trusting = ssl.create_default_context(cafile=str(cert.cert_file))
    while not (_serving("127.0.0.1", port) and _serving("127.0.0.1", tls_port, trusting)):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_dovecot(server)
            out = (root / "dovecot.out").read_text(errors="replace")
            raise AssertionError(f"Dovecot did not come up:\n{out}\n{server.log()}")
        time.sleep(0.1)
    return server


def stop_dovecot(server: Dovecot) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(10)


def running_dovecot() -> Iterator[Dovecot]:
    """The body of a test's `dovecot` fixture: a server for the test, gone after it."""
    reason = missing()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"CI=true and the IMAP server is missing: {reason}")
        pytest.skip(reason)
    # Not tmp_path: see the module's doc.
    root = Path(tempfile.mkdtemp(prefix="abusedesk-imap-"))
    try:
        server = start_dovecot(root)
        try:
            yield server
        finally:
            stop_dovecot(server)
    finally:
        shutil.rmtree(root, ignore_errors=True)
