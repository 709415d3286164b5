"""The reconciler: no job stays ``running`` or ``queued`` forever (architecture.md, Reliability),
and no killed attempt's ``.attempt-<n>/`` folder stays on disk.

A job goes back to the queue it was routed to at creation (``routed_to``): a CUDA job waits for
a GPU worker however long that takes, and never falls through to a CPU one.

Runs in the API process every ``reconcile_interval_s`` (several API replicas may run it at once:
every transition it makes is a conditional UPDATE, and re-enqueueing a job twice is harmless
because only one delivery can claim it).
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import select

from .broker import BrokerUnavailable, JobQueue
from .settings import Settings
from .storage import ATTEMPT_PREFIX, Storage, attempt_number, remove_tree
from .store import CANCELLING, RUNNING, Database, Job, now
from .store import jobs as job_store
from .store import workers as worker_store

log = logging.getLogger(__name__)


def reconcile_once(db: Database, queue: JobQueue, settings: Settings) -> job_store.Reconciled:
    with db.session() as session:
        outcome = job_store.reconcile(
            session,
            heartbeat_timeout_s=settings.heartbeat_timeout_s,
            queued_timeout_s=settings.queued_timeout_s,
            max_attempts=settings.max_attempts,
        )
        job_store.purge_idempotency_keys(session, ttl_s=settings.idempotency_ttl_s)
        worker_store.prune(session, before=now() - settings.worker_retention_s)
    for job_id in outcome.to_enqueue:
        try:
            queue.enqueue(job_id, outcome.routes[job_id])
        except BrokerUnavailable:
            log.warning("reconciler: could not enqueue %s; will retry on the next pass", job_id)
            with db.session() as session:
                job_store.retry_enqueue_soon(session, job_id)
    remove_superseded_attempts(db, Storage(settings))
    if outcome.requeued or outcome.failed or outcome.cancelled or outcome.reenqueued:
        log.info(
            "reconciler: requeued %s, failed %s, cancelled %s, re-enqueued %s",
            outcome.requeued,
            outcome.failed,
            outcome.cancelled,
            outcome.reenqueued,
        )
    return outcome


def remove_superseded_attempts(db: Database, storage: Storage) -> list[Path]:
    """Remove every ``.attempt-<n>/`` folder that no live attempt writes to any more: its job
    ended, was requeued, or moved on to a later attempt (a worker killed mid-export leaves one
    behind, hundreds of MB with real models). Returns the folders removed."""
    folders = list(storage.root.glob(f"tenants/*/jobs/*/{ATTEMPT_PREFIX}*"))
    if not folders:
        return []
    ids = {folder.parent.name for folder in folders}
    with db.session() as session:
        rows = session.execute(select(Job.id, Job.status, Job.attempts).where(Job.id.in_(ids)))
        live = {
            job_id: attempts for job_id, status, attempts in rows if status in (RUNNING, CANCELLING)
        }
    removed = []
    for folder in folders:
        number = attempt_number(folder)
        if number is not None and live.get(folder.parent.name) != number:
            remove_tree(folder)
            removed.append(folder)
    if removed:
        log.info("reconciler: removed %s superseded attempt folders", len(removed))
    return removed
