"""Workers seen recently: the worker writes its heartbeat, ``/readyz`` reads it."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from .models import Worker, now


def touch(session: Session, *, name: str, hostname: str, started_at: float) -> None:
    result = session.execute(
        update(Worker).where(Worker.name == name).values(last_seen_at=now(), hostname=hostname)
    )
    if not getattr(result, "rowcount", 0):
        session.add(Worker(name=name, hostname=hostname, started_at=started_at, last_seen_at=now()))


def last_seen(session: Session) -> float | None:
    value = session.scalar(select(func.max(Worker.last_seen_at)))
    return float(value) if value is not None else None
