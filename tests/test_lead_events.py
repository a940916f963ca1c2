"""Lead events and the person fields campaigns select by, over the real application.

Every path that changes a lead's status publishes LeadStatusChanged after its commit (API,
panel qualification, conversion, the repository a campaign step uses), naming who did it;
a write that fails publishes nothing; "lost" stamps lost_at; tags and language are read and
written through the API with the field named when wrong.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.store.events import LeadConverted, LeadStatusChanged
from gateway.store.models import PersonType
from gateway.store.repositories import PersonRepository
from tests.test_panel_support import API_TOKEN, PanelWorld, open_world

TOKEN = {"Authorization": f"Bearer {API_TOKEN}"}
ANSWERS = {
    "company_size": "10_49",
    "fit": 8,
    "needs": "VoIP",
    "interest": 6,
    "complementary": "CRM",
    "competitor_offer": "none",
}


@pytest.fixture
async def world(aiohttp_server: Any, tmp_path: Path) -> AsyncIterator[PanelWorld]:
    gen = open_world(aiohttp_server, tmp_path)
    w = await gen.__anext__()
    yield w
    await gen.aclose()


def collect(world: PanelWorld) -> list[Any]:
    seen: list[Any] = []
    world.gw.bus.subscribe(LeadStatusChanged, seen.append)
    world.gw.bus.subscribe(LeadConverted, seen.append)
    return seen


async def api(world: PanelWorld, method: str, path: str, status: int, **kw: Any) -> Any:
    s = await world.browser()
    async with s.request(method, world.url(path), headers=TOKEN, **kw) as r:
        assert r.status == status, await r.text()
        return await r.json() if r.content_type == "application/json" else None


async def test_a_status_change_through_the_api_is_published_once_with_its_actor(
    world: PanelWorld,
) -> None:
    seen = collect(world)
    lead = await api(
        world, "POST", "/api/v1/leads", 201, json={"name": "Eva", "phone": "+34600111222"}
    )
    assert seen == []  # creating a lead is not a status change
    one = f"/api/v1/leads/{lead['id']}"
    await api(world, "PATCH", one, 200, json={"title": "CTO"})
    assert seen == []  # nothing about the status changed
    lost = await api(world, "PATCH", one, 200, json={"status": "lost", "lost_reason": "no_budget"})
    assert lost["lost_at"] is not None and lost["status"] == "lost"
    assert len(seen) == 1
    event = seen[0]
    assert (event.person_id, event.old, event.new) == (lead["id"], "new", "lost")
    assert event.actor == "token:crm" and event.lost_reason == "no_budget"
    await api(world, "PATCH", one, 200, json={"status": "lost"})  # the same status again
    assert len(seen) == 1
    back = await api(world, "PATCH", one, 200, json={"status": "nurturing"})
    assert back["lost_at"] == lost["lost_at"]  # when it was lost stays known
    assert [(e.old, e.new) for e in seen] == [("new", "lost"), ("lost", "nurturing")]


async def test_a_refused_change_publishes_nothing(world: PanelWorld) -> None:
    seen = collect(world)
    await api(world, "POST", "/api/v1/leads", 201, json={"name": "Ana", "phone": "+34600000001"})
    eva = await api(
        world, "POST", "/api/v1/leads", 201, json={"name": "Eva", "phone": "+34600000002"}
    )
    # status and a number that belongs to Ana: the whole change is refused, no event
    err = await api(
        world, "PATCH", f"/api/v1/leads/{eva['id']}", 422,
        json={"status": "contacted", "phones": ["+34600000001"]},
    )  # fmt: skip
    assert err["error"]["details"]["field"] == "phones[0].number"
    assert seen == []
    assert (await api(world, "GET", f"/api/v1/leads/{eva['id']}", 200))["status"] == "new"


async def test_a_campaign_step_names_itself_and_rolled_back_writes_stay_silent(
    world: PanelWorld,
) -> None:
    seen = collect(world)
    db = world.gw.db
    assert db is not None
    people = PersonRepository(db)
    lead = (
        await people.create(PersonType.LEAD, {"name": "Leo", "email": "leo@example.com"})
    ).person
    await people.update(lead.id, {"status": "contacted"}, actor="campaign:7")
    assert [(e.new, e.actor) for e in seen] == [("contacted", "campaign:7")]
    # the same change inside an outer transaction that fails: no event for what never was
    with pytest.raises(RuntimeError):
        async with db.transaction():
            await people.update(lead.id, {"status": "won"}, actor="campaign:7")
            raise RuntimeError("the step failed after the change")
    assert len(seen) == 1
    assert (await people.get(lead.id)) is not None
    assert (await people.get(lead.id)).status == "contacted"  # type: ignore[union-attr]
    await people.update(lead.id, {"status": "won"})  # no request, no actor: the gateway
    assert seen[-1].actor == "system" and seen[-1].new == "won"


async def test_qualifying_and_converting_in_the_panel_publish_their_events(
    world: PanelWorld,
) -> None:
    seen = collect(world)
    s = await world.sign_in("ana")
    body = {"kind": "lead", "first_name": "Lucía", "company": "Acme", "phone": "+34911234567"}
    async with s.post(world.url("/panel/api/people"), json=body) as r:
        pid = int((await r.json())["person"]["id"])
    q = world.url(f"/panel/api/people/{pid}/qualification")
    async with s.put(q, json={"answers": ANSWERS}) as r:
        assert (await r.json())["status"] == "qualified"
    assert [(type(e), e.old, e.new, e.actor) for e in seen] == [
        (LeadStatusChanged, "new", "qualified", "user:ana")
    ]
    async with s.post(world.url(f"/panel/api/people/{pid}/convert"), json={"kind": "b2b"}) as r:
        assert r.status == 200, await r.text()
        done = await r.json()
    status, converted = seen[1:]
    assert (status.old, status.new) == ("qualified", None)  # a contact has no lead status
    assert isinstance(converted, LeadConverted)
    assert converted.person_id == pid and converted.actor == "user:ana"
    assert converted.account_id == done["account"]["id"]
    assert converted.deal_id == done["deal"]["id"]


async def test_tags_and_language_are_read_and_written_through_the_api(
    world: PanelWorld,
) -> None:
    body = {"name": "Noa", "email": "noa@example.com", "tags": ["vip", "feria-2024", "vip"],
            "language": "EN"}  # fmt: skip
    # the API takes the language in lower case only
    err = await api(world, "POST", "/api/v1/leads", 422, json=body)
    assert err["error"]["details"]["field"] == "language"
    body["language"] = "en"
    lead = await api(world, "POST", "/api/v1/leads", 201, json=body)
    assert lead["tags"] == ["feria-2024", "vip"] and lead["language"] == "en"
    one = f"/api/v1/leads/{lead['id']}"
    # a dedupe merge adds the new tags to the ones the person has
    again = {"name": "Noa", "email": "NOA@example.com", "tags": ["webinar"]}
    merged = await api(world, "POST", "/api/v1/leads", 200, json=again)
    assert merged["outcome"] == "updated" and merged["tags"] == ["feria-2024", "vip", "webinar"]
    # PATCH replaces the list, like phones and e-mails
    changed = await api(world, "PATCH", one, 200, json={"tags": ["cliente"], "language": ""})
    assert changed["tags"] == ["cliente"] and changed["language"] == ""
    detail = await api(world, "GET", one, 200)
    assert detail["tags"] == ["cliente"]
    err = await api(world, "PATCH", one, 422, json={"tags": ["ok", ""]})
    assert err["error"]["details"]["field"] == "tags[1]"
    err = await api(world, "PATCH", one, 422, json={"tags": ["x" * 61]})
    assert err["error"]["details"]["field"] == "tags[0]"
    page = await api(world, "GET", "/api/v1/leads", 200)
    assert page["items"][0]["tags"] == ["cliente"]


async def test_an_imported_lost_lead_knows_when_it_was_lost(world: PanelWorld) -> None:
    csv = "name,phone,status,lost_reason\nIris,+34600777888,lost,competitor\n"
    report = await api(world, "POST", "/api/v1/import", 200, json={"kind": "leads", "csv": csv})
    assert report["created"] == 1
    page = await api(world, "GET", "/api/v1/leads?status=lost", 200)
    (iris,) = page["items"]
    assert iris["lost_reason"] == "competitor" and iris["lost_at"] == iris["created_at"]
