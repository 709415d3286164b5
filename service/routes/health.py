"""``/healthz``, ``/readyz`` and ``/metrics``: no auth, no secrets."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..deps import DatabaseDep, QueueDep, SettingsDep
from ..objects import worker_object
from ..store import Worker
from ..store import workers as worker_store

router = APIRouter(tags=["service"])
PUBLIC_WORKER_FIELDS = (
    "device_class",
    "queue",
    "device",
    "device_name",
    "memory_bytes",
    "concurrency",
    "last_seen_at",
)


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    # On the event loop: no thread, no database, so it answers while both are saturated.
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Database and broker reachable, a worker seen recently",
    responses={503: {"description": "Not ready: the checks say which part is down"}},
)
def readyz(db: DatabaseDep, queue: QueueDep, settings: SettingsDep) -> JSONResponse:
    checks: dict[str, Any] = {"database": "ok" if db.ping() else "unreachable"}
    checks["broker"] = "ok" if queue.ping() else "unreachable"
    last_seen = None
    workers: list[dict[str, Any]] = []
    if checks["database"] == "ok":
        with db.session() as session:
            last_seen = worker_store.last_seen(session)
            since = time.time() - settings.worker_seen_timeout_s
            workers = [_public(row) for row in worker_store.online(session, since)]
    if last_seen is None:
        checks["worker"] = "none seen"
    elif time.time() - last_seen > settings.worker_seen_timeout_s:
        checks["worker"] = f"last seen {int(time.time() - last_seen)} s ago"
    else:
        checks["worker"] = "ok"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks, "workers": workers},
        status_code=200 if ready else 503,
    )


def _public(row: Worker) -> dict[str, Any]:
    """A worker as this unauthenticated route shows it: what it runs on, not where (no host
    names: GET /v1/workers, behind a key, has those)."""
    worker = worker_object(row)
    return {key: worker[key] for key in PUBLIC_WORKER_FIELDS}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics.registry
    body = await run_in_threadpool(generate_latest, registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
