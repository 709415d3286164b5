"""Jobs go to the queue of their device class, decided at creation and kept for every re-enqueue;
workers say what they run on (``GET /v1/workers``). In-process, on both stores; the real
two-worker fleet is in test_routing_integration.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import update

from layerfuse.service.reconciler import reconcile_once
from layerfuse.service.settings import Settings
from layerfuse.service.store import Database, Job, now, upgrade
from layerfuse.service.store import workers as worker_store
from layerfuse.service.store.db import alembic_config
from layerfuse.worker.devices import cpu_device
from layerfuse.worker.runner import build_spec

from .conftest import FakeQueue, make_settings
from .helpers import CPU_WORKER, a_worker, job_body, upload_dataset, upload_model


@pytest.fixture
def uploads(
    client: TestClient, tiny_classifier: Path, synthetic_data: dict[str, Path]
) -> dict[str, str]:
    model = upload_model(client, tiny_classifier).json()["id"]
    return {"model": model, "train": upload_dataset(client, synthetic_data["train"]).json()["id"]}


def create(client: TestClient, uploads: dict[str, str], device: str) -> Any:
    body = job_body(uploads["model"], uploads["train"], options={"device": device})
    return client.post("/v1/jobs", json=body)


def seen(db: Database, name: str, device_class: str, age_s: float = 0.0) -> None:
    with db.session() as session:
        worker_store.touch(session, name, a_worker(device_class))
        session.execute(
            update(worker_store.Worker)
            .where(worker_store.Worker.name == name)
            .values(last_seen_at=now() - age_s)
        )


def events(client: TestClient, job_id: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = client.get(f"/v1/jobs/{job_id}/events").json()["data"]
    return data


def warnings(client: TestClient, job_id: str) -> list[dict[str, Any]]:
    return [e for e in events(client, job_id) if e["level"] == "warning"]


def test_each_device_goes_to_its_queue_and_auto_follows_the_fleet(
    client: TestClient, uploads: dict[str, str], db: Database, queue: FakeQueue
) -> None:
    seen(db, "cpu-1", "cpu")
    seen(db, "gpu-old", "gpu", age_s=3600)  # gone long ago: not "seen recently"
    routed = {}
    for device in ("cpu", "cuda", "auto"):
        job = create(client, uploads, device).json()
        routed[device] = job["routed_to"]
        assert queue.routes[job["id"]] == job["routed_to"]
    assert routed == {"cpu": "cpu", "cuda": "gpu", "auto": "cpu"}

    seen(db, "gpu-1", "gpu")
    job = create(client, uploads, "auto").json()
    assert job["routed_to"] == "gpu" and queue.routes[job["id"]] == "gpu"
    assert warnings(client, job["id"]) == []
    # A CPU job stays on the CPU queue even with GPUs idle: it asked for the CPU.
    assert create(client, uploads, "cpu").json()["routed_to"] == "cpu"
    assert client.get(f"/v1/jobs/{job['id']}").json()["routed_to"] == "gpu"


def test_a_cuda_job_with_no_gpu_worker_is_queued_with_a_warning(
    client: TestClient, uploads: dict[str, str], db: Database, queue: FakeQueue
) -> None:
    seen(db, "cpu-1", "cpu")
    response = create(client, uploads, "cuda")
    assert response.status_code == 201, response.text
    job = response.json()
    assert (job["status"], job["routed_to"]) == ("queued", "gpu")
    assert queue.routes == {job["id"]: "gpu"}  # on the GPU queue, not run on a CPU
    (warning,) = warnings(client, job["id"])
    assert "no GPU worker has been seen" in warning["message"]
    assert warning["data"] == {"routed_to": "gpu", "queue": "gpu"}


def test_the_reconciler_re_enqueues_to_the_queue_the_job_was_routed_to(
    tmp_path: Path,
    database_url: str,
    db: Database,
    client: TestClient,
    uploads: dict[str, str],
) -> None:
    ids = [create(client, uploads, d).json()["id"] for d in ("cuda", "cpu")]
    seen(db, "gpu-1", "gpu")  # the fleet changed since: the jobs keep their queue
    with db.session() as session:
        session.execute(update(Job).where(Job.id.in_(ids)).values(enqueued_at=now() - 600))
    queue = FakeQueue()
    settings = make_settings(tmp_path, database_url, queued_timeout_s=60)
    assert sorted(reconcile_once(db, queue, settings).reenqueued) == sorted(ids)  # type: ignore[arg-type]
    assert queue.routes == {ids[0]: "gpu", ids[1]: "cpu"}


def test_workers_are_listed_to_every_tenant_without_job_data(
    client: TestClient,
    globex: TestClient,
    db: Database,
    uploads: dict[str, str],
) -> None:
    seen(db, "host-1:11", "gpu")
    seen(db, "host-1:12", "cpu")
    seen(db, "host-2:13", "cpu", age_s=3600)  # stopped long ago
    create(client, uploads, "auto")
    listed = client.get("/v1/workers").json()
    assert listed["object"] == "list"
    assert sorted(w["name"] for w in listed["data"]) == ["host-1:11", "host-1:12"]
    gpu = next(w for w in listed["data"] if w["device_class"] == "gpu")
    assert gpu["device"] == "cuda" and gpu["device_name"] == "NVIDIA H100"
    assert gpu["memory_bytes"] == 80 * 2**30 and gpu["concurrency"] == 1 and gpu["queue"] == "gpu"
    assert globex.get("/v1/workers").json() == listed
    assert "job_" not in str(listed)
    assert TestClient(client.app).get("/v1/workers").status_code == 401
    assert client.post("/v1/workers").status_code == 405


def test_a_worker_runs_a_job_on_the_device_it_asked_for(
    client: TestClient, uploads: dict[str, str], db: Database, settings: Settings
) -> None:
    from layerfuse.compression.errors import InvalidInputError
    from layerfuse.service.storage import Storage

    storage = Storage(settings)
    gpu_stand_in = cpu_device("gpu")
    cases = [("auto", CPU_WORKER, "cpu"), ("cpu", CPU_WORKER, "cpu"), ("cuda", gpu_stand_in, "cpu")]
    for requested, worker, expected in cases:
        job_id = create(client, uploads, requested).json()["id"]
        with db.session() as session:
            job = session.get(Job, job_id)
            assert job is not None
            assert build_spec(job, settings, storage, db, worker).options.device == expected
    # A CUDA job that reached a CPU worker (misnamed queues) fails clearly; it never runs there.
    job_id = create(client, uploads, "cuda").json()["id"]
    with db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        with pytest.raises(InvalidInputError) as raised:
            build_spec(job, settings, storage, db, CPU_WORKER)
    assert raised.value.code == "device_unavailable"


def test_queue_names_are_settings_and_must_differ(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, cpu_queue="fleet-cpu", gpu_queue="fleet-gpu")
    assert (settings.queue_for("cpu"), settings.queue_for("gpu")) == ("fleet-cpu", "fleet-gpu")
    with pytest.raises(ValidationError, match="three different names"):
        Settings(data_dir=tmp_path, cpu_queue="jobs", gpu_queue="jobs")


def test_the_migration_routes_active_jobs_by_their_device(tmp_path: Path) -> None:
    from alembic import command
    from sqlalchemy import create_engine, text

    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(alembic_config(url), "0002")
    engine = create_engine(url)
    rows = {"job_a": ("queued", "cuda"), "job_b": ("running", "auto"), "job_c": ("failed", "cuda")}
    with engine.begin() as conn:
        for job_id, (status, device) in rows.items():
            conn.execute(
                text(
                    "INSERT INTO jobs (id, tenant, status, spec, metadata, attempts, created_at) "
                    "VALUES (:id, 't', :status, :spec, '{}', 0, 0)"
                ),
                {
                    "id": job_id,
                    "status": status,
                    "spec": f'{{"options": {{"device": "{device}"}}}}',
                },
            )
    upgrade(url)
    with engine.connect() as conn:
        routed = dict(conn.execute(text("SELECT id, routed_to FROM jobs")).all())
    engine.dispose()
    assert routed == {"job_a": "gpu", "job_b": "cpu", "job_c": None}
