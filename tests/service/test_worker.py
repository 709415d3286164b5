"""The worker's pieces against the store: reporter, cancel token, heartbeat, outcomes.

``compress`` is replaced by small test doubles here so every way a run ends is covered in
milliseconds; the integration tests run the real library.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import update

from layerfuse.compression import pipeline
from layerfuse.compression.errors import (
    CompressionCancelled,
    DatasetError,
    InvalidInputError,
    LayerfuseError,
)
from layerfuse.compression.progress import Progress
from layerfuse.service.settings import Settings
from layerfuse.service.storage import Storage
from layerfuse.service.store import Database, Job, now
from layerfuse.service.store import jobs as job_store
from layerfuse.service.store.jobs import Claim
from layerfuse.worker.reporter import Heartbeat, StoreCancelToken, StoreReporter, json_safe
from layerfuse.worker.runner import record, run_claimed

from .helpers import CPU_WORKER
from .stack import free_port
from .test_jobs import create, uploaded  # noqa: F401  (the fixture)


def claimed(db: Database, job_id: str) -> Claim:
    with db.session() as session:
        claim = job_store.claim_job(
            session, job_id, worker="t", stale_before=now() - 60, max_attempts=3
        )
    assert claim is not None
    return claim


def events(db: Database, job_id: str) -> list[Any]:
    with db.session() as session:
        return job_store.list_events(session, job_id, after_seq=0, limit=1000)


@pytest.fixture
def job_id(client, uploaded) -> str:  # noqa: F811
    return str(create(client, uploaded).json()["id"])


def test_reporter_writes_stage_progress_and_events(db: Database, job_id: str) -> None:
    claim = claimed(db, job_id)
    reporter = StoreReporter(db, claim)
    reporter.stage("sweeping")
    reporter.progress(Progress("sweeping", 0.5, 0.4, 12.3))
    reporter.progress(Progress("sweeping", 0.6, 0.45, 11.0))  # within a second: row only
    reporter.event(
        "metrics", "removed layer 3", {"acc": np.float32(0.5), "file": Path("/srv/x.csv")}
    )
    with db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert (job.stage, job.fraction, job.stage_fraction) == ("sweeping", 0.45, 0.6)
    written = [
        (e.type, e.stage, e.data)
        for e in events(db, job_id)
        if e.type not in ("status", "message")  # queued, "no worker seen", running
    ]
    assert written == [
        ("stage", "sweeping", {"stage": "sweeping"}),
        ("progress", "sweeping", {"fraction": 0.4, "stage_fraction": 0.5, "eta_seconds": 12}),
        ("metrics", "sweeping", {"acc": 0.5, "file": "x.csv"}),
    ]


def test_json_safe_keeps_no_server_paths() -> None:
    assert json_safe({"p": Path("/data/tenants/a/x.jsonl"), "a": np.array([1, 2])}) == {
        "p": "x.jsonl",
        "a": [1, 2],
    }


def test_cancel_token_fires_on_cancel_and_on_a_lost_claim(db: Database, job_id: str) -> None:
    claim = claimed(db, job_id)
    token = StoreCancelToken(db, claim, ttl_s=1.0)  # roomy: a loaded machine is slow
    assert token.cancelled() is False
    with db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        job_store.request_cancel(session, job)
    assert token.cancelled() is False  # cached for ttl_s
    time.sleep(1.05)
    assert token.cancelled() is True and token.lost is False

    other = create_claimed_job(db, job_id)
    lost = StoreCancelToken(db, other, ttl_s=0)
    with db.session() as session:
        session.execute(update(Job).where(Job.id == other.job_id).values(claim_token="someone"))
    assert lost.cancelled() is True and lost.lost is True


def create_claimed_job(db: Database, like: str) -> Claim:
    with db.session() as session:
        source = session.get(Job, like)
        assert source is not None
        job = job_store.create_job(
            session, tenant=source.tenant, spec=source.spec, metadata={}, routed_to="cpu"
        )
        job_id = job.id
    return claimed(db, job_id)


def test_heartbeat_refreshes_the_job(db: Database, job_id: str) -> None:
    claim = claimed(db, job_id)
    with db.session() as session:
        session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=0.0))
    with Heartbeat(db, claim, interval_s=0.05):
        time.sleep(0.3)
    with db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.heartbeat_at is not None
        assert job.heartbeat_at > now() - 5


@pytest.mark.parametrize(
    ("raised", "status", "code"),
    [
        (
            DatasetError("no rows", code="dataset_empty", param="dataset.train"),
            "failed",
            "dataset_empty",
        ),
        (
            # A worker without the onnx extra: what a job asking for ONNX gets (docs/service.md).
            InvalidInputError("install the onnx extra", code="export_onnx_unavailable"),
            "failed",
            "export_onnx_unavailable",
        ),
        (
            LayerfuseError("model.onnx differs", code="export_onnx_mismatch"),
            "failed",
            "export_onnx_mismatch",
        ),
        (CompressionCancelled(), "cancelled", None),
        (RuntimeError("/secret/path exploded"), "failed", "internal_error"),
    ],
)
def test_every_ending_becomes_a_recorded_outcome(
    db: Database,
    settings: Settings,
    job_id: str,
    monkeypatch: pytest.MonkeyPatch,
    raised: Exception,
    status: str,
    code: str | None,
) -> None:
    def failing(spec: Any, out_dir: Path, *, reporter: Any, cancel: Any, checkpoint_dir: Any):
        reporter.stage("preparing")
        raise raised

    monkeypatch.setattr(pipeline, "compress", failing)
    claim = claimed(db, job_id)
    outcome = run_claimed(db, settings, claim, CPU_WORKER)
    assert outcome.status == status
    assert record(db, claim, outcome)
    with db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert job.status == status
        if code is None:
            assert job.error is None
        else:
            assert job.error == {
                "code": code,
                "message": job.error["message"],
                "stage": "preparing",
            }
            assert "/secret" not in job.error["message"]
    job_dir = Storage(settings).job_dir("acme", job_id)
    assert not (job_dir / "output").exists()
    assert list(job_dir.glob(".attempt-*")) == [] if job_dir.exists() else True


def test_success_publishes_outputs_then_lists_them(
    db: Database, settings: Settings, job_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def writes(spec: Any, out_dir: Path, *, reporter: Any, cancel: Any, checkpoint_dir: Any):
        assert spec.train.name.endswith(".jsonl") and spec.model_dir.is_dir()
        assert spec.options.n_calib == 32
        (out_dir / "model").mkdir(parents=True)
        (out_dir / "model" / "config.json").write_text("{}")
        (out_dir / "report.json").write_text("{}")
        return pipeline.CompressionResult(out_dir, {}, {"strategy": "drop-top"})

    monkeypatch.setattr(pipeline, "compress", writes)
    claim = claimed(db, job_id)
    outcome = run_claimed(db, settings, claim, CPU_WORKER)
    assert outcome.status == "succeeded", outcome
    assert [a["name"] for a in outcome.artifacts or []] == ["report.json", "model/config.json"]
    assert record(db, claim, outcome)
    output = Storage(settings).output_dir("acme", job_id)
    assert (output / "model" / "config.json").is_file()
    assert list(output.parent.glob(".attempt-*")) == []


def test_a_failed_integration_leaves_the_job_succeeded_with_model_onnx_listed(
    db: Database, settings: Settings, job_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def writes(spec: Any, out_dir: Path, *, reporter: Any, cancel: Any, checkpoint_dir: Any):
        (out_dir / "model").mkdir(parents=True)
        (out_dir / "model" / "config.json").write_text("{}")
        (out_dir / "report.json").write_text("{}")
        (out_dir / "model" / "onnx").mkdir()
        (out_dir / "model" / "onnx" / "model.onnx").write_bytes(b"onnx")
        return pipeline.CompressionResult(out_dir, {}, {"strategy": "drop-top"})

    monkeypatch.setattr(pipeline, "compress", writes)
    unreachable = {"tracking_uri": f"http://127.0.0.1:{free_port()}", "experiment": "x"}
    with db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        job.spec = {**job.spec, "integrations": [{"type": "mlflow", "mlflow": unreachable}]}
    claim = claimed(db, job_id)
    config = settings.model_copy(update={"webhook_allow_private": True, "mlflow_timeout_s": 2})
    outcome = run_claimed(db, config, claim, CPU_WORKER)
    assert outcome.status == "succeeded", outcome
    (mlflow,) = (outcome.result or {})["integrations"]
    assert (mlflow["type"], mlflow["status"], mlflow["error"]["code"]) == (
        "mlflow",
        "failed",
        "mlflow_failed",
    )
    onnx = next(a for a in outcome.artifacts or [] if a["name"] == "model/onnx/model.onnx")
    assert onnx["bytes"] == 4 and len(onnx["sha256"]) == 64
    warning = [e for e in events(db, job_id) if e.level == "warning"]
    assert warning and warning[-1].message.startswith("mlflow integration failed [mlflow_failed]")


def test_the_model_card_names_the_uploaded_dataset(
    client, db: Database, settings: Settings, tiny_classifier: Path, synthetic_data, tmp_path: Path
) -> None:
    import shutil

    from layerfuse.service.store import Job
    from layerfuse.worker.runner import build_spec

    from .helpers import job_body, upload_dataset, upload_model

    named = shutil.copy(synthetic_data["train"], tmp_path / "product-reviews.jsonl")
    model = upload_model(client, tiny_classifier).json()["id"]
    generic, specific = (
        upload_dataset(client, p).json()["id"] for p in (synthetic_data["train"], named)
    )
    # "train.jsonl" names only the split, so the card falls back to the dataset's id.
    for dataset, expected in {specific: "product-reviews", generic: generic}.items():
        job_id = client.post("/v1/jobs", json=job_body(model, dataset)).json()["id"]
        with db.session() as session:
            job = session.get(Job, job_id)
            assert job is not None
            spec = build_spec(job, settings, Storage(settings), db, CPU_WORKER)
        assert spec.resolved_dataset_name() == expected
