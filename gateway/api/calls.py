"""The call log part of ``/api/v1``: list calls with filters, read one, annotate one."""

from __future__ import annotations

from aiohttp import web

from gateway.api import keys
from gateway.api.auth import PRINCIPAL, require
from gateway.api.params import choice_param, int_param, invalid, json_body, text_param, time_param
from gateway.errors import ApiError
from gateway.store.calllog import CallRecordError
from gateway.store.repositories import MAX_PAGE

OUTCOMES = ("answered", "noanswer", "busy", "abandoned", "failed", "transferred")
DIRECTIONS = ("inbound", "outbound", "internal")


def _own_calls_only(request: web.Request) -> str | None:
    """A signed-in agent sees only the calls they took part in; tokens and supervisors see all."""
    principal = request[PRINCIPAL]
    if principal.kind == "user" and principal.role == "agent":
        return principal.name
    return None


async def list_calls(request: web.Request) -> web.Response:
    """``?since&until`` (epoch or ISO 8601), ``extension``, ``outcome``, ``number``,
    ``direction``, ``limit``, ``cursor`` (from the previous page's ``next_cursor``)."""
    require(request, "calls:read")
    since, until = time_param(request, "since"), time_param(request, "until")
    if since is not None and until is not None and until < since:
        raise invalid("until", "must not be before since")
    try:
        page = await request.app[keys.CALL_LOG].list(
            since=since,
            until=until,
            extension=text_param(request, "extension"),
            outcome=choice_param(request, "outcome", OUTCOMES),
            number=text_param(request, "number"),
            direction=choice_param(request, "direction", DIRECTIONS),
            participant=_own_calls_only(request),
            limit=int_param(request, "limit", 50, 1, MAX_PAGE),
            cursor=text_param(request, "cursor"),
        )
    except CallRecordError as e:
        raise invalid("cursor", str(e)) from None
    return web.json_response({"items": page.items, "next_cursor": page.next_cursor})


async def get_call(request: web.Request) -> web.Response:
    require(request, "calls:read")
    call_id = request.match_info["id"]
    record = await request.app[keys.CALL_LOG].get(call_id, _own_calls_only(request))
    if record is None:
        raise ApiError(404, "not_found", f"no call with id {call_id[:200]!r}")
    return web.json_response(record)


async def annotate_call(request: web.Request) -> web.Response:
    """Notes and disposition after the call: ``{"notes": "...", "disposition": "..."}``."""
    require(request, "calls:write")
    call_id = request.match_info["id"]
    body = await json_body(request)
    if not isinstance(body, dict):
        raise invalid("body", "expected a JSON object", 422)
    for key, value in body.items():
        if key not in ("notes", "disposition"):
            raise invalid(str(key)[:64], "unknown field", 422)
        if not isinstance(value, str) or len(value) > 10_000:
            raise invalid(key, "expected text of at most 10000 characters", 422)
    if not await request.app[keys.CALL_LOG].annotate(
        call_id, notes=body.get("notes"), disposition=body.get("disposition")
    ):
        raise ApiError(404, "not_found", f"no call with id {call_id[:200]!r}")
    return web.json_response(await request.app[keys.CALL_LOG].get(call_id))


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/calls", list_calls),
        web.get("/api/v1/calls/{id}", get_call),
        web.patch("/api/v1/calls/{id}", annotate_call),
    ]
