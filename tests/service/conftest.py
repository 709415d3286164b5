"""Fixtures for the service: a migrated store on SQLite and on PostgreSQL, the app, clients.

The PostgreSQL store uses a fresh database per test session (``layerfuse_test_<random>``, dropped
at the end) on the server of ``DATABASE_URL_TEST`` (default: this machine's, trust auth). When it
cannot be reached the PostgreSQL variants skip with a reason starting ``SERVICE-SKIP:``, which CI
treats as a failure.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import make_url

from layerfuse.service.app import create_app
from layerfuse.service.broker import BrokerUnavailable
from layerfuse.service.settings import Settings
from layerfuse.service.store import Database, upgrade
from layerfuse.service.store.models import Base

ADMIN_URL = os.environ.get("DATABASE_URL_TEST", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
ACME_KEY = "acme-" + "k" * 27
GLOBEX_KEY = "globex-" + "g" * 25
API_KEYS = f"acme:{ACME_KEY},globex:{GLOBEX_KEY}"


class FakeQueue:
    """Records enqueued job ids and the device class each went to; ``down = True`` makes it
    behave like an unreachable broker."""

    def __init__(self) -> None:
        self.enqueued: list[str] = []
        self.routes: dict[str, str] = {}
        self.down = False

    def enqueue(self, job_id: str, device_class: str) -> None:
        if self.down:
            raise BrokerUnavailable("connection refused")
        self.enqueued.append(job_id)
        self.routes[job_id] = device_class

    def ping(self) -> bool:
        return not self.down

    def close(self) -> None:
        pass


def _postgres_server() -> str | None:
    """The admin URL if PostgreSQL answers, else None."""
    import psycopg

    url = make_url(ADMIN_URL)
    try:
        with psycopg.connect(
            host=url.host,
            port=url.port or 5432,
            user=url.username,
            dbname=url.database,
            password=url.password,
            connect_timeout=3,
        ):
            return ADMIN_URL
    except Exception:
        return None


@contextlib.contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """Create ``layerfuse_test_<random>``, migrate it, yield its URL, drop it afterwards."""
    import psycopg

    admin = _postgres_server()
    if admin is None:
        pytest.skip(f"SERVICE-SKIP: PostgreSQL at {ADMIN_URL} is unreachable")
    url = make_url(admin)
    name = f"layerfuse_test_{secrets.token_hex(4)}"
    params = dict(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname=url.database,
        autocommit=True,
    )
    with psycopg.connect(**params) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    test_url = url.set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(test_url)
        yield test_url
    finally:
        with psycopg.connect(**params) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating once is faster)."""
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


def _truncate(url: str) -> None:
    db = Database(url)
    try:
        with db.engine.begin() as conn:
            names = ", ".join(t.name for t in Base.metadata.sorted_tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    finally:
        db.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty store on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "layerfuse.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_url")
    _truncate(url)
    return url


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


def make_settings(tmp_path: Path, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        env="test",
        data_dir=tmp_path / "data",
        database_url=database_url,
        api_keys=API_KEYS,
        reconcile_interval_s=0,
    )
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url)


@pytest.fixture
def queue() -> FakeQueue:
    return FakeQueue()


@pytest.fixture
def client(settings: Settings, db: Database, queue: FakeQueue) -> Iterator[TestClient]:
    """Tenant ``acme``'s client of the app."""
    app = create_app(settings, db=db, queue=queue)  # type: ignore[arg-type]
    with TestClient(app, headers={"Authorization": f"Bearer {ACME_KEY}"}) as test_client:
        yield test_client


@pytest.fixture
def globex(client: TestClient) -> TestClient:
    """Tenant ``globex``'s client of the same app."""
    other = TestClient(client.app, headers={"Authorization": f"Bearer {GLOBEX_KEY}"})
    return other


# --- The integration stack (tests.service.stack): one per test module that asks for it ---------


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from .stack import running_redis

    with running_redis(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """API, a worker and the webhook worker on Redis and PostgreSQL (a :class:`Stack`)."""
    from .stack import running_stack

    with running_stack(redis_url, tmp_path_factory.mktemp("stack")) as running:
        yield running
