"""Deals and customer metrics in ``/api/v1``:

* ``POST /api/v1/deals`` (crm:write): one deal as JSON, for a person (``person_id``, or found by
  ``email`` or ``phone``) or an account; with ``external_id`` a second post updates it;
* ``POST /api/v1/deals/import`` (crm:write, supervisors): deals as CSV (``text/csv``), one per
  row, the same columns as the JSON fields; bad rows are reported, the good ones kept;
* ``GET /api/v1/deals`` (crm:read): a person's or an account's deals, newest first;
* ``GET /api/v1/people/{id}/metrics`` (crm:read): every metric of a person with its reason,
  worded in ``lang`` (en, es) from the panel's catalogs;
* ``GET /api/v1/leads/{id}/best-hour`` (crm:read): when to call a lead: its outbound calls'
  answers per weekday x hour and per hour, each leaning on everybody's (the prior), and the
  hour to call (the one the worklist and campaigns use);
* ``POST /api/v1/segments/best-hour`` (campaigns:read, supervisors): the same for the leads of
  a segment (a campaign's ``segment``, as ``/api/v1/segments/count`` takes it).

Writing a deal recomputes the metrics of the people it concerns before answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import re
from collections.abc import AsyncIterator
from datetime import date, datetime
from typing import Annotated, Any, Literal, Protocol
from zoneinfo import ZoneInfo

import msgspec
from aiohttp import web
from msgspec import Meta

from gateway.api.auth import require, require_manager
from gateway.api.params import (
    body_as,
    decode_cursor,
    encode_cursor,
    id_param,
    invalid,
    query_as,
    respond,
)
from gateway.api.schemas import CustomerMetric, Epoch, NoQuery
from gateway.bus import Bus
from gateway.campaigns.model import CampaignIn, CheckError, Segment, Stop, check_campaign
from gateway.campaigns.segment import segment_where
from gateway.config import GatewayConfig
from gateway.errors import ApiError
from gateway.intel.metrics import METRICS
from gateway.intel.service import IntelService
from gateway.intel.wording import reason_text
from gateway.lookup.numbers import InvalidNumber, normalize
from gateway.reports import sales
from gateway.reports.model import BestHourReport
from gateway.store.db import Database, SqlParam
from gateway.store.deals import ExternalDeal, people_of, stored_external, write_external

INTEL: web.AppKey[IntelService] = web.AppKey("intel", IntelService)
MAX_IMPORT_BYTES = 20 * 1024 * 1024
MAX_PAGE = 200
_FIELD_AT = re.compile(r"at `\$\.(\w+)`")

Stage = Literal["qualification", "proposal", "negotiation", "won", "lost"]
# a date (YYYY-MM-DD, that day in the panel's zone), an ISO time, or epoch seconds
When = Annotated[str | float, Meta(description="epoch seconds, or ISO 8601 date or time")]


class IntelHost(Protocol):
    """What the routes need of the gateway (``gateway.app.Gateway`` has it)."""

    db: Database | None
    cfg: GatewayConfig
    bus: Bus
    clock: Any


# -- documents -----------------------------------------------------------------------------------


class DealInput(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A deal (an order when won). Whose: ``person_id``, else the person with ``email`` or
    ``phone``, or an ``account_id``. ``closed_at`` dates a won or lost deal (default: now)."""

    title: Annotated[str, Meta(max_length=200)] = ""
    stage: Stage = "won"
    amount: Annotated[float, Meta(ge=0, le=1e12)] | None = None
    currency: Annotated[str, Meta(pattern=r"^[A-Z]{3}$")] = "EUR"
    product: Annotated[str, Meta(max_length=200, description="product or category")] = ""
    closed_at: When | None = None
    created_at: When | None = None
    lost_reason: Annotated[str, Meta(max_length=200)] = ""
    person_id: int | None = None
    account_id: int | None = None
    email: Annotated[str, Meta(max_length=254)] | None = None
    phone: Annotated[str, Meta(max_length=64)] | None = None
    external_id: (
        Annotated[
            str,
            Meta(
                min_length=1, max_length=200, description="your id: a second post updates the deal"
            ),
        ]
        | None
    ) = None


class Deal(msgspec.Struct):
    """A stored deal; ``status`` is won, lost or open (derived from ``stage``)."""

    id: int
    person_id: int | None
    account_id: int | None
    title: str
    stage: str
    status: Literal["won", "lost", "open"]
    amount: float | None
    currency: str
    product: str
    owner: str | None
    created_at: Epoch
    closed_at: Epoch | None
    lost_reason: str
    external_id: str | None
    outcome: Literal["created", "updated", "listed"] = "listed"


class DealPage(msgspec.Struct):
    items: list[Deal]
    next_cursor: str | None


class DealQuery(msgspec.Struct, forbid_unknown_fields=True):
    person_id: int | None = None
    account_id: int | None = None
    status: Literal["won", "lost", "open"] | None = None
    limit: Annotated[int, Meta(ge=1, le=MAX_PAGE)] = 50
    cursor: str | None = None


class DealImportError(msgspec.Struct):
    line: int
    field: str
    reason: str


class DealImportReport(msgspec.Struct):
    """What a CSV import did: rows created, rows updated (same ``external_id``), bad rows."""

    created: int
    updated: int
    errors: list[DealImportError]


class PersonMetrics(msgspec.Struct):
    person_id: int
    computed_at: Epoch | None
    metrics: list[CustomerMetric]


class MetricsQuery(msgspec.Struct, forbid_unknown_fields=True):
    lang: Literal["en", "es"] = "en"


# -- writing deals -------------------------------------------------------------------------------

_COLUMNS = (
    "id, person_id, account_id, title, stage, amount, currency, product, owner, created_at,"
    " closed_at, lost_reason, external_id"
)


def _deal(row: Any) -> dict[str, Any]:
    keys = [k.strip() for k in _COLUMNS.split(",")]
    d = dict(zip(keys, tuple(row), strict=True))
    d["status"] = d["stage"] if d["stage"] in ("won", "lost") else "open"
    return d


def _when(value: str | float | None, field: str, tz: ZoneInfo) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        if not (0 <= value < 32_503_680_000):
            raise invalid(field, "expected epoch seconds before year 3000", 422)
        return float(value)
    text = value.strip()
    with contextlib.suppress(ValueError):
        return _when(float(text), field, tz)
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            return datetime(d.year, d.month, d.day, tzinfo=tz).timestamp()
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise invalid(
            field, f"expected a date (YYYY-MM-DD) or a time, got {text[:40]!r}", 422
        ) from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=tz)).timestamp()


async def _owner_of(db: Database, deal: DealInput, region: str) -> tuple[int | None, int | None]:
    """(person_id, account_id) the deal is for; 422 naming the field that finds nobody."""
    c = db.conn
    if deal.person_id is not None:
        rows = await c.execute_fetchall("SELECT id FROM people WHERE id = ?", (deal.person_id,))
        if not rows:
            raise invalid("person_id", f"no person with id {deal.person_id}", 422)
        return deal.person_id, deal.account_id
    if deal.email:
        rows = await c.execute_fetchall(
            "SELECT min(person_id) FROM emails WHERE email_lower = ?", (deal.email.lower(),)
        )
        pid = next(iter(rows))[0]
        if pid is None:
            raise invalid("email", "nobody has this e-mail address", 422)
        return int(pid), deal.account_id
    if deal.phone:
        try:
            e164 = normalize(deal.phone, region).e164
        except InvalidNumber as e:
            raise invalid("phone", str(e), 422) from None
        rows = await c.execute_fetchall(
            "SELECT min(person_id) FROM phones WHERE e164 = ? AND person_id IS NOT NULL",
            (e164,),
        )
        pid = next(iter(rows))[0]
        if pid is None:
            raise invalid("phone", "nobody has this number", 422)
        return int(pid), deal.account_id
    if deal.account_id is not None:
        rows = await c.execute_fetchall("SELECT id FROM accounts WHERE id = ?", (deal.account_id,))
        if not rows:
            raise invalid("account_id", f"no account with id {deal.account_id}", 422)
        return None, deal.account_id
    raise invalid("person_id", "required: person_id, email, phone or account_id", 422)


async def save_deal(
    db: Database, deal: DealInput, *, tz: ZoneInfo, region: str, by: str, now: float
) -> tuple[dict[str, Any], bool]:
    """Insert the deal, or update the one with its ``external_id``; (deal, created). An update
    keeps the deal's owner and creation time; a won or lost deal without ``closed_at`` is
    closed now, or keeps the time it was closed (:func:`write_external` decides, as for a
    CRM's deals)."""
    person_id, account_id = await _owner_of(db, deal, region)
    closed = _when(deal.closed_at, "closed_at", tz)
    created_at = _when(deal.created_at, "created_at", tz)
    async with db.transaction() as conn:
        old = None
        if deal.external_id:
            old = (await stored_external(conn, [deal.external_id])).get(deal.external_id)
        if old is not None:
            owner, created_at = old[9], float(old[10])
        else:
            rows = await conn.execute_fetchall(
                "SELECT owner FROM people WHERE id = ?", (person_id,)
            )
            owner = next((r[0] for r in rows), None)
        record = ExternalDeal(
            external_id=deal.external_id,
            person_id=person_id,
            account_id=account_id,
            title=deal.title,
            stage=deal.stage,
            amount=deal.amount,
            currency=deal.currency,
            product=deal.product,
            lost_reason=deal.lost_reason,
            owner=owner,
            created_at=created_at,
            closed_at=closed,
        )
        deal_id, _owners = await write_external(conn, record, by=by, now=now, old=old, touch=True)
        rows = await conn.execute_fetchall(f"SELECT {_COLUMNS} FROM deals WHERE id = ?", (deal_id,))
    return _deal(next(iter(rows))), old is None


# -- routes --------------------------------------------------------------------------------------


def routes(host: IntelHost) -> list[web.RouteDef]:
    tz = ZoneInfo(host.cfg.panel.timezone)
    region = host.cfg.lookup.default_region

    def db_of() -> Database:
        assert host.db is not None
        return host.db

    async def create(request: web.Request) -> web.Response:
        who = require(request, "crm:write")
        query_as(request, NoQuery)
        body = await body_as(request, DealInput)
        deal, created = await save_deal(
            db_of(), body, tz=tz, region=region, by=who.actor, now=host.clock()
        )
        owners = [(deal["person_id"], deal["account_id"])]
        await request.app[INTEL].recompute_many(sorted(await people_of(db_of().conn, owners)))
        deal["outcome"] = "created" if created else "updated"
        return respond(Deal, deal, status=201 if created else 200)

    async def import_deals(request: web.Request) -> web.Response:
        who = require_manager(request, "crm:write")
        query_as(request, NoQuery)
        if request.content_length is not None and request.content_length > MAX_IMPORT_BYTES:
            raise ApiError(413, "too_large", f"import body over {MAX_IMPORT_BYTES} bytes")
        try:
            text = (await request.read()).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise invalid("csv", "body is not UTF-8") from None
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames:
            raise invalid("csv", "required: a header row and the deals", 422)
        known = set(DealInput.__struct_fields__)
        unknown = [f for f in reader.fieldnames if f.strip() not in known]
        if unknown:
            raise invalid("csv", f"unknown column(s): {', '.join(unknown)[:200]}", 422)
        created = updated = 0
        errors: list[DealImportError] = []
        touched: set[tuple[int | None, int | None]] = set()
        for row in reader:
            line = reader.line_num
            given = {k.strip(): v.strip() for k, v in row.items() if k and v and v.strip()}
            try:
                deal_in = msgspec.convert(given, DealInput, strict=False)
                deal, was_created = await save_deal(
                    db_of(), deal_in, tz=tz, region=region, by=who.actor, now=host.clock()
                )
            except msgspec.ValidationError as e:
                at = _FIELD_AT.search(str(e))
                errors.append(DealImportError(line, at.group(1) if at else "", str(e)))
                continue
            except ApiError as e:
                details = e.details if isinstance(e.details, dict) else {}
                errors.append(
                    DealImportError(
                        line, str(details.get("field", "")), str(details.get("reason", e))
                    )
                )
                continue
            created += was_created
            updated += not was_created
            touched.add((deal["person_id"], deal["account_id"]))
        await request.app[INTEL].recompute_many(sorted(await people_of(db_of().conn, touched)))
        return respond(DealImportReport, DealImportReport(created, updated, errors))

    async def list_deals(request: web.Request) -> web.Response:
        require(request, "crm:read")
        q = query_as(request, DealQuery)
        if q.person_id is None and q.account_id is None:
            raise invalid("person_id", "required: person_id or account_id")
        position = decode_cursor(q.cursor, tuple[Literal["deals"], int])
        offset = 0 if position is None else max(0, int(position[1]))
        where = ["(person_id = ? OR account_id = ?)"]
        args: list[SqlParam] = [q.person_id, q.account_id]
        if q.status is not None:
            where.append("stage NOT IN ('won', 'lost')" if q.status == "open" else "stage = ?")
            if q.status != "open":
                args.append(q.status)
        rows = await db_of().conn.execute_fetchall(
            f"SELECT {_COLUMNS} FROM deals WHERE {' AND '.join(where)}"
            " ORDER BY coalesce(closed_at, created_at) DESC, id DESC LIMIT ? OFFSET ?",
            (*args, q.limit + 1, offset),
        )
        items = [_deal(r) for r in rows]
        more = len(items) > q.limit
        return respond(
            DealPage,
            {
                "items": items[: q.limit],
                "next_cursor": encode_cursor("deals", offset + q.limit) if more else None,
            },
        )

    async def metrics(request: web.Request) -> web.Response:
        require(request, "crm:read")
        q = query_as(request, MetricsQuery)
        pid = id_param(request)
        service = request.app[INTEL]
        stored, at = await service.stored(pid)
        if len(stored) < len(METRICS):  # never computed (or a newer metric): now
            if await service.recompute(pid) is None:
                raise ApiError(404, "not_found", f"no person with id {pid}", {"id": pid})
            stored, at = await service.stored(pid)
        docs = [
            CustomerMetric(m.name, m.value, m.label, m.reason, m.params, reason_text(m, q.lang))
            for m in stored
        ]
        return respond(PersonMetrics, PersonMetrics(pid, at, docs))

    async def lead_best_hour(request: web.Request) -> web.Response:
        require(request, "crm:read")
        query_as(request, NoQuery)
        pid = id_param(request)
        rows = await db_of().conn.execute_fetchall(
            "SELECT 1 FROM people WHERE id = ? AND kind = 'lead'", (pid,)
        )
        if not rows:
            raise ApiError(404, "not_found", f"no lead with id {pid}", {"id": pid})
        doc = await sales.best_hour(
            db_of(),
            pid,
            host.cfg.panel,
            now=host.clock(),
            everybody=request.app[INTEL].cohort.answers,
        )
        return respond(BestHourReport, doc)

    async def segment_best_hour(request: web.Request) -> web.Response:
        require(request, "campaigns:read")
        query_as(request, NoQuery)
        segment = await body_as(request, Segment)
        try:  # the segment's own rules, as /api/v1/segments/count checks them
            check_campaign(CampaignIn(name="best-hour", steps=[Stop()], segment=segment))
        except CheckError as e:
            raise invalid(e.path.removeprefix("segment."), e.message, 422) from None
        doc = await sales.best_hour(
            db_of(),
            segment_where(segment, tz),  # a segment's dates are days of the panel's zone
            host.cfg.panel,
            now=host.clock(),
            everybody=request.app[INTEL].cohort.answers,
        )
        return respond(BestHourReport, doc)

    return [
        web.post("/api/v1/deals", create),
        web.post("/api/v1/deals/import", import_deals),
        web.get("/api/v1/deals", list_deals),
        web.get("/api/v1/people/{id}/metrics", metrics),
        web.get("/api/v1/leads/{id}/best-hour", lead_best_hour),
        web.post("/api/v1/segments/best-hour", segment_best_hour),
    ]


def setup_intel(app: web.Application, host: IntelHost) -> IntelService:
    """Register the routes, recompute on the bus's events and run the worker and the nightly
    recomputation with the web server. Call after ``host.open()`` (``create_app`` does)."""
    assert host.db is not None, "open the gateway before setup_intel"
    service = IntelService(
        host.db,
        tz=ZoneInfo(host.cfg.panel.timezone),
        default_region=host.cfg.lookup.default_region,
        clock=host.clock,
    )
    app[INTEL] = service
    app.router.add_routes(routes(host))
    unsubscribe = service.subscribe(host.bus)

    async def worker(app: web.Application) -> AsyncIterator[None]:
        tasks = [
            asyncio.create_task(service.run(), name="intel-worker"),
            asyncio.create_task(service.nightly(), name="intel-nightly"),
            # missing or stale metrics, in the background: start-up does not wait for them
            asyncio.create_task(service.catch_up(), name="intel-catch-up"),
        ]
        yield
        unsubscribe()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(service.settled(), 5.0)  # before the store closes
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    app.cleanup_ctx.append(worker)
    return service
