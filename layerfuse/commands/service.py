"""``layerfuse serve | worker | up | submit | status | cancel``: the job service and its client.

- ``serve`` runs the API (uvicorn), ``worker`` a Celery worker (one job at a time), both after
  bringing the database schema up to date; ``up`` runs both on the embedded defaults (SQLite and
  the filesystem broker under ``./.layerfuse``) and prints the URL and a generated API key.
- ``submit`` uploads a model directory and dataset files, creates a job, follows its events with a
  progress bar and downloads the result into ``--out`` (the layout of ``layerfuse compress``);
  ``status`` and ``cancel`` act on a job id. They talk HTTP only (api.md), to ``--url`` /
  ``LAYERFUSE_URL`` with ``--api-key`` / ``LAYERFUSE_API_KEY``.

Exit status: 0 on success, 2 on bad arguments or input (the API's problem detail is printed),
1 on a failed or cancelled job or an unreachable server, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .compress import add_method_arguments, method_fields

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_DATA_DIR = Path(".layerfuse")
KEY_FILE = "api_key"
TERMINAL = ("succeeded", "failed", "cancelled")


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser("serve", help="run the API server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(run=run_serve)

    worker = subparsers.add_parser("worker", help="run a worker (one job at a time)")
    worker.add_argument(
        "--pool",
        choices=["prefork", "solo"],
        default="prefork",
        help="prefork enforces the job time limit; solo is for debugging",
    )
    worker.add_argument("--log-level", default="info")
    worker.set_defaults(run=run_worker)

    up = subparsers.add_parser(
        "up", help="run the API and one worker on the embedded defaults (no servers needed)"
    )
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument(
        "--data-dir", type=Path, default=None, help="default: $LAYERFUSE_DATA_DIR or ./.layerfuse"
    )
    up.set_defaults(run=run_up)

    submit = subparsers.add_parser(
        "submit", help="compress on a layerfuse server: upload, create a job, follow, download"
    )
    submit.add_argument(
        "--model", required=True, type=Path, help="Hugging Face model directory (safetensors)"
    )
    add_method_arguments(submit)
    submit.add_argument("--out", required=True, type=Path, help="output directory")
    submit.add_argument(
        "--metadata",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="free metadata stored with the job (repeatable)",
    )
    submit.add_argument(
        "--no-follow",
        action="store_true",
        help="print the job id and return once the job is created",
    )
    _client_arguments(submit)
    submit.set_defaults(run=run_submit)

    status = subparsers.add_parser("status", help="show a job")
    status.add_argument("job_id", metavar="JOB")
    status.add_argument("--json", action="store_true", help="print the job object as JSON")
    _client_arguments(status)
    status.set_defaults(run=run_status)

    cancel = subparsers.add_parser("cancel", help="cancel a job")
    cancel.add_argument("job_id", metavar="JOB")
    _client_arguments(cancel)
    cancel.set_defaults(run=run_cancel)


def _client_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=None, help=f"default: $LAYERFUSE_URL or {DEFAULT_URL}")
    parser.add_argument(
        "--api-key",
        default=None,
        help="default: $LAYERFUSE_API_KEY, else the key `layerfuse up` saved",
    )


# --- serve, worker, up ----------------------------------------------------------------------


def _prepare_store() -> Any:
    """Settings, checked, with the database schema brought up to date."""
    from service.settings import get_settings
    from service.store import upgrade

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    return settings


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.settings import ConfigError

    try:
        settings = _prepare_store()
        settings.check_api_secrets()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=5,
    )
    return EXIT_OK


def run_worker(args: argparse.Namespace) -> int:
    settings = _prepare_store()
    from worker.celery_app import app

    argv = [
        "worker",
        f"--loglevel={args.log_level.upper()}",
        "--concurrency=1",
        f"--pool={args.pool}",
        f"--queues={settings.queue_name}",
        "--without-gossip",
        "--without-mingle",
    ]
    if args.pool == "prefork":
        # A fresh process per job returns its memory (and GPU memory) to the system.
        argv.append("--max-tasks-per-child=1")
    app.worker_main(argv)
    return EXIT_OK


def run_up(args: argparse.Namespace) -> int:
    data_dir = args.data_dir or Path(os.environ.get("LAYERFUSE_DATA_DIR", DEFAULT_DATA_DIR))
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = _local_key(data_dir)
    env = {**os.environ, "LAYERFUSE_DATA_DIR": str(data_dir), "LAYERFUSE_API_KEYS": f"local:{key}"}
    from service.settings import Settings
    from service.store import upgrade

    upgrade(Settings(data_dir=data_dir).resolved_database_url)
    command = [sys.executable, "-m", "layerfuse.cli"]
    processes = [
        subprocess.Popen([*command, "worker"], env=env),
        subprocess.Popen(
            [*command, "serve", "--host", args.host, "--port", str(args.port)], env=env
        ),
    ]
    url = f"http://{args.host}:{args.port}"
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        ready = _wait_ready(url, processes, lambda: stopping)
        if not stopping:
            print(
                f"\nlayerfuse is up at {url} (API docs: {url}/docs)"
                + ("" if ready else "; the worker is still starting")
                + f"\nAPI key: {key}\n"
                f"  export LAYERFUSE_URL={url} LAYERFUSE_API_KEY={key}\n"
                f"Data: {data_dir}\nStop with Ctrl-C.\n",
                flush=True,
            )
        while not stopping and all(p.poll() is None for p in processes):
            time.sleep(0.5)
        failed = not stopping
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
    if failed:
        print("error: a layerfuse process stopped; shutting down", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _local_key(data_dir: Path) -> str:
    """The key of this data directory, generated on first use and kept (mode 0600)."""
    path = data_dir / KEY_FILE
    if path.is_file():
        return path.read_text().strip()
    key = "lf_" + secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key


def _wait_ready(url: str, processes: list[subprocess.Popen[bytes]], stopping: Any) -> bool:
    import httpx

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not stopping():
        if any(p.poll() is not None for p in processes):
            return False
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


# --- The client: submit, status, cancel -----------------------------------------------------


class ApiProblem(Exception):
    """An error answer of the API; ``exit_code`` is 2 for a client error, else 1."""

    def __init__(self, status: int, body: dict[str, Any]):
        self.status = status
        self.body = body
        code = body.get("code", "error")
        where = f" ({body['param']})" if body.get("param") else ""
        super().__init__(f"[{code}]{where}: {body.get('detail') or body.get('title') or status}")

    @property
    def exit_code(self) -> int:
        return EXIT_BAD_INPUT if 400 <= self.status < 500 else EXIT_FAILED


class Client:
    def __init__(self, url: str, key: str | None):
        import httpx

        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(
            base_url=url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(connect=10, read=600, write=600, pool=10),
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"detail": response.text[:300]}
            raise ApiProblem(response.status_code, body)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    def events(self, job_id: str, after: str | None) -> Iterator[dict[str, Any]]:
        """The job's events from ``after`` on, until its terminal status event.

        Follows the stream and resumes after the last event seen when the connection drops.
        """
        import httpx

        while True:
            headers = {"Last-Event-ID": after} if after else {}
            try:
                with self.http.stream(
                    "GET",
                    f"/v1/jobs/{job_id}/events/stream",
                    headers=headers,
                    timeout=httpx.Timeout(connect=10, read=60, write=60, pool=10),
                ) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise ApiProblem(response.status_code, response.json())
                    for line in response.iter_lines():
                        if line.startswith("data: "):
                            event = json.loads(line[6:])
                            after = event["id"]
                            yield event
                            if (event.get("data") or {}).get("status") in TERMINAL:
                                return
            except httpx.TransportError:
                pass
            time.sleep(1.0)  # the stream dropped: resume after the last event seen


def _client(args: argparse.Namespace) -> Client:
    url = args.url or os.environ.get("LAYERFUSE_URL") or DEFAULT_URL
    key = args.api_key or os.environ.get("LAYERFUSE_API_KEY")
    if not key:
        saved = Path(os.environ.get("LAYERFUSE_DATA_DIR", DEFAULT_DATA_DIR)) / KEY_FILE
        if saved.is_file():
            key = saved.read_text().strip()
    return Client(url, key)


def _guarded(body: Any) -> int:
    """Run a client command, mapping API problems and connection errors to exit codes."""
    import httpx

    try:
        return int(body())
    except ApiProblem as exc:
        print(f"error {exc}", file=sys.stderr)
        return exc.exit_code
    except httpx.HTTPError as exc:
        print(f"error: cannot reach the layerfuse server: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def run_status(args: argparse.Namespace) -> int:
    def body() -> int:
        job = _client(args).json("GET", f"/v1/jobs/{args.job_id}")
        if args.json:
            print(json.dumps(job, indent=2))
        else:
            print(_describe(job))
        return EXIT_FAILED if job["status"] == "failed" else EXIT_OK

    return _guarded(body)


def run_cancel(args: argparse.Namespace) -> int:
    def body() -> int:
        job = _client(args).json("POST", f"/v1/jobs/{args.job_id}/cancel")
        print(f"{job['id']}: {job['status']}")
        return EXIT_OK

    return _guarded(body)


def _describe(job: dict[str, Any]) -> str:
    lines = [f"{job['id']}: {job['status']}" + (f" ({job['stage']})" if job.get("stage") else "")]
    progress = job.get("progress")
    if progress and job["status"] in ("running", "cancelling"):
        eta = progress.get("eta_seconds")
        lines.append(
            f"  progress {progress['fraction']:.0%}" + (f", about {eta} s left" if eta else "")
        )
    if job.get("error"):
        error = job["error"]
        lines.append(
            f"  error [{error['code']}] in {error.get('stage') or 'setup'}: {error['message']}"
        )
    if job.get("result"):
        lines.extend("  " + line for line in _summary_lines(job["result"]))
    return "\n".join(lines)


def _summary_lines(result: dict[str, Any]) -> list[str]:
    lines = [
        f"{result.get('strategy')}: removed layers {result.get('removed_layers')}, "
        f"kept {result.get('kept_layers')}"
    ]
    try:
        base = result["baseline"]["validation"]["accuracy"]
        final = result["final"]["validation"]["accuracy"]
        params = result["parameters"]
        lines.append(
            f"validation accuracy {base:.4f} -> {final:.4f}; "
            f"parameters {params['before']:,} -> {params['after']:,}"
        )
    except (KeyError, TypeError):
        pass
    return lines


def run_submit(args: argparse.Namespace) -> int:
    from service.allowlist import MODEL_FILES, SHARD_PATTERN

    if not args.model.is_dir():
        print(f"error: --model {args.model} is not a directory", file=sys.stderr)
        return EXIT_BAD_INPUT
    files = sorted(p for p in args.model.iterdir() if p.is_file())
    uploads = [p for p in files if p.name in MODEL_FILES or SHARD_PATTERN.match(p.name)]
    skipped = [p.name for p in files if p not in uploads]
    if skipped:
        print(f"not uploading (not part of a model upload): {', '.join(skipped)}", file=sys.stderr)
    splits = {s: getattr(args, s) for s in ("train", "validation", "test") if getattr(args, s)}
    for split, path in splits.items():
        if not path.is_file():
            print(f"error: --{split} {path} is not a file", file=sys.stderr)
            return EXIT_BAD_INPUT
    metadata = {}
    for item in args.metadata:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"error: --metadata {item!r}: use KEY=VALUE", file=sys.stderr)
            return EXIT_BAD_INPUT
        metadata[key] = value

    def body() -> int:
        client = _client(args)
        print(f"uploading {len(uploads)} model files from {args.model}", file=sys.stderr)
        model = client.json(
            "POST",
            "/v1/models",
            files=[("files", (p.name, p.open("rb"))) for p in uploads],
        )
        dataset: dict[str, Any] = {}
        for split, path in splits.items():
            with path.open("rb") as f:
                dataset[split] = client.json(
                    "POST", "/v1/datasets", files={"file": (path.name, f)}
                )["id"]
        fields = method_fields(args)
        dataset.update(fields.pop("columns"))
        job_body = {
            "model": {"source": "upload", "id": model["id"]},
            "dataset": dataset,
            **fields,
            "metadata": metadata,
        }
        job = _create_job(client, job_body)
        print(f"created {job['id']}", file=sys.stderr)
        if args.no_follow:
            print(job["id"])
            return EXIT_OK
        try:
            job = _follow(client, job)
        except KeyboardInterrupt:
            print(
                f"\nstopped following; {job['id']} keeps running on the server "
                f"(layerfuse cancel {job['id']})",
                file=sys.stderr,
            )
            return EXIT_INTERRUPTED
        if job["status"] != "succeeded":
            print(_describe(job), file=sys.stderr)
            return EXIT_FAILED
        _download(client, job, args.out)
        for line in _summary_lines(job["result"]):
            print(line)
        print(f"wrote {args.out}/model and the report, model card and plots")
        return EXIT_OK

    return _guarded(body)


def _create_job(client: Client, body: dict[str, Any]) -> dict[str, Any]:
    """Create the job, retrying a few times while the queue is unavailable (503)."""
    key = str(uuid.uuid4())
    for attempt in range(5):
        try:
            job: dict[str, Any] = client.json(
                "POST", "/v1/jobs", json=body, headers={"Idempotency-Key": key}
            )
            return job
        except ApiProblem as exc:
            if exc.status != 503 or attempt == 4:
                raise
            time.sleep(2 + 2 * attempt)
    raise AssertionError("unreachable")


def _follow(client: Client, job: dict[str, Any]) -> dict[str, Any]:
    from tqdm import tqdm

    bar = tqdm(
        total=1000,
        unit="‰",
        file=sys.stderr,
        bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}",
    )
    try:
        for event in client.events(job["id"], None):
            data = event.get("data") or {}
            if event["type"] == "stage":
                bar.set_description(str(data.get("stage", "")).replace("_", " "))
            elif event["type"] == "progress" and "fraction" in data:
                bar.update(max(int(data["fraction"] * 1000) - bar.n, 0))
            elif event["type"] in ("message", "status") or event["level"] != "info":
                bar.write(event["message"], file=sys.stderr)
            if data.get("status") == "succeeded":
                bar.update(bar.total - bar.n)
    finally:
        bar.close()
    final: dict[str, Any] = client.json("GET", f"/v1/jobs/{job['id']}")
    return final


def _download(client: Client, job: dict[str, Any], out: Path) -> None:
    """``out/model/`` from model.zip, plus the report, model card and plots."""
    out.mkdir(parents=True, exist_ok=True)
    listed = client.json("GET", f"/v1/jobs/{job['id']}/artifacts")["data"]
    archive = out / ".model.zip.part"
    with client.http.stream("GET", f"/v1/jobs/{job['id']}/artifacts/model.zip") as response:
        if response.status_code >= 400:
            response.read()
            raise ApiProblem(response.status_code, response.json())
        with archive.open("wb") as f:
            for chunk in response.iter_bytes(1 << 20):
                f.write(chunk)
    _extract_model(archive, out)
    archive.unlink()
    for artifact in listed:
        name = artifact["name"]
        if "/" in name or name == "model.zip":
            continue
        content = client.request("GET", f"/v1/jobs/{job['id']}/artifacts/{name}").content
        (out / name).write_bytes(content)


def _extract_model(archive: Path, out: Path) -> None:
    target = (out / "model").resolve()
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            name = Path(info.filename)
            if info.is_dir() or name.parts[:1] != ("model",) or len(name.parts) != 2:
                continue  # only model/<file>: never a path outside out/model
            with zf.open(info) as src, (target / name.name).open("wb") as dst:
                while block := src.read(1 << 20):
                    dst.write(block)
