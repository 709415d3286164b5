"""Where files live under the data directory, by tenant and id (architecture.md, Runtime).

    <data_dir>/tenants/<tenant>/models/<mdl_id>/<file>
    <data_dir>/tenants/<tenant>/datasets/<ds_id>/<data.ext>
    <data_dir>/tenants/<tenant>/jobs/<job_id>/output/...        artifacts, renamed into place
    <data_dir>/tenants/<tenant>/jobs/<job_id>/checkpoint/...    stage outputs for a resumed attempt
    <data_dir>/tenants/<tenant>/jobs/<job_id>/.attempt-<n>/     an attempt's outputs being written

Tenants and ids are validated before they get here, and every path built from outside input is
resolved and checked to stay inside its root (:func:`inside`). Shared by the API and the worker.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .settings import Settings

OUTPUT = "output"
CHECKPOINT = "checkpoint"


class OutsideRoot(ValueError):
    """A path resolved outside the folder it must stay in."""


def inside(root: Path, relative: str | Path) -> Path:
    """``root / relative``, resolved; raises :class:`OutsideRoot` if it escapes ``root``."""
    base = root.resolve()
    candidate = (base / relative).resolve()
    if candidate != base and base not in candidate.parents:
        raise OutsideRoot(str(relative))
    return candidate


class Storage:
    def __init__(self, settings: Settings):
        self.root = settings.data_dir.resolve()

    def tenant_dir(self, tenant: str) -> Path:
        return inside(self.root / "tenants", tenant)

    def model_dir(self, tenant: str, model_id: str) -> Path:
        return inside(self.tenant_dir(tenant) / "models", model_id)

    def dataset_dir(self, tenant: str, dataset_id: str) -> Path:
        return inside(self.tenant_dir(tenant) / "datasets", dataset_id)

    def job_dir(self, tenant: str, job_id: str) -> Path:
        return inside(self.tenant_dir(tenant) / "jobs", job_id)

    def output_dir(self, tenant: str, job_id: str) -> Path:
        return self.job_dir(tenant, job_id) / OUTPUT

    def incoming(self, tenant: str, kind: str, upload_id: str) -> Path:
        """A temporary folder for an upload in progress, renamed into place when it is valid."""
        return inside(self.tenant_dir(tenant) / kind, f".incoming-{upload_id}")


def publish(temporary: Path, final: Path) -> None:
    """Rename ``temporary`` to ``final`` (same file system), replacing an older ``final``."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        stale = final.with_name(f".stale-{final.name}-{os.getpid()}")
        os.replace(final, stale)
        os.replace(temporary, final)
        shutil.rmtree(stale, ignore_errors=True)
    else:
        os.replace(temporary, final)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


ATTEMPT_PREFIX = ".attempt-"


def attempt_number(folder: Path) -> int | None:
    """``n`` of an ``.attempt-<n>`` folder; None for any other name."""
    suffix = folder.name.removeprefix(ATTEMPT_PREFIX)
    return int(suffix) if folder.name.startswith(ATTEMPT_PREFIX) and suffix.isdecimal() else None


def remove_attempts(job_dir: Path, *, below: int | None = None) -> list[Path]:
    """Remove the job's ``.attempt-<n>`` folders (those with ``n < below`` when given): what a
    killed attempt left behind. Returns what was removed."""
    removed = []
    for folder in sorted(job_dir.glob(ATTEMPT_PREFIX + "*")) if job_dir.is_dir() else []:
        number = attempt_number(folder)
        if number is not None and (below is None or number < below):
            remove_tree(folder)
            removed.append(folder)
    return removed
