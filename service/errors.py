"""Every error the API answers, as RFC 9457 ``application/problem+json`` with a stable ``code``.

Routes and helpers raise :class:`ApiError` (or let the library's
:class:`~layerfuse.compression.errors.LayerfuseError` through); this module alone turns them into
HTTP. Bodies never carry a stack trace, a server path or a secret: unexpected exceptions are logged
with the request id and answered with a generic ``internal_error``.

    ApiError(status, code, detail, param)
    ├── 401 Unauthorized         missing_api_key, invalid_api_key
    ├── 404 NotFound             not_found (also for another tenant's ids)
    ├── 409 Conflict             idempotency_key_reused, resource_in_use, job_not_succeeded
    ├── 413 PayloadTooLarge      upload_too_large
    ├── 422 Unprocessable        invalid_request, upload_file_not_allowed, model_*, dataset_*,
    │                            webhook_url_*, webhook_secret_missing, mlflow_tracking_uri_*
    └── 503 ServiceUnavailable   broker_unavailable
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from layerfuse.compression.errors import InvalidInputError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class ApiError(Exception):
    status = 400
    code = "bad_request"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.param = param
        self.headers = headers or {}


class Unauthorized(ApiError):
    status = 401
    code = "invalid_api_key"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class PayloadTooLarge(ApiError):
    status = 413
    code = "upload_too_large"


class Unprocessable(ApiError):
    status = 422
    code = "invalid_request"


class ServiceUnavailable(ApiError):
    status = 503
    code = "service_unavailable"


def problem(
    request: Request,
    status: int,
    *,
    code: str,
    detail: str,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        "param": param,
        "request_id": getattr(request.state, "request_id", None),
    }
    return JSONResponse(
        body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_JSON
    )


def _param_from_loc(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts) or None


def _validation_detail(error: dict[str, Any], param: str | None) -> str:
    if error.get("type") == "json_invalid":
        return "the request body is not valid JSON"
    message = str(error.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ")
    return f"{param}: {message}" if param else message


async def _on_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return problem(
        request, exc.status, code=exc.code, detail=exc.detail, param=exc.param, headers=exc.headers
    )


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    first = errors[0] if errors else {}
    loc = tuple(first.get("loc", ()))
    param = None if first.get("type") == "json_invalid" else _param_from_loc(loc)
    detail = _validation_detail(first, param)
    if len(errors) > 1:
        detail += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return problem(request, 422, code="invalid_request", detail=detail, param=param)


async def _on_library_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvalidInputError)
    return problem(request, 422, code=exc.code, detail=exc.message, param=exc.param)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "upload_too_large"}


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    code = _HTTP_CODES.get(status, HTTPStatus(status).phrase.lower().replace(" ", "_"))
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(status).phrase
    return problem(request, status, code=code, detail=detail, headers=exc.headers)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception(
        "unhandled error on %s %s (request %s)",
        request.method,
        request.url.path,
        getattr(request.state, "request_id", None),
    )
    return problem(
        request,
        500,
        code="internal_error",
        detail="an internal error occurred; quote the request_id when reporting it",
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(InvalidInputError, _on_library_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
