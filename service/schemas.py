"""Request and response bodies of the API (api.md).

The job body reuses the library's :class:`~layerfuse.compression.spec.MethodSpec` (strategy,
strategies, target, distillation, options) and :class:`~layerfuse.compression.spec.Columns`, so the
API validates a spec with the very rules, defaults and bounds the library runs with.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from layerfuse.compression.spec import Columns, MethodSpec

# Re-exported: built in layerfuse.service.objects because the store needs them too.
from .objects import delivery_object as delivery_object
from .objects import job_object as job_object
from .store import Dataset, Event, Model

MAX_METADATA_KEYS = 16
WebhookEventName = Literal["started", "stage", "completed"]
WEBHOOK_EVENT_NAMES: list[WebhookEventName] = ["started", "stage", "completed"]
REGISTERED_MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,255}$"


class ModelRef(BaseModel):
    """Which model to compress; the fields needed depend on ``source``."""

    model_config = ConfigDict(extra="forbid")

    source: Literal["upload", "path", "hub"] = "upload"
    id: str | None = Field(default=None, max_length=200, description="upload: mdl_…; hub: repo id")
    path: str | None = Field(
        default=None, max_length=1024, description="path: relative to the server's models root"
    )
    revision: str | None = Field(default=None, max_length=200, description="hub only")


class DatasetRef(Columns):
    """Dataset ids per split, and the columns to read from each."""

    train: str = Field(max_length=64)
    validation: str | None = Field(default=None, max_length=64)
    test: str | None = Field(default=None, max_length=64)


class MlflowOptions(BaseModel):
    """Where the worker logs a succeeded job (docs/service.md, MLflow)."""

    model_config = ConfigDict(extra="forbid")

    tracking_uri: str = Field(
        max_length=2048, description="http(s) URL of an MLflow tracking server (public address)"
    )
    experiment: str = Field(default="layerfuse", min_length=1, max_length=256)
    registered_model_name: str | None = Field(
        default=None,
        pattern=REGISTERED_MODEL_NAME,
        description="register the compressed model as a new version of this model",
    )


class MlflowIntegration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["mlflow"]
    mlflow: MlflowOptions


def _all_webhook_events() -> list[WebhookEventName]:
    return list(WEBHOOK_EVENT_NAMES)


class JobCreate(MethodSpec):
    """``POST /v1/jobs``: model and dataset references, the method spec, and free metadata."""

    model: ModelRef
    dataset: DatasetRef
    metadata: dict[str, str] = Field(default_factory=dict)
    webhook: str | None = Field(
        default=None,
        max_length=2048,
        description="http(s) URL that receives signed job.started / job.stage / job.completed",
    )
    webhook_events_filter: list[WebhookEventName] = Field(
        default_factory=_all_webhook_events, min_length=1
    )
    integrations: list[MlflowIntegration] = Field(default_factory=list, max_length=4)

    @field_validator("webhook_events_filter")
    @classmethod
    def _unique_events(cls, value: list[WebhookEventName]) -> list[WebhookEventName]:
        return list(dict.fromkeys(value))

    @field_validator("metadata")
    @classmethod
    def _bounded_metadata(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_METADATA_KEYS:
            raise ValueError(f"at most {MAX_METADATA_KEYS} metadata keys")
        for key, item in value.items():
            if not 1 <= len(key) <= 64 or len(item) > 512:
                raise ValueError("metadata keys are 1-64 characters, values at most 512")
        return value


# --- Responses ------------------------------------------------------------------------------

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    object: Literal["list"] = "list"
    data: list[T]
    first_id: str | None
    last_id: str | None
    has_more: bool


def page(items: list[T], has_more: bool, ids: list[str]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": items,
        "first_id": ids[0] if ids else None,
        "last_id": ids[-1] if ids else None,
        "has_more": has_more,
    }


class ModelObject(BaseModel):
    id: str
    object: Literal["model"] = "model"
    architecture: str
    model_type: str
    num_layers: int
    num_labels: int | None
    parameters: int
    bytes: int
    files: list[str]
    created_at: int


class DatasetObject(BaseModel):
    id: str
    object: Literal["dataset"] = "dataset"
    filename: str
    format: str
    rows: int
    columns: list[str]
    bytes: int
    created_at: int


class ProgressObject(BaseModel):
    fraction: float
    stage_fraction: float | None
    eta_seconds: float | None


class JobError(BaseModel):
    code: str
    message: str
    stage: str | None = None


class JobUrls(BaseModel):
    events: str
    stream: str
    report: str
    artifacts: str


class JobObject(BaseModel):
    id: str
    object: Literal["compression.job"] = "compression.job"
    status: str
    stage: str | None
    progress: ProgressObject | None
    attempts: int
    created_at: int
    started_at: int | None
    finished_at: int | None
    spec: dict[str, Any]
    error: JobError | None
    result: dict[str, Any] | None
    metadata: dict[str, Any]
    urls: JobUrls


class EventObject(BaseModel):
    id: str
    object: Literal["compression.job.event"] = "compression.job.event"
    job_id: str
    created_at: int
    level: str
    type: str
    stage: str | None
    message: str
    data: dict[str, Any] | None


class ArtifactObject(BaseModel):
    name: str
    bytes: int
    sha256: str
    content_type: str


class AttemptObject(BaseModel):
    attempt: int
    at: float
    status_code: int | None
    error: str | None
    duration_ms: float


class WebhookDeliveryObject(BaseModel):
    id: str
    object: Literal["webhook.delivery"] = "webhook.delivery"
    job_id: str
    event_type: str
    url: str
    status: Literal["pending", "succeeded", "failed"]
    attempts: int
    created_at: int
    last_attempt_at: int | None
    next_attempt_at: int | None
    delivered_at: int | None
    response_status_code: int | None
    error: str | None
    attempt_log: list[AttemptObject]


class ArtifactList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ArtifactObject]


def model_object(row: Model) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "model",
        "architecture": row.architecture,
        "model_type": row.model_type,
        "num_layers": row.num_layers,
        "num_labels": row.num_labels,
        "parameters": row.parameters,
        "bytes": row.bytes,
        "files": list(row.files),
        "created_at": int(row.created_at),
    }


def dataset_object(row: Dataset) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "dataset",
        "filename": row.filename,
        "format": row.format,
        "rows": row.rows,
        "columns": list(row.columns),
        "bytes": row.bytes,
        "created_at": int(row.created_at),
    }


def event_id(seq: int) -> str:
    return f"evt_{seq}"


def parse_event_id(value: str | None) -> int | None:
    """``evt_<n>`` (or a bare ``n``, as some SSE clients send) to ``n``; None if unreadable."""
    if not value:
        return None
    digits = value.removeprefix("evt_")
    return int(digits) if digits.isdigit() else None


def event_object(event: Event) -> dict[str, Any]:
    return {
        "id": event_id(event.seq),
        "object": "compression.job.event",
        "job_id": event.job_id,
        "created_at": int(event.created_at),
        "level": event.level,
        "type": event.type,
        "stage": event.stage,
        "message": event.message,
        "data": event.data,
    }
