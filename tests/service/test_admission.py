"""Admission under load: at most ``api_max_running`` bodyless ``/v1`` requests run at once and
the rest wait their turn (not a 503); a slot is freed as soon as the response starts, so streams
hold none; requests with a body are not held back; ``/healthz`` is answered before all of it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from layerfuse.service.app import create_app
from layerfuse.service.limits import BodyLimits

from .conftest import FakeQueue, make_settings


def _scope(path: str, *, body: bool = False) -> dict[str, Any]:
    headers = [(b"content-length", b"2"), (b"content-type", b"application/json")] if body else []
    return {"type": "http", "method": "POST" if body else "GET", "path": path, "headers": headers}


class _Blocking:
    """An ASGI app whose requests record that they started and wait for ``release``; with
    ``start_first`` a request sends its response start before waiting (a stream)."""

    def __init__(self, *, start_first: bool = False):
        self.started: list[str] = []
        self.release = asyncio.Event()
        self.start_first = start_first

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.started.append(scope["path"])
        if self.start_first:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        await self.release.wait()
        if not self.start_first:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"{}", "more_body": False}


async def _send(message: Any) -> None:
    return None


def _limits(app: Any, tmp_path: Path, **overrides: Any) -> BodyLimits:
    return BodyLimits(app, settings=make_settings(tmp_path, "sqlite://", **overrides))


def test_bodyless_requests_past_the_limit_wait_their_turn(tmp_path: Path) -> None:
    async def scenario() -> None:
        app = _Blocking()
        limits = _limits(app, tmp_path, api_max_running=2)
        tasks = [
            asyncio.create_task(limits(_scope(f"/v1/jobs/{i}"), _receive, _send)) for i in range(3)
        ]
        await asyncio.sleep(0.05)
        assert app.started == ["/v1/jobs/0", "/v1/jobs/1"]  # the third waits, unanswered
        app.release.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        assert app.started[2] == "/v1/jobs/2"

    asyncio.run(scenario())


def test_a_started_response_frees_its_slot(tmp_path: Path) -> None:
    async def scenario() -> None:
        app = _Blocking(start_first=True)  # a stream: headers sent, the body goes on
        limits = _limits(app, tmp_path, api_max_running=1)
        tasks = [
            asyncio.create_task(limits(_scope(f"/v1/s/{i}"), _receive, _send)) for i in range(3)
        ]
        await asyncio.sleep(0.05)
        assert len(app.started) == 3
        app.release.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)

    asyncio.run(scenario())


def test_requests_with_a_body_and_outside_v1_are_not_held_back(tmp_path: Path) -> None:
    async def scenario() -> None:
        app = _Blocking()
        limits = _limits(app, tmp_path, api_max_running=1)
        scopes = [_scope("/v1/jobs/0"), _scope("/v1/jobs", body=True), _scope("/readyz")]
        tasks = [asyncio.create_task(limits(scope, _receive, _send)) for scope in scopes]
        await asyncio.sleep(0.05)
        assert sorted(app.started) == ["/readyz", "/v1/jobs", "/v1/jobs/0"]
        app.release.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)

    asyncio.run(scenario())


def test_healthz_is_answered_before_the_middleware_and_the_router(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, "sqlite://"), queue=FakeQueue())  # type: ignore[arg-type]
    with TestClient(app) as client:
        fast = client.get("/healthz")
        assert fast.status_code == 200 and fast.content == b'{"status":"ok"}'
        assert fast.headers["content-type"] == "application/json"
        assert "x-request-id" not in fast.headers  # the request-id middleware never ran
        assert client.head("/healthz").status_code == 405  # other methods: routed, as before
        assert client.get("/openapi.json").headers["x-request-id"].startswith("req_")
