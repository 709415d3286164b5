"""Jobs through the API (SQLite and PostgreSQL), with a recording queue instead of a broker.

The worker's side is played by the store functions it uses, so these tests need no Celery.
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from layerfuse.service.artifacts import describe_outputs
from layerfuse.service.settings import Settings
from layerfuse.service.storage import Storage
from layerfuse.service.store import SUCCEEDED, Database, now
from layerfuse.service.store import jobs as job_store
from tests.factories import write_jsonl

from .helpers import (
    a_worker,
    assert_problem,
    job_body,
    parse_sse,
    upload_dataset,
    upload_model,
)


@pytest.fixture
def uploaded(client: TestClient, tiny_classifier: Path, synthetic_data) -> dict[str, str]:
    model = upload_model(client, tiny_classifier).json()
    train = upload_dataset(client, synthetic_data["train"]).json()
    validation = upload_dataset(client, synthetic_data["validation"]).json()
    return {"model": model["id"], "train": train["id"], "validation": validation["id"]}


def create(client: TestClient, uploaded: dict[str, str], **overrides: Any) -> Any:
    return client.post("/v1/jobs", json=job_body(uploaded["model"], uploaded["train"], **overrides))


def play_worker(db: Database, job_id: str, *, succeed_with: Path | None = None) -> None:
    """Claim the job, report a stage and a metric, and finish it as the worker would."""
    with db.session() as session:
        claim = job_store.claim_job(
            session, job_id, worker="test", stale_before=now() - 60, max_attempts=3
        )
        assert claim is not None
        job_store.set_stage(session, claim, "sweeping")
        job_store.add_event(
            session,
            job_id,
            type="metrics",
            stage="sweeping",
            message="drop-top removed layer 3",
            data={"strategy": "drop-top", "layer": 3},
        )
        if succeed_with is None:
            job_store.finish_job(
                session,
                claim,
                "failed",
                error={"code": "dataset_too_few_classes", "message": "m", "stage": "preparing"},
            )
        else:
            job_store.finish_job(
                session,
                claim,
                SUCCEEDED,
                result={"strategy": "drop-top"},
                artifacts=describe_outputs(succeed_with),
            )


def fake_output(settings: Settings, tiny_classifier: Path, job_id: str) -> Path:
    output = Storage(settings).output_dir("acme", job_id)
    (output / "model").mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        shutil.copy(tiny_classifier / name, output / "model" / name)
    (output / "report.json").write_text(json.dumps({"final": {"validation": {"accuracy": 0.9}}}))
    (output / "model_card.md").write_text("# card\n")
    return output


def test_create_validates_stores_then_enqueues(client: TestClient, uploaded, queue) -> None:
    response = create(client, uploaded)
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["id"].startswith("job_")
    assert (job["object"], job["status"], job["error"], job["result"]) == (
        "compression.job",
        "queued",
        None,
        None,
    )
    assert job["metadata"] == {"team": "search"}
    assert job["spec"]["strategy"] == "drop-top"
    assert job["spec"]["options"]["n_calib"] == 32
    assert job["spec"]["distillation"]["temperature"] == 2.0  # defaults filled in
    assert job["urls"]["stream"] == f"/v1/jobs/{job['id']}/events/stream"
    assert queue.enqueued == [job["id"]]
    assert client.get(f"/v1/jobs/{job['id']}").json() == job


@pytest.mark.parametrize(
    ("overrides", "status", "code", "param"),
    [
        ({"options": {"max_length": 513}}, 422, "invalid_request", "options.max_length"),
        ({"distillation": {"epochs": 21}}, 422, "invalid_request", "distillation.epochs"),
        (
            {"distillation": {"hidden_weight": -1}},
            422,
            "invalid_request",
            "distillation.hidden_weight",
        ),
        (
            {"distillation": {"hidden_distance": "l1"}},
            422,
            "invalid_request",
            "distillation.hidden_distance",
        ),
        ({"distillation": {"compare": ["nope"]}}, 422, "invalid_request", "distillation.compare"),
        ({"options": {"n_calib": 5000}}, 422, "invalid_request", "options.n_calib"),
        ({"strategy": "magic"}, 422, "invalid_request", "strategy"),
        ({"strategies": ["drop-top", "nope"]}, 422, "invalid_request", "strategies"),
        (
            {"strategy": "fusion-random-forest", "strategies": ["drop-top"]},
            422,
            "invalid_request",
            "strategies",
        ),
        ({"target": {"layers_to_remove": 1, "keep_layers": 2}}, 422, "invalid_request", "target"),
        (
            {"target": {"layers_to_remove": 4}},
            422,
            "target_out_of_range",
            "target.layers_to_remove",
        ),
        ({"target": {"keep_layers": 4}}, 422, "target_out_of_range", "target.keep_layers"),
        # Checked at creation as the worker would (they failed the job in preparing).
        (
            {"options": {"max_layers_removed": 256}},
            422,
            "options_out_of_range",
            "options.max_layers_removed",
        ),
        (
            {"target": {"layers_to_remove": 3}, "options": {"max_layers_removed": 2}},
            422,
            "target_out_of_range",
            "target.layers_to_remove",
        ),
        ({"colour": "red"}, 422, "invalid_request", "colour"),
        ({"export": {"vocabulary": "half"}}, 422, "invalid_request", "export.vocabulary"),
        ({"export": {"int8_tolerance": 1.5}}, 422, "invalid_request", "export.int8_tolerance"),
        ({"export": {"formats": ["hf", "onnx-int8"]}}, 422, "invalid_request", "export.formats"),
        (
            {"model": {"source": "upload", "id": "mdl_000000000000000000000000"}},
            422,
            "model_not_found",
            "model.id",
        ),
        (
            {"model": {"source": "hub", "id": "bert-base-uncased"}},
            422,
            "model_source_disabled",
            "model.source",
        ),
        (
            {"model": {"source": "path", "path": "../etc"}},
            422,
            "model_source_disabled",
            "model.source",
        ),
        (
            {"dataset": {"train": "ds_000000000000000000000000"}},
            422,
            "dataset_not_found",
            "dataset.train",
        ),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, 422, "invalid_request", "metadata"),
    ],
)
def test_create_refuses_invalid_specs_naming_the_field(
    client: TestClient, uploaded, queue, overrides, status, code, param
) -> None:
    body = assert_problem(create(client, uploaded, **overrides), status, code, param)
    assert "Traceback" not in body["detail"]
    assert queue.enqueued == []
    assert client.get("/v1/jobs").json()["data"] == []


def test_fusion_without_sources_names_the_missing_strategies(client: TestClient, uploaded) -> None:
    response = create(client, uploaded, strategy="fusion-linear-regression", strategies=["random"])
    body = assert_problem(response, 422, "invalid_request", "strategies")
    assert "weight-magnitude" in body["detail"]


def test_dataset_without_the_label_column_is_refused_at_creation(
    client: TestClient, uploaded, tmp_path: Path, queue
) -> None:
    rows = [{"text": f"row {i} good", "sentiment": "pos" if i % 2 else "neg"} for i in range(20)]
    other = upload_dataset(client, write_jsonl(tmp_path / "sentiment.jsonl", rows)).json()
    response = create(client, uploaded, dataset={"train": other["id"]})
    body = assert_problem(response, 422, "dataset_label_column_missing", "dataset.label_column")
    assert "label" in body["detail"] and "sentiment" in body["detail"]
    assert "/" not in body["detail"]  # no server path
    # The same file with the right column name is accepted.
    response = create(client, uploaded, dataset={"train": other["id"], "label_column": "sentiment"})
    assert response.status_code == 201, response.text
    # A validation split is checked too.
    response = create(
        client, uploaded, dataset={"train": uploaded["train"], "validation": other["id"]}
    )
    assert_problem(response, 422, "dataset_label_column_missing", "dataset.label_column")
    assert len(queue.enqueued) == 1


def test_path_models_stay_inside_the_models_root(
    tmp_path: Path, database_url: str, db, queue, uploaded, client, tiny_classifier
) -> None:
    from layerfuse.service.app import create_app

    from .conftest import ACME_KEY, make_settings

    root = tmp_path / "models-root"
    shutil.copytree(tiny_classifier, root / "tiny")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "config.json").write_text("{}")
    settings = make_settings(tmp_path, database_url, models_root=root)
    app = create_app(settings, db=db, queue=queue)
    with TestClient(app, headers={"Authorization": f"Bearer {ACME_KEY}"}) as rooted:
        for path in ("../outside", "/etc", "tiny/../../outside", "missing"):
            response = create(rooted, uploaded, model={"source": "path", "path": path})
            assert_problem(response, 422, "model_path_invalid", "model.path")
        response = create(rooted, uploaded, model={"source": "path", "path": "tiny"})
        assert response.status_code == 201, response.text


def test_idempotency_key_replays_or_conflicts(client: TestClient, uploaded, queue) -> None:
    headers = {"Idempotency-Key": "create-1"}
    body = job_body(uploaded["model"], uploaded["train"])
    first = client.post("/v1/jobs", json=body, headers=headers)
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    again = client.post("/v1/jobs", json=body, headers=headers)
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert len(queue.enqueued) == 1
    changed = dict(body, metadata={"team": "ads"})
    assert_problem(
        client.post("/v1/jobs", json=changed, headers=headers),
        409,
        "idempotency_key_reused",
        "Idempotency-Key",
    )
    # A new key is a new job.
    assert (
        client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "create-2"}).status_code
        == 201
    )


def test_broker_down_answers_503_and_creates_nothing(client: TestClient, uploaded, queue) -> None:
    queue.down = True
    response = create(client, uploaded)
    body = assert_problem(response, 503, "broker_unavailable")
    assert response.headers["Retry-After"]
    assert "connection refused" not in body["detail"]
    assert client.get("/v1/jobs").json()["data"] == []
    queue.down = False
    assert create(client, uploaded).status_code == 201


def test_list_is_newest_first_with_cursor_pages_and_status_filter(
    client: TestClient, uploaded, db: Database
) -> None:
    ids = [create(client, uploaded).json()["id"] for _ in range(5)]
    first = client.get("/v1/jobs", params={"limit": 2}).json()
    assert first["object"] == "list"
    assert [j["id"] for j in first["data"]] == ids[::-1][:2]
    assert (first["first_id"], first["last_id"], first["has_more"]) == (ids[4], ids[3], True)
    second = client.get("/v1/jobs", params={"limit": 2, "after": first["last_id"]}).json()
    assert [j["id"] for j in second["data"]] == [ids[2], ids[1]]
    third = client.get("/v1/jobs", params={"limit": 2, "after": second["last_id"]}).json()
    assert ([j["id"] for j in third["data"]], third["has_more"]) == ([ids[0]], False)

    client.post(f"/v1/jobs/{ids[1]}/cancel")
    cancelled = client.get("/v1/jobs", params={"status": "cancelled"}).json()["data"]
    assert [j["id"] for j in cancelled] == [ids[1]]
    assert_problem(
        client.get("/v1/jobs", params={"status": "done"}), 422, "invalid_request", "status"
    )
    assert_problem(client.get("/v1/jobs", params={"limit": 0}), 422, "invalid_request", "limit")


def test_cancel_queued_at_once_running_via_cancelling(
    client: TestClient, uploaded, db: Database
) -> None:
    queued = create(client, uploaded).json()
    response = client.post(f"/v1/jobs/{queued['id']}/cancel")
    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"
    assert response.json()["finished_at"] is not None

    running = create(client, uploaded).json()
    with db.session() as session:
        claim = job_store.claim_job(
            session, running["id"], worker="t", stale_before=now() - 60, max_attempts=3
        )
    assert claim is not None
    assert client.post(f"/v1/jobs/{running['id']}/cancel").json()["status"] == "cancelling"
    with db.session() as session:
        assert job_store.claim_state(session, claim) == "cancelling"
        assert job_store.finish_job(session, claim, "cancelled")
    job = client.get(f"/v1/jobs/{running['id']}").json()
    assert job["status"] == "cancelled"
    # Terminal states never change.
    assert client.post(f"/v1/jobs/{running['id']}/cancel").json()["status"] == "cancelled"


def test_another_tenants_jobs_answer_404(client: TestClient, globex: TestClient, uploaded) -> None:
    job = create(client, uploaded).json()
    for method, path in [
        ("get", f"/v1/jobs/{job['id']}"),
        ("post", f"/v1/jobs/{job['id']}/cancel"),
        ("get", f"/v1/jobs/{job['id']}/events"),
        ("get", f"/v1/jobs/{job['id']}/events/stream"),
        ("get", f"/v1/jobs/{job['id']}/report"),
        ("get", f"/v1/jobs/{job['id']}/artifacts"),
        ("get", f"/v1/jobs/{job['id']}/artifacts/model.zip"),
    ]:
        assert_problem(getattr(globex, method)(path), 404, "not_found")
    assert globex.get("/v1/jobs").json()["data"] == []
    # Nor can globex use acme's uploads in a job.
    response = globex.post("/v1/jobs", json=job_body(uploaded["model"], uploaded["train"]))
    assert_problem(response, 422, "model_not_found", "model.id")
    assert client.get(f"/v1/jobs/{job['id']}").json()["status"] == "queued"


def test_events_page_and_stream_end_after_the_terminal_event(
    client: TestClient, uploaded, db: Database
) -> None:
    from layerfuse.service.store import workers as worker_store

    with db.session() as session:  # a CPU worker online: no "nobody will run it" warning
        worker_store.touch(session, "w1", a_worker())
    job = create(client, uploaded).json()
    play_worker(db, job["id"])
    page = client.get(f"/v1/jobs/{job['id']}/events").json()
    types = [(e["type"], (e["data"] or {}).get("status")) for e in page["data"]]
    assert types == [
        ("status", "queued"),
        ("status", "running"),
        ("metrics", None),
        ("status", "failed"),
    ]
    assert page["data"][2]["object"] == "compression.job.event"
    assert page["data"][2]["stage"] == "sweeping"
    assert page["data"][3]["level"] == "error"

    second = client.get(
        f"/v1/jobs/{job['id']}/events", params={"after": page["data"][1]["id"], "limit": 1}
    ).json()
    assert [e["id"] for e in second["data"]] == [page["data"][2]["id"]]
    assert second["has_more"] is True

    with client.stream("GET", f"/v1/jobs/{job['id']}/events/stream") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        streamed = parse_sse(response.read().decode())
    assert streamed == page["data"]

    resume = {"Last-Event-ID": page["data"][1]["id"]}
    with client.stream("GET", f"/v1/jobs/{job['id']}/events/stream", headers=resume) as response:
        assert parse_sse(response.read().decode()) == page["data"][2:]

    failed = client.get(f"/v1/jobs/{job['id']}").json()
    assert failed["status"] == "failed"
    assert failed["error"] == {
        "code": "dataset_too_few_classes",
        "message": "m",
        "stage": "preparing",
    }


def test_artifacts_list_download_by_name_and_model_zip(
    client: TestClient, uploaded, db: Database, settings: Settings, tiny_classifier: Path
) -> None:
    job = create(client, uploaded).json()
    assert_problem(client.get(f"/v1/jobs/{job['id']}/artifacts"), 409, "job_not_succeeded")
    assert_problem(client.get(f"/v1/jobs/{job['id']}/report"), 409, "job_not_succeeded")
    output = fake_output(settings, tiny_classifier, job["id"])
    play_worker(db, job["id"], succeed_with=output)

    listed = client.get(f"/v1/jobs/{job['id']}/artifacts").json()["data"]
    names = [a["name"] for a in listed]
    assert names == [
        "model.zip",
        "model_card.md",
        "report.json",
        "model/config.json",
        "model/model.safetensors",
        "model/tokenizer.json",
    ]
    assert client.get(f"/v1/jobs/{job['id']}/artifacts").json()["data"] == listed  # cached

    response = client.get(f"/v1/jobs/{job['id']}/artifacts/model.zip")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    import hashlib

    assert hashlib.sha256(response.content).hexdigest() == listed[0]["sha256"]
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        assert sorted(zf.namelist()) == [
            "model/config.json",
            "model/model.safetensors",
            "model/tokenizer.json",
        ]
        assert (
            zf.read("model/model.safetensors")
            == (tiny_classifier / "model.safetensors").read_bytes()
        )

    config = client.get(f"/v1/jobs/{job['id']}/artifacts/model/config.json")
    assert config.json() == json.loads((tiny_classifier / "config.json").read_text())
    report = client.get(f"/v1/jobs/{job['id']}/report")
    assert report.json()["final"]["validation"]["accuracy"] == 0.9

    (output / "secret.txt").write_text("not listed")
    # Percent-encoded so the client does not normalise the dots away before they reach the server.
    for name in ("secret.txt", "..%2F..%2F..%2F..%2Flayerfuse.db", "model%2F..%2Fsecret.txt"):
        response = client.get(f"/v1/jobs/{job['id']}/artifacts/{name}")
        assert_problem(response, 404, "artifact_not_found")

    # Outputs removed from the data directory behind the service's back: 404s, never a 500.
    (output / "report.json").unlink()
    (output / "model" / "config.json").unlink()
    assert_problem(client.get(f"/v1/jobs/{job['id']}/report"), 404, "artifact_not_found")
    response = client.get(f"/v1/jobs/{job['id']}/artifacts/model/config.json")
    assert_problem(response, 404, "artifact_not_found")


def test_artifact_downloads_resume_ignore_unreadable_ranges_and_answer_head(
    client: TestClient, uploaded, db: Database, settings: Settings, tiny_classifier: Path
) -> None:
    job = create(client, uploaded).json()
    output = fake_output(settings, tiny_classifier, job["id"])
    play_worker(db, job["id"], succeed_with=output)
    url = f"/v1/jobs/{job['id']}/artifacts/model/model.safetensors"
    whole = (tiny_classifier / "model.safetensors").read_bytes()

    head = client.head(url)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(whole)
    assert head.headers["accept-ranges"] == "bytes"

    resumed = client.get(url, headers={"Range": "bytes=100-"})
    assert resumed.status_code == 206 and resumed.content == whole[100:]
    # A Range the server cannot read is ignored (RFC 9110): the whole file, not a text/plain 400.
    for unreadable in ("bytes=5-2", "bytes=abc", "lines=1-2"):
        response = client.get(url, headers={"Range": unreadable})
        assert response.status_code == 200 and response.content == whole, unreadable
    past = client.get(url, headers={"Range": f"bytes={len(whole) + 10}-"})
    body = assert_problem(past, 416, "range_not_satisfiable", "Range")
    assert past.headers["content-range"] == f"bytes */{len(whole)}"
    assert str(len(whole)) in body["detail"]


def test_errors_are_problem_json_without_internals(client: TestClient) -> None:
    assert_problem(client.get("/v1/nothing-here"), 404, "not_found")
    assert_problem(client.get("/v1/jobs/job_x"), 404, "not_found")
    response = client.post(
        "/v1/jobs", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    # Unreadable as a whole, not a field's fault: 400 (docs/service.md's error table).
    body = assert_problem(response, 400, "bad_request")
    assert body["param"] is None

    @client.app.get("/boom")  # type: ignore[attr-defined]
    def boom() -> None:
        raise RuntimeError("/srv/secret/path failed with key acme-kkkk")

    quiet = TestClient(client.app, raise_server_exceptions=False)
    response = quiet.get("/boom")
    body = assert_problem(response, 500, "internal_error")
    assert "secret" not in response.text and "Traceback" not in response.text


def test_auth_is_required_and_keys_are_checked(client: TestClient) -> None:
    anonymous = TestClient(client.app)
    response = anonymous.get("/v1/jobs")
    assert_problem(response, 401, "missing_api_key")
    assert response.headers["WWW-Authenticate"] == "Bearer"
    wrong = anonymous.get("/v1/jobs", headers={"Authorization": "Bearer acme-wrong-key-0000000000"})
    assert_problem(wrong, 401, "invalid_api_key")
    basic = anonymous.get("/v1/jobs", headers={"Authorization": "Basic YWNtZTprZXk="})
    assert_problem(basic, 401, "missing_api_key")
    assert anonymous.get("/healthz").json() == {"status": "ok"}


def test_readyz_and_metrics(client: TestClient, uploaded, db: Database, queue) -> None:
    from layerfuse.service.store import workers as worker_store

    anonymous = TestClient(client.app)
    not_ready = anonymous.get("/readyz")
    assert not_ready.status_code == 503
    assert not_ready.json()["checks"] == {"database": "ok", "broker": "ok", "worker": "none seen"}
    with db.session() as session:
        worker_store.touch(session, "w1", a_worker())
    ready = anonymous.get("/readyz").json()
    assert ready["status"] == "ready"
    assert ready["checks"] == {"database": "ok", "broker": "ok", "worker": "ok"}
    assert [w["device_class"] for w in ready["workers"]] == ["cpu"]
    assert "w1" not in anonymous.get("/readyz").text  # no host or process names unauthenticated
    queue.down = True
    assert anonymous.get("/readyz").json()["checks"]["broker"] == "unreachable"
    queue.down = False

    create(client, uploaded)
    metrics = anonymous.get("/metrics")
    assert metrics.status_code == 200
    text = metrics.text
    assert 'layerfuse_jobs{status="queued"} 1.0' in text
    assert "layerfuse_queue_depth 1.0" in text
    assert 'layerfuse_http_requests_total{method="POST",route="/v1/jobs",status="201"} 1.0' in text
    assert "x-request-id" in {k.lower() for k in metrics.headers}


def test_metrics_label_requests_by_route_template_never_by_id(
    client: TestClient, uploaded: dict[str, str]
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    job_id = create(client, uploaded).json()["id"]
    missing = "job_" + "0" * 24
    assert client.get(f"/v1/jobs/{job_id}").status_code == 200
    assert client.get(f"/v1/jobs/{job_id}/events").status_code == 200
    assert client.get(f"/v1/models/{uploaded['model']}").status_code == 200
    assert client.get(f"/v1/jobs/{missing}").status_code == 404
    assert client.get(f"/v1/no-such-route/{job_id}").status_code == 404
    anonymous = TestClient(client.app)
    templates = {*anonymous.get("/openapi.json").json()["paths"], "/openapi.json", "unmatched"}
    text = anonymous.get("/metrics").text

    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    routed = [s for s in samples if "route" in s.labels]
    assert routed, "no request metrics at all"
    assert {s.labels["route"] for s in routed} <= templates
    ids = {job_id, missing, *uploaded.values()}
    leaked = {v for s in samples for v in s.labels.values() if any(i in v for i in ids)}
    assert not leaked, f"raw ids in metric labels: {leaked}"

    def requests(route: str, status: str) -> float:
        return sum(
            s.value
            for s in routed
            if s.name == "layerfuse_http_requests_total"
            and (s.labels["method"], s.labels["route"], s.labels["status"])
            == ("GET", route, status)
        )

    assert requests("/v1/jobs/{job_id}", "200") == 1
    assert requests("/v1/jobs/{job_id}", "404") == 1
    assert requests("/v1/jobs/{job_id}/events", "200") == 1
    assert requests("/v1/models/{model_id}", "200") == 1
    assert requests("unmatched", "404") == 1


def test_the_openapi_document_describes_every_route(client: TestClient) -> None:
    document = TestClient(client.app).get("/openapi.json").json()
    assert {
        "/v1/models",
        "/v1/datasets",
        "/v1/jobs",
        "/v1/jobs/{job_id}/events/stream",
        "/v1/jobs/{job_id}/artifacts/{name}",
        "/v1/jobs/{job_id}/webhook_deliveries",
        "/healthz",
        "/readyz",
        "/metrics",
    } <= set(document["paths"])
    upload = document["paths"]["/v1/models"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in upload
    assert "HTTPBearer" in document["components"]["securitySchemes"]
    # The report's schema is the library's definition of report.json, hyphenated keys included.
    ok = document["paths"]["/v1/jobs/{job_id}/report"]["get"]["responses"]["200"]
    ref = ok["content"]["application/json"]["schema"]["$ref"]
    schemas = document["components"]["schemas"]
    report = schemas[ref.rsplit("/", 1)[-1]]
    assert list(report["properties"]) == [
        "model", "dataset", "options", "teacher", "baseline", "fusion", "strategies", "probe",
        "signals", "selection", "distillation", "recovery", "final", "export", "formats",
        "timings", "sweep",
    ]  # fmt: skip
    fusion = schemas[report["properties"]["fusion"]["$ref"].rsplit("/", 1)[-1]]
    assert {"linear-regression", "random-forest"} <= set(fusion["properties"])
