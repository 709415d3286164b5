"""Dependencies the routes declare, as ``Annotated`` aliases: a signature lists its needs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from .broker import JobQueue
from .errors import Unauthorized
from .settings import DEFAULT_TENANT, Settings
from .storage import Storage
from .store import Database

_bearer = HTTPBearer(auto_error=False, description="An API key of LAYERFUSE_API_KEYS")


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_session(db: Annotated[Database, Depends(get_database)]) -> Iterator[Session]:
    with db.session() as session:
        yield session


def get_queue(request: Request) -> JobQueue:
    queue: JobQueue = request.app.state.queue
    return queue


def current_tenant(
    settings: Annotated[Settings, Depends(get_settings_dep)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The tenant owning the request's bearer key (keys are compared as hashes)."""
    if settings.auth_disabled:
        return DEFAULT_TENANT
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None or not credentials.credentials:
        raise Unauthorized(
            "send an API key as 'Authorization: Bearer <key>'",
            code="missing_api_key",
            headers=challenge,
        )
    tenant = settings.tenant_for_key(credentials.credentials)
    if tenant is None:
        raise Unauthorized("the API key is not valid", code="invalid_api_key", headers=challenge)
    return tenant


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
DatabaseDep = Annotated[Database, Depends(get_database)]
SessionDep = Annotated[Session, Depends(get_session)]
QueueDep = Annotated[JobQueue, Depends(get_queue)]
TenantDep = Annotated[str, Depends(current_tenant)]


def get_storage(request: Request) -> Storage:
    storage: Storage = request.app.state.storage
    return storage


StorageDep = Annotated[Storage, Depends(get_storage)]
