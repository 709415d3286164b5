"""The formats of the API's ids and cursors, checked before a value reaches the store.

Ids are ``<prefix>_`` + 24 lowercase hex digits (:func:`layerfuse.service.store.new_id`); event
ids are ``evt_<n>`` with ``n`` a 64-bit sequence number. A value of another form can name nothing,
so it is answered without a query: 404 in a path, 422 in a query or body. That also keeps bytes a
database refuses (NUL on PostgreSQL) and numbers it cannot hold away from it.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Query

JOB, MODEL, DATASET, DELIVERY = "job", "mdl", "ds", "msg"
_HEX = "[0-9a-f]{24}"


def id_pattern(prefix: str) -> str:
    return f"^{prefix}_{_HEX}$"


_PATTERNS = {prefix: re.compile(id_pattern(prefix)) for prefix in (JOB, MODEL, DATASET, DELIVERY)}
# evt_<n>, or a bare n as some SSE clients send; at most 18 digits, so n fits a signed 64-bit int.
EVENT_ID_PATTERN = r"^(evt_)?[0-9]{1,18}$"
_EVENT_ID = re.compile(EVENT_ID_PATTERN)
# Idempotency keys: visible ASCII (a UUID, a hash, a job name...).
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"


def is_id(value: str, prefix: str) -> bool:
    return bool(_PATTERNS[prefix].fullmatch(value))


def parse_event_id(value: str) -> int | None:
    """``evt_<n>`` or ``<n>`` to ``n``; None when it is not an event id."""
    if not _EVENT_ID.fullmatch(value):
        return None
    return int(value.removeprefix("evt_"))


def after_query(prefix: str) -> object:
    """``?after=``: the last id of the previous page, of this kind."""
    return Query(pattern=id_pattern(prefix), description="last id of the previous page")


JobCursor = Annotated[str | None, after_query(JOB)]
ModelCursor = Annotated[str | None, after_query(MODEL)]
DatasetCursor = Annotated[str | None, after_query(DATASET)]
DeliveryCursor = Annotated[str | None, after_query(DELIVERY)]
EventCursor = Annotated[
    str | None, Query(pattern=EVENT_ID_PATTERN, description="an event id (evt_…)")
]
