"""Sending webhooks the Standard Webhooks way (https://www.standardwebhooks.com/).

Every delivery is a ``POST`` of a JSON body ``{"type", "timestamp", "data": <job object>}`` with

    webhook-id:         msg_…     the same on every attempt of one message (receivers dedupe on it)
    webhook-timestamp:  1764000000   unix seconds of this attempt
    webhook-signature:  v1,<base64 HMAC-SHA256(key, f"{id}.{timestamp}.{body}")>

where ``key`` is the tenant's secret (``whsec_<base64 key>``, see
:mod:`layerfuse.service.settings`).

Before each attempt the URL is checked again (:mod:`layerfuse.service.netguard`) and the request
goes to the address that check resolved, with the original ``Host`` header and TLS server name, so
DNS cannot be switched to an internal address between the check and the call. Redirects are not
followed and proxy variables are ignored. Torch- and fastapi-free: the worker sends from here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from .netguard import UrlRefused, check_url
from .settings import Settings

USER_AGENT = "layerfuse-webhooks/0.1"
MAX_ERROR_LENGTH = 300


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one attempt."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def backoff_s(settings: Settings, attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt: base * 4^(n-1), capped, ±10%."""
    delay = min(
        settings.webhook_backoff_base_s * 4 ** (attempts - 1), settings.webhook_backoff_max_s
    )
    return float(delay * random.uniform(0.9, 1.1))


@dataclass(frozen=True)
class AttemptResult:
    """What one attempt did. ``error`` None: delivered (a 2xx answer)."""

    status_code: int | None
    error: str | None
    duration_ms: float
    retryable: bool = True


def send(
    url: str,
    body: str,
    message_id: str,
    key: bytes,
    *,
    settings: Settings,
    transport: httpx.BaseTransport | None = None,
) -> AttemptResult:
    """One delivery attempt of ``body`` to ``url``, signed with ``key``."""
    started = time.perf_counter()

    def result(status: int | None, error: str | None, retryable: bool = True) -> AttemptResult:
        elapsed = (time.perf_counter() - started) * 1000
        return AttemptResult(status, error and error[:MAX_ERROR_LENGTH], elapsed, retryable)

    try:
        checked = check_url(url, allow_private=settings.webhook_allow_private)
    except UrlRefused as exc:
        # A name that does not resolve may come back; a forbidden address is not retried.
        return result(None, f"webhook_url_{exc.kind}: {exc.message}", exc.kind == "unresolvable")
    address = checked.addresses[0]
    host = f"[{address}]" if ":" in address else address
    parts = urlsplit(url)
    pinned = urlunsplit(
        (checked.scheme, f"{host}:{checked.port}", parts.path or "/", parts.query, "")
    )
    timestamp = int(time.time())
    content = body.encode()
    headers = {
        "host": checked.host_header,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, message_id, timestamp, content),
    }
    extensions = {"sni_hostname": checked.host} if checked.scheme == "https" else {}
    try:
        with httpx.Client(
            timeout=settings.webhook_timeout_s,
            follow_redirects=False,
            trust_env=False,
            transport=transport,
        ) as client:
            response = client.post(pinned, content=content, headers=headers, extensions=extensions)
    except httpx.TimeoutException:
        return result(None, f"timed out after {settings.webhook_timeout_s:g} s")
    except httpx.HTTPError as exc:
        return result(None, f"request failed: {type(exc).__name__}: {exc}")
    if 200 <= response.status_code < 300:
        return result(response.status_code, None)
    return result(response.status_code, f"the receiver answered {response.status_code}")
