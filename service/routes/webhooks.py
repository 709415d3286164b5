"""A job's webhook deliveries: each message, its status and every attempt (oldest first)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from ..deps import DatabaseDep, TenantDep
from ..ids import DeliveryCursor
from ..schemas import Page, WebhookDeliveryObject, delivery_object, page
from ..store import webhooks as webhook_store
from .jobs import get_job_or_404

router = APIRouter(prefix="/v1/jobs", tags=["webhooks"])


@router.get(
    "/{job_id}/webhook_deliveries",
    response_model=Page[WebhookDeliveryObject],
    summary="The job's webhook deliveries and their attempts, oldest first",
)
def list_webhook_deliveries(
    job_id: str,
    tenant: TenantDep,
    db: DatabaseDep,
    after: DeliveryCursor = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    with db.session() as session:
        get_job_or_404(session, tenant, job_id)
        rows, has_more = webhook_store.list_deliveries(session, job_id, after=after, limit=limit)
        return page([delivery_object(r) for r in rows], has_more, [r.id for r in rows])
