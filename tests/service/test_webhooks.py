"""Webhooks: Standard Webhooks signatures, the SSRF guard, the outbox and its deliveries.

The worker's side is played by the store functions it uses and by
:func:`layerfuse.worker.webhooks.deliver` (the body of the Celery task), against a real HTTP
receiver on 127.0.0.1.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from layerfuse.client import WebhookVerificationError, verify_webhook
from layerfuse.service.app import create_app
from layerfuse.service.netguard import UrlRefused, check_url
from layerfuse.service.settings import ConfigError, Settings
from layerfuse.service.store import DELIVERY_PENDING, Database, WebhookDelivery, now
from layerfuse.service.store import jobs as job_store
from layerfuse.service.store import webhooks as webhook_store
from layerfuse.service.webhooks import sign
from layerfuse.worker.webhooks import Dispatcher, deliver

from .conftest import ACME_KEY, FakeQueue, make_settings
from .helpers import (
    Receiver,
    assert_problem,
    job_body,
    upload_dataset,
    upload_model,
    verify_standard_webhook,
)

ACME_SECRET = "whsec_" + base64.b64encode(b"acme-webhook-key-of-32-bytes-xyz").decode()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Acme has a webhook secret (globex none); private receivers allowed; fast backoff."""
    return make_settings(
        tmp_path,
        database_url,
        webhook_secrets=f"acme:{ACME_SECRET}",
        webhook_allow_private=True,
        webhook_backoff_base_s=0.01,
        webhook_max_attempts=3,
        webhook_timeout_s=5,
    )


@pytest.fixture
def uploaded(client: TestClient, tiny_classifier: Path, synthetic_data) -> dict[str, str]:
    model = upload_model(client, tiny_classifier).json()
    train = upload_dataset(client, synthetic_data["train"]).json()
    return {"model": model["id"], "train": train["id"]}


@pytest.fixture
def strict(settings: Settings, db: Database) -> Iterator[TestClient]:
    """Acme's client of an app that refuses private addresses (the default)."""
    strict_settings = settings.model_copy(update={"webhook_allow_private": False})
    app = create_app(strict_settings, db=db, queue=FakeQueue())  # type: ignore[arg-type]
    with TestClient(app, headers={"Authorization": f"Bearer {ACME_KEY}"}) as test_client:
        yield test_client


def run_job_as_worker(db: Database, job_id: str, *, stages: tuple[str, ...]) -> None:
    """Claim, go through ``stages`` and succeed, with the store calls the worker makes."""
    with db.session() as session:
        claim = job_store.claim_job(
            session, job_id, worker="test", stale_before=now() - 60, max_attempts=3
        )
        assert claim is not None
    for stage in stages:
        with db.session() as session:
            job_store.set_stage(session, claim, stage)
            job_store.add_event(
                session, job_id, type="stage", stage=stage, message=stage, data={"stage": stage}
            )
            job_store.add_event(  # a progress event: never delivered
                session, job_id, type="progress", stage=stage, message="1%", data={}
            )
    with db.session() as session:
        assert job_store.finish_job(session, claim, "succeeded", result={"strategy": "drop-top"})


def deliver_all(db: Database, settings: Settings, timeout: float = 20.0) -> None:
    """Run the dispatcher with :func:`deliver` as its task until nothing is pending."""
    dispatcher = Dispatcher(db, settings, lambda delivery_id: deliver(db, settings, delivery_id))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dispatcher.dispatch_due()
        with db.session() as session:
            pending = session.query(WebhookDelivery).filter_by(status=DELIVERY_PENDING).count()
        if not pending:
            return
        time.sleep(0.02)
    raise AssertionError("deliveries still pending")


def test_signatures_follow_the_standard_webhooks_test_vector() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signature = sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

    headers = {
        "Webhook-Id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "Webhook-Timestamp": "1614265330",
        "Webhook-Signature": f"v1,bm90IGl0 {signature}",  # several signatures, one matches
    }
    assert verify_webhook(secret, headers, body, now=1614265330 + 10) == {"test": 2432232314}
    with pytest.raises(WebhookVerificationError, match="signature"):
        verify_webhook(secret, headers, body.replace(b"2", b"3"), now=1614265330)
    with pytest.raises(WebhookVerificationError, match="timestamp"):
        verify_webhook(secret, headers, body, now=1614265330 + 3600)
    # Anyone can send a non-ASCII signature: a refusal, not a TypeError from compare_digest.
    forged = {**headers, "Webhook-Signature": "v1,\u00e9"}
    with pytest.raises(WebhookVerificationError, match="signature"):
        verify_webhook(secret, forged, body, now=1614265330)


def test_webhook_secrets_are_per_tenant_and_never_weak(tmp_path: Path) -> None:
    explicit = Settings(webhook_secrets=f"acme:{ACME_SECRET}")
    assert explicit.webhook_secret_text("acme") == ACME_SECRET
    assert explicit.webhook_secret("globex") is None
    with pytest.raises(ValidationError, match="whsec_"):
        Settings(webhook_secrets="acme:not-a-secret")
    with pytest.raises(ValidationError, match="whsec_"):
        Settings(webhook_secrets="acme:whsec_" + base64.b64encode(b"short").decode())

    derived = Settings(webhook_signing_key="k" * 40, webhook_secrets=f"acme:{ACME_SECRET}")
    assert derived.webhook_secret_text("acme") == ACME_SECRET  # an explicit secret wins
    globex, initech = derived.webhook_secret("globex"), derived.webhook_secret("initech")
    assert globex and initech and globex != initech and len(globex) == 32
    assert Settings(webhook_signing_key="k" * 40).webhook_secret("globex") == globex
    assert Settings(webhook_signing_key="").webhook_signing_key is None

    weak = Settings(env="production", api_keys="acme:" + "a" * 32, webhook_signing_key="short")
    with pytest.raises(ConfigError, match="WEBHOOK_SIGNING_KEY"):
        weak.check_api_secrets()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.0.0.7/hook",
        "http://192.168.1.1/hook",
        "http://172.16.0.1/hook",
        "http://100.64.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[fd00:ec2::254]/hook",
        "http://[::ffff:10.0.0.1]/hook",
        "http://[fe80::1]/hook",
        "http://224.0.0.1/hook",
        "http://0.0.0.0/hook",
        "http://2130706433/hook",  # 127.0.0.1 as one number
        "http://240.0.0.1/hook",
    ],
)
def test_internal_addresses_are_refused(url: str) -> None:
    with pytest.raises(UrlRefused) as refused:
        check_url(url, allow_private=False)
    assert refused.value.kind == "forbidden"


def test_public_addresses_pass_and_metadata_stays_refused_when_private_is_allowed() -> None:
    assert check_url("https://93.184.215.14/hook", allow_private=False).addresses == (
        "93.184.215.14",
    )
    assert check_url("http://127.0.0.1:9/", allow_private=True).host_header == "127.0.0.1:9"
    for url in ("http://169.254.169.254/", "http://[fd00:ec2::254]/"):
        with pytest.raises(UrlRefused, match="metadata"):
            check_url(url, allow_private=True)
    for url in ("ftp://93.184.215.14/", "http://user:pw@93.184.215.14/", "http:///nohost"):
        with pytest.raises(UrlRefused) as refused:
            check_url(url, allow_private=True)
        assert refused.value.kind == "invalid"


def test_job_creation_refuses_webhooks_and_tracking_uris_it_will_not_call(
    strict: TestClient,
    client: TestClient,
    globex: TestClient,
    uploaded,
    tiny_classifier,
    synthetic_data,
) -> None:
    body = job_body(uploaded["model"], uploaded["train"])
    for url in ("http://127.0.0.1:9000/hook", "http://169.254.169.254/", "http://[::1]/"):
        response = strict.post("/v1/jobs", json={**body, "webhook": url})
        assert_problem(response, 422, "webhook_url_forbidden", "webhook")
    assert_problem(
        strict.post("/v1/jobs", json={**body, "webhook": "ftp://example.org/x"}),
        422,
        "webhook_url_invalid",
        "webhook",
    )
    assert_problem(
        strict.post("/v1/jobs", json={**body, "webhook_events_filter": ["finished"]}),
        422,
        "invalid_request",
        "webhook_events_filter.0",
    )
    mlflow = {"type": "mlflow", "mlflow": {"tracking_uri": "http://10.1.2.3:5000"}}
    assert_problem(
        strict.post("/v1/jobs", json={**body, "integrations": [mlflow]}),
        422,
        "mlflow_tracking_uri_forbidden",
        "integrations.0.mlflow.tracking_uri",
    )
    local = {"type": "mlflow", "mlflow": {"tracking_uri": "file:///tmp/mlruns"}}
    assert_problem(
        client.post("/v1/jobs", json={**body, "integrations": [local]}),
        422,
        "mlflow_tracking_uri_forbidden",
        "integrations.0.mlflow.tracking_uri",
    )
    bad_name = {"type": "mlflow", "mlflow": {"tracking_uri": "http://127.0.0.1:5000"}}
    bad_name["mlflow"]["registered_model_name"] = "../x"
    assert_problem(
        client.post("/v1/jobs", json={**body, "integrations": [bad_name]}),
        422,
        "invalid_request",
        "integrations.0.mlflow.registered_model_name",
    )

    # Globex has no signing secret on this server.
    model = upload_model(globex, tiny_classifier).json()["id"]
    train = upload_dataset(globex, synthetic_data["train"]).json()["id"]
    response = globex.post(
        "/v1/jobs", json={**job_body(model, train), "webhook": "http://127.0.0.1:9/"}
    )
    assert_problem(response, 422, "webhook_secret_missing", "webhook")


def test_deliveries_are_signed_retried_with_one_id_and_logged(
    client: TestClient, globex: TestClient, uploaded, db: Database, settings: Settings
) -> None:
    with Receiver(statuses=[500]) as receiver:
        body = {**job_body(uploaded["model"], uploaded["train"]), "webhook": receiver.url}
        job = client.post("/v1/jobs", json=body).json()
        plain = client.post("/v1/jobs", json=job_body(uploaded["model"], uploaded["train"]))
        assert job["spec"]["webhook"] == receiver.url
        run_job_as_worker(db, job["id"], stages=("preparing", "sweeping"))
        deliver_all(db, settings)

    # Four messages; job.started failed once (500) and was retried under the same id.
    assert len(receiver.requests) == 5
    by_id: dict[str, list[dict[str, Any]]] = {}
    for headers, content in receiver.requests:
        assert headers["content-type"] == "application/json"
        assert headers["host"] == receiver.url.split("/")[2]
        payload = verify_standard_webhook(ACME_SECRET, headers, content)
        by_id.setdefault(headers["webhook-id"], []).append(payload)
    assert sorted(len(sent) for sent in by_id.values()) == [1, 1, 1, 2]
    ids = sorted(by_id)  # ids sort in creation order
    payloads = [by_id[i][0] for i in ids]
    assert [p["type"] for p in payloads] == [
        "job.started",
        "job.stage",
        "job.stage",
        "job.completed",
    ]
    assert len(by_id[ids[0]]) == 2 and by_id[ids[0]][0] == by_id[ids[0]][1]  # same body
    # Each body is the job as the event's transaction left it, not as it is later.
    started, preparing, sweeping, completed = (p["data"] for p in payloads)
    assert {started["id"], completed["id"]} == {job["id"]}
    assert (started["status"], started["stage"]) == ("running", None)
    assert (preparing["stage"], sweeping["stage"]) == ("preparing", "sweeping")
    assert (completed["status"], completed["result"]) == ("succeeded", {"strategy": "drop-top"})
    assert payloads[0]["timestamp"].endswith("Z")

    log = client.get(f"/v1/jobs/{job['id']}/webhook_deliveries").json()
    assert [d["event_type"] for d in log["data"]] == [
        "job.started",
        "job.stage",
        "job.stage",
        "job.completed",
    ]
    first = log["data"][0]
    assert (first["status"], first["attempts"], first["response_status_code"]) == (
        "succeeded",
        2,
        200,
    )
    assert [a["status_code"] for a in first["attempt_log"]] == [500, 200]
    assert first["attempt_log"][0]["error"] == "the receiver answered 500"
    assert first["id"] == ids[0] and first["delivered_at"] >= first["created_at"]
    page = client.get(f"/v1/jobs/{job['id']}/webhook_deliveries", params={"limit": 2}).json()
    assert page["has_more"] and len(page["data"]) == 2
    rest = client.get(
        f"/v1/jobs/{job['id']}/webhook_deliveries", params={"after": page["last_id"]}
    ).json()
    assert [d["id"] for d in page["data"] + rest["data"]] == [d["id"] for d in log["data"]]
    assert client.get(f"/v1/jobs/{plain.json()['id']}/webhook_deliveries").json()["data"] == []
    assert_problem(globex.get(f"/v1/jobs/{job['id']}/webhook_deliveries"), 404, "not_found")


def test_a_failing_receiver_is_given_up_after_the_last_attempt(
    client: TestClient, uploaded, db: Database, settings: Settings
) -> None:
    with Receiver(statuses=[503] * 10) as receiver:
        body = {
            **job_body(uploaded["model"], uploaded["train"]),
            "webhook": receiver.url,
            "webhook_events_filter": ["completed"],
        }
        job = client.post("/v1/jobs", json=body).json()
        # Cancelling a queued job ends it in the API process: that is delivered too.
        assert client.post(f"/v1/jobs/{job['id']}/cancel").json()["status"] == "cancelled"
        deliver_all(db, settings)
    assert len(receiver.requests) == settings.webhook_max_attempts == 3
    assert len({h["webhook-id"] for h, _ in receiver.requests}) == 1
    (delivery,) = client.get(f"/v1/jobs/{job['id']}/webhook_deliveries").json()["data"]
    assert (delivery["event_type"], delivery["status"], delivery["attempts"]) == (
        "job.completed",
        "failed",
        3,
    )
    assert delivery["next_attempt_at"] is None and delivery["delivered_at"] is None
    times = [a["at"] for a in delivery["attempt_log"]]
    assert times == sorted(times)


def test_an_address_that_became_internal_is_not_called_at_delivery(
    client: TestClient, uploaded, db: Database, settings: Settings
) -> None:
    """Checked again right before the call (DNS may answer differently than at creation)."""
    with Receiver() as receiver:
        body = {
            **job_body(uploaded["model"], uploaded["train"]),
            "webhook": receiver.url,
            "webhook_events_filter": ["completed"],
        }
        job = client.post("/v1/jobs", json=body).json()
        client.post(f"/v1/jobs/{job['id']}/cancel")
        deliver_all(db, settings.model_copy(update={"webhook_allow_private": False}))
    assert receiver.requests == []
    (delivery,) = client.get(f"/v1/jobs/{job['id']}/webhook_deliveries").json()["data"]
    assert (delivery["status"], delivery["attempts"]) == ("failed", 1)
    assert delivery["error"].startswith("webhook_url_forbidden: 127.0.0.1 is a loopback address")


def test_a_leased_delivery_is_handed_out_once(
    client: TestClient, uploaded, db: Database, settings: Settings
) -> None:
    body = {
        **job_body(uploaded["model"], uploaded["train"]),
        "webhook": "http://127.0.0.1:9/",
        "webhook_events_filter": ["completed"],
    }
    job = client.post("/v1/jobs", json=body).json()
    client.post(f"/v1/jobs/{job['id']}/cancel")
    sent: list[str] = []

    def failing(delivery_id: str) -> Any:
        raise ConnectionError("broker down")

    assert Dispatcher(db, settings, failing).dispatch_due()  # released again after the failure
    first = Dispatcher(db, settings, sent.append).dispatch_due()
    assert Dispatcher(db, settings, sent.append).dispatch_due() == []  # still leased
    assert sent == first and len(first) == 1
    with db.session() as session:
        webhook_store.release(session, first[0])
    assert Dispatcher(db, settings, sent.append).dispatch_due() == first
