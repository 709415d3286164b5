"""``/v1/jobs``: create (validated fully, then stored, then enqueued), list, get, cancel."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from layerfuse.compression.datasets import (
    SplitInfo,
    check_labels_seen,
    check_train_size,
    validate_columns,
)
from layerfuse.compression.selection import max_layers_removed, validate_target

from ..bodies import json_body
from ..broker import BrokerUnavailable
from ..deps import DatabaseDep, QueueDep, SettingsDep, StorageDep, TenantDep
from ..errors import Conflict, NotFound, ServiceUnavailable, Unprocessable
from ..ids import DATASET, IDEMPOTENCY_KEY_PATTERN, JOB, MODEL, JobCursor, is_id
from ..jobcache import JobReadCache
from ..netguard import UrlRefused, check_url
from ..objects import job_model
from ..routing import decide
from ..schemas import JobCreate, JobObject, Page, job_object, page
from ..settings import Settings
from ..storage import OutsideRoot, Storage, inside
from ..store import JOB_STATUSES, Database, Dataset, Job, Model
from ..store import jobs as job_store
from ..store import uploads as upload_store

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

SPLITS = ("train", "validation", "test")


def check_job_id(job_id: str) -> None:
    """A job id of another form names no job: 404 without a query."""
    if not is_id(job_id, JOB):
        raise NotFound(f"no job {job_id[:100]!r}")


def get_job_or_404(session: Session, tenant: str, job_id: str) -> Job:
    check_job_id(job_id)
    job = job_store.get_job(session, tenant, job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r}")
    return job


@router.post(
    "",
    status_code=201,
    response_model=JobObject,
    responses={
        200: {"description": "Replayed: the job this Idempotency-Key created earlier"},
        409: {"description": "Idempotency-Key reused with a different body"},
        422: {"description": "Invalid spec, unknown ids, or datasets that do not fit the spec"},
        503: {"description": "The queue is unavailable; no job was created"},
    },
    summary="Create a compression job",
    openapi_extra=JobCreate.openapi_request_body(),
)
def create_job(
    body: Annotated[JobCreate, Depends(json_body(JobCreate))],
    response: Response,
    tenant: TenantDep,
    db: DatabaseDep,
    settings: SettingsDep,
    storage: StorageDep,
    queue: QueueDep,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", pattern=IDEMPOTENCY_KEY_PATTERN)
    ] = None,
) -> dict[str, Any]:
    with db.session() as session:
        return _create_job(
            session, body, response, tenant, settings, storage, queue, idempotency_key
        )


def _create_job(
    session: Session,
    body: JobCreate,
    response: Response,
    tenant: str,
    settings: Settings,
    storage: Storage,
    queue: Any,
    idempotency_key: str | None,
) -> dict[str, Any]:
    spec = body.model_dump(mode="json", exclude={"metadata"})
    request_hash = hashlib.sha256(
        json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()
    ).hexdigest()
    if idempotency_key:
        replay = _replay(session, settings, tenant, idempotency_key, request_hash, response)
        if replay is not None:
            return replay
    _validate_references(session, settings, storage, tenant, body)
    _validate_outbound(settings, tenant, body)
    routing = decide(session, settings, body.options.device)
    job = job_store.create_job(
        session, tenant=tenant, spec=spec, metadata=body.metadata, routed_to=routing.device_class
    )
    if routing.warning:
        job_store.add_event(
            session,
            job.id,
            type="message",
            level="warning",
            message=routing.warning,
            data={"routed_to": routing.device_class, "queue": routing.queue},
        )
    if idempotency_key:
        job_store.remember_idempotency_key(session, tenant, idempotency_key, request_hash, job.id)
    try:
        session.commit()
    except IntegrityError:
        # A concurrent request with the same key won the race: answer as its replay.
        session.rollback()
        assert idempotency_key is not None
        replay = _replay(session, settings, tenant, idempotency_key, request_hash, response)
        if replay is None:
            raise
        return replay
    try:
        queue.enqueue(job.id, routing.device_class)
    except BrokerUnavailable:
        # Never a job that exists but will never run: take it back and let the client retry.
        job_store.delete_job(session, job.id)
        session.commit()
        raise ServiceUnavailable(
            "the job queue is unavailable, so no job was created; retry in a few seconds",
            code="broker_unavailable",
            headers={"Retry-After": "5"},
        ) from None
    return job_object(job)


def _replay(
    session: Session,
    settings: Settings,
    tenant: str,
    key: str,
    request_hash: str,
    response: Response,
) -> dict[str, Any] | None:
    record = job_store.find_idempotency_key(session, tenant, key, ttl_s=settings.idempotency_ttl_s)
    if record is None:
        return None
    if record.request_hash != request_hash:
        raise Conflict(
            "this Idempotency-Key was used with a different request body; use a new key",
            code="idempotency_key_reused",
            param="Idempotency-Key",
        )
    job = job_store.get_job(session, tenant, record.job_id)
    if job is None:
        return None
    response.status_code = 200
    response.headers["Idempotent-Replayed"] = "true"
    return job_object(job)


def _validate_references(
    session: Session, settings: Settings, storage: Storage, tenant: str, body: JobCreate
) -> None:
    """Everything a job needs exists, belongs to the tenant and fits the spec (api.md).

    Raises:
        Unprocessable: naming the field (``model.id``, ``dataset.train``, ...).
        layerfuse.compression.errors.DatasetError: a split does not fit the columns (422 with its
        code).
    """
    num_layers = _validate_model(session, settings, tenant, body)
    if num_layers is not None:
        _validate_depth(body, num_layers)
    columns = body.dataset
    train_labels: frozenset[str] = frozenset()
    for split in SPLITS:
        dataset_id = getattr(columns, split)
        if dataset_id is None:
            continue
        row = (
            upload_store.get(session, Dataset, tenant, dataset_id)
            if is_id(dataset_id, DATASET)
            else None
        )
        if row is None:
            raise Unprocessable(
                f"no dataset {dataset_id!r}; upload it with POST /v1/datasets",
                code="dataset_not_found",
                param=f"dataset.{split}",
            )
        info = _validate_split(
            str(storage.dataset_dir(tenant, row.id) / row.stored_name),
            split,
            columns.text_column,
            columns.text_pair_column,
            columns.label_column,
            settings.max_dataset_rows,
        )
        if split == "train":
            train_labels = info.labels
            check_train_size(
                info.label_counts,
                carve=columns.validation is None,
                fraction=body.options.validation_fraction,
                where=f"dataset {dataset_id}",
            )
        else:
            check_labels_seen(info.labels, train_labels, split=split, where=f"dataset {dataset_id}")


@functools.lru_cache(maxsize=256)
def _validate_split(
    path: str,
    split: str,
    text_column: str,
    text_pair_column: str | None,
    label_column: str,
    max_rows: int,
) -> SplitInfo:
    """Check a split against the columns and return what it holds; remembered, as an upload's
    file never changes (its path holds its id). Failures raise and are not remembered."""
    return validate_columns(
        Path(path),
        split=split,
        text_column=text_column,
        text_pair_column=text_pair_column,
        label_column=label_column,
        require_two_classes=split == "train",
        max_rows=max_rows,
    )


def _validate_model(
    session: Session, settings: Settings, tenant: str, body: JobCreate
) -> int | None:
    """Check the model reference; returns its layer count when known."""
    ref = body.model
    if ref.source == "upload":
        if not ref.id:
            raise Unprocessable("model.id is required for source 'upload'", param="model.id")
        row = upload_store.get(session, Model, tenant, ref.id) if is_id(ref.id, MODEL) else None
        if row is None:
            raise Unprocessable(
                f"no model {ref.id!r}; upload it with POST /v1/models",
                code="model_not_found",
                param="model.id",
            )
        return row.num_layers
    if ref.source == "path":
        if settings.models_root is None:
            raise Unprocessable(
                "this server has no models root (LAYERFUSE_MODELS_ROOT); upload the model",
                code="model_source_disabled",
                param="model.source",
            )
        if not ref.path:
            raise Unprocessable("model.path is required for source 'path'", param="model.path")
        try:
            folder = inside(settings.models_root, ref.path)
        except OutsideRoot:
            folder = None
        if folder is None or not (folder / "config.json").is_file():
            raise Unprocessable(
                f"{ref.path!r} is not a model directory below the server's models root",
                code="model_path_invalid",
                param="model.path",
            )
        return None
    if not settings.allow_hub:
        raise Unprocessable(
            "this server does not download models from the Hugging Face Hub; upload the model",
            code="model_source_disabled",
            param="model.source",
        )
    if not ref.id:
        raise Unprocessable("model.id (the Hub repository) is required", param="model.id")
    return None


def _validate_outbound(settings: Settings, tenant: str, body: JobCreate) -> None:
    """The webhook and integration URLs are http(s) and resolve to public addresses only
    (:mod:`layerfuse.service.netguard`); the worker checks them again before each call.

    Raises:
        Unprocessable: ``webhook_url_forbidden`` (or ``_invalid``, ``_unresolvable``) naming
            ``webhook``; ``mlflow_tracking_uri_*`` naming ``integrations.<i>.mlflow.tracking_uri``.
    """
    if body.webhook is not None:
        if settings.webhook_secret(tenant) is None:
            raise Unprocessable(
                "this server has no webhook signing secret for your tenant; ask its operator to "
                "set LAYERFUSE_WEBHOOK_SECRETS or LAYERFUSE_WEBHOOK_SIGNING_KEY",
                code="webhook_secret_missing",
                param="webhook",
            )
        _check_outbound(body.webhook, settings, "webhook_url", "webhook")
    for index, integration in enumerate(body.integrations):
        uri, param = integration.mlflow.tracking_uri, f"integrations.{index}.mlflow.tracking_uri"
        if uri.lower().startswith("file:"):
            if not settings.mlflow_allow_file_uri:
                raise Unprocessable(
                    "file: tracking URIs write to the worker's disk and are off on this server "
                    "(LAYERFUSE_MLFLOW_ALLOW_FILE_URI); use an http(s) MLflow server",
                    code="mlflow_tracking_uri_forbidden",
                    param=param,
                )
            continue
        _check_outbound(uri, settings, "mlflow_tracking_uri", param)


def _check_outbound(url: str, settings: Settings, code: str, param: str) -> None:
    try:
        check_url(url, allow_private=settings.webhook_allow_private)
    except UrlRefused as exc:
        raise Unprocessable(
            f"{param}: {exc.message}", code=f"{code}_{exc.kind}", param=param
        ) from None


def _validate_depth(body: JobCreate, num_layers: int) -> None:
    """The library's own depth checks, so that what the worker would refuse is refused now."""
    max_removed = max_layers_removed(body.options.max_layers_removed, num_layers)
    validate_target(body.target, num_layers, max_removed)


@router.get("", response_model=Page[JobObject], summary="List jobs, newest first")
def list_jobs(
    tenant: TenantDep,
    db: DatabaseDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: JobCursor = None,
    status: Annotated[str | None, Query(description=f"one of {', '.join(JOB_STATUSES)}")] = None,
) -> dict[str, Any]:
    if status is not None and status not in JOB_STATUSES:
        raise Unprocessable(f"status must be one of {', '.join(JOB_STATUSES)}", param="status")
    with db.session() as session:
        rows, has_more = job_store.list_jobs(
            session, tenant, limit=limit, after=after, status=status
        )
        return page([job_object(j) for j in rows], has_more, [j.id for j in rows])


@router.get("/{job_id}", response_model=JobObject)
async def get_job(job_id: str, tenant: TenantDep, request: Request) -> Response:
    # The hot read of every poller: one dependency to solve (the database is the app's, read from
    # the request), one thread hop, its connection opened and closed inside it, and the object
    # serialized once (no second validation against the response model).
    # The body is kept for the next reads of the same poller (service/jobcache.py).
    check_job_id(job_id)
    db: Database = request.app.state.db
    cache: JobReadCache = request.app.state.job_cache
    generation = cache.generation
    body = await run_in_threadpool(_job_json, db, tenant, job_id)
    cache.put(tenant, job_id, body, generation)
    return Response(body, media_type="application/json")


def _job_json(db: Database, tenant: str, job_id: str) -> bytes:
    with db.engine.connect() as connection:
        job = job_store.read_job(connection, tenant, job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r}")
    return job_model(job).model_dump_json().encode()


@router.post(
    "/{job_id}/cancel",
    status_code=202,
    response_model=JobObject,
    summary="Cancel: queued jobs at once, running ones at their next step",
)
def cancel_job(job_id: str, tenant: TenantDep, db: DatabaseDep, request: Request) -> dict[str, Any]:
    with db.session() as session:
        job = get_job_or_404(session, tenant, job_id)
        job = job_store.request_cancel(session, job)
        session.commit()
        # After the commit: a read that starts now sees the cancel, and one in flight is
        # not cached.
        request.app.state.job_cache.evict(tenant, job_id)
        return job_object(job)
