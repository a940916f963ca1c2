"""The CRM part of ``/api/v1``: caller lookup, contacts, leads, accounts, CSV import.

JSON in and out. Lists answer ``{"items": [...], "next_offset": n|null}``; creating a person
answers 201 with ``"outcome": "created"``, or 200 with ``"outcome": "updated"`` when the dedupe
rule folded it into an existing person. Validation errors are 422 naming the field.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway.api import keys
from gateway.api.auth import require, require_manager
from gateway.api.params import (
    choice_param,
    field_error,
    id_param,
    int_param,
    invalid,
    json_body,
    text_param,
)
from gateway.errors import ApiError
from gateway.lookup.card import CallerCard
from gateway.store.csv_io import import_csv
from gateway.store.models import LeadSource, LeadStatus, PersonType
from gateway.store.repositories import MAX_PAGE
from gateway.store.validation import FieldError, text

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_IMPORT_BYTES = 20 * 1024 * 1024


def card_json(card: CallerCard) -> dict[str, Any]:
    d = dataclasses.asdict(card)
    d["kind"] = card.kind.value
    d["known"] = card.known
    return d


async def lookup(request: web.Request) -> web.Response:
    require(request, "lookup")
    number = request.query.get("number")
    if not number:
        raise invalid("number", "required, e.g. ?number=%2B34911234567")
    if len(number) > 100:
        raise invalid("number", "too long")
    card = await request.app[keys.LOOKUP].lookup(number)
    return web.json_response(card_json(card))


def _not_found(what: str, ident: int) -> ApiError:
    return ApiError(404, "not_found", f"no {what} with id {ident}", {"id": ident})


def person_routes(kind: PersonType) -> list[web.RouteDef]:
    """CRUD for contacts or leads (the same table, told apart by kind)."""
    plural = f"{kind.value}s"
    base = f"/api/v1/{plural}"

    async def list_people(request: web.Request) -> web.Response:
        require(request, "crm:read")
        status = source = None
        if kind is PersonType.LEAD:
            status = choice_param(request, "status", tuple(s.value for s in LeadStatus))
            source = choice_param(request, "source", tuple(s.value for s in LeadSource))
        account = text_param(request, "account_id")
        if account is not None and not account.isdigit():
            raise invalid("account_id", "expected an integer")
        page = await request.app[keys.PEOPLE].list(
            kind=kind,
            status=status,
            source=source,
            owner=text_param(request, "owner"),
            account_id=int(account) if account else None,
            q=text_param(request, "q"),
            limit=int_param(request, "limit", 50, 1, MAX_PAGE),
            offset=int_param(request, "offset", 0, 0, 10**9),
        )
        items = [p.to_dict() for p in page.items]
        return web.json_response({"items": items, "next_offset": page.next_offset})

    async def create(request: web.Request) -> web.Response:
        require(request, "crm:write")
        body = await json_body(request)
        try:
            result = await request.app[keys.PEOPLE].create(kind, body, source="api")
        except FieldError as e:
            raise field_error(e) from None
        out = result.person.to_dict()
        out["outcome"] = result.outcome
        return web.json_response(out, status=201 if result.created else 200)

    async def get(request: web.Request) -> web.Response:
        require(request, "crm:read")
        pid = id_param(request)
        person = await request.app[keys.PEOPLE].get(pid, kind)
        if person is None:
            raise _not_found(kind.value, pid)
        out = person.to_dict()
        out["activities"] = [
            a.to_dict() for a in await request.app[keys.ACTIVITIES].for_person(pid, 20)
        ]
        out["follow_ups"] = [t.to_dict() for t in await request.app[keys.FOLLOW_UPS].open_for(pid)]
        return web.json_response(out)

    async def update(request: web.Request) -> web.Response:
        require(request, "crm:write")
        pid = id_param(request)
        body = await json_body(request)
        try:
            person = await request.app[keys.PEOPLE].update(pid, body, kind)
        except FieldError as e:
            raise field_error(e) from None
        if person is None:
            raise _not_found(kind.value, pid)
        return web.json_response(person.to_dict())

    async def delete(request: web.Request) -> web.Response:
        require_manager(request, "crm:write")
        pid = id_param(request)
        if not await request.app[keys.PEOPLE].delete(pid, kind):
            raise _not_found(kind.value, pid)
        return web.Response(status=204)

    async def add_activity(request: web.Request) -> web.Response:
        who = require(request, "crm:write")
        pid = id_param(request)
        if await request.app[keys.PEOPLE].get(pid, kind) is None:
            raise _not_found(kind.value, pid)
        body = await json_body(request)
        if not isinstance(body, dict):
            raise invalid("body", "expected a JSON object", 422)
        k = body.get("kind", "note")
        if k not in ("note", "call", "email"):
            raise invalid("kind", "expected note, call or email", 422)
        try:
            activity = await request.app[keys.ACTIVITIES].add(
                pid, k, body.get("summary") or "", body=body.get("body") or "", author=who.name
            )
        except FieldError as e:
            raise field_error(e) from None
        return web.json_response(activity.to_dict() if activity else None, status=201)

    async def add_follow_up(request: web.Request) -> web.Response:
        who = require(request, "crm:write")
        pid = id_param(request)
        if await request.app[keys.PEOPLE].get(pid, kind) is None:
            raise _not_found(kind.value, pid)
        body = await json_body(request)
        if not isinstance(body, dict):
            raise invalid("body", "expected a JSON object", 422)
        due = body.get("due_at")
        if isinstance(due, bool) or not isinstance(due, int | float):
            raise invalid("due_at", "required: epoch seconds", 422)
        owner = body.get("owner", who.name)
        if owner is not None and not isinstance(owner, str):
            raise invalid("owner", "expected text", 422)
        try:
            title = text(body.get("title"), "title")  # the repository's own check, applied early
            task = await request.app[keys.FOLLOW_UPS].add(pid, float(due), title, owner)
        except FieldError as e:
            raise field_error(e) from None
        return web.json_response(task.to_dict(), status=201)

    return [
        web.get(base, list_people),
        web.post(base, create),
        web.get(base + "/{id}", get),
        web.patch(base + "/{id}", update),
        web.delete(base + "/{id}", delete),
        web.post(base + "/{id}/activities", add_activity),
        web.post(base + "/{id}/follow-ups", add_follow_up),
    ]


async def list_accounts(request: web.Request) -> web.Response:
    require(request, "crm:read")
    page = await request.app[keys.ACCOUNTS].list(
        owner=text_param(request, "owner"),
        q=text_param(request, "q"),
        limit=int_param(request, "limit", 50, 1, MAX_PAGE),
        offset=int_param(request, "offset", 0, 0, 10**9),
    )
    items = [a.to_dict() for a in page.items]
    return web.json_response({"items": items, "next_offset": page.next_offset})


async def create_account(request: web.Request) -> web.Response:
    require(request, "crm:write")
    body = await json_body(request)
    try:
        account = await request.app[keys.ACCOUNTS].create(body)
    except FieldError as e:
        raise field_error(e) from None
    return web.json_response(account.to_dict(), status=201)


async def get_account(request: web.Request) -> web.Response:
    require(request, "crm:read")
    aid = id_param(request)
    account = await request.app[keys.ACCOUNTS].get(aid)
    if account is None:
        raise _not_found("account", aid)
    return web.json_response(account.to_dict())


async def update_account(request: web.Request) -> web.Response:
    require(request, "crm:write")
    aid = id_param(request)
    body = await json_body(request)
    try:
        account = await request.app[keys.ACCOUNTS].update(aid, body)
    except FieldError as e:
        raise field_error(e) from None
    if account is None:
        raise _not_found("account", aid)
    return web.json_response(account.to_dict())


async def delete_account(request: web.Request) -> web.Response:
    require_manager(request, "crm:write")
    aid = id_param(request)
    if not await request.app[keys.ACCOUNTS].delete(aid):
        raise _not_found("account", aid)
    return web.Response(status=204)


async def import_people(request: web.Request) -> web.Response:
    """CSV body (``Content-Type: text/csv``, options in the query: kind, strict, region,
    mapping as JSON) or a JSON body ``{"kind", "csv", "mapping", "strict", "default_region"}``."""
    require_manager(request, "crm:write")
    if request.content_length is not None and request.content_length > MAX_IMPORT_BYTES:
        raise ApiError(413, "too_large", f"import body over {MAX_IMPORT_BYTES} bytes")
    cfg = request.app[keys.CONFIG]
    if request.content_type in ("text/csv", "text/plain"):
        options: dict[str, Any] = dict(request.query)
        try:
            options["csv"] = await request.text()
        except UnicodeDecodeError:
            raise invalid("csv", "body is not UTF-8") from None
        if "mapping" in options:
            try:
                options["mapping"] = json.loads(options["mapping"])
            except json.JSONDecodeError:
                raise invalid("mapping", "expected a JSON object in the query") from None
        options["strict"] = options.get("strict", "false").lower() in ("1", "true", "yes")
    else:
        options = await json_body(request)
        if not isinstance(options, dict):
            raise invalid("body", "expected a JSON object", 422)
    csv_text = options.get("csv")
    if not isinstance(csv_text, str) or not csv_text.strip():
        raise invalid("csv", "required: the CSV text", 422)
    mapping = options.get("mapping")
    if mapping is not None and (
        not isinstance(mapping, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items())
    ):
        raise invalid("mapping", "expected an object of CSV column -> field", 422)
    strict = options.get("strict", False)
    if not isinstance(strict, bool):
        raise invalid("strict", "expected true or false", 422)
    region = options.get("default_region") or options.get("region") or cfg.lookup.default_region
    if not isinstance(region, str) or len(region) != 2:
        raise invalid("default_region", "expected a two-letter country code", 422)
    try:
        report = await import_csv(
            request.app[keys.DB],
            csv_text,
            str(options.get("kind", "")),
            mapping,
            strict,
            region.upper(),
        )
    except FieldError as e:
        raise field_error(e) from None
    if strict and report.errors:
        raise ApiError(
            422,
            "import_rejected",
            f"{len(report.errors)} bad row(s); strict import imported nothing",
            report.to_dict(),
        )
    return web.json_response(report.to_dict())


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/lookup", lookup),
        *person_routes(PersonType.CONTACT),
        *person_routes(PersonType.LEAD),
        web.get("/api/v1/accounts", list_accounts),
        web.post("/api/v1/accounts", create_account),
        web.get("/api/v1/accounts/{id}", get_account),
        web.patch("/api/v1/accounts/{id}", update_account),
        web.delete("/api/v1/accounts/{id}", delete_account),
        web.post("/api/v1/import", import_people),
    ]
