"""Reading query parameters and JSON bodies, with errors that name the parameter."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from gateway.errors import ApiError
from gateway.store.validation import FieldError

MAX_QUERY_TEXT = 200


def invalid(field: str, reason: str, status: int = 400) -> ApiError:
    error_id = "invalid_field" if status == 422 else "invalid_parameter"
    return ApiError(status, error_id, f"{field}: {reason}", {"field": field, "reason": reason})


def field_error(e: FieldError) -> ApiError:
    return invalid(e.field, e.reason, 422)


def text_param(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if value is None or value == "":
        return None
    if len(value) > MAX_QUERY_TEXT:
        raise invalid(name, f"too long (at most {MAX_QUERY_TEXT} characters)")
    return value


def int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    value = request.query.get(name)
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except ValueError:
        raise invalid(name, f"expected an integer, got {value[:40]!r}") from None
    if not lo <= n <= hi:
        raise invalid(name, f"expected {lo} to {hi}, got {n}")
    return n


def choice_param(request: web.Request, name: str, allowed: tuple[str, ...]) -> str | None:
    value = text_param(request, name)
    if value is not None and value not in allowed:
        raise invalid(name, f"expected one of {', '.join(allowed)}, got {value[:40]!r}")
    return value


def time_param(request: web.Request, name: str) -> float | None:
    """Epoch seconds, or an ISO 8601 date/time (UTC when it has no offset)."""
    value = text_param(request, name)
    if value is None:
        return None
    try:
        f = float(value)
        if math.isfinite(f):
            return f
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise invalid(
            name, f"expected epoch seconds or an ISO 8601 time, got {value[:40]!r}"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def id_param(request: web.Request, name: str = "id") -> int:
    value = request.match_info[name]
    if not value.isdigit() or len(value) > 18:
        raise ApiError(404, "not_found", f"no such {name}: {value[:40]!r}")
    return int(value)


async def json_body(request: web.Request) -> Any:
    try:
        raw = await request.text()
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_json", "body is not UTF-8") from None
    if not raw.strip():
        raise ApiError(400, "invalid_json", "expected a JSON body")
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except json.JSONDecodeError as e:
        raise ApiError(400, "invalid_json", f"body is not valid JSON: {e}") from None
    except ValueError as e:
        raise ApiError(400, "invalid_json", f"body is not valid JSON: {e}") from None


def _refuse_constant(name: str) -> Any:
    """``NaN`` and ``Infinity`` are not JSON (RFC 8259), though Python's parser takes them:
    one in a due date used to end in a 500."""
    raise ValueError(f"{name} is not a JSON number")
