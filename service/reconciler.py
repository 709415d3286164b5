"""The reconciler: no job stays ``running`` or ``queued`` forever (architecture.md, Reliability).

Runs in the API process every ``reconcile_interval_s`` (several API replicas may run it at once:
every transition it makes is a conditional UPDATE, and re-enqueueing a job twice is harmless
because only one delivery can claim it).
"""

from __future__ import annotations

import logging

from .broker import BrokerUnavailable, JobQueue
from .settings import Settings
from .store import Database
from .store import jobs as job_store

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
    for job_id in outcome.to_enqueue:
        try:
            queue.enqueue(job_id)
        except BrokerUnavailable:
            log.warning("reconciler: could not enqueue %s; will retry on the next pass", job_id)
            with db.session() as session:
                job_store.retry_enqueue_soon(session, job_id)
    if outcome.requeued or outcome.failed or outcome.cancelled or outcome.reenqueued:
        log.info(
            "reconciler: requeued %s, failed %s, cancelled %s, re-enqueued %s",
            outcome.requeued,
            outcome.failed,
            outcome.cancelled,
            outcome.reenqueued,
        )
    return outcome
