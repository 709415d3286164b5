"""Prometheus metrics (``GET /metrics``) and the request-id middleware.

Requests are counted by route template (``/v1/jobs/{job_id}``), never by raw path, so ids do not
explode the label space. Jobs by status and the queue depth are read from the job store at scrape
time: the store, not the process, knows them.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .store import JOB_STATUSES, Database
from .store import jobs as job_store
from .store import workers as worker_store

log = logging.getLogger(__name__)


class StoreCollector(Collector):
    def __init__(self, db: Database):
        self.db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        jobs = GaugeMetricFamily("layerfuse_jobs", "Jobs in the store by status", labels=["status"])
        depth = GaugeMetricFamily("layerfuse_queue_depth", "Jobs queued and not yet running")
        seen = GaugeMetricFamily(
            "layerfuse_worker_last_seen_seconds", "Seconds since a worker last sent a heartbeat"
        )
        try:
            with self.db.session() as session:
                counts = job_store.count_by_status(session)
                last = worker_store.last_seen(session)
        except Exception:
            log.warning("metrics: the job store is unreachable")
            return
        for status in JOB_STATUSES:
            jobs.add_metric([status], counts.get(status, 0))
        depth.add_metric([], counts.get("queued", 0))
        yield jobs
        yield depth
        if last is not None:
            seen.add_metric([], max(time.time() - last, 0.0))
            yield seen


class Metrics:
    def __init__(self, db: Database):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "layerfuse_http_requests",
            "HTTP requests by route template, method and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "layerfuse_http_request_duration_seconds",
            "HTTP request latency by route template (streams: until the headers are sent)",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.registry.register(StoreCollector(db))


class RequestContextMiddleware:
    """Gives each request an id (``X-Request-ID``) and records it in the metrics.

    Pure ASGI, so streamed responses (Server-Sent Events) pass through untouched. An id is this
    process's random prefix and a counter: unique like a random one and an id needs no secrecy,
    while a random draw per request (``secrets``, a getrandom call) took about 7% of the server's
    time under load.
    """

    def __init__(self, app: ASGIApp, metrics: Callable[[], Metrics | None]):
        self.app = app
        self.metrics = metrics
        self._prefix = "req_" + secrets.token_hex(6)
        self._counter = itertools.count()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = f"{self._prefix}{next(self._counter):012x}"
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
                self._observe(scope, status, time.perf_counter() - started, count=False)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._observe(scope, status, None, count=True)

    def _observe(self, scope: Scope, status: int, seconds: float | None, *, count: bool) -> None:
        metrics = self.metrics()
        if metrics is None:
            return
        route: Any = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        if seconds is not None:
            metrics.latency.labels(scope["method"], template).observe(seconds)
        if count:
            metrics.requests.labels(scope["method"], template, str(status)).inc()
