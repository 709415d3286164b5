"""Under pressure the API sheds or refuses with a clear answer, never a 500 or a hang: a
database with every connection busy is 503 ``service_busy`` with ``Retry-After`` (and
``/healthz`` still answers), a body that arrives too slowly is 408, one declared too large is 413
at once. The body cases run against a real uvicorn server over a socket.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient

from layerfuse.service.app import create_app
from layerfuse.service.store import Database

from .conftest import ACME_KEY, FakeQueue, make_settings
from .helpers import assert_problem
from .stack import free_port


def test_a_busy_pool_is_503_with_retry_after_and_healthz_still_answers(
    tmp_path: Path, database_url: str
) -> None:
    settings = make_settings(tmp_path, database_url)
    db = Database(database_url, pool_size=1, max_overflow=0, pool_timeout_s=0.2)
    app = create_app(settings, db=db, queue=FakeQueue())  # type: ignore[arg-type]
    auth = {"Authorization": f"Bearer {ACME_KEY}"}
    with TestClient(app, headers=auth) as client, db.engine.connect():  # the only connection
        started = time.monotonic()
        for path in ("/v1/jobs/job_" + "0" * 24, "/v1/jobs", "/v1/models"):
            response = client.get(path)
            body = assert_problem(response, 503, "service_busy")
            assert response.headers["Retry-After"] == "1"
            assert "retry" in body["detail"]
        assert time.monotonic() - started < 5  # failed fast, not after a 30 s pool timeout
        assert client.get("/healthz").json() == {"status": "ok"}
    db.dispose()


@contextlib.contextmanager
def _server(tmp_path: Path, database_url: str, **overrides: object) -> Iterator[int]:
    settings = make_settings(tmp_path, database_url, **overrides)
    app = create_app(settings, queue=FakeQueue())  # type: ignore[arg-type]
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _send(port: int, head: bytes, body: bytes = b"", *, wait_s: float = 10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as sock:
        sock.sendall(head + body)
        answer = b""
        with contextlib.suppress(TimeoutError):
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        return answer


def _post_jobs(length: int) -> bytes:
    return (
        f"POST /v1/jobs HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {ACME_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_slow_and_oversized_bodies_get_clear_answers(tmp_path: Path, database_url: str) -> None:
    with _server(tmp_path, database_url, body_timeout_s=1.0) as port:
        started = time.monotonic()
        answer = _send(port, _post_jobs(3 * 2**30), b"{")  # 3 GiB declared, one byte sent
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"request_too_large" in answer and time.monotonic() - started < 5
        started = time.monotonic()
        answer = _send(port, _post_jobs(100), b'{"model": ')  # then nothing more
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"request_timeout" in answer
        assert 0.9 < time.monotonic() - started < 8
