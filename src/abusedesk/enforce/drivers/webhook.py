"""An HTTP POST to the provider's orchestration for each action (and for reconciliation).

The body is JSON (see `action_message`); `X-Abusedesk-Signature: sha256=<hex>` is the
HMAC-SHA256 of the exact body bytes under the shared secret, and the body carries `sent_at`
(echoed in `X-Abusedesk-Timestamp`), so a receiver can refuse both forgeries and replays.

2xx: acknowledged. 5xx, 408, 425, 429, timeouts and connection errors: temporary, retried.
Any other answer (4xx, a redirect): permanent, for staff to look at.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from abusedesk import __version__
from abusedesk.enforce.choices import DriverName
from abusedesk.enforce.drivers.base import (
    ActionSpec,
    Driver,
    DriverError,
    action_message,
    reconcile_message,
)
from abusedesk.enforce.settings import WebhookSettings

SIGNATURE_HEADER = "X-Abusedesk-Signature"
TIMESTAMP_HEADER = "X-Abusedesk-Timestamp"
EVENT_HEADER = "X-Abusedesk-Event"
IDEMPOTENCY_HEADER = "Idempotency-Key"
RETRYABLE_4XX = frozenset({408, 425, 429})


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, signature: str) -> bool:
    """What a receiver does (shown in docs/operations.md): compare in constant time."""
    return hmac.compare_digest(sign(secret, body), signature)


def is_temporary(status: int) -> bool:
    return status >= 500 or status in RETRYABLE_4XX


class WebhookDriver(Driver):
    name = DriverName.WEBHOOK.value

    def __init__(
        self,
        settings: WebhookSettings,
        transport: httpx.BaseTransport | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if settings.url is None or settings.secret is None:
            raise ValueError("the webhook driver needs enforce.webhook.url and .secret")
        self.url = settings.url
        self._secret = settings.secret.get_secret_value().encode()
        self._now = now
        self._client = httpx.Client(
            timeout=settings.timeout_seconds,
            verify=settings.verify_tls,
            follow_redirects=False,  # a redirect would move a signed action somewhere unplanned
            headers={"User-Agent": f"abusedesk/{__version__}", **settings.headers},
            transport=transport,
        )

    def apply(self, spec: ActionSpec) -> str:
        sent = self._now()
        status = self._post(
            action_message(spec, sent.isoformat(timespec="seconds")),
            sent,
            "action",
            {IDEMPOTENCY_HEADER: spec.idempotency_key},
        )
        return f"webhook acknowledged {spec.kind.value} of {spec.hostname} (HTTP {status})"

    def reconcile(self, active: Sequence[ActionSpec]) -> None:
        sent = self._now()
        self._post(reconcile_message(active, sent.isoformat(timespec="seconds")), sent, "reconcile")

    def close(self) -> None:
        self._client.close()

    def _post(
        self,
        message: dict[str, Any],
        sent: datetime,
        event: str,
        extra: dict[str, str] | None = None,
    ) -> int:
        body = json.dumps(message, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self._secret, body),
            TIMESTAMP_HEADER: str(int(sent.timestamp())),
            EVENT_HEADER: event,
            **(extra or {}),
        }
        try:
            response = self._client.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise DriverError(f"webhook {event}: timed out ({exc})", temporary=True) from exc
        except httpx.HTTPError as exc:
            raise DriverError(f"webhook {event}: {exc}", temporary=True) from exc
        if response.is_success:
            return response.status_code
        detail = response.text.strip()[:300]
        raise DriverError(
            f"webhook {event}: HTTP {response.status_code}" + (f": {detail}" if detail else ""),
            temporary=is_temporary(response.status_code),
        )
