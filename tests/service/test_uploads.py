"""Model and dataset uploads: allowlisted names, safetensors only, size limits, tenancy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from safetensors import safe_open

from layerfuse.service.app import create_app
from tests.factories import synthetic_rows, write_jsonl

from .conftest import make_settings
from .helpers import assert_problem, model_files, upload_dataset, upload_model


def _leftovers(data_dir: Path) -> list[Path]:
    """Files left under the data directory's uploads (there must be none after a refusal)."""
    return [p for p in data_dir.rglob("*") if p.is_file() and "tenants" in p.parts]


def test_model_upload_describes_the_model(client: TestClient, tiny_classifier: Path) -> None:
    response = upload_model(client, tiny_classifier)
    assert response.status_code == 201, response.text
    model = response.json()
    with safe_open(str(tiny_classifier / "model.safetensors"), "np") as f:
        expected_parameters = sum(_numel(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118
    assert model["id"].startswith("mdl_")
    assert model["object"] == "model"
    assert model["architecture"] == "BertForSequenceClassification"
    assert model["num_layers"] == 4
    assert model["num_labels"] == 3
    assert model["parameters"] == expected_parameters
    assert model["bytes"] == sum(p.stat().st_size for p in model_files(tiny_classifier))
    assert client.get(f"/v1/models/{model['id']}").json() == model
    listed = client.get("/v1/models").json()
    assert [m["id"] for m in listed["data"]] == [model["id"]]


def _numel(shape: list[int]) -> int:
    total = 1
    for dim in shape:
        total *= dim
    return total


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("pytorch_model.bin", "upload_file_not_allowed"),
        ("model.pt", "upload_file_not_allowed"),
        ("weights.pkl", "upload_file_not_allowed"),
        ("../config.json", "upload_file_not_allowed"),
        ("a/b", "upload_file_not_allowed"),
        ("..\\x", "upload_file_not_allowed"),
        ("README.md", "upload_file_not_allowed"),
        ("model.zip", "upload_file_not_allowed"),
    ],
)
def test_model_upload_refuses_names_outside_the_allowlist(
    client: TestClient, settings, tiny_classifier: Path, name: str, code: str
) -> None:
    files = [("files", (p.name, p.read_bytes())) for p in model_files(tiny_classifier)]
    files.append(("files", (name, b"\x80\x04K\x01.")))
    body = assert_problem(client.post("/v1/models", files=files), 422, code, "files")
    assert name.split("/")[-1].split("\\")[-1] in body["detail"] or "file name" in body["detail"]
    assert _leftovers(settings.data_dir) == []
    assert client.get("/v1/models").json()["data"] == []


def test_model_upload_needs_config_weights_and_tokenizer(
    client: TestClient, tiny_classifier: Path
) -> None:
    def without(*names: str):
        return [
            ("files", (p.name, p.read_bytes()))
            for p in model_files(tiny_classifier)
            if p.name not in names
        ]

    missing = [
        (("config.json",), "model_config_missing"),
        (("model.safetensors",), "model_weights_missing"),
        (("tokenizer.json", "tokenizer_config.json"), "model_tokenizer_missing"),
    ]
    for names, code in missing:
        body = assert_problem(client.post("/v1/models", files=without(*names)), 422, code)
        # Named as the user knows it, not by the server's temporary folder.
        assert body["detail"].startswith("the upload has no "), body["detail"]


def test_model_upload_refuses_corrupt_weights_and_unknown_architectures(
    client: TestClient, tiny_classifier: Path
) -> None:
    files = {p.name: p.read_bytes() for p in model_files(tiny_classifier)}
    truncated = dict(files, **{"model.safetensors": files["model.safetensors"][:-100]})
    assert_problem(
        client.post("/v1/models", files=[("files", kv) for kv in truncated.items()]),
        422,
        "model_weights_invalid",
    )
    config = json.loads(files["config.json"])
    config["model_type"] = "gpt2"
    other = dict(files, **{"config.json": json.dumps(config).encode()})
    body = assert_problem(
        client.post("/v1/models", files=[("files", kv) for kv in other.items()]),
        422,
        "model_architecture_unsupported",
    )
    assert "gpt2" in body["detail"]


def test_uploads_past_the_limit_answer_413_and_store_nothing(
    tmp_path: Path, database_url: str, db, queue, tiny_classifier: Path, synthetic_data
) -> None:
    settings = make_settings(
        tmp_path, database_url, max_model_upload_bytes=4096, max_dataset_upload_bytes=1024
    )
    app = create_app(settings, db=db, queue=queue)
    from .conftest import ACME_KEY

    with TestClient(app, headers={"Authorization": f"Bearer {ACME_KEY}"}) as client:
        assert_problem(upload_model(client, tiny_classifier), 413, "upload_too_large")
        assert_problem(upload_dataset(client, synthetic_data["train"]), 413, "upload_too_large")

        # A chunked body announces no length: the count while streaming stops it.
        def chunks():
            boundary = b"--xyz"
            yield (
                boundary
                + b'\r\nContent-Disposition: form-data; name="file"; filename="t.jsonl"\r\n\r\n'
            )
            for _ in range(100):
                yield b'{"text": "a b c", "label": "x"}\n' * 10
            yield b"\r\n" + boundary + b"--\r\n"

        response = client.post(
            "/v1/datasets",
            content=chunks(),
            headers={"Content-Type": "multipart/form-data; boundary=xyz"},
        )
        assert_problem(response, 413, "upload_too_large")
    assert _leftovers(settings.data_dir) == []


def test_dataset_upload_describes_the_table(client: TestClient, synthetic_data) -> None:
    response = upload_dataset(client, synthetic_data["train"])
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert dataset["id"].startswith("ds_")
    assert dataset["object"] == "dataset"
    assert (dataset["format"], dataset["rows"], dataset["columns"]) == (
        "jsonl",
        240,
        ["text", "label"],
    )
    assert dataset["filename"] == "train.jsonl"
    assert client.get(f"/v1/datasets/{dataset['id']}").json() == dataset


def test_dataset_upload_csv_and_refusals(client: TestClient, tmp_path: Path) -> None:
    csv_path = tmp_path / "reviews.csv"
    csv_path.write_text("text,label\ngood film,pos\nbad film,neg\n")
    response = upload_dataset(client, csv_path)
    assert response.status_code == 201, response.text
    assert (response.json()["format"], response.json()["rows"]) == ("csv", 2)

    assert_problem(
        upload_dataset(client, csv_path, name="data.pkl"), 422, "dataset_format_unsupported"
    )
    assert_problem(
        upload_dataset(client, csv_path, name="../data.csv"), 422, "upload_file_not_allowed"
    )
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "ok", "label": "a"}\n{not json\n')
    assert_problem(upload_dataset(client, broken), 422, "dataset_parse_error")
    two = [("file", ("a.csv", csv_path.read_bytes())), ("file", ("b.csv", csv_path.read_bytes()))]
    assert_problem(client.post("/v1/datasets", files=two), 422, "invalid_upload")
    assert_problem(client.post("/v1/datasets", json={"file": "x"}), 422, "invalid_upload")


def test_uploads_are_private_to_their_tenant(
    client: TestClient, globex: TestClient, tiny_classifier: Path, synthetic_data
) -> None:
    model = upload_model(client, tiny_classifier).json()
    dataset = upload_dataset(client, synthetic_data["train"]).json()
    assert_problem(globex.get(f"/v1/models/{model['id']}"), 404, "not_found")
    assert_problem(globex.get(f"/v1/datasets/{dataset['id']}"), 404, "not_found")
    assert_problem(globex.delete(f"/v1/models/{model['id']}"), 404, "not_found")
    assert globex.get("/v1/models").json()["data"] == []
    assert globex.get("/v1/datasets").json()["data"] == []


def test_delete_removes_row_and_files(client: TestClient, settings, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", synthetic_rows(10))
    dataset = upload_dataset(client, path).json()
    response = client.delete(f"/v1/datasets/{dataset['id']}")
    assert response.json() == {"id": dataset["id"], "object": "dataset", "deleted": True}
    assert_problem(client.get(f"/v1/datasets/{dataset['id']}"), 404, "not_found")
    assert _leftovers(settings.data_dir) == []


def test_a_multipart_body_cut_before_its_closing_boundary_stores_nothing(
    client: TestClient, synthetic_data
) -> None:
    """The rows that arrived were stored as the whole dataset (201 with 10 of 40 rows)."""
    lines = synthetic_data["train"].read_bytes().splitlines(keepends=True)
    head = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="train.jsonl"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n"
    )
    headers = {"Content-Type": "multipart/form-data; boundary=b"}
    cut = client.post("/v1/datasets", content=head + b"".join(lines[:10]), headers=headers)
    body = assert_problem(cut, 422, "upload_incomplete", "files")
    assert "closing boundary" in body["detail"]
    assert client.get("/v1/datasets").json()["data"] == []
    whole = head + b"".join(lines) + b"\r\n--b--\r\n"
    created = client.post("/v1/datasets", content=whole, headers=headers)
    assert created.status_code == 201 and created.json()["rows"] == len(lines)


def test_a_refused_dataset_upload_names_the_file_as_sent(
    client: TestClient, tmp_path: Path
) -> None:
    """It named the server's stored name (ds_....jsonl), an id the user was never given."""
    path = tmp_path / "reviews-2026.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{not json\n')
    body = assert_problem(upload_dataset(client, path), 422, "dataset_parse_error")
    assert body["detail"].startswith("reviews-2026.jsonl cannot be parsed: line 2")
