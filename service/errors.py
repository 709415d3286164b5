"""Every error the API answers, as RFC 9457 ``application/problem+json`` with a stable ``code``.

Routes and helpers raise :class:`ApiError` (or let the library's
:class:`~layerfuse.compression.errors.LayerfuseError` through); this module alone turns them into
HTTP. A code's status comes from the one registry, :mod:`layerfuse.compression.error_codes`
(docs/service.md's error table). Bodies never carry a stack trace, a server path or a secret:
unexpected exceptions are logged with the request id and answered with a generic
``internal_error``; a database whose connections are all busy is ``service_busy`` (503 with
``Retry-After``), never a 500.

    ApiError(detail, code, param, headers)
    ├── Unauthorized         401
    ├── NotFound             404
    ├── Conflict             409
    ├── PayloadTooLarge      413
    ├── Unprocessable        422
    └── ServiceUnavailable   503
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from layerfuse.compression.error_codes import status_of
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
        self.status = status_of(self.code, type(self).status)
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
    code = "resource_in_use"


class PayloadTooLarge(ApiError):
    status = 413
    code = "upload_too_large"


class Unprocessable(ApiError):
    status = 422
    code = "invalid_request"


class ServiceUnavailable(ApiError):
    status = 503
    code = "service_busy"


def problem(
    request: Request,
    status: int,
    *,
    code: str,
    detail: str,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = problem_body(
        status,
        code=code,
        detail=detail,
        param=param,
        request_id=getattr(request.state, "request_id", None),
    )
    return JSONResponse(
        body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_JSON
    )


def problem_body(
    status: int, *, code: str, detail: str, param: str | None = None, request_id: str | None
) -> dict[str, Any]:
    """An RFC 9457 problem (the ``Problem`` schema of the OpenAPI document)."""
    return {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        "param": param,
        "request_id": request_id,
    }


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
    status = status_of(exc.code, 422)
    return problem(request, status, code=exc.code, detail=exc.message, param=exc.param)


async def _on_pool_timeout(request: Request, exc: Exception) -> JSONResponse:
    # Every connection of the pool stayed busy for the pool timeout: shed the request rather
    # than queue it, so a burst of pollers slows down instead of piling up.
    log.warning("database pool exhausted on %s %s", request.method, request.url.path)
    return problem(
        request,
        503,
        code="service_busy",
        detail="the server is busy; retry after the number of seconds in Retry-After",
        headers={"Retry-After": str(BUSY_RETRY_AFTER_S)},
    )


BUSY_RETRY_AFTER_S = 1
_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    code = _HTTP_CODES.get(status, "bad_request" if status < 500 else "internal_error")
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(status).phrase
    headers = dict(exc.headers or {})
    if status == 405:
        # Starlette names only the methods of the first route that matched the path.
        headers["Allow"] = ", ".join(allowed_methods(request))
        detail = f"{request.method} is not allowed here; allowed: {headers['Allow']}"
    return problem(request, status, code=code, detail=detail, headers=headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route takes at this request's path."""
    methods = {
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL
            for route in request.app.router.routes
        )
    }
    return sorted(methods)


# HEAD is listed only where a route takes it (artifact downloads): FastAPI, unlike Starlette's
# plain routes, does not answer HEAD for every GET.
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


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
    app.add_exception_handler(PoolTimeout, _on_pool_timeout)
    app.add_exception_handler(Exception, _on_unexpected)
