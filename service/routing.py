"""Which queue a job goes to: one per device class, decided once, at creation (docs/service.md,
Routing).

``options.device: "cuda"`` needs a GPU worker and ``"cpu"`` a CPU one; ``"auto"`` goes where the
fleet can run it fastest: to the GPU queue when a GPU worker has been seen recently, else to the
CPU queue. The class is recorded on the job (``routed_to``), so a re-enqueued job goes back to
the same queue. Torch-free: the API decides without importing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy.orm import Session

from .settings import Settings
from .store import now
from .store import workers as worker_store

DeviceClass = Literal["cpu", "gpu"]
CPU: DeviceClass = "cpu"
GPU: DeviceClass = "gpu"
DEVICE_CLASSES: tuple[DeviceClass, ...] = (CPU, GPU)


def device_class_of(device: str) -> DeviceClass:
    """The class of a torch device type (``cuda`` or ``cpu``)."""
    return GPU if device == "cuda" else CPU


def route(requested: str, *, gpu_worker_seen: bool) -> DeviceClass:
    """The device class of a job whose ``options.device`` is ``requested``."""
    if requested == "cuda":
        return GPU
    if requested == "cpu":
        return CPU
    return GPU if gpu_worker_seen else CPU


def run_device(requested: str, worker_device: str) -> str:
    """The device a worker on ``worker_device`` runs a job on: the one the job asked for, or the
    worker's own for ``auto`` (routing sent it to a worker of the right class)."""
    return worker_device if requested == "auto" else requested


@dataclass(frozen=True)
class Decision:
    device_class: DeviceClass
    queue: str
    # Why the job may wait (no worker of its class seen recently), for a warning event.
    warning: str | None


def decide(session: Session, settings: Settings, requested: str) -> Decision:
    """Route a job whose ``options.device`` is ``requested``, as the fleet looks now."""
    since = now() - settings.worker_seen_timeout_s
    gpu_seen = worker_store.seen_since(session, since, GPU)
    device_class = route(requested, gpu_worker_seen=gpu_seen)
    queue = settings.queue_for(device_class)
    seen = gpu_seen if device_class == GPU else worker_store.seen_since(session, since, CPU)
    warning = None
    if not seen:
        warning = (
            f"no {device_class.upper()} worker has been seen in the last "
            f"{settings.worker_seen_timeout_s:g} s: the job waits in queue {queue!r} until one "
            "starts"
        )
        if requested == "cuda":
            warning += (
                ' (options.device "cuda" never runs on a CPU worker; "auto" runs on whichever '
                "class of worker is online)"
            )
    return Decision(device_class, queue, warning)
