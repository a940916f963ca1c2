"""Click-to-call for CRMs: ``POST /api/v1/originate`` and its progress.

The same service as the panel's call button (gateway/panel/clicktocall.py): the number is
validated against dial-string injection and the do-not-call list before anything reaches the
PBX, originations are rate-limited per caller of the API, the agent's phone rings first and the
customer is dialed through the configured context once the agent answers. In a cluster the
instance that owns the PBX places the call wherever the request lands, and the attempt's state
reads back from any instance (docs/scale-out.md).
"""

from __future__ import annotations

import json

from aiohttp import web

from gateway.api.auth import require
from gateway.api.params import body_as, invalid, query_as, respond
from gateway.api.schemas import NoQuery, OriginateAttempt, OriginateRequest
from gateway.errors import ApiError
from gateway.lookup.numbers import is_extension, to_ascii_digits
from gateway.panel.clicktocall import ClickToCall

CLICK_TO_CALL: web.AppKey[ClickToCall] = web.AppKey("click_to_call", ClickToCall)


async def originate(request: web.Request) -> web.Response:
    """``{"extension": "101", "number": "+34 600 111 222"}`` → 202 with the attempt; poll
    ``GET /api/v1/originate/{call_id}`` (or match ``call_id`` on the call record) for the end."""
    principal = require(request, "originate")
    query_as(request, NoQuery)
    body = await body_as(request, OriginateRequest)
    if not is_extension(body.extension):
        raise invalid("extension", 'expected the agent\'s extension, e.g. "101"', 422)
    ext = to_ascii_digits(body.extension.strip())
    service = request.app[CLICK_TO_CALL]
    if not await _is_agent_extension(service, ext):
        # the API may ring an agent's phone, not any line of the PBX (a door phone, a
        # fax, a phone in the managing director's office)
        raise invalid("extension", f"{ext} is not the extension of any panel user", 422)
    attempt = await service.start(f"api:{principal.name}", (ext,), body.number)
    return respond(OriginateAttempt, attempt.to_json(), status=202)


async def _is_agent_extension(service: ClickToCall, ext: str) -> bool:
    """Whether an enabled panel user has ``ext`` by default or signed in on it (hot desk)."""
    rows = await service.db.conn.execute_fetchall(
        "SELECT extensions FROM users WHERE disabled = 0"
        " UNION ALL SELECT s.extensions FROM sessions s JOIN users u USING (username)"
        " WHERE u.disabled = 0 AND s.expires_at > ?",
        (service.clock(),),
    )
    for (extensions,) in rows:
        try:
            if ext in json.loads(extensions or "[]"):
                return True
        except ValueError:
            continue
    return False


async def originate_status(request: web.Request) -> web.Response:
    """Only to the API client that started the attempt (its id is no secret: it rides on the
    call record as ``call_id``)."""
    principal = require(request, "originate")
    query_as(request, NoQuery)
    call_id = request.match_info["call_id"]
    found = await request.app[CLICK_TO_CALL].status(call_id)
    if found is None or found[0] != f"api:{principal.name}":
        raise ApiError(404, "not_found", f"no click-to-call with id {call_id[:100]!r}")
    return respond(OriginateAttempt, found[1])


def setup_originate(app: web.Application, click_to_call: ClickToCall) -> None:
    app[CLICK_TO_CALL] = click_to_call
    app.router.add_post("/api/v1/originate", originate)
    app.router.add_get("/api/v1/originate/{call_id}", originate_status)
