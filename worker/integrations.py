"""A succeeded job's integrations: MLflow (docs/service.md, MLflow).

For ``{"type": "mlflow", "mlflow": {"tracking_uri", "experiment", "registered_model_name"}}``
the worker, once the outputs are published, creates a run named after the job in the experiment
and logs

- the job's spec as params, flattened (``options.max_length``, ``target.layers_to_remove``...);
- the chosen trajectory's accuracy per step as metrics (``trajectory.validation_accuracy``,
  ``trajectory.test_accuracy``, with step = layers removed) and the final metrics
  (``final.validation.accuracy``, ``parameters.after``, ``onnx.max_abs_logit_diff``...);
- report.json, model_card.md, signals.csv and the plots as artifacts, ``model/onnx/model.onnx``
  and ``model_int8.onnx`` (when written) under ``onnx/``;
- the model as an MLflow pyfunc (:mod:`layerfuse.worker.mlflow_model`) wrapping the Hugging Face
  directory without its ``onnx/`` folder (``mlflow.transformers`` cannot log a local checkpoint
  with transformers 5), registered as a new version of ``registered_model_name`` when given.

An integration never fails a job: its outcome goes into the job's ``result.integrations`` and a
failure into a warning event. The tracking URI is checked against SSRF again here, and the run's
artifact location must be served by the tracking server itself (``mlflow-artifacts:``): a server
that points the worker at ``s3://`` or a local path would have it write with its own credentials
or to its own disk.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from layerfuse.service.artifacts import ONNX_DIR
from layerfuse.service.netguard import UrlRefused, check_url
from layerfuse.service.settings import Settings
from layerfuse.service.store import Job

from .reporter import StoreReporter

log = logging.getLogger(__name__)

ARTIFACTS = ("report.json", "model_card.md", "signals.csv", "curves.png", "signals.png")
# Spec fields that are not about the method (and may hold URLs): never logged as params.
NOT_PARAMS = ("webhook", "webhook_events_filter", "integrations")
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value
PROXIED_ARTIFACT_SCHEMES = ("mlflow-artifacts", "http", "https")


class IntegrationError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def run_integrations(
    job: Job,
    output: Path,
    result: dict[str, Any],
    settings: Settings,
    reporter: StoreReporter,
) -> list[dict[str, Any]]:
    """Run every integration of ``job`` on its published ``output``; returns their outcomes."""
    outcomes = []
    for integration in job.spec.get("integrations") or []:
        if integration.get("type") != "mlflow":
            continue
        outcome = log_to_mlflow(integration["mlflow"], job, output, result, settings)
        outcomes.append(outcome)
        if outcome["status"] == "succeeded":
            registered = outcome.get("registered_model")
            reporter.event(
                "message",
                f"mlflow: logged run {outcome['run_id']} in experiment {outcome['experiment']}"
                + (
                    f"; registered {registered['name']} version {registered['version']}"
                    if registered
                    else ""
                ),
                data=outcome,
            )
        else:
            error = outcome["error"]
            reporter.event(
                "message",
                f"mlflow integration failed [{error['code']}]: {error['message']}",
                data=outcome,
                level="warning",
            )
    return outcomes


def log_to_mlflow(
    options: dict[str, Any],
    job: Job,
    output: Path,
    result: dict[str, Any],
    settings: Settings,
) -> dict[str, Any]:
    """Log ``job`` to MLflow; the outcome, ``status`` ``succeeded`` or ``failed`` with ``error``."""
    outcome: dict[str, Any] = {
        "type": "mlflow",
        "status": "failed",
        "experiment": options.get("experiment", "layerfuse"),
    }
    run_id: str | None = None
    client: Any = None
    try:
        uri = _checked_tracking_uri(options["tracking_uri"], settings)
        try:
            import mlflow  # noqa: F401  (the extra may be missing on this worker)
            from mlflow import MlflowClient
        except ImportError:
            raise IntegrationError(
                "mlflow_unavailable",
                "this worker has no mlflow; install layerfuse with the 'mlflow' extra",
            ) from None
        with _bounded_requests(settings):
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            experiment_id = _experiment_id(client, outcome["experiment"])
            run = client.create_run(
                experiment_id,
                run_name=job.id,
                tags={"layerfuse.job_id": job.id, "layerfuse.strategy": result.get("strategy")},
            )
            run_id = run.info.run_id
            outcome.update(experiment_id=experiment_id, run_id=run_id)
            _check_artifact_location(run.info.artifact_uri, settings)
            report = json.loads((output / "report.json").read_text())
            _log_params_and_metrics(client, run_id, job, result, report)
            for name in ARTIFACTS:
                if (output / name).is_file():
                    client.log_artifact(run_id, str(output / name))
            for onnx_file in _onnx_files(output):
                client.log_artifact(run_id, str(onnx_file), "onnx")
            _log_model(client, run_id, job, output)
            outcome["model_uri"] = f"runs:/{run_id}/model"
            registered_name = options.get("registered_model_name")
            if registered_name:
                source = f"{run.info.artifact_uri}/model"
                version = _register(client, registered_name, source, run_id, job)
                outcome["registered_model"] = {"name": registered_name, "version": version}
            client.set_terminated(run_id, "FINISHED")
        outcome["status"] = "succeeded"
    except IntegrationError as exc:
        outcome["error"] = {"code": exc.code, "message": exc.message}
    except Exception as exc:
        log.warning("job %s: mlflow integration failed", job.id, exc_info=True)
        outcome["error"] = {"code": "mlflow_failed", "message": _describe(exc, settings)}
    if outcome["status"] == "failed" and run_id is not None and client is not None:
        with contextlib.suppress(Exception), _bounded_requests(settings):
            client.set_terminated(run_id, "FAILED")
    return outcome


def _checked_tracking_uri(uri: str, settings: Settings) -> str:
    if uri.lower().startswith("file:"):
        if not settings.mlflow_allow_file_uri:
            raise IntegrationError(
                "mlflow_tracking_uri_forbidden", "file: tracking URIs are off on this server"
            )
        return uri
    try:
        check_url(uri, allow_private=settings.webhook_allow_private)
    except UrlRefused as exc:
        raise IntegrationError(f"mlflow_tracking_uri_{exc.kind}", exc.message) from None
    return uri.rstrip("/")


@contextlib.contextmanager
def _bounded_requests(settings: Settings) -> Iterator[None]:
    """MLflow's client retries for minutes by default; a job's integration should not."""
    values = {
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(int(settings.mlflow_timeout_s)),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    }
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _experiment_id(client: Any, name: str) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    try:
        return str(client.create_experiment(name))
    except MlflowException:
        experiment = client.get_experiment_by_name(name)  # created concurrently
        if experiment is None:
            raise
        return str(experiment.experiment_id)


def _check_artifact_location(artifact_uri: str, settings: Settings) -> None:
    scheme = artifact_uri.split(":", 1)[0].lower() if ":" in artifact_uri else ""
    if scheme in PROXIED_ARTIFACT_SCHEMES or (scheme == "file" and settings.mlflow_allow_file_uri):
        return
    raise IntegrationError(
        "mlflow_artifact_store_unsupported",
        f"the MLflow server stores this run's artifacts at a {scheme or 'local'} location the "
        "worker would write to directly; run the server with --serve-artifacts "
        "(artifact URIs mlflow-artifacts:/...)",
    )


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` to ``{"a.b": 1}``; lists of scalars become comma-joined strings."""
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(flatten(item, f"{prefix}{key}."))
        return flat
    if isinstance(value, list):
        if all(not isinstance(v, dict | list) for v in value):
            return {prefix[:-1]: ",".join(str(v) for v in value)}
        return {}
    return {prefix[:-1]: value}


def _log_params_and_metrics(
    client: Any, run_id: str, job: Job, result: dict[str, Any], report: dict[str, Any]
) -> None:
    from mlflow.entities import Metric, Param

    spec = {k: v for k, v in job.spec.items() if k not in NOT_PARAMS}
    params = [
        Param(key, str(value)[:MAX_PARAM_LENGTH])
        for key, value in flatten(spec).items()
        if value is not None
    ]
    # What the library resolved ("auto" device and precision...), next to what was asked.
    params += [
        Param(f"resolved.{key}", str(value)[:MAX_PARAM_LENGTH])
        for key, value in flatten(report.get("options") or {}).items()
        if value is not None
    ]
    timestamp = int(time.time() * 1000)
    metrics = []
    strategy = result.get("strategy")
    curve = (report.get("strategies", {}).get(strategy) or {}).get("curve", [])
    for point in curve:
        for split in ("validation", "test"):
            for name, value in (point.get(split) or {}).items():
                metrics.append(
                    Metric(
                        f"trajectory.{split}_{name}",
                        float(value),
                        timestamp,
                        int(point["layers_removed"]),
                    )
                )
    finals = {k: v for k, v in result.items() if k in _FINAL_KEYS}
    onnx = (report.get("export") or {}).get("onnx")
    if onnx:
        finals["onnx"] = {
            "max_abs_logit_diff": onnx["max_abs_logit_diff"],
            "latency_ms": onnx["latency_ms"],
        }
    finals["layers_removed"] = len(result.get("removed_layers") or [])
    for key, value in flatten(finals).items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            metrics.append(Metric(key, float(value), timestamp, 0))
    for start in range(0, len(params), 100):
        client.log_batch(run_id, params=params[start : start + 100])
    for start in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[start : start + 1000])


_FINAL_KEYS = (
    "baseline",
    "final",
    "parameters",
    "size_mb",
    "latency_ms",
    "accuracy_to_size_ratio",
    "improvement_factor",
)


def _onnx_files(output: Path) -> list[Path]:
    """The ONNX files the library wrote in ``model/onnx/`` (fp32, then int8), where present."""
    folder = output / "model" / ONNX_DIR
    names = ("model.onnx", "model_int8.onnx")
    return [folder / name for name in names if (folder / name).is_file()]


def _log_model(client: Any, run_id: str, job: Job, output: Path) -> None:
    import mlflow
    import torch
    import transformers
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    dataset = job.spec.get("dataset", {})
    text_column = dataset.get("text_column", "text")
    pair_column = dataset.get("text_pair_column")
    config = json.loads((output / "model" / "config.json").read_text())
    labels = [
        str(v) for _, v in sorted(config.get("id2label", {}).items(), key=lambda kv: int(kv[0]))
    ]
    inputs: list[ColSpec | TensorSpec] = [ColSpec("string", text_column)]
    if pair_column:
        inputs.append(ColSpec("string", pair_column))
    outputs: list[ColSpec | TensorSpec] = [ColSpec("string", "label"), ColSpec("double", "score")]
    outputs += [ColSpec("double", f"p_{label}") for label in labels]
    with tempfile.TemporaryDirectory(prefix="layerfuse-mlflow-") as tmp:
        # The pyfunc serves the PyTorch model; the ONNX files are logged on their own already.
        hf_dir = Path(tmp) / "hf" / "model"  # its folder name is kept in the pyfunc's artifacts
        shutil.copytree(output / "model", hf_dir, ignore=shutil.ignore_patterns(ONNX_DIR))
        mlflow.pyfunc.save_model(
            path=str(Path(tmp) / "model"),
            python_model=str(Path(__file__).with_name("mlflow_model.py")),
            artifacts={"model": str(hf_dir)},
            model_config={
                "text_column": text_column,
                "text_pair_column": pair_column,
                "max_length": job.spec.get("options", {}).get("max_length", 128),
            },
            signature=ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs)),
            pip_requirements=[
                f"torch=={torch.__version__.split('+')[0]}",
                f"transformers=={transformers.__version__}",
                "safetensors",
                "pandas",
            ],
        )
        client.log_artifacts(run_id, str(Path(tmp) / "model"), "model")


def _register(client: Any, name: str, source: str, run_id: str, job: Job) -> str:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = client.create_model_version(
        name, source=source, run_id=run_id, tags={"layerfuse.job_id": job.id}
    )
    return str(version.version)


def _describe(exc: Exception, settings: Settings) -> str:
    """A short message for the job's result: no worker paths."""
    message = f"{type(exc).__name__}: {exc}"
    for path in (str(settings.data_dir.resolve()), tempfile.gettempdir()):
        message = message.replace(path, "<path>")
    return message[:500]
