"""Workers and what they run on: the worker's heartbeat writes its row; ``/readyz``,
``GET /v1/workers`` and job routing (is a GPU worker online?) read them."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from .models import Worker, now


@dataclass(frozen=True)
class Description:
    """What a worker says about itself at every heartbeat."""

    hostname: str
    started_at: float
    device_class: str  # the queue class it consumes: "cpu" or "gpu"
    queue: str
    device: str  # the torch device type its jobs run on
    device_name: str
    memory_bytes: int | None
    concurrency: int


def touch(session: Session, name: str, description: Description) -> None:
    values = asdict(description)
    result = session.execute(
        update(Worker).where(Worker.name == name).values(last_seen_at=now(), **values)
    )
    if not getattr(result, "rowcount", 0):
        session.add(Worker(name=name, last_seen_at=now(), **values))


def last_seen(session: Session, device_class: str | None = None) -> float | None:
    """When a worker (of ``device_class``, when given) last sent a heartbeat."""
    query = select(func.max(Worker.last_seen_at))
    if device_class is not None:
        query = query.where(Worker.device_class == device_class)
    value = session.scalar(query)
    return float(value) if value is not None else None


def seen_since(session: Session, since: float, device_class: str | None = None) -> bool:
    last = last_seen(session, device_class)
    return last is not None and last >= since


def online(session: Session, since: float, limit: int = 1000) -> list[Worker]:
    """Workers whose last heartbeat is at or after ``since``, most recently seen first."""
    query = select(Worker).where(Worker.last_seen_at >= since)
    query = query.order_by(Worker.last_seen_at.desc(), Worker.name).limit(limit)
    return list(session.scalars(query))


def prune(session: Session, before: float) -> int:
    """Forget the workers last seen before ``before``: every restart of a worker process is a
    new name, so without this the table grows by one row per restart, for ever."""
    result = session.execute(delete(Worker).where(Worker.last_seen_at < before))
    return int(getattr(result, "rowcount", 0) or 0)
