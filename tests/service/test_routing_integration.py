"""A mixed fleet for real: the API, Redis, PostgreSQL, a CPU worker process and, started
mid-test, a "GPU" worker process (``--pretend-gpu``: it consumes the GPU queue but runs on this
machine's CPU, the one stand-in for hardware the suite cannot have). Jobs go to the worker of
their device class; ``auto`` follows the fleet; a CUDA job waits, with a warning, until a GPU
worker exists. The stack is :mod:`tests.service.stack`'s, through the ``stack`` fixture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from .helpers import job_body, model_files
from .stack import Stack, wait_for

pytestmark = pytest.mark.integration

STAND_IN = "standing in for a GPU worker"


@pytest.fixture(scope="module")
def uploads(stack: Stack, tiny_classifier: Path, synthetic_data: dict[str, Path]) -> dict[str, str]:
    files = [("files", (p.name, p.read_bytes())) for p in model_files(tiny_classifier)]
    model = stack.acme.post("/v1/models", files=files)
    assert model.status_code == 201, model.text
    path = synthetic_data["train"]
    train = stack.acme.post("/v1/datasets", files={"file": (path.name, path.read_bytes())})
    assert train.status_code == 201, train.text
    return {"model": model.json()["id"], "train": train.json()["id"]}


def submit(stack: Stack, uploads: dict[str, str], device: str) -> dict[str, Any]:
    body = job_body(
        uploads["model"],
        uploads["train"],
        distillation={"enabled": False},
        options={"device": device, "n_calib": 32, "max_length": 32, "measure_latency": False},
    )
    response = stack.acme.post("/v1/jobs", json=body)
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


def running_event(stack: Stack, job_id: str) -> dict[str, Any]:
    events = stack.acme.get(f"/v1/jobs/{job_id}/events", params={"limit": 100}).json()["data"]
    running: dict[str, Any] = next(
        e for e in events if (e["data"] or {}).get("status") == "running"
    )
    return running


def succeeded(stack: Stack, job_id: str) -> dict[str, Any]:
    job = stack.wait_status(job_id, {"succeeded", "failed", "cancelled"}, 240)
    assert job["status"] == "succeeded", (job, stack.diagnostics())
    return running_event(stack, job_id)["data"]


def workers(stack: Stack) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = stack.globex.get("/v1/workers").json()["data"]
    return data


def test_jobs_run_on_the_worker_of_their_device_class(
    stack: Stack, uploads: dict[str, str]
) -> None:
    (cpu,) = wait_for(lambda: workers(stack), 30, "the CPU worker to be listed")
    assert (cpu["device_class"], cpu["device"], cpu["queue"]) == ("cpu", "cpu", "cpu")
    assert cpu["device_name"] and cpu["memory_bytes"] > 0 and cpu["concurrency"] == 1

    # No GPU worker yet: CUDA is accepted and waits, with a warning; auto runs on the CPU.
    cuda = submit(stack, uploads, "cuda")
    assert cuda["routed_to"] == "gpu"
    events = stack.acme.get(f"/v1/jobs/{cuda['id']}/events").json()["data"]
    assert any(e["level"] == "warning" and "no GPU worker" in e["message"] for e in events)
    auto_on_cpu = submit(stack, uploads, "auto")
    assert auto_on_cpu["routed_to"] == "cpu"
    ran = succeeded(stack, auto_on_cpu["id"])
    assert (ran["device_class"], ran["device"]) == ("cpu", "cpu")
    report = stack.acme.get(f"/v1/jobs/{auto_on_cpu['id']}/report").json()
    assert report["options"]["runtime"]["device"] == "cpu"
    assert report["options"]["runtime"]["device_name"]
    still = stack.job(cuda["id"])
    assert (still["status"], still["attempts"]) == ("queued", 0)  # the CPU worker left it

    stack.start("worker-gpu", "worker", "--pretend-gpu")
    wait_for(lambda: any(w["device_class"] == "gpu" for w in workers(stack)), 60, "the GPU worker")
    ready = httpx.get(f"{stack.url}/readyz", timeout=10).json()
    assert sorted(w["device_class"] for w in ready["workers"]) == ["cpu", "gpu"]

    # The waiting CUDA job runs on the GPU worker, and auto now goes there too.
    auto_on_gpu = submit(stack, uploads, "auto")
    assert auto_on_gpu["routed_to"] == "gpu"
    for job in (cuda, auto_on_gpu):
        ran = succeeded(stack, job["id"])
        assert ran["device_class"] == "gpu" and STAND_IN in ran["device_name"]
    # A CPU job still goes to the CPU worker, whatever GPUs are idle.
    cpu_job = submit(stack, uploads, "cpu")
    assert cpu_job["routed_to"] == "cpu"
    assert succeeded(stack, cpu_job["id"])["device_class"] == "cpu"
