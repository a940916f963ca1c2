"""Issue #10, findings 3 to 6, as a user or an attacker would meet them over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.errors import ApiError
from gateway.panel.ratelimit import SignInGuard
from gateway.store.models import PersonType
from tests.test_access_policy import open_access_world
from tests.test_panel_support import (
    API_TOKEN,
    PanelWorld,
    answered,
    ended,
    ringing,
)

TOKEN = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
async def world(aiohttp_server: Any, tmp_path: Path) -> AsyncIterator[PanelWorld]:
    w = await open_access_world(aiohttp_server, tmp_path)
    yield w
    await w.close()


async def protected_contact(world: PanelWorld) -> int:
    result = await world.panel.people.create(
        PersonType.CONTACT,
        {
            "name": "Marta Ruiz",
            "phone": "+34911234567",
            "email": "marta@example.com",
            "owner": "bruno",
            "do_not_call": True,
        },
    )
    return result.person.id


# -- finding 3: do-not-call and ownership ------------------------------------------------------


async def test_an_agent_can_neither_clear_do_not_call_nor_take_a_record(world: PanelWorld):
    pid = await protected_contact(world)
    ana = await world.sign_in("ana")
    path = world.url(f"/api/v1/contacts/{pid}")
    for change in ({"do_not_call": False}, {"owner": "ana"}, {"owner": None}):
        async with ana.patch(path, json=change) as r:
            assert r.status == 403, (change, await r.text())
            assert (await r.json())["error"]["id"] == "protected_field"
    # clearing the flag of the number itself, or dropping the flagged number, is the same thing
    await world.panel.people.update(
        pid, {"phones": [{"number": "+34911234567", "do_not_call": True}]}
    )
    for phones in ([{"number": "+34911234567"}], [{"number": "+34600999888"}]):
        async with ana.patch(path, json={"phones": phones}) as r:
            assert r.status == 403, phones
    person = await world.panel.people.get(pid)
    assert person is not None and person.do_not_call and person.owner == "bruno"
    assert [(p.e164, p.do_not_call) for p in person.phones] == [("+34911234567", True)]
    async with ana.get(world.url("/panel/api/lookup?number=%2B34911234567")) as r:
        assert (await r.json())["card"]["do_not_call"] is True  # click-to-call stays refused
    # but anyone may switch it on, and claim a record nobody owns
    async with ana.patch(path, json={"email_opt_out": True}) as r:
        assert r.status == 200 and (await r.json())["email_opt_out"] is True
    free = await world.panel.people.create(PersonType.LEAD, {"name": "Nadie"})
    async with ana.patch(world.url(f"/api/v1/leads/{free.person.id}"), json={"owner": "ana"}) as r:
        assert r.status == 200


async def test_a_supervisor_may_and_the_change_is_audited(world: PanelWorld) -> None:
    pid = await protected_contact(world)
    sofia = await world.sign_in("sofia")
    path = world.url(f"/api/v1/contacts/{pid}")
    async with sofia.patch(path, json={"do_not_call": False, "owner": "ana"}) as r:
        assert r.status == 200, await r.text()
        assert (await r.json())["do_not_call"] is False
    async with sofia.get(world.url(f"/api/v1/audit?record_id={pid}")) as r:
        assert r.status == 200
        items = (await r.json())["items"]
    got = sorted((i["field"], i["old"], i["new"], i["actor"]) for i in items)
    assert got == [
        ("do_not_call", True, False, "user:sofia"),
        ("owner", "bruno", "ana", "user:sofia"),
    ]
    assert all(i["at"] > 0 and i["record_kind"] == "contact" for i in items)
    ana = await world.sign_in("ana")
    async with ana.get(world.url("/api/v1/audit")) as r:
        assert r.status == 403


async def test_a_merge_by_an_agent_may_switch_on_but_not_reassign(world: PanelWorld) -> None:
    pid = await protected_contact(world)
    ana = await world.sign_in("ana")
    body = {"name": "Marta", "email": "MARTA@example.com", "email_opt_out": True}
    async with ana.post(world.url("/api/v1/contacts"), json=body) as r:
        assert r.status == 200 and (await r.json())["outcome"] == "updated"
    person = await world.panel.people.get(pid)
    assert person is not None and person.email_opt_out


def test_a_token_needs_crm_admin_to_clear_do_not_call() -> None:
    from gateway.access import Principal, Snapshot, check_changes

    writer = Principal("crm", "token", frozenset({"crm:write"}))
    admin = Principal("crm", "token", frozenset({"crm:admin"}))
    before, after = Snapshot(do_not_call=True), Snapshot(do_not_call=False)
    with pytest.raises(ApiError, match="only a supervisor"):
        check_changes(writer, before, after)
    assert [c.field for c in check_changes(admin, before, after)] == ["do_not_call"]


# -- finding 4: cross-site requests with the session cookie ------------------------------------


async def test_cross_site_requests_with_the_session_cookie_are_refused(world: PanelWorld):
    sofia = await world.sign_in("sofia")
    other_port = f"http://{world.server.host}:{world.server.port + 1}"
    # the cookie without the default Origin of world.browser(): the attacker's page decides
    bare = aiohttp.ClientSession(cookie_jar=sofia.cookie_jar)
    world.sessions.append(bare)
    leads = world.url("/api/v1/leads")
    attacks = [
        # <form enctype="text/plain" method="post"> on another port of the same host
        (leads, {"Origin": other_port, "Content-Type": "text/plain"}, '{"name": "x', 403),
        # fetch(url, {mode: "no-cors", body: csv}) from there
        (
            world.url("/api/v1/import?kind=leads"),
            {"Origin": other_port, "Content-Type": "text/plain"},
            "name,phone\nPwned,+34600111222\n",
            403,
        ),
        (leads, {"Content-Type": "application/json"}, '{"name": "no origin"}', 403),
        (leads, {"Origin": "null", "Content-Type": "application/json"}, '{"name": "n"}', 403),
        (leads, {"Referer": other_port + "/evil", "Content-Type": "application/json"}, "{}", 403),
        # right origin, but a body a cross-site form could have sent
        (leads, {"Origin": world.origin, "Content-Type": "text/plain"}, '{"name": "t"}', 415),
    ]
    for url, headers, data, status in attacks:
        async with bare.post(url, headers=headers, data=data) as r:
            assert r.status == status, (headers, await r.text())
            assert (await r.json())["error"]["id"] in ("cross_origin", "json_only")
    async with bare.get(leads) as r:  # reading needs no origin
        assert r.status == 200 and (await r.json())["items"] == []
    # the panel itself, and a CRM with a token, go on working
    ok = {"Origin": world.origin, "Content-Type": "application/json"}
    async with bare.post(leads, headers=ok, data='{"name": "Real"}') as r:
        assert r.status == 201
    async with bare.post(
        leads, headers={"Referer": world.origin + "/panel/"}, json={"name": "Also real"}
    ) as r:
        assert r.status == 201
    async with (
        aiohttp.ClientSession() as crm,
        crm.post(
            world.url("/api/v1/import?kind=leads"),
            headers={**TOKEN, "Content-Type": "text/csv"},
            data="name,phone\nFrom CRM,+34600111333\n",
        ) as r,
    ):
        assert r.status == 200, await r.text()


# -- finding 5: sign-in limits ------------------------------------------------------------------


async def test_spraying_names_from_an_address_does_not_lock_out_its_users(world: PanelWorld):
    ana = await world.sign_in("ana")  # ana signs in from this address every day
    async with ana.post(world.url("/panel/api/logout"), json={}) as r:
        assert r.status == 200
    attacker = await world.browser()
    refused = 0
    for i in range(40):
        body = {"username": f"guess{i}", "password": "password1"}
        async with attacker.post(world.url("/panel/api/login"), json=body) as r:
            assert r.status in (401, 429)
            refused += r.status == 429
    assert refused > 0  # the sprayer is slowed down...
    await world.sign_in("ana")  # ...ana is not


def test_each_limit_backs_off_exponentially_and_only_where_it_should() -> None:
    g = SignInGuard(attempts=5, window=300.0)
    g.succeeded("ana", "10.0.0.1", 0.0)  # ana's office
    for _ in range(12):  # someone elsewhere guesses ana's password
        g.failed("ana", "203.0.113.9", 10.0)
    assert g.wait("ana", "203.0.113.9", 10.0) > 0
    assert g.wait("ana", "10.0.0.1", 10.0) == 0  # ana at the office still gets in
    assert g.wait("ana", "198.51.100.7", 10.0) > 0  # a new address waits: the name is guessed
    # the pair's own limit: free failures, then 30 s, 60 s, 120 s ... at most 15 min
    h = SignInGuard(attempts=5, window=300.0)
    waits = []
    for _ in range(12):
        h.failed("bo", "10.0.0.2", 100.0)
        waits.append(h.pair.wait(("bo", "10.0.0.2"), 100.0))
    assert waits[:4] == [0, 0, 0, 0]
    assert waits[4:9] == [30.0, 60.0, 120.0, 240.0, 480.0]
    assert max(waits) == 900.0
    assert h.pair.wait(("bo", "10.0.0.2"), 100.0 + 900.0) == 0  # forgotten after the cap


# -- finding 6: private notes ------------------------------------------------------------------


async def test_an_agent_does_not_read_another_agents_call_notes(world: PanelWorld) -> None:
    pid = (
        await world.panel.people.create(
            PersonType.CONTACT, {"name": "Pepe", "phone": "+34911234567"}
        )
    ).person.id
    bruno = await world.sign_in("bruno")  # calls are attributed to who is signed in
    world.gw.bus.publish(ringing("1.1", ("102",)))
    world.gw.bus.publish(answered("1.1", "102"))
    world.gw.bus.publish(ended("1.1", ["102"], "102"))
    await world.gw._ended.join()
    await world.panel.flush()
    note = {"notes": "owes money to his brother", "disposition": "call_back"}
    async with bruno.post(world.url("/panel/api/calls/sim:1.1/wrapup"), json=note) as r:
        assert r.status == 200, await r.text()
    await world.panel.activities.add(pid, "note", "Prefers mornings", author="sofia")

    async def timeline(s: aiohttp.ClientSession, **kw: Any) -> list[str]:
        async with s.get(world.url(f"/api/v1/contacts/{pid}"), **kw) as r:
            assert r.status == 200
            return [a["body"] or a["summary"] for a in (await r.json())["activities"]]

    ana = await world.sign_in("ana")
    async with ana.get(world.url("/api/v1/calls/sim:1.1")) as r:
        assert r.status == 404  # the call is not hers...
    seen = await timeline(ana)
    assert "owes money to his brother" not in seen  # ...nor is its note
    assert "Prefers mornings" in seen and len(seen) == 2  # the call entry and the open note
    assert "owes money to his brother" in await timeline(bruno)
    assert "owes money to his brother" in await timeline(await world.sign_in("sofia"))
    async with aiohttp.ClientSession() as crm:
        assert "owes money to his brother" in await timeline(crm, headers=TOKEN)
    # the card pushed while the phone rings goes to whoever it rings for: no call notes on it
    async with ana.get(world.url("/panel/api/lookup?number=%2B34911234567")) as r:
        summaries = [i["summary"] for i in (await r.json())["card"]["interactions"]]
    assert summaries and not any(s.startswith("Call 1.1") for s in summaries)
