"""Reading JSON request bodies: bounded, strictly typed, and free of bytes the store refuses.

FastAPI's own body parsing coerces (``"1"`` becomes ``1``) and recurses without bound. A route
takes ``Annotated[Model, Depends(json_body(Model))]`` instead: the body (already capped in size
and time by :class:`layerfuse.service.limits.BodyLimits`) is parsed with bounded nesting, any
string holding NUL (PostgreSQL cannot store it) or a lone surrogate escape (not text: it would be
stored, then fail every answer that serialises it) is refused, and the model validates in strict
mode, so a number sent as a string is a 422 naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from layerfuse.compression.jsontext import JsonNotText, JsonTooDeep, find_string, parse_json

from .errors import ApiError, Unprocessable

M = TypeVar("M", bound=BaseModel)
_NUL = re.compile("\x00")


def json_body(model: type[M]) -> Callable[[Request], Awaitable[M]]:
    """A dependency that reads the request body as ``model``."""

    async def read(request: Request) -> M:
        raw = await request.body()
        try:
            value = parse_json(raw)
        except JsonTooDeep as exc:
            raise Unprocessable(f"the request body is {exc}") from None
        except JsonNotText as exc:
            raise Unprocessable(str(exc), param=".".join(exc.path) or None) from None
        except (ValueError, UnicodeDecodeError):
            # Not a field's fault: the body cannot be read at all (docs/service.md, bad_request).
            raise ApiError("the request body is not valid JSON") from None
        refuse_nul(value)
        try:
            return model.model_validate(value, strict=True)
        except ValidationError as exc:
            raise RequestValidationError(
                exc.errors(include_url=False, include_context=False)
            ) from None

    return read


def refuse_nul(value: Any) -> None:
    """Raise a 422 naming the first string (key or value) that holds a NUL character."""
    found = find_string(value, _NUL)
    if found is None:
        return
    where, in_key = found
    param = ".".join(where) or None
    if in_key:
        raise Unprocessable("keys may not contain NUL characters", param=param)
    raise Unprocessable(f"{param or 'the body'}: text may not contain NUL characters", param=param)
