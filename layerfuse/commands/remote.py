"""``layerfuse submit | status | cancel | jobs | events | download``: a layerfuse server's jobs,
through :mod:`layerfuse.client`, against ``--url`` / ``LAYERFUSE_URL`` with ``--api-key`` /
``LAYERFUSE_API_KEY`` (else the key ``layerfuse up`` saved in its data directory).

- ``submit`` uploads a model directory and dataset files, creates a job, follows its events with
  a progress bar and downloads the result into ``--out`` (the layout of ``layerfuse compress``);
- ``status``, ``cancel``, ``events`` (followed until the job ends) and ``download`` act on a job
  id; ``jobs`` lists them, newest first.

Every command that prints a result takes ``--json``: the API's objects on stdout, messages on
stderr. Exit status: 0 on success, 2 on bad arguments or input (the API's problem detail is
printed), 1 on a failed or cancelled job or an unreachable server, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .compress import add_method_arguments, method_fields
from .exit_codes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from .output import add_json_argument, print_json, summary_lines
from .processes import KEY_FILE, data_dir_from_env
from .progress import ProgressBar

if TYPE_CHECKING:
    from layerfuse.client import Client, Event, Job

DEFAULT_URL = "http://127.0.0.1:8000"
# The client's copy (layerfuse.client.JOB_STATUSES), spelled out so that `--help` and shell
# completion never import httpx; a test keeps the two equal.
JOB_STATUSES = ("queued", "running", "cancelling", "succeeded", "failed", "cancelled")


def register(subparsers: argparse._SubParsersAction) -> None:
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
    status.add_argument("job_id", metavar="JOB", type=_job_id)
    _client_arguments(status)
    status.set_defaults(run=run_status)

    cancel = subparsers.add_parser("cancel", help="cancel a job")
    cancel.add_argument("job_id", metavar="JOB", type=_job_id)
    _client_arguments(cancel)
    cancel.set_defaults(run=run_cancel)

    jobs = subparsers.add_parser("jobs", help="list jobs, newest first")
    jobs.add_argument("--status", choices=JOB_STATUSES, help="only jobs in this status")
    jobs.add_argument("--limit", type=int, default=20, help="at most this many (1-100)")
    jobs.add_argument("--after", metavar="JOB", type=_job_id, help="the page after this job id")
    _client_arguments(jobs)
    jobs.set_defaults(run=run_jobs)

    events = subparsers.add_parser(
        "events", help="print a job's events, following them until the job ends"
    )
    events.add_argument("job_id", metavar="JOB", type=_job_id)
    # Checked here: the client sends it as Last-Event-ID, the header the server's error names.
    events.add_argument(
        "--after", metavar="EVENT", type=_event_id, help="start after this event id"
    )
    events.add_argument(
        "--no-follow", action="store_true", help="print the events so far and return"
    )
    _client_arguments(events, json_help="print each event as one JSON object per line")
    events.set_defaults(run=run_events)

    download = subparsers.add_parser(
        "download", help="download a succeeded job's model, report, model card and plots"
    )
    download.add_argument("job_id", metavar="JOB", type=_job_id)
    download.add_argument("--out", type=Path, help="output directory (default: ./JOB)")
    _client_arguments(download)
    download.set_defaults(run=run_download)


def _job_id(value: str) -> str:
    """A JOB argument: a job id (``job_...``), never empty (an unset ``$JOB``) or a path."""
    return _id(value, "a job id (job_... as `layerfuse submit` and `jobs` print them)")


def _event_id(value: str) -> str:
    return _id(value, "an event id (evt_... as `layerfuse events --json` prints them)")


def _id(value: str, what: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,100}", value):
        raise argparse.ArgumentTypeError(f"{value!r} is not {what}")
    return value


def _client_arguments(parser: argparse.ArgumentParser, json_help: str | None = None) -> None:
    parser.add_argument("--url", default=None, help=f"default: $LAYERFUSE_URL or {DEFAULT_URL}")
    parser.add_argument(
        "--api-key",
        default=None,
        help="default: $LAYERFUSE_API_KEY, else the key `layerfuse up` saved",
    )
    if json_help:
        parser.add_argument("--json", action="store_true", help=json_help)
    else:
        add_json_argument(parser)


# --- Connection and errors --------------------------------------------------------------------


def _client(args: argparse.Namespace) -> Client:
    from layerfuse.client import Client

    return Client(_url(args), _api_key(args)[0])


def _url(args: argparse.Namespace) -> str:
    return str(args.url or os.environ.get("LAYERFUSE_URL") or DEFAULT_URL)


def _bad_connection_arguments(args: argparse.Namespace) -> str | None:
    """What is wrong with the server URL or the API key, before any request: they were sent and
    failed as a 'broken connection' after the retries, or as a UnicodeEncodeError traceback."""
    from urllib.parse import urlsplit

    url = _url(args)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"--url {url!r} is not an http(s) URL such as {DEFAULT_URL}"
    key = _api_key(args)[0]
    if key is not None and not re.fullmatch(r"[\x21-\x7e]+", key):
        return "--api-key (or LAYERFUSE_API_KEY) holds spaces or characters outside ASCII"
    return None


def _api_key(args: argparse.Namespace) -> tuple[str | None, Path | None]:
    """The key to send, and the file it was read from when it came from ``layerfuse up``."""
    key = args.api_key or os.environ.get("LAYERFUSE_API_KEY")
    if key:
        return key, None
    saved = data_dir_from_env() / KEY_FILE
    if saved.is_file():
        return saved.read_text().strip(), saved
    return None, None


def _guarded(args: argparse.Namespace, body: Callable[[Client], int]) -> int:
    """Run a command with a client, mapping API problems and connection errors to exit codes."""
    from layerfuse.client import APIError, AuthenticationError, LayerfuseClientError

    problem = _bad_connection_arguments(args)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        with _client(args) as client:
            return int(body(client))
    except AuthenticationError as exc:
        print(f"error {exc}", file=sys.stderr)
        saved = _api_key(args)[1]
        if saved is not None:
            print(
                f"  the key came from {saved}, generated by an earlier `layerfuse up`; a server "
                "started with LAYERFUSE_API_KEYS wants one of those: pass --api-key or set "
                "LAYERFUSE_API_KEY",
                file=sys.stderr,
            )
        return EXIT_BAD_INPUT
    except APIError as exc:
        print(f"error {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT if 400 <= exc.status < 500 and exc.status != 429 else EXIT_FAILED
    except LayerfuseClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        # The follow phase says what it stopped; this is a transfer cut short (a download).
        print("interrupted: files being written may be incomplete; run it again", file=sys.stderr)
        return EXIT_INTERRUPTED


def _job_exit(job: Job) -> int:
    return EXIT_FAILED if job["status"] in ("failed", "cancelled") else EXIT_OK


# --- status, cancel, jobs ---------------------------------------------------------------------


def run_status(args: argparse.Namespace) -> int:
    def body(client: Client) -> int:
        job = client.get_job(args.job_id)
        if args.json:
            print_json(job)
        else:
            print(describe(job))
        return _job_exit(job)

    return _guarded(args, body)


def run_cancel(args: argparse.Namespace) -> int:
    def body(client: Client) -> int:
        job = client.cancel_job(args.job_id)
        if args.json:
            print_json(job)
        else:
            print(f"{job['id']}: {job['status']}")
        return EXIT_OK

    return _guarded(args, body)


def run_jobs(args: argparse.Namespace) -> int:
    def body(client: Client) -> int:
        page = client.list_jobs(limit=args.limit, after=args.after, status=args.status)
        if args.json:
            print_json(page)
            return EXIT_OK
        for job in page["data"]:
            print(_job_row(job))
        if page["has_more"]:
            print(f"(more: layerfuse jobs --after {page['last_id']})", file=sys.stderr)
        return EXIT_OK

    return _guarded(args, body)


def _job_row(job: Job) -> str:
    """One line of ``layerfuse jobs``: id, status, stage or progress, when, strategy."""
    from datetime import UTC, datetime

    created = datetime.fromtimestamp(job["created_at"], UTC).strftime("%Y-%m-%d %H:%M")
    progress = job.get("progress")
    if job["status"] in ("running", "cancelling") and progress:
        where = f"{job.get('stage') or ''} {progress['fraction']:.0%}".strip()
    else:
        where = job.get("stage") or ""
    strategy = job["spec"].get("strategy") or ""
    return f"{job['id']}  {job['status']:<10}  {where:<22}  {created}Z  {strategy}"


def describe(job: Job) -> str:
    """A job for a person: status and stage, progress, the error or the result."""
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
        lines.extend("  " + line for line in summary_lines(job["result"] or {}))
    return "\n".join(lines)


# --- events, download -------------------------------------------------------------------------


def run_events(args: argparse.Namespace) -> int:
    def body(client: Client) -> int:
        if args.no_follow:
            _print_events(client.iter_events(args.job_id, after=args.after), args.json)
            return EXIT_OK
        _print_events(client.follow_events(args.job_id, after=args.after), args.json)
        return _job_exit(client.get_job(args.job_id))

    return _guarded(args, body)


def _print_events(events: Iterable[Event], as_json: bool) -> None:
    for event in events:
        if as_json:
            print(json.dumps(event), flush=True)  # JSON Lines: one event per line, as it comes
        else:
            print(_event_line(event), flush=True)


def _event_line(event: Event) -> str:
    from datetime import UTC, datetime

    at = datetime.fromtimestamp(event["created_at"], UTC).strftime("%H:%M:%S")
    level = "" if event["level"] == "info" else f" {event['level'].upper()}"
    stage = f" [{event['stage']}]" if event.get("stage") else ""
    return f"{at}{level}{stage} {event['type']}: {event['message']}"


def _unusable_out(out: Path) -> bool:
    """Say so and return True when ``out`` cannot be made or written (before any transfer)."""
    from layerfuse.compression.errors import InvalidInputError
    from layerfuse.compression.outputs import check_out_dir

    try:
        check_out_dir(out)
    except InvalidInputError as exc:
        print(f"error (--out): {exc.message}", file=sys.stderr)
        return True
    return False


def run_download(args: argparse.Namespace) -> int:
    if _unusable_out(args.out or Path(args.job_id)):
        return EXIT_BAD_INPUT

    def body(client: Client) -> int:
        job = client.get_job(args.job_id)
        if job["status"] != "succeeded":
            print(f"error: {job['id']} has no outputs to download", file=sys.stderr)
            print(describe(job), file=sys.stderr)
            return EXIT_FAILED
        out = args.out or Path(args.job_id)
        files = client.download_outputs(job["id"], out)
        if args.json:
            print_json({"job": job["id"], "out": str(out), "files": [str(f) for f in files]})
        else:
            print(f"wrote {out}/model and the report, model card and plots ({len(files)} files)")
        return EXIT_OK

    return _guarded(args, body)


# --- submit -----------------------------------------------------------------------------------


def run_submit(args: argparse.Namespace) -> int:
    from layerfuse.client import model_files

    if not args.model.is_dir():
        print(f"error: --model {args.model} is not a directory", file=sys.stderr)
        return EXIT_BAD_INPUT
    if _unusable_out(args.out):  # found only after the whole job had run
        return EXIT_BAD_INPUT
    uploads, skipped = model_files(args.model)
    if skipped:
        print(f"not uploading (not part of a model upload): {', '.join(skipped)}", file=sys.stderr)
    if not uploads:
        print(
            f"error: --model {args.model} holds no model files (config.json, *.safetensors, "
            "tokenizer files); point it at a folder saved with save_pretrained",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
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
    return _guarded(args, lambda client: _submit(client, args, uploads, splits, metadata))


def _submit(
    client: Client,
    args: argparse.Namespace,
    uploads: list[Path],
    splits: dict[str, Path],
    metadata: dict[str, str],
) -> int:
    from layerfuse.client import APIError

    print(f"uploading {len(uploads)} model files from {args.model}", file=sys.stderr)
    model = client.upload_model(uploads)
    dataset: dict[str, Any] = {}
    for split, path in splits.items():
        try:
            dataset[split] = client.upload_dataset(path)["id"]
        except APIError:
            print(f"--{split} {path} was refused:", file=sys.stderr)  # the error follows
            raise
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
        if args.json:
            print_json(job)
        else:
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
        if args.json:
            print_json(job)
        print(describe(job), file=sys.stderr)
        return EXIT_FAILED
    client.download_outputs(job["id"], args.out)
    if args.json:
        print_json(job)
        return EXIT_OK
    for line in summary_lines(job["result"] or {}):
        print(line)
    print(f"wrote {args.out}/model and the report, model card and plots")
    return EXIT_OK


def _follow(client: Client, job: Job) -> Job:
    """The job's events drawn as the progress bar, until it ends; returns the final job."""
    with ProgressBar() as bar:
        for event in client.follow_events(job["id"]):
            data = event.get("data") or {}
            if event["type"] == "stage":
                bar.stage(str(data.get("stage", "")))
            elif event["type"] == "progress" and "fraction" in data:
                bar.fraction(float(data["fraction"]))
            else:
                bar.event(event["type"], event["message"], event["level"])
            if data.get("status") == "succeeded":
                bar.finish()
    return client.get_job(job["id"])
