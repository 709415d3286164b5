"""The real thing: a private Redis, PostgreSQL, a Celery worker process and the API server.

Everything goes over HTTP, as a client that knows only api.md would do it: upload a tiny model
and datasets, run a job to success, download and reload the model; cancel queued and running
jobs; kill the worker mid-job and watch the job finish on its second attempt. A second stack
runs ``layerfuse up`` (SQLite and the filesystem broker) and ``layerfuse submit`` against it.

Skips (Redis or PostgreSQL missing) say ``SERVICE-SKIP:``; CI treats them as failures. The
stack is :mod:`tests.service.stack`'s, through the ``stack`` fixture.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.factories import synthetic_rows, write_jsonl

from .helpers import job_body, model_files, parse_sse
from .stack import (
    ACME,
    DATASET_LIMIT,
    GLOBEX,
    MODEL_LIMIT,
    REPO,
    Process,
    Stack,
    free_port,
    healthy,
    wait_for,
)

pytestmark = pytest.mark.integration

# `layerfuse up` runs on the embedded defaults, with the keys each test gives it.
EMBEDDED_UNSET = ("DATABASE_URL", "REDIS_URL", "LAYERFUSE_API_KEYS", "LAYERFUSE_API_KEY")


@pytest.fixture(scope="module")
def uploads(stack: Stack, tiny_classifier: Path, synthetic_data: dict[str, Path]) -> dict[str, str]:
    files = [("files", (p.name, p.read_bytes())) for p in model_files(tiny_classifier)]
    model = stack.acme.post("/v1/models", files=files)
    assert model.status_code == 201, model.text
    ids = {"model": model.json()["id"]}
    for split in ("train", "validation"):
        path = synthetic_data[split]
        response = stack.acme.post("/v1/datasets", files={"file": (path.name, path.read_bytes())})
        assert response.status_code == 201, response.text
        ids[split] = response.json()["id"]
    return ids


def small_job(uploads: dict[str, str], **overrides: Any) -> dict[str, Any]:
    body = job_body(uploads["model"], uploads["train"], **overrides)
    body["dataset"]["validation"] = uploads["validation"]
    return body


def long_job(uploads: dict[str, str]) -> dict[str, Any]:
    """A job that runs for minutes on the tiny model: every strategy, many epochs."""
    return small_job(
        uploads,
        strategy="fusion-random-forest",
        strategies="all",
        distillation={"enabled": True, "epochs": 20},
        options={"n_calib": 128, "max_length": 32, "random_seeds": 10},
    )


def test_a_job_runs_to_success_and_its_model_reloads_with_fewer_layers(
    stack: Stack, uploads: dict[str, str], tmp_path: Path
) -> None:
    created = stack.acme.post("/v1/jobs", json=small_job(uploads))
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]

    with stack.acme.stream("GET", f"/v1/jobs/{job_id}/events/stream", timeout=180) as response:
        assert response.status_code == 200
        events = parse_sse(response.read().decode())
    job = stack.job(job_id)
    assert job["status"] == "succeeded", (job, stack.diagnostics())
    assert events[-1]["type"] == "status" and events[-1]["data"]["status"] == "succeeded"
    stages = [e["data"]["stage"] for e in events if e["type"] == "stage"]
    assert stages[0] == "preparing" and stages[-1] == "exporting"
    assert any(e["type"] == "progress" for e in events)
    assert any(e["type"] == "metrics" for e in events)
    assert job["progress"]["fraction"] == 1.0
    assert job["result"]["removed_layers"] == [3]  # drop-top removes the highest layer
    assert job["attempts"] == 1

    listed = stack.acme.get(f"/v1/jobs/{job_id}/artifacts").json()["data"]
    names = {a["name"] for a in listed}
    assert {
        "model.zip",
        "report.json",
        "model_card.md",
        "curves.png",
        "signals.png",
        "signals.csv",
        "model/config.json",
        "model/model.safetensors",
    } <= names
    archive = stack.acme.get(f"/v1/jobs/{job_id}/artifacts/model.zip")
    assert archive.status_code == 200
    with zipfile.ZipFile(io.BytesIO(archive.content)) as zf:
        zf.extractall(tmp_path)
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model")
    assert model.config.num_hidden_layers == 3
    report = stack.acme.get(f"/v1/jobs/{job_id}/report").json()
    from layerfuse.compression.report import Report

    assert Report.model_validate(report).to_json() == report  # the schema the API documents
    assert report["model"]["num_layers"] == 4
    assert report["final"]["num_layers"] == 3
    assert 0.0 <= report["final"]["validation"]["accuracy"] <= 1.0
    assert 0.0 <= report["baseline"]["validation"]["accuracy"] <= 1.0

    # Resuming the stream after the terminal event returns nothing and ends at once.
    resumed = stack.acme.get(
        f"/v1/jobs/{job_id}/events/stream", headers={"Last-Event-ID": events[-1]["id"]}
    )
    assert parse_sse(resumed.text) == []


def test_cancel_a_queued_and_a_running_job(stack: Stack, uploads: dict[str, str]) -> None:
    running = stack.acme.post("/v1/jobs", json=long_job(uploads)).json()
    queued = stack.acme.post("/v1/jobs", json=small_job(uploads)).json()
    stack.wait_status(running["id"], {"running"}, 120)

    # The worker runs one job at a time: the second waits in the queue and is cancelled at once.
    assert stack.job(queued["id"])["status"] == "queued"
    response = stack.acme.post(f"/v1/jobs/{queued['id']}/cancel")
    assert (response.status_code, response.json()["status"]) == (202, "cancelled")

    wait_for(
        lambda: stack.job(running["id"])["stage"] not in (None, "preparing"),
        180,
        "the long job to get going",
    )
    response = stack.acme.post(f"/v1/jobs/{running['id']}/cancel")
    assert (response.status_code, response.json()["status"]) == (202, "cancelling")
    asked = time.monotonic()
    job = stack.wait_status(running["id"], {"cancelled", "failed", "succeeded"}, 30)
    assert job["status"] == "cancelled", job
    assert time.monotonic() - asked < 15
    events = stack.acme.get(f"/v1/jobs/{running['id']}/events", params={"limit": 1000}).json()
    assert events["data"][-1]["data"]["status"] == "cancelled"
    # The queued job's message is delivered later and does nothing.
    time.sleep(2)
    assert stack.job(queued["id"])["status"] == "cancelled"
    assert stack.job(queued["id"])["attempts"] == 0


def test_a_worker_killed_mid_job_leaves_the_job_to_a_second_attempt(
    stack: Stack, uploads: dict[str, str]
) -> None:
    body = small_job(uploads, distillation={"enabled": True, "epochs": 3})
    job_id = stack.acme.post("/v1/jobs", json=body).json()["id"]
    wait_for(
        lambda: stack.job(job_id)["stage"] not in (None, "preparing"),
        180,
        "the job to get past preparing",
    )
    events = stack.acme.get(f"/v1/jobs/{job_id}/events", params={"limit": 1000}).json()["data"]
    running = next(e for e in events if e["type"] == "status" and e["data"]["status"] == "running")
    assert running["data"]["attempt"] == 1
    # The prefork child running the job: killed as the OOM killer would.
    child = _job_process(stack, job_id)
    os.kill(child, signal.SIGKILL)
    job = stack.wait_status(job_id, {"succeeded", "failed"}, 300)
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 2
    messages = [
        e["message"]
        for e in stack.acme.get(f"/v1/jobs/{job_id}/events", params={"limit": 1000}).json()["data"]
    ]
    assert any("queued again" in m for m in messages)


def _job_process(stack: Stack, job_id: str) -> int:
    """The pid of the pool child that runs ``job_id`` (the worker's only child)."""
    worker = stack.processes["worker"].popen.pid
    children = Path(f"/proc/{worker}/task/{worker}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def test_refusals_over_http(
    stack: Stack, uploads: dict[str, str], tmp_path: Path, tiny_classifier: Path
) -> None:
    acme, globex = stack.acme, stack.globex
    rows = [{"text": f"row {i} good", "sentiment": "pos" if i % 2 else "neg"} for i in range(20)]
    path = write_jsonl(tmp_path / "sentiment.jsonl", rows)
    other = acme.post("/v1/datasets", files={"file": (path.name, path.read_bytes())}).json()
    response = acme.post("/v1/jobs", json=small_job(uploads, dataset={"train": other["id"]}))
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert (response.json()["code"], response.json()["param"]) == (
        "dataset_label_column_missing",
        "dataset.label_column",
    )

    config = (tiny_classifier / "config.json").read_bytes()
    for name in ("pytorch_model.bin", "../config.json", "a/b", "model.pkl"):
        response = acme.post(
            "/v1/models",
            files=[("files", ("config.json", config)), ("files", (name, b"\x80\x04."))],
        )
        assert (response.status_code, response.json()["code"]) == (422, "upload_file_not_allowed")

    big = write_jsonl(tmp_path / "big.jsonl", synthetic_rows(30_000))
    assert big.stat().st_size > DATASET_LIMIT
    response = acme.post("/v1/datasets", files={"file": (big.name, big.read_bytes())})
    assert (response.status_code, response.json()["code"]) == (413, "upload_too_large")
    shard = b"\0" * (MODEL_LIMIT + 1)
    response = acme.post("/v1/models", files=[("files", ("model.safetensors", shard))])
    assert response.status_code == 413

    assert httpx.get(f"{stack.url}/v1/jobs").status_code == 401
    wrong = httpx.get(f"{stack.url}/v1/jobs", headers={"Authorization": "Bearer nope"})
    assert (wrong.status_code, wrong.json()["code"]) == (401, "invalid_api_key")

    job_id = acme.get("/v1/jobs").json()["data"][0]["id"]
    for path in (
        f"/v1/jobs/{job_id}",
        f"/v1/jobs/{job_id}/events",
        f"/v1/jobs/{job_id}/artifacts",
        f"/v1/models/{uploads['model']}",
        f"/v1/datasets/{uploads['train']}",
    ):
        response = globex.get(path)
        assert (response.status_code, response.json()["code"]) == (404, "not_found")
    assert globex.post(f"/v1/jobs/{job_id}/cancel").status_code == 404


def test_metrics_count_jobs_and_requests(stack: Stack, uploads: dict[str, str]) -> None:
    text = httpx.get(f"{stack.url}/metrics").text
    assert 'layerfuse_jobs{status="succeeded"}' in text
    assert "layerfuse_http_request_duration_seconds_bucket" in text
    assert "layerfuse_worker_last_seen_seconds" in text


def test_layerfuse_up_then_submit_status_and_a_bad_submission(
    tmp_path: Path, tiny_classifier: Path, synthetic_data: dict[str, Path]
) -> None:
    """The quickstart: ``layerfuse up`` on the embedded defaults, ``layerfuse submit`` to it."""
    port = free_port()
    data_dir = tmp_path / "embedded"
    env = {k: v for k, v in os.environ.items() if k not in EMBEDDED_UNSET}
    env["LAYERFUSE_BROKER_POLLING_INTERVAL_S"] = "0.1"
    up = Process(
        "up",
        [
            sys.executable,
            "-m",
            "layerfuse.cli",
            "up",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
        ],
        env,
        tmp_path,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: "layerfuse is up" in up.log.read_text(), 90, "layerfuse up")
        key = (data_dir / "api_key").read_text().strip()
        assert key in up.log.read_text()
        cli = [sys.executable, "-m", "layerfuse.cli"]
        client_args = ["--url", url, "--api-key", key]
        out = tmp_path / "out"
        submit = subprocess.run(
            [
                *cli,
                "submit",
                "--model",
                str(tiny_classifier),
                "--train",
                str(synthetic_data["train"]),
                "--validation",
                str(synthetic_data["validation"]),
                "--strategy",
                "drop-top",
                "--strategies",
                "drop-top,weight-magnitude",
                "--layers-to-remove",
                "2",
                "--distill-epochs",
                "1",
                "--n-calib",
                "32",
                "--max-length",
                "32",
                "--out",
                str(out),
                *client_args,
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert submit.returncode == 0, submit.stderr[-3000:] + up.tail()
        assert "removed layers [2, 3]" in submit.stdout
        config = json.loads((out / "model" / "config.json").read_text())
        assert config["num_hidden_layers"] == 2
        assert json.loads((out / "report.json").read_text())["final"]["num_layers"] == 2
        assert (out / "model_card.md").is_file() and (out / "curves.png").is_file()

        job_id = next(w for w in submit.stderr.split() if w.startswith("job_"))
        status = subprocess.run(
            [*cli, "status", job_id, *client_args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 0 and "succeeded" in status.stdout

        def cli_json(*args: str) -> Any:
            done = subprocess.run(
                [*cli, *args, "--json", *client_args],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr
            return done.stdout

        assert json.loads(cli_json("status", job_id))["status"] == "succeeded"
        listed = json.loads(cli_json("jobs", "--status", "succeeded"))
        assert [j["id"] for j in listed["data"]] == [job_id]
        assert json.loads(cli_json("jobs", "--status", "queued"))["data"] == []
        events = [json.loads(line) for line in cli_json("events", job_id).splitlines()]
        assert events[-1]["type"] == "status" and events[-1]["data"] == {"status": "succeeded"}
        assert {"stage", "progress"} <= {e["type"] for e in events}
        fetched = tmp_path / "fetched"
        download = json.loads(cli_json("download", job_id, "--out", str(fetched)))
        assert str(fetched / "model" / "config.json") in download["files"]
        assert (fetched / "report.json").read_bytes() == (out / "report.json").read_bytes()

        bad = write_jsonl(tmp_path / "nolabel.jsonl", [{"text": "a"}, {"text": "b"}])
        refused = subprocess.run(
            [
                *cli,
                "submit",
                "--model",
                str(tiny_classifier),
                "--train",
                str(bad),
                "--out",
                str(tmp_path / "never"),
                *client_args,
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert refused.returncode == 2, refused.stderr
        assert "dataset_label_column_missing" in refused.stderr
        assert "dataset.label_column" in refused.stderr

        missing = subprocess.run(
            [*cli, "status", "job_000000000000000000000000", *client_args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert missing.returncode == 2 and "not_found" in missing.stderr
    finally:
        up.stop()


def test_layerfuse_up_serves_the_configured_keys_and_names_only_their_tenants(
    tmp_path: Path,
) -> None:
    port = free_port()
    data_dir = tmp_path / "embedded"
    data_dir.mkdir()
    stale = "lf_" + "s" * 40  # a key an earlier `layerfuse up` generated
    (data_dir / "api_key").write_text(stale + "\n")
    env = {k: v for k, v in os.environ.items() if k not in EMBEDDED_UNSET}
    env["LAYERFUSE_API_KEYS"] = f"acme:{ACME},globex:{GLOBEX}"
    up = Process(
        "up-configured",
        [sys.executable, "-m", "layerfuse.cli", "up", "--port", str(port)],
        {**env, "LAYERFUSE_DATA_DIR": str(data_dir)},
        tmp_path,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: "layerfuse is up" in up.log.read_text(), 90, "layerfuse up")
        banner = up.log.read_text()
        assert "tenants: acme, globex" in banner
        assert ACME not in banner and GLOBEX not in banner and stale not in banner
        for key in (ACME, GLOBEX):
            answer = httpx.get(f"{url}/v1/jobs", headers={"Authorization": f"Bearer {key}"})
            assert answer.status_code == 200, answer.text
        refused = httpx.get(f"{url}/v1/jobs", headers={"Authorization": f"Bearer {stale}"})
        assert refused.status_code == 401
        assert (data_dir / "api_key").read_text().strip() == stale  # left alone

        # A client that falls back on the stale saved key is told why it is refused.
        jobs = subprocess.run(
            [sys.executable, "-m", "layerfuse.cli", "jobs", "--url", url],
            cwd=REPO,
            env={**env, "LAYERFUSE_DATA_DIR": str(data_dir)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert jobs.returncode == 2 and "invalid_api_key" in jobs.stderr
        assert str(data_dir / "api_key") in jobs.stderr and "LAYERFUSE_API_KEYS" in jobs.stderr
    finally:
        up.stop()


def test_broker_down_at_creation_answers_503_and_no_job_exists(
    stack: Stack, uploads: dict[str, str]
) -> None:
    """An API whose Redis is gone (same store and files as the stack's)."""
    port = free_port()
    env = {**stack.env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    api = Process(
        "api-no-broker",
        [sys.executable, "-m", "layerfuse.cli", "serve", "--port", str(port)],
        env,
        stack.logs,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: healthy(url), 60, "the second API")
        before = len(stack.acme.get("/v1/jobs", params={"limit": 100}).json()["data"])
        client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ACME}"}, timeout=60)
        started = time.monotonic()
        response = client.post("/v1/jobs", json=small_job(uploads))
        assert time.monotonic() - started < 15
        assert (response.status_code, response.json()["code"]) == (503, "broker_unavailable")
        assert response.headers["Retry-After"]
        assert len(stack.acme.get("/v1/jobs", params={"limit": 100}).json()["data"]) == before
        ready = httpx.get(f"{url}/readyz", timeout=30)
        assert (ready.status_code, ready.json()["checks"]["broker"]) == (503, "unreachable")
    finally:
        api.stop()
