"""Request and response bodies of the API (api.md).

The job body reuses the library's :class:`~layerfuse.compression.spec.MethodSpec` (strategy,
strategies, target, distillation, options) and :class:`~layerfuse.compression.spec.Columns`, so the
API validates a spec with the very rules, defaults and bounds the library runs with.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from layerfuse.compression.spec import Columns, MethodSpec

# The API's objects are declared in layerfuse.service.objects (the store builds them too).
from .objects import ArtifactList as ArtifactList
from .objects import DatasetObject as DatasetObject
from .objects import EventObject as EventObject
from .objects import JobObject as JobObject
from .objects import ModelObject as ModelObject
from .objects import WebhookDeliveryObject as WebhookDeliveryObject
from .objects import dataset_object as dataset_object
from .objects import delivery_object as delivery_object
from .objects import event_object as event_object
from .objects import job_object as job_object
from .objects import model_object as model_object

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

    @classmethod
    def openapi_request_body(cls) -> dict[str, Any]:
        """The route's ``openapi_extra``: it reads the body itself (:mod:`..bodies`)."""
        schema = {"$ref": f"#/components/schemas/{cls.__name__}"}
        return {
            "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}
        }

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


class Deleted(BaseModel):
    id: str
    object: Literal["model", "dataset"]
    deleted: Literal[True]


def page(items: list[T], has_more: bool, ids: list[str]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": items,
        "first_id": ids[0] if ids else None,
        "last_id": ids[-1] if ids else None,
        "has_more": has_more,
    }
