"""The client's one retry policy: which failed requests are repeated, and how long to wait.

A request is repeated when repeating it cannot do harm:

- it never reached the server (connection refused, connect timeout): always;
- the server said it did not process it (429, 503): always;
- it may have been half-way (other 5xx, a connection lost mid-answer): only when it is safe to
  repeat (reads, deletes, cancels, and job creation, which carries an ``Idempotency-Key``).

Waits grow exponentially (``backoff_base_s * 2^n``, jittered down to half, at most
``backoff_max_s``), except that a ``Retry-After`` answer header is honoured (capped at
:data:`MAX_RETRY_AFTER_S`). At most ``max_retries`` retries follow a first attempt, so a request
costs at most ``max_retries + 1`` round trips, whatever mix of failures it meets.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import httpx

# A Client sends through whichever client ``http`` is: httpx's, or httpx2's (starlette's
# TestClient picks httpx2 where it is installed). The two libraries' exception classes are
# unrelated, so a transport failure is either's, or an httpx2 client's failures would escape the
# retries as raw exceptions instead of being retried and raised as APIConnectionError.
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (httpx.TransportError,)
_UNSENT_ERRORS: tuple[type[Exception], ...] = (httpx.ConnectError, httpx.ConnectTimeout)
try:
    import httpx2
except ImportError:  # optional: only a client handed an httpx2 client needs it
    pass
else:
    TRANSPORT_ERRORS += (httpx2.TransportError,)
    _UNSENT_ERRORS += (httpx2.ConnectError, httpx2.ConnectTimeout)

MAX_RETRY_AFTER_S = 120.0
# 429 and 503 say the request was not processed; 500, 502 and 504 may come after it was.
NOT_PROCESSED = frozenset({429, 503})
MAYBE_PROCESSED = frozenset({500, 502, 504})


@dataclass
class RetryPolicy:
    """How a :class:`~layerfuse.client.Client` retries (see the module docstring).

    ``sleep`` is how it waits: tests replace it to record the waits instead.
    """

    max_retries: int = 3
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def retryable_status(self, status: int, *, idempotent: bool) -> bool:
        return status in NOT_PROCESSED or (idempotent and status in MAYBE_PROCESSED)

    def retryable_error(self, error: Exception, *, idempotent: bool) -> bool:
        return never_sent(error) or idempotent

    def delay(self, failures: int, headers: Mapping[str, str] | None = None) -> float:
        """Seconds to wait after the ``failures``-th failure in a row (1 for the first)."""
        retry_after = retry_after_s(headers or {})
        if retry_after is not None:
            return retry_after
        delay = min(self.backoff_base_s * 2 ** (failures - 1), self.backoff_max_s)
        return float(delay * random.uniform(0.5, 1.0))

    def wait(
        self,
        failures: int,
        *,
        status: int | None = None,
        error: Exception | None = None,
        idempotent: bool,
        headers: Mapping[str, str] | None = None,
    ) -> bool:
        """After the ``failures``-th failure in a row (an error answer's ``status`` or a transport
        ``error``): wait and return True when the request should be sent again, else False."""
        if failures > self.max_retries:
            return False
        if status is not None and not self.retryable_status(status, idempotent=idempotent):
            return False
        if error is not None and not self.retryable_error(error, idempotent=idempotent):
            return False
        self.sleep(self.delay(failures, headers))
        return True


def never_sent(error: Exception) -> bool:
    """Whether a transport failure says the request never reached the server (connection refused,
    connect timeout), so that repeating it is always safe."""
    return isinstance(error, _UNSENT_ERRORS)


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` (seconds or an HTTP date) in seconds from now, or None."""
    value = headers.get("Retry-After") or headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = moment.timestamp() - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)
