"""The FastAPI application: ``create_app()`` builds it; ``layerfuse serve`` runs it.

    uvicorn --factory layerfuse.service.app:create_app

Heavy clients (the database engine, the Celery producer) open in the lifespan, never at import;
the reconciler runs there too. Importing this module never imports torch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import anyio.to_thread
from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from . import errors, openapi
from .broker import JobQueue
from .jobcache import JobReadCache, JobReadFastPath
from .limits import BodyLimits
from .metrics import Metrics, RequestContextMiddleware
from .reconciler import reconcile_once
from .routes import artifacts, events, health, jobs, uploads, webhooks, workers
from .settings import Settings, get_settings
from .storage import Storage
from .store import Database

log = logging.getLogger(__name__)

DESCRIPTION = """Compress fine-tuned transformer classifiers by removing whole layers.

Upload a model (`POST /v1/models`) and datasets (`POST /v1/datasets`), create a job
(`POST /v1/jobs`), follow it (`GET /v1/jobs/{id}/events/stream`), then download its artifacts.
Every `/v1` route takes `Authorization: Bearer <api key>`; errors are `application/problem+json`.
"""


class LayerfuseApp(FastAPI):
    """FastAPI with ``GET /healthz`` answered before anything else runs.

    A liveness probe must answer while the API is saturated. Through the middleware stack and the
    router it costs the event loop several steps, each waiting behind every request in flight;
    here it is one step and one write. The route in :mod:`.routes.health` still declares it in
    the OpenAPI document, with the same answer, and answers other methods with 405.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == "/healthz":
            await send({"type": "http.response.start", "status": 200, "headers": _HEALTHY_HEADERS})
            await send({"type": "http.response.body", "body": _HEALTHY_BODY})
            return
        await super().__call__(scope, receive, send)


# The route's answer, byte for byte as FastAPI renders {"status": "ok"}.
_HEALTHY_BODY = b'{"status":"ok"}'
_HEALTHY_HEADERS = [
    (b"content-length", str(len(_HEALTHY_BODY)).encode()),
    (b"content-type", b"application/json"),
]


def create_app(
    settings: Settings | None = None,
    *,
    db: Database | None = None,
    queue: JobQueue | None = None,
) -> LayerfuseApp:
    """Build the app. ``db`` and ``queue`` are opened from ``settings`` unless given (tests).

    Raises:
        layerfuse.service.settings.ConfigError: unsafe settings outside development.
    """
    settings = settings or get_settings()
    settings.check_api_secrets()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Sync routes run on this many threads; each holds at most one connection, and the pool
        # has a few more for the reconciler and the metrics, so no thread waits on the pool.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        app.state.db = db or Database(
            settings.resolved_database_url,
            pool_size=settings.db_pool_size,
            max_overflow=0,
            pool_timeout_s=settings.db_pool_timeout_s,
        )
        app.state.queue = queue or JobQueue(settings)
        app.state.metrics = Metrics(app.state.db)
        reconciler = None
        if settings.reconcile_interval_s > 0:
            reconciler = asyncio.create_task(_reconcile_forever(app, settings))
        try:
            yield
        finally:
            if reconciler is not None:
                reconciler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reconciler
            if queue is None:
                app.state.queue.close()
            if db is None:
                app.state.db.dispose()

    app = LayerfuseApp(
        title="layerfuse",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.storage = Storage(settings)
    errors.install(app)
    openapi.install(app)
    app.state.job_cache = JobReadCache(settings.job_read_cache_s)
    # Innermost (Starlette wraps the last one added outermost): hits still get admission,
    # the request id and the metrics.
    app.add_middleware(JobReadFastPath, cache=app.state.job_cache, settings=settings)
    app.add_middleware(BodyLimits, settings=settings)
    app.add_middleware(
        RequestContextMiddleware, metrics=lambda: getattr(app.state, "metrics", None)
    )
    app.include_router(health.router)
    app.include_router(uploads.models)
    app.include_router(uploads.datasets)
    app.include_router(jobs.router)
    app.include_router(events.router)
    app.include_router(artifacts.router)
    app.include_router(webhooks.router)
    app.include_router(workers.router)
    return app


async def _reconcile_forever(app: FastAPI, settings: Settings) -> None:
    await asyncio.sleep(min(settings.reconcile_interval_s, 1.0))
    while True:
        try:
            await run_in_threadpool(reconcile_once, app.state.db, app.state.queue, settings)
        except Exception:
            log.exception("reconciler pass failed; retrying in %s s", settings.reconcile_interval_s)
        await asyncio.sleep(settings.reconcile_interval_s)
