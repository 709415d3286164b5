"""``GET /v1/workers``: the fleet as the job store sees it; read-only, the same for every tenant,
and free of job data (which worker runs which job is not a tenant's business)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ..deps import DatabaseDep, SettingsDep, TenantDep
from ..objects import WorkerList, worker_object
from ..store import now
from ..store import workers as worker_store

router = APIRouter(prefix="/v1/workers", tags=["workers"])


@router.get(
    "",
    response_model=WorkerList,
    summary="Workers seen recently and what each runs on (device, memory, queue)",
)
def list_workers(tenant: TenantDep, db: DatabaseDep, settings: SettingsDep) -> dict[str, Any]:
    del tenant  # authenticated, but the same answer for every tenant
    with db.session() as session:
        rows = worker_store.online(session, now() - settings.worker_seen_timeout_s)
        return {"object": "list", "data": [worker_object(row) for row in rows]}
