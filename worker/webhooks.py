"""Webhook delivery (``layerfuse webhooks``): a dispatcher thread and one Celery task per attempt.

The job store's outbox (:mod:`layerfuse.service.store.webhooks`) holds every message. The
:class:`Dispatcher` leases the due ones and sends a ``deliver_webhook`` task for each to the
webhook queue, served by a thread-pool worker of its own, so a slow receiver never holds up a
compression job or another receiver. :func:`deliver` makes one attempt and schedules the next
with exponential backoff (``webhook_backoff_base_s * 4^(n-1)``, at most
``webhook_max_attempts``). The schedule lives in the store rather than in Celery countdowns, so
retries survive restarts and never wait for a broker visibility timeout.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from layerfuse.service.settings import Settings
from layerfuse.service.store import DELIVERY_PENDING, Database, now
from layerfuse.service.store import webhooks as webhook_store
from layerfuse.service.webhooks import AttemptResult, backoff_s, send

log = logging.getLogger(__name__)

# A leased delivery whose task has not reported back by then is handed out again.
LEASE_MARGIN_S = 300.0


def deliver(db: Database, settings: Settings, delivery_id: str) -> AttemptResult | None:
    """One attempt of ``delivery_id``; None when there was nothing to do (delivered, given up)."""
    with db.session() as session:
        row = webhook_store.get_delivery(session, delivery_id)
        if row is None or row.status != DELIVERY_PENDING:
            return None
        url, body, tenant = row.url, row.body, row.tenant
    key = settings.webhook_secret(tenant)
    if key is None:
        result = AttemptResult(
            None, "webhook_secret_missing: the server has no signing secret", 0.0, False
        )
    else:
        result = send(url, body, delivery_id, key, settings=settings)
    with db.session() as session:
        row = webhook_store.get_delivery(session, delivery_id)
        if row is None or row.status != DELIVERY_PENDING:
            return result
        attempts = row.attempts + 1
        retry = result.error is not None and result.retryable
        next_attempt_at = None
        if retry and attempts < settings.webhook_max_attempts:
            next_attempt_at = now() + backoff_s(settings, attempts)
        webhook_store.record_attempt(
            session,
            row,
            at=now(),
            status_code=result.status_code,
            error=result.error,
            duration_ms=result.duration_ms,
            next_attempt_at=next_attempt_at,
        )
    if result.error is not None:
        log.info("webhook %s attempt %s: %s", delivery_id, attempts, result.error)
    return result


class Dispatcher:
    """A daemon thread that hands due deliveries to ``dispatch`` every poll interval."""

    def __init__(self, db: Database, settings: Settings, dispatch: Callable[[str], None]):
        self.db = db
        self.settings = settings
        self.dispatch = dispatch
        self.lease_s = LEASE_MARGIN_S + 2 * settings.webhook_timeout_s
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="webhook-dispatcher", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(self.settings.webhook_poll_interval_s):
            try:
                self.dispatch_due()
            except Exception:
                log.warning("webhook dispatcher: pass failed; retrying", exc_info=True)

    def dispatch_due(self) -> list[str]:
        with self.db.session() as session:
            due = webhook_store.claim_due(session, now=now(), lease_s=self.lease_s)
        for delivery_id in due:
            try:
                self.dispatch(delivery_id)
            except Exception:
                log.warning("webhook %s: could not be queued; will retry", delivery_id)
                with self.db.session() as session:
                    webhook_store.release(session, delivery_id)
        return due
