"""``layerfuse worker``: a Celery worker for the queue of its device, one job at a time.

``--device cuda|cpu`` (default: ``$LAYERFUSE_DEVICE``, else CUDA when torch sees it) picks the
queue: a CUDA worker consumes the GPU queue, a CPU worker the CPU queue (docs/service.md,
Routing). ``--gpus 0,1`` starts one CUDA worker per listed GPU, each seeing only its own through
``CUDA_VISIBLE_DEVICES``, and stops them all when it is stopped or one of them stops.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import TYPE_CHECKING

from .exit_codes import EXIT_BAD_INPUT, EXIT_OK
from .supervisor import supervise

if TYPE_CHECKING:
    from layerfuse.service.settings import Settings
    from layerfuse.worker.devices import WorkerDevice

# A CUDA_VISIBLE_DEVICES entry: an index, or a GPU-/MIG- UUID.
GPU_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,99}$")


def register(subparsers: argparse._SubParsersAction) -> None:
    worker = subparsers.add_parser(
        "worker",
        help="run a worker (one job at a time, on the queue of its device)",
        description="Run a Celery worker. A CUDA worker consumes the GPU queue, a CPU worker "
        "the CPU queue; jobs are routed to them by their options.device.",
    )
    worker.add_argument(
        "--device",
        choices=["cuda", "cpu"],
        default=None,
        help="what its jobs run on, and so which queue it consumes (default: "
        "$LAYERFUSE_DEVICE, else cuda when torch sees a GPU)",
    )
    worker.add_argument(
        "--gpus",
        type=gpu_list,
        default=None,
        metavar="IDS",
        help="start one CUDA worker per GPU, e.g. 0,1 (each sees only its own GPU)",
    )
    # The test suite's stand-in for a GPU worker: consumes the GPU queue, runs on the CPU.
    worker.add_argument("--pretend-gpu", action="store_true", help=argparse.SUPPRESS)
    worker.add_argument(
        "--pool",
        choices=["prefork", "solo"],
        default="prefork",
        help="prefork enforces the job time limit; solo is for debugging",
    )
    worker.add_argument("--log-level", default="info")
    worker.set_defaults(run=run_worker)


def gpu_list(value: str) -> list[str]:
    ids = [part.strip() for part in value.split(",")]
    if not ids or not all(GPU_ID.match(i) for i in ids) or len(set(ids)) != len(ids):
        raise argparse.ArgumentTypeError(
            "a comma-separated list of distinct GPU indexes or UUIDs, e.g. 0,1"
        )
    return ids


def run_worker(args: argparse.Namespace) -> int:
    from .processes import load_settings

    settings = load_settings(check_api_secrets=False)
    if settings is None:
        return EXIT_BAD_INPUT
    if args.gpus is not None:
        if args.device == "cpu" or args.pretend_gpu:
            print("error: --gpus starts CUDA workers: drop --device cpu", file=sys.stderr)
            return EXIT_BAD_INPUT
        return run_per_gpu(args.gpus, args.pool, args.log_level)
    from layerfuse.worker.devices import DeviceUnavailable

    try:
        device = choose_device(args, settings)
    except DeviceUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    _start_celery(device, settings, args.pool, args.log_level)
    return EXIT_OK


def choose_device(args: argparse.Namespace, settings: Settings) -> WorkerDevice:
    """The worker's device from ``--device`` / ``--pretend-gpu`` and the settings.

    Raises:
        DeviceUnavailable: CUDA asked for where torch sees none, or ``--pretend-gpu`` outside
            the test environment.
    """
    from layerfuse.worker.devices import DeviceUnavailable, cpu_device, detect

    if args.pretend_gpu:
        if settings.env != "test":
            raise DeviceUnavailable("--pretend-gpu is for the test suite (LAYERFUSE_ENV=test)")
        return cpu_device("gpu")
    return detect(args.device or settings.device)


def _start_celery(device: WorkerDevice, settings: Settings, pool: str, log_level: str) -> None:
    from layerfuse.worker import celery_app

    celery_app.device = device
    queue = settings.queue_for(device.device_class)
    print(f"layerfuse worker: {device.device} ({device.name}), queue {queue!r}", flush=True)
    argv = [
        "worker",
        f"--loglevel={log_level.upper()}",
        f"--concurrency={celery_app.concurrency}",
        f"--pool={pool}",
        f"--queues={queue}",
        f"--hostname={device.device_class}-{os.getpid()}@%h",
        "--without-gossip",
        "--without-mingle",
    ]
    if pool == "prefork":
        # A fresh process per job returns its memory (and GPU memory) to the system.
        argv.append("--max-tasks-per-child=1")
    celery_app.app.worker_main(argv)


def run_per_gpu(gpus: list[str], pool: str, log_level: str) -> int:
    """One ``layerfuse worker --device cuda`` per GPU until stopped or one of them stops; a
    stopped worker's running job finishes first, however long it takes."""
    command = [sys.executable, "-m", "layerfuse.cli", "worker", "--device", "cuda"]
    command += ["--pool", pool, "--log-level", log_level]
    return supervise(
        [(command, {**os.environ, "CUDA_VISIBLE_DEVICES": gpu}) for gpu in gpus],
        failure="a GPU worker stopped; stopping the others",
        grace_s=None,
    )
