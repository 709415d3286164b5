"""The Celery configuration shared by the API (which enqueues by task name) and the worker.

Redis through ``REDIS_URL``; without it, Celery's ``filesystem://`` transport under the data
directory, so the embedded quickstart needs no server. Reliability settings follow
architecture.md: late acks, prefetch 1, JSON only, a hard time limit below Redis' visibility
timeout, and long-running tasks cancelled when the broker connection is lost.

Importable without torch and fastapi.
"""

from __future__ import annotations

import logging
from typing import Any

from .settings import Settings

log = logging.getLogger(__name__)

RUN_JOB_TASK = "layerfuse.run_job"
DELIVER_WEBHOOK_TASK = "layerfuse.deliver_webhook"
# Seconds between the soft limit (the job fails cleanly with a clear code) and the hard kill.
SOFT_LIMIT_MARGIN_S = 60
# Redis redelivers an unacknowledged message after this; it must exceed the hard time limit, or a
# long job would be delivered twice while still running.
VISIBILITY_MARGIN_S = 1800


def webhook_queue(settings: Settings) -> str:
    """Deliveries have their own queue and workers: they never wait behind a compression job."""
    return f"{settings.queue_name}-webhooks"


class BrokerUnavailable(Exception):
    """The broker did not accept a message in time."""


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings for ``settings``: the broker, the queue and the reliability rules."""
    if settings.redis_url:
        broker_url = settings.redis_url
        transport_options: dict[str, Any] = {
            "visibility_timeout": settings.job_time_limit_s + VISIBILITY_MARGIN_S,
            "socket_connect_timeout": settings.enqueue_timeout_s,
            "socket_timeout": 30,
        }
    else:
        folders = {
            name: settings.broker_folder / name for name in ("queue", "processed", "control")
        }
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        broker_url = "filesystem://"
        transport_options = {
            "data_folder_in": str(folders["queue"]),
            "data_folder_out": str(folders["queue"]),
            "processed_folder": str(folders["processed"]),
            "control_folder": str(folders["control"]),
            "store_processed": False,
            "polling_interval": settings.broker_polling_interval_s,
        }
    return {
        "broker_url": broker_url,
        "broker_transport_options": transport_options,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": settings.enqueue_timeout_s,
        "task_acks_late": True,
        "worker_prefetch_multiplier": 1,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        # The job row is the truth for status; Celery's result backend is not used.
        "task_ignore_result": True,
        "result_backend": None,
        "task_time_limit": settings.job_time_limit_s,
        "task_soft_time_limit": max(settings.job_time_limit_s - SOFT_LIMIT_MARGIN_S, 1),
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        # A run_job message names its queue (the job's device class) when it is sent.
        "task_default_queue": settings.cpu_queue,
        "task_routes": {DELIVER_WEBHOOK_TASK: {"queue": webhook_queue(settings)}},
        "worker_send_task_events": False,
        "worker_hijack_root_logger": False,
    }


class JobQueue:
    """Enqueues job ids by task name; never imports the task code."""

    def __init__(self, settings: Settings):
        from celery import Celery

        self.settings = settings
        self._celery = Celery("layerfuse-api", set_as_current=False)
        self._celery.conf.update(celery_config(settings))

    def enqueue(self, job_id: str, device_class: str) -> None:
        """Publish one ``run_job`` message on the queue of ``device_class`` (``cpu``/``gpu``).

        Raises:
            BrokerUnavailable: the broker refused or did not answer within a few seconds.
        """
        try:
            self._celery.send_task(
                RUN_JOB_TASK,
                args=[job_id],
                queue=self.settings.queue_for(device_class),
                retry=True,
                retry_policy={
                    "max_retries": 2,
                    "interval_start": 0,
                    "interval_step": 0.5,
                    "interval_max": 1.0,
                },
            )
        except Exception as exc:
            log.warning("enqueue of %s failed: %s", job_id, exc)
            raise BrokerUnavailable(str(exc)) from exc

    def ping(self) -> bool:
        try:
            with self._celery.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=self.settings.enqueue_timeout_s)
            return True
        except Exception:
            return False

    def close(self) -> None:
        self._celery.close()
