"""What a worker runs on: its device class (the queue it consumes), the torch device its jobs
run on, the device's name and memory.

CUDA is only ever touched in a short child process: a CUDA context made in the worker's main
process would be unusable in the pool children Celery forks from it (CUDA does not survive
``fork``), and those children are where jobs run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

from layerfuse.service.routing import CPU, GPU, device_class_of

PROBE_TIMEOUT_S = 120
# Prints what torch sees of the first visible CUDA device (CUDA_VISIBLE_DEVICES applies).
_PROBE = """
import json, torch
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(json.dumps({"cuda": True, "name": p.name, "memory": int(p.total_memory)}))
else:
    print(json.dumps({"cuda": False}))
"""


class DeviceUnavailable(Exception):
    """The worker was asked for a device this machine does not have."""


@dataclass(frozen=True)
class WorkerDevice:
    device_class: str  # "cpu" or "gpu": the queue the worker consumes
    device: str  # "cpu" or "cuda": what its jobs run on
    name: str
    memory_bytes: int | None


def cpu_device(device_class: str = CPU) -> WorkerDevice:
    """This machine's CPU; ``device_class="gpu"`` only for the test-mode stand-in."""
    from layerfuse.compression.device import cpu_name  # imports torch: only when describing

    name = cpu_name()
    if device_class == GPU:
        name += " (standing in for a GPU worker: test mode)"
    return WorkerDevice(device_class, "cpu", name, _physical_memory())


def detect(requested: str) -> WorkerDevice:
    """The device for ``layerfuse worker --device requested`` (``auto``: CUDA if torch sees it).

    Raises:
        DeviceUnavailable: ``cuda`` was asked for and torch sees no CUDA device.
    """
    if requested == "cpu":
        return cpu_device()
    seen = _probe_cuda()
    if seen.get("cuda"):
        return WorkerDevice(GPU, "cuda", str(seen["name"]), int(str(seen["memory"])))
    if requested == "cuda":
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        where = f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else ""
        raise DeviceUnavailable(f"--device cuda: torch sees no CUDA device{where}")
    return cpu_device()


def job_device(requested: str, worker: WorkerDevice) -> str:
    """The device a job whose ``options.device`` is ``requested`` runs on here.

    ``auto``, or the class this worker serves, runs on the worker's own device (the test-mode
    stand-in serves ``gpu`` on a CPU); ``cpu`` on a GPU worker runs on its CPU, as asked.

    Raises:
        DeviceUnavailable: a CUDA job reached a worker without CUDA (its queues are misnamed).
    """
    if requested == "auto" or device_class_of(requested) == worker.device_class:
        return worker.device
    if requested == "cpu":
        return "cpu"
    raise DeviceUnavailable(
        'the job asks for options.device "cuda" but reached a worker without a GPU; '
        "check that CPU workers do not consume the GPU queue (LAYERFUSE_GPU_QUEUE)"
    )


def _probe_cuda() -> dict[str, object]:
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            check=True,
        )
        seen: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
        return seen
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return {"cuda": False}


def _physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (OSError, ValueError, AttributeError):
        return None
