"""A real GPU worker (``layerfuse worker --gpus 0``) in the integration stack: a CUDA job is
routed to it, runs on the GPU, and its report and events name that GPU. Runs only where CUDA
is present (``-m gpu``)."""

from __future__ import annotations

from typing import Any

import pytest

from .stack import Stack, wait_for
from .test_routing_integration import submit, succeeded, uploads, workers  # noqa: F401


def _cuda_name() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.integration,
    pytest.mark.skipif(_cuda_name() is None, reason="needs a CUDA device"),
]


def test_a_cuda_job_runs_on_a_gpu_worker_and_names_its_gpu(
    stack: Stack,
    uploads: dict[str, str],  # noqa: F811
) -> None:
    stack.start("worker-gpu", "worker", "--gpus", "0")
    listed: list[dict[str, Any]] = wait_for(
        lambda: [w for w in workers(stack) if w["device_class"] == "gpu"], 120, "the GPU worker"
    )
    assert listed[0]["device"] == "cuda" and listed[0]["device_name"] == _cuda_name()
    assert listed[0]["memory_bytes"] > 0

    job = submit(stack, uploads, "cuda")
    assert job["routed_to"] == "gpu"
    ran = succeeded(stack, job["id"])
    assert (ran["device"], ran["device_name"]) == ("cuda", _cuda_name())
    runtime = stack.acme.get(f"/v1/jobs/{job['id']}/report").json()["options"]["runtime"]
    assert (runtime["device"], runtime["device_name"]) == ("cuda", _cuda_name())
