"""A succeeded job's report and artifacts. Names come from the job's own list, never a path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from starlette.responses import MalformedRangeHeader, RangeNotSatisfiable

from layerfuse.compression.report import Report

from ..artifacts import MODEL_ZIP, ensure_model_zip
from ..deps import DatabaseDep, StorageDep, TenantDep
from ..errors import ApiError, Conflict, NotFound
from ..schemas import ArtifactList
from ..storage import OutsideRoot, Storage, inside
from ..store import SUCCEEDED, Database, Job
from ..store import jobs as job_store
from .jobs import get_job_or_404

router = APIRouter(prefix="/v1/jobs", tags=["artifacts"])


class ArtifactResponse(FileResponse):
    """A file response whose Range errors are the API's: Starlette answers a Range it cannot
    read with a plain-text 400 and one past the end with an empty plain-text 416. RFC 9110
    (section 14.2) lets a server ignore a Range it cannot read, which a download resumed by a
    confused client survives: the whole file, 200. One past the end is checked by the route first
    (:func:`_check_range`), so it is a problem+json 416."""

    @classmethod
    def _parse_range_header(cls, http_range: str, file_size: int) -> list[tuple[int, int]]:
        try:
            return super()._parse_range_header(http_range, file_size)
        except MalformedRangeHeader:
            return []  # no ranges: FileResponse sends the whole file


def _check_range(request: Request, path: Path) -> None:
    """Refuse, as problem+json, a Range that the file response would answer with 416."""
    http_range = request.headers.get("range")
    # With If-Range the response may ignore the Range (the file changed); let it decide.
    if http_range is None or "if-range" in request.headers:
        return
    size = path.stat().st_size
    try:
        ArtifactResponse._parse_range_header(http_range, size)
    except RangeNotSatisfiable:
        raise ApiError(
            f"Range {http_range[:100]!r} starts past the end of the {size}-byte file",
            code="range_not_satisfiable",
            param="Range",
            headers={"Content-Range": f"bytes */{size}"},
        ) from None


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


# HEAD too: a download manager asks for the size (and whether ranges work) before it fetches.
@router.api_route(
    "/{job_id}/artifacts/{name:path}",
    methods=["GET", "HEAD"],
    response_class=ArtifactResponse,
    responses={200: {"content": {"application/octet-stream": {"schema": {"type": "string"}}}}},
    summary="Download one artifact, by a name from the list",
)
async def download_artifact(
    job_id: str,
    name: str,
    request: Request,
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
    _check_range(request, _stored(path, job_id))
    return ArtifactResponse(
        path,
        media_type=entry["content_type"],
        filename=path.name,
        headers={"X-Content-SHA256": entry["sha256"]},
    )
