"""The panel's call history finds people: numbers however they are typed, names instead of
carrier formats and extensions, and paging past the newest page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.store.calllog import CallLog
from gateway.store.models import PersonType
from tests.test_panel_support import open_world


@pytest.fixture
async def world(aiohttp_server: Any, tmp_path: Path) -> Any:
    gen = open_world(aiohttp_server, tmp_path)
    w = await gen.__anext__()
    log = CallLog(w.gw.db, "ES")
    await w.panel.people.create(
        PersonType.CONTACT, {"name": "Grace Hopper", "phones": ["+1 415 555 0132"]}
    )
    calls = [  # (id, caller as the carrier sends it, started_at)
        ("sim:1", "0014155550132", 1795346400.0),  # Grace, in the carrier's format
        ("sim:2", "+34601320000", 1795346500.0),  # has "0132" inside, not at the end
        ("sim:3", "911234567", 1795346600.0),
    ]
    for call_id, caller, at in calls:
        await log.save(
            {
                "id": call_id,
                "pbx": "sim",
                "linkedid": call_id[4:],
                "direction": "inbound",
                "outcome": "answered",
                "caller": caller,
                "caller_name": "CARRIER NAME",
                "did": "900100200",
                "answered_by": "101",
                "agents_answered": ["101"],
                "started_at": at,
            }
        )
    async with w.gw.db.transaction() as conn:
        await conn.executemany(
            "INSERT INTO call_users (call_id, username) VALUES (?, 'ana')",
            [(c[0],) for c in calls],
        )
    yield w
    await gen.aclose()


async def history(world: Any, session: Any, query: str) -> dict[str, Any]:
    async with session.get(world.url("/panel/api/calls?" + query)) as r:
        assert r.status == 200, await r.text()
        return await r.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "typed", ["4155550132", "%2B1%20(415)%20555-0132", "0132", "+14155550132", "001 415 555 0132"]
)
async def test_number_search_finds_formatted_numbers(world: Any, typed: str) -> None:
    ana = await world.sign_in("ana")
    page = await history(world, ana, "number=" + typed.replace("+", "%2B").replace(" ", "%20"))
    assert [c["id"] for c in page["items"]] == ["sim:1"]


async def test_items_carry_names_and_readable_numbers(world: Any) -> None:
    ana = await world.sign_in("ana")
    items = {c["id"]: c for c in (await history(world, ana, ""))["items"]}
    grace = items["sim:1"]
    assert grace["contact_name"] == "Grace Hopper"  # the store's person, not the carrier's
    assert grace["number_e164"] == "+14155550132"
    assert grace["number_display"] == "+1 415-555-0132"
    assert grace["agent_names"] == ["Ana García"] and grace["answered_by_name"] == "Ana García"
    assert items["sim:3"]["number_display"] == "911 23 45 67"  # a domestic number, national
    assert items["sim:3"]["contact_name"] == "CARRIER NAME"  # nobody known: the caller ID


async def test_history_pages_with_a_cursor(world: Any) -> None:
    ana = await world.sign_in("ana")
    first = await history(world, ana, "limit=2")
    assert [c["id"] for c in first["items"]] == ["sim:3", "sim:2"]
    assert first["next_cursor"]
    second = await history(world, ana, "limit=2&cursor=" + first["next_cursor"])
    assert [c["id"] for c in second["items"]] == ["sim:1"]
    assert second["next_cursor"] is None
    async with ana.get(world.url("/panel/api/calls?cursor=garbage")) as r:
        assert r.status == 400 and (await r.json())["error"]["id"] == "bad_cursor"


async def test_a_call_nobody_was_signed_in_for_names_the_phones_usual_agent(world: Any) -> None:
    await CallLog(world.gw.db, "ES").save(
        {
            "id": "sim:9", "pbx": "sim", "linkedid": "9", "direction": "inbound",
            "outcome": "noanswer", "caller": "911234567", "agents_rang": ["102"],
            "started_at": 1795346900.0,
        }
    )  # fmt: skip
    sofia = await world.sign_in("sofia")
    items = {c["id"]: c for c in (await history(world, sofia, ""))["items"]}
    assert items["sim:9"]["agent_names"] == ["Bruno Silva"]  # not "102"
