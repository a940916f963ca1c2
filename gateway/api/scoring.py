"""The lead-scoring part of ``/api/v1``: a lead's score and its parts, manual inputs, form
fills, and the worklist; ``setup_scoring`` wires the service to the bus and the app."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.api.auth import require
from gateway.api.params import field_error, id_param, int_param, invalid, json_body, text_param
from gateway.calls.events import CallEnded
from gateway.errors import ApiError
from gateway.store.repositories import MAX_PAGE
from gateway.store.scoring import Score, ScoringSettings, manual_inputs
from gateway.store.scoring_service import SCORING, ScoringService
from gateway.store.validation import FieldError, text

if TYPE_CHECKING:
    from gateway.app import Gateway


def _no_lead(pid: int) -> ApiError:
    return ApiError(404, "not_found", f"no lead with id {pid}", {"id": pid})


async def _score_doc(service: ScoringService, pid: int, result: Score) -> dict[str, Any]:
    return {"id": pid, **result.to_dict(), "inputs": await service.inputs(pid)}


async def get_score(request: web.Request) -> web.Response:
    require(request, "crm:read")
    service = request.app[SCORING]
    pid = id_param(request)
    result = await service.score_of(pid)
    if result is None:
        raise _no_lead(pid)
    return web.json_response(await _score_doc(service, pid, result))


async def put_score_inputs(request: web.Request) -> web.Response:
    who = require(request, "crm:write")
    service = request.app[SCORING]
    pid = id_param(request)
    if await service.score_of(pid) is None:  # 404 before judging the body: no such lead
        raise _no_lead(pid)
    body = await json_body(request)
    try:
        values = manual_inputs(body, service.settings)
    except FieldError as e:
        raise field_error(e) from None
    result = await service.set_inputs(pid, values, who.name)
    if result is None:  # deleted meanwhile
        raise _no_lead(pid)
    return web.json_response(await _score_doc(service, pid, result))


async def post_form_fill(request: web.Request) -> web.Response:
    require(request, "crm:write")
    service = request.app[SCORING]
    pid = id_param(request)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise invalid("body", "expected a JSON object", 422)
    at = body.get("at")
    if at is not None and (
        isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at)
    ):
        raise invalid("at", "expected epoch seconds", 422)
    try:
        form = text(body.get("form"), "form")
    except FieldError as e:
        raise field_error(e) from None
    if not await service.add_form_fill(pid, form, None if at is None else float(at)):
        raise _no_lead(pid)
    result = await service.score_of(pid)
    assert result is not None
    return web.json_response(await _score_doc(service, pid, result), status=201)


async def get_worklist(request: web.Request) -> web.Response:
    require(request, "crm:read")
    items, next_offset = await request.app[SCORING].worklist(
        owner=text_param(request, "owner"),
        limit=int_param(request, "limit", 50, 1, MAX_PAGE),
        offset=int_param(request, "offset", 0, 0, 10**9),
    )
    return web.json_response({"items": [i.to_dict() for i in items], "next_offset": next_offset})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/leads/{id}/score", get_score),
        web.put("/api/v1/leads/{id}/score-inputs", put_score_inputs),
        web.post("/api/v1/leads/{id}/form-fills", post_form_fill),
        web.get("/api/v1/worklist", get_worklist),
    ]


def _op(
    summary: str, scope: str, ok: tuple[str, str, dict[str, Any]], *, errors: tuple[str, ...] = ()
) -> dict[str, Any]:
    status, description, schema = ok
    responses: dict[str, Any] = {
        status: {"description": description, "content": {"application/json": {"schema": schema}}},
        "401": {"$ref": "#/components/responses/Unauthorized"},
        "403": {"$ref": "#/components/responses/Forbidden"},
    }
    names = {"400": "BadRequest", "404": "NotFound", "422": "Unprocessable"}
    for e in errors:
        responses[e] = {"$ref": f"#/components/responses/{names[e]}"}
    return {
        "tags": ["Leads"],
        "summary": summary,
        "description": f"Needs scope `{scope}`.",
        "operationId": "",  # build_document fills it in from the method and path
        "security": [{"bearerAuth": [scope]}, {"panelSession": [scope]}],
        "x-scopes": [scope],
        "responses": dict(sorted(responses.items())),
    }


def openapi_paths() -> dict[str, Any]:
    """The scoring routes as OpenAPI 3.1 path items, in the shape of gateway/api/openapi.py
    (its components: Id, Limit, Offset, Owner parameters; error responses), to merge there."""
    part = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "value": {"type": ["number", "null"], "minimum": 0, "maximum": 10},
            "weight": {"type": "number"},
            "derive": {
                "type": "string",
                "enum": ["manual", "answered_calls", "form_fills", "recency", "lead_source"],
            },
            "detail": {"type": "string"},
        },
        "required": ["name", "value", "weight", "derive", "detail"],
    }
    score_doc = {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "global": {"type": ["number", "null"], "minimum": 0, "maximum": 10},
            "parts": {"type": "array", "items": part},
            "inputs": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "properties": {
                        "value": {"type": "number"},
                        "set_by": {"type": ["string", "null"]},
                        "set_at": {"type": "number"},
                    },
                },
            },
        },
        "required": ["id", "global", "parts", "inputs"],
    }
    inputs_body = {
        "type": "object",
        "minProperties": 1,
        "additionalProperties": {"type": ["number", "null"], "minimum": 0, "maximum": 10},
        "description": "manual parameter -> 0 to 10; null clears it; others are unchanged",
    }
    fill_body = {
        "type": "object",
        "properties": {"form": {"type": "string"}, "at": {"type": "number"}},
    }
    worklist = {
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "person": {"$ref": "#/components/schemas/Person"},
                        "score": {"type": ["number", "null"]},
                        "next_follow_up": {
                            "oneOf": [{"$ref": "#/components/schemas/FollowUp"}, {"type": "null"}]
                        },
                        "open_follow_ups": {"type": "integer"},
                    },
                },
            },
            "next_offset": {"type": ["integer", "null"]},
        },
    }
    ident = [{"$ref": "#/components/parameters/Id"}]
    put = _op("Set a lead's manual score inputs", "crm:write", ("200", "The score.", score_doc))
    put["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": inputs_body}},
    }
    put["responses"] = _op(
        "", "crm:write", ("200", "The score.", score_doc), errors=("400", "404", "422")
    )["responses"]
    fill = _op(
        "Record a web form the lead filled in",
        "crm:write",
        ("201", "The score after it.", score_doc),
        errors=("400", "404", "422"),
    )
    fill["requestBody"] = {"required": True, "content": {"application/json": {"schema": fill_body}}}
    listing = _op(
        "Who to call next: best score first, then earliest follow-up",
        "crm:read",
        ("200", "One page of the worklist.", worklist),
        errors=("400",),
    )
    listing["parameters"] = [
        {"$ref": f"#/components/parameters/{n}"} for n in ("Owner", "Limit", "Offset")
    ]
    return {
        "/api/v1/leads/{id}/score": {
            "parameters": ident,
            "get": _op(
                "A lead's score and its parts",
                "crm:read",
                ("200", "The score.", score_doc),
                errors=("404",),
            ),
        },
        "/api/v1/leads/{id}/score-inputs": {"parameters": ident, "put": put},
        "/api/v1/leads/{id}/form-fills": {"parameters": ident, "post": fill},
        "/api/v1/worklist": {"get": listing},
    }


def setup_scoring(
    app: web.Application,
    gateway: Gateway,
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
