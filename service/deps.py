"""Dependencies the routes declare, as ``Annotated`` aliases: a signature lists its needs.

All of them are ``async`` and cheap: FastAPI runs a plain ``def`` dependency in the threadpool, and
a request that needs one thread hop for each of its dependencies waits for threads several times
under load. Routes open their database session inside the one thread that runs their body
(``with db.session() as session:``), so a connection is held only while that thread uses it and is
never left waiting for a second hop to be returned to the pool.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .broker import JobQueue
from .errors import Unauthorized
from .settings import DEFAULT_TENANT, Settings
from .storage import Storage
from .store import Database

_bearer = HTTPBearer(auto_error=False, description="An API key of LAYERFUSE_API_KEYS")


async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_queue(request: Request) -> JobQueue:
    queue: JobQueue = request.app.state.queue
    return queue


async def current_tenant(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The tenant owning the request's bearer key (keys are compared as hashes).

    The settings come from the request, not from a sub-dependency: every authenticated request
    resolves this, and each dependency FastAPI solves costs it time on the event loop."""
    settings: Settings = request.app.state.settings
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
QueueDep = Annotated[JobQueue, Depends(get_queue)]
TenantDep = Annotated[str, Depends(current_tenant)]


async def get_storage(request: Request) -> Storage:
    storage: Storage = request.app.state.storage
    return storage


StorageDep = Annotated[Storage, Depends(get_storage)]
