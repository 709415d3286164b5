"""Request limits applied before a route runs: in-flight requests, body size and body time.

A pure ASGI middleware (streamed responses pass through untouched):

- past ``api_max_inflight`` requests in flight, a new ``/v1`` request is answered 503
  ``service_busy`` with ``Retry-After`` at once, instead of queueing without bound;
- at most ``api_max_running`` bodyless ``/v1`` requests (the polls) run at once; the rest wait
  their turn in line (FIFO), parked off the event loop's ready queue. Every running request costs
  the loop a step in each of its turns, so an unbounded crowd of them makes every turn long and
  delays everything, ``/healthz`` included (150 back-to-back pollers: ``/healthz`` p99 85 ms).
  A request holds its slot until its response starts, so streams and downloads do not keep one;
  requests with a body are not held back (their body arrives at the client's pace, bounded by
  ``body_timeout_s``, and a slow upload must not hold a slot);
- a JSON body (anything not multipart) larger than ``max_json_body_bytes``, declared or counted,
  is 413 ``request_too_large`` before it is parsed; uploads count their own bytes
  (:mod:`layerfuse.service.uploads`);
- a body that has not fully arrived ``body_timeout_s`` after the request started is 408
  ``request_timeout``, so a slow client cannot hold a connection and a buffer forever.

The size and time errors are raised from ``receive``, where the route reads the body, so they
become problems like any other :class:`~layerfuse.service.errors.ApiError`.
"""

from __future__ import annotations

import asyncio
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
        self.max_running = settings.api_max_running
        # One semaphore per event loop: test clients run the app on several loops in turn.
        self._slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        counted = scope["path"].startswith("/v1/")
        if counted and self.inflight >= self.max_inflight:
            await _send_busy(scope, send)
            return
        self.inflight += counted
        headers = dict(scope.get("headers") or [])
        try:
            if not _has_body(headers):
                # Nothing to bound (and streams read receive for hours).
                if counted:
                    await self._run_in_slot(scope, receive, send)
                else:
                    await self.app(scope, receive, send)
            else:
                await self.app(scope, self._bounded(headers, receive), send)
        finally:
            self.inflight -= counted

    async def _run_in_slot(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run a bodyless request once a slot is free; the slot is freed when the response
        starts (or the request ends without one)."""
        slots = self._semaphore()
        await slots.acquire()
        held = True

        def free() -> None:
            nonlocal held
            if held:
                held = False
                slots.release()

        async def send_freeing(message: Message) -> None:
            if message["type"] == "http.response.start":
                free()
            await send(message)

        try:
            await self.app(scope, receive, send_freeing)
        finally:
            free()

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots[0] is not loop:
            self._slots = (loop, asyncio.Semaphore(self.max_running))
        return self._slots[1]

    def _bounded(self, headers: dict[bytes, bytes], receive: Receive) -> Receive:
        declared = headers.get(b"content-length", b"")
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


def _has_body(headers: dict[bytes, bytes]) -> bool:
    return bool(headers.get(b"content-length", b"").strip(b"0") or b"transfer-encoding" in headers)


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
