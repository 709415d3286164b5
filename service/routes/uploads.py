"""``/v1/models`` and ``/v1/datasets``: uploads, and the same list/get/delete for both."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from layerfuse.compression.datasets import inspect_table

from ..deps import DatabaseDep, SettingsDep, StorageDep, TenantDep
from ..errors import Conflict, NotFound
from ..ids import DATASET, MODEL, DatasetCursor, ModelCursor, is_id
from ..schemas import (
    DatasetObject,
    Deleted,
    ModelObject,
    Page,
    dataset_object,
    model_object,
    page,
)
from ..storage import publish, remove_tree
from ..store import Database, Dataset, Model, new_id, now
from ..store import jobs as job_store
from ..store import uploads as upload_store
from ..uploads import check_dataset_filename, check_model_filename, inspect_model, receive_files

models = APIRouter(prefix="/v1/models", tags=["models"])
datasets = APIRouter(prefix="/v1/datasets", tags=["datasets"])


def _multipart(field: str, description: str, many: bool) -> dict[str, Any]:
    binary = {"type": "string", "format": "binary"}
    schema = {"type": "array", "items": binary} if many else binary
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {field: {**schema, "description": description}},
                        "required": [field],
                    }
                }
            },
        }
    }


LimitQuery = Annotated[int, Query(ge=1, le=100)]


# --- Models ---------------------------------------------------------------------------------


@models.post(
    "",
    status_code=201,
    response_model=ModelObject,
    summary="Upload a Hugging Face model directory's files",
    openapi_extra=_multipart(
        "files", "config.json, model.safetensors (or shards and index), tokenizer files", True
    ),
)
async def upload_model(
    request: Request,
    tenant: TenantDep,
    settings: SettingsDep,
    storage: StorageDep,
    db: DatabaseDep,
) -> dict[str, Any]:
    model_id = new_id("mdl")
    incoming = storage.incoming(tenant, "models", model_id)
    received = await receive_files(
        request, incoming, limit=settings.max_model_upload_bytes, check_name=check_model_filename
    )
    try:
        info = await run_in_threadpool(inspect_model, incoming, received.files)
        row = Model(
            id=model_id,
            tenant=tenant,
            architecture=info.architecture,
            model_type=info.model_type,
            num_layers=info.num_layers,
            num_labels=info.num_labels,
            parameters=info.parameters,
            bytes=received.bytes,
            files=sorted(received.files),
            created_at=now(),
        )
        await run_in_threadpool(
            _store_upload, db, row, incoming, storage.model_dir(tenant, model_id)
        )
    finally:
        remove_tree(incoming)
    return model_object(row)


@models.get("", response_model=Page[ModelObject], summary="List models, newest first")
def list_models(
    tenant: TenantDep, db: DatabaseDep, limit: LimitQuery = 20, after: ModelCursor = None
) -> dict[str, Any]:
    with db.session() as session:
        rows, has_more = upload_store.page(session, Model, tenant, limit=limit, after=after)
        return page([model_object(r) for r in rows], has_more, [r.id for r in rows])


@models.get("/{model_id}", response_model=ModelObject)
def get_model(model_id: str, tenant: TenantDep, db: DatabaseDep) -> dict[str, Any]:
    with db.session() as session:
        return model_object(_get(session, Model, tenant, model_id))


@models.delete("/{model_id}", response_model=Deleted)
def delete_model(
    model_id: str, tenant: TenantDep, db: DatabaseDep, storage: StorageDep
) -> dict[str, Any]:
    with db.session() as session:
        _get(session, Model, tenant, model_id)
        if any(
            job.spec.get("model", {}).get("id") == model_id
            for job in job_store.active_jobs(session, tenant)
        ):
            raise Conflict(
                f"model {model_id} is used by a job that has not finished", code="resource_in_use"
            )
        upload_store.remove(session, Model, model_id)
    remove_tree(storage.model_dir(tenant, model_id))
    return {"id": model_id, "object": "model", "deleted": True}


# --- Datasets -------------------------------------------------------------------------------


@datasets.post(
    "",
    status_code=201,
    response_model=DatasetObject,
    summary="Upload one dataset file (JSONL, CSV, TSV or Parquet)",
    openapi_extra=_multipart("file", "a .jsonl, .csv, .tsv or .parquet file", False),
)
async def upload_dataset(
    request: Request,
    tenant: TenantDep,
    settings: SettingsDep,
    storage: StorageDep,
    db: DatabaseDep,
) -> dict[str, Any]:
    dataset_id = new_id("ds")
    incoming = storage.incoming(tenant, "datasets", dataset_id)
    received = await receive_files(
        request,
        incoming,
        limit=settings.max_dataset_upload_bytes,
        check_name=check_dataset_filename,
        max_files=1,
    )
    try:
        (filename,) = received.files
        # Inspected under the name the user sent, so a refusal names their file; then stored
        # under its id, so the library's messages in a job name the dataset.
        table = await run_in_threadpool(
            inspect_table, incoming / filename, max_rows=settings.max_dataset_rows
        )
        stored_name = dataset_id + Path(filename).suffix.lower()
        os.replace(incoming / filename, incoming / stored_name)
        row = Dataset(
            id=dataset_id,
            tenant=tenant,
            filename=filename,
            stored_name=stored_name,
            format=table.format,
            rows=table.rows,
            columns=list(table.columns),
            bytes=received.bytes,
            created_at=now(),
        )
        await run_in_threadpool(
            _store_upload, db, row, incoming, storage.dataset_dir(tenant, dataset_id)
        )
    finally:
        remove_tree(incoming)
    return dataset_object(row)


@datasets.get("", response_model=Page[DatasetObject], summary="List datasets, newest first")
def list_datasets(
    tenant: TenantDep, db: DatabaseDep, limit: LimitQuery = 20, after: DatasetCursor = None
) -> dict[str, Any]:
    with db.session() as session:
        rows, has_more = upload_store.page(session, Dataset, tenant, limit=limit, after=after)
        return page([dataset_object(r) for r in rows], has_more, [r.id for r in rows])


@datasets.get("/{dataset_id}", response_model=DatasetObject)
def get_dataset(dataset_id: str, tenant: TenantDep, db: DatabaseDep) -> dict[str, Any]:
    with db.session() as session:
        return dataset_object(_get(session, Dataset, tenant, dataset_id))


@datasets.delete("/{dataset_id}", response_model=Deleted)
def delete_dataset(
    dataset_id: str, tenant: TenantDep, db: DatabaseDep, storage: StorageDep
) -> dict[str, Any]:
    splits = ("train", "validation", "test")
    with db.session() as session:
        _get(session, Dataset, tenant, dataset_id)
        for job in job_store.active_jobs(session, tenant):
            if dataset_id in (job.spec.get("dataset", {}).get(s) for s in splits):
                raise Conflict(
                    f"dataset {dataset_id} is used by a job that has not finished",
                    code="resource_in_use",
                )
        upload_store.remove(session, Dataset, dataset_id)
    remove_tree(storage.dataset_dir(tenant, dataset_id))
    return {"id": dataset_id, "object": "dataset", "deleted": True}


# --- Shared ---------------------------------------------------------------------------------


def _get(session: Session, kind: type[upload_store.Upload], tenant: str, upload_id: str) -> Any:
    noun, prefix = ("model", MODEL) if kind is Model else ("dataset", DATASET)
    row = upload_store.get(session, kind, tenant, upload_id) if is_id(upload_id, prefix) else None
    if row is None:
        raise NotFound(f"no {noun} {upload_id[:100]!r}")
    return row


def _store_upload(db: Database, row: Model | Dataset, incoming: Path, final: Path) -> None:
    """Rename the files into place, then record the row: a row always has its files."""
    publish(incoming, final)
    try:
        with db.session() as session:
            session.add(row)
    except BaseException:
        remove_tree(final)
        raise
