"""Reading requests and writing responses through the structs of ``gateway/api/schemas.py``.

Every body and query string is decoded into its struct here, so every route refuses the same
way: a body that is not JSON, not UTF-8, nested too deeply or carries a number that is not
finite (``1e999``, ``NaN``) is a 400 ``invalid_json``; a body field of the wrong type or
unknown is a 422 ``invalid_field``; an unknown, repeated or malformed query parameter is a 400
``invalid_parameter``. Both name the field. Responses are converted through their struct
before encoding, so they carry exactly the documented fields.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from gateway.api.schemas import MAX_QUERY_TEXT
from gateway.errors import ApiError
from gateway.store.validation import FieldError

__all__ = [
    "MAX_QUERY_TEXT",
    "body_as",
    "decode_cursor",
    "encode_cursor",
    "field_error",
    "id_param",
    "invalid",
    "json_body",
    "query_as",
    "respond",
    "time_value",
]

T = TypeVar("T")
MAX_BODY_DEPTH = 64  # far more than any body of this API; deeper is refused before parsing

_AT = re.compile(r"^(?P<reason>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]*)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]*)`$")


def invalid(field: str, reason: str, status: int = 400) -> ApiError:
    error_id = "invalid_field" if status == 422 else "invalid_parameter"
    return ApiError(status, error_id, f"{field}: {reason}", {"field": field, "reason": reason})


def field_error(e: FieldError) -> ApiError:
    return invalid(e.field, e.reason, 422)


def _from_validation(e: msgspec.ValidationError, status: int, root: str) -> ApiError:
    """msgspec says ``Expected `int`, got `str` - at `$.phones[1]```; the API says
    ``{"field": "phones[1]", "reason": "expected int, got str"}``."""
    m = _AT.match(str(e))
    reason, path = (m.group("reason"), m.group("path") or "") if m else (str(e), "")
    path = path.lstrip(".")
    for pattern, why in ((_UNKNOWN, "unknown field"), (_MISSING, "required")):
        found = pattern.match(reason)
        if found:
            path = f"{path}.{found.group('name')}" if path else found.group("name")
            reason = why
            break
    else:
        reason = reason.replace("`", "")
        reason = reason[:1].lower() + reason[1:]
    return invalid(path[:100] or root, reason[:300], status)


def _too_deep(raw: bytes) -> bool:
    """msgspec (like every recursive parser) raises RecursionError on ``[[[[...`` ten
    thousand deep; a cheap scan refuses such a body first. Brackets inside strings count
    too, which only makes it stricter for bodies that are mostly brackets."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_BODY_DEPTH:
        return False
    depth = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > MAX_BODY_DEPTH:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


def decode_json(raw: bytes, type_: Any = Any, *, status: int = 422, root: str = "body") -> Any:
    """``raw`` as ``type_``; ApiError 400 when it is not (finite, UTF-8, shallow) JSON, or
    ``status`` naming the field when it is JSON of the wrong shape."""
    if not raw.strip():
        raise ApiError(400, "invalid_json", "expected a JSON body")
    if _too_deep(raw):
        raise ApiError(
            400, "invalid_json", f"body is nested more than {MAX_BODY_DEPTH} levels deep"
        )
    try:
        # untyped first, so what is not JSON at all (1e999 overflows a double; NaN and
        # Infinity are not JSON numbers) is a 400 whatever the field it sits in
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError as e:
        raise ApiError(400, "invalid_json", f"body is not valid JSON: {e}") from None
    except RecursionError:
        raise ApiError(400, "invalid_json", "body is nested too deeply") from None
    if type_ is Any:
        return value
    try:
        return msgspec.convert(value, type_)
    except msgspec.ValidationError as e:
        raise _from_validation(e, status, root) from None


async def json_body(request: web.Request) -> Any:
    """Any JSON value (finite numbers only); for handlers that check the shape themselves."""
    return decode_json(await request.read())


async def body_as(request: web.Request, type_: type[T]) -> T:
    """The body decoded into ``type_`` (a struct of gateway/api/schemas.py)."""
    result: T = decode_json(await request.read(), type_)
    return result


_LIST_PARAMETERS: dict[Any, frozenset[str]] = {}


def _list_parameters(type_: Any) -> frozenset[str]:
    """The query struct's fields that take a list: the query gives them comma-separated
    (OpenAPI's ``style: form, explode: false``), as a repeated parameter is refused."""
    if type_ in _LIST_PARAMETERS:
        return _LIST_PARAMETERS[type_]
    info = msgspec.inspect.type_info(type_)
    names = set()
    fields = info.fields if isinstance(info, msgspec.inspect.StructType) else ()
    for f in fields:
        options = f.type.types if isinstance(f.type, msgspec.inspect.UnionType) else (f.type,)
        bare = (o.type if isinstance(o, msgspec.inspect.Metadata) else o for o in options)
        if any(isinstance(o, msgspec.inspect.ListType) for o in bare):
            names.add(f.encode_name)
    _LIST_PARAMETERS[type_] = frozenset(names)
    return _LIST_PARAMETERS[type_]


def query_as(request: web.Request, type_: type[T]) -> T:
    """The query string as ``type_``: an unknown or repeated parameter is a 400, as is a
    value of the wrong type; an empty value counts as not given; a list field is given
    comma-separated (``rfm_segments=at_risk,hibernating``)."""
    lists = _list_parameters(type_)
    given: dict[str, str | list[str]] = {}
    for key in request.query:
        values = request.query.getall(key)
        if len(values) > 1:
            raise invalid(key[:64], "given more than once")
        if len(values[0]) > MAX_QUERY_TEXT:
            raise invalid(key[:64], f"too long (at most {MAX_QUERY_TEXT} characters)")
        if values[0] != "":
            given[key] = values[0].split(",") if key in lists else values[0]
    try:
        return msgspec.convert(given, type_, strict=False)
    except msgspec.ValidationError as e:
        err = _from_validation(e, 400, "query")
        if isinstance(err.details, dict) and err.details.get("reason") == "unknown field":
            raise invalid(err.details["field"], "unknown parameter") from None
        raise err from None


def respond(type_: Any, value: Any, status: int = 200) -> web.Response:
    """``value`` (dicts, dataclasses) converted through the documented ``type_``, as JSON."""
    doc = msgspec.convert(value, type_, from_attributes=True)
    return web.Response(
        body=msgspec.json.encode(doc), status=status, content_type="application/json"
    )


def time_value(value: str | None, name: str) -> float | None:
    """Epoch seconds, or an ISO 8601 date/time (UTC when it has no offset)."""
    if value is None:
        return None
    try:
        f = float(value)
    except ValueError:
        pass
    else:
        if f == f and abs(f) < 1e12:  # finite and a date: not NaN, inf, 1e999
            return f
        raise invalid(name, f"expected epoch seconds, got {value[:40]!r}")
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


def encode_cursor(*position: Any) -> str:
    """An opaque cursor for where the next page starts."""
    raw = json.dumps(list(position), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, shape: Any) -> Any:
    """The position ``encode_cursor`` packed, checked against ``shape`` (a tuple type);
    None without a cursor; a 400 naming ``cursor`` for one this API did not hand out."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return msgspec.json.decode(raw, type=shape)
    except (ValueError, msgspec.DecodeError, RecursionError):
        raise invalid("cursor", "not a cursor this API returned for this list") from None
