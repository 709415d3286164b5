"""``GET /v1/jobs/{id}`` for pollers: a short-lived cache of its answers, served before routing.

Pollers read one job over and over (a dashboard, the CLI, a pipeline's wait step), and each read
through the router costs FastAPI's routing and dependency solving, a thread hop and a query: about
seven times a bare endpoint. A job's body read from the database is kept for
``LAYERFUSE_JOB_READ_CACHE_S`` (default 0.5 s, 0 turns it off), and a read that finds it is
answered here, inside the middleware (request id, metrics, admission still apply), without the
router.

What a user can notice, and why it is bounded: a change a worker makes shows up at most that long
later, less than the event stream's own poll interval (0.5 s). A change made through this API
process (cancelling) is seen by the next read: it evicts the entry, and a read that was already
in flight when it did is not cached (the generation check). Only a request whose bearer key
belongs to the entry's tenant gets a hit; everything else (no key, a bad key, another tenant, an
unknown or malformed id, a miss) goes through the router, which gives the errors.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

from fastapi.security.utils import get_authorization_scheme_param
from starlette.types import ASGIApp, Receive, Scope, Send

from .settings import DEFAULT_TENANT, Settings

PREFIX = "/v1/jobs/"
# What the metrics read of ``scope["route"]``: hits are counted under the route's template.
ROUTE = SimpleNamespace(path="/v1/jobs/{job_id}")
# A job's body is 2-3 KB: at most about 10 MB of them.
MAX_ENTRIES = 4096

Key = tuple[str, str]


class JobReadCache:
    """Bodies of ``GET /v1/jobs/{id}`` by (tenant, job id), each kept ``ttl_s`` seconds.

    ``get`` and ``put`` run on the event loop; ``evict`` may run on a request thread (it only
    pops a key and bumps the generation, each atomic under the GIL)."""

    def __init__(self, ttl_s: float, max_entries: int = MAX_ENTRIES):
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.generation = 0
        self._entries: dict[Key, tuple[float, bytes]] = {}

    @property
    def enabled(self) -> bool:
        return self.ttl_s > 0

    def get(self, tenant: str, job_id: str) -> bytes | None:
        entry = self._entries.get((tenant, job_id))
        if entry is None or entry[0] <= time.monotonic():
            return None
        return entry[1]

    def put(self, tenant: str, job_id: str, body: bytes, generation: int) -> None:
        """Keep ``body``, read when the generation was ``generation``; a read that raced an
        eviction is dropped, since it may predate the change that evicted."""
        if not self.enabled or generation != self.generation:
            return
        if len(self._entries) >= self.max_entries:
            self._make_room()
        self._entries.pop((tenant, job_id), None)  # re-inserted last: the dict's order is age
        self._entries[(tenant, job_id)] = (time.monotonic() + self.ttl_s, body)

    def evict(self, tenant: str, job_id: str) -> None:
        self.generation += 1
        self._entries.pop((tenant, job_id), None)

    def _make_room(self) -> None:
        now = time.monotonic()
        for key, (expires, _) in list(self._entries.items()):
            if expires <= now:
                self._entries.pop(key, None)
        while len(self._entries) >= self.max_entries:
            self._entries.pop(next(iter(self._entries)), None)


class JobReadFastPath:
    """Answers a ``GET /v1/jobs/{id}`` the cache holds for the caller's tenant; passes the rest
    on. Installed innermost, so the request id, the metrics and admission apply to hits too."""

    def __init__(self, app: ASGIApp, cache: JobReadCache, settings: Settings):
        self.app = app
        self.cache = cache
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = self._hit(scope) if self.cache.enabled else None
        if body is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = ROUTE
        headers = [
            (b"content-length", str(len(body)).encode()),
            (b"content-type", b"application/json"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _hit(self, scope: Scope) -> bytes | None:
        if scope["type"] != "http" or scope["method"] != "GET":
            return None
        path: str = scope["path"]
        if not path.startswith(PREFIX):
            return None
        job_id = path[len(PREFIX) :]
        if not job_id or "/" in job_id:
            return None
        tenant = self._tenant(scope)
        return None if tenant is None else self.cache.get(tenant, job_id)

    def _tenant(self, scope: Scope) -> str | None:
        if self.settings.auth_disabled:
            return DEFAULT_TENANT
        for name, value in scope["headers"]:
            if name == b"authorization":
                # Parsed as HTTPBearer parses it, so a hit needs the key the route would accept.
                scheme, key = get_authorization_scheme_param(value.decode("latin-1"))
                if scheme.lower() != "bearer" or not key:
                    return None
                return self.settings.tenant_for_key(key)
        return None
