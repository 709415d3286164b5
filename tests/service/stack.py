"""The real thing, shared by the integration modules: a private ``redis-server``, a fresh
PostgreSQL database, and the service's processes (``layerfuse serve``, ``worker``, ``webhooks``),
plus an ``mlflow server`` on a local SQLite store. The fixtures are in conftest.py.

Skips (Redis, PostgreSQL or MLflow missing) say ``SERVICE-SKIP:``; CI treats them as failures.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import fresh_postgres_database

REPO = Path(__file__).resolve().parents[2]
ACME = "acme-integration-key-000000000"
GLOBEX = "globex-integration-key-00000000"
ACME_WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"acme-integration-webhook-secret!").decode()
DATASET_LIMIT = 1024 * 1024
MODEL_LIMIT = 4 * 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Process:
    """A child process in its own session, with its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], logs: Path):
        self.name = name
        self.log = logs / f"{name}.log"
        self._file = self.log.open("wb")
        self.popen = subprocess.Popen(
            argv,
            env=env,
            cwd=REPO,
            stdout=self._file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        self._file.close()


@contextlib.contextmanager
def running_redis(folder: Path) -> Iterator[str]:
    """A private ``redis-server`` on a free port; yields its URL."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("SERVICE-SKIP: redis-server is not on PATH")
    port = free_port()
    process = Process(
        "redis",
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(folder),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        dict(os.environ),
        folder,
    )
    try:
        import redis

        wait_for(lambda: _redis_ping(redis, port), 15, "redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.stop()


def _redis_ping(redis: Any, port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_connect_timeout=1).ping())
    except Exception:
        return False


class Stack:
    def __init__(self, url: str, env: dict[str, str], logs: Path):
        self.url = url
        self.env = env
        self.logs = logs
        self.processes: dict[str, Process] = {}
        self.acme = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {ACME}"}, timeout=60
        )
        self.globex = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {GLOBEX}"}, timeout=60
        )

    def start(self, name: str, *args: str) -> Process:
        argv = [sys.executable, "-m", "layerfuse.cli", *args]
        self.processes[name] = Process(name, argv, self.env, self.logs)
        return self.processes[name]

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.acme.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def wait_status(self, job_id: str, statuses: set[str], timeout: float) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            job = self.job(job_id)
            return job if job["status"] in statuses else None

        try:
            result: dict[str, Any] = wait_for(done, timeout, f"{job_id} to reach {statuses}")
        except AssertionError:
            print(self.diagnostics())
            raise
        return result

    def diagnostics(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.tail()}" for p in self.processes.values())


@contextlib.contextmanager
def running_stack(redis_url: str, root: Path) -> Iterator[Stack]:
    """API, one worker and the webhook worker on Redis and PostgreSQL, with short heartbeats,
    tight upload limits, and webhooks (acme's secret) allowed to reach 127.0.0.1 quickly."""
    with fresh_postgres_database() as database_url:
        port = free_port()
        env = {
            **os.environ,
            "LAYERFUSE_ENV": "test",
            "LAYERFUSE_DATA_DIR": str(root / "data"),
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "LAYERFUSE_API_KEYS": f"acme:{ACME},globex:{GLOBEX}",
            "LAYERFUSE_MAX_DATASET_UPLOAD_BYTES": str(DATASET_LIMIT),
            "LAYERFUSE_MAX_MODEL_UPLOAD_BYTES": str(MODEL_LIMIT),
            "LAYERFUSE_HEARTBEAT_INTERVAL_S": "1",
            "LAYERFUSE_HEARTBEAT_TIMEOUT_S": "10",
            "LAYERFUSE_RECONCILE_INTERVAL_S": "1",
            "LAYERFUSE_DEVICE": "cpu",
            "LAYERFUSE_WEBHOOK_SECRETS": f"acme:{ACME_WEBHOOK_SECRET}",
            "LAYERFUSE_WEBHOOK_ALLOW_PRIVATE": "true",
            "LAYERFUSE_WEBHOOK_BACKOFF_BASE_S": "0.5",
            "LAYERFUSE_WEBHOOK_POLL_INTERVAL_S": "0.2",
        }
        stack = Stack(f"http://127.0.0.1:{port}", env, root)
        stack.start("worker", "worker")
        stack.start("webhooks", "webhooks")
        stack.start("api", "serve", "--port", str(port))
        try:
            wait_for(lambda: ready(stack.url), 90, "the API to be ready with a worker")
        except AssertionError:
            print(stack.diagnostics())
            for process in stack.processes.values():
                process.stop()
            raise
        try:
            yield stack
        finally:
            for process in stack.processes.values():
                process.stop()


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


class MlflowServer:
    """``mlflow server`` on a free port, with a SQLite backend store and proxied artifacts
    (``mlflow-artifacts:``) under ``root``. Starts at once; :meth:`wait` waits for it."""

    def __init__(self, root: Path):
        if shutil.which("mlflow") is None and not _importable("mlflow"):
            pytest.skip("SERVICE-SKIP: mlflow is not installed (the 'mlflow' extra)")
        self.url = f"http://127.0.0.1:{free_port()}"
        argv = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            self.url.rsplit(":", 1)[1],
            "--workers",
            "1",
        ]
        self.process = Process("mlflow", argv, dict(os.environ), root)

    def wait(self, timeout: float = 120) -> str:
        def up() -> bool:
            if self.process.popen.poll() is not None:
                raise AssertionError(f"mlflow server stopped:\n{self.process.tail()}")
            try:
                return httpx.get(f"{self.url}/health", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout, "the MLflow server")
        return self.url

    def stop(self) -> None:
        self.process.stop()


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
