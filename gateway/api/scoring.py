"""The lead-scoring part of ``/api/v1``: a lead's score and its parts, manual inputs, form
fills, and the worklist; ``setup_scoring`` wires the service to the bus and the app."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from aiohttp import web

from gateway.api.auth import require
from gateway.api.params import (
    body_as,
    decode_cursor,
    decode_json,
    encode_cursor,
    field_error,
    id_param,
    invalid,
    query_as,
    respond,
)
from gateway.api.schemas import (
    FormFill,
    NoQuery,
    ScoreDoc,
    Worklist,
    WorklistQuery,
    WorklistSort,
)
from gateway.bus import Bus
from gateway.calls.events import CallEnded
from gateway.config import GatewayConfig
from gateway.errors import ApiError
from gateway.store.db import Database
from gateway.store.scoring import Score, ScoringSettings, manual_inputs
from gateway.store.scoring_service import SCORING, ScoringService
from gateway.store.validation import FieldError, text


class ScoringHost(Protocol):
    """What the scoring service needs of the gateway (``gateway.app.Gateway`` has it); a
    protocol rather than the class, so this module does not import the composition root."""

    db: Database | None
    cfg: GatewayConfig
    bus: Bus
    clock: Callable[[], float]


def _no_lead(pid: int) -> ApiError:
    return ApiError(404, "not_found", f"no lead with id {pid}", {"id": pid})


async def _score_doc(service: ScoringService, pid: int, result: Score) -> dict[str, Any]:
    return {"id": pid, **result.to_dict(), "inputs": await service.inputs(pid)}


async def get_score(request: web.Request) -> web.Response:
    require(request, "crm:read")
    query_as(request, NoQuery)
    service = request.app[SCORING]
    pid = id_param(request)
    result = await service.score_of(pid)
    if result is None:
        raise _no_lead(pid)
    return respond(ScoreDoc, await _score_doc(service, pid, result))


async def put_score_inputs(request: web.Request) -> web.Response:
    who = require(request, "crm:write")
    query_as(request, NoQuery)
    service = request.app[SCORING]
    pid = id_param(request)
    if await service.score_of(pid) is None:  # 404 before judging the body: no such lead
        raise _no_lead(pid)
    # shape and names are judged by manual_inputs, which names the parameter at fault
    body = decode_json(await request.read())
    try:
        values = manual_inputs(body, service.settings)
    except FieldError as e:
        raise field_error(e) from None
    result = await service.set_inputs(pid, values, who.name)
    if result is None:  # deleted meanwhile
        raise _no_lead(pid)
    return respond(ScoreDoc, await _score_doc(service, pid, result))


async def post_form_fill(request: web.Request) -> web.Response:
    require(request, "crm:write")
    query_as(request, NoQuery)
    service = request.app[SCORING]
    pid = id_param(request)
    if await service.score_of(pid) is None:  # 404 before judging the body: no such lead
        raise _no_lead(pid)
    body = await body_as(request, FormFill)
    try:
        form = text(body.form, "form")
    except FieldError as e:
        raise field_error(e) from None
    if not await service.add_form_fill(pid, form, body.at):
        raise _no_lead(pid)
    result = await service.score_of(pid)
    assert result is not None
    return respond(ScoreDoc, await _score_doc(service, pid, result), status=201)


async def get_worklist(request: web.Request) -> web.Response:
    require(request, "crm:read")
    q = query_as(request, WorklistQuery)
    # an offset in one order means nothing in another: the cursor names its sort
    position = decode_cursor(q.cursor, tuple[Literal["worklist"], int, WorklistSort])
    if position is not None and position[2] != q.sort:
        raise invalid("cursor", "not a cursor this API returned for this list and sort")
    items, next_offset = await request.app[SCORING].worklist(
        owner=q.owner,
        limit=q.limit,
        offset=0 if position is None else max(0, position[1]),
        rfm_segments=q.rfm_segments or (),
        churn_risk_min=q.churn_risk_min,
        next_best=q.next_best or (),
        sort=q.sort,
    )
    nxt = None if next_offset is None else encode_cursor("worklist", next_offset, q.sort)
    return respond(Worklist, {"items": [i.to_dict(q.lang) for i in items], "next_cursor": nxt})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/leads/{id}/score", get_score),
        web.put("/api/v1/leads/{id}/score-inputs", put_score_inputs),
        web.post("/api/v1/leads/{id}/form-fills", post_form_fill),
        web.get("/api/v1/worklist", get_worklist),
    ]


def setup_scoring(
    app: web.Application,
    gateway: ScoringHost,
    *,
    settings: ScoringSettings | None = None,
    clock: Callable[[], float] | None = None,
) -> None:
    """Register the scoring routes, rescore leads when their calls end, and run the worker
    with the web server. Call after ``gateway.open()`` (``create_app`` does it); the service is
    ``app[SCORING]``."""
    assert gateway.db is not None, "open the gateway (create_app) before setup_scoring"
    if settings is None:
        settings = getattr(gateway.cfg, "scoring", None) or ScoringSettings()
    service = ScoringService(
        gateway.db,
        settings,
        default_region=gateway.cfg.lookup.default_region,
        clock=clock or gateway.clock,
        tz=ZoneInfo(gateway.cfg.panel.timezone),  # the best-hour metric's zone
    )
    app[SCORING] = service
    app.router.add_routes(routes())
    unsubscribe = gateway.bus.subscribe(CallEnded, service.on_call_ended)

    async def worker(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(service.run(), name="lead-scoring")
        yield
        unsubscribe()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(service.settled(), 5.0)  # before the store closes
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(worker)
