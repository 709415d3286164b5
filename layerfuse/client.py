"""A typed Python client of the layerfuse API (api.md), on httpx.

    from layerfuse.client import Client

    with Client("http://127.0.0.1:8000", api_key="lf_...") as lf:
        model = lf.upload_model(Path("my-model"))            # the allowlisted files of a folder
        train = lf.upload_dataset(Path("train.jsonl"))
        job = lf.create_job({"model": {"source": "upload", "id": model["id"]},
                             "dataset": {"train": train["id"]}})
        for event in lf.follow_events(job["id"]):            # Server-Sent Events, resumed on drops
            print(event["message"])
        lf.download_artifact(job["id"], "model.zip", Path("model.zip"))

Every route of api.md has a method; answers are the API's JSON objects, typed as
:class:`~typing.TypedDict` (:class:`Job`, :class:`Event`, :class:`Page` ...).

Retries follow one policy, :class:`layerfuse.retries.RetryPolicy`: connection failures before a
request was sent, 429 and 503 are retried for every request; other 5xx answers and dropped
connections only for requests that are safe to repeat (reads, deletes, cancels, and job
creation, which always carries an ``Idempotency-Key``). Waits grow exponentially and honour
``Retry-After``; a request costs at most ``max_retries + 1`` round trips (downloads included).
:meth:`Client.follow_events` reconnects with ``Last-Event-ID``, counting failures in a row.

Errors, one hierarchy (problem+json's ``code``, ``param`` and ``detail`` on every API error):

    LayerfuseClientError
    ├── APIError                    status, code, param, detail, request_id, body
    │   ├── BadRequestError               400
    │   ├── AuthenticationError           401
    │   ├── NotFoundError                 404
    │   ├── ConflictError                 409
    │   ├── PayloadTooLargeError          413
    │   ├── UnprocessableEntityError      422
    │   ├── RateLimitError                429
    │   └── ServerError                   5xx
    │       └── ServiceUnavailableError   503
    ├── APIConnectionError          the server could not be reached (after retries)
    ├── ArtifactIntegrityError      a download's sha256 differs from the listed one
    └── WebhookVerificationError    :func:`verify_webhook` refused a delivery
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import shutil
import time
import urllib.parse
import uuid
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, Literal, TypedDict, TypeVar

import httpx

from .retries import TRANSPORT_ERRORS, RetryPolicy, never_sent

__all__ = [
    "APIConnectionError",
    "APIError",
    "Artifact",
    "ArtifactIntegrityError",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "ConflictError",
    "Dataset",
    "Event",
    "Job",
    "LayerfuseClientError",
    "Model",
    "NotFoundError",
    "Page",
    "PayloadTooLargeError",
    "RateLimitError",
    "ServerError",
    "ServiceUnavailableError",
    "UnprocessableEntityError",
    "WebhookDelivery",
    "WebhookVerificationError",
    "model_files",
    "verify_webhook",
]

JOB_STATUSES = ("queued", "running", "cancelling", "succeeded", "failed", "cancelled")
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=600.0, write=600.0, pool=10.0)
# The server sends a keep-alive comment every 15 s: a minute of silence is a dead connection.
# A (connect, read, write, pool) tuple, not an ``httpx.Timeout``: a per-request timeout goes to
# whichever client ``http`` is, and httpx2's (starlette's TestClient picks httpx2 when installed,
# and huggingface_hub now installs it) refuses httpx's Timeout objects but takes a tuple, as
# httpx does.
STREAM_TIMEOUT = (10.0, 60.0, 60.0, 10.0)
MODEL_ARCHIVE = "model.zip"

# --- Objects ---------------------------------------------------------------------------------
# The server declares each object once (layerfuse.service.objects); tests/test_api_objects.py
# keeps these TypedDicts field for field and type for type in step with it.

T = TypeVar("T")


class Page(TypedDict, Generic[T]):
    object: Literal["list"]
    data: list[T]
    first_id: str | None
    last_id: str | None
    has_more: bool


class Model(TypedDict):
    id: str
    object: Literal["model"]
    architecture: str
    model_type: str
    num_layers: int
    num_labels: int | None
    parameters: int
    bytes: int
    files: list[str]
    created_at: int


class Dataset(TypedDict):
    id: str
    object: Literal["dataset"]
    filename: str
    format: str
    rows: int
    columns: list[str]
    bytes: int
    created_at: int


class Progress(TypedDict):
    fraction: float
    stage_fraction: float | None
    eta_seconds: float | None


class JobError(TypedDict):
    code: str
    message: str
    stage: str | None


class JobUrls(TypedDict):
    events: str
    stream: str
    report: str
    artifacts: str


class Job(TypedDict):
    id: str
    object: Literal["compression.job"]
    status: str
    stage: str | None
    progress: Progress | None
    attempts: int
    routed_to: Literal["cpu", "gpu"] | None
    created_at: int
    started_at: int | None
    finished_at: int | None
    spec: dict[str, Any]
    error: JobError | None
    result: dict[str, Any] | None
    metadata: dict[str, Any]
    urls: JobUrls


class Event(TypedDict):
    id: str
    object: Literal["compression.job.event"]
    job_id: str
    created_at: int
    level: str
    type: str
    stage: str | None
    message: str
    data: dict[str, Any] | None


class Artifact(TypedDict):
    name: str
    bytes: int
    sha256: str
    content_type: str


class WebhookAttempt(TypedDict):
    attempt: int
    at: float
    status_code: int | None
    error: str | None
    duration_ms: float


class WebhookDelivery(TypedDict):
    id: str
    object: Literal["webhook.delivery"]
    job_id: str
    event_type: str
    url: str
    status: Literal["pending", "succeeded", "failed"]
    attempts: int
    created_at: int
    last_attempt_at: int | None
    next_attempt_at: int | None
    delivered_at: int | None
    response_status_code: int | None
    error: str | None
    attempt_log: list[WebhookAttempt]


class Worker(TypedDict):
    name: str
    object: Literal["worker"]
    device_class: Literal["cpu", "gpu"]
    queue: str | None
    device: str | None
    device_name: str | None
    memory_bytes: int | None
    concurrency: int | None
    started_at: int
    last_seen_at: int


# --- Errors ----------------------------------------------------------------------------------


class LayerfuseClientError(Exception):
    """Base class of every error this client raises."""


class APIError(LayerfuseClientError):
    """An error answer (RFC 9457 problem+json) of the API."""

    def __init__(self, status: int, body: Mapping[str, Any], headers: Mapping[str, str]):
        self.status = status
        self.body = dict(body)
        self.code: str = str(body.get("code") or f"http_{status}")
        self.param: str | None = body.get("param")
        self.detail: str = str(body.get("detail") or body.get("title") or f"HTTP {status}")
        self.request_id: str | None = body.get("request_id")
        self.headers = dict(headers)
        where = f" ({self.param})" if self.param else ""
        super().__init__(f"[{self.code}]{where}: {self.detail}")


class BadRequestError(APIError):
    pass


class AuthenticationError(APIError):
    pass


class NotFoundError(APIError):
    pass


class ConflictError(APIError):
    pass


class PayloadTooLargeError(APIError):
    pass


class UnprocessableEntityError(APIError):
    pass


class RateLimitError(APIError):
    pass


class ServerError(APIError):
    pass


class ServiceUnavailableError(ServerError):
    pass


class APIConnectionError(LayerfuseClientError):
    """The server could not be reached, or the connection broke, after every retry."""


class ArtifactIntegrityError(LayerfuseClientError):
    """A downloaded artifact's sha256 is not the one the server listed."""


class WebhookVerificationError(LayerfuseClientError):
    """A webhook delivery's signature or timestamp does not check out."""


_ERRORS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


# What a request's retries catch: transport failures of either HTTP library, and error answers.
RETRIED_ERRORS: tuple[type[Exception], ...] = (*TRANSPORT_ERRORS, APIError)


def _api_error(response: httpx.Response) -> APIError:
    try:
        body = response.json()
        if not isinstance(body, dict):
            raise ValueError
    except ValueError:
        body = {"detail": response.text[:300] or response.reason_phrase}
    status = response.status_code
    kind = _ERRORS.get(status, ServerError if status >= 500 else APIError)
    return kind(status, body, response.headers)


# --- Helpers ---------------------------------------------------------------------------------


def model_files(directory: Path) -> tuple[list[Path], list[str]]:
    """The files of a model directory that an upload accepts, and the names it would refuse."""
    from layerfuse.compression.inspection import MODEL_FILES, SHARD_PATTERN

    files = sorted(p for p in directory.iterdir() if p.is_file())
    accepted = [p for p in files if p.name in MODEL_FILES or SHARD_PATTERN.match(p.name)]
    return accepted, [p.name for p in files if p not in accepted]


def verify_webhook(
    secret: str | bytes,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: float = 300.0,
    now: float | None = None,
) -> dict[str, Any]:
    """Check a delivery's Standard Webhooks signature; returns the parsed payload.

    Args:
        secret: the tenant's ``whsec_<base64>`` secret (or its key bytes).
        headers: the request's headers (any mapping; names are matched case-insensitively).
        body: the raw request body, exactly as received.
        tolerance_s: how far ``webhook-timestamp`` may be from now (replay protection).

    Raises:
        WebhookVerificationError: a header is missing, the timestamp is too old or too new, or
            no ``v1`` signature matches.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        message_id = lowered["webhook-id"]
        timestamp = int(lowered["webhook-timestamp"])
        signatures = lowered["webhook-signature"].split()
    except (KeyError, ValueError):
        raise WebhookVerificationError("missing or malformed webhook-* headers") from None
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        raise WebhookVerificationError("webhook-timestamp is outside the tolerance")
    if isinstance(secret, str):
        try:
            key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except binascii.Error:
            raise WebhookVerificationError("the secret is not whsec_<base64>") from None
    else:
        key = secret
    signed = f"{message_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for signature in signatures:
        version, _, value = signature.partition(",")
        # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError anyone
        # could provoke with a forged header).
        if version == "v1" and hmac.compare_digest(value.encode(), expected.encode()):
            payload: dict[str, Any] = json.loads(body)
            return payload
    raise WebhookVerificationError("no matching v1 signature")


FilesFactory = Callable[[], Any]
R = TypeVar("R")


# --- The client ------------------------------------------------------------------------------


class Client:
    """A client of one layerfuse server, for one API key.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000`` (ignored when ``http`` is given).
        api_key: sent as ``Authorization: Bearer``; None for a server with auth disabled.
        max_retries: retries after the first attempt of a request (0 disables them).
        backoff_base_s, backoff_max_s: the first wait and the longest one.
        (The three make :attr:`retry`, the :class:`~layerfuse.retries.RetryPolicy` of every
        request.)
        timeout: httpx timeout of ordinary requests.
        http: an ``httpx.Client`` to send through (a ``fastapi.testclient.TestClient`` in tests,
            or one with custom transport, proxies or certificates); not closed by :meth:`close`.
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        *,
        max_retries: int = 3,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        http: httpx.Client | None = None,
    ):
        self.retry = RetryPolicy(max_retries, backoff_base_s, backoff_max_s)
        self._owns_http = http is None
        self.http = http or httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)
        self._auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_http:
            self.http.close()

    # -- service --------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``GET /healthz``."""
        result: dict[str, Any] = self._json("GET", "/healthz", idempotent=True)
        return result

    def ready(self) -> dict[str, Any]:
        """``GET /readyz``: ``{"status": "ready" | "not ready", "checks": {...}}``; never raises
        for a server that answers "not ready"."""
        response = self._send("GET", "/readyz", idempotent=True, retry_statuses=False)
        result: dict[str, Any] = response.json()
        return result

    # -- models and datasets ----------------------------------------------------------------------

    def upload_model(self, source: Path | Sequence[Path]) -> Model:
        """``POST /v1/models``: a model directory's allowlisted files (see :func:`model_files`),
        or exactly the given files."""
        paths = model_files(source)[0] if isinstance(source, Path) else list(source)

        def files() -> list[tuple[str, tuple[str, Any]]]:
            return [("files", (p.name, p.open("rb"))) for p in paths]

        result: Model = self._json("POST", "/v1/models", files=files, idempotent=False)
        return result

    def get_model(self, model_id: str) -> Model:
        result: Model = self._json("GET", f"/v1/models/{_segment(model_id)}", idempotent=True)
        return result

    def list_models(self, *, limit: int = 20, after: str | None = None) -> Page[Model]:
        params = _params(limit=limit, after=after)
        result: Page[Model] = self._json("GET", "/v1/models", params=params, idempotent=True)
        return result

    def delete_model(self, model_id: str) -> None:
        self._send("DELETE", f"/v1/models/{_segment(model_id)}", idempotent=True)

    def upload_dataset(self, path: Path) -> Dataset:
        """``POST /v1/datasets``: one JSONL, CSV, TSV or Parquet file."""

        def files() -> dict[str, tuple[str, Any]]:
            return {"file": (path.name, path.open("rb"))}

        result: Dataset = self._json("POST", "/v1/datasets", files=files, idempotent=False)
        return result

    def get_dataset(self, dataset_id: str) -> Dataset:
        result: Dataset = self._json("GET", f"/v1/datasets/{_segment(dataset_id)}", idempotent=True)
        return result

    def list_datasets(self, *, limit: int = 20, after: str | None = None) -> Page[Dataset]:
        params = _params(limit=limit, after=after)
        result: Page[Dataset] = self._json("GET", "/v1/datasets", params=params, idempotent=True)
        return result

    def delete_dataset(self, dataset_id: str) -> None:
        self._send("DELETE", f"/v1/datasets/{_segment(dataset_id)}", idempotent=True)

    # -- jobs -----------------------------------------------------------------------------------

    def create_job(self, body: Mapping[str, Any], *, idempotency_key: str | None = None) -> Job:
        """``POST /v1/jobs``. A random ``Idempotency-Key`` is sent unless one is given, so a retry
        after a lost answer returns the job the first attempt created instead of a second one."""
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        result: Job = self._json(
            "POST", "/v1/jobs", json=dict(body), headers=headers, idempotent=True
        )
        return result

    def list_jobs(
        self, *, limit: int = 20, after: str | None = None, status: str | None = None
    ) -> Page[Job]:
        params = _params(limit=limit, after=after, status=status)
        result: Page[Job] = self._json("GET", "/v1/jobs", params=params, idempotent=True)
        return result

    def get_job(self, job_id: str) -> Job:
        result: Job = self._json("GET", f"/v1/jobs/{_segment(job_id)}", idempotent=True)
        return result

    def cancel_job(self, job_id: str) -> Job:
        result: Job = self._json("POST", f"/v1/jobs/{_segment(job_id)}/cancel", idempotent=True)
        return result

    def wait(self, job_id: str) -> Job:
        """Follow the job's events until it ends; returns the final job."""
        for _ in self.follow_events(job_id):
            pass
        return self.get_job(job_id)

    # -- events ---------------------------------------------------------------------------------

    def list_events(
        self, job_id: str, *, after: str | None = None, limit: int = 100
    ) -> Page[Event]:
        params = _params(limit=limit, after=after)
        result: Page[Event] = self._json(
            "GET", f"/v1/jobs/{_segment(job_id)}/events", params=params, idempotent=True
        )
        return result

    def iter_events(self, job_id: str, *, after: str | None = None) -> Iterator[Event]:
        """Every event of the job so far after ``after`` (from the first when None), page by
        page; unlike :meth:`follow_events` it returns at the last one."""
        while True:
            page = self.list_events(job_id, after=after, limit=1000)
            yield from page["data"]
            if not page["has_more"]:
                return
            after = page["last_id"]

    def follow_events(self, job_id: str, *, after: str | None = None) -> Iterator[Event]:
        """The job's events after ``after`` (from the first when None), live, until its terminal
        status event. A dropped stream is resumed with ``Last-Event-ID``; after ``max_retries``
        failed reconnections in a row (an event received resets the count), the last error."""
        path = f"/v1/jobs/{_segment(job_id)}/events/stream"
        failures = 0
        while True:
            headers = {**self._auth, **({"Last-Event-ID": after} if after else {})}
            try:
                with self.http.stream(
                    "GET", path, headers=headers, timeout=STREAM_TIMEOUT
                ) as response:
                    _raise_for_status(response)
                    for event in _parse_sse(response.iter_lines()):
                        after, failures = event["id"], 0
                        yield event
                        if _is_terminal(event):
                            return
            except RETRIED_ERRORS as exc:
                failures += 1
                self._wait_or_raise(
                    exc, failures, idempotent=True, what=f"the event stream of {job_id}"
                )
                continue
            # The stream ended without a terminal event: the job ended between two of the
            # server's reads, or a proxy closed the connection.
            if self.get_job(job_id)["status"] not in TERMINAL_STATUSES:
                self.retry.sleep(self.retry.backoff_base_s)
                continue
            yield from self.iter_events(job_id, after=after)  # whatever came after is due
            return

    # -- results --------------------------------------------------------------------------------

    def get_report(self, job_id: str) -> dict[str, Any]:
        """``GET /v1/jobs/{id}/report``: the job's report.json."""
        result: dict[str, Any] = self._json(
            "GET", f"/v1/jobs/{_segment(job_id)}/report", idempotent=True
        )
        return result

    def list_artifacts(self, job_id: str) -> list[Artifact]:
        body = self._json("GET", f"/v1/jobs/{_segment(job_id)}/artifacts", idempotent=True)
        result: list[Artifact] = body["data"]
        return result

    def read_artifact(self, job_id: str, name: str) -> bytes:
        """One artifact's bytes (for the small ones; :meth:`download_artifact` streams)."""
        return self._send(
            "GET", f"/v1/jobs/{_segment(job_id)}/artifacts/{name}", idempotent=True
        ).content

    def download_artifact(
        self, job_id: str, name: str, destination: Path, *, sha256: str | None = None
    ) -> Path:
        """Stream one artifact to ``destination`` (written to a temporary name, checked against
        ``sha256``, from the artifact list, or else the one the server sends, then renamed). A
        broken transfer starts again, within the request's retries.

        Raises:
            ArtifactIntegrityError: the bytes do not match the sha256.
        """
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_name(f".{destination.name}.part")
        path = f"/v1/jobs/{_segment(job_id)}/artifacts/{name}"

        def transfer() -> str | None:
            with self.http.stream("GET", path, headers=self._auth) as response:
                _raise_for_status(response)
                with partial.open("wb") as f:
                    for chunk in response.iter_bytes(1 << 20):
                        f.write(chunk)
                return response.headers.get("X-Content-SHA256")

        try:
            sent = self._retrying(transfer, idempotent=True, what=f"downloading {name}")
            # The list's digest when known: a proxy that drops the header (or the body) must not
            # turn the check off.
            expected = sha256 or sent
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        digest = hashlib.sha256()
        with partial.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        if expected and digest.hexdigest() != expected:
            partial.unlink(missing_ok=True)
            raise ArtifactIntegrityError(f"{name}: sha256 {digest.hexdigest()} != {expected}")
        os.replace(partial, destination)
        return destination

    def download_outputs(self, job_id: str, out: Path) -> list[Path]:
        """A succeeded job's outputs in the layout of ``layerfuse compress``: ``out/model/``
        (from ``model.zip``, with ``model/onnx/`` when ONNX was exported), ``report.json``,
        ``model_card.md``, ``signals.csv`` and the plots; every file sha256-checked. Returns the
        files written."""
        out.mkdir(parents=True, exist_ok=True)
        listed = self.list_artifacts(job_id)
        digests = {artifact["name"]: artifact["sha256"] for artifact in listed}
        archive = self.download_artifact(
            job_id, MODEL_ARCHIVE, out / f".{MODEL_ARCHIVE}", sha256=digests.get(MODEL_ARCHIVE)
        )
        try:
            written = _extract_model(archive, out)
        finally:
            archive.unlink()
        for artifact in listed:
            name = artifact["name"]
            if "/" in name or name == MODEL_ARCHIVE:
                continue  # model/<file> came in the archive
            written.append(
                self.download_artifact(job_id, name, out / name, sha256=artifact["sha256"])
            )
        return written

    def list_webhook_deliveries(
        self, job_id: str, *, after: str | None = None, limit: int = 20
    ) -> Page[WebhookDelivery]:
        """``GET /v1/jobs/{id}/webhook_deliveries``: each message and its attempts."""
        params = _params(limit=limit, after=after)
        result: Page[WebhookDelivery] = self._json(
            "GET", f"/v1/jobs/{_segment(job_id)}/webhook_deliveries", params=params, idempotent=True
        )
        return result

    def list_workers(self) -> list[Worker]:
        """``GET /v1/workers``: the workers seen recently and what each runs on."""
        body = self._json("GET", "/v1/workers", idempotent=True)
        result: list[Worker] = body["data"]
        return result

    # -- transport ------------------------------------------------------------------------------

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:  # another server at that URL (a web page), or a proxy's answer
            raise LayerfuseClientError(
                f"{response.request.url} answered {response.status_code} without JSON "
                f"({response.headers.get('content-type', 'no content type')}): is that URL a "
                "layerfuse server?"
            ) from None

    def _send(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool,
        retry_statuses: bool = True,
        files: FilesFactory | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """One request with retries; returns a 2xx (or, without ``retry_statuses``, any) answer.

        Raises:
            APIError: an error answer that is not retried, or the last one.
            APIConnectionError: the server was not reached after every retry.
        """

        def attempt() -> httpx.Response:
            opened = files() if files is not None else None  # a retry sends the files again
            try:
                response = self.http.request(
                    method, path, headers={**self._auth, **(headers or {})}, files=opened, **kwargs
                )
            finally:
                _close_files(opened)
            if retry_statuses:
                _raise_for_status(response)
            return response

        return self._retrying(attempt, idempotent=idempotent, what=f"{method} {path}")

    def _retrying(self, attempt: Callable[[], R], *, idempotent: bool, what: str) -> R:
        """``attempt()`` until it returns, or until :attr:`retry` gives up on its failures."""
        failures = 0
        while True:
            try:
                return attempt()
            except RETRIED_ERRORS as exc:
                failures += 1
                self._wait_or_raise(exc, failures, idempotent=idempotent, what=what)

    def _wait_or_raise(self, exc: Exception, failures: int, *, idempotent: bool, what: str) -> None:
        """Wait before sending again, as :attr:`retry` says; else raise the failure (a transport
        error as :class:`APIConnectionError`)."""
        if isinstance(exc, APIError):
            if not self.retry.wait(
                failures, status=exc.status, headers=exc.headers, idempotent=idempotent
            ):
                raise exc
            return
        if not self.retry.wait(failures, error=exc, idempotent=idempotent):
            reason = (
                "cannot reach the layerfuse server" if never_sent(exc) else "the connection broke"
            )
            raise APIConnectionError(f"{what}: {reason} ({exc})") from exc


def _raise_for_status(response: httpx.Response) -> None:
    """The API's error answer as an :class:`APIError` (the body is read first)."""
    if response.status_code >= 400:
        response.read()
        raise _api_error(response)


def _extract_model(archive: Path, out: Path) -> list[Path]:
    """``model/<file>`` and ``model/onnx/<file>`` entries of ``archive`` into ``out/model/``, and
    nothing else: never a path outside it (no ``..``, no absolute names, no other subfolders)."""
    target = (out / "model").resolve()
    # This job's model alone: an earlier download's files (another job's ONNX) would sit beside
    # it as if they were this job's, as ``layerfuse compress`` replaces model/ too.
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            parts = Path(info.filename).parts
            if info.is_dir() or parts[:1] != ("model",) or parts[1:-1] not in ((), ("onnx",)):
                continue
            if parts[-1] == "..":
                continue
            destination = target.joinpath(*parts[1:])
            destination.parent.mkdir(exist_ok=True)
            with zf.open(info) as src, destination.open("wb") as dst:
                while block := src.read(1 << 20):
                    dst.write(block)
            written.append(destination)
    return written


def _segment(value: str) -> str:
    """An id as one path segment: escaped, so ``x/../y`` or ``?limit=1`` cannot address another
    route, and never empty (``/v1/jobs/`` is the list, not a job)."""
    if not value:
        raise ValueError("an id must not be empty")
    return urllib.parse.quote(value, safe="")


def _params(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _close_files(opened: Any) -> None:
    if not opened:
        return
    entries = opened.values() if isinstance(opened, dict) else (item[1] for item in opened)
    for entry in entries:
        handle = entry[1] if isinstance(entry, tuple) else entry
        if hasattr(handle, "close"):
            handle.close()


def _is_terminal(event: Event) -> bool:
    return event["type"] == "status" and (event["data"] or {}).get("status") in TERMINAL_STATUSES


def _parse_sse(lines: Iterator[str]) -> Iterator[Event]:
    """Server-Sent Events: ``data:`` lines joined until a blank line; comments skipped."""
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                event: Event = json.loads("\n".join(data))
                yield event
            data = []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            if field == "data":
                data.append(value.removeprefix(" "))
    if data:
        yield json.loads("\n".join(data))
