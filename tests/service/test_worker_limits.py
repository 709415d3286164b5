"""A killed attempt's folder does not outlive it, and a job that outgrows its memory budget fails
with ``job_memory_limit_exceeded`` instead of taking the worker machine.

``compress`` is replaced by small doubles (as in test_worker.py): what matters is what the runner
and the reconciler do around it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import update

from layerfuse.compression import pipeline
from layerfuse.compression.errors import CompressionCancelled
from layerfuse.service.reconciler import reconcile_once
from layerfuse.service.settings import Settings
from layerfuse.service.storage import Storage
from layerfuse.service.store import Database, Job
from layerfuse.worker.runner import record, run_claimed

from .conftest import FakeQueue
from .helpers import CPU_WORKER
from .test_jobs import create, uploaded  # noqa: F401  (the fixture)
from .test_worker import claimed


@pytest.fixture
def job_id(client, uploaded) -> str:  # noqa: F811
    return str(create(client, uploaded).json()["id"])


def _leave_attempt(settings: Settings, job_id: str, attempt: int) -> Path:
    folder = Storage(settings).job_dir("acme", job_id) / f".attempt-{attempt}"
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "model.safetensors").write_bytes(b"x" * 1024)
    return folder


def test_the_next_attempt_removes_what_a_killed_one_left(
    db: Database, settings: Settings, job_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    killed = _leave_attempt(settings, job_id, 1)
    seen: list[bool] = []

    def run(spec: Any, out_dir: Path, *, reporter: Any, cancel: Any, checkpoint_dir: Any):
        seen.append(killed.exists())
        raise CompressionCancelled()

    monkeypatch.setattr(pipeline, "compress", run)
    with db.session() as session:  # attempt 1 was claimed, then its worker was killed
        session.execute(update(Job).where(Job.id == job_id).values(attempts=1))
    claim = claimed(db, job_id)
    assert claim.attempt == 2
    run_claimed(db, settings, claim, CPU_WORKER)
    assert seen == [False]
    assert list(killed.parent.glob(".attempt-*")) == []


def test_the_reconciler_removes_superseded_attempt_folders(
    db: Database, settings: Settings, job_id: str
) -> None:
    claim = claimed(db, job_id)
    current = _leave_attempt(settings, job_id, claim.attempt)
    older = _leave_attempt(settings, job_id, claim.attempt - 1 or 7)
    reconcile_once(db, FakeQueue(), settings)  # type: ignore[arg-type]
    assert current.exists() and not older.exists()
    with db.session() as session:  # the worker died for good; the job failed
        session.execute(update(Job).where(Job.id == job_id).values(status="failed"))
    reconcile_once(db, FakeQueue(), settings)  # type: ignore[arg-type]
    assert not current.exists()


def _failed_for_memory(db: Database, claim: Any, outcome: Any) -> dict[str, Any]:
    assert outcome.status == "failed", outcome
    assert record(db, claim, outcome)
    with db.session() as session:
        job = session.get(Job, claim.job_id)
        assert job is not None and job.error is not None
        return job.error


def test_a_job_that_grows_past_its_budget_fails_cleanly(
    db: Database, tmp_path: Path, database_url: str, job_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from .conftest import make_settings

    settings = make_settings(tmp_path, database_url, job_memory_limit_bytes=64 * 2**20)
    held: list[np.ndarray] = []

    def grows(spec: Any, out_dir: Path, *, reporter: Any, cancel: Any, checkpoint_dir: Any):
        reporter.stage("sweeping")
        for _ in range(40):  # one touched 16 MiB block per "batch", as a leak would
            held.append(np.ones(2 * 2**20))
            time.sleep(0.05)
            if cancel.cancelled():
                raise CompressionCancelled()
        raise AssertionError("the guard never fired")

    monkeypatch.setattr(pipeline, "compress", grows)
    claim = claimed(db, job_id)
    error = _failed_for_memory(db, claim, run_claimed(db, settings, claim, CPU_WORKER))
    held.clear()
    assert error["code"] == "job_memory_limit_exceeded"
    assert error["stage"] == "sweeping" and "0.06 GiB" in error["message"]


def test_one_runaway_allocation_fails_the_job_not_the_machine(
    db: Database, tmp_path: Path, database_url: str, job_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from .conftest import make_settings

    settings = make_settings(tmp_path, database_url, job_memory_limit_bytes=256 * 2**20)

    def explodes(spec: Any, out_dir: Path, *, reporter: Any, cancel: Any, checkpoint_dir: Any):
        reporter.stage("preparing")
        np.ones(8 * 2**30 // 8)  # 8 GiB at once: refused by the hard limit before any of it
        raise AssertionError("the allocation was not refused")

    monkeypatch.setattr(pipeline, "compress", explodes)
    claim = claimed(db, job_id)
    error = _failed_for_memory(db, claim, run_claimed(db, settings, claim, CPU_WORKER))
    assert error["code"] == "job_memory_limit_exceeded"
    # The limit is lifted again once the job ends: the worker goes on serving jobs.
    assert np.ones(8 * 2**20).sum() > 0


def test_the_budget_follows_the_model_size(tmp_path: Path) -> None:
    settings = Settings(env="test", data_dir=tmp_path)
    small, large = settings.job_memory_budget(100 * 2**20), settings.job_memory_budget(2**30)
    assert small is not None and large is not None and large - small == 32 * (2**30 - 100 * 2**20)
    assert Settings(env="test", job_memory_limit_bytes=0).job_memory_budget(2**30) is None
