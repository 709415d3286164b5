"""The job store on SQLite and PostgreSQL: migrations, atomic claims, the reconciler."""

from __future__ import annotations

import threading

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import update

from layerfuse.service.reconciler import reconcile_once
from layerfuse.service.store import FAILED, QUEUED, RUNNING, Database, Job, now
from layerfuse.service.store import jobs as job_store
from layerfuse.service.store import workers as worker_store
from layerfuse.service.store.models import Base

from .conftest import FakeQueue, make_settings
from .helpers import a_worker

SPEC = {"model": {"source": "upload", "id": "mdl_x"}, "dataset": {"train": "ds_x"}}


def new_job(db: Database, tenant: str = "acme") -> str:
    with db.session() as session:
        return job_store.create_job(
            session, tenant=tenant, spec=SPEC, metadata={}, routed_to="cpu"
        ).id


def claim(db: Database, job_id: str, *, stale_s: float = 60, max_attempts: int = 3):
    with db.session() as session:
        return job_store.claim_job(
            session, job_id, worker="w", stale_before=now() - stale_s, max_attempts=max_attempts
        )


def age_heartbeat(db: Database, job_id: str, seconds: float) -> None:
    with db.session() as session:
        session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=now() - seconds))


def status(db: Database, job_id: str) -> Job:
    with db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def test_migrations_match_the_models(db: Database) -> None:
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_only_one_of_concurrent_claims_wins(db: Database) -> None:
    job_id = new_job(db)
    results: list[object] = []
    barrier = threading.Barrier(4)

    def contend() -> None:
        barrier.wait()
        results.append(claim(db, job_id))

    threads = [threading.Thread(target=contend) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    job = status(db, job_id)
    assert (job.status, job.attempts) == (RUNNING, 1)


def test_a_stale_running_job_is_claimed_again_and_the_old_attempt_loses_it(db: Database) -> None:
    job_id = new_job(db)
    first = claim(db, job_id)
    assert first is not None and first.attempt == 1
    assert claim(db, job_id) is None  # fresh heartbeat: a redelivery is a no-op
    age_heartbeat(db, job_id, 600)
    second = claim(db, job_id)
    assert second is not None and second.attempt == 2
    with db.session() as session:
        assert job_store.heartbeat(session, first) is False
        assert job_store.claim_state(session, first) is None
        assert job_store.finish_job(session, first, "succeeded", result={}) is False
        assert job_store.finish_job(session, second, "succeeded", result={"ok": 1}, artifacts=[])
    job = status(db, job_id)
    assert (job.status, job.result) == ("succeeded", {"ok": 1})
    assert claim(db, job_id) is None  # finished: a redelivery is a no-op


def test_a_stale_job_out_of_attempts_fails_with_worker_lost(db: Database) -> None:
    job_id = new_job(db)
    assert claim(db, job_id, max_attempts=1) is not None
    age_heartbeat(db, job_id, 600)
    assert claim(db, job_id, max_attempts=1) is None
    job = status(db, job_id)
    assert job.status == FAILED
    assert job.error is not None and job.error["code"] == "worker_lost"


def test_reconciler_requeues_fails_cancels_and_reenqueues(tmp_path, database_url, db) -> None:
    settings = make_settings(
        tmp_path, database_url, heartbeat_timeout_s=30, queued_timeout_s=120, max_attempts=2
    )
    queue = FakeQueue()
    healthy, dead, exhausted, cancelling, lost, fresh = (new_job(db) for _ in range(6))
    for job_id in (healthy, dead, exhausted, cancelling):
        assert claim(db, job_id) is not None
    assert claim(db, exhausted) is None
    age_heartbeat(db, exhausted, 600)
    assert claim(db, exhausted, stale_s=30) is not None  # attempt 2 of 2
    with db.session() as session:
        session.execute(update(Job).where(Job.id == cancelling).values(status="cancelling"))
        session.execute(update(Job).where(Job.id == lost).values(enqueued_at=now() - 600))
    for job_id in (dead, exhausted, cancelling):
        age_heartbeat(db, job_id, 600)

    outcome = reconcile_once(db, queue, settings)  # type: ignore[arg-type]

    assert outcome.requeued == [dead]
    assert outcome.failed == [exhausted]
    assert outcome.cancelled == [cancelling]
    assert outcome.reenqueued == [lost]
    assert sorted(queue.enqueued) == sorted([dead, lost])
    assert status(db, healthy).status == RUNNING
    assert status(db, dead).status == QUEUED
    assert status(db, fresh).status == QUEUED
    assert status(db, exhausted).error["code"] == "worker_lost"  # type: ignore[index]
    assert status(db, cancelling).status == "cancelled"
    # A second pass right away has nothing to do.
    again = reconcile_once(db, queue, settings)  # type: ignore[arg-type]
    assert again.to_enqueue == [] and again.failed == [] and again.cancelled == []
    # The requeued job is claimable again, as attempt 2.
    second = claim(db, dead)
    assert second is not None and second.attempt == 2


def test_reconciler_retries_an_enqueue_that_failed(tmp_path, database_url, db) -> None:
    settings = make_settings(tmp_path, database_url, queued_timeout_s=120)
    queue = FakeQueue()
    job_id = new_job(db)
    with db.session() as session:
        session.execute(update(Job).where(Job.id == job_id).values(enqueued_at=now() - 600))
    queue.down = True
    reconcile_once(db, queue, settings)  # type: ignore[arg-type]
    queue.down = False
    assert reconcile_once(db, queue, settings).reenqueued == [job_id]  # type: ignore[arg-type]


def test_reconciler_forgets_workers_not_seen_within_the_retention(
    tmp_path, database_url, db
) -> None:
    settings = make_settings(tmp_path, database_url, worker_retention_s=3600)
    with db.session() as session:
        for name, age_s in (("restarted-long-ago", 7200), ("seen-an-hour-less-a-bit", 3500)):
            worker_store.touch(session, name, a_worker())
            session.execute(
                update(worker_store.Worker)
                .where(worker_store.Worker.name == name)
                .values(last_seen_at=now() - age_s)
            )
    reconcile_once(db, FakeQueue(), settings)  # type: ignore[arg-type]
    with db.session() as session:
        left = [w.name for w in worker_store.online(session, since=0)]
    assert left == ["seen-an-hour-less-a-bit"]
