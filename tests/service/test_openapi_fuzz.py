"""The API against its own OpenAPI document, fuzzed with schemathesis on SQLite and PostgreSQL.

Every operation gets a bounded number of generated requests (valid and edge-case ids, cursors,
bodies, multipart uploads), authenticated as a real tenant that owns a model, a dataset and a
job. Whatever the input: no 5xx, and every answer's status, content type, headers and body are
the ones the document declares (one ``Problem`` schema for every error).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from layerfuse.service.app import create_app
from layerfuse.service.settings import Settings
from layerfuse.service.store import Database
from layerfuse.service.store import workers as worker_store

from .conftest import ACME_KEY, FakeQueue
from .helpers import a_worker, job_body, upload_dataset, upload_model

# Per operation and backend; keeps the module around a minute on two busy cores.
MAX_EXAMPLES = 12
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
]
AUTH = {"Authorization": f"Bearer {ACME_KEY}"}


def _fuzz(operation: Any) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        case.call_and_validate(headers=AUTH, checks=CHECKS)

    run()


def test_the_api_keeps_its_contract(
    settings: Settings, db: Database, tiny_classifier: Path, synthetic_data: dict[str, Path]
) -> None:
    app = create_app(settings, db=db, queue=FakeQueue())  # type: ignore[arg-type]
    with TestClient(app, headers=AUTH) as client:  # runs the lifespan: the store, the metrics
        model = upload_model(client, tiny_classifier).json()["id"]
        train = upload_dataset(client, synthetic_data["train"]).json()["id"]
        assert client.post("/v1/jobs", json=job_body(model, train)).status_code == 201
        with db.session() as session:  # a worker seen: /readyz answers 200, not its 503
            worker_store.touch(session, "fuzz", a_worker())
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        failures: dict[str, str] = {}
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 18
        for operation in operations:
            try:
                _fuzz(operation)
            except (Exception, BaseExceptionGroup) as exc:  # one must not hide the others
                failures[operation.label] = str(exc)[:2000]
    assert failures == {}
