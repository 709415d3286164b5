"""Load tooling shared by ``api_load.py`` and ``pollers.py``: servers, a client process, state.

The client runs in its own process (``python benchmarks/loadgen.py client ...``) so its CPU is
not the server's and can be reported: a small HTTP/1.1 keep-alive client on asyncio (uvloop when
installed), one connection per simulated client, either back to back (the next request as soon
as the answer is in) or paced (one request every ``period`` seconds, start times spread over the
first period, as real pollers are). It prints one JSON object: counts by status, transport errors,
timeouts, 503s with and without ``Retry-After``, latency percentiles, its own CPU seconds.

Servers: :func:`serve_app` starts ``layerfuse serve`` on a backend; :func:`serve_bare` starts a
bare FastAPI app (one ``GET /bare`` answering a small JSON object) under the same uvicorn call
``layerfuse serve`` makes (``uvicorn.run(factory=True, host, port, log_level,
timeout_graceful_shutdown=5)``), so the difference between the two is the application.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get(
    "DATABASE_URL_TEST", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
CLIENT_TIMEOUT_S = 10.0


# --- The client process ------------------------------------------------------------------------


@dataclass
class Tally:
    latencies: list[float]
    statuses: Counter[int]
    busy_with_retry_after: int = 0
    busy_without_retry_after: int = 0
    transport_errors: int = 0
    timeouts: int = 0


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool, bool]:
    """(status, has Retry-After, server closes) of one response; its body is read and dropped."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("closed")
    status = int(status_line.split()[1])
    length, retry_after, close = 0, False, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"retry-after":
            retry_after = True
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
    await reader.readexactly(length)
    return status, retry_after, close


async def _client(
    host: str,
    port: int,
    request: bytes,
    *,
    period: float | None,
    offset: float,
    until: float,
    tally: Tally,
) -> None:
    loop = asyncio.get_running_loop()
    next_at = loop.time() + offset
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    while True:
        if period is not None:
            await asyncio.sleep(max(next_at - loop.time(), 0.0))
            next_at += period
        if loop.time() >= until:
            break
        started = time.perf_counter()
        try:
            if connection is None:
                connection = await asyncio.open_connection(host, port)
            reader, writer = connection
            writer.write(request)
            status, retry_after, close = await asyncio.wait_for(
                _read_response(reader), CLIENT_TIMEOUT_S
            )
        except TimeoutError:
            tally.timeouts += 1
            connection = _close(connection)
            continue
        except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError):
            tally.transport_errors += 1
            connection = _close(connection)
            await asyncio.sleep(0.01)
            continue
        tally.latencies.append(time.perf_counter() - started)
        tally.statuses[status] += 1
        if status == 503:
            if retry_after:
                tally.busy_with_retry_after += 1
            else:
                tally.busy_without_retry_after += 1
        if close:
            connection = _close(connection)
    _close(connection)


def _close(connection: Any) -> None:
    if connection is not None:
        connection[1].close()


async def _run_clients(args: argparse.Namespace) -> Tally:
    tally = Tally([], Counter())
    headers = f"GET {args.path} HTTP/1.1\r\nHost: {args.host}\r\n"
    if args.key:
        headers += f"Authorization: Bearer {args.key}\r\n"
    request = (headers + "\r\n").encode()
    loop = asyncio.get_running_loop()
    until = loop.time() + args.duration
    period = args.period if args.period > 0 else None
    await asyncio.gather(
        *(
            _client(
                args.host,
                args.port,
                request,
                period=period,
                offset=(period or 0) * i / args.clients,
                until=until,
                tally=tally,
            )
            for i in range(args.clients)
        )
    )
    return tally


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(1000 * value, 2)


def client_main(args: argparse.Namespace) -> int:
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    tally = asyncio.run(_run_clients(args))
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    n = len(tally.latencies)
    server_errors = sum(c for s, c in tally.statuses.items() if s >= 500 and s != 503)
    result = {
        "clients": args.clients,
        "mode": "back to back" if args.period <= 0 else f"one request every {args.period:g} s",
        "duration_s": round(wall, 2),
        "requests": n,
        "req_per_s": round(n / wall, 1),
        "p50_ms": _ms(percentile(tally.latencies, 0.50)),
        "p99_ms": _ms(percentile(tally.latencies, 0.99)),
        "max_ms": _ms(max(tally.latencies) if tally.latencies else None),
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "errors": server_errors + tally.transport_errors + tally.busy_without_retry_after,
        "server_errors_5xx_not_503": server_errors,
        "busy_503_with_retry_after": tally.busy_with_retry_after,
        "busy_503_without_retry_after": tally.busy_without_retry_after,
        "transport_errors": tally.transport_errors,
        "timeouts": tally.timeouts,
        "client_cpu_s": round(cpu, 2),
        "client_cpu_share_of_one_core": round(cpu / wall, 2),
    }
    print(json.dumps(result))
    return 0


# --- Orchestration -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_client(
    url_port: int,
    path: str,
    *,
    clients: int,
    duration: float,
    period: float = 0.0,
    key: str | None = None,
) -> subprocess.Popen[str]:
    """Start a client process; :func:`client_result` collects its JSON."""
    command = [
        sys.executable, str(Path(__file__).resolve()), "client", "--port", str(url_port),
        "--path", path, "--clients", str(clients), "--duration", str(duration),
        "--period", str(period),
    ]  # fmt: skip
    if key:
        command += ["--key", key]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def client_result(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = process.communicate(timeout=600)
    if process.returncode != 0:
        raise RuntimeError(f"the load client failed ({process.returncode})")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_state() -> dict[str, Any]:
    """What the numbers were measured next to: load average and the busiest other processes."""
    top = subprocess.run(
        ["ps", "-eo", "pcpu,etimes,args", "--sort=-pcpu"], capture_output=True, text=True
    ).stdout.splitlines()[1:7]
    return {
        "cpus": os.cpu_count(),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "busiest_processes": [" ".join(line.split()[:2] + line.split()[2:5])[:120] for line in top],
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _wait_healthy(port: int, process: subprocess.Popen[Any]) -> None:
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the server exited while starting")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError("the server did not start within 120 s")


@contextlib.contextmanager
def serve_app(env: dict[str, str]) -> Iterator[tuple[int, str, subprocess.Popen[Any]]]:
    """``layerfuse serve`` with ``env`` (a backend); yields (port, API key, process)."""
    key = "bench-" + secrets.token_hex(16)
    port = free_port()
    env = {**env, "LAYERFUSE_API_KEYS": f"bench:{key}", "LAYERFUSE_RECONCILE_INTERVAL_S": "0"}
    command = [sys.executable, "-m", "layerfuse.cli", "serve", "--port", str(port)]
    process = subprocess.Popen([*command, "--log-level", "warning"], env=env, cwd=REPO)
    try:
        _wait_healthy(port, process)
        yield port, key, process
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextlib.contextmanager
def serve_bare() -> Iterator[tuple[int, subprocess.Popen[Any]]]:
    """The bare FastAPI endpoint under the same uvicorn call; yields (port, process)."""
    port = free_port()
    code = (
        "import uvicorn; uvicorn.run('benchmarks.loadgen:bare_app', factory=True, "
        f"host='127.0.0.1', port={port}, log_level='warning', timeout_graceful_shutdown=5)"
    )
    process = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
    try:
        _wait_healthy(port, process)
        yield port, process
    finally:
        process.terminate()
        process.wait(timeout=30)


def bare_app() -> Any:
    """One async JSON endpoint and ``/healthz``: the ceiling of FastAPI under this uvicorn."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/bare")
    async def bare() -> dict[str, str]:
        return {"id": "job_0", "object": "compression.job", "status": "running"}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database on ``DATABASE_URL_TEST``'s server, dropped afterwards."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(PG_ADMIN_URL)
    name = f"layerfuse_bench_{secrets.token_hex(4)}"
    params = dict(host=url.host, port=url.port or 5432, user=url.username,
                  password=url.password, dbname=url.database, autocommit=True)  # fmt: skip
    with psycopg.connect(**params) as conn:  # type: ignore[arg-type]
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(**params) as conn:  # type: ignore[arg-type]
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def backends(root: Path, names: list[str]) -> Iterator[dict[str, dict[str, str]]]:
    """Server environments by backend name (``sqlite``, ``postgres``); filesystem broker."""
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    with contextlib.ExitStack() as stack:
        envs = {}
        for name in names:
            env = {**base, "LAYERFUSE_DATA_DIR": str(root / name)}
            if name == "postgres":
                env["DATABASE_URL"] = stack.enter_context(postgres_database())
            envs[name] = env
        yield envs


def queued_job(port: int, key: str, root: Path) -> str:
    """Upload a tiny model and dataset and create one job (it stays queued: no worker)."""
    import httpx

    sys.path.insert(0, str(REPO))
    from tests.factories import make_model_dir, synthetic_rows, write_jsonl

    model_dir = root / "model"
    if not model_dir.exists():
        make_model_dir(model_dir, num_labels=3)
    train = write_jsonl(root / "train.jsonl", synthetic_rows(240, seed=1))
    with httpx.Client(
        base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}, timeout=60
    ) as client:
        files = [("files", (p.name, p.read_bytes())) for p in sorted(model_dir.iterdir())]
        model = client.post("/v1/models", files=files)
        model.raise_for_status()
        dataset = client.post("/v1/datasets", files={"file": (train.name, train.read_bytes())})
        dataset.raise_for_status()
        body = {
            "model": {"source": "upload", "id": model.json()["id"]},
            "dataset": {"train": dataset.json()["id"]},
            "strategy": "drop-top",
            "strategies": ["drop-top"],
            "target": {"layers_to_remove": 1},
        }
        job = client.post("/v1/jobs", json=body)
        job.raise_for_status()
        job_id: str = job.json()["id"]
        return job_id


def measured(
    port: int,
    path: str,
    server_pid: int,
    *,
    clients: int,
    duration: float,
    period: float = 0.0,
    key: str | None = None,
    probe_port: int | None = None,
) -> dict[str, Any]:
    """One load phase; with ``probe_port``, ``/healthz`` polled every 0.1 s from a second
    process throughout. Adds the server's CPU share."""
    cpu0, wall0 = process_cpu_s(server_pid), time.perf_counter()
    load = run_client(port, path, clients=clients, duration=duration, period=period, key=key)
    probe = None
    if probe_port is not None:
        probe = run_client(probe_port, "/healthz", clients=1, duration=duration, period=0.1)
    result = client_result(load)
    wall = time.perf_counter() - wall0
    result["server_cpu_share_of_one_core"] = round((process_cpu_s(server_pid) - cpu0) / wall, 2)
    if probe is not None:
        health = client_result(probe)
        result["healthz"] = {
            k: health[k] for k in ("requests", "p50_ms", "p99_ms", "max_ms", "errors", "timeouts")
        }
    return result


def write_report(report: dict[str, Any], out: Path) -> None:
    """Add the machine's state after the run, print the report and write it to ``out``."""
    report["machine_after"] = machine_state()
    text = json.dumps(report, indent=2)
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description="the load client (one process)")
    sub = parser.add_subparsers(dest="command", required=True)
    client = sub.add_parser("client")
    client.add_argument("--host", default="127.0.0.1")
    client.add_argument("--port", type=int, required=True)
    client.add_argument("--path", required=True)
    client.add_argument("--key")
    client.add_argument("--clients", type=int, default=64)
    client.add_argument("--duration", type=float, default=20.0)
    client.add_argument("--period", type=float, default=0.0, help="0: back to back")
    args = parser.parse_args()
    return client_main(args)


if __name__ == "__main__":
    sys.exit(main())
