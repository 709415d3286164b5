"""The service's and the worker's configuration, read from the environment.

One :class:`Settings` for the API, the worker and the CLI. Environment names follow api.md and
the issue: ``LAYERFUSE_*`` for our own settings, plus the conventional ``DATABASE_URL`` and
``REDIS_URL``. API keys are hashed as they are read and never kept in the clear.

Importable without fastapi, celery or torch: the worker and the store use it too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

GiB = 1024**3
MiB = 1024**2

TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Keys that look like they were copied from an example: refused outside development.
PLACEHOLDER_WORDS = ("changeme", "change-me", "changethis", "placeholder", "example", "secret")
MIN_KEY_LENGTH = 16
DEFAULT_TENANT = "default"
# Standard Webhooks: a secret is "whsec_" + base64 of 24 to 64 random bytes.
WEBHOOK_SECRET_PREFIX = "whsec_"
WEBHOOK_SECRET_BYTES = (24, 64)
MIN_SIGNING_KEY_LENGTH = 32


class ConfigError(Exception):
    """The configuration is unsafe or incomplete; the process must not start."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyOwner(NamedTuple):
    tenant: str
    weak: bool  # a placeholder or short key: refused outside development


def _parse_api_keys(value: Any) -> dict[str, KeyOwner]:
    """``"tenant:key,tenant:key"`` (or ``tenant:sha256:<hex>``) to ``{sha256(key): owner}``."""
    if isinstance(value, dict):
        return dict(value)
    hashes: dict[str, KeyOwner] = {}
    for entry in str(value or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        tenant, sep, key = entry.partition(":")
        tenant, key = tenant.strip(), key.strip()
        if not sep or not key:
            raise ValueError("LAYERFUSE_API_KEYS entries are 'tenant:key', separated by commas")
        if not TENANT_PATTERN.match(tenant):
            raise ValueError(
                f"tenant {tenant!r} in LAYERFUSE_API_KEYS: use letters, digits, '_', '.', '-'"
            )
        if key.startswith("sha256:") and re.fullmatch(r"[0-9a-f]{64}", key[7:]):
            hashes[key[7:]] = KeyOwner(tenant, weak=False)
        else:
            hashes[hash_key(key)] = KeyOwner(tenant, weak=_looks_like_placeholder(key))
    return hashes


def decode_webhook_secret(secret: str) -> bytes:
    """The key bytes of ``whsec_<base64>``.

    Raises:
        ValueError: not ``whsec_`` + base64 of 24 to 64 bytes.
    """
    low, high = WEBHOOK_SECRET_BYTES
    try:
        key = base64.b64decode(secret.removeprefix(WEBHOOK_SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not secret.startswith(WEBHOOK_SECRET_PREFIX) or not low <= len(key) <= high:
        raise ValueError(
            f"webhook secrets are '{WEBHOOK_SECRET_PREFIX}' + base64 of {low} to {high} random "
            f"bytes, e.g. {WEBHOOK_SECRET_PREFIX}$(openssl rand -base64 32)"
        )
    return key


def _parse_webhook_secrets(value: Any) -> dict[str, bytes]:
    """``"tenant:whsec_<base64>,..."`` to ``{tenant: key bytes}``."""
    if isinstance(value, dict):
        return dict(value)
    secrets: dict[str, bytes] = {}
    for entry in str(value or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        tenant, sep, secret = (part.strip() for part in entry.partition(":"))
        if not sep or not TENANT_PATTERN.match(tenant):
            raise ValueError("LAYERFUSE_WEBHOOK_SECRETS entries are 'tenant:whsec_<base64>'")
        secrets[tenant] = decode_webhook_secret(secret)
    return secrets


def _looks_like_placeholder(key: str) -> bool:
    lowered = key.lower()
    return len(key) < MIN_KEY_LENGTH or any(word in lowered for word in PLACEHOLDER_WORDS)


class Settings(BaseSettings):
    """Every knob of the service. Defaults are the embedded quickstart's, except security."""

    model_config = SettingsConfigDict(
        env_prefix="LAYERFUSE_", extra="ignore", populate_by_name=True
    )

    env: Literal["development", "test", "production"] = "production"
    data_dir: Path = Path(".layerfuse")
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "database_url")
    )
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "redis_url")
    )

    # Authentication: sha256(key) -> owner. Read from "tenant:key,tenant:key".
    api_keys: Annotated[dict[str, KeyOwner], NoDecode] = Field(default_factory=dict, repr=False)
    auth_disabled: bool = False

    # Uploads and inputs.
    max_model_upload_bytes: int = Field(default=2 * GiB, ge=1)
    max_dataset_upload_bytes: int = Field(default=512 * MiB, ge=1)
    max_dataset_rows: int = Field(default=2_000_000, ge=1)
    models_root: Path | None = None
    allow_hub: bool = False

    # The API under load. Request threads and database connections are sized together (each
    # thread holds at most one connection, plus a few for the reconciler and the metrics); a
    # request that still finds no connection within the pool timeout is 503 service_busy.
    api_threads: int = Field(default=16, ge=1, le=512)
    db_pool_timeout_s: float = Field(default=2.0, gt=0, le=60)
    # Requests in flight past which new ones are answered 503 service_busy at once.
    api_max_inflight: int = Field(default=1024, ge=1)
    # Bodyless /v1 requests (polls) that run at once; the others wait in line, off the event
    # loop, so its turns stay short and /healthz answers while the API is saturated.
    api_max_running: int = Field(default=4, ge=1, le=4096)
    # Seconds a job's GET answer is kept for the pollers that read it again (service/jobcache.py);
    # what a worker changes shows up at most this much later. 0 turns the cache off.
    job_read_cache_s: float = Field(default=0.5, ge=0, le=5)
    max_json_body_bytes: int = Field(default=1 * MiB, ge=1024)
    # A request body must arrive within this long (slow-body timeout).
    body_timeout_s: float = Field(default=30.0, gt=0)

    # Jobs and the queues. A job goes to the queue of its device class (docs/service.md,
    # Routing); ``queue_name`` names the webhook deliveries' queue (``<queue_name>-webhooks``).
    queue_name: str = "layerfuse"
    cpu_queue: str = Field(default="cpu", min_length=1, max_length=128)
    gpu_queue: str = Field(default="gpu", min_length=1, max_length=128)
    job_time_limit_s: int = Field(default=6 * 3600, ge=60)
    max_attempts: int = Field(default=3, ge=1, le=20)
    heartbeat_interval_s: float = Field(default=10.0, gt=0)
    heartbeat_timeout_s: float = Field(default=120.0, gt=0)
    queued_timeout_s: float = Field(default=600.0, gt=0)
    reconcile_interval_s: float = Field(default=30.0, ge=0)
    worker_seen_timeout_s: float = Field(default=60.0, gt=0)
    # A worker not seen for this long is forgotten by the reconciler (GET /v1/workers never
    # listed it: that needs a heartbeat within worker_seen_timeout_s).
    worker_retention_s: float = Field(default=7 * 24 * 3600.0, gt=0)
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=1)
    broker_polling_interval_s: float = Field(default=0.2, gt=0)
    enqueue_timeout_s: float = Field(default=3.0, gt=0)

    # Webhooks (Standard Webhooks). A tenant's signing secret comes from ``webhook_secrets``
    # ("tenant:whsec_<base64>,..."), else is derived from ``webhook_signing_key``; a tenant with
    # neither cannot ask for webhooks.
    webhook_secrets: Annotated[dict[str, bytes], NoDecode] = Field(default_factory=dict, repr=False)
    webhook_signing_key: str | None = Field(default=None, repr=False)
    # Lets webhook and MLflow URLs reach loopback and private networks (tests, on-premises).
    webhook_allow_private: bool = False
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=120)
    webhook_max_attempts: int = Field(default=6, ge=1, le=20)
    # Attempt n waits base * 4^(n-1) seconds after the previous one, at most backoff_max_s.
    webhook_backoff_base_s: float = Field(default=10.0, gt=0)
    webhook_backoff_max_s: float = Field(default=3600.0, gt=0)
    webhook_poll_interval_s: float = Field(default=0.5, gt=0)
    webhook_concurrency: int = Field(default=4, ge=1, le=64)

    # MLflow integration: file: tracking URIs write to the worker's own disk, so off by default.
    mlflow_allow_file_uri: bool = False
    mlflow_timeout_s: float = Field(default=30.0, gt=0)

    # The worker's hardware: the device of ``layerfuse worker`` without ``--device`` (``auto``:
    # CUDA when torch sees it). It picks the queue the worker consumes; it never changes the
    # device a job asked for.
    device: Literal["auto", "cpu", "cuda"] = "auto"
    torch_threads: int | None = Field(default=None, ge=1)
    # A job's memory budget: a fixed part (torch, the data) plus a multiple of the model's weight
    # bytes (teacher, student, copies during the sweep, optimiser state), unless given outright
    # (0 turns the guard off). Past it the job fails with job_memory_limit_exceeded.
    job_memory_limit_bytes: int | None = Field(default=None, ge=0)
    job_memory_base_bytes: int = Field(default=2 * GiB, ge=0)
    job_memory_weight_factor: float = Field(default=32.0, ge=1)

    def job_memory_budget(self, weight_bytes: int) -> int | None:
        """The memory a job on a model with ``weight_bytes`` of weights may use; None: no limit."""
        if self.job_memory_limit_bytes is not None:
            return self.job_memory_limit_bytes or None
        return int(self.job_memory_base_bytes + self.job_memory_weight_factor * weight_bytes)

    @property
    def db_pool_size(self) -> int:
        """Connections of the API's pool: one per request thread, and some for background work."""
        return self.api_threads + 4

    @model_validator(mode="after")
    def _distinct_queues(self) -> Settings:
        # One queue for both classes would hand CUDA jobs to CPU workers.
        names = [self.cpu_queue, self.gpu_queue, f"{self.queue_name}-webhooks"]
        if len(set(names)) != len(names):
            raise ValueError(
                "LAYERFUSE_CPU_QUEUE, LAYERFUSE_GPU_QUEUE and the webhook queue "
                f"({names[2]}) must be three different names"
            )
        return self

    def queue_for(self, device_class: str) -> str:
        """The queue of the ``cpu`` or ``gpu`` device class."""
        return self.gpu_queue if device_class == "gpu" else self.cpu_queue

    @field_validator("api_keys", mode="before")
    @classmethod
    def _hash_keys(cls, value: Any) -> dict[str, KeyOwner]:
        return _parse_api_keys(value)

    @field_validator("webhook_signing_key", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: Any) -> Any:
        return value or None  # docker-compose passes an unset variable as ""

    @field_validator("webhook_secrets", mode="before")
    @classmethod
    def _decode_webhook_secrets(cls, value: Any) -> dict[str, bytes]:
        return _parse_webhook_secrets(value)

    def webhook_secret(self, tenant: str) -> bytes | None:
        """The key ``tenant``'s webhooks are signed with, or None when it has none.

        An explicit ``webhook_secrets`` entry wins; otherwise HMAC-SHA256(signing key,
        "layerfuse-webhook-secret:" + tenant), so one server secret gives every tenant its own.
        """
        if tenant in self.webhook_secrets:
            return self.webhook_secrets[tenant]
        if not self.webhook_signing_key:
            return None
        message = f"layerfuse-webhook-secret:{tenant}".encode()
        return hmac.new(self.webhook_signing_key.encode(), message, hashlib.sha256).digest()

    def webhook_secret_text(self, tenant: str) -> str | None:
        """``whsec_<base64>``: the form a receiver configures (Standard Webhooks)."""
        key = self.webhook_secret(tenant)
        return None if key is None else WEBHOOK_SECRET_PREFIX + base64.b64encode(key).decode()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'layerfuse.db').resolve()}"

    @property
    def broker_folder(self) -> Path:
        return self.data_dir / "broker"

    def tenant_for_key(self, key: str) -> str | None:
        """The tenant owning ``key``, comparing hashes in constant time over all keys."""
        digest = hash_key(key)
        found: str | None = None
        for stored, owner in self.api_keys.items():
            if hmac.compare_digest(stored, digest):
                found = owner.tenant
        return found

    def check_api_secrets(self) -> None:
        """Refuse unsafe authentication outside development.

        Raises:
            ConfigError: no keys, a placeholder key, or auth turned off in production.
        """
        if self.env == "development":
            return
        if self.auth_disabled:
            raise ConfigError("LAYERFUSE_AUTH_DISABLED is for development only (LAYERFUSE_ENV)")
        if not self.api_keys:
            raise ConfigError("no API keys: set LAYERFUSE_API_KEYS='tenant:key,...'")
        weak = sorted({owner.tenant for owner in self.api_keys.values() if owner.weak})
        if weak:
            raise ConfigError(
                f"LAYERFUSE_API_KEYS has placeholder or short keys (tenants {weak}): use random "
                f"keys of at least {MIN_KEY_LENGTH} characters"
            )
        signing_key = self.webhook_signing_key
        if signing_key is not None and (
            len(signing_key) < MIN_SIGNING_KEY_LENGTH
            or any(word in signing_key.lower() for word in PLACEHOLDER_WORDS)
        ):
            raise ConfigError(
                "LAYERFUSE_WEBHOOK_SIGNING_KEY is a placeholder or shorter than "
                f"{MIN_SIGNING_KEY_LENGTH} characters: use e.g. $(openssl rand -hex 32)"
            )


@lru_cache
def get_settings() -> Settings:
    return Settings()
