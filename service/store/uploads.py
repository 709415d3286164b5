"""Uploaded models and datasets: rows that describe files under the data directory."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from .models import Dataset, Model

Upload = TypeVar("Upload", Model, Dataset)


def get(session: Session, kind: type[Upload], tenant: str, upload_id: str) -> Upload | None:
    return session.scalar(select(kind).where(kind.id == upload_id, kind.tenant == tenant))


def page(
    session: Session, kind: type[Upload], tenant: str, *, limit: int, after: str | None
) -> tuple[list[Upload], bool]:
    """Newest first, like jobs. Returns (page, has_more)."""
    query: Any = select(kind).where(kind.tenant == tenant)
    if after:
        query = query.where(kind.id < after)
    rows = list(session.scalars(query.order_by(kind.id.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def remove(session: Session, kind: type[Upload], upload_id: str) -> None:
    session.execute(delete(kind).where(kind.id == upload_id))
