"""``layerfuse serve | worker | webhooks | up | submit | status | cancel``: the job service and
its client.

- ``serve`` runs the API (uvicorn), ``worker`` a Celery worker (one job at a time), ``webhooks``
  the webhook delivery worker (a thread pool), each after bringing the database schema up to date;
  ``up`` runs all three on the embedded defaults (SQLite and the filesystem broker under
  ``./.layerfuse``) and prints the URL and a generated API key.
- ``submit`` uploads a model directory and dataset files, creates a job, follows its events with a
  progress bar and downloads the result into ``--out`` (the layout of ``layerfuse compress``);
  ``status`` and ``cancel`` act on a job id. They use :mod:`layerfuse.client` against ``--url`` /
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
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .compress import add_method_arguments, method_fields

if TYPE_CHECKING:
    from layerfuse.client import Client, Job

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_DATA_DIR = Path(".layerfuse")
KEY_FILE = "api_key"
SIGNING_KEY_FILE = "webhook_signing_key"


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

    webhooks = subparsers.add_parser(
        "webhooks", help="run the webhook delivery worker (signed, retried deliveries)"
    )
    webhooks.add_argument("--log-level", default="info")
    webhooks.set_defaults(run=run_webhooks)

    up = subparsers.add_parser(
        "up",
        help="run the API, a worker and the webhook worker on the embedded defaults "
        "(no servers needed)",
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
    from layerfuse.service.settings import get_settings
    from layerfuse.service.store import upgrade

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    return settings


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from layerfuse.service.settings import ConfigError

    try:
        settings = _prepare_store()
        settings.check_api_secrets()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    uvicorn.run(
        "layerfuse.service.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=5,
    )
    return EXIT_OK


def run_worker(args: argparse.Namespace) -> int:
    settings = _prepare_store()
    from layerfuse.worker.celery_app import app

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


def run_webhooks(args: argparse.Namespace) -> int:
    settings = _prepare_store()
    from layerfuse.service.broker import webhook_queue
    from layerfuse.worker import celery_app

    celery_app.role = "webhooks"
    celery_app.app.worker_main(
        [
            "worker",
            f"--loglevel={args.log_level.upper()}",
            "--pool=threads",
            f"--concurrency={settings.webhook_concurrency}",
            f"--queues={webhook_queue(settings)}",
            "--hostname=webhooks@%h",
            "--without-gossip",
            "--without-mingle",
        ]
    )
    return EXIT_OK


def run_up(args: argparse.Namespace) -> int:
    data_dir = args.data_dir or Path(os.environ.get("LAYERFUSE_DATA_DIR", DEFAULT_DATA_DIR))
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = _local_key(data_dir)
    env = {
        **os.environ,
        "LAYERFUSE_DATA_DIR": str(data_dir),
        "LAYERFUSE_API_KEYS": f"local:{key}",
        "LAYERFUSE_WEBHOOK_SIGNING_KEY": os.environ.get("LAYERFUSE_WEBHOOK_SIGNING_KEY")
        or _local_key(data_dir, SIGNING_KEY_FILE, "whk_"),
    }
    from layerfuse.service.settings import Settings
    from layerfuse.service.store import upgrade

    settings = Settings(data_dir=data_dir, webhook_signing_key=env["LAYERFUSE_WEBHOOK_SIGNING_KEY"])
    upgrade(settings.resolved_database_url)
    command = [sys.executable, "-m", "layerfuse.cli"]
    processes = [
        subprocess.Popen([*command, "worker"], env=env),
        subprocess.Popen([*command, "webhooks"], env=env),
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
                f"Webhook secret (verify deliveries with it): "
                f"{settings.webhook_secret_text('local')}\n"
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


def _local_key(data_dir: Path, name: str = KEY_FILE, prefix: str = "lf_") -> str:
    """A key of this data directory, generated on first use and kept (mode 0600)."""
    path = data_dir / name
    if path.is_file():
        return path.read_text().strip()
    key = prefix + secrets.token_urlsafe(32)
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


def _client(args: argparse.Namespace) -> Client:
    from layerfuse.client import Client

    url = args.url or os.environ.get("LAYERFUSE_URL") or DEFAULT_URL
    key = args.api_key or os.environ.get("LAYERFUSE_API_KEY")
    if not key:
        saved = Path(os.environ.get("LAYERFUSE_DATA_DIR", DEFAULT_DATA_DIR)) / KEY_FILE
        if saved.is_file():
            key = saved.read_text().strip()
    return Client(url, key)


def _guarded(body: Callable[[], int]) -> int:
    """Run a client command, mapping API problems and connection errors to exit codes."""
    from layerfuse.client import APIError, LayerfuseClientError

    try:
        return int(body())
    except APIError as exc:
        print(f"error {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT if 400 <= exc.status < 500 and exc.status != 429 else EXIT_FAILED
    except LayerfuseClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def run_status(args: argparse.Namespace) -> int:
    def body() -> int:
        with _client(args) as client:
            job = client.get_job(args.job_id)
        if args.json:
            print(json.dumps(job, indent=2))
        else:
            print(_describe(job))
        return EXIT_FAILED if job["status"] == "failed" else EXIT_OK

    return _guarded(body)


def run_cancel(args: argparse.Namespace) -> int:
    def body() -> int:
        with _client(args) as client:
            job = client.cancel_job(args.job_id)
        print(f"{job['id']}: {job['status']}")
        return EXIT_OK

    return _guarded(body)


def _describe(job: Job) -> str:
    lines = [f"{job['id']}: {job['status']}" + (f" ({job['stage']})" if job.get("stage") else "")]
    progress = job.get("progress")
    if progress and job["status"] in ("running", "cancelling"):
        eta = progress.get("eta_seconds")
        lines.append(
            f"  progress {progress['fraction']:.0%}" + (f", about {eta} s left" if eta else "")
        )
    error = job.get("error")
    if error:
        lines.append(
            f"  error [{error['code']}] in {error.get('stage') or 'setup'}: {error['message']}"
        )
    if job.get("result"):
        lines.extend("  " + line for line in _summary_lines(job["result"] or {}))
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
    for integration in result.get("integrations") or []:
        if integration.get("status") == "succeeded":
            registered = integration.get("registered_model")
            lines.append(
                f"{integration['type']}: run {integration.get('run_id')}"
                + (f", {registered['name']} version {registered['version']}" if registered else "")
            )
        else:
            error = integration.get("error") or {}
            lines.append(
                f"{integration['type']}: failed [{error.get('code')}] {error.get('message')}"
            )
    return lines


def run_submit(args: argparse.Namespace) -> int:
    from layerfuse.client import model_files

    if not args.model.is_dir():
        print(f"error: --model {args.model} is not a directory", file=sys.stderr)
        return EXIT_BAD_INPUT
    uploads, skipped = model_files(args.model)
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
        with _client(args) as client:
            return _submit(client, args, uploads, splits, metadata)

    return _guarded(body)


def _submit(
    client: Client,
    args: argparse.Namespace,
    uploads: list[Path],
    splits: dict[str, Path],
    metadata: dict[str, str],
) -> int:
    print(f"uploading {len(uploads)} model files from {args.model}", file=sys.stderr)
    model = client.upload_model(uploads)
    dataset: dict[str, Any] = {
        split: client.upload_dataset(path)["id"] for split, path in splits.items()
    }
    fields = method_fields(args)
    dataset.update(fields.pop("columns"))
    job = client.create_job(
        {
            "model": {"source": "upload", "id": model["id"]},
            "dataset": dataset,
            **fields,
            "metadata": metadata,
        }
    )
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
    for line in _summary_lines(job["result"] or {}):
        print(line)
    print(f"wrote {args.out}/model and the report, model card and plots")
    return EXIT_OK


def _follow(client: Client, job: Job) -> Job:
    from tqdm import tqdm

    bar = tqdm(
        total=1000,
        unit="‰",
        file=sys.stderr,
        bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}",
    )
    try:
        for event in client.follow_events(job["id"]):
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
    return client.get_job(job["id"])


def _download(client: Client, job: Job, out: Path) -> None:
    """``out/model/`` from model.zip, plus the report, model card, plots (and model.onnx)."""
    out.mkdir(parents=True, exist_ok=True)
    listed = client.list_artifacts(job["id"])
    archive = client.download_artifact(job["id"], "model.zip", out / ".model.zip")
    _extract_model(archive, out)
    archive.unlink()
    for artifact in listed:
        name = artifact["name"]
        if "/" in name or name == "model.zip":
            continue
        client.download_artifact(job["id"], name, out / name)


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
