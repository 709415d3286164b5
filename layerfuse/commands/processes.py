"""``layerfuse serve | worker | webhooks | up``: the service's processes.

``serve`` runs the API (uvicorn), ``worker`` a Celery worker (:mod:`.worker`), ``webhooks``
the webhook delivery worker (a thread pool), each after bringing the database schema up to date.
``up`` supervises all three on the embedded defaults (SQLite and the filesystem broker under
``./.layerfuse``): with ``LAYERFUSE_API_KEYS`` set it serves exactly those keys and names their
tenants; without it, it generates a key for tenant ``local``, keeps it in the data directory and
prints it.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import worker as worker_command
from .exit_codes import EXIT_BAD_INPUT, EXIT_OK
from .supervisor import Processes, supervise

if TYPE_CHECKING:
    from layerfuse.service.settings import Settings

DEFAULT_DATA_DIR = Path(".layerfuse")
KEY_FILE = "api_key"
SIGNING_KEY_FILE = "webhook_signing_key"
LOCAL_TENANT = "local"
READY_TIMEOUT_S = 90
STOP_GRACE_S = 15  # then a process that has not stopped is killed


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser("serve", help="run the API server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=port, default=8000)
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(run=run_serve)

    worker_command.register(subparsers)

    webhooks = subparsers.add_parser(
        "webhooks", help="run the webhook delivery worker (signed, retried deliveries)"
    )
    webhooks.add_argument("--log-level", default="info")
    webhooks.set_defaults(run=run_webhooks)

    up = subparsers.add_parser(
        "up",
        help="run the API, a worker and the webhook worker on the embedded defaults "
        "(no servers needed)",
        description="Run the API, a worker and the webhook worker on SQLite and the filesystem "
        "broker. Serves the keys of $LAYERFUSE_API_KEYS when it is set; otherwise generates a "
        "key for tenant 'local' (kept in the data directory) and prints it.",
    )
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=port, default=8000)
    up.add_argument(
        "--data-dir", type=Path, default=None, help="default: $LAYERFUSE_DATA_DIR or ./.layerfuse"
    )
    up.set_defaults(run=run_up)


def port(value: str) -> int:
    """A TCP port to listen on (uvicorn took 99999 and listened on 99999 mod 65536)."""
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a TCP port (1-65535)")
    return int(value)


def data_dir_from_env() -> Path:
    """The data directory ``up`` uses and the client looks in for the saved key."""
    return Path(os.environ.get("LAYERFUSE_DATA_DIR") or DEFAULT_DATA_DIR)


def load_settings(*, check_api_secrets: bool, **overrides: Any) -> Settings | None:
    """Settings from the environment (and ``overrides``), checked as the API checks them, with
    the data directory made and the database schema brought up to date; None after printing the
    reason (never the values: they may be keys) when they are unusable."""
    from pydantic import ValidationError

    from layerfuse.service.settings import ConfigError, Settings, get_settings

    try:
        settings = Settings(**overrides) if overrides else get_settings()
        if check_api_secrets:
            settings.check_api_secrets()
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"]) or "settings"
            print(f"error: {field}: {error['msg']}", file=sys.stderr)
        return None
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    from layerfuse.service.store import upgrade

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    return settings


def run_serve(args: argparse.Namespace) -> int:
    import gc

    import uvicorn

    import layerfuse.service.app  # noqa: F401  (imported here so that gc.freeze covers it)

    settings = load_settings(check_api_secrets=True)
    if settings is None:
        return EXIT_BAD_INPUT
    # What is imported now (FastAPI, pydantic, SQLAlchemy, the app's modules) lives as long as
    # the process. Frozen out of the collector's generations, it is no longer walked by every
    # full collection, which paused the event loop for tens of milliseconds under load.
    gc.collect()
    gc.freeze()
    uvicorn.run(
        "layerfuse.service.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=5,
    )
    return EXIT_OK


def run_webhooks(args: argparse.Namespace) -> int:
    settings = load_settings(check_api_secrets=False)
    if settings is None:
        return EXIT_BAD_INPUT
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
    data_dir = (args.data_dir or data_dir_from_env()).resolve()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file, or below one, or not writable
        print(f"error (--data-dir): cannot use {data_dir}: {exc.strerror}", file=sys.stderr)
        return EXIT_BAD_INPUT
    configured = os.environ.get("LAYERFUSE_API_KEYS", "").strip()
    generated = None if configured else _local_key(data_dir)
    env = {
        **os.environ,
        "LAYERFUSE_DATA_DIR": str(data_dir),
        "LAYERFUSE_API_KEYS": configured or f"{LOCAL_TENANT}:{generated}",
        "LAYERFUSE_WEBHOOK_SIGNING_KEY": os.environ.get("LAYERFUSE_WEBHOOK_SIGNING_KEY")
        or _local_key(data_dir, SIGNING_KEY_FILE, "whk_"),
    }
    # Checked here, before any process starts, so a bad key is one clear error, not three.
    settings = load_settings(
        check_api_secrets=True,
        data_dir=data_dir,
        api_keys=env["LAYERFUSE_API_KEYS"],
        webhook_signing_key=env["LAYERFUSE_WEBHOOK_SIGNING_KEY"],
    )
    if settings is None:
        return EXIT_BAD_INPUT
    url = f"http://{args.host}:{args.port}"
    command = [sys.executable, "-m", "layerfuse.cli"]
    commands = [
        [*command, "worker"],
        [*command, "webhooks"],
        [*command, "serve", "--host", args.host, "--port", str(args.port)],
    ]

    def started(processes: Processes, stopping: Callable[[], bool]) -> None:
        ready = _wait_ready(url, processes, stopping)
        if not stopping():
            print(_up_banner(url, ready, settings, generated), flush=True)

    return supervise(
        [(c, env) for c in commands],
        failure="a layerfuse process stopped; shutting down",
        grace_s=STOP_GRACE_S,
        started=started,
    )


def _up_banner(url: str, ready: bool, settings: Settings, generated: str | None) -> str:
    """What ``up`` prints once it answers: where, and which keys it accepts (never a configured
    key: only a generated one, which exists nowhere else yet)."""
    lines = [
        f"\nlayerfuse is up at {url} (API docs: {url}/docs)"
        + ("" if ready else "; the worker is still starting")
    ]
    if generated:
        lines += [
            f"API key: {generated}",
            f"  export LAYERFUSE_URL={url} LAYERFUSE_API_KEY={generated}",
            "Webhook secret (verify deliveries with it): "
            f"{settings.webhook_secret_text(LOCAL_TENANT)}",
        ]
    else:
        tenants = sorted({owner.tenant for owner in settings.api_keys.values()})
        lines += [
            f"API keys from LAYERFUSE_API_KEYS for tenants: {', '.join(tenants)}",
            f"  export LAYERFUSE_URL={url} LAYERFUSE_API_KEY=<one of those keys>",
        ]
    lines += [f"Data: {settings.data_dir}", "Stop with Ctrl-C.\n"]
    return "\n".join(lines)


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


def _wait_ready(url: str, processes: Processes, stopping: Callable[[], bool]) -> bool:
    import httpx

    deadline = time.monotonic() + READY_TIMEOUT_S
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
