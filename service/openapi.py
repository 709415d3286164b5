"""The OpenAPI document: FastAPI's, plus every error a route can answer, as one ``Problem`` schema.

FastAPI declares only a 422 (as ``application/json`` with its own validation schema) and whatever a
route lists by hand. The server answers problem+json for 401, 404, 409, 413, 422 and 503 too, so a
generated client or a fuzzer would call those answers wrong. Here each operation gets the problems
it can answer, all referring to ``#/components/schemas/Problem``, with the headers they carry.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from layerfuse.compression.error_codes import ERROR_CODES

from .errors import PROBLEM_JSON
from .schemas import JobCreate

_NULLABLE_STRING = {"anyOf": [{"type": "string"}, {"type": "null"}]}
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem; `code` is stable (docs/service.md, Errors).",
    "type": "object",
    "required": ["type", "title", "status", "detail", "code", "param", "request_id"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string", "enum": sorted(ERROR_CODES)},
        "param": _NULLABLE_STRING,
        "request_id": _NULLABLE_STRING,
    },
}
_DESCRIPTIONS = {
    401: "Missing or invalid API key",
    404: "No such id for this tenant (or a malformed one)",
    408: "The request body arrived too slowly",
    409: "Conflicts with the resource's state",
    413: "The body is larger than the server's limit",
    422: "A field is invalid; `param` names it",
    503: "Busy or a dependency is down; retry after `Retry-After`",
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}}},
    503: {"Retry-After": {"schema": {"type": "string"}}},
}
# Operations that answer 409, by (method, path).
_CONFLICTS = {
    ("post", "/v1/jobs"),
    ("delete", "/v1/models/{model_id}"),
    ("delete", "/v1/datasets/{dataset_id}"),
    ("get", "/v1/jobs/{job_id}/report"),
    ("get", "/v1/jobs/{job_id}/artifacts"),
    ("get", "/v1/jobs/{job_id}/artifacts/{name}"),
}


def install(app: FastAPI) -> None:
    """Replace ``app.openapi`` with the completed document (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            _complete(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _complete(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    body = JobCreate.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(body.pop("$defs", {}))
    components[JobCreate.__name__] = body
    components["Problem"] = PROBLEM_SCHEMA
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            responses = operation.setdefault("responses", {})
            for status in _problems(path, method, operation):
                responses[str(status)] = _problem_response(status)


def _problems(path: str, method: str, operation: dict[str, Any]) -> list[int]:
    if not path.startswith("/v1/"):
        return []
    statuses = [401, 422, 503]
    if "{" in path:
        statuses.append(404)
    if "requestBody" in operation:
        statuses += [408, 413]
    if (method, path) in _CONFLICTS:
        statuses.append(409)
    return sorted(statuses)


def _problem_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": _DESCRIPTIONS[status],
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if status in _HEADERS:
        response["headers"] = _HEADERS[status]
    return response
