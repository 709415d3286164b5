"""The API's objects (api.md): one declaration each, and the builders that fill them from rows.

Each class is the object's only declaration on the server: the OpenAPI schemas come from it, the
builders construct it (so a builder that forgets or invents a field fails), and the client's
TypedDicts in :mod:`layerfuse.client` are tested against it. Free of fastapi: the store builds
webhook payloads (a job object) inside the transaction that changed the job.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict

from .store.models import Dataset, Event, Job, Model, WebhookDelivery, Worker


def _seconds(value: Any) -> Any:
    """The store keeps float seconds; the API answers whole seconds."""
    return int(value) if isinstance(value, float) else value


Timestamp = Annotated[int, BeforeValidator(_seconds)]


class ApiObject(BaseModel):
    model_config = ConfigDict(extra="forbid", from_attributes=True)


class ModelObject(ApiObject):
    id: str
    object: Literal["model"] = "model"
    architecture: str
    model_type: str
    num_layers: int
    num_labels: int | None
    parameters: int
    bytes: int
    files: list[str]
    created_at: Timestamp


class DatasetObject(ApiObject):
    id: str
    object: Literal["dataset"] = "dataset"
    filename: str
    format: str
    rows: int
    columns: list[str]
    bytes: int
    created_at: Timestamp


class ProgressObject(ApiObject):
    fraction: float
    stage_fraction: float | None
    eta_seconds: float | None


class JobError(ApiObject):
    code: str
    message: str
    stage: str | None = None


class JobUrls(ApiObject):
    events: str
    stream: str
    report: str
    artifacts: str


class JobObject(ApiObject):
    id: str
    object: Literal["compression.job"] = "compression.job"
    status: str
    stage: str | None
    progress: ProgressObject | None
    attempts: int
    # The queue class chosen at creation (docs/service.md, Routing); null on jobs that ended
    # before routing existed.
    routed_to: Literal["cpu", "gpu"] | None
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    spec: dict[str, Any]
    error: JobError | None
    result: dict[str, Any] | None
    metadata: dict[str, Any]
    urls: JobUrls


class EventObject(ApiObject):
    id: str
    object: Literal["compression.job.event"] = "compression.job.event"
    job_id: str
    created_at: Timestamp
    level: str
    type: str
    stage: str | None
    message: str
    data: dict[str, Any] | None


class ArtifactObject(ApiObject):
    name: str
    bytes: int
    sha256: str
    content_type: str


class AttemptObject(ApiObject):
    attempt: int
    at: float
    status_code: int | None
    error: str | None
    duration_ms: float


class WebhookDeliveryObject(ApiObject):
    id: str
    object: Literal["webhook.delivery"] = "webhook.delivery"
    job_id: str
    event_type: str
    url: str
    status: Literal["pending", "succeeded", "failed"]
    attempts: int
    created_at: Timestamp
    last_attempt_at: Timestamp | None
    next_attempt_at: Timestamp | None
    delivered_at: Timestamp | None
    response_status_code: int | None
    error: str | None
    attempt_log: list[AttemptObject]


class WorkerObject(ApiObject):
    """A worker seen recently and what it runs on; no job data."""

    name: str
    object: Literal["worker"] = "worker"
    device_class: Literal["cpu", "gpu"]
    queue: str | None
    device: str | None
    device_name: str | None
    memory_bytes: int | None
    concurrency: int | None
    started_at: Timestamp
    last_seen_at: Timestamp


class WorkerList(ApiObject):
    object: Literal["list"] = "list"
    data: list[WorkerObject]


class ArtifactList(ApiObject):
    object: Literal["list"] = "list"
    data: list[ArtifactObject]


def _rounded(value: float | None, digits: int | None) -> float | None:
    return None if value is None else round(value, digits)


def job_model(job: Job) -> JobObject:
    base = f"/v1/jobs/{job.id}"
    progress = None
    if job.fraction is not None:
        progress = {
            "fraction": round(job.fraction, 4),
            "stage_fraction": _rounded(job.stage_fraction, 4),
            "eta_seconds": _rounded(job.eta_seconds, None),
        }
    return JobObject.model_validate(
        {
            "id": job.id,
            "status": job.status,
            "stage": job.stage,
            "progress": progress,
            "attempts": job.attempts,
            "routed_to": job.routed_to,
            "created_at": job.created_at,
            "started_at": job.started_at,
            "finished_at": job.finished_at,
            "spec": job.spec,
            "error": job.error,
            "result": job.result,
            "metadata": job.job_metadata,
            "urls": {
                "events": f"{base}/events",
                "stream": f"{base}/events/stream",
                "report": f"{base}/report",
                "artifacts": f"{base}/artifacts",
            },
        }
    )


def job_object(job: Job) -> dict[str, Any]:
    """What ``GET /v1/jobs/{id}`` answers and a webhook delivers as ``data``."""
    return job_model(job).model_dump(mode="json")


def model_object(row: Model) -> dict[str, Any]:
    return ModelObject.model_validate(row).model_dump(mode="json")


def dataset_object(row: Dataset) -> dict[str, Any]:
    return DatasetObject.model_validate(row).model_dump(mode="json")


def event_id(seq: int) -> str:
    return f"evt_{seq}"


def event_object(event: Event) -> dict[str, Any]:
    return EventObject.model_validate(
        {
            "id": event_id(event.seq),
            "job_id": event.job_id,
            "created_at": event.created_at,
            "level": event.level,
            "type": event.type,
            "stage": event.stage,
            "message": event.message,
            "data": event.data,
        }
    ).model_dump(mode="json")


def delivery_object(row: WebhookDelivery) -> dict[str, Any]:
    """One webhook message and every attempt to deliver it."""
    return WebhookDeliveryObject.model_validate(
        {
            "id": row.id,
            "job_id": row.job_id,
            "event_type": row.event_type,
            "url": row.url,
            "status": row.status,
            "attempts": row.attempts,
            "created_at": row.created_at,
            "last_attempt_at": row.last_attempt_at,
            "next_attempt_at": row.next_attempt_at if row.status == "pending" else None,
            "delivered_at": row.delivered_at,
            "response_status_code": row.response_status,
            "error": row.error,
            "attempt_log": list(row.attempt_log or []),
        }
    ).model_dump(mode="json")


def worker_object(row: Worker) -> dict[str, Any]:
    return WorkerObject.model_validate(row).model_dump(mode="json")
