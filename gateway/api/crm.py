"""The CRM part of ``/api/v1``: caller lookup, contacts, leads, accounts, CSV import.

JSON in and out, in the shapes of gateway/api/schemas.py. Lists answer
``{"items": [...], "next_cursor": "..."|null}``; creating a person answers 201 with
``"outcome": "created"``, or 200 with ``"outcome": "updated"`` when the dedupe rule folded it
into an existing person. Validation errors are 422 naming the field.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

import msgspec
from aiohttp import web

from gateway.api import keys
from gateway.api.auth import require, require_manager
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
    Account,
    AccountInput,
    AccountPage,
    AccountQuery,
    Activity,
    ActivityInput,
    CallerCard,
    ContactInput,
    ContactQuery,
    FollowUp,
    FollowUpInput,
    ImportQuery,
    ImportReport,
    ImportRequest,
    LeadInput,
    LeadQuery,
    LookupQuery,
    NoQuery,
    PersonDetail,
    PersonPage,
    PersonWritten,
)
from gateway.api.schemas import Person as PersonDoc
from gateway.errors import ApiError
from gateway.lookup.card import CallerCard as Card
from gateway.store.csv_io import import_csv
from gateway.store.models import PersonType
from gateway.store.validation import FieldError, text

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_IMPORT_BYTES = 20 * 1024 * 1024


def _store_id(value: str | None, from_store: bool) -> int | None:
    return int(value) if from_store and value is not None and value.isdigit() else None


def card_json(card: Card) -> dict[str, Any]:
    """The card with the API's id type: the store's ids as integers; a connector's own id,
    which may be any text, moves to ``external_id``."""
    own = card.source == "store"
    return {
        "number": card.number,
        "kind": card.kind.value,
        "known": card.known,
        "display_name": card.display_name,
        "company": card.company,
        "person_id": _store_id(card.person_id, own),
        "account_id": _store_id(card.account_id, own),
        "external_id": None if own else (card.person_id or card.account_id),
        "owner": card.owner,
        "lead_status": card.lead_status,
        "lead_score": card.lead_score,
        "country": card.country,
        "line_type": card.line_type,
        "interactions": card.interactions,
        "follow_ups": [
            {"id": _store_id(f.id, True), "due_at": f.due_at, "title": f.title}
            for f in card.follow_ups
            if _store_id(f.id, own) is not None
        ],
        "source": card.source,
        "external_url": card.external_url,
        "extra": card.extra,
        "insight": card.insight,
    }


async def lookup(request: web.Request) -> web.Response:
    require(request, "lookup")
    q = query_as(request, LookupQuery)
    card = await request.app[keys.LOOKUP].lookup(q.number)
    return respond(CallerCard, card_json(card))


def _input(body: msgspec.Struct) -> dict[str, Any]:
    """The fields given (unset ones left out), for the store's own rules (dedupe, lost
    reason, phone numbers) to judge next."""
    data: dict[str, Any] = msgspec.to_builtins(body)
    return data


def _page_position(cursor: str | None, kind: str) -> int:
    position = decode_cursor(cursor, tuple[Literal[kind], int])  # type: ignore[valid-type]
    return 0 if position is None else max(0, int(position[1]))


def _next_cursor(kind: str, next_offset: int | None) -> str | None:
    return None if next_offset is None else encode_cursor(kind, next_offset)


def _not_found(what: str, ident: int) -> ApiError:
    return ApiError(404, "not_found", f"no {what} with id {ident}", {"id": ident})


def person_routes(kind: PersonType) -> list[web.RouteDef]:
    """CRUD for contacts or leads (the same table, told apart by kind)."""
    plural = f"{kind.value}s"
    base = f"/api/v1/{plural}"

    input_type: type[ContactInput] = LeadInput if kind is PersonType.LEAD else ContactInput

    async def list_people(request: web.Request) -> web.Response:
        require(request, "crm:read")
        q = query_as(request, LeadQuery if kind is PersonType.LEAD else ContactQuery)
        page = await request.app[keys.PEOPLE].list(
            kind=kind,
            status=q.status if isinstance(q, LeadQuery) else None,
            source=q.source if isinstance(q, LeadQuery) else None,
            owner=q.owner,
            account_id=q.account_id,
            q=q.q,
            limit=q.limit,
            offset=_page_position(q.cursor, plural),
        )
        items = [p.to_dict() for p in page.items]
        return respond(
            PersonPage, {"items": items, "next_cursor": _next_cursor(plural, page.next_offset)}
        )

    async def create(request: web.Request) -> web.Response:
        require(request, "crm:write")
        query_as(request, NoQuery)
        body = _input(await body_as(request, input_type))
        try:
            result = await request.app[keys.PEOPLE].create(kind, body, source="api")
        except FieldError as e:
            raise field_error(e) from None
        out = result.person.to_dict()
        out["outcome"] = result.outcome
        return respond(PersonWritten, out, status=201 if result.created else 200)

    async def get(request: web.Request) -> web.Response:
        require(request, "crm:read")
        query_as(request, NoQuery)
        pid = id_param(request)
        person = await request.app[keys.PEOPLE].get(pid, kind)
        if person is None:
            raise _not_found(kind.value, pid)
        out = person.to_dict()
        out["activities"] = [
            a.to_dict() for a in await request.app[keys.ACTIVITIES].for_person(pid, 20)
        ]
        out["follow_ups"] = [t.to_dict() for t in await request.app[keys.FOLLOW_UPS].open_for(pid)]
        return respond(PersonDetail, out)

    async def update(request: web.Request) -> web.Response:
        require(request, "crm:write")
        query_as(request, NoQuery)
        pid = id_param(request)
        body = _input(await body_as(request, input_type))
        try:
            person = await request.app[keys.PEOPLE].update(pid, body, kind)
        except FieldError as e:
            raise field_error(e) from None
        if person is None:
            raise _not_found(kind.value, pid)
        return respond(PersonDoc, person.to_dict())

    async def delete(request: web.Request) -> web.Response:
        require_manager(request, "crm:write")
        query_as(request, NoQuery)
        pid = id_param(request)
        if not await request.app[keys.PEOPLE].delete(pid, kind):
            raise _not_found(kind.value, pid)
        return web.Response(status=204)

    async def add_activity(request: web.Request) -> web.Response:
        who = require(request, "crm:write")
        query_as(request, NoQuery)
        pid = id_param(request)
        if await request.app[keys.PEOPLE].get(pid, kind) is None:
            raise _not_found(kind.value, pid)
        body = await body_as(request, ActivityInput)
        try:
            activity = await request.app[keys.ACTIVITIES].add(
                pid, body.kind.value, body.summary, body=body.body, author=who.name
            )
        except FieldError as e:
            raise field_error(e) from None
        if activity is None:  # deleted meanwhile
            raise _not_found(kind.value, pid)
        return respond(Activity, activity.to_dict(), status=201)

    async def add_follow_up(request: web.Request) -> web.Response:
        who = require(request, "crm:write")
        query_as(request, NoQuery)
        pid = id_param(request)
        if await request.app[keys.PEOPLE].get(pid, kind) is None:
            raise _not_found(kind.value, pid)
        body = await body_as(request, FollowUpInput)
        owner = who.name if body.owner is msgspec.UNSET else body.owner
        try:
            title = text(body.title, "title")  # the repository's own check, applied early
            task = await request.app[keys.FOLLOW_UPS].add(pid, body.due_at, title, owner)
        except FieldError as e:
            raise field_error(e) from None
        return respond(FollowUp, task.to_dict(), status=201)

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
    q = query_as(request, AccountQuery)
    page = await request.app[keys.ACCOUNTS].list(
        owner=q.owner, q=q.q, limit=q.limit, offset=_page_position(q.cursor, "accounts")
    )
    items = [a.to_dict() for a in page.items]
    return respond(
        AccountPage, {"items": items, "next_cursor": _next_cursor("accounts", page.next_offset)}
    )


async def create_account(request: web.Request) -> web.Response:
    require(request, "crm:write")
    query_as(request, NoQuery)
    body = _input(await body_as(request, AccountInput))
    try:
        account = await request.app[keys.ACCOUNTS].create(body)
    except FieldError as e:
        raise field_error(e) from None
    return respond(Account, account.to_dict(), status=201)


async def get_account(request: web.Request) -> web.Response:
    require(request, "crm:read")
    query_as(request, NoQuery)
    aid = id_param(request)
    account = await request.app[keys.ACCOUNTS].get(aid)
    if account is None:
        raise _not_found("account", aid)
    return respond(Account, account.to_dict())


async def update_account(request: web.Request) -> web.Response:
    require(request, "crm:write")
    query_as(request, NoQuery)
    aid = id_param(request)
    body = _input(await body_as(request, AccountInput))
    try:
        account = await request.app[keys.ACCOUNTS].update(aid, body)
    except FieldError as e:
        raise field_error(e) from None
    if account is None:
        raise _not_found("account", aid)
    return respond(Account, account.to_dict())


async def delete_account(request: web.Request) -> web.Response:
    require_manager(request, "crm:write")
    query_as(request, NoQuery)
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
    if request.content_type in ("text/csv", "text/plain"):
        q = query_as(request, ImportQuery)
        try:
            csv_text = (await request.read()).decode("utf-8")
        except UnicodeDecodeError:
            raise invalid("csv", "body is not UTF-8") from None
        mapping = None
        if q.mapping is not None:
            mapping = decode_json(
                q.mapping.encode(), dict[str, str] | None, status=400, root="mapping"
            )
        body = ImportRequest(q.kind, csv_text, mapping, q.strict, q.region)
    else:
        query_as(request, NoQuery)
        body = await body_as(request, ImportRequest)
    if not body.csv.strip():
        raise invalid("csv", "required: the CSV text", 422)
    region = body.default_region or request.app[keys.CONFIG].lookup.default_region
    if len(region) != 2:
        raise invalid("default_region", "expected a two-letter country code", 422)
    try:
        report = await import_csv(
            request.app[keys.DB], body.csv, body.kind, body.mapping, body.strict, region.upper()
        )
    except FieldError as e:
        raise field_error(e) from None
    if body.strict and report.errors:
        raise ApiError(
            422,
            "import_rejected",
            f"{len(report.errors)} bad row(s); strict import imported nothing",
            report.to_dict(),
        )
    return respond(ImportReport, report.to_dict())


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
