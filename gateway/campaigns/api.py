"""The campaigns part of ``/api/v1``: campaigns (CRUD, start/pause/end, results, members), the
live count of a segment, the preview of an e-mail, and unsubscribing a lead on their behalf.

Bodies are the structs of :mod:`gateway.campaigns.model` (the one definition the panel, the
store and the scheduler share); a wrong type or unknown field is a 422 naming the field
(``steps[2].templates.es.subject``), as is what types cannot say (:func:`check_campaign`, a
template that would not render). Supervisors and admins (scopes ``campaigns:read`` /
``campaigns:write``) use it; agents do not. Changing a running campaign needs a pause first
(409 ``campaign_busy``); a started campaign is ended, not deleted, so its history stays.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated, Any, Literal, Protocol
from zoneinfo import ZoneInfo

import msgspec
from aiohttp import web
from msgspec import Meta

from gateway.api.auth import require
from gateway.api.params import (
    body_as,
    decode_cursor,
    decode_json,
    encode_cursor,
    id_param,
    invalid,
    query_as,
    respond,
)
from gateway.api.schemas import Epoch, NoQuery
from gateway.bus import Bus
from gateway.campaigns import templates
from gateway.campaigns.model import (
    CampaignIn,
    CampaignStatus,
    CheckError,
    EmailTemplate,
    Language,
    LeaveReason,
    Segment,
    Stop,
    check_campaign,
)
from gateway.campaigns.segment import SegmentCount, count_segment
from gateway.campaigns.store import (
    Campaign,
    CampaignBusy,
    CampaignNotFound,
    CampaignResults,
    CampaignStore,
)
from gateway.campaigns.unsubscribe import unsubscribe
from gateway.config import GatewayConfig
from gateway.errors import ApiError
from gateway.panel.users import UserRepository
from gateway.store.db import Database
from gateway.store.repositories import PersonRepository

BASE = "/api/v1/campaigns"
MAX_MEMBERS_PAGE = 500


class CampaignsHost(Protocol):
    """What the routes need of the gateway (``gateway.app.Gateway`` has it)."""

    db: Database | None
    cfg: GatewayConfig
    bus: Bus
    clock: Any


# -- documents -----------------------------------------------------------------------------


class CampaignFigures(msgspec.Struct):
    """The key figures the list shows; ``GET .../results`` has the whole funnel."""

    entered: Annotated[int, Meta(description="member rows (a re-entry counts again)")]
    active: int
    emails_sent: int
    calls_made: Annotated[int, Meta(description="call tasks whose call was made")]
    converted: Annotated[int, Meta(description="won while a member")]
    revived: Annotated[int, Meta(description="lost leads that moved on while a member")]


class CampaignDoc(msgspec.Struct):
    id: int
    name: str
    description: str
    status: CampaignStatus
    definition: CampaignIn
    created_by: Annotated[str | None, Meta(description="`user:sofia`, `token:crm`")]
    created_at: Epoch
    updated_at: Epoch
    started_at: Annotated[Epoch | None, Meta(description="the first start")]
    paused_at: Annotated[Epoch | None, Meta(description="set while paused")]
    ended_at: Epoch | None
    figures: CampaignFigures


class CampaignList(msgspec.Struct):
    """Newest first; every campaign (there are few), so ``next_cursor`` is always null."""

    items: list[CampaignDoc]
    next_cursor: str | None


class CampaignQuery(msgspec.Struct, forbid_unknown_fields=True):
    status: CampaignStatus | None = None


class MemberDoc(msgspec.Struct):
    """One lead's way through the campaign."""

    id: int
    campaign_id: int
    person_id: int
    kind: Annotated[
        Literal["lead", "contact"],
        Meta(description="what the person is now (a converted lead is a contact)"),
    ]
    name: Annotated[str, Meta(description="the lead's name (untrusted text: render as text)")]
    round: Annotated[int, Meta(description="0, then 1, 2... for each re-entry")]
    entered_at: Epoch
    step: Annotated[int, Meta(description="index of the next step to run")]
    due_at: Epoch
    state: Literal["active", "left"]
    left_at: Epoch | None
    left_reason: LeaveReason | None
    timezone: Annotated[str, Meta(description="the IANA zone its hours are counted in")]
    last_agent: str | None
    revived: bool
    lost_reason: Annotated[str, Meta(description="why it was lost when it entered, or empty")]


class MemberPage(msgspec.Struct):
    """Oldest member first; ``next_cursor`` is null on the last page."""

    items: list[MemberDoc]
    next_cursor: str | None


class MemberQuery(msgspec.Struct, forbid_unknown_fields=True):
    state: Literal["active", "left"] | None = None
    left_reason: (
        Annotated[
            LeaveReason, Meta(description="only who left for this reason (implies state left)")
        ]
        | None
    ) = None
    limit: Annotated[int, Meta(ge=1, le=MAX_MEMBERS_PAGE, description="page size")] = 100
    cursor: (
        Annotated[str, Meta(max_length=200, description="the previous page's `next_cursor`")] | None
    ) = None


class ReplyMarked(msgspec.Struct):
    member_id: int
    run_id: Annotated[int, Meta(description="the member's last e-mail, now marked replied")]
    step: int
    replied_at: Epoch


class PreviewIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """An e-mail step's versions, the language to show, and whose fields to fill in (none:
    a sample lead)."""

    templates: Annotated[dict[Language, EmailTemplate], Meta(min_length=1)]
    language: Language = "es"
    person_id: Annotated[int, Meta(ge=1)] | None = None


class Preview(msgspec.Struct):
    language: Annotated[str, Meta(description="the version shown (the asked one, if given)")]
    subject: str
    html: Annotated[str, Meta(description="show it sandboxed: an iframe with no scripts")]
    text: str


class UnsubscribeIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    email: (
        Annotated[str, Meta(max_length=254, description="also every other row of this address")]
        | None
    ) = None


class Unsubscribed(msgspec.Struct):
    person_id: int
    email: Annotated[str, Meta(description="the address concerned, empty when it has none")]
    changed: Annotated[bool, Meta(description="false: it was opted out already")]


# -- helpers -------------------------------------------------------------------------------

HOST: web.AppKey[CampaignsHost] = web.AppKey("campaigns_host")
STORE: web.AppKey[CampaignStore] = web.AppKey("campaign_store", CampaignStore)


def _check_error(e: CheckError, strip: str = "") -> ApiError:
    path = e.path.removeprefix(strip) if strip else e.path
    return invalid(path, e.message, 422)


def _checked(definition: CampaignIn) -> CampaignIn:
    """What types cannot say: branch targets, languages, time zone, templates that render."""
    try:
        check_campaign(definition)
        templates.check_campaign_templates(definition)
    except CheckError as e:
        raise _check_error(e) from None
    return definition


def _not_found(campaign_id: int) -> ApiError:
    return ApiError(404, "not_found", f"no campaign with id {campaign_id}", {"id": campaign_id})


def _busy(e: CampaignBusy) -> ApiError:
    return ApiError(
        409,
        "campaign_busy",
        f"the campaign is {e.status}: cannot {e.action}",
        {"status": e.status, "action": e.action},
    )


@contextlib.contextmanager
def _as_api_errors(campaign_id: int) -> Iterator[None]:
    """The store's refusals as the API answers them: 404 (gone meanwhile), 409 (busy)."""
    try:
        yield
    except CampaignNotFound:
        raise _not_found(campaign_id) from None
    except CampaignBusy as e:
        raise _busy(e) from None


async def _figures(db: Database, ids: list[int]) -> dict[int, dict[str, int]]:
    """Key figures of these campaigns in two grouped queries."""
    out = {
        i: {
            "entered": 0,
            "active": 0,
            "emails_sent": 0,
            "calls_made": 0,
            "converted": 0,
            "revived": 0,
        }
        for i in ids
    }
    if not ids:
        return out
    marks = ",".join("?" * len(ids))
    for cid, entered, active, converted, revived in await db.conn.execute_fetchall(
        "SELECT campaign_id, count(*), sum(state = 'active'), sum(left_reason = 'converted'),"
        f" sum(revived) FROM campaign_members WHERE campaign_id IN ({marks})"
        " GROUP BY campaign_id",
        ids,
    ):
        f = out[cid]
        f["entered"], f["active"] = entered, active or 0
        f["converted"], f["revived"] = converted or 0, revived or 0
    for cid, emails, calls in await db.conn.execute_fetchall(
        "SELECT campaign_id, sum(kind = 'email' AND status = 'sent'),"
        " sum(kind = 'call' AND status = 'called')"
        f" FROM campaign_step_runs WHERE campaign_id IN ({marks}) GROUP BY campaign_id",
        ids,
    ):
        out[cid]["emails_sent"], out[cid]["calls_made"] = emails or 0, calls or 0
    return out


async def _docs(request: web.Request, campaigns: list[Campaign]) -> list[dict[str, Any]]:
    figures = await _figures(request.app[STORE].db, [c.id for c in campaigns])
    return [{**c.to_dict(), "figures": figures[c.id]} for c in campaigns]


async def _one(request: web.Request, campaign: Campaign, status: int = 200) -> web.Response:
    (doc,) = await _docs(request, [campaign])
    return respond(CampaignDoc, doc, status)


def _now(request: web.Request) -> float:
    return float(request.app[HOST].clock())


# -- campaigns -----------------------------------------------------------------------------


async def list_campaigns(request: web.Request) -> web.Response:
    require(request, "campaigns:read")
    q = query_as(request, CampaignQuery)
    found = await request.app[STORE].list(q.status.value if q.status else None)
    return respond(CampaignList, {"items": await _docs(request, found), "next_cursor": None})


async def create_campaign(request: web.Request) -> web.Response:
    who = require(request, "campaigns:write")
    query_as(request, NoQuery)
    definition = _checked(await body_as(request, CampaignIn))
    created = await request.app[STORE].create(definition, who.actor, _now(request))
    return await _one(request, created, 201)


async def _campaign(request: web.Request) -> Campaign:
    cid = id_param(request)
    found = await request.app[STORE].get(cid)
    if found is None:
        raise _not_found(cid)
    return found


async def get_campaign(request: web.Request) -> web.Response:
    require(request, "campaigns:read")
    query_as(request, NoQuery)
    return await _one(request, await _campaign(request))


async def put_campaign(request: web.Request) -> web.Response:
    require(request, "campaigns:write")
    query_as(request, NoQuery)
    current = await _campaign(request)  # 404 before judging the body
    definition = _checked(await body_as(request, CampaignIn))
    with _as_api_errors(current.id):
        changed = await request.app[STORE].update(current.id, definition, _now(request))
    return await _one(request, changed)


async def delete_campaign(request: web.Request) -> web.Response:
    require(request, "campaigns:write")
    query_as(request, NoQuery)
    current = await _campaign(request)
    with _as_api_errors(current.id):
        await request.app[STORE].delete(current.id)
    return web.Response(status=204)


def _status_route(target: CampaignStatus) -> Any:
    async def change(request: web.Request) -> web.Response:
        require(request, "campaigns:write")
        query_as(request, NoQuery)
        current = await _campaign(request)
        if target is CampaignStatus.RUNNING:
            _checked(current.definition)  # a definition stored by an older version
        with _as_api_errors(current.id):
            changed = await request.app[STORE].set_status(current.id, target, _now(request))
        return await _one(request, changed)

    return change


async def get_results(request: web.Request) -> web.Response:
    require(request, "campaigns:read")
    query_as(request, NoQuery)
    current = await _campaign(request)
    with _as_api_errors(current.id):
        results = await request.app[STORE].results(current.id)
    return respond(CampaignResults, results.to_dict())


async def list_members(request: web.Request) -> web.Response:
    require(request, "campaigns:read")
    q = query_as(request, MemberQuery)
    current = await _campaign(request)
    position = decode_cursor(q.cursor, tuple[Literal["members"], int, int])
    after = 0
    if position is not None:
        if position[1] != current.id:
            raise invalid("cursor", "not a cursor this API returned for this list")
        after = max(0, position[2])
    if q.left_reason is not None and q.state == "active":
        raise invalid("left_reason", "only members who left have one: give state=left or none")
    store = request.app[STORE]
    members = await store.members(
        current.id,
        state=q.state,
        left_reason=q.left_reason,
        after_id=after,
        limit=q.limit + 1,
    )
    more = len(members) > q.limit
    members = members[: q.limit]
    people: dict[int, tuple[str, str]] = {}
    ids = list({m.person_id for m in members})
    if ids:
        marks = ",".join("?" * len(ids))
        for pid, kind, first, last in await store.db.conn.execute_fetchall(
            f"SELECT id, kind, first_name, last_name FROM people WHERE id IN ({marks})", ids
        ):
            people[pid] = (kind, f"{first} {last}".strip())
    items = []
    for m in members:
        kind, name = people.get(m.person_id, ("lead", ""))
        items.append({**m.to_dict(), "kind": kind, "name": name})
    nxt = encode_cursor("members", current.id, members[-1].id) if more else None
    return respond(MemberPage, {"items": items, "next_cursor": nxt})


async def mark_replied(request: web.Request) -> web.Response:
    """The lead answered the campaign's e-mail (a mailbox the gateway does not read): the
    member's last e-mail is marked replied; the scheduler takes it from there (it leaves
    ``replied`` unless a later step branches on a reply)."""
    require(request, "campaigns:write")
    query_as(request, NoQuery)
    current = await _campaign(request)
    member_id = id_param(request, "member_id")
    store = request.app[STORE]
    member = await store.member(member_id)
    if member is None or member.campaign_id != current.id:
        raise ApiError(
            404, "not_found", f"no member {member_id} in campaign {current.id}", {"id": member_id}
        )
    run = await store.last_run(member.id, "email")
    if run is None or run.status not in ("sent", "unknown"):
        raise ApiError(
            409, "no_email", "this member has not been sent an e-mail yet", {"id": member_id}
        )
    at = _now(request)
    await store.mark_replied(run.id, at)
    marked = await store.run(run.id)
    assert marked is not None and marked.replied_at is not None
    return respond(
        ReplyMarked,
        {
            "member_id": member.id,
            "run_id": run.id,
            "step": run.step,
            "replied_at": marked.replied_at,
        },
    )


# -- segments and previews -----------------------------------------------------------------


async def count(request: web.Request) -> web.Response:
    require(request, "campaigns:read")
    query_as(request, NoQuery)
    segment = await body_as(request, Segment)
    try:  # the segment's own rules (score range, date range), as a campaign would check them
        check_campaign(CampaignIn(name="count", steps=[Stop()], segment=segment))
    except CheckError as e:
        raise _check_error(e, "segment.") from None
    host = request.app[HOST]
    tz = ZoneInfo(host.cfg.panel.timezone)  # a segment's dates are days of the panel's zone
    return respond(SegmentCount, await count_segment(request.app[STORE].db, segment, tz))


async def preview(request: web.Request) -> web.Response:
    require(request, "campaigns:read")
    query_as(request, NoQuery)
    body = await body_as(request, PreviewIn)
    language = body.language if body.language in body.templates else next(iter(body.templates))
    template = body.templates[language]
    try:
        templates.check_template(template, f"templates.{language}")
    except CheckError as e:
        raise _check_error(e) from None
    context: dict[str, Any] = dict(templates.SAMPLE_CONTEXT)
    if body.person_id is not None:
        db = request.app[STORE].db
        person = await PersonRepository(db).get(body.person_id)
        if person is None:
            raise ApiError(
                404, "not_found", f"no person with id {body.person_id}", {"id": body.person_id}
            )
        owner = await UserRepository(db).get(person.owner) if person.owner else None
        owner_name = (owner.display_name or owner.username) if owner else person.owner
        mail = request.app[HOST].cfg.mail
        email = next((e.email for e in person.emails if not e.opted_out), "")
        context = templates.person_context(
            person, owner_name, email=email, sender_name=mail.from_name
        )
    rendered = templates.render(
        template,
        context,
        unsubscribe_url=str(templates.SAMPLE_CONTEXT["unsubscribe_url"]),
        open_pixel_url=None,
        language=language,
    )
    return respond(
        Preview,
        {
            "language": language,
            "subject": rendered.subject,
            "html": rendered.html,
            "text": rendered.text,
        },
    )


async def unsubscribe_lead(request: web.Request) -> web.Response:
    """Opt a lead out of e-mail on their behalf (they asked on the phone, by letter...): the
    same single way out as the link in the e-mails, recorded with who did it."""
    who = require(request, "crm:write")
    query_as(request, NoQuery)
    pid = id_param(request)
    raw = await request.read()  # the body is optional
    body = decode_json(raw, UnsubscribeIn) if raw.strip() else UnsubscribeIn()
    db = request.app[STORE].db
    if await PersonRepository(db).get(pid) is None:
        raise ApiError(404, "not_found", f"no person with id {pid}", {"id": pid})
    host = request.app[HOST]
    result = await unsubscribe(
        db,
        host.bus,
        at=_now(request),
        method="agent" if who.kind == "user" else "api",
        person_id=pid,
        email=body.email,
        actor=who.actor,
    )
    return respond(
        Unsubscribed, {"person_id": pid, "email": result.email, "changed": result.changed}
    )


def routes() -> list[web.RouteDef]:
    return [
        web.get(BASE, list_campaigns),
        web.post(BASE, create_campaign),
        web.post(BASE + "/preview", preview),  # before {id}: "preview" is no id
        web.get(BASE + "/{id}", get_campaign),
        web.put(BASE + "/{id}", put_campaign),
        web.delete(BASE + "/{id}", delete_campaign),
        web.post(BASE + "/{id}/start", _status_route(CampaignStatus.RUNNING)),
        web.post(BASE + "/{id}/pause", _status_route(CampaignStatus.PAUSED)),
        web.post(BASE + "/{id}/end", _status_route(CampaignStatus.ENDED)),
        web.get(BASE + "/{id}/results", get_results),
        web.get(BASE + "/{id}/members", list_members),
        web.post(BASE + "/{id}/members/{member_id}/replied", mark_replied),
        web.post("/api/v1/segments/count", count),
        web.post("/api/v1/leads/{id}/unsubscribe", unsubscribe_lead),
    ]


def setup_campaigns_api(app: web.Application, gw: CampaignsHost) -> None:
    """Register the routes on ``app`` (after ``gw.open()``: they use its store)."""
    assert gw.db is not None, "open the gateway (create_app) before setup_campaigns_api"
    app[HOST] = gw
    app[STORE] = CampaignStore(gw.db)
    app.router.add_routes(routes())
