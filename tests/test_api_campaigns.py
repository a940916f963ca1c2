"""The campaigns API over real HTTP on the real application: the life of a campaign, fields
named when a body is wrong, segment counts, previews, members, replies, unsubscribing a lead,
who may use it; every answer checked against the OpenAPI document."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from gateway.api.openapi import build_document
from gateway.app import Gateway, create_app
from gateway.campaigns.model import CampaignIn
from gateway.campaigns.settings import CampaignSettings
from gateway.campaigns.store import CampaignStore
from gateway.panel.routes import PANEL
from gateway.store.events import LeadUnsubscribed
from tests.test_api_openapi import check_response, closed
from tests.test_panel_support import (
    API_TOKEN,
    FAST_HASHER,
    PASSWORD,
    USERS,
    PanelWorld,
    make_config,
)

TOKEN = {"Authorization": f"Bearer {API_TOKEN}"}
T0 = 1_800_000_000.0
DOC = closed(build_document())

EMAIL = {
    "kind": "email",
    "templates": {
        "es": {
            "subject": "Hola {{ lead.first_name }}",
            "html": "<p>Hola {{ lead.first_name }}, tenemos un plan para {{ lead.company }}.</p>",
        },
        "en": {"subject": "Hi {{ lead.first_name }}", "html": "<p>Hi {{ lead.first_name }}</p>"},
    },
}
REVIVAL = {
    "name": "Revive no-budget deals",
    "segment": {"statuses": ["lost"], "lost_reasons": ["no_budget"]},
    "steps": [
        EMAIL,
        {"kind": "wait", "days": 2},
        {"kind": "call", "title": "Call: new plan", "assign": "pool", "pool": ["ana", "bruno"]},
    ],
}


@pytest.fixture
async def world(aiohttp_server: Any, tmp_path: Path) -> AsyncIterator[PanelWorld]:
    # the scheduler stays off: these tests put members in place themselves
    cfg = msgspec.structs.replace(make_config(tmp_path), campaigns=CampaignSettings(enabled=False))
    now = [T0]
    gw = Gateway(cfg, clock=lambda: now[0])
    app = await create_app(cfg, gw)
    panel = app[PANEL]
    panel.users.hasher = FAST_HASHER
    for username, role, ext, name in USERS:
        await panel.users.add(username, PASSWORD, role, [ext], name)
    w = PanelWorld(gw, panel, await aiohttp_server(app))
    yield w
    await w.close()


async def call(
    world: PanelWorld,
    method: str,
    template: str,
    status: int,
    *,
    path: str | None = None,
    session: aiohttp.ClientSession | None = None,
    **kw: Any,
) -> Any:
    """One request (with the API token unless a session is given), its status, and its body
    checked against what the OpenAPI document says that route answers."""
    s = session or await world.browser()
    headers = {} if session is not None else TOKEN
    async with s.request(method, world.url(path or template), headers=headers, **kw) as r:
        assert r.status == status, await r.text()
        body = await r.json() if r.content_type == "application/json" else None
    check_response(DOC, method, template, status, body)
    return body


async def lead(world: PanelWorld, **fields: Any) -> int:
    doc = await call(world, "POST", "/api/v1/leads", 201, json=fields)
    return int(doc["id"])


def one(cid: int, tail: str = "") -> str:
    return f"/api/v1/campaigns/{cid}{tail}"


async def test_a_campaign_is_created_changed_started_paused_and_ended(world: PanelWorld) -> None:
    created = await call(world, "POST", "/api/v1/campaigns", 201, json=REVIVAL)
    cid = created["id"]
    assert created["status"] == "draft" and created["created_by"] == "token:crm"
    assert created["definition"]["steps"][2]["assign"] == "pool"
    assert created["figures"] == {
        "entered": 0, "active": 0, "emails_sent": 0, "calls_made": 0, "converted": 0,
        "revived": 0,
    }  # fmt: skip
    listed = await call(world, "GET", "/api/v1/campaigns", 200)
    assert [c["id"] for c in listed["items"]] == [cid]
    renamed = copy.deepcopy(REVIVAL) | {"name": "Revive (v2)", "reentry_days": 90}
    changed = await call(world, "PUT", "/api/v1/campaigns/{id}", 200, path=one(cid), json=renamed)
    assert changed["name"] == "Revive (v2)" and changed["definition"]["reentry_days"] == 90

    started = await call(
        world, "POST", "/api/v1/campaigns/{id}/start", 200, path=one(cid, "/start")
    )
    assert started["status"] == "running" and started["started_at"] == T0
    # a running campaign is paused before it is changed, and never deleted
    err = await call(world, "PUT", "/api/v1/campaigns/{id}", 409, path=one(cid), json=REVIVAL)
    assert err["error"]["id"] == "campaign_busy"
    assert err["error"]["details"]["status"] == "running"
    await call(world, "DELETE", "/api/v1/campaigns/{id}", 409, path=one(cid))
    paused = await call(world, "POST", "/api/v1/campaigns/{id}/pause", 200, path=one(cid, "/pause"))
    assert paused["status"] == "paused" and paused["paused_at"] == T0
    await call(world, "PUT", "/api/v1/campaigns/{id}", 200, path=one(cid), json=REVIVAL)
    running = await call(
        world, "GET", "/api/v1/campaigns", 200, path="/api/v1/campaigns?status=paused"
    )
    assert [c["id"] for c in running["items"]] == [cid]
    ended = await call(world, "POST", "/api/v1/campaigns/{id}/end", 200, path=one(cid, "/end"))
    assert ended["status"] == "ended"
    err = await call(world, "POST", "/api/v1/campaigns/{id}/start", 409, path=one(cid, "/start"))
    assert err["error"]["details"]["status"] == "ended"
    assert (await call(world, "GET", "/api/v1/campaigns/{id}", 200, path=one(cid)))["status"] == (
        "ended"
    )

    draft = await call(world, "POST", "/api/v1/campaigns", 201, json=REVIVAL)
    await call(world, "DELETE", "/api/v1/campaigns/{id}", 204, path=one(draft["id"]))
    err = await call(world, "GET", "/api/v1/campaigns/{id}", 404, path=one(draft["id"]))
    assert err["error"]["id"] == "not_found"
    await call(world, "POST", "/api/v1/campaigns/{id}/pause", 404, path=one(999, "/pause"))


def with_step(index: int, step: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(REVIVAL)
    body["steps"][index] = step
    return body


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        (with_step(1, {"kind": "fax"}), "steps[1].kind", "invalid value 'fax'"),
        (with_step(1, {"kind": "wait", "days": "two"}), "steps[1].days", "expected float"),
        (with_step(1, {"kind": "wait", "weeks": 2}), "steps[1].weeks", "unknown field"),
        (REVIVAL | {"steps": []}, "steps", "length >= 1"),
        (REVIVAL | {"segment": {"statuses": ["zombie"]}}, "segment.statuses[0]", "zombie"),
        (REVIVAL | {"name": ""}, "name", "length >= 1"),
        # what types cannot say: check_campaign names the field
        (
            with_step(1, {"kind": "branch", "condition": {"kind": "opened"}, "then": 0}),
            "steps[1].then",
            "must be a later step",
        ),
        (
            with_step(1, {"kind": "branch", "condition": {"kind": "score_at_least"}}),
            "steps[1].condition.value",
            "a score is required",
        ),
        (REVIVAL | {"language": "fr"}, "steps[0].templates", "'fr'"),
        (REVIVAL | {"timezone": "Europe/Atlantis"}, "timezone", "unknown time zone"),
        (
            with_step(2, {"kind": "call", "title": "x", "assign": "pool"}),
            "steps[2].pool",
            "needs a pool",
        ),
        (
            REVIVAL | {"segment": {"score_min": 8, "score_max": 3}},
            "segment.score_min",
            "score_max",
        ),
        # a template that would not render: the field and the line
        (
            with_step(
                0,
                {
                    "kind": "email",
                    "templates": {"es": {"subject": "Hola", "html": "<p>\n{{ lead.name }\n</p>"}},
                },
            ),
            "steps[0].templates.es.html",
            "line 2",
        ),
        (
            with_step(
                0,
                {"kind": "email", "templates": {"es": {"subject": "{{ lead.nick }}", "html": "x"}}},
            ),
            "steps[0].templates.es.subject",
            "unknown field",
        ),
    ],
)
async def test_a_wrong_campaign_is_refused_naming_the_field(
    world: PanelWorld, body: dict[str, Any], field: str, reason: str
) -> None:
    err = await call(world, "POST", "/api/v1/campaigns", 422, json=body)
    assert err["error"]["id"] == "invalid_field"
    assert err["error"]["details"]["field"] == field
    assert reason in err["error"]["details"]["reason"]
    # the same rules on a change; nothing was stored
    draft = await call(world, "POST", "/api/v1/campaigns", 201, json=REVIVAL)
    err = await call(world, "PUT", "/api/v1/campaigns/{id}", 422, path=one(draft["id"]), json=body)
    assert err["error"]["details"]["field"] == field
    listed = await call(world, "GET", "/api/v1/campaigns", 200)
    assert [c["definition"] for c in listed["items"]] == [draft["definition"]]


async def test_a_segment_is_counted_live_by_lost_reason(world: PanelWorld) -> None:
    for i, reason in enumerate(["no_budget", "no_budget", "competitor", "not_ready"]):
        await lead(world, name=f"Lost {i}", status="lost", lost_reason=reason,
                   email=f"lost{i}@example.com", tags=["feria"] if i else [])  # fmt: skip
    await lead(world, name="Open", phone="+34600111000", email="open@example.com")
    await lead(world, name="Quiet", status="lost", lost_reason="no_budget", do_not_call=True,
               email_opt_out=True, phone="+34600111001", email="quiet@example.com")  # fmt: skip
    segment = {"statuses": ["lost"], "lost_reasons": ["no_budget", "competitor"]}
    counted = await call(world, "POST", "/api/v1/segments/count", 200, json=segment)
    assert counted == {
        "total": 4,
        "emailable": 3,  # Quiet opted out
        "callable": 0,  # only Quiet has a number, and asked not to be called
        "by_lost_reason": {"no_budget": 3, "competitor": 1},
    }
    tagged = await call(world, "POST", "/api/v1/segments/count", 200, json={"tags": ["feria"]})
    assert tagged["total"] == 3
    err = await call(
        world, "POST", "/api/v1/segments/count", 422, json={"score_min": 9, "score_max": 2}
    )
    assert err["error"]["details"]["field"] == "score_min"
    err = await call(world, "POST", "/api/v1/segments/count", 422, json={"lost_from": "ayer"})
    assert err["error"]["details"]["field"] == "lost_from"


async def test_the_preview_fills_a_sample_or_a_real_lead_and_keeps_hostile_text_as_text(
    world: PanelWorld,
) -> None:
    sample = await call(
        world, "POST", "/api/v1/campaigns/preview", 200,
        json={"templates": EMAIL["templates"], "language": "es"},
    )  # fmt: skip
    assert sample["language"] == "es" and sample["subject"] == "Hola Lucía"
    assert "Ejemplo S.L." in sample["html"]
    assert "unsubscribe" in sample["html"] and "unsubscribe" in sample["text"]  # the footer
    pid = await lead(
        world, first_name="<script>alert(1)</script>", company="Acme & Co", language="en",
        email="x@example.com",
    )  # fmt: skip
    real = await call(
        world, "POST", "/api/v1/campaigns/preview", 200,
        json={"templates": EMAIL["templates"], "language": "es", "person_id": pid},
    )  # fmt: skip
    assert "<script>" not in real["html"] and "&lt;script&gt;" in real["html"]
    assert "Acme &amp; Co" in real["html"]
    assert real["subject"] == "Hola <script>alert(1)</script>"  # a subject is plain text
    # a version the step does not have: the first one it has
    only_es = {"es": EMAIL["templates"]["es"]}  # type: ignore[index]
    fallback = await call(
        world, "POST", "/api/v1/campaigns/preview", 200,
        json={"templates": only_es, "language": "en"},
    )  # fmt: skip
    assert fallback["language"] == "es"
    broken = {"es": {"subject": "Hola", "html": "{% if %}"}}
    err = await call(world, "POST", "/api/v1/campaigns/preview", 422, json={"templates": broken})
    assert err["error"]["details"]["field"] == "templates.es.html"
    await call(
        world, "POST", "/api/v1/campaigns/preview", 404,
        json={"templates": only_es, "person_id": 98765},
    )  # fmt: skip


async def test_members_page_and_a_reply_is_recorded(world: PanelWorld) -> None:
    db = world.gw.db
    assert db is not None
    created = await call(world, "POST", "/api/v1/campaigns", 201, json=REVIVAL)
    cid = created["id"]
    other = await call(world, "POST", "/api/v1/campaigns", 201, json=REVIVAL)
    ids = [
        await lead(
            world,
            name=f"Lead {i}",
            status="lost",
            lost_reason="no_budget",
            email=f"l{i}@example.com",
        )
        for i in range(3)
    ]
    store = CampaignStore(db)
    campaign = await store.get(cid)
    assert campaign is not None
    assert await store.enroll(campaign, ids, T0, T0, {i: "Europe/Madrid" for i in ids}) == 3
    first_page = await call(
        world, "GET", "/api/v1/campaigns/{id}/members", 200, path=one(cid, "/members?limit=2")
    )
    assert [m["person_id"] for m in first_page["items"]] == ids[:2]
    assert first_page["items"][0]["name"] == "Lead 0"
    assert first_page["items"][0]["lost_reason"] == "no_budget"
    cursor = first_page["next_cursor"]
    rest = await call(
        world, "GET", "/api/v1/campaigns/{id}/members", 200,
        path=one(cid, f"/members?limit=2&cursor={cursor}"),
    )  # fmt: skip
    assert [m["person_id"] for m in rest["items"]] == ids[2:] and rest["next_cursor"] is None
    # a cursor of one campaign is no cursor for another
    err = await call(
        world, "GET", "/api/v1/campaigns/{id}/members", 400,
        path=one(other["id"], f"/members?cursor={cursor}"),
    )  # fmt: skip
    assert err["error"]["details"]["field"] == "cursor"

    member = first_page["items"][0]
    replied = "/api/v1/campaigns/{id}/members/{member_id}/replied"
    err = await call(world, "POST", replied, 409, path=one(cid, f"/members/{member['id']}/replied"))
    assert err["error"]["id"] == "no_email"  # nothing was sent to reply to
    (m,) = [x for x in await store.members(cid) if x.id == member["id"]]
    run_id = await store.claim_run(m, 0, "email", T0, "2027-01-15", "sending")
    assert run_id is not None
    await store.finish_run(run_id, "sent", message_id="<m1@example.com>")
    marked = await call(world, "POST", replied, 200, path=one(cid, f"/members/{m.id}/replied"))
    assert marked == {"member_id": m.id, "run_id": run_id, "step": 0, "replied_at": T0}
    await call(world, "POST", replied, 404, path=one(other["id"], f"/members/{m.id}/replied"))
    results = await call(
        world, "GET", "/api/v1/campaigns/{id}/results", 200, path=one(cid, "/results")
    )
    assert results["entered"] == 3 and results["active"] == 3
    assert results["emails_sent"] == 1 and results["emails_replied"] == 1
    assert results["entered_by_lost_reason"] == {"no_budget": 3}
    assert [s["kind"] for s in results["steps"]] == ["email", "wait", "call"]
    assert results["steps"][0]["replied"] == 1
    listed = await call(world, "GET", "/api/v1/campaigns", 200)
    figures = {c["id"]: c["figures"] for c in listed["items"]}
    assert figures[cid]["entered"] == 3 and figures[cid]["emails_sent"] == 1
    assert figures[other["id"]]["entered"] == 0


async def test_members_who_left_for_one_reason_page_by_page(world: PanelWorld) -> None:
    """``left_reason`` lists who left for it (replied: those to call back first), with the
    same cursor paging; a converted lead is listed as the contact it became."""
    created = await call(world, "POST", "/api/v1/campaigns", 201, json=REVIVAL)
    cid = created["id"]
    ids = [
        await lead(world, name=f"Lead {i}", status="qualified", email=f"l{i}@example.com")
        for i in range(6)
    ]
    assert world.gw.db is not None
    store = CampaignStore(world.gw.db)
    campaign = await store.get(cid)
    assert campaign is not None
    assert await store.enroll(campaign, ids, T0, T0, {i: "Europe/Madrid" for i in ids}) == 6
    member = {m.person_id: m.id for m in await store.members(cid)}
    replied = [ids[0], ids[2], ids[4]]
    for pid in replied:
        assert await store.leave(member[pid], "replied", T0 + pid)
    assert await store.leave(member[ids[1]], "converted", T0 + 60)
    assert await store.leave(member[ids[3]], "unsubscribed", T0 + 60)
    sofia = await world.sign_in("sofia")
    async with sofia.post(
        world.url(f"/panel/api/people/{ids[1]}/convert"), json={"kind": "b2c"}
    ) as r:
        assert r.status == 200, await r.text()

    members = "/api/v1/campaigns/{id}/members"
    page = await call(
        world, "GET", members, 200, path=one(cid, "/members?left_reason=replied&limit=2")
    )
    assert [m["person_id"] for m in page["items"]] == replied[:2]
    assert {(m["state"], m["left_reason"], m["kind"]) for m in page["items"]} == {
        ("left", "replied", "lead")
    }
    assert page["items"][0]["left_at"] == T0 + replied[0]
    rest = await call(
        world, "GET", members, 200,
        path=one(cid, f"/members?left_reason=replied&limit=2&cursor={page['next_cursor']}"),
    )  # fmt: skip
    assert [m["person_id"] for m in rest["items"]] == replied[2:]
    assert rest["next_cursor"] is None
    # state=left says the same; the supervisor's session sees what the token sees
    both = await call(
        world, "GET", members, 200, session=sofia,
        path=one(cid, "/members?state=left&left_reason=replied"),
    )  # fmt: skip
    assert [m["person_id"] for m in both["items"]] == replied
    won = await call(world, "GET", members, 200, path=one(cid, "/members?left_reason=converted"))
    assert [(m["person_id"], m["kind"], m["name"]) for m in won["items"]] == [
        (ids[1], "contact", "Lead 1")
    ]
    nobody = await call(world, "GET", members, 200, path=one(cid, "/members?left_reason=ended"))
    assert nobody == {"items": [], "next_cursor": None}
    # the one still active is in no reason's list
    active = await call(world, "GET", members, 200, path=one(cid, "/members?state=active"))
    assert [m["person_id"] for m in active["items"]] == [ids[5]]

    for query, reason in [
        ("left_reason=called_back", "invalid enum value 'called_back'"),
        ("left_reason=Replied", "invalid enum value 'Replied'"),
        ("state=active&left_reason=replied", None),
    ]:
        err = await call(world, "GET", members, 400, path=one(cid, f"/members?{query}"))
        assert err["error"]["id"] == "invalid_parameter"
        assert err["error"]["details"]["field"] == "left_reason", query
        if reason is not None:
            assert err["error"]["details"]["reason"] == reason
    # who may read it: the same as the members list (supervisors and admins, not agents)
    ana = await world.sign_in("ana")
    err = await call(
        world, "GET", members, 403, session=ana, path=one(cid, "/members?left_reason=replied")
    )
    assert err["error"]["details"]["role"] == "supervisor"
    await call(world, "GET", members, 404, path=one(987654, "/members?left_reason=replied"))


async def test_a_lead_is_unsubscribed_on_their_behalf_once(world: PanelWorld) -> None:
    seen: list[LeadUnsubscribed] = []
    world.gw.bus.subscribe(LeadUnsubscribed, seen.append)
    pid = await lead(world, name="Eva", email="eva@example.com")
    path = f"/api/v1/leads/{pid}/unsubscribe"
    done = await call(world, "POST", "/api/v1/leads/{id}/unsubscribe", 200, path=path)
    assert done == {"person_id": pid, "email": "eva@example.com", "changed": True}
    again = await call(world, "POST", "/api/v1/leads/{id}/unsubscribe", 200, path=path, json={})
    assert again["changed"] is False
    person = await call(world, "GET", "/api/v1/leads/{id}", 200, path=f"/api/v1/leads/{pid}")
    assert person["email_opt_out"] is True and person["emails"][0]["opted_out"] is True
    assert [(e.person_id, e.method) for e in seen] == [(pid, "api")]
    # an agent on the phone does it from the panel's session: recorded as the agent's
    other = await lead(world, name="Leo", email="leo@example.com")
    ana = await world.sign_in("ana")
    path = f"/api/v1/leads/{other}/unsubscribe"
    await call(world, "POST", "/api/v1/leads/{id}/unsubscribe", 200, path=path, session=ana,
               json={})  # fmt: skip
    assert (seen[-1].person_id, seen[-1].method) == (other, "agent")
    await call(
        world,
        "POST",
        "/api/v1/leads/{id}/unsubscribe",
        404,
        path="/api/v1/leads/999999/unsubscribe",
    )
    err = await call(
        world, "POST", "/api/v1/leads/{id}/unsubscribe", 422, path=path, json={"mail": "x"}
    )
    assert err["error"]["details"]["field"] == "mail"


async def test_supervisors_run_campaigns_and_agents_do_not(world: PanelWorld) -> None:
    sofia = await world.sign_in("sofia")
    created = await call(world, "POST", "/api/v1/campaigns", 201, session=sofia, json=REVIVAL)
    assert created["created_by"] == "user:sofia"
    await call(world, "POST", "/api/v1/campaigns/{id}/start", 200, session=sofia,
               path=one(created["id"], "/start"))  # fmt: skip
    ana = await world.sign_in("ana")
    for method, template, path in [
        ("GET", "/api/v1/campaigns", "/api/v1/campaigns"),
        ("GET", "/api/v1/campaigns/{id}/results", one(created["id"], "/results")),
        ("POST", "/api/v1/segments/count", "/api/v1/segments/count"),
        ("POST", "/api/v1/campaigns/{id}/pause", one(created["id"], "/pause")),
    ]:
        err = await call(world, method, template, 403, path=path, session=ana, json={})
        assert err["error"]["details"]["role"] == "supervisor"
    assert world.gw.db is not None
    still = await CampaignStore(world.gw.db).get(created["id"])
    assert still is not None and still.status == "running"  # the agents changed nothing


def test_the_documented_campaign_body_is_the_models() -> None:
    """The OpenAPI schema of a campaign body is msgspec's own for the model's struct."""
    _, components = msgspec.json.schema_components(
        (CampaignIn,), ref_template="#/components/schemas/{name}"
    )
    assert build_document()["components"]["schemas"]["CampaignIn"] == components["CampaignIn"]
