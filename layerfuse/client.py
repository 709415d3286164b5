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

Retries: connection failures before a request was sent, 429 and 503 are retried for every
request; other 5xx answers and dropped connections only for requests that are safe to repeat
(reads, deletes, cancels, and job creation, which always carries an ``Idempotency-Key``). Waits
grow exponentially (``backoff_base_s * 2^n``, jittered, at most ``backoff_max_s``) and honour
``Retry-After``. :meth:`Client.follow_events` reconnects with ``Last-Event-ID``.

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
import email.utils
import hashlib
import hmac
import json
import os
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, Literal, TypedDict, TypeVar

import httpx

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

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=600.0, write=600.0, pool=10.0)
# The server sends a keep-alive comment every 15 s: a minute of silence is a dead connection.
STREAM_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=60.0, pool=10.0)
MAX_RETRY_AFTER_S = 120.0

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
        if version == "v1" and hmac.compare_digest(value, expected):
            payload: dict[str, Any] = json.loads(body)
            return payload
    raise WebhookVerificationError("no matching v1 signature")


def _retry_after_s(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = moment.timestamp() - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


FilesFactory = Callable[[], Any]


# --- The client ------------------------------------------------------------------------------


class Client:
    """A client of one layerfuse server, for one API key.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000`` (ignored when ``http`` is given).
        api_key: sent as ``Authorization: Bearer``; None for a server with auth disabled.
        max_retries: retries after the first attempt of a request (0 disables them).
        backoff_base_s, backoff_max_s: the first wait and the longest one.
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
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self._owns_http = http is None
        self.http = http or httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)
        self._auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.sleep: Callable[[float], None] = time.sleep

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
        result: Model = self._json("GET", f"/v1/models/{model_id}", idempotent=True)
        return result

    def list_models(self, *, limit: int = 20, after: str | None = None) -> Page[Model]:
        params = _params(limit=limit, after=after)
        result: Page[Model] = self._json("GET", "/v1/models", params=params, idempotent=True)
        return result

    def delete_model(self, model_id: str) -> None:
        self._send("DELETE", f"/v1/models/{model_id}", idempotent=True)

    def upload_dataset(self, path: Path) -> Dataset:
        """``POST /v1/datasets``: one JSONL, CSV, TSV or Parquet file."""

        def files() -> dict[str, tuple[str, Any]]:
            return {"file": (path.name, path.open("rb"))}

        result: Dataset = self._json("POST", "/v1/datasets", files=files, idempotent=False)
        return result

    def get_dataset(self, dataset_id: str) -> Dataset:
        result: Dataset = self._json("GET", f"/v1/datasets/{dataset_id}", idempotent=True)
        return result

    def list_datasets(self, *, limit: int = 20, after: str | None = None) -> Page[Dataset]:
        params = _params(limit=limit, after=after)
        result: Page[Dataset] = self._json("GET", "/v1/datasets", params=params, idempotent=True)
        return result

    def delete_dataset(self, dataset_id: str) -> None:
        self._send("DELETE", f"/v1/datasets/{dataset_id}", idempotent=True)

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
        result: Job = self._json("GET", f"/v1/jobs/{job_id}", idempotent=True)
        return result

    def cancel_job(self, job_id: str) -> Job:
        result: Job = self._json("POST", f"/v1/jobs/{job_id}/cancel", idempotent=True)
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
            "GET", f"/v1/jobs/{job_id}/events", params=params, idempotent=True
        )
        return result

    def follow_events(self, job_id: str, *, after: str | None = None) -> Iterator[Event]:
        """The job's events after ``after`` (from the first when None), live, until its terminal
        status event. A dropped stream is resumed with ``Last-Event-ID``; after ``max_retries``
        failed reconnections in a row, :class:`APIConnectionError`."""
        failures = 0
        while True:
            headers = {**self._auth, **({"Last-Event-ID": after} if after else {})}
            try:
                with self.http.stream(
                    "GET",
                    f"/v1/jobs/{job_id}/events/stream",
                    headers=headers,
                    timeout=STREAM_TIMEOUT,
                ) as response:
                    if response.status_code >= 400:
                        response.read()
                        error = _api_error(response)
                        if not _retryable_status(response.status_code, idempotent=True):
                            raise error
                        failures += 1
                        if failures > self.max_retries:
                            raise error
                        self.sleep(self._delay(failures - 1, response))
                        continue
                    for event in _parse_sse(response.iter_lines()):
                        after, failures = event["id"], 0
                        yield event
                        if _is_terminal(event):
                            return
            except httpx.TransportError as exc:
                failures += 1
                if failures > self.max_retries:
                    raise APIConnectionError(f"the event stream of {job_id} broke: {exc}") from exc
                self.sleep(self._delay(failures - 1))
                continue
            # The stream ended without a terminal event: the job ended between two of the
            # server's reads, or a proxy closed the connection.
            if self.get_job(job_id)["status"] not in TERMINAL_STATUSES:
                self.sleep(self.backoff_base_s)
                continue
            while True:  # whatever came after ``after`` is still due
                page = self.list_events(job_id, after=after, limit=1000)
                yield from page["data"]
                if not page["has_more"]:
                    return
                after = page["last_id"]

    # -- results --------------------------------------------------------------------------------

    def get_report(self, job_id: str) -> dict[str, Any]:
        """``GET /v1/jobs/{id}/report``: the job's report.json."""
        result: dict[str, Any] = self._json("GET", f"/v1/jobs/{job_id}/report", idempotent=True)
        return result

    def list_artifacts(self, job_id: str) -> list[Artifact]:
        body = self._json("GET", f"/v1/jobs/{job_id}/artifacts", idempotent=True)
        result: list[Artifact] = body["data"]
        return result

    def read_artifact(self, job_id: str, name: str) -> bytes:
        """One artifact's bytes (for the small ones; :meth:`download_artifact` streams)."""
        return self._send("GET", f"/v1/jobs/{job_id}/artifacts/{name}", idempotent=True).content

    def download_artifact(self, job_id: str, name: str, destination: Path) -> Path:
        """Stream one artifact to ``destination`` (written to a temporary name, checked against
        the sha256 the server sends, then renamed).

        Raises:
            ArtifactIntegrityError: the bytes do not match the server's sha256.
        """
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_name(f".{destination.name}.part")
        for attempt in range(self.max_retries + 1):
            try:
                expected = self._stream_to(job_id, name, partial)
                break
            except httpx.TransportError as exc:
                if attempt == self.max_retries:
                    raise APIConnectionError(f"downloading {name} failed: {exc}") from exc
                self.sleep(self._delay(attempt))
        digest = hashlib.sha256()
        with partial.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        if expected and digest.hexdigest() != expected:
            partial.unlink(missing_ok=True)
            raise ArtifactIntegrityError(f"{name}: sha256 {digest.hexdigest()} != {expected}")
        os.replace(partial, destination)
        return destination

    def _stream_to(self, job_id: str, name: str, target: Path) -> str | None:
        path = f"/v1/jobs/{job_id}/artifacts/{name}"
        for attempt in range(self.max_retries + 1):
            with self.http.stream("GET", path, headers=self._auth) as response:
                if response.status_code < 400:
                    with target.open("wb") as f:
                        for chunk in response.iter_bytes(1 << 20):
                            f.write(chunk)
                    return response.headers.get("X-Content-SHA256")
                response.read()
                if attempt == self.max_retries or not _retryable_status(
                    response.status_code, idempotent=True
                ):
                    raise _api_error(response)
                self.sleep(self._delay(attempt, response))
        raise AssertionError("unreachable")

    def list_webhook_deliveries(
        self, job_id: str, *, after: str | None = None, limit: int = 20
    ) -> Page[WebhookDelivery]:
        """``GET /v1/jobs/{id}/webhook_deliveries``: each message and its attempts."""
        params = _params(limit=limit, after=after)
        result: Page[WebhookDelivery] = self._json(
            "GET", f"/v1/jobs/{job_id}/webhook_deliveries", params=params, idempotent=True
        )
        return result

    # -- transport ------------------------------------------------------------------------------

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._send(method, path, **kwargs).json()

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
        for attempt in range(self.max_retries + 1):
            opened = files() if files is not None else None
            try:
                response = self.http.request(
                    method, path, headers={**self._auth, **(headers or {})}, files=opened, **kwargs
                )
            except httpx.TransportError as exc:
                # Not sent at all: always safe to repeat. Sent but unanswered: only if idempotent.
                unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                if attempt == self.max_retries or not (unsent or idempotent):
                    raise APIConnectionError(
                        f"{method} {path}: cannot reach the layerfuse server ({exc})"
                    ) from exc
                self.sleep(self._delay(attempt))
                continue
            finally:
                _close_files(opened)
            if response.status_code < 400 or not retry_statuses:
                return response
            if attempt < self.max_retries and _retryable_status(response.status_code, idempotent):
                self.sleep(self._delay(attempt, response))
                continue
            raise _api_error(response)
        raise AssertionError("unreachable")

    def _delay(self, attempt: int, response: httpx.Response | None = None) -> float:
        if response is not None:
            retry_after = _retry_after_s(response)
            if retry_after is not None:
                return retry_after
        delay = min(self.backoff_base_s * 2**attempt, self.backoff_max_s)
        return float(delay * random.uniform(0.5, 1.0))


def _retryable_status(status: int, idempotent: bool) -> bool:
    # 429 and 503 say the request was not processed; other 5xx may have been half-way.
    return status in (429, 503) or (idempotent and status in (500, 502, 504))


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
