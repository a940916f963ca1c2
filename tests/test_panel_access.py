"""Panel sign-in, sessions, roles, history, wrap-up and recordings over real HTTP and SQLite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.panel.settings import PanelSettings
from gateway.store.models import PersonType
from tests.test_panel_support import (
    API_TOKEN,
    PASSWORD,
    answered,
    ended,
    open_world,
    receive_type,
    ringing,
)


@pytest.fixture
async def world(aiohttp_server: Any, tmp_path: Path) -> Any:
    gen = open_world(aiohttp_server, tmp_path, settings=PanelSettings(login_attempts=3))
    w = await gen.__anext__()
    yield w
    await gen.aclose()


async def finished_call(world: Any, linkedid: str, rang: list[str], by: str | None, **kw: Any):
    """A call as the tracker reports it, written to the call log and attributed."""
    world.gw.bus.publish(ringing(linkedid, tuple(rang)))
    if by:
        world.gw.bus.publish(answered(linkedid, by))
    world.gw.bus.publish(ended(linkedid, rang, by, **kw))
    await world.gw._ended.join()  # the gateway's call-log writer
    await world.panel.flush()


async def test_sign_in_sets_a_safe_session_cookie(world: Any) -> None:
    s = await world.browser()
    async with s.post(
        world.url("/panel/api/login"), json={"username": "ana", "password": PASSWORD}
    ) as r:
        assert r.status == 200
        cookie = r.headers["Set-Cookie"]
        me = (await r.json())["me"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert me["extensions"] == ["101"] and me["role"] == "agent"
    async with s.get(world.url("/panel/api/state")) as r:
        assert (await r.json())["me"]["username"] == "ana"
    async with s.post(world.url("/panel/api/logout"), json={}) as r:
        assert r.status == 200
    async with s.get(world.url("/panel/api/state")) as r:
        assert r.status == 401


async def test_hot_desk_extension_chosen_at_sign_in(world: Any) -> None:
    s = await world.sign_in("ana", extensions=["105"])
    async with s.get(world.url("/panel/api/state")) as r:
        assert (await r.json())["me"]["extensions"] == ["105"]
    bad = await world.browser()
    async with bad.post(
        world.url("/panel/api/login"),
        json={"username": "ana", "password": PASSWORD, "extensions": ["10;1"]},
    ) as r:
        assert r.status == 400


async def test_wrong_password_is_refused_then_rate_limited(world: Any) -> None:
    s = await world.browser()
    for _ in range(3):
        async with s.post(
            world.url("/panel/api/login"), json={"username": "ana", "password": "nope-nope"}
        ) as r:
            assert r.status == 401
    async with s.post(
        world.url("/panel/api/login"), json={"username": "ana", "password": PASSWORD}
    ) as r:
        assert r.status == 429  # even the right password waits now
        wait = (await r.json())["error"]["details"]["retry_after"]
        assert wait > 0 and r.headers["Retry-After"] == str(wait)
    # another user from the same address is not locked out by ana's failures
    async with s.post(
        world.url("/panel/api/login"), json={"username": "bruno", "password": PASSWORD}
    ) as r:
        assert r.status == 200


async def test_every_route_needs_a_session(world: Any) -> None:
    s = await world.browser()
    for path in ("/panel/api/state", "/panel/api/calls", "/panel/recordings/sim:1/0"):
        async with s.get(world.url(path)) as r:
            assert r.status == 401, path
    async with s.get(world.url("/panel/"), allow_redirects=False) as r:
        assert r.status == 302 and r.headers["Location"] == "/panel/login"


async def test_cross_site_post_is_refused(world: Any) -> None:
    s = await world.sign_in("ana")
    async with s.post(
        world.url("/panel/api/presence"),
        json={"status": "paused"},
        headers={"Origin": "https://evil.example"},
    ) as r:
        assert r.status == 403


async def test_agent_sees_only_own_calls_supervisor_sees_all(world: Any) -> None:
    ana = await world.sign_in("ana")
    bruno = await world.sign_in("bruno")
    sofia = await world.sign_in("sofia")
    await finished_call(world, "1.1", ["101"], "101")
    await finished_call(world, "1.2", ["102"], "102", caller="+34600111222")

    async def ids(s: Any, query: str = "") -> list[str]:
        async with s.get(world.url("/panel/api/calls" + query)) as r:
            assert r.status == 200
            return [c["id"] for c in (await r.json())["items"]]

    assert await ids(ana) == ["sim:1.1"]
    assert await ids(bruno) == ["sim:1.2"]
    assert sorted(await ids(sofia)) == ["sim:1.1", "sim:1.2"]
    assert await ids(sofia, "?number=600111") == ["sim:1.2"]
    assert await ids(sofia, "?agent=ana") == ["sim:1.1"]
    async with ana.get(world.url("/panel/api/calls/sim:1.2")) as r:
        assert r.status == 403
    # the same rule holds on the REST API for a signed-in agent; an API token sees all
    async with ana.get(world.url("/api/v1/calls")) as r:
        assert [c["id"] for c in (await r.json())["items"]] == ["sim:1.1"]
    async with ana.get(world.url("/api/v1/calls/sim:1.2")) as r:
        assert r.status == 404
    async with sofia.get(world.url("/api/v1/calls")) as r:
        assert len((await r.json())["items"]) == 2
    token = {"Authorization": f"Bearer {API_TOKEN}"}
    async with (
        aiohttp.ClientSession() as anonymous,
        anonymous.get(world.url("/api/v1/calls/sim:1.2"), headers=token) as r,
    ):
        assert r.status == 200
    async with ana.get(world.url("/panel/api/board")) as r:
        assert r.status == 403
    # agents edit the people they talk to but may not delete them or import in bulk
    person = await world.panel.people.create(PersonType.CONTACT, {"name": "Keep Me"})
    path = f"/api/v1/contacts/{person.person.id}"
    async with ana.delete(world.url(path)) as r:
        assert r.status == 403
        assert (await r.json())["error"]["details"]["role"] == "supervisor"
    async with ana.post(
        world.url("/api/v1/import"), json={"kind": "contacts", "csv": "name\nX\n"}
    ) as r:
        assert r.status == 403
    async with sofia.delete(world.url(path)) as r:
        assert r.status == 204
    async with sofia.get(world.url("/panel/api/board")) as r:
        agents = {a["username"]: a["status"] for a in (await r.json())["agents"]}
        assert agents["ana"] == "after_call_work"  # her answered call just ended: wrap-up time


async def test_missed_calls_list(world: Any) -> None:
    ana = await world.sign_in("ana")
    await finished_call(world, "2.1", ["101"], None, caller="+34600999888")
    await finished_call(world, "2.2", ["101"], "101")
    async with ana.get(world.url("/panel/api/calls?missed=1")) as r:
        items = (await r.json())["items"]
    assert [(c["id"], c["outcome"], c["number"]) for c in items] == [
        ("sim:2.1", "noanswer", "+34600999888")
    ]


async def test_ringing_pops_up_with_the_card_and_wrap_up_reaches_the_timeline(world: Any) -> None:
    people = world.panel.people
    person = (
        await people.create(
            PersonType.LEAD,
            {"first_name": "Lucía", "last_name": "Pérez", "company": "Acme",
             "phones": ["+34911234567"], "status": "qualified", "score": 7.5},
        )
    ).person  # fmt: skip
    ana = await world.sign_in("ana")
    ws = await ana.ws_connect(world.url("/panel/ws"))
    world.gw.bus.publish(ringing("3.1", ("101",), caller_name="<img src=x onerror=alert(1)>"))
    pop = await receive_type(ws, "call.ringing")
    assert pop["data"]["call"]["agents"] == ["ana"]
    assert pop["data"]["call"]["caller_name"] == "<img src=x onerror=alert(1)>"
    card = pop["data"]["card"]
    assert (card["display_name"], card["company"], card["lead_status"]) == (
        "Lucía Pérez", "Acme", "qualified"
    )  # fmt: skip
    world.gw.bus.publish(answered("3.1", "101"))
    assert (await receive_type(ws, "call.answered"))["data"]["call"]["answered_agent"] == "ana"
    world.gw.bus.publish(ended("3.1", ["101"], "101"))
    end = await receive_type(ws, "call.ended")
    assert end["data"]["wrapup"] == ["ana"] and end["data"]["call"]["outcome"] == "answered"
    await world.gw._ended.join()
    await world.panel.flush()
    async with ana.post(
        world.url("/panel/api/calls/sim:3.1/wrapup"),
        json={"notes": "Wants a quote", "disposition": "nonsense"},
    ) as r:
        assert r.status == 400
    async with ana.post(
        world.url("/panel/api/calls/sim:3.1/wrapup"),
        json={"notes": "Wants a quote", "disposition": "call_back", "follow_up_at": "2030-01-15"},
    ) as r:
        assert r.status == 200, await r.text()
        assert (await r.json())["follow_up"]["title"].startswith("Call back")
    async with ana.get(world.url("/panel/api/calls/sim:3.1")) as r:
        saved = await r.json()
    assert (saved["notes"], saved["disposition"]) == ("Wants a quote", "call_back")
    timeline = await world.panel.activities.for_person(person.id)
    note = next(a for a in timeline if a.kind == "note")
    assert note.body == "Wants a quote" and note.author == "ana"
    assert [t.title for t in await world.panel.follow_ups.open_for(person.id)] == [
        "Call back (Call back)"
    ]
    await ws.close()


async def test_other_agents_never_get_the_pop_up(world: Any) -> None:
    bruno = await world.sign_in("bruno")
    sofia = await world.sign_in("sofia")
    wb = await bruno.ws_connect(world.url("/panel/ws"))
    ws = await sofia.ws_connect(world.url("/panel/ws"))
    await world.sign_in("ana")
    world.gw.bus.publish(ringing("4.1", ("101",)))
    board = await receive_type(ws, "call.ringing")  # the supervisor's live board sees it
    assert board["data"]["call"]["agents"] == ["ana"]
    world.gw.bus.publish(ringing("4.2", ("102",)))
    own = await receive_type(wb, "call.ringing")
    assert own["data"]["call"]["linkedid"] == "4.2"  # bruno's first pop-up is his own call
    await wb.close()
    await ws.close()


async def test_recording_served_with_range_only_to_allowed_users(world: Any) -> None:
    rec_dir = Path(world.gw.cfg.recordings.directory)
    audio = bytes(range(256)) * 40
    (rec_dir / "in-5.1.wav").write_bytes(audio)
    secret = rec_dir.parent / "secret.wav"
    secret.write_bytes(b"not yours")
    ana = await world.sign_in("ana")
    bruno = await world.sign_in("bruno")
    sofia = await world.sign_in("sofia")
    await finished_call(world, "5.1", ["101"], "101", recordings=["in-5.1.wav"])
    await finished_call(
        world, "5.2", ["101"], "101", recordings=["../secret.wav", str(secret), "nope.wav"]
    )
    async with ana.get(
        world.url("/panel/recordings/sim:5.1/0"), headers={"Range": "bytes=100-199"}
    ) as r:
        assert r.status == 206
        assert r.headers["Content-Range"] == f"bytes 100-199/{len(audio)}"
        assert await r.read() == audio[100:200]
        assert r.headers["Content-Type"] == "audio/x-wav" or "wav" in r.headers["Content-Type"]
    async with sofia.get(world.url("/panel/recordings/sim:5.1/0")) as r:
        assert r.status == 200 and await r.read() == audio
    async with bruno.get(world.url("/panel/recordings/sim:5.1/0")) as r:
        assert r.status == 403
    for index in (0, 1, 2, 3):  # traversal, absolute path elsewhere, missing file, no such index
        async with ana.get(world.url(f"/panel/recordings/sim:5.2/{index}")) as r:
            assert r.status == 404, index
            assert b"not yours" not in await r.read()


async def test_presence_pause_reaches_supervisor(world: Any) -> None:
    sofia = await world.sign_in("sofia")
    ws = await sofia.ws_connect(world.url("/panel/ws"))
    ana = await world.sign_in("ana")
    async with ana.post(
        world.url("/panel/api/presence"), json={"status": "paused", "reason": "lunch"}
    ) as r:
        assert r.status == 200
        assert (await r.json())["status"] == "paused"
    while True:
        msg = await receive_type(ws, "presence")
        if msg["data"]["username"] == "ana" and msg["data"]["status"] == "paused":
            break
    assert msg["data"]["reason"] == "lunch"
    async with ana.post(world.url("/panel/api/presence"), json={"status": "asleep"}) as r:
        assert r.status == 400
    await ws.close()


async def test_pages_forbid_inline_script(world: Any) -> None:
    s = await world.browser()
    async with s.get(world.url("/panel/login")) as r:
        csp = r.headers["Content-Security-Policy"]
        html = await r.text()
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "<script>" not in html and "onclick=" not in html
    ana = await world.sign_in("ana")
    async with ana.get(world.url("/panel/")) as r:
        assert r.status == 200 and "script-src 'self'" in r.headers["Content-Security-Policy"]


async def test_unknown_caller_becomes_a_lead_in_one_click(world: Any) -> None:
    ana = await world.sign_in("ana")
    async with ana.get(world.url("/panel/api/lookup?number=%2B34600123123")) as r:
        card = (await r.json())["card"]
    assert (card["known"], card["country"]) == (False, "ES")
    async with ana.post(
        world.url("/panel/api/people"),
        json={"kind": "lead", "phone": "+34600123123", "first_name": "Marta", "company": "Solaris"},
    ) as r:
        assert r.status == 200, await r.text()
        person = (await r.json())["person"]
    assert (person["kind"], person["status"], person["owner"]) == ("lead", "new", "ana")
    async with ana.get(world.url("/panel/api/lookup?number=%2B34600123123")) as r:
        card = (await r.json())["card"]
    assert card["known"] and card["display_name"] == "Marta" and card["company"] == "Solaris"


async def test_follow_up_falling_due_is_announced_once(world: Any) -> None:
    person = (
        await world.panel.people.create(
            PersonType.LEAD, {"name": "Ida Due", "phones": ["+34600777888"]}
        )
    ).person
    await world.panel.follow_ups.add(
        person.id, world.panel.clock() - 60, "Send the contract", "ana"
    )
    await world.panel.follow_ups.add(person.id, world.panel.clock() + 86400, "Not yet", "ana")
    ana = await world.sign_in("ana")
    ws = await ana.ws_connect(world.url("/panel/ws"))
    assert await world.panel.announce_due_followups() == 1
    assert await world.panel.announce_due_followups() == 0
    due = await receive_type(ws, "followup.due")
    assert (due["data"]["title"], due["data"]["number"]) == ("Send the contract", "+34600777888")
    await ws.close()


async def test_the_card_shows_the_number_the_way_the_agent_reads_it(world: Any) -> None:
    ana = await world.sign_in("ana")
    for number, shown in (
        ("%2B34600123123", "600 12 31 23"),  # a Spanish number, for a Spanish desk: national
        ("%2B14155550132", "+1 415-555-0132"),  # a foreign one: international
    ):
        async with ana.get(world.url(f"/panel/api/lookup?number={number}")) as r:
            card = (await r.json())["card"]
        assert card["number_display"] == shown
        assert card["number"].startswith("+")  # what is dialled stays E.164
