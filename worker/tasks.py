"""The tasks: run a job by id, and deliver one webhook attempt. Orchestration only; the work is
in :mod:`layerfuse.worker.runner` and :mod:`layerfuse.worker.webhooks`.

Idempotent: the job is claimed with an atomic transition in the store (attempt counter and claim
token), so a redelivered or duplicated message for a job that is running or finished does nothing;
a delivery that is no longer pending is skipped.
"""

from __future__ import annotations

import logging
import os
import socket

from layerfuse.service.broker import DELIVER_WEBHOOK_TASK, RUN_JOB_TASK
from layerfuse.service.store import jobs as job_store
from layerfuse.service.store import now

from .celery_app import app, database, settings, worker_device
from .runner import record, run_claimed
from .webhooks import deliver

log = logging.getLogger(__name__)


@app.task(name=RUN_JOB_TASK, ignore_result=True)
def run_job(job_id: str) -> None:
    config, db, device = settings(), database(), worker_device()
    with db.session() as session:
        claim = job_store.claim_job(
            session,
            job_id,
            worker=f"{socket.gethostname()}:{os.getpid()}",
            stale_before=now() - config.heartbeat_timeout_s,
            max_attempts=config.max_attempts,
            runs_on={
                "device_class": device.device_class,
                "device": device.device,
                "device_name": device.name,
            },
        )
    if claim is None:
        log.info("job %s is not claimable (running elsewhere, finished or cancelled)", job_id)
        return
    log.info("job %s: attempt %s started", job_id, claim.attempt)
    outcome = run_claimed(db, config, claim, device)
    if record(db, claim, outcome):
        log.info("job %s: %s", job_id, outcome.status)
    else:
        log.warning(
            "job %s: attempt %s lost the job; its outcome is discarded", job_id, claim.attempt
        )


@app.task(name=DELIVER_WEBHOOK_TASK, ignore_result=True)
def deliver_webhook(delivery_id: str) -> None:
    deliver(database(), settings(), delivery_id)
