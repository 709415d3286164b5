"""A succeeded job's report and artifacts. Names come from the job's own list, never a path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from layerfuse.compression.report import Report

from ..artifacts import MODEL_ZIP, ensure_model_zip
from ..deps import DatabaseDep, StorageDep, TenantDep
from ..errors import Conflict, NotFound
from ..schemas import ArtifactList
from ..storage import OutsideRoot, Storage, inside
from ..store import SUCCEEDED, Database, Job
from ..store import jobs as job_store
from .jobs import get_job_or_404

router = APIRouter(prefix="/v1/jobs", tags=["artifacts"])


def _succeeded(db: Database, tenant: str, job_id: str) -> Job:
    with db.session() as session:
        job = get_job_or_404(session, tenant, job_id)
    if job.status != SUCCEEDED:
        raise Conflict(
            f"job {job_id} has status {job.status}: reports and artifacts exist once it succeeds",
            code="job_not_succeeded",
        )
    return job


def _artifacts(db: Database, storage: Storage, job: Job) -> list[dict[str, Any]]:
    """The job's list, with ``model.zip`` first (built and recorded on first use)."""
    listed = list(job.artifacts or [])
    if any(a["name"] == MODEL_ZIP for a in listed):
        return listed
    entry = ensure_model_zip(storage.output_dir(job.tenant, job.id))
    listed = [entry, *listed]
    with db.session() as session:
        job_store.set_artifacts(session, job.id, listed)
    return listed


@router.get(
    "/{job_id}/report",
    response_model=Report,
    summary="The job's report.json",
)
def get_report(
    job_id: str, tenant: TenantDep, db: DatabaseDep, storage: StorageDep
) -> FileResponse:
    """The file as the library wrote it, in the shape of the library's :class:`Report`."""
    job = _succeeded(db, tenant, job_id)
    path = _stored(storage.output_dir(tenant, job.id) / "report.json", job_id)
    return FileResponse(path, media_type="application/json")


def _stored(path: Path, job_id: str) -> Path:
    """``path``, when the file is still on disk: an output removed by hand (or a data directory
    restored without it) is a 404 the caller can act on, not a 500 from the file response."""
    if not path.is_file():
        raise NotFound(
            f"job {job_id}'s {path.name} is no longer in the data directory",
            code="artifact_not_found",
        )
    return path


@router.get("/{job_id}/artifacts", response_model=ArtifactList)
async def list_artifacts(
    job_id: str, tenant: TenantDep, db: DatabaseDep, storage: StorageDep
) -> dict[str, Any]:
    job = await run_in_threadpool(_succeeded, db, tenant, job_id)
    listed = await run_in_threadpool(_artifacts, db, storage, job)
    return {"object": "list", "data": listed}


@router.get(
    "/{job_id}/artifacts/{name:path}",
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {"schema": {"type": "string"}}}}},
    summary="Download one artifact, by a name from the list",
)
async def download_artifact(
    job_id: str,
    name: str,
    tenant: TenantDep,
    db: DatabaseDep,
    storage: StorageDep,
) -> FileResponse:
    job = await run_in_threadpool(_succeeded, db, tenant, job_id)
    listed = await run_in_threadpool(_artifacts, db, storage, job)
    entry = next((a for a in listed if a["name"] == name), None)
    if entry is None:
        raise NotFound(f"job {job_id} has no artifact {name[:200]!r}", code="artifact_not_found")
    try:
        path = inside(storage.output_dir(tenant, job.id), entry["name"])
    except OutsideRoot:
        raise NotFound(
            f"job {job_id} has no artifact {name[:200]!r}", code="artifact_not_found"
        ) from None
    return FileResponse(
        _stored(path, job_id),
        media_type=entry["content_type"],
        filename=path.name,
        headers={"X-Content-SHA256": entry["sha256"]},
    )
