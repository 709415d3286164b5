"""Job-creation latency of the API: ``POST /v1/jobs`` wall time seen by a client, over HTTP.

Starts ``layerfuse serve`` (no worker: the jobs stay queued and are cancelled afterwards) on
each configuration, uploads a tiny model and two training sets, then times sequential job
creations. Creation validates the spec fully (ids, tenancy, columns and labels of every split),
so the first job on a dataset grows with its size (``first_ms``); later jobs on the same
file reuse that check (an upload never changes). A small and a real dataset are measured.

    python benchmarks/job_creation.py                     # embedded: SQLite + filesystem broker
    python benchmarks/job_creation.py --postgres URL --redis URL   # adds Redis + PostgreSQL
    python benchmarks/job_creation.py --out benchmarks/results/job_creation.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.factories import make_model_dir, synthetic_rows, write_jsonl  # noqa: E402

REAL_DATASET = REPO.parent / "shared" / "datasets" / "sst2" / "train.jsonl"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(env: dict[str, str], files: dict[str, Path], model_dir: Path, n: int) -> dict[str, Any]:
    key = "bench-" + secrets.token_hex(16)
    port = free_port()
    env = {**env, "LAYERFUSE_API_KEYS": f"bench:{key}", "LAYERFUSE_RECONCILE_INTERVAL_S": "0"}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "layerfuse.cli",
            "serve",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=REPO,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
            if time.monotonic() - started > 60:
                raise RuntimeError("the API did not start")
        startup_s = time.monotonic() - started
        client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120)
        model_files = [p for p in model_dir.iterdir() if p.is_file()]
        model = client.post(
            "/v1/models", files=[("files", (p.name, p.read_bytes())) for p in model_files]
        )
        model.raise_for_status()
        results: dict[str, Any] = {"api_startup_s": round(startup_s, 3)}
        for label, path in files.items():
            dataset = client.post("/v1/datasets", files={"file": (path.name, path.read_bytes())})
            dataset.raise_for_status()
            body = {
                "model": {"source": "upload", "id": model.json()["id"]},
                "dataset": {"train": dataset.json()["id"]},
                "strategy": "drop-top",
                "strategies": ["drop-top"],
                "target": {"layers_to_remove": 1},
            }
            # The first job on a dataset parses and checks it; later ones reuse that check.
            t0 = time.perf_counter()
            client.post("/v1/jobs", json=body).raise_for_status()
            first_ms = 1000 * (time.perf_counter() - t0)
            times = []
            for _ in range(n):
                t0 = time.perf_counter()
                response = client.post("/v1/jobs", json=body)
                times.append(time.perf_counter() - t0)
                response.raise_for_status()
                client.post(f"/v1/jobs/{response.json()['id']}/cancel").raise_for_status()
            times.sort()
            results[label] = {
                "train_rows": dataset.json()["rows"],
                "train_bytes": dataset.json()["bytes"],
                "first_ms": round(first_ms, 2),
                "n": n,
                "p50_ms": round(1000 * statistics.median(times), 2),
                "p95_ms": round(1000 * times[int(0.95 * (n - 1))], 2),
                "mean_ms": round(1000 * statistics.fmean(times), 2),
                "max_ms": round(1000 * times[-1], 2),
            }
        return results
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=100, help="job creations per measurement")
    parser.add_argument("--postgres", help="a PostgreSQL URL (an empty database)")
    parser.add_argument("--redis", help="a Redis URL")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()

    base_env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model_dir = make_model_dir(root / "model", num_labels=3)
        files = {"small_train": write_jsonl(root / "train.jsonl", synthetic_rows(240, seed=1))}
        if REAL_DATASET.is_file():
            files["sst2_train"] = REAL_DATASET
        configurations = {
            "embedded (SQLite + filesystem broker)": {
                **base_env,
                "LAYERFUSE_DATA_DIR": str(root / "embedded"),
            }
        }
        if args.postgres and args.redis:
            configurations["PostgreSQL + Redis"] = {
                **base_env,
                "LAYERFUSE_DATA_DIR": str(root / "server"),
                "DATABASE_URL": args.postgres,
                "REDIS_URL": args.redis,
            }
        report = {
            "what": "POST /v1/jobs wall time at the client, sequential, HTTP keep-alive; "
            "first_ms: the first job on a dataset (its train split parsed and checked); "
            "p50/p95/mean/max: the next n jobs",
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "results": {
                name: measure(env, files, model_dir, args.n) for name, env in configurations.items()
            },
        }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
