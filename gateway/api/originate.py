"""Click-to-call for CRMs: ``POST /api/v1/originate`` and its progress.

The same service as the panel's call button (gateway/panel/clicktocall.py): the number is
validated against dial-string injection and the do-not-call list before anything reaches the
PBX, originations are rate-limited per caller of the API, the agent's phone rings first and the
customer is dialed through the configured context once the agent answers.
"""

from __future__ import annotations

from aiohttp import web

from gateway.api.auth import require
from gateway.api.params import invalid, json_body
from gateway.errors import ApiError
from gateway.lookup.numbers import is_extension, to_ascii_digits
from gateway.panel.clicktocall import ClickToCall

CLICK_TO_CALL: web.AppKey[ClickToCall] = web.AppKey("click_to_call", ClickToCall)


async def originate(request: web.Request) -> web.Response:
    """``{"extension": "101", "number": "+34 600 111 222"}`` → 202 with the attempt; poll
    ``GET /api/v1/originate/{call_id}`` (or match ``call_id`` on the call record) for the end."""
    principal = require(request, "originate")
    body = await json_body(request)
    if not isinstance(body, dict):
        raise invalid("body", "expected a JSON object", 422)
    extension, number = body.get("extension"), body.get("number")
    if not isinstance(extension, str) or not is_extension(extension):
        raise invalid("extension", 'expected the agent\'s extension, e.g. "101"', 422)
    if not isinstance(number, str):
        raise invalid("number", "expected the number to call, as text", 422)
    ext = to_ascii_digits(extension.strip())
    attempt = await request.app[CLICK_TO_CALL].start(f"api:{principal.name}", (ext,), number)
    return web.json_response(attempt.to_json(), status=202)


async def originate_status(request: web.Request) -> web.Response:
    """Only to the API client that started the attempt (its id is no secret: it rides on the
    call record as ``call_id``)."""
    principal = require(request, "originate")
    call_id = request.match_info["call_id"]
    attempt = request.app[CLICK_TO_CALL].find(call_id)
    if attempt is None or attempt.agent != f"api:{principal.name}":
        raise ApiError(404, "not_found", f"no click-to-call with id {call_id[:100]!r}")
    return web.json_response(attempt.to_json())


def setup_originate(app: web.Application, click_to_call: ClickToCall) -> None:
    app[CLICK_TO_CALL] = click_to_call
    app.router.add_post("/api/v1/originate", originate)
    app.router.add_get("/api/v1/originate/{call_id}", originate_status)
