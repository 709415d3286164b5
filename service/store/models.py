"""The job store's tables (architecture.md, Runtime): jobs, events, models, datasets,
idempotency keys, the workers seen (for ``/readyz``) and webhook deliveries.

Times are seconds since the epoch as floats: the same on SQLite and PostgreSQL, and what the API
returns (as integers). Ids are time-ordered (:func:`new_id`), so "newest first" is "id descending".
"""

from __future__ import annotations

import secrets
import time
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names, so Alembic migrations are the same on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

QUEUED, RUNNING, CANCELLING = "queued", "running", "cancelling"
SUCCEEDED, FAILED, CANCELLED = "succeeded", "failed", "cancelled"
TERMINAL_STATUSES = frozenset({SUCCEEDED, FAILED, CANCELLED})
ACTIVE_STATUSES = frozenset({QUEUED, RUNNING, CANCELLING})
JOB_STATUSES = (QUEUED, RUNNING, CANCELLING, SUCCEEDED, FAILED, CANCELLED)
DELIVERY_PENDING, DELIVERY_SUCCEEDED, DELIVERY_FAILED = "pending", "succeeded", "failed"

# SQLite autoincrements only INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
EventSeq = BigInteger().with_variant(Integer(), "sqlite")


def new_id(prefix: str) -> str:
    """``prefix_`` + 12 hex digits of milliseconds + 12 random hex digits: sortable by time."""
    return f"{prefix}_{int(time.time() * 1000):012x}{secrets.token_hex(6)}"


def now() -> float:
    return time.time()


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_tenant_id", "tenant", "id"),
        Index("ix_jobs_status_created_at", "status", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    stage: Mapped[str | None] = mapped_column(String(32))
    fraction: Mapped[float | None] = mapped_column(Float)
    stage_fraction: Mapped[float | None] = mapped_column(Float)
    eta_seconds: Mapped[float | None] = mapped_column(Float)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    job_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSON)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # [{"name", "bytes", "sha256", "content_type"}], written by the worker when the job succeeds.
    artifacts: Mapped[list[Any] | None] = mapped_column(JSON)
    # Claiming: each attempt increments ``attempts`` and takes a fresh ``claim_token``; an
    # attempt's writes are conditional on its token, so a worker presumed dead cannot overwrite
    # a newer attempt.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claim_token: Mapped[str | None] = mapped_column(String(32))
    worker: Mapped[str | None] = mapped_column(String(255))
    heartbeat_at: Mapped[float | None] = mapped_column(Float)
    enqueued_at: Mapped[float | None] = mapped_column(Float)
    # The device class whose queue the job was sent to at creation ("cpu" or "gpu"); every
    # re-enqueue uses it again. NULL only on jobs that ended before routing existed.
    routed_to: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_job_id_seq", "job_id", "seq"),)

    seq: Mapped[int] = mapped_column(EventSeq, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(40), ForeignKey("jobs.id", ondelete="CASCADE"))
    created_at: Mapped[float] = mapped_column(Float)
    level: Mapped[str] = mapped_column(String(16))
    type: Mapped[str] = mapped_column(String(16))
    stage: Mapped[str | None] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Model(Base):
    __tablename__ = "models"
    __table_args__ = (Index("ix_models_tenant_id", "tenant", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    architecture: Mapped[str] = mapped_column(String(128))
    model_type: Mapped[str] = mapped_column(String(64))
    num_layers: Mapped[int] = mapped_column(Integer)
    num_labels: Mapped[int | None] = mapped_column(Integer)
    parameters: Mapped[int] = mapped_column(BigInteger)
    bytes: Mapped[int] = mapped_column(BigInteger)
    files: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float)


class Dataset(Base):
    __tablename__ = "datasets"
    __table_args__ = (Index("ix_datasets_tenant_id", "tenant", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(255))
    stored_name: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(16))
    rows: Mapped[int] = mapped_column(BigInteger)
    columns: Mapped[list[Any]] = mapped_column(JSON)
    bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[float] = mapped_column(Float)


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[float] = mapped_column(Float, index=True)


class Worker(Base):
    """A worker process and what it runs on: written by its heartbeat, read by ``/readyz``,
    ``GET /v1/workers`` and job routing (a GPU worker seen recently)."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    started_at: Mapped[float] = mapped_column(Float)
    last_seen_at: Mapped[float] = mapped_column(Float)
    # "cpu" or "gpu": the queue class it consumes. Rows from before these columns say "cpu".
    device_class: Mapped[str] = mapped_column(String(8), default="cpu", server_default="cpu")
    queue: Mapped[str | None] = mapped_column(String(128))
    device: Mapped[str | None] = mapped_column(String(16))  # the torch device type it runs on
    device_name: Mapped[str | None] = mapped_column(String(255))
    memory_bytes: Mapped[int | None] = mapped_column(BigInteger)
    concurrency: Mapped[int | None] = mapped_column(Integer)


class WebhookDelivery(Base):
    """One webhook message (Standard Webhooks): written with the event that caused it, in the
    same transaction (an outbox), then sent, and retried with backoff, by the delivery worker.

    ``body`` is frozen at creation so every attempt sends the same bytes under the same ``id``.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_job_id_id", "job_id", "id"),
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # the webhook-id header
    job_id: Mapped[str] = mapped_column(String(40), ForeignKey("jobs.id", ondelete="CASCADE"))
    tenant: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(32))
    event_seq: Mapped[int] = mapped_column(EventSeq)
    url: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[float] = mapped_column(Float)
    next_attempt_at: Mapped[float | None] = mapped_column(Float)
    # Handed to a delivery task until then; past it, the dispatcher hands it out again.
    leased_until: Mapped[float | None] = mapped_column(Float)
    last_attempt_at: Mapped[float | None] = mapped_column(Float)
    delivered_at: Mapped[float | None] = mapped_column(Float)
    response_status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    # [{"attempt", "at", "status_code", "error", "duration_ms"}], one entry per attempt.
    attempt_log: Mapped[list[Any]] = mapped_column(JSON, default=list)
