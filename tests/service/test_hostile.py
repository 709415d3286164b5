"""Hostile input: configs that lie about the weights, malformed ids and cursors, NUL bytes, deep
JSON, huge or slow bodies, coerced types, labels unseen in train, and 405 without ``Allow``.

Each case was a 201 that should not have been, a 500, or a hang; every one must be a clear 4xx
problem that names the field, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories import synthetic_rows, write_jsonl

from .helpers import assert_problem, job_body, model_files, upload_dataset, upload_model

ZERO_ID = "0" * 24


def _model_copy(source: Path, target: Path, **config_changes: Any) -> Path:
    folder = shutil.copytree(source, target)
    config = json.loads((folder / "config.json").read_text())
    config.update(config_changes)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


# --- Model uploads: the config must agree with the weights -----------------------------------


@pytest.mark.parametrize(
    ("changes", "code", "needle"),
    [
        ({"num_hidden_layers": 1_000_000}, "model_config_invalid", "num_hidden_layers"),
        ({"num_hidden_layers": 200}, "model_weights_mismatch", "num_hidden_layers=200"),
        ({"num_hidden_layers": True}, "model_config_invalid", "num_hidden_layers"),
        ({"num_hidden_layers": 1}, "model_too_shallow", "at least 2"),
        ({"hidden_size": 64}, "model_weights_mismatch", "hidden_size=64"),
        ({"vocab_size": 10**6}, "model_weights_mismatch", "vocab_size=1000000"),
        ({"intermediate_size": 10**6}, "model_weights_mismatch", "intermediate_size"),
        ({"layer_norm_eps": 1e300}, "model_config_invalid", "1e+300"),
        ({"id2label": {"zero": "a"}}, "model_config_invalid", "id2label"),
    ],
)
def test_a_config_that_disagrees_with_its_weights_is_refused(
    client: TestClient, tiny_classifier: Path, tmp_path: Path, changes, code, needle
) -> None:
    folder = _model_copy(tiny_classifier, tmp_path / "m", **changes)
    body = assert_problem(upload_model(client, folder), 422, code, "files")
    assert needle in body["detail"]
    assert client.get("/v1/models").json()["data"] == []


def _safetensors(header: dict[str, Any], data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


@pytest.mark.parametrize(
    "header",
    [
        {"w": {"dtype": "F32", "shape": [-1, -4], "data_offsets": [0, 16]}},
        {"w": {"dtype": "F32", "shape": [True, 4], "data_offsets": [0, 16]}},
        {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [16, 0]}},
        {"w": {"dtype": "F99", "shape": [2, 2], "data_offsets": [0, 16]}},
        {"__metadata__": {"a": {"b": "c"}}},
    ],
)
def test_malformed_safetensors_headers_are_refused_at_upload(
    client: TestClient, tiny_classifier: Path, tmp_path: Path, header
) -> None:
    folder = shutil.copytree(tiny_classifier, tmp_path / "m")
    (folder / "model.safetensors").write_bytes(_safetensors(header, bytes(16)))
    body = assert_problem(upload_model(client, folder), 422, "model_weights_invalid", "files")
    assert "model.safetensors" in body["detail"]


def test_a_shard_index_that_does_not_map_names_to_files_is_refused(
    client: TestClient, tiny_classifier: Path, tmp_path: Path
) -> None:
    folder = shutil.copytree(tiny_classifier, tmp_path / "m")
    (folder / "model.safetensors").rename(folder / "model-00001-of-00001.safetensors")
    (folder / "model.safetensors.index.json").write_text('{"weight_map": {"a": ["x"]}}')
    body = assert_problem(upload_model(client, folder), 422, "model_config_invalid", "files")
    assert "weight_map" in body["detail"]
    assert client.get("/v1/models").json()["data"] == []


def test_deeply_nested_json_in_a_model_is_refused(
    client: TestClient, tiny_classifier: Path, tmp_path: Path
) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    folder = shutil.copytree(tiny_classifier, tmp_path / "config")
    (folder / "config.json").write_text('{"model_type": "bert", "x": ' + deep + "}")
    body = assert_problem(upload_model(client, folder), 422, "model_config_invalid", "files")
    assert "nested" in body["detail"]
    folder = shutil.copytree(tiny_classifier, tmp_path / "header")
    raw = deep.encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw)
    assert_problem(upload_model(client, folder), 422, "model_weights_invalid", "files")


def test_a_deeply_nested_jsonl_line_is_a_parse_error(client: TestClient, tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    deep = "[" * 100_000 + "]" * 100_000
    path.write_text('{"text": "a", "label": "x"}\n{"text": ' + deep + "}\n")
    body = assert_problem(upload_dataset(client, path), 422, "dataset_parse_error", None)
    assert "line 2" in body["detail"]


@pytest.mark.parametrize(
    "line",
    [
        r'{"text": "he\ud800llo", "label": "a"}',
        r'{"text": "hello", "label": "\udc00"}',
        r'{"text": "hello", "label": "a", "\ud800": 1}',
    ],
)
def test_a_lone_surrogate_in_a_jsonl_line_is_a_parse_error(
    client: TestClient, tmp_path: Path, line: str
) -> None:
    """Once stored, it failed the job at tokenizing or at writing the model card, or (in a column
    name) answered every list of datasets with a 500."""
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "fine \\ud83d\\ude00", "label": "b"}\n' + line + "\n")
    body = assert_problem(upload_dataset(client, path), 422, "dataset_parse_error", None)
    assert "line 2" in body["detail"]
    assert client.get("/v1/datasets").json()["data"] == []


# --- Ids and cursors are checked before the store --------------------------------------------

NUL_PATHS = [
    "/v1/jobs/job_%00",
    "/v1/jobs/job_%00/events",
    "/v1/jobs/job_%00/events/stream",
    "/v1/jobs/job_%00/report",
    "/v1/jobs/job_%00/artifacts",
    "/v1/jobs/job_%00/artifacts/model.zip",
    "/v1/jobs/job_%00/webhook_deliveries",
    "/v1/models/mdl_%00",
    "/v1/datasets/ds_%00",
    f"/v1/jobs/job_{'9' * 30}",
]


@pytest.mark.parametrize("path", NUL_PATHS)
def test_malformed_ids_in_paths_are_404(client: TestClient, path: str) -> None:
    assert_problem(client.get(path), 404, "not_found")


def test_malformed_ids_in_deletes_and_cancels_are_404(client: TestClient) -> None:
    assert_problem(client.post("/v1/jobs/job_%00/cancel"), 404, "not_found")
    assert_problem(client.delete("/v1/models/mdl_%00"), 404, "not_found")
    assert_problem(client.delete("/v1/datasets/x%00y"), 404, "not_found")


@pytest.mark.parametrize(
    "path",
    ["/v1/jobs", "/v1/models", "/v1/datasets"],
)
@pytest.mark.parametrize("after", ["job_%00", "%00", "x" * 30])
def test_malformed_list_cursors_are_422(client: TestClient, path: str, after: str) -> None:
    assert_problem(client.get(f"{path}?after={after}"), 422, "invalid_request", "after")


def _queued_job(client: TestClient, tiny_classifier: Path, synthetic_data) -> str:
    model = upload_model(client, tiny_classifier).json()["id"]
    train = upload_dataset(client, synthetic_data["train"]).json()["id"]
    response = client.post("/v1/jobs", json=job_body(model, train))
    assert response.status_code == 201, response.text
    job_id: str = response.json()["id"]
    return job_id


def test_event_cursors_are_checked_before_the_store(
    client: TestClient, tiny_classifier: Path, synthetic_data
) -> None:
    job = _queued_job(client, tiny_classifier, synthetic_data)
    overflow = "evt_" + "9" * 30
    for after in (overflow, "evt_%00", "evt_²"):
        assert_problem(
            client.get(f"/v1/jobs/{job}/events?after={after}"), 422, "invalid_request", "after"
        )
        assert_problem(
            client.get(f"/v1/jobs/{job}/events/stream?after={after}"), 422, "invalid_request"
        )
    stream = client.get(f"/v1/jobs/{job}/events/stream", headers={"Last-Event-ID": overflow})
    assert_problem(stream, 422, "invalid_request", "Last-Event-ID")
    deliveries = client.get(f"/v1/jobs/{job}/webhook_deliveries?after=msg_%00")
    assert_problem(deliveries, 422, "invalid_request", "after")
    # The largest valid cursor is fine: an empty page.
    page = client.get(f"/v1/jobs/{job}/events?after=evt_{'9' * 18}")
    assert page.status_code == 200 and page.json()["data"] == []


# --- Job bodies: strict, NUL-free, bounded ----------------------------------------------------


@pytest.fixture
def ids(client: TestClient, tiny_classifier: Path, synthetic_data) -> tuple[str, str]:
    model = upload_model(client, tiny_classifier).json()["id"]
    train = upload_dataset(client, synthetic_data["train"]).json()["id"]
    return model, train


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"target": {"layers_to_remove": "1"}}, "target.layers_to_remove"),
        ({"options": {"seed": 1.0}}, "options.seed"),
        ({"distillation": {"enabled": 1}}, "distillation.enabled"),
        ({"metadata": {"team": "a\x00b"}}, "metadata.team"),
        ({"dataset": {"train": "ds_\x00"}}, "dataset.train"),
    ],
)
def test_job_bodies_are_strict_and_free_of_nul(
    client: TestClient, ids: tuple[str, str], change: dict[str, Any], param: str
) -> None:
    body = job_body(*ids)
    for key, value in change.items():
        body[key] = {**body[key], **value} if isinstance(body.get(key), dict) else value
    assert_problem(client.post("/v1/jobs", json=body), 422, "invalid_request", param)
    assert client.get("/v1/jobs").json()["data"] == []


@pytest.mark.parametrize(
    ("metadata", "param"),
    [(r'{"team": "a\ud800"}', "metadata.team"), (r'{"\udfff": "v"}', "metadata")],
)
def test_a_lone_surrogate_in_a_job_body_is_422_and_stores_nothing(
    client: TestClient, ids: tuple[str, str], metadata: str, param: str
) -> None:
    """It was stored, then every read of the job (and the job list) answered 500."""
    raw = json.dumps({**job_body(*ids), "metadata": "@"}).replace('"@"', metadata)
    response = client.post("/v1/jobs", content=raw, headers={"Content-Type": "application/json"})
    body = assert_problem(response, 422, "invalid_request", param)
    assert "ud800" in body["detail"]
    assert client.get("/v1/jobs").json()["data"] == []
    # A valid pair (an emoji) is text, and comes back as it went in.
    raw = json.dumps({**job_body(*ids), "metadata": "@"}).replace('"@"', r'{"t": "\ud83d\ude00"}')
    created = client.post("/v1/jobs", content=raw, headers={"Content-Type": "application/json"})
    assert created.status_code == 201, created.text
    assert client.get(f"/v1/jobs/{created.json()['id']}").json()["metadata"] == {"t": "\U0001f600"}


@pytest.mark.parametrize(
    ("columns", "param"),
    [
        ({"text_column": "label"}, "dataset.label_column"),
        ({"text_pair_column": "label"}, "dataset.label_column"),
        ({"text_pair_column": "text"}, "dataset.text_pair_column"),
    ],
)
def test_one_column_in_two_roles_is_refused(
    client: TestClient, ids: tuple[str, str], columns: dict[str, str], param: str
) -> None:
    """With the label as the input the job succeeded at 100% accuracy: it read the answer."""
    model, train = ids
    body = job_body(model, train, dataset={"train": train, **columns})
    assert_problem(client.post("/v1/jobs", json=body), 422, "invalid_request", param)
    assert client.get("/v1/jobs").json()["data"] == []


def test_ids_inside_a_job_body_are_checked(client: TestClient, ids: tuple[str, str]) -> None:
    model, train = ids
    body = job_body("mdl_" + ZERO_ID, train)
    assert_problem(client.post("/v1/jobs", json=body), 422, "model_not_found", "model.id")
    body = job_body(model, train, dataset={"train": train, "test": "ds_x" * 10})
    assert_problem(client.post("/v1/jobs", json=body), 422, "dataset_not_found", "dataset.test")
    key = {"Idempotency-Key": "a\tb"}
    response = client.post("/v1/jobs", json=job_body(model, train), headers=key)
    assert_problem(response, 422, "invalid_request", "Idempotency-Key")


def test_deeply_nested_job_bodies_are_422(client: TestClient) -> None:
    response = client.post(
        "/v1/jobs",
        content=b'{"metadata": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        headers={"Content-Type": "application/json"},
    )
    body = assert_problem(response, 422, "invalid_request")
    assert "nested" in body["detail"]


def test_job_bodies_past_the_limit_are_413_before_parsing(client: TestClient) -> None:
    big = json.dumps({"metadata": {"x": "y" * (2 << 20)}})
    body = assert_problem(
        client.post("/v1/jobs", content=big, headers={"Content-Type": "application/json"}),
        413,
        "request_too_large",
    )
    assert str(1 << 20) in body["detail"]


def test_unseen_test_labels_are_refused_at_creation(
    client: TestClient, ids: tuple[str, str], tmp_path: Path
) -> None:
    model, train = ids
    rows = [*synthetic_rows(30, seed=3), {"text": "a new kind of text", "label": "surprised"}]
    test = upload_dataset(client, write_jsonl(tmp_path / "test.jsonl", rows)).json()["id"]
    body = job_body(model, train, dataset={"train": train, "test": test})
    problem = assert_problem(
        client.post("/v1/jobs", json=body), 422, "dataset_unseen_labels", "dataset.test"
    )
    assert "surprised" in problem["detail"]
    assert client.get("/v1/jobs").json()["data"] == []


@pytest.mark.parametrize(
    ("labels", "param"),
    [(["a", "b", "c"], "dataset.validation"), (["a", "a", "b", "c"], "dataset.train")],
)
def test_train_too_small_for_the_run_is_refused_at_creation(
    client: TestClient, ids: tuple[str, str], tmp_path: Path, labels: list[str], param: str
) -> None:
    """No validation can be carved from one example per class, and carving one from four rows
    leaves one per class: both failed the job in preparing instead."""
    model, _ = ids
    rows = [{"text": f"text number {i}", "label": label} for i, label in enumerate(labels)]
    train = upload_dataset(client, write_jsonl(tmp_path / "train.jsonl", rows)).json()["id"]
    body = job_body(model, train)
    response = client.post("/v1/jobs", json=body)
    assert_problem(response, 422, "dataset_too_few_examples", param)
    assert client.get("/v1/jobs").json()["data"] == []


# --- Methods ---------------------------------------------------------------------------------


def test_405_names_every_allowed_method(client: TestClient) -> None:
    response = client.put("/v1/models/mdl_" + ZERO_ID)
    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["Allow"] == "DELETE, GET"
    response = client.delete("/v1/jobs")
    assert set(response.headers["Allow"].split(", ")) == {"GET", "POST"}
    # HEAD only where it is answered: listed as allowed, it must not be a 405.
    response = client.head("/v1/models/mdl_" + ZERO_ID)
    assert response.status_code == 405 and "HEAD" not in response.headers["Allow"]
    response = client.post("/v1/jobs/job_" + ZERO_ID + "/artifacts/model.zip")
    assert response.headers["Allow"] == "GET, HEAD"


def test_model_files_helper_sees_the_allowlist(tiny_classifier: Path) -> None:
    assert {p.name for p in model_files(tiny_classifier)} >= {"config.json", "model.safetensors"}
