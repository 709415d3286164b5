"""Webhook deliveries: an outbox written with the events that cause them, and their attempts.

:func:`record_event` runs inside :func:`layerfuse.service.store.jobs.add_event`, in the transaction
that changed the job, so a delivery exists exactly when its event does (a crash between the two is
impossible) and its body is the job as that transaction left it. The delivery worker hands due
rows to Celery tasks (:func:`claim_due`, a lease per row) and records each attempt
(:func:`record_attempt`); backoff lives in ``next_attempt_at``, so a restart loses no retry.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from ..objects import job_object
from .models import (
    DELIVERY_FAILED,
    DELIVERY_PENDING,
    DELIVERY_SUCCEEDED,
    RUNNING,
    TERMINAL_STATUSES,
    Event,
    Job,
    WebhookDelivery,
    new_id,
)

# The ``webhook_events_filter`` names and the payload ``type`` each one sends.
WEBHOOK_EVENTS = {"started": "job.started", "stage": "job.stage", "completed": "job.completed"}


def webhook_event(event: Event) -> str | None:
    """The filter name (``started``, ``stage``, ``completed``) ``event`` belongs to, if any."""
    if event.type == "stage":
        return "stage"
    if event.type == "status":
        status = (event.data or {}).get("status")
        if status == RUNNING:
            return "started"
        if status in TERMINAL_STATUSES:
            return "completed"
    return None


def _timestamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_event(session: Session, event: Event) -> WebhookDelivery | None:
    """Queue a delivery of ``event`` when its job has a webhook that wants it."""
    name = webhook_event(event)
    if name is None:
        return None
    session.flush()  # the event's seq, and the job's UPDATEs, are visible from here
    job = session.execute(
        select(Job).where(Job.id == event.job_id).execution_options(populate_existing=True)
    ).scalar_one_or_none()
    spec = job.spec if job is not None else {}
    url = spec.get("webhook")
    if job is None or not url or name not in spec.get("webhook_events_filter", WEBHOOK_EVENTS):
        return None
    payload = {
        "type": WEBHOOK_EVENTS[name],
        "timestamp": _timestamp(event.created_at),
        "data": job_object(job),
    }
    delivery = WebhookDelivery(
        id=new_id("msg"),
        job_id=job.id,
        tenant=job.tenant,
        event_type=WEBHOOK_EVENTS[name],
        event_seq=event.seq,
        url=url,
        body=json.dumps(payload, separators=(",", ":")),
        status=DELIVERY_PENDING,
        attempts=0,
        created_at=event.created_at,
        next_attempt_at=event.created_at,
        attempt_log=[],
    )
    session.add(delivery)
    return delivery


def claim_due(session: Session, *, now: float, lease_s: float, limit: int = 100) -> list[str]:
    """Lease the pending deliveries that are due; returns their ids.

    A lease is one conditional UPDATE, so several dispatchers never hand out the same attempt
    twice; a lease that runs out (its worker died mid-attempt) makes the row due again.
    """
    due = [
        WebhookDelivery.status == DELIVERY_PENDING,
        WebhookDelivery.next_attempt_at <= now,
        or_(WebhookDelivery.leased_until.is_(None), WebhookDelivery.leased_until < now),
    ]
    ids = session.scalars(
        select(WebhookDelivery.id)
        .where(*due)
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
    ).all()
    claimed = []
    for delivery_id in ids:
        result = session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, *due)
            .values(leased_until=now + lease_s),
            execution_options={"synchronize_session": False},
        )
        if getattr(result, "rowcount", 0):
            claimed.append(delivery_id)
    return claimed


def release(session: Session, delivery_id: str) -> None:
    """Give a lease back (its task could not be sent), so the next pass hands it out again."""
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == DELIVERY_PENDING)
        .values(leased_until=None),
        execution_options={"synchronize_session": False},
    )


def get_delivery(session: Session, delivery_id: str) -> WebhookDelivery | None:
    return session.get(WebhookDelivery, delivery_id, populate_existing=True)


def record_attempt(
    session: Session,
    delivery: WebhookDelivery,
    *,
    at: float,
    status_code: int | None,
    error: str | None,
    duration_ms: float,
    next_attempt_at: float | None,
) -> None:
    """Log one attempt. ``error`` None: delivered. Else retried at ``next_attempt_at``, or given
    up on when that is None."""
    attempt: dict[str, Any] = {
        "attempt": delivery.attempts + 1,
        "at": round(at, 3),
        "status_code": status_code,
        "error": error,
        "duration_ms": round(duration_ms, 1),
    }
    delivery.attempt_log = [*(delivery.attempt_log or []), attempt]
    delivery.attempts += 1
    delivery.last_attempt_at = at
    delivery.response_status = status_code
    delivery.error = error
    delivery.leased_until = None
    if error is None:
        delivery.status, delivery.delivered_at, delivery.next_attempt_at = (
            DELIVERY_SUCCEEDED,
            at,
            None,
        )
    elif next_attempt_at is None:
        delivery.status, delivery.next_attempt_at = DELIVERY_FAILED, None
    else:
        delivery.next_attempt_at = next_attempt_at


def list_deliveries(
    session: Session, job_id: str, *, after: str | None, limit: int
) -> tuple[list[WebhookDelivery], bool]:
    """Oldest first; ``after`` is the last id of the previous page. Returns (page, has_more)."""
    query = select(WebhookDelivery).where(WebhookDelivery.job_id == job_id)
    if after:
        query = query.where(WebhookDelivery.id > after)
    rows = list(session.scalars(query.order_by(WebhookDelivery.id).limit(limit + 1)))
    return rows[:limit], len(rows) > limit
