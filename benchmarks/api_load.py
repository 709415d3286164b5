"""API throughput against FastAPI's own ceiling: ``GET /v1/jobs/{id}`` vs a bare endpoint.

In one run, under the same uvicorn call (``benchmarks/loadgen.py``): a bare FastAPI endpoint,
then ``GET /v1/jobs/{id}`` of a real ``layerfuse serve`` on SQLite and on PostgreSQL, each with
64 clients back to back (req/s, p50, p99, errors; the client in its own process, with its CPU),
and then each backend at an offered load of half the bare endpoint's rate (64 clients, each
with think time), where p99 must stay under 50 ms. Goal: the job read at least 50% of the bare
rate with 0 errors.

The job read runs as a server runs it, with the pollers' cache of job answers
(``LAYERFUSE_JOB_READ_CACHE_S``, 0.5 s): 64 clients polling one job are almost all hits. Each
backend is then measured back to back with the cache off (``cache_off``): every read through
the router, a thread and a query, what pollers of many different jobs get.

    python benchmarks/api_load.py                       # writes benchmarks/results/api_load.json
    python benchmarks/api_load.py --duration 10 --backends sqlite --out /tmp/a.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import loadgen

CLIENTS = 64


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per phase")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument(
        "--out", type=Path, default=loadgen.REPO / "benchmarks/results/api_load.json"
    )
    args = parser.parse_args()

    report: dict[str, Any] = {
        "what": f"{CLIENTS} keep-alive clients, back to back, then paced at half the bare rate; "
        "latency at the client (its own process); errors = 5xx other than 503 with "
        "Retry-After, transport errors; timeouts after 10 s",
        "machine_before": loadgen.machine_state(),
        "goals": {
            "job_read_vs_bare": ">= 0.5 with 0 errors",
            "half_bare_rate_p99_ms": "< 50",
        },
    }
    with loadgen.serve_bare() as (port, process):
        bare = loadgen.measured(port, "/bare", process.pid, clients=CLIENTS, duration=args.duration)
    report["bare_fastapi"] = bare
    half_rate = bare["req_per_s"] / 2
    period = CLIENTS / half_rate
    results: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        loadgen.backends(Path(tmp), args.backends.split(",")) as envs,
    ):
        for name, env in envs.items():
            with loadgen.serve_app(env) as (port, key, process):
                job = loadgen.queued_job(port, key, Path(tmp))
                path = f"/v1/jobs/{job}"
                saturated = loadgen.measured(
                    port, path, process.pid, clients=CLIENTS, duration=args.duration, key=key
                )
                paced = loadgen.measured(
                    port, path, process.pid, clients=CLIENTS, duration=args.duration,
                    period=period, key=key,
                )  # fmt: skip
            # Every read again with the cache off: the router, a thread hop and a query each,
            # what pollers of many different jobs get.
            with loadgen.serve_app({**env, "LAYERFUSE_JOB_READ_CACHE_S": "0"}) as (
                port,
                key,
                process,
            ):
                job = loadgen.queued_job(port, key, Path(tmp))
                uncached = loadgen.measured(
                    port, f"/v1/jobs/{job}", process.pid, clients=CLIENTS,
                    duration=args.duration, key=key,
                )  # fmt: skip
            results[name] = {
                "cache_off": {
                    "back_to_back": uncached,
                    "ratio_to_bare": round(uncached["req_per_s"] / bare["req_per_s"], 3),
                },
                "back_to_back": saturated,
                "ratio_to_bare": round(saturated["req_per_s"] / bare["req_per_s"], 3),
                "at_half_bare_rate": {"offered_req_per_s": round(half_rate, 1), **paced},
                "goals_met": saturated["req_per_s"] >= 0.5 * bare["req_per_s"]
                and saturated["errors"] == 0
                and paced["errors"] == 0
                and (paced["p99_ms"] or 1e9) < 50,
            }
    report["get_job"] = results
    loadgen.write_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
