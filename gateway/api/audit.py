"""``GET /api/v1/audit``: who changed do-not-call, opt-out or owners, when, old → new.

Supervisors and admins (panel) or a token with ``audit:read``; the access table in
``gateway/access.py`` says so and the auth middleware enforces it. The query and the answer
are msgspec structs: ``gateway/api/openapi.py`` documents them from these same definitions.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from aiohttp import web
from msgspec import Meta

from gateway.api.params import decode_cursor, encode_cursor, query_as, respond
from gateway.api.schemas import Cursor, Id, Limit
from gateway.store.db import Database
from gateway.store.repositories import AuditRepository

AUDIT: web.AppKey[AuditRepository] = web.AppKey("audit", AuditRepository)
PATH = "/api/v1/audit"

Value = bool | str | None


class AuditQuery(msgspec.Struct, forbid_unknown_fields=True):
    record_id: Annotated[Id, Meta(description="only this contact's or lead's changes")] | None = (
        None
    )
    limit: Limit = 50
    cursor: Cursor | None = None


class AuditEntry(msgspec.Struct):
    """One field changed: who (``user:sofia``, ``token:crm``, ``system``), when, old → new."""

    id: int
    at: Annotated[float, Meta(description="epoch seconds (UTC)")]
    actor: str
    record_kind: Literal["contact", "lead"]
    record_id: int
    field: Annotated[
        str, Meta(examples=["do_not_call", "owner", "phones[+34600111222].do_not_call"])
    ]
    old: Value
    new: Value


class AuditPage(msgspec.Struct):
    """Newest first; ``next_cursor`` is null on the last page."""

    items: list[AuditEntry]
    next_cursor: str | None


async def list_audit(request: web.Request) -> web.Response:
    q = query_as(request, AuditQuery)
    position = decode_cursor(q.cursor, tuple[Literal["audit"], int])
    offset = 0 if position is None else max(0, int(position[1]))
    page = await request.app[AUDIT].list(record_id=q.record_id, limit=q.limit, offset=offset)
    after = None if page.next_offset is None else encode_cursor("audit", page.next_offset)
    return respond(AuditPage, {"items": page.items, "next_cursor": after})


def routes() -> list[web.RouteDef]:
    return [web.get(PATH, list_audit)]


def setup_audit(app: web.Application, db: Database) -> None:
    app[AUDIT] = AuditRepository(db)
    app.router.add_routes(routes())
