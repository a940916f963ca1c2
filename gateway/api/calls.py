"""The call log part of ``/api/v1``: list calls with filters, read one, annotate one.

A call record has the shape of the tracker's (``centralita replay`` prints the same fields),
plus the log's ``id``, ``caller_e164``, notes, disposition and matched person.
"""

from __future__ import annotations

from aiohttp import web

from gateway.api import keys
from gateway.api.auth import PRINCIPAL, require
from gateway.api.params import body_as, invalid, query_as, respond, time_value
from gateway.api.schemas import CallAnnotation, CallPage, CallQuery, CallRecord, NoQuery
from gateway.errors import ApiError
from gateway.store.calllog import CallRecordError


def _own_calls_only(request: web.Request) -> str | None:
    """A signed-in agent sees only the calls they took part in; tokens and supervisors see all."""
    principal = request[PRINCIPAL]
    if principal.kind == "user" and principal.role == "agent":
        return principal.name
    return None


async def list_calls(request: web.Request) -> web.Response:
    require(request, "calls:read")
    q = query_as(request, CallQuery)
    since, until = time_value(q.since, "since"), time_value(q.until, "until")
    if since is not None and until is not None and until < since:
        raise invalid("until", "must not be before since")
    try:
        page = await request.app[keys.CALL_LOG].list(
            since=since,
            until=until,
            extension=q.extension,
            outcome=q.outcome,
            number=q.number,
            direction=q.direction,
            participant=_own_calls_only(request),
            limit=q.limit,
            cursor=q.cursor,
            oldest_first=q.sort == "started_at",
        )
    except CallRecordError as e:
        raise invalid("cursor", str(e)) from None
    return respond(CallPage, {"items": page.items, "next_cursor": page.next_cursor})


async def get_call(request: web.Request) -> web.Response:
    require(request, "calls:read")
    query_as(request, NoQuery)
    call_id = request.match_info["id"]
    record = await request.app[keys.CALL_LOG].get(call_id, _own_calls_only(request))
    if record is None:
        raise ApiError(404, "not_found", f"no call with id {call_id[:200]!r}")
    return respond(CallRecord, record)


async def annotate_call(request: web.Request) -> web.Response:
    """Notes and disposition after the call, with the panel's rules: the disposition is one
    of ``panel.dispositions`` in the config (an empty one clears it)."""
    require(request, "calls:write")
    query_as(request, NoQuery)
    call_id = request.match_info["id"]
    body = await body_as(request, CallAnnotation)
    notes = body.notes if isinstance(body.notes, str) else None
    disposition = body.disposition if isinstance(body.disposition, str) else None
    allowed = [d.id for d in request.app[keys.CONFIG].panel.dispositions]
    if disposition and disposition not in allowed:
        raise invalid("disposition", f"expected one of {', '.join(allowed)}", 422)
    log = request.app[keys.CALL_LOG]
    if not await log.annotate(call_id, notes=notes, disposition=disposition):
        raise ApiError(404, "not_found", f"no call with id {call_id[:200]!r}")
    return respond(CallRecord, await log.get(call_id))


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/calls", list_calls),
        web.get("/api/v1/calls/{id}", get_call),
        web.patch("/api/v1/calls/{id}", annotate_call),
    ]
