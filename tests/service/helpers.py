"""Small helpers shared by the service tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from layerfuse.compression.inspection import MODEL_FILES, SHARD_PATTERN
from layerfuse.service.store import now
from layerfuse.service.store import workers as worker_store
from layerfuse.worker.devices import cpu_device

# The worker the in-process tests run jobs as: this machine's CPU.
CPU_WORKER = cpu_device()


def model_files(folder: Path) -> list[Path]:
    """The files of ``folder`` that a model upload accepts."""
    return [
        p
        for p in sorted(folder.iterdir())
        if p.is_file() and (p.name in MODEL_FILES or SHARD_PATTERN.match(p.name))
    ]


def upload_model(client: Any, folder: Path) -> httpx.Response:
    files = [("files", (p.name, p.read_bytes())) for p in model_files(folder)]
    return client.post("/v1/models", files=files)


def upload_dataset(client: Any, path: Path, name: str | None = None) -> httpx.Response:
    return client.post("/v1/datasets", files={"file": (name or path.name, path.read_bytes())})


def job_body(model_id: str, train_id: str, **overrides: Any) -> dict[str, Any]:
    """A small, valid job body: one cheap strategy, one layer removed, short sequences."""
    body: dict[str, Any] = {
        "model": {"source": "upload", "id": model_id},
        "dataset": {"train": train_id},
        "strategy": "drop-top",
        "strategies": ["drop-top", "weight-magnitude"],
        "target": {"layers_to_remove": 1},
        "distillation": {"enabled": True, "epochs": 1},
        "options": {"n_calib": 32, "max_length": 32, "random_seeds": 1},
        "metadata": {"team": "search"},
    }
    body.update(overrides)
    return body


def parse_sse(text: str) -> list[dict[str, Any]]:
    """The ``data:`` payloads of a Server-Sent Events body, with their ``id:``."""
    events = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":"):
                continue
            key, _, value = line.partition(": ")
            fields[key] = value
        if "data" in fields:
            event = json.loads(fields["data"])
            assert fields.get("id") == event["id"]
            events.append(event)
    return events


def assert_problem(response: httpx.Response, status: int, code: str, param: str | None = None):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code, body
    assert body["request_id"].startswith("req_")
    if param is not None:
        assert body["param"] == param, body
    return body


class Receiver:
    """A webhook receiver on 127.0.0.1: records every request and answers from a script.

    ``statuses`` are answered in turn (then 200); ``requests`` holds ``(headers, body)``.
    """

    def __init__(self, statuses: list[int] | None = None):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.statuses = list(statuses or [])
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.requests.append(
                        ({k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/layerfuse?x=1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def verify_standard_webhook(secret: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """Verify a delivery as a receiver would, from the Standard Webhooks spec alone."""
    import base64
    import hashlib
    import hmac
    import time

    key = base64.b64decode(secret.split("_", 1)[1])
    msg_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    assert abs(time.time() - int(timestamp)) < 300, "stale webhook-timestamp"
    content = f"{msg_id}.{timestamp}.{body.decode()}".encode()
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    signatures = [
        s.split(",", 1)[1] for s in headers["webhook-signature"].split() if s.startswith("v1,")
    ]
    assert any(hmac.compare_digest(expected, s) for s in signatures), "bad webhook-signature"
    payload: dict[str, Any] = json.loads(body)
    return payload


def a_worker(device_class: str = "cpu", **overrides: Any) -> worker_store.Description:
    """What a worker of ``device_class`` says in its heartbeat."""
    values: dict[str, Any] = dict(
        hostname="host-1",
        started_at=now(),
        device_class=device_class,
        queue=device_class,
        device="cuda" if device_class == "gpu" else "cpu",
        device_name="NVIDIA H100" if device_class == "gpu" else "a CPU",
        memory_bytes=80 * 2**30,
        concurrency=1,
    )
    values.update(overrides)
    return worker_store.Description(**values)
