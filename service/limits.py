"""Request limits applied before a route runs: in-flight requests, body size and body time.

A pure ASGI middleware (streamed responses pass through untouched):

- past ``api_max_inflight`` requests in flight, a new ``/v1`` request is answered 503
  ``service_busy`` with ``Retry-After`` at once, instead of queueing without bound;
- a JSON body (anything not multipart) larger than ``max_json_body_bytes``, declared or counted,
  is 413 ``request_too_large`` before it is parsed; uploads count their own bytes
  (:mod:`layerfuse.service.uploads`);
- a body that has not fully arrived ``body_timeout_s`` after the request started is 408
  ``request_timeout``, so a slow client cannot hold a connection and a buffer forever.

The size and time errors are raised from ``receive``, where the route reads the body, so they
become problems like any other :class:`~layerfuse.service.errors.ApiError`.
"""

from __future__ import annotations

import json
import math
import time

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import BUSY_RETRY_AFTER_S, PROBLEM_JSON, ApiError, PayloadTooLarge, problem_body
from .settings import Settings


class RequestTimeout(ApiError):
    status = 408
    code = "request_timeout"


class BodyLimits:
    def __init__(self, app: ASGIApp, settings: Settings):
        self.app = app
        self.max_json = settings.max_json_body_bytes
        self.timeout_s = settings.body_timeout_s
        self.max_inflight = settings.api_max_inflight
        self.inflight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        counted = scope["path"].startswith("/v1/")
        if counted and self.inflight >= self.max_inflight:
            await _send_busy(scope, send)
            return
        self.inflight += counted
        try:
            await self.app(scope, self._bounded(scope, receive), send)
        finally:
            self.inflight -= counted

    def _bounded(self, scope: Scope, receive: Receive) -> Receive:
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"")
        if not (declared.strip(b"0") or b"transfer-encoding" in headers):
            return receive  # no body: nothing to bound (and streams read receive for hours)
        multipart = headers.get(b"content-type", b"").startswith(b"multipart/")
        limit = math.inf if multipart else self.max_json
        deadline = time.monotonic() + self.timeout_s
        received = 0
        complete = False

        async def bounded_receive() -> Message:
            nonlocal received, complete
            if complete:
                return await receive()
            if declared.isdigit() and int(declared) > limit:
                raise _too_large(self.max_json)
            try:
                with anyio.fail_after(max(deadline - time.monotonic(), 0.0)):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout(
                    f"the request body did not arrive within {self.timeout_s:g} s"
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _too_large(self.max_json)
                complete = not message.get("more_body", False)
            return message

        return bounded_receive


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the request body exceeds this server's limit of {limit} bytes for JSON bodies",
        code="request_too_large",
    )


async def _send_busy(scope: Scope, send: Send) -> None:
    request_id = (scope.get("state") or {}).get("request_id")
    body = problem_body(
        503,
        code="service_busy",
        detail="the server is busy; retry after the number of seconds in Retry-After",
        request_id=request_id,
    )
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"retry-after", str(BUSY_RETRY_AFTER_S).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})
