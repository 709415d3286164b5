"""Jobs and their events: every status transition is one conditional UPDATE.

The job row is the truth for status. Transitions are atomic (``UPDATE ... WHERE status = ...``)
so the API, the worker and the reconciler may race without corrupting a job, and terminal states
never change. A worker's writes carry its claim token: once the reconciler has handed a job to a
new attempt, the old attempt's writes match no row.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import Connection, and_, bindparam, delete, func, or_, select, update
from sqlalchemy.orm import Session

from .models import (
    ACTIVE_STATUSES,
    CANCELLED,
    CANCELLING,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    TERMINAL_STATUSES,
    Event,
    IdempotencyKey,
    Job,
    WebhookDelivery,
    new_id,
    now,
)
from .webhooks import record_event

# The queue class of a job from before routing (the migration gives active ones a class).
CPU_CLASS = "cpu"


def _set(session: Session, where: Sequence[Any], **values: Any) -> bool:
    """One conditional UPDATE of jobs; True when it matched a row."""
    result = session.execute(
        update(Job).where(*where).values(**values),
        execution_options={"synchronize_session": False},
    )
    return bool(getattr(result, "rowcount", 0))


# --- API side -------------------------------------------------------------------------------


def create_job(
    session: Session,
    *,
    tenant: str,
    spec: dict[str, Any],
    metadata: dict[str, Any],
    routed_to: str,
) -> Job:
    t = now()
    job = Job(
        id=new_id("job"),
        tenant=tenant,
        status=QUEUED,
        spec=spec,
        job_metadata=metadata,
        attempts=0,
        routed_to=routed_to,
        created_at=t,
        enqueued_at=t,
    )
    session.add(job)
    session.flush()
    add_event(
        session,
        job.id,
        type="status",
        message=f"job queued for a {routed_to.upper()} worker",
        data={"status": QUEUED, "routed_to": routed_to},
    )
    return job


_JOB_COLUMNS = list(Job.__table__.c)
_JOB_ATTRIBUTES = [Job.__mapper__.get_property_by_column(c).key for c in _JOB_COLUMNS]
_READ_JOB = select(*_JOB_COLUMNS).where(
    Job.__table__.c.id == bindparam("job_id"), Job.__table__.c.tenant == bindparam("tenant")
)


def read_job(connection: Connection, tenant: str, job_id: str) -> Job | None:
    """The hot read of every poller, without the ORM: one Core query on a bare connection, the
    row returned as a plain object with the :class:`Job` attributes (about 5x cheaper than a
    session and a mapped instance). Read-only: nothing it returns is tracked or saved."""
    row = connection.execute(_READ_JOB, {"job_id": job_id, "tenant": tenant}).first()
    if row is None:
        return None
    return cast(Job, SimpleNamespace(**dict(zip(_JOB_ATTRIBUTES, row, strict=True))))


def get_job(session: Session, tenant: str, job_id: str) -> Job | None:
    return session.scalar(select(Job).where(Job.id == job_id, Job.tenant == tenant))


def list_jobs(
    session: Session, tenant: str, *, limit: int, after: str | None, status: str | None
) -> tuple[list[Job], bool]:
    """Newest first; ``after`` is the last id of the previous page. Returns (page, has_more)."""
    query = select(Job).where(Job.tenant == tenant)
    if status:
        query = query.where(Job.status == status)
    if after:
        query = query.where(Job.id < after)
    rows = list(session.scalars(query.order_by(Job.id.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def delete_job(session: Session, job_id: str) -> None:
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.job_id == job_id))
    session.execute(delete(Event).where(Event.job_id == job_id))
    session.execute(delete(IdempotencyKey).where(IdempotencyKey.job_id == job_id))
    session.execute(delete(Job).where(Job.id == job_id))


def request_cancel(session: Session, job: Job) -> Job:
    """queued → cancelled at once; running → cancelling; anything else unchanged."""
    t = now()
    if _set(session, [Job.id == job.id, Job.status == QUEUED], status=CANCELLED, finished_at=t):
        add_event(
            session, job.id, type="status", message="job cancelled", data={"status": CANCELLED}
        )
    elif _set(session, [Job.id == job.id, Job.status == RUNNING], status=CANCELLING):
        add_event(
            session,
            job.id,
            type="status",
            message="cancellation requested; stopping at the next step",
            data={"status": CANCELLING},
        )
    session.flush()
    session.refresh(job)
    return job


def active_jobs(session: Session, tenant: str) -> list[Job]:
    return list(
        session.scalars(select(Job).where(Job.tenant == tenant, Job.status.in_(ACTIVE_STATUSES)))
    )


def count_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(select(Job.status, func.count()).group_by(Job.status))
    return {status: int(count) for status, count in rows}


def retry_enqueue_soon(session: Session, job_id: str) -> None:
    """Make a queued job due for the reconciler's next pass (its enqueue just failed)."""
    _set(session, [Job.id == job_id, Job.status == QUEUED], enqueued_at=0.0)


def set_artifacts(session: Session, job_id: str, artifacts: list[dict[str, Any]]) -> None:
    _set(session, [Job.id == job_id], artifacts=artifacts)


# --- Events ---------------------------------------------------------------------------------


def add_event(
    session: Session,
    job_id: str,
    *,
    type: str,
    message: str,
    level: str = "info",
    stage: str | None = None,
    data: dict[str, Any] | None = None,
) -> Event:
    event = Event(
        job_id=job_id,
        created_at=now(),
        level=level,
        type=type,
        stage=stage,
        message=message,
        data=data,
    )
    session.add(event)
    record_event(session, event)  # the webhook outbox: same transaction as the event
    return event


def list_events(session: Session, job_id: str, *, after_seq: int, limit: int) -> list[Event]:
    return list(
        session.scalars(
            select(Event)
            .where(Event.job_id == job_id, Event.seq > after_seq)
            .order_by(Event.seq)
            .limit(limit)
        )
    )


# --- Idempotency ----------------------------------------------------------------------------


def find_idempotency_key(
    session: Session, tenant: str, key: str, *, ttl_s: float
) -> IdempotencyKey | None:
    """The live record for ``key``; an expired one is deleted so the key can be reused."""
    row = session.get(IdempotencyKey, (tenant, key))
    if row is not None and row.created_at < now() - ttl_s:
        session.delete(row)
        session.flush()
        return None
    return row


def remember_idempotency_key(
    session: Session, tenant: str, key: str, request_hash: str, job_id: str
) -> None:
    session.add(
        IdempotencyKey(
            tenant=tenant, key=key, request_hash=request_hash, job_id=job_id, created_at=now()
        )
    )


def purge_idempotency_keys(session: Session, *, ttl_s: float) -> int:
    result = session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.created_at < now() - ttl_s)
    )
    return int(getattr(result, "rowcount", 0) or 0)


# --- Worker side ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    job_id: str
    token: str
    attempt: int


def claim_job(
    session: Session,
    job_id: str,
    *,
    worker: str,
    stale_before: float,
    max_attempts: int,
    runs_on: dict[str, Any] | None = None,
) -> Claim | None:
    """Take ``job_id`` for this attempt, or None when it is not ours to run.

    A job is claimable when queued, or when running with a heartbeat older than ``stale_before``
    (its worker died and the broker redelivered before the reconciler noticed). A stale job that
    has used up its attempts is failed here instead. ``runs_on`` (the worker's ``device_class``,
    ``device`` and ``device_name``) goes into the "running" event, so the job says where it ran.
    """
    token = secrets.token_hex(16)
    t = now()
    claimable = or_(
        Job.status == QUEUED,
        and_(
            Job.status == RUNNING, or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < stale_before)
        ),
    )
    if _set(
        session,
        [Job.id == job_id, claimable, Job.attempts < max_attempts],
        status=RUNNING,
        attempts=Job.attempts + 1,
        claim_token=token,
        worker=worker,
        heartbeat_at=t,
        started_at=func.coalesce(Job.started_at, t),
        stage=None,
        error=None,
    ):
        job = session.get(Job, job_id)
        assert job is not None
        session.refresh(job)
        where = f" on {runs_on['device_name']}" if runs_on else ""
        add_event(
            session,
            job_id,
            type="status",
            message=f"job running{where} (attempt {job.attempts})",
            data={"status": RUNNING, "attempt": job.attempts, **(runs_on or {})},
        )
        return Claim(job_id, token, job.attempts)
    exhausted = [Job.id == job_id, claimable, Job.attempts >= max_attempts]
    if _set(session, exhausted, **_failure(t, attempts_exhausted_error(max_attempts, None))):
        add_status_event(session, job_id, FAILED, attempts_exhausted_error(max_attempts, None))
    return None


def attempts_exhausted_error(attempts: int, stage: str | None) -> dict[str, Any]:
    return {
        "code": "worker_lost",
        "message": (
            f"the worker running this job stopped {attempts} times (killed, out of memory, or "
            "restarted); giving up. Retry with a smaller model or dataset, or a larger worker."
        ),
        "stage": stage,
    }


def _failure(t: float, error: dict[str, Any]) -> dict[str, Any]:
    return {"status": FAILED, "error": error, "finished_at": t, "claim_token": None}


def add_status_event(
    session: Session, job_id: str, status: str, error: dict[str, Any] | None = None
) -> None:
    if status == FAILED and error:
        add_event(
            session,
            job_id,
            type="status",
            level="error",
            stage=error.get("stage"),
            message=f"job failed: {error['message']}",
            data={"status": FAILED, "error": error},
        )
    else:
        add_event(session, job_id, type="status", message=f"job {status}", data={"status": status})


def heartbeat(session: Session, claim: Claim) -> bool:
    """Refresh the heartbeat; False when this attempt no longer owns the job."""
    return _set(
        session,
        [Job.id == claim.job_id, Job.claim_token == claim.token],
        heartbeat_at=now(),
    )


def claim_state(session: Session, claim: Claim) -> str | None:
    """The job's status if this attempt still owns it, else None."""
    row = session.execute(
        select(Job.status, Job.claim_token).where(Job.id == claim.job_id)
    ).one_or_none()
    if row is None or row.claim_token != claim.token:
        return None
    return str(row.status)


def set_stage(session: Session, claim: Claim, stage: str) -> bool:
    return _set(
        session,
        [Job.id == claim.job_id, Job.claim_token == claim.token],
        stage=stage,
        stage_fraction=0.0,
        heartbeat_at=now(),
    )


def set_progress(
    session: Session,
    claim: Claim,
    *,
    fraction: float,
    stage_fraction: float,
    eta_seconds: float | None,
) -> bool:
    return _set(
        session,
        [Job.id == claim.job_id, Job.claim_token == claim.token],
        fraction=fraction,
        stage_fraction=stage_fraction,
        eta_seconds=eta_seconds,
        heartbeat_at=now(),
    )


def finish_job(
    session: Session,
    claim: Claim,
    status: str,
    *,
    error: dict[str, Any] | None = None,
    result: dict[str, Any] | None = None,
    artifacts: list[dict[str, Any]] | None = None,
) -> bool:
    """Record this attempt's outcome; False (and nothing written) if it lost the job."""
    assert status in TERMINAL_STATUSES
    values: dict[str, Any] = {
        "status": status,
        "finished_at": now(),
        "error": error,
        "claim_token": None,
        "eta_seconds": None,
    }
    if status == SUCCEEDED:
        values.update(result=result, artifacts=artifacts, fraction=1.0, stage_fraction=1.0)
    owned = [
        Job.id == claim.job_id,
        Job.claim_token == claim.token,
        Job.status.in_((RUNNING, CANCELLING)),
    ]
    if not _set(session, owned, **values):
        return False
    add_status_event(session, claim.job_id, status, error)
    return True


# --- Reconciler -----------------------------------------------------------------------------


@dataclass
class Reconciled:
    requeued: list[str]
    failed: list[str]
    cancelled: list[str]
    reenqueued: list[str]
    # The device class of each job to enqueue: the queue it was routed to at creation.
    routes: dict[str, str] = field(default_factory=dict)

    @property
    def to_enqueue(self) -> list[str]:
        return self.requeued + self.reenqueued


def reconcile(
    session: Session,
    *,
    heartbeat_timeout_s: float,
    queued_timeout_s: float,
    max_attempts: int,
) -> Reconciled:
    """Find jobs nobody is working on and decide their fate; the caller enqueues ``to_enqueue``.

    - running with a stale heartbeat: back to queued (a new attempt), or failed with
      ``worker_lost`` once ``max_attempts`` attempts have been used;
    - cancelling with a stale heartbeat: cancelled (its worker is gone);
    - queued and not picked up for ``queued_timeout_s`` (the broker lost the message, or it was
      never delivered): enqueued again. Duplicates are harmless: only one delivery claims the job.
    """
    t = now()
    stale = t - heartbeat_timeout_s
    out = Reconciled([], [], [], [])
    rows = session.execute(
        select(Job.id, Job.status, Job.attempts, Job.stage, Job.routed_to).where(
            Job.status.in_((RUNNING, CANCELLING)),
            or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < stale),
        )
    ).all()
    for job_id, status, attempts, stage, routed_to in rows:
        out.routes[job_id] = routed_to or CPU_CLASS
        is_stale = [
            Job.id == job_id,
            Job.status == status,
            or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < stale),
        ]
        if status == CANCELLING:
            if _set(session, is_stale, status=CANCELLED, finished_at=t, claim_token=None):
                add_status_event(session, job_id, CANCELLED)
                out.cancelled.append(job_id)
        elif attempts >= max_attempts:
            error = attempts_exhausted_error(attempts, stage)
            if _set(session, is_stale, **_failure(t, error)):
                add_status_event(session, job_id, FAILED, error)
                out.failed.append(job_id)
        elif _set(session, is_stale, status=QUEUED, claim_token=None, enqueued_at=t):
            add_event(
                session,
                job_id,
                type="status",
                level="warning",
                stage=stage,
                message=f"the worker stopped during attempt {attempts}; job queued again",
                data={"status": QUEUED, "attempt": attempts},
            )
            out.requeued.append(job_id)
    waiting = session.execute(
        select(Job.id, Job.routed_to).where(
            Job.status == QUEUED, Job.enqueued_at < t - queued_timeout_s
        )
    ).all()
    for job_id, routed_to in waiting:
        out.routes[job_id] = routed_to or CPU_CLASS
        if _set(
            session,
            [Job.id == job_id, Job.status == QUEUED, Job.enqueued_at < t - queued_timeout_s],
            enqueued_at=t,
        ):
            out.reenqueued.append(job_id)
    return out
