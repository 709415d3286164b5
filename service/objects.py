"""The API's JSON objects for store rows that are also sent outside a request.

A job object is what ``GET /v1/jobs/{id}`` answers and what a webhook delivers as ``data``; the
store builds webhook payloads inside the transaction that changed the job, so the builder lives
here, free of fastapi, and :mod:`layerfuse.service.schemas` re-exports it.
"""

from __future__ import annotations

from typing import Any

from .store.models import Job, WebhookDelivery


def _int(value: float | None) -> int | None:
    return int(value) if value is not None else None


def job_object(job: Job) -> dict[str, Any]:
    base = f"/v1/jobs/{job.id}"
    progress = None
    if job.fraction is not None:
        progress = {
            "fraction": round(job.fraction, 4),
            "stage_fraction": None if job.stage_fraction is None else round(job.stage_fraction, 4),
            "eta_seconds": None if job.eta_seconds is None else round(job.eta_seconds),
        }
    return {
        "id": job.id,
        "object": "compression.job",
        "status": job.status,
        "stage": job.stage,
        "progress": progress,
        "attempts": job.attempts,
        "created_at": int(job.created_at),
        "started_at": _int(job.started_at),
        "finished_at": _int(job.finished_at),
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


def delivery_object(row: WebhookDelivery) -> dict[str, Any]:
    """One webhook message and every attempt to deliver it."""
    return {
        "id": row.id,
        "object": "webhook.delivery",
        "job_id": row.job_id,
        "event_type": row.event_type,
        "url": row.url,
        "status": row.status,
        "attempts": row.attempts,
        "created_at": int(row.created_at),
        "last_attempt_at": _int(row.last_attempt_at),
        "next_attempt_at": _int(row.next_attempt_at) if row.status == "pending" else None,
        "delivered_at": _int(row.delivered_at),
        "response_status_code": row.response_status,
        "error": row.error,
        "attempt_log": list(row.attempt_log or []),
    }
