"""Issue 5, end to end: one job with a signed webhook, MLflow logging and an ONNX export.

The stack (Redis, PostgreSQL, ``layerfuse serve``, ``worker`` and ``webhooks``) runs as processes,
with a webhook receiver on 127.0.0.1 and a real ``mlflow server`` (SQLite backend store, proxied
artifacts); the test drives it with :class:`layerfuse.client.Client` only and checks what a
platform would: the delivery's signature (verified from the spec, as a third party would), the
registered model version (loaded with ``mlflow.pyfunc`` and used to predict), and
model/onnx/model.onnx (with its int8 sibling) against the downloaded Hugging Face model. The
other tests here need no servers.
"""

from __future__ import annotations

import json
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from layerfuse.client import Client
from layerfuse.service.settings import Settings
from layerfuse.service.store import Job
from layerfuse.worker.integrations import (
    IntegrationError,
    _check_artifact_location,
    flatten,
    log_to_mlflow,
)
from tests.factories import LABELS, synthetic_rows

from .helpers import Receiver, verify_standard_webhook
from .stack import ACME, ACME_WEBHOOK_SECRET, MlflowServer, Stack, free_port, wait_for

STRATEGIES = ["drop-top", "weight-magnitude", "gradient-norm"]
REGISTERED = "layerfuse-it-classifier"


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """Started before the stack so both come up together; ``wait()`` before use."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"))
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.integration
def test_one_job_ends_with_a_signed_webhook_a_registered_model_and_a_matching_onnx(
    mlflow_server: MlflowServer,
    stack: Stack,
    tiny_classifier: Path,
    synthetic_data: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lf = Client(stack.url, api_key=ACME)
    model = lf.upload_model(tiny_classifier)
    splits = {s: lf.upload_dataset(synthetic_data[s])["id"] for s in ("train", "validation")}
    tracking_uri = mlflow_server.wait()
    with Receiver(statuses=[503]) as receiver:  # the first delivery is refused once
        job = lf.create_job(
            {
                "model": {"source": "upload", "id": model["id"]},
                "dataset": splits,
                "strategy": "drop-top",
                "strategies": STRATEGIES,
                "target": {"layers_to_remove": 1},
                "distillation": {"enabled": True, "epochs": 1},
                "options": {"n_calib": 32, "max_length": 32, "random_seeds": 1},
                "export": {"formats": ["hf", "onnx", "onnx-int8"], "int8_tolerance": 1},
                "webhook": receiver.url,
                "integrations": [
                    {
                        "type": "mlflow",
                        "mlflow": {
                            "tracking_uri": tracking_uri,
                            "experiment": "layerfuse-it",
                            "registered_model_name": REGISTERED,
                        },
                    }
                ],
            }
        )
        events = list(lf.follow_events(job["id"]))
        job = lf.get_job(job["id"])
        assert job["status"] == "succeeded", (job, stack.diagnostics())
        completed = wait_for(
            lambda: _verified(receiver, "job.completed"), 30, "the job.completed delivery"
        )
        deliveries = wait_for(
            lambda: _all_delivered(lf, job["id"]), 30, "every delivery to succeed"
        )

    # --- The webhook: signed, retried under one id, logged ------------------------------------
    assert completed["data"]["id"] == job["id"]
    assert completed["data"]["status"] == "succeeded"
    assert completed["data"]["result"]["integrations"][0]["status"] == "succeeded"
    types = [d["event_type"] for d in deliveries]
    assert types[0] == "job.started" and types[-1] == "job.completed"
    assert types.count("job.stage") == sum(e["type"] == "stage" for e in events)
    retried = [d for d in deliveries if d["attempts"] == 2]
    assert len(retried) == 1 and [a["status_code"] for a in retried[0]["attempt_log"]] == [503, 200]
    sent_ids = [headers["webhook-id"] for headers, _ in receiver.requests]
    assert sent_ids.count(retried[0]["id"]) == 2

    # --- MLflow: the run, its metrics, and a registered version that loads and predicts ------
    outcome = job["result"]["integrations"][0]
    assert outcome["registered_model"] == {"name": REGISTERED, "version": "1"}
    assert any("mlflow: logged run" in e["message"] for e in events)
    from mlflow import MlflowClient

    tracking = MlflowClient(tracking_uri)
    run = tracking.get_run(outcome["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == job["id"]
    assert run.data.params["strategy"] == "drop-top"
    assert run.data.params["options.max_length"] == "32"
    assert run.data.params["strategies"] == ",".join(STRATEGIES)
    assert not any(key.startswith(("webhook", "integrations")) for key in run.data.params)
    history = tracking.get_metric_history(run.info.run_id, "trajectory.validation_accuracy")
    assert sorted(m.step for m in history) == [0, 1, 2, 3]  # step = layers removed
    assert {"final.validation.accuracy", "parameters.after", "onnx.max_abs_logit_diff"} <= set(
        run.data.metrics
    )
    logged = {a.path for a in tracking.list_artifacts(run.info.run_id)}
    assert {"report.json", "curves.png", "signals.png", "model", "onnx"} <= logged
    onnx_logged = {a.path for a in tracking.list_artifacts(run.info.run_id, "onnx")}
    assert onnx_logged == {"onnx/model.onnx", "onnx/model_int8.onnx"}
    # The pyfunc wraps the Hugging Face directory without its ONNX files (logged apart above).
    wrapped = {a.path for a in tracking.list_artifacts(run.info.run_id, "model/artifacts/model")}
    assert "model/artifacts/model/config.json" in wrapped
    assert "model/artifacts/model/onnx" not in wrapped
    version = tracking.get_model_version(REGISTERED, "1")
    assert (version.status, version.run_id) == ("READY", run.info.run_id)

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    import mlflow.pyfunc
    import pandas as pd

    texts = [r["text"] for r in synthetic_rows(7, seed=11)]
    served = mlflow.pyfunc.load_model(f"models:/{REGISTERED}/1")
    predictions = served.predict(pd.DataFrame({"text": texts}))
    assert list(predictions.columns) == ["label", "score", *(f"p_{label}" for label in LABELS)]
    assert set(predictions["label"]) <= set(LABELS) and len(predictions) == len(texts)
    probabilities = predictions[[f"p_{label}" for label in LABELS]].to_numpy()
    assert abs(probabilities.sum(axis=1) - 1).max() < 1e-5

    # --- ONNX: the report's check, then onnxruntime on the downloaded file vs the HF model ----
    report = lf.get_report(job["id"])
    onnx = report["export"]["onnx"]
    assert onnx["max_abs_logit_diff"] <= onnx["tolerance"] == 1e-4
    latency = onnx["latency_ms"]
    print(f"\nONNX vs PyTorch CPU latency (ms): {json.dumps(latency)}")
    artifacts = {a["name"]: a for a in lf.list_artifacts(job["id"])}
    name = "model/onnx/model.onnx"
    assert artifacts[name]["bytes"] > 0 and len(artifacts[name]["sha256"]) == 64
    assert artifacts["model/onnx/model_int8.onnx"]["bytes"] < artifacts[name]["bytes"]
    onnx_path = lf.download_artifact(job["id"], name, tmp_path / "model.onnx")
    archive = lf.download_artifact(job["id"], "model.zip", tmp_path / "model.zip")
    with zipfile.ZipFile(archive) as zf:
        assert {name, "model/onnx/model_int8.onnx"} <= set(zf.namelist())
        zf.extractall(tmp_path)
    logits = _onnx_vs_pytorch(onnx_path, tmp_path / "model", texts)
    served_labels = [LABELS[int(i)] for i in logits.argmax(-1)]
    assert list(predictions["label"]) == served_labels  # MLflow serves the same model


def _verified(receiver: Receiver, kind: str) -> dict[str, Any] | None:
    with receiver.lock:
        requests = list(receiver.requests)
    for headers, body in requests:
        payload = json.loads(body)
        if payload["type"] == kind:
            return verify_standard_webhook(ACME_WEBHOOK_SECRET, headers, body)
    return None


def _all_delivered(lf: Client, job_id: str) -> list[Any] | None:
    deliveries = lf.list_webhook_deliveries(job_id, limit=100)["data"]
    done = deliveries and all(d["status"] == "succeeded" for d in deliveries)
    return list(deliveries) if done else None


def _onnx_vs_pytorch(onnx_path: Path, model_dir: Path, texts: list[str]) -> torch.Tensor:
    """Logits of onnxruntime and of the reloaded Hugging Face model on a new batch shape."""
    import onnxruntime
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    assert model.config.num_hidden_layers == 3
    inputs = tokenizer(texts, padding=True, truncation=True, max_length=40, return_tensors="pt")
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feeds = {i.name: inputs[i.name].numpy() for i in session.get_inputs()}
    got = torch.from_numpy(session.run(["logits"], feeds)[0])
    with torch.no_grad():
        expected = model(**inputs).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)
    return expected


# --- Without servers ---------------------------------------------------------------------------


def _job(**spec: Any) -> Job:
    return Job(id="job_test", tenant="acme", spec={"options": {"max_length": 32}, **spec})


def test_an_mlflow_failure_is_an_outcome_not_a_failed_job(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, webhook_allow_private=True, mlflow_timeout_s=2)
    options = {"tracking_uri": f"http://127.0.0.1:{free_port()}", "experiment": "x"}
    started = time.monotonic()
    outcome = log_to_mlflow(options, _job(), tmp_path, {}, settings)
    assert time.monotonic() - started < 30  # bounded retries, not MLflow's minutes
    assert (outcome["status"], outcome["error"]["code"]) == ("failed", "mlflow_failed")
    assert str(tmp_path) not in outcome["error"]["message"]

    strict = Settings(data_dir=tmp_path)
    outcome = log_to_mlflow(options, _job(), tmp_path, {}, strict)  # checked again at run time
    assert outcome["error"]["code"] == "mlflow_tracking_uri_forbidden"


def test_artifacts_go_through_the_tracking_server_only() -> None:
    settings = Settings()
    _check_artifact_location("mlflow-artifacts:/1/abc/artifacts", settings)
    for uri in ("s3://bucket/1/abc", "/var/mlruns/1/abc", "file:///var/mlruns/1"):
        with pytest.raises(IntegrationError) as refused:
            _check_artifact_location(uri, settings)
        assert refused.value.code == "mlflow_artifact_store_unsupported"
    _check_artifact_location("file:///var/mlruns/1", Settings(mlflow_allow_file_uri=True))


def test_specs_flatten_into_params() -> None:
    spec = {"target": {"layers_to_remove": 1}, "strategies": ["a", "b"], "export": {"f": [{}]}}
    assert flatten(spec) == {"target.layers_to_remove": 1, "strategies": "a,b"}
