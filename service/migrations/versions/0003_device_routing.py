"""Routing by device class: the queue class a job was sent to, and what each worker runs on.

Jobs still active when this runs are given the class their ``options.device`` asks for (``cuda``:
gpu; anything else: cpu, the queue a pre-routing fleet's workers become), so the reconciler
re-enqueues them to a queue that has consumers.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ACTIVE = ("queued", "running", "cancelling")


def upgrade() -> None:
    op.add_column("jobs", sa.Column("routed_to", sa.String(8), nullable=True))
    with op.batch_alter_table("workers") as batch:
        batch.add_column(
            sa.Column("device_class", sa.String(8), nullable=False, server_default="cpu")
        )
        batch.add_column(sa.Column("queue", sa.String(128), nullable=True))
        batch.add_column(sa.Column("device", sa.String(16), nullable=True))
        batch.add_column(sa.Column("device_name", sa.String(255), nullable=True))
        batch.add_column(sa.Column("memory_bytes", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("concurrency", sa.Integer(), nullable=True))
    jobs = sa.table(
        "jobs",
        sa.column("id", sa.String),
        sa.column("status", sa.String),
        sa.column("spec", sa.JSON),
        sa.column("routed_to", sa.String),
    )
    connection = op.get_bind()
    rows = connection.execute(sa.select(jobs.c.id, jobs.c.spec).where(jobs.c.status.in_(ACTIVE)))
    for job_id, spec in rows.all():
        device = ((spec or {}).get("options") or {}).get("device")
        routed_to = "gpu" if device == "cuda" else "cpu"
        connection.execute(jobs.update().where(jobs.c.id == job_id).values(routed_to=routed_to))


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        for column in ("concurrency", "memory_bytes", "device_name", "device", "queue"):
            batch.drop_column(column)
        batch.drop_column("device_class")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("routed_to")
