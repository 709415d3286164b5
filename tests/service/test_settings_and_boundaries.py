"""Settings refuse unsafe secrets; packages keep their import boundaries (architecture.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from layerfuse.service.app import create_app
from layerfuse.service.settings import ConfigError, Settings

REPO = Path(__file__).resolve().parents[2]


def test_keys_are_kept_only_as_hashes() -> None:
    key = "s3cr3t-key-0123456789abcdef"
    settings = Settings(env="production", api_keys=f"acme:{key}", data_dir=Path("/tmp/x"))
    assert key not in repr(settings) and key not in str(settings.api_keys)
    assert settings.tenant_for_key(key) == "acme"
    assert settings.tenant_for_key(key + "x") is None
    settings.check_api_secrets()


@pytest.mark.parametrize(
    "values",
    [
        {"api_keys": ""},
        {"api_keys": "acme:changeme"},
        {"api_keys": "acme:short"},
        {"api_keys": "acme:change-this-placeholder-key"},
        {"api_keys": "acme:0123456789abcdefXYZ", "auth_disabled": True},
    ],
)
def test_the_service_refuses_to_start_with_unsafe_auth_outside_development(values) -> None:
    settings = Settings(env="production", **values)
    with pytest.raises(ConfigError):
        create_app(settings)
    Settings(env="development", **values).check_api_secrets()


def test_malformed_key_lists_are_refused() -> None:
    with pytest.raises(ValueError, match="tenant:key"):
        Settings(api_keys="just-a-key-without-tenant")
    with pytest.raises(ValueError, match="tenant"):
        Settings(api_keys="../etc:0123456789abcdefXYZ")


def test_environment_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LAYERFUSE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://u@h/db")
    monkeypatch.setenv("REDIS_URL", "redis://h:6379/1")
    monkeypatch.setenv("LAYERFUSE_API_KEYS", "acme:0123456789abcdefXYZ")
    monkeypatch.setenv("LAYERFUSE_MAX_MODEL_UPLOAD_BYTES", "1024")
    settings = Settings()
    assert settings.data_dir == tmp_path
    assert settings.resolved_database_url == "postgresql+psycopg://u@h/db"
    assert settings.redis_url == "redis://h:6379/1"
    assert settings.max_model_upload_bytes == 1024
    assert settings.tenant_for_key("0123456789abcdefXYZ") == "acme"
    monkeypatch.delenv("DATABASE_URL")
    assert Settings().resolved_database_url == f"sqlite:///{tmp_path.resolve()}/layerfuse.db"


def _modules_after_import(module: str, data_dir: Path) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sys.modules))"
    env = {**os.environ, "LAYERFUSE_DATA_DIR": str(data_dir)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    ).stdout
    return set(out.split())


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("layerfuse.service.app", {"torch", "transformers"}),
        ("layerfuse.compression", {"torch", "fastapi", "celery", "sqlalchemy"}),
        ("layerfuse.compression.datasets", {"torch"}),
        ("layerfuse.service.store", {"torch", "fastapi", "celery"}),
        ("layerfuse.worker.tasks", {"torch", "fastapi"}),
    ],
)
def test_import_boundaries(module: str, forbidden: set[str], tmp_path: Path) -> None:
    assert _modules_after_import(module, tmp_path) & forbidden == set()


def test_supported_model_types_match_the_library() -> None:
    from layerfuse.compression.architectures import ADAPTERS
    from layerfuse.compression.catalogue import MODEL_TYPES

    assert set(MODEL_TYPES) == set(ADAPTERS)
