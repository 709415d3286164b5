"""A job's events: paged (oldest first) and live as Server-Sent Events.

The stream sends each event as ``id: evt_<n>`` plus ``data: <event JSON>``, resumes after the
``Last-Event-ID`` header (or ``?after=``), sends a comment every 15 s to keep proxies from
closing it, and ends after the job's terminal status event.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from ..deps import DatabaseDep, TenantDep
from ..errors import Unprocessable
from ..ids import EVENT_ID_PATTERN, EventCursor, parse_event_id
from ..schemas import EventObject, Page, event_object, page
from ..store import TERMINAL_STATUSES, Database, Event
from ..store import jobs as job_store
from .jobs import get_job_or_404

router = APIRouter(prefix="/v1/jobs", tags=["events"])

POLL_INTERVAL_S = 0.5
KEEPALIVE_S = 15.0


def _cursor(after: str | None, param: str) -> int:
    if not after:
        return 0
    seq = parse_event_id(after)
    if seq is None:
        raise Unprocessable(f"{param} must be an event id (evt_<n>, n below 10^18)", param=param)
    return seq


@router.get("/{job_id}/events", response_model=Page[EventObject])
def list_events(
    job_id: str,
    tenant: TenantDep,
    db: DatabaseDep,
    after: EventCursor = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    cursor = _cursor(after, "after")
    with db.session() as session:
        get_job_or_404(session, tenant, job_id)
        rows = job_store.list_events(session, job_id, after_seq=cursor, limit=limit + 1)
    has_more = len(rows) > limit
    events = [event_object(e) for e in rows[:limit]]
    return page(events, has_more, [e["id"] for e in events])


@router.get(
    "/{job_id}/events/stream",
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
    response_class=StreamingResponse,
    summary="Follow a job's events as Server-Sent Events",
)
def stream_events(
    job_id: str,
    request: Request,
    tenant: TenantDep,
    db: DatabaseDep,
    after: EventCursor = None,
    last_event_id: Annotated[
        str | None, Header(alias="Last-Event-ID", pattern=EVENT_ID_PATTERN)
    ] = None,
) -> StreamingResponse:
    cursor = _cursor(last_event_id, "Last-Event-ID") if last_event_id else _cursor(after, "after")
    # A short session of its own: a stream may last hours and must not hold a connection.
    with db.session() as session:
        get_job_or_404(session, tenant, job_id)
    return StreamingResponse(
        _follow(request, db, job_id, cursor),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _poll(db: Database, job_id: str, cursor: int) -> tuple[list[Event], str | None]:
    with db.session() as session:
        events = job_store.list_events(session, job_id, after_seq=cursor, limit=500)
        job = session.get(job_store.Job, job_id)
        return events, (job.status if job is not None else None)


def _is_terminal(event: Event) -> bool:
    return event.type == "status" and (event.data or {}).get("status") in TERMINAL_STATUSES


async def _follow(request: Request, db: Database, job_id: str, cursor: int) -> AsyncIterator[str]:
    last_sent = time.monotonic()
    while True:
        events, status = await run_in_threadpool(_poll, db, job_id, cursor)
        for event in events:
            cursor = event.seq
            body = event_object(event)
            yield f"id: {body['id']}\ndata: {json.dumps(body)}\n\n"
            last_sent = time.monotonic()
            if _is_terminal(event):
                return
        if status is None or (not events and status in TERMINAL_STATUSES):
            return
        if await request.is_disconnected():
            return
        if time.monotonic() - last_sent > KEEPALIVE_S:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
        if not events:
            await asyncio.sleep(POLL_INTERVAL_S)
