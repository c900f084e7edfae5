"""How a finished message leaves: one interface, an SMTP relay or files in a directory.

DeliveryError(temporary) is the only error a transport raises; whether a failure is temporary
decides whether the outbox tries again. What SMTP says about the message itself is final when
it is a 5xx (the recipient does not exist, the content is refused). What it says about the
session (connecting, TLS, authentication) is the relay's or our configuration's fault, not the
message's, so it is retried until the operator has fixed it or the attempts run out.
"""

from __future__ import annotations

import os
import re
import smtplib
import ssl
import tempfile
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Protocol

from abusedesk.config import Settings
from abusedesk.errors import AbuseDeskError
from abusedesk.notify.settings import SmtpSecurity, SmtpSettings
from abusedesk.notify.settings import Transport as TransportKind


class DeliveryError(AbuseDeskError):
    def __init__(self, message: str, temporary: bool) -> None:
        super().__init__(message)
        self.temporary = temporary


class Transport(Protocol):
    def send(self, message: EmailMessage) -> dict[str, str]:
        """Hand the message on; return the recipients refused while others were accepted
        (address → the server's answer), empty when all were. Raises DeliveryError."""
        ...


class SmtpTransport:
    """One SMTP conversation per message, as configured: plain, STARTTLS or implicit TLS,
    with AUTH when a username is set. The envelope is taken from the From and To headers."""

    def __init__(self, settings: SmtpSettings, ssl_context: ssl.SSLContext | None = None):
        self.settings = settings
        self._ssl_context = ssl_context

    def _tls(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            cafile = str(self.settings.ca_file) if self.settings.ca_file else None
            self._ssl_context = ssl.create_default_context(cafile=cafile)
        return self._ssl_context

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        if s.security is SmtpSecurity.TLS:
            return smtplib.SMTP_SSL(
                s.host,
                s.port,
                local_hostname=s.helo_name,
                timeout=s.timeout_seconds,
                context=self._tls(),
            )
        return smtplib.SMTP(s.host, s.port, local_hostname=s.helo_name, timeout=s.timeout_seconds)

    def send(self, message: EmailMessage) -> dict[str, str]:
        s = self.settings
        where = f"{s.host}:{s.port}"
        try:
            with self._connect() as client:
                if s.security is SmtpSecurity.STARTTLS:
                    client.starttls(context=self._tls())
                if s.username:
                    client.login(s.username, s.password or "")
                refused = client.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            answers = {addr: _answer(code, text) for addr, (code, text) in exc.recipients.items()}
            temporary = any(400 <= code < 500 for code, _ in exc.recipients.values())
            raise DeliveryError(
                f"{where} refused every recipient: {_join(answers)}", temporary
            ) from exc
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
            # 530: the relay wants STARTTLS or AUTH first, which is our configuration.
            final = 500 <= exc.smtp_code < 600 and exc.smtp_code != 530
            raise DeliveryError(
                f"{where} refused the message: {_answer(exc.smtp_code, exc.smtp_error)}",
                temporary=not final,
            ) from exc
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(
                f"{where} refused authentication as {s.username!r}: "
                f"{_answer(exc.smtp_code, exc.smtp_error)}",
                temporary=True,
            ) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise DeliveryError(f"{where}: {exc}", temporary=True) from exc
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"{where}: {_answer(exc.smtp_code, exc.smtp_error)}", temporary=True
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            # Refused or dropped connections, timeouts, TLS failures (ssl.SSLError is an OSError)
            raise DeliveryError(
                f"{where}: {type(exc).__name__}: {exc or 'no answer'}", temporary=True
            ) from exc
        return {addr: _answer(code, text) for addr, (code, text) in refused.items()}


def _answer(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(text.split())}"


def _join(answers: dict[str, str]) -> str:
    return "; ".join(f"{addr}: {answer}" for addr, answer in answers.items())


class FileTransport:
    """Each message written whole to `<directory>/<message-id>.eml`: the embedded default, and
    a way to look at what would be sent without a relay."""

    _UNSAFE = re.compile(r"[^A-Za-z0-9._@+=-]")

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(self, message: EmailMessage) -> dict[str, str]:
        message_id = message["Message-ID"] or make_msgid()
        name = self._UNSAFE.sub("_", str(message_id).strip().strip("<>")) + ".eml"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # Written aside and renamed, so a reader of the directory never sees half a message.
            fd, partial = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(message.as_bytes())
                os.replace(partial, self.directory / name)
            except BaseException:
                Path(partial).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise DeliveryError(f"cannot write {self.directory / name}: {exc}", True) from exc
        return {}


def make_transport(settings: Settings) -> Transport:
    if settings.notify.transport is TransportKind.SMTP:
        return SmtpTransport(settings.smtp)
    return FileTransport(settings.home / "mail")
