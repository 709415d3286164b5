"""The pollers' cache of ``GET /v1/jobs/{id}`` (service/jobcache.py), on SQLite and PostgreSQL.

What a poller can notice: repeated reads answer the same body as the route, with the request id
and the metrics; a change a worker makes shows up within the cache's seconds, never later; this
API's own cancel shows up at once; a hit never reaches a request without the tenant's key.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from layerfuse.service.jobcache import JobReadCache
from layerfuse.service.settings import Settings
from layerfuse.service.store import Database, now
from layerfuse.service.store import jobs as job_store

from .conftest import make_settings
from .helpers import assert_problem, job_body, upload_dataset, upload_model

TTL_S = 0.4


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url, job_read_cache_s=TTL_S)


@pytest.fixture
def job_id(client: TestClient, tiny_classifier: Path, synthetic_data: Any) -> str:
    model = upload_model(client, tiny_classifier).json()["id"]
    train = upload_dataset(client, synthetic_data["train"]).json()["id"]
    response = client.post("/v1/jobs", json=job_body(model, train))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def claim_behind_the_api(db: Database, job_id: str) -> None:
    """What a worker does, in the database and not through this API process."""
    with db.session() as session:
        claim = job_store.claim_job(
            session, job_id, worker="w", stale_before=now() - 60, max_attempts=3
        )
        assert claim is not None
        assert job_store.set_stage(session, claim, "sweeping")


def test_a_worker_change_shows_up_within_the_cache_seconds(
    client: TestClient, db: Database, job_id: str
) -> None:
    first = client.get(f"/v1/jobs/{job_id}")
    assert first.json()["status"] == "queued"
    claim_behind_the_api(db, job_id)
    changed_at = time.monotonic()
    seen = []
    while True:
        response = client.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200
        seen.append(response.json()["status"])
        if seen[-1] == "running":
            break
        assert time.monotonic() - changed_at < TTL_S + 1.0, f"still {seen[-1]!r}"
        time.sleep(0.02)
    # The reads just after the change were answered from the cache, unchanged, with the
    # route's headers and a request id of their own.
    assert seen[0] == "queued"
    cached = client.get(f"/v1/jobs/{job_id}")
    again = client.get(f"/v1/jobs/{job_id}")
    assert cached.content == again.content
    assert again.headers["content-type"] == "application/json"
    assert again.headers["x-request-id"] != cached.headers["x-request-id"]


def test_cancel_through_the_api_is_seen_by_the_next_read(
    client: TestClient, db: Database, job_id: str
) -> None:
    claim_behind_the_api(db, job_id)
    time.sleep(TTL_S)
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "running"
    assert client.post(f"/v1/jobs/{job_id}/cancel").json()["status"] == "cancelling"
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelling"


def test_a_cached_job_still_needs_its_tenants_key(
    client: TestClient, globex: TestClient, job_id: str
) -> None:
    assert client.get(f"/v1/jobs/{job_id}").status_code == 200
    assert_problem(globex.get(f"/v1/jobs/{job_id}"), 404, "not_found")
    anonymous = TestClient(client.app)
    assert_problem(anonymous.get(f"/v1/jobs/{job_id}"), 401, "missing_api_key")
    wrong = {"Authorization": "Bearer not-a-key-of-anyone-at-all-000"}
    assert_problem(anonymous.get(f"/v1/jobs/{job_id}", headers=wrong), 401, "invalid_api_key")
    basic = {"Authorization": "Basic " + client.headers["Authorization"].split(" ", 1)[1]}
    assert anonymous.get(f"/v1/jobs/{job_id}", headers=basic).status_code == 401


def test_hits_are_counted_under_the_route_template(client: TestClient, job_id: str) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    for _ in range(3):
        assert client.get(f"/v1/jobs/{job_id}").status_code == 200
    text = TestClient(client.app).get("/metrics").text
    counted = sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "layerfuse_http_requests_total"
        and (s.labels["method"], s.labels["route"], s.labels["status"])
        == ("GET", "/v1/jobs/{job_id}", "200")
    )
    assert counted == 3


def test_with_the_cache_off_every_read_sees_the_database(
    tmp_path: Path, database_url: str, db: Database, queue: Any, job_id: str, client: TestClient
) -> None:
    from layerfuse.service.app import create_app

    off = make_settings(tmp_path, database_url, job_read_cache_s=0)
    app = create_app(off, db=db, queue=queue)
    with TestClient(app, headers={"Authorization": client.headers["Authorization"]}) as uncached:
        assert uncached.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"
        claim_behind_the_api(db, job_id)
        assert uncached.get(f"/v1/jobs/{job_id}").json()["status"] == "running"


def test_a_read_that_raced_an_eviction_is_not_kept() -> None:
    cache = JobReadCache(ttl_s=60)
    generation = cache.generation  # a read starts
    cache.evict("acme", "job_1")  # a cancel commits meanwhile
    cache.put("acme", "job_1", b"old", generation)  # the read ends
    assert cache.get("acme", "job_1") is None
    cache.put("acme", "job_1", b"new", cache.generation)
    assert cache.get("acme", "job_1") == b"new"
    assert cache.get("globex", "job_1") is None


def test_the_cache_holds_at_most_its_entries_dropping_the_oldest() -> None:
    cache = JobReadCache(ttl_s=60, max_entries=3)
    for i in range(5):
        cache.put("acme", f"job_{i}", str(i).encode(), cache.generation)
    assert [cache.get("acme", f"job_{i}") for i in range(5)] == [None, None, b"2", b"3", b"4"]
