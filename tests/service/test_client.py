"""``layerfuse.client`` against the real app (through Starlette's test transport) and, for retries
and broken streams, against scripted transports."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

import layerfuse.client as client_module
from layerfuse.client import (
    APIConnectionError,
    ArtifactIntegrityError,
    Client,
    ConflictError,
    LayerfuseClientError,
    NotFoundError,
    ServerError,
    ServiceUnavailableError,
    UnprocessableEntityError,
)
from layerfuse.service.app import create_app
from layerfuse.service.artifacts import describe_outputs
from layerfuse.service.settings import Settings
from layerfuse.service.storage import Storage
from layerfuse.service.store import Database, now
from layerfuse.service.store import jobs as job_store
from layerfuse.service.store import workers as worker_store

from .conftest import ACME_KEY, FakeQueue
from .helpers import a_worker, job_body


@pytest.fixture
def lf(settings: Settings, db: Database, queue: FakeQueue) -> Iterator[Client]:
    """Acme's :class:`Client` of the app."""
    app = create_app(settings, db=db, queue=queue)  # type: ignore[arg-type]
    with TestClient(app) as http, Client(api_key=ACME_KEY, http=http) as client:
        client.retry.sleep = lambda seconds: None
        yield client


def succeed(db: Database, settings: Settings, job_id: str, model_dir: Path) -> None:
    """Write outputs and finish the job as the worker does."""
    output = Storage(settings).output_dir("acme", job_id)
    (output / "model").mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        shutil.copy(model_dir / name, output / "model" / name)
    (output / "report.json").write_text(json.dumps({"final": {"num_layers": 3}}))
    (output / "model" / "onnx").mkdir()
    (output / "model" / "onnx" / "model.onnx").write_bytes(b"onnx")
    with db.session() as session:
        claim = job_store.claim_job(
            session, job_id, worker="test", stale_before=now() - 60, max_attempts=3
        )
        assert claim is not None
        job_store.set_stage(session, claim, "sweeping")
        job_store.add_event(
            session, job_id, type="stage", stage="sweeping", message="s", data={"stage": "sweeping"}
        )
        job_store.finish_job(
            session, claim, "succeeded", result={"strategy": "drop-top"},
            artifacts=describe_outputs(output),
        )  # fmt: skip


def test_every_route_through_the_client(
    lf: Client, db: Database, settings: Settings, tiny_classifier: Path, synthetic_data, tmp_path
) -> None:
    assert lf.health() == {"status": "ok"}
    assert lf.ready()["status"] == "not ready"  # no worker has been seen: answered, not raised
    with db.session() as session:
        worker_store.touch(session, "host-1:1", a_worker())
    assert [w["name"] for w in lf.list_workers()] == ["host-1:1"]

    model = lf.upload_model(tiny_classifier)
    assert (model["object"], model["num_layers"]) == ("model", 4)
    assert "model.safetensors" in model["files"]
    assert lf.get_model(model["id"]) == model
    train = lf.upload_dataset(synthetic_data["train"])
    assert lf.get_dataset(train["id"])["rows"] == 240
    assert lf.list_models()["data"] == [model]
    assert [d["id"] for d in lf.list_datasets(limit=1)["data"]] == [train["id"]]

    body = job_body(model["id"], train["id"])
    job = lf.create_job(body, idempotency_key="key-1")
    assert lf.create_job(body, idempotency_key="key-1")["id"] == job["id"]  # replayed
    other = lf.create_job(body)
    assert lf.list_jobs(status="queued", limit=1)["has_more"]
    assert lf.cancel_job(other["id"])["status"] == "cancelled"

    succeed(db, settings, job["id"], tiny_classifier)
    assert lf.get_job(job["id"])["status"] == "succeeded"
    events = list(lf.follow_events(job["id"]))
    assert [e["type"] for e in events] == ["status", "status", "stage", "status"]
    assert events[-1]["data"] == {"status": "succeeded"}
    assert list(lf.follow_events(job["id"], after=events[1]["id"])) == events[2:]
    page = lf.list_events(job["id"], limit=2)
    assert page["has_more"] and page["data"] == events[:2]
    assert lf.wait(job["id"])["status"] == "succeeded"

    assert lf.get_report(job["id"]) == {"final": {"num_layers": 3}}
    artifacts = {a["name"]: a for a in lf.list_artifacts(job["id"])}
    onnx = "model/onnx/model.onnx"
    assert {"model.zip", onnx, "report.json", "model/config.json"} <= set(artifacts)
    archive = lf.download_artifact(job["id"], "model.zip", tmp_path / "dl" / "model.zip")
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == artifacts["model.zip"]["sha256"]
    with zipfile.ZipFile(archive) as zf:
        assert {"model/model.safetensors", onnx} <= set(zf.namelist())
    assert lf.read_artifact(job["id"], onnx) == b"onnx"
    stale = tmp_path / "outputs" / "model" / "another-jobs-file.onnx"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"an earlier download")
    written = lf.download_outputs(job["id"], tmp_path / "outputs")
    assert not stale.exists()  # model/ is this job's alone
    assert (tmp_path / "outputs" / onnx).read_bytes() == b"onnx"
    assert sorted(p.relative_to(tmp_path / "outputs").as_posix() for p in written) == sorted(
        name for name in artifacts if name != "model.zip"
    )
    assert lf.list_webhook_deliveries(job["id"])["data"] == []

    with pytest.raises(NotFoundError) as missing:
        lf.get_job("job_000000000000000000000000")
    assert (missing.value.status, missing.value.code) == (404, "not_found")
    assert missing.value.request_id and missing.value.request_id.startswith("req_")
    with pytest.raises(UnprocessableEntityError) as invalid:
        lf.create_job({**body, "options": {"max_length": 100000}})
    assert (invalid.value.code, invalid.value.param) == ("invalid_request", "options.max_length")
    queued = lf.create_job(body)
    with pytest.raises(ConflictError) as in_use:
        lf.delete_dataset(train["id"])
    assert in_use.value.code == "resource_in_use"
    lf.cancel_job(queued["id"])
    lf.delete_dataset(train["id"])
    with pytest.raises(NotFoundError):
        lf.get_dataset(train["id"])
    with pytest.raises(NotFoundError):
        lf.download_artifact(job["id"], "nothing.bin", tmp_path / "nothing.bin")
    assert not (tmp_path / "nothing.bin").exists()


# --- Scripted transports -------------------------------------------------------------------


def scripted(
    answers: list[Callable[[httpx.Request], httpx.Response]],
) -> tuple[Client, list[httpx.Request], list[float]]:
    """A client whose requests get ``answers`` in turn; returns it, the requests and its sleeps."""
    requests: list[httpx.Request] = []
    sleeps: list[float] = []

    def handle(request: httpx.Request) -> httpx.Response:
        request.read()
        requests.append(request)
        return answers[min(len(requests), len(answers)) - 1](request)

    http = httpx.Client(base_url="http://lf.test", transport=httpx.MockTransport(handle))
    client = Client(api_key="k" * 20, http=http, max_retries=3, backoff_base_s=1.0)
    client.retry.sleep = sleeps.append
    return client, requests, sleeps


def answer(status: int, body: Any = None, **headers: str) -> Callable[[httpx.Request], Any]:
    def respond(request: httpx.Request) -> httpx.Response:
        if isinstance(body, bytes):
            return httpx.Response(status, content=body, headers=headers)
        return httpx.Response(status, json=body if body is not None else {}, headers=headers)

    return respond


def refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


JOB = {"id": "job_1", "status": "queued"}
PROBLEM = {
    "type": "about:blank",
    "title": "Unprocessable Content",
    "status": 422,
    "detail": "options.max_length: too large",
    "code": "invalid_request",
    "param": "options.max_length",
    "request_id": "req_1",
}


def test_429_and_503_are_retried_honouring_retry_after_then_exponential() -> None:
    client, requests, sleeps = scripted(
        [answer(503, {"code": "broker_unavailable"}, **{"Retry-After": "2"}),
         answer(429, {"code": "rate_limited"}), answer(200, JOB)]
    )  # fmt: skip
    assert client.get_job("job_1") == JOB
    assert len(requests) == 3 and requests[0].headers["authorization"] == "Bearer " + "k" * 20
    assert sleeps[0] == 2.0 and 1.0 <= sleeps[1] <= 2.0  # Retry-After, then base * 2^1, jittered


def test_retries_are_bounded_and_the_last_error_is_raised() -> None:
    client, requests, sleeps = scripted([answer(503, {"code": "broker_unavailable"})])
    with pytest.raises(ServiceUnavailableError) as failed:
        client.get_job("job_1")
    assert failed.value.code == "broker_unavailable" and len(requests) == 4
    assert sleeps == sorted(sleeps) and sleeps[-1] <= 8.0

    client, requests, sleeps = scripted([refuse])
    with pytest.raises(APIConnectionError, match="cannot reach"):
        client.list_jobs()
    assert len(requests) == 4 and len(sleeps) == 3


def test_only_requests_safe_to_repeat_are_retried_after_a_500(tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text('{"text": "a", "label": "x"}\n')
    client, requests, _ = scripted([answer(500, b"oops"), answer(201, {"id": "ds_1"})])
    with pytest.raises(ServerError) as failed:
        client.upload_dataset(data)  # may have been stored: not repeated
    assert (failed.value.code, len(requests)) == ("http_500", 1)

    client, requests, _ = scripted([answer(503, {}), answer(201, {"id": "ds_1"})])
    assert client.upload_dataset(data) == {"id": "ds_1"}  # 503: nothing was stored
    assert [b'{"text": "a"' in r.content for r in requests] == [True, True]  # file re-sent

    client, requests, _ = scripted([answer(502, {}), answer(201, JOB)])
    assert client.create_job({"model": {}}) == JOB
    keys = {r.headers["idempotency-key"] for r in requests}
    assert len(requests) == 2 and len(keys) == 1  # the retry cannot create a second job


def test_problem_details_become_typed_errors() -> None:
    client, _, _ = scripted([answer(422, PROBLEM)])
    with pytest.raises(UnprocessableEntityError) as invalid:
        client.create_job({})
    error = invalid.value
    assert (error.status, error.code, error.param, error.request_id) == (
        422,
        "invalid_request",
        "options.max_length",
        "req_1",
    )
    assert str(error) == "[invalid_request] (options.max_length): options.max_length: too large"
    assert isinstance(error, client_module.APIError)
    assert isinstance(error, client_module.LayerfuseClientError)


class Broken(httpx.SyncByteStream):
    """A response body that sends ``chunks`` and then loses the connection."""

    def __init__(self, chunks: list[bytes]):
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        raise httpx.ReadError("connection reset")


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(
        f"id: {e['id']}\ndata: {json.dumps(e)}\n\n".encode() + b": keep-alive\n\n" for e in events
    )


def event(n: int, **data: Any) -> dict[str, Any]:
    kind = "status" if "status" in data else "progress"
    return {"id": f"evt_{n}", "type": kind, "data": data, "message": "m", "level": "info"}


def test_follow_events_resumes_after_the_last_event_seen() -> None:
    def first(request: httpx.Request) -> httpx.Response:
        assert "last-event-id" not in request.headers
        return httpx.Response(200, stream=Broken([sse(event(1, fraction=0.1), event(2))]))

    def second(request: httpx.Request) -> httpx.Response:
        assert request.headers["last-event-id"] == "evt_2"
        return httpx.Response(200, content=sse(event(3, status="succeeded"), event(4)))

    client, requests, sleeps = scripted([first, second])
    assert [e["id"] for e in client.follow_events("job_1")] == ["evt_1", "evt_2", "evt_3"]
    assert len(requests) == 2 and len(sleeps) == 1


def test_a_download_that_does_not_match_its_sha256_is_discarded(tmp_path: Path) -> None:
    client, _, _ = scripted([answer(200, b"tampered", **{"X-Content-SHA256": "0" * 64})])
    with pytest.raises(ArtifactIntegrityError):
        client.download_artifact("job_1", "model.onnx", tmp_path / "model.onnx")
    assert list(tmp_path.iterdir()) == []


def test_a_download_is_checked_against_the_listed_sha256_without_the_header(
    tmp_path: Path,
) -> None:
    """A proxy that dropped the header turned the check off: a corrupt file was kept."""
    client, _, _ = scripted([answer(200, b"tampered")])
    with pytest.raises(ArtifactIntegrityError):
        client.download_artifact("job_1", "report.json", tmp_path / "r.json", sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []


def test_ids_are_one_escaped_path_segment() -> None:
    client, requests, _ = scripted([answer(404, PROBLEM)])
    with pytest.raises(NotFoundError):
        client.get_job("x/../job_1")
    assert requests[0].url.raw_path == b"/v1/jobs/x%2F..%2Fjob_1"
    with pytest.raises(ValueError, match="empty"):
        client.cancel_job("")


def test_the_public_api_is_pinned() -> None:
    assert client_module.__all__ == [
        "APIConnectionError",
        "APIError",
        "Artifact",
        "ArtifactIntegrityError",
        "AuthenticationError",
        "BadRequestError",
        "Client",
        "ConflictError",
        "Dataset",
        "Event",
        "Job",
        "LayerfuseClientError",
        "Model",
        "NotFoundError",
        "Page",
        "PayloadTooLargeError",
        "RateLimitError",
        "ServerError",
        "ServiceUnavailableError",
        "UnprocessableEntityError",
        "WebhookDelivery",
        "WebhookVerificationError",
        "model_files",
        "verify_webhook",
    ]
    assert all(hasattr(client_module, name) for name in client_module.__all__)
    methods = {name for name in dir(Client) if not name.startswith("_")}
    assert {
        "health", "ready", "upload_model", "get_model", "list_models", "delete_model",
        "upload_dataset", "get_dataset", "list_datasets", "delete_dataset", "create_job",
        "list_jobs", "get_job", "cancel_job", "wait", "list_events", "follow_events",
        "get_report", "list_artifacts", "read_artifact", "download_artifact",
        "download_outputs", "iter_events", "list_webhook_deliveries",
    } <= methods  # fmt: skip


# --- One retry policy: a request costs at most max_retries + 1 round trips ------------------


def broken_body(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, stream=Broken([b"partial bytes"]))


def test_a_request_meeting_mixed_failures_is_sent_at_most_retries_plus_one_times() -> None:
    client, requests, sleeps = scripted(
        [refuse, answer(503, {}), answer(502, {}), refuse, answer(200, JOB)]
    )
    with pytest.raises(APIConnectionError, match="cannot reach"):
        client.get_job("job_1")
    assert len(requests) == 4 and len(sleeps) == 3  # max_retries = 3


def test_a_download_meeting_mixed_failures_is_sent_at_most_retries_plus_one_times(
    tmp_path: Path,
) -> None:
    # Error answers and transfers broken half-way share one budget: no retry inside a retry.
    failures = [answer(503, {}), broken_body, answer(503, {}), broken_body]
    client, requests, _ = scripted([*failures, answer(200, b"model")])
    with pytest.raises(APIConnectionError, match=r"downloading model\.onnx: the connection broke"):
        client.download_artifact("job_1", "model.onnx", tmp_path / "model.onnx")
    assert len(requests) == 4
    assert list(tmp_path.iterdir()) == []  # no partial file left behind

    client, requests, _ = scripted([answer(503, {}), broken_body, answer(200, b"model")])
    target = client.download_artifact("job_1", "model.onnx", tmp_path / "model.onnx")
    assert target.read_bytes() == b"model" and len(requests) == 3


def test_following_events_gives_up_after_retries_plus_one_attempts_without_progress() -> None:
    client, requests, _ = scripted([answer(503, {}), refuse, broken_body, answer(502, {})])
    with pytest.raises(ServerError):
        list(client.follow_events("job_1"))
    assert len(requests) == 4


def test_an_httpx2_client_gets_the_same_retries_and_connection_errors() -> None:
    # starlette's TestClient, and anyone's own client, may be httpx2's, whose exceptions are not
    # httpx's: its refused connections must still be retried and end as APIConnectionError.
    httpx2 = pytest.importorskip("httpx2")
    attempts: list[int] = []

    def handle(request: Any) -> Any:
        attempts.append(1)
        if len(attempts) < 3:
            raise httpx2.ConnectError("connection refused", request=request)
        return httpx2.Response(200, json=JOB)

    http = httpx2.Client(base_url="http://lf.test", transport=httpx2.MockTransport(handle))
    client = Client(api_key="k" * 20, http=http, max_retries=3)
    client.retry.sleep = lambda seconds: None
    assert client.get_job("job_1") == JOB and len(attempts) == 3

    attempts.clear()
    client.retry.max_retries = 1
    with pytest.raises(APIConnectionError, match="GET /v1/jobs/job_1: cannot reach"):
        client.get_job("job_1")
    assert len(attempts) == 2


def test_an_answer_that_is_not_json_is_a_client_error_naming_the_url() -> None:
    """--url pointing at another web server gave a raw JSONDecodeError traceback."""
    client, _, _ = scripted([answer(200, b"<html>hello</html>", **{"content-type": "text/html"})])
    with pytest.raises(LayerfuseClientError, match=r"without JSON.*layerfuse server"):
        client.get_job("job_1")
