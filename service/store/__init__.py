"""The job store: SQLAlchemy 2 tables, Alembic migrations and the functions that change them.

Free of fastapi and torch, so the API and the worker share it.
"""

from __future__ import annotations

from .db import Database, upgrade
from .models import (
    ACTIVE_STATUSES,
    CANCELLED,
    CANCELLING,
    DELIVERY_FAILED,
    DELIVERY_PENDING,
    DELIVERY_SUCCEEDED,
    FAILED,
    JOB_STATUSES,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    TERMINAL_STATUSES,
    Dataset,
    Event,
    IdempotencyKey,
    Job,
    Model,
    WebhookDelivery,
    Worker,
    new_id,
    now,
)

__all__ = [
    "ACTIVE_STATUSES",
    "CANCELLED",
    "CANCELLING",
    "DELIVERY_FAILED",
    "DELIVERY_PENDING",
    "DELIVERY_SUCCEEDED",
    "FAILED",
    "JOB_STATUSES",
    "QUEUED",
    "RUNNING",
    "SUCCEEDED",
    "TERMINAL_STATUSES",
    "Database",
    "Dataset",
    "Event",
    "IdempotencyKey",
    "Job",
    "Model",
    "WebhookDelivery",
    "Worker",
    "new_id",
    "now",
    "upgrade",
]
