"""Running one claimed job: the library's spec from the job row, the run, the outcome.

An attempt writes into ``<job>/.attempt-<n>/`` and renames it to ``<job>/output/`` only when the
run succeeded and the attempt still owns the job; the stage checkpoints in ``<job>/checkpoint/``
outlive a failed attempt, so a redelivered job resumes instead of starting over.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerfuse.compression.errors import CompressionCancelled, InvalidInputError, LayerfuseError
from layerfuse.compression.inspection import MODEL_FILES
from layerfuse.compression.spec import SPLIT_FILE_STEMS, CompressionSpec
from layerfuse.service.artifacts import describe_outputs
from layerfuse.service.settings import Settings
from layerfuse.service.storage import (
    CHECKPOINT,
    OutsideRoot,
    Storage,
    inside,
    publish,
    remove_attempts,
    remove_tree,
)
from layerfuse.service.store import CANCELLED, FAILED, SUCCEEDED, Database, Dataset, Job
from layerfuse.service.store import jobs as job_store
from layerfuse.service.store import uploads as upload_store
from layerfuse.service.store.jobs import Claim

from .devices import DeviceUnavailable, WorkerDevice, job_device
from .integrations import run_integrations
from .memory import MemoryGuard, is_out_of_memory, weight_bytes
from .reporter import Heartbeat, StoreCancelToken, StoreReporter

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
COLUMNS = ("text_column", "text_pair_column", "label_column")
# Job fields for the service (notifications, integrations), not for the library.
SERVICE_FIELDS = ("webhook", "webhook_events_filter", "integrations")


@dataclass(frozen=True)
class Outcome:
    status: str
    error: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    artifacts: list[dict[str, Any]] | None = None


def build_spec(
    job: Job, settings: Settings, storage: Storage, db: Database, device: WorkerDevice
) -> CompressionSpec:
    """The library's spec for ``job`` on a worker on ``device``: its method fields, the device
    they run on (:func:`~layerfuse.worker.devices.job_device`) and the files they refer to.

    Raises:
        InvalidInputError: a referenced model or dataset is gone or unusable, or the job needs a
            device this worker does not have.
    """
    fields = {k: v for k, v in job.spec.items() if k not in SERVICE_FIELDS}
    model, dataset = fields.pop("model"), fields.pop("dataset")
    options = fields.get("options", {})
    try:
        run_on = job_device(options.get("device", "auto"), device)
    except DeviceUnavailable as exc:
        raise InvalidInputError(
            str(exc), code="device_unavailable", param="options.device"
        ) from None
    fields["options"] = {**options, "device": run_on}
    splits: dict[str, Path] = {}
    dataset_name: str | None = None
    with db.session() as session:
        for split in SPLITS:
            if dataset.get(split):
                row = upload_store.get(session, Dataset, job.tenant, dataset[split])
                if row is None:
                    raise InvalidInputError(
                        f"dataset {dataset[split]} was deleted",
                        code="dataset_not_found",
                        param=f"dataset.{split}",
                    )
                splits[split] = storage.dataset_dir(job.tenant, row.id) / row.stored_name
                if split == "train":
                    # The model card names the data by the uploaded file, not the stored copy.
                    stem = Path(row.filename).stem
                    dataset_name = None if stem.lower() in SPLIT_FILE_STEMS else stem
    return CompressionSpec.model_validate(
        {
            **fields,
            **splits,
            "dataset_name": dataset_name,
            "model_dir": _model_dir(model, job, settings, storage),
            "columns": {k: dataset[k] for k in COLUMNS if k in dataset},
        }
    )


def _model_dir(model: dict[str, Any], job: Job, settings: Settings, storage: Storage) -> Path:
    if model["source"] == "upload":
        return storage.model_dir(job.tenant, model["id"])
    if model["source"] == "path" and settings.models_root is not None:
        try:
            return inside(settings.models_root, model["path"])
        except OutsideRoot:
            pass
    if model["source"] == "hub" and settings.allow_hub:
        from huggingface_hub import snapshot_download

        return Path(
            snapshot_download(
                model["id"],
                revision=model.get("revision"),
                cache_dir=settings.data_dir / "hub",
                allow_patterns=[*MODEL_FILES, "model-*-of-*.safetensors"],
            )
        )
    raise InvalidInputError(
        "the job's model is not available on this server", code="model_not_found", param="model"
    )


def run_claimed(db: Database, settings: Settings, claim: Claim, device: WorkerDevice) -> Outcome:
    """Run the library for ``claim`` on ``device``; every way the run can end becomes an
    :class:`Outcome`.

    The heartbeat starts with the attempt, before anything slow (importing torch, loading the
    model), so the reconciler never takes a starting attempt for a dead one.
    """
    with Heartbeat(db, claim, settings.heartbeat_interval_s):
        return _run(db, settings, claim, device)


def _run(db: Database, settings: Settings, claim: Claim, device: WorkerDevice) -> Outcome:
    from celery.exceptions import SoftTimeLimitExceeded

    with db.session() as session:
        job = session.get(Job, claim.job_id)
        assert job is not None
    storage = Storage(settings)
    job_dir = storage.job_dir(job.tenant, job.id)
    attempt_dir = job_dir / f".attempt-{claim.attempt}"
    # Earlier attempts of this job were killed (or lost it): their folders are garbage now.
    remove_attempts(job_dir, below=claim.attempt + 1)
    reporter = StoreReporter(db, claim)
    cancel = GuardedCancel(StoreCancelToken(db, claim))
    budget: int | None = None
    try:
        spec = build_spec(job, settings, storage, db, device)
        budget = settings.job_memory_budget(weight_bytes(spec.model_dir))
        with contextlib.ExitStack() as stack:
            if budget:
                cancel.guard = stack.enter_context(MemoryGuard(budget))
            result = _compress(spec, attempt_dir, job_dir, settings, reporter, cancel)
        output = storage.output_dir(job.tenant, job.id)
        publish(attempt_dir, output)
        summary = dict(result.summary)
        if job.spec.get("integrations"):
            summary["integrations"] = run_integrations(job, output, summary, settings, reporter)
        return Outcome(SUCCEEDED, result=summary, artifacts=describe_outputs(output))
    except CompressionCancelled:
        if cancel.out_of_memory():
            return Outcome(FAILED, error=_memory_error(budget, reporter))
        return Outcome(CANCELLED)
    except LayerfuseError as exc:
        # The library's own errors keep their stable codes (export_onnx_unavailable, ...).
        return Outcome(FAILED, error=_error(exc.code, exc.message, reporter))
    except SoftTimeLimitExceeded:
        message = f"the job ran past this server's time limit of {settings.job_time_limit_s} s"
        return Outcome(FAILED, error=_error("job_time_limit_exceeded", message, reporter))
    except Exception as exc:
        if is_out_of_memory(exc):
            return Outcome(FAILED, error=_memory_error(budget, reporter))
        log.exception("job %s (attempt %s) failed unexpectedly", claim.job_id, claim.attempt)
        message = "an internal error stopped the job; it has been logged for the operators"
        return Outcome(FAILED, error=_error("internal_error", message, reporter))
    finally:
        remove_tree(attempt_dir)
        if not cancel.token.lost:
            # The job ends with this attempt: its checkpoints are no longer needed.
            remove_tree(job_dir / CHECKPOINT)


def _compress(
    spec: CompressionSpec,
    attempt_dir: Path,
    job_dir: Path,
    settings: Settings,
    reporter: StoreReporter,
    cancel: GuardedCancel,
) -> Any:
    _set_torch_threads(settings)
    from layerfuse.compression import compress

    result = compress(
        spec, attempt_dir, reporter=reporter, cancel=cancel, checkpoint_dir=job_dir / CHECKPOINT
    )
    if cancel.cancelled():
        raise CompressionCancelled()
    return result


class GuardedCancel:
    """The job's cancel token, which the memory guard fires too."""

    def __init__(self, token: StoreCancelToken):
        self.token = token
        self.guard: MemoryGuard | None = None

    def out_of_memory(self) -> bool:
        return self.guard is not None and self.guard.exceeded()

    def cancelled(self) -> bool:
        return self.out_of_memory() or self.token.cancelled()


def _memory_error(budget: int | None, reporter: StoreReporter) -> dict[str, Any]:
    limit = f"its memory budget of {budget / 2**30:.2f} GiB" if budget else "the memory left"
    message = (
        f"the job needed more than {limit} (derived from the model's size; "
        "LAYERFUSE_JOB_MEMORY_*); use a smaller model, fewer examples (options.n_calib, a "
        "shorter max_length) or a worker with a larger budget"
    )
    return _error("job_memory_limit_exceeded", message, reporter)


def _error(code: str, message: str, reporter: StoreReporter) -> dict[str, Any]:
    return {"code": code, "message": message, "stage": reporter.current_stage}


def _set_torch_threads(settings: Settings) -> None:
    import torch

    torch.set_num_threads(settings.torch_threads or os.cpu_count() or 1)


def record(db: Database, claim: Claim, outcome: Outcome) -> bool:
    """Write the outcome if this attempt still owns the job; False when it lost it."""
    with db.session() as session:
        return job_store.finish_job(
            session,
            claim,
            outcome.status,
            error=outcome.error,
            result=outcome.result,
            artifacts=outcome.artifacts,
        )
