"""Many pollers of ``GET /v1/jobs/{id}``, on SQLite and PostgreSQL, with ``/healthz`` probed.

For each backend, a real ``layerfuse serve`` (``benchmarks/loadgen.py``) takes two phases while a
second client process polls ``/healthz`` every 0.1 s:

- 200 clients that each poll once a second (as real pollers do): goal 0 errors, p99 < 100 ms;
- 150 clients polling back to back: goal 0 errors and 0 timeouts (503 with ``Retry-After`` is
  allowed, a 500 never);

and ``/healthz`` under 50 ms throughout both.

    python benchmarks/pollers.py                       # writes benchmarks/results/pollers.json
    python benchmarks/pollers.py --duration 20 --backends sqlite --out /tmp/p.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import loadgen


def _goals(paced: dict[str, Any], flood: dict[str, Any]) -> dict[str, bool]:
    health = [paced["healthz"], flood["healthz"]]
    return {
        "paced_0_errors_p99_under_100ms": paced["errors"] == 0
        and paced["timeouts"] == 0
        and (paced["p99_ms"] or 1e9) < 100,
        "flood_0_errors_0_timeouts": flood["errors"] == 0 and flood["timeouts"] == 0,
        "healthz_under_50ms": all((h["max_ms"] or 1e9) < 50 and h["errors"] == 0 for h in health),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per phase")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument(
        "--out", type=Path, default=loadgen.REPO / "benchmarks/results/pollers.json"
    )
    args = parser.parse_args()

    report: dict[str, Any] = {
        "what": "GET /v1/jobs/{id}: 200 clients once a second, then 150 back to back; /healthz "
        "every 0.1 s from another process; latency at the client; errors = 5xx other than 503 "
        "with Retry-After, transport errors; timeouts after 10 s",
        "machine_before": loadgen.machine_state(),
    }
    results: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        loadgen.backends(Path(tmp), args.backends.split(",")) as envs,
    ):
        for name, env in envs.items():
            with loadgen.serve_app(env) as (port, key, process):
                path = f"/v1/jobs/{loadgen.queued_job(port, key, Path(tmp))}"
                common = dict(duration=args.duration, key=key, probe_port=port)
                paced = loadgen.measured(port, path, process.pid, clients=200, period=1.0, **common)
                flood = loadgen.measured(port, path, process.pid, clients=150, **common)
            results[name] = {
                "pollers_200_once_a_second": paced,
                "pollers_150_back_to_back": flood,
                "goals_met": _goals(paced, flood),
            }
    report["results"] = results
    loadgen.write_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
