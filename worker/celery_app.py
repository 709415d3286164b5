"""The Celery application of ``layerfuse worker`` (``celery -A layerfuse.worker.celery_app
worker``).

Configuration comes from :func:`layerfuse.service.broker.celery_config`: the same broker and
reliability rules as the API's producer. Its processes have a role: a ``jobs`` worker (``layerfuse
worker``) records itself and its device in the store every ``heartbeat_interval_s``, which
``/readyz``, ``GET /v1/workers`` and job routing read as "a worker seen recently"; a ``webhooks``
worker (``layerfuse webhooks``) runs the delivery dispatcher.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from functools import lru_cache
from typing import Any, Literal

from celery import Celery
from celery.signals import worker_process_init, worker_ready, worker_shutdown

from layerfuse.service.broker import DELIVER_WEBHOOK_TASK, celery_config, webhook_queue
from layerfuse.service.settings import Settings, get_settings
from layerfuse.service.store import Database
from layerfuse.service.store import workers as worker_store

from .devices import WorkerDevice, detect


def settings() -> Settings:
    return get_settings()


@lru_cache
def _database(pid: int) -> Database:
    return Database(settings().resolved_database_url)


def database() -> Database:
    """This process's store connection (a forked pool child opens its own)."""
    return _database(os.getpid())


def create_celery(config: Settings | None = None) -> Celery:
    celery = Celery("layerfuse", include=["layerfuse.worker.tasks"])
    celery.conf.update(celery_config(config or settings()))
    return celery


app = create_celery()
# Set by the command that starts the worker, before it starts (forked pool children inherit
# them): its role, and for a jobs worker the device it runs on and its concurrency.
role: Literal["jobs", "webhooks"] = "jobs"
device: WorkerDevice | None = None
concurrency = 1


def worker_device() -> WorkerDevice:
    """This worker's device: the one its command chose, else this machine's own."""
    global device
    if device is None:
        device = detect(settings().device)
    return device


class _WorkerHeartbeat:
    def __init__(self) -> None:
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.started_at = time.time()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="worker-heartbeat", daemon=True)

    def _description(self) -> worker_store.Description:
        config, own = settings(), worker_device()
        return worker_store.Description(
            hostname=socket.gethostname(),
            started_at=self.started_at,
            device_class=own.device_class,
            queue=config.queue_for(own.device_class),
            device=own.device,
            device_name=own.name,
            memory_bytes=own.memory_bytes,
            concurrency=concurrency,
        )

    def _run(self) -> None:
        interval = settings().heartbeat_interval_s
        description = self._description()
        while True:
            try:
                with database().session() as session:
                    worker_store.touch(session, self.name, description)
            except Exception:
                pass  # the store is down: /readyz will say so
            if self.stop.wait(interval):
                return


_heartbeat: _WorkerHeartbeat | None = None
_dispatcher: Any = None


def _send_delivery(delivery_id: str) -> None:
    app.send_task(DELIVER_WEBHOOK_TASK, args=[delivery_id], queue=webhook_queue(settings()))


@worker_ready.connect
def _start_background(**_: Any) -> None:
    global _heartbeat, _dispatcher
    if role == "webhooks":
        from .webhooks import Dispatcher

        _dispatcher = Dispatcher(database(), settings(), _send_delivery)
        _dispatcher.start()
    else:
        _heartbeat = _WorkerHeartbeat()
        _heartbeat.thread.start()


@worker_shutdown.connect
def _stop_background(**_: Any) -> None:
    if _heartbeat is not None:
        _heartbeat.stop.set()
    if _dispatcher is not None:
        _dispatcher.stop.set()


@worker_process_init.connect
def _fresh_connections(**_: Any) -> None:
    # A forked pool child must not reuse the parent's database connections.
    _database.cache_clear()
