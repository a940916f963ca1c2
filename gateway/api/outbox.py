"""``/api/v1/outbox``: the CRM write-back queues, and re-driving records a CRM kept refusing.

The same operations as ``centralita outbox list|retry``. Reading needs scope ``outbox:read``,
re-driving ``outbox:write`` (tokens with those scopes, or admins in the panel). Request and
response bodies are described once, as msgspec structs: validation and the OpenAPI schema
(``gateway/api/openapi.py``) both come from them.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web
from msgspec import Meta

from gateway.api.auth import require
from gateway.api.params import query_as
from gateway.errors import ApiError
from gateway.writeback.outbox import Outbox, OutboxStats, ParkedRecord

OUTBOX: web.AppKey[Outbox] = web.AppKey("outbox", Outbox)
MAX_IDS = 1000


class OutboxQuery(msgspec.Struct, forbid_unknown_fields=True):
    connector: Annotated[str, Meta(max_length=40, description="only this connector's")] | None = (
        None
    )


class RetryRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Which parked records to put back in their queue: all of them, one connector's, or
    the listed outbox row ids."""

    connector: str | None = None
    ids: list[int] = msgspec.field(default_factory=list)


class RetryResult(msgspec.Struct):
    requeued: int


class OutboxDoc(msgspec.Struct):
    queues: list[OutboxStats]
    parked: list[ParkedRecord]


_retry = msgspec.json.Decoder(RetryRequest)


async def get_outbox(request: web.Request) -> web.Response:
    require(request, "outbox:read")
    outbox = request.app[OUTBOX]
    q = query_as(request, OutboxQuery)
    doc = OutboxDoc(await outbox.stats(), await outbox.parked(q.connector, limit=500))
    return web.json_response(body=msgspec.json.encode(doc))


async def retry_parked(request: web.Request) -> web.Response:
    require(request, "outbox:write")
    try:
        body = _retry.decode(await request.read())
    except msgspec.ValidationError as e:
        raise ApiError(422, "invalid_field", str(e)) from None
    except msgspec.DecodeError as e:
        raise ApiError(400, "invalid_json", f"body is not valid JSON: {e}") from None
    if len(body.ids) > MAX_IDS:
        raise ApiError(422, "invalid_field", f"ids: at most {MAX_IDS} per request")
    outbox = request.app[OUTBOX]
    if body.connector is not None and body.connector not in outbox.connector_names:
        raise ApiError(
            404, "not_found", f"connector {body.connector!r} is not configured", body.connector
        )
    done = await outbox.retry_parked(body.connector, body.ids)
    return web.json_response(body=msgspec.json.encode(RetryResult(done)))


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/outbox", get_outbox),
        web.post("/api/v1/outbox/retry", retry_parked),
    ]


def setup_outbox_api(app: web.Application, outbox: Outbox) -> None:
    app[OUTBOX] = outbox
    app.router.add_routes(routes())
