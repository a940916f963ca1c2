"""Click-to-call from the panel against the simulated PBX over real AMI: checks before the PBX,
rate limit, and the progress an agent sees."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.panel.settings import PanelSettings
from gateway.sim.pbx import Phone, SimulatedPbx
from gateway.store.models import PersonType
from tests.test_panel_support import open_world, receive_type, until


@pytest.fixture
async def world(aiohttp_server: Any, tmp_path: Path, pbx: SimulatedPbx) -> Any:
    settings = PanelSettings(originate_limit=2, originate_window=60)
    gen = open_world(aiohttp_server, tmp_path, pbx_port=pbx.port, settings=settings)
    w = await gen.__anext__()
    link = w.gw.links["sim"]
    up = asyncio.Event()
    for _ in range(500):
        if link.health().logged_in:
            up.set()
            break
        await asyncio.sleep(0.01)
    assert up.is_set(), "the AMI link did not log in to the simulated PBX"
    yield w
    await gen.aclose()


def originates(pbx: SimulatedPbx) -> list[dict[str, str]]:
    return [a for a in pbx.received_actions if a.get("Action") == "Originate"]


@pytest.mark.parametrize(
    "number",
    ["600111222&PJSIP/999", "600111222,20,tT", "600|1", "600;1", "SIP/600", "600\nAction: Hangup",
     "${SHELL(rm -rf /)}", "600(1)", "call me"],
)  # fmt: skip
async def test_injection_characters_never_reach_the_pbx(
    world: Any, pbx: SimulatedPbx, number: str
) -> None:
    ana = await world.sign_in("ana")
    async with ana.post(world.url("/panel/api/originate"), json={"number": number}) as r:
        assert r.status == 400
        err = (await r.json())["error"]
    assert err["id"] == "invalid_number" and err["message"].startswith("That number cannot")
    assert originates(pbx) == []


async def test_do_not_call_number_is_refused_with_a_clear_message(
    world: Any, pbx: SimulatedPbx
) -> None:
    await world.panel.people.create(
        PersonType.CONTACT, {"name": "Quiet Person", "phones": ["+34 600 000 001"]}
    )
    async with world.gw.db.transaction() as conn:
        await conn.execute("UPDATE phones SET do_not_call = 1 WHERE e164 = '+34600000001'")
    ana = await world.sign_in("ana")
    async with ana.post(world.url("/panel/api/originate"), json={"number": "600 000 001"}) as r:
        assert r.status == 403
        err = (await r.json())["error"]
    assert err["id"] == "do_not_call" and "do-not-call list" in err["message"]
    assert originates(pbx) == []


async def test_originations_are_rate_limited_per_agent(world: Any, pbx: SimulatedPbx) -> None:
    pbx.phones["101"] = Phone(answer="noanswer")
    ana = await world.sign_in("ana")
    bruno = await world.sign_in("bruno")
    for _ in range(2):
        async with ana.post(world.url("/panel/api/originate"), json={"number": "911234567"}) as r:
            assert r.status == 200
    async with ana.post(world.url("/panel/api/originate"), json={"number": "911234567"}) as r:
        assert r.status == 429
        wait = (await r.json())["error"]["details"]["retry_after"]
        assert wait > 0 and r.headers["Retry-After"] == str(wait)
    async with bruno.post(world.url("/panel/api/originate"), json={"number": "911234567"}) as r:
        assert r.status == 200  # another agent has a budget of their own


async def test_progress_from_calling_you_to_connected_to_ended(
    world: Any, pbx: SimulatedPbx
) -> None:
    pbx.phones["101"] = Phone(ring=1.0, answer=True)
    ana = await world.sign_in("ana")
    ws = await ana.ws_connect(world.url("/panel/ws"))
    async with ana.post(
        world.url("/panel/api/originate"), json={"number": "+34 911 23 45 67"}
    ) as r:
        started = await r.json()
    assert started["state"] == "calling_agent"
    states = [(await receive_type(ws, "clicktocall.progress"))["data"]["state"]]
    await until(lambda: originates(pbx), "the Originate to reach the PBX")
    await pbx.advance(1.2)
    states.append((await receive_type(ws, "clicktocall.progress"))["data"]["state"])
    (sent,) = originates(pbx)
    assert (sent["Channel"], sent["Context"], sent["Exten"]) == (
        "PJSIP/101", "outbound", "+34911234567"
    )  # fmt: skip
    assert sent["Variable"] == f"GATEWAY_CALL_ID={started['call_id']}"
    await pbx.advance(2.5)
    states.append((await receive_type(ws, "clicktocall.progress"))["data"]["state"])
    await pbx.advance(4)
    states.append((await receive_type(ws, "clicktocall.progress"))["data"]["state"])
    assert states == ["calling_agent", "calling_customer", "connected", "ended"]
    await world.gw._ended.join()
    await world.panel.flush()
    async with ana.get(world.url("/panel/api/calls")) as r:
        (call,) = (await r.json())["items"]
    assert call["click_to_call"] and call["number"] == "+34911234567"
    await ws.close()


@pytest.mark.parametrize(
    ("phone", "reason", "words"),
    [(Phone(answer="busy"), "agent_busy", "busy"),
     (Phone(answer="noanswer"), "agent_noanswer", "did not answer")],
)  # fmt: skip
async def test_agent_leg_failure_says_why(
    world: Any, pbx: SimulatedPbx, phone: Phone, reason: str, words: str
) -> None:
    pbx.phones["101"] = phone
    ana = await world.sign_in("ana")
    ws = await ana.ws_connect(world.url("/panel/ws"))
    async with ana.post(world.url("/panel/api/originate"), json={"number": "911234567"}) as r:
        assert r.status == 200
    await until(lambda: originates(pbx), "the Originate to reach the PBX")
    await pbx.advance(31)
    while True:
        progress = (await receive_type(ws, "clicktocall.progress"))["data"]
        if progress["state"] == "failed":
            break
    assert progress["reason"] == reason and words in progress["message"]
    await ws.close()


async def test_pbx_down_is_reported_before_dialing(world: Any, pbx: SimulatedPbx) -> None:
    await pbx.stop()  # Asterisk goes away
    link = world.gw.links["sim"]
    await until(lambda: not link.health().logged_in, "the link to notice the PBX is gone")
    ana = await world.sign_in("ana")
    async with ana.post(world.url("/panel/api/originate"), json={"number": "911234567"}) as r:
        assert r.status == 503
        err = (await r.json())["error"]
    assert err["id"] == "pbx_down" and "nothing was dialed" in err["message"]
