"""After-call work against the simulated PBX over real AMI: the agent is paused in the queues
while wrapping up, and back to available (unpaused) when the wrap-up is saved or time is up;
a pause chosen during a call waits, shown as pending, and applies when the call is over."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.panel.settings import PanelSettings
from gateway.sim.pbx import Phone, SimulatedPbx
from tests.test_panel_support import open_world, until


@pytest.fixture
async def world(aiohttp_server: Any, tmp_path: Path, pbx: SimulatedPbx) -> Any:
    gen = open_world(
        aiohttp_server, tmp_path, pbx_port=pbx.port, settings=PanelSettings(after_call_seconds=30)
    )
    w = await gen.__anext__()
    link = w.gw.links["sim"]
    await until(lambda: link.health().logged_in, "the AMI link to log in")
    yield w
    await gen.aclose()


def member(pbx: SimulatedPbx, ext: str) -> Any:
    return next(m for m in pbx.queues["sales"].members if m.extension == ext)


def pauses(pbx: SimulatedPbx, ext: str) -> list[tuple[str, str]]:
    return [
        (a["Paused"], a.get("Reason", ""))
        for a in pbx.received_actions
        if a.get("Action") == "QueuePause" and a.get("Interface") == f"PJSIP/{ext}"
    ]


async def presence(world: Any, session: Any) -> dict[str, Any]:
    async with session.get(world.url("/panel/api/state")) as r:
        return (await r.json())["presence"]  # type: ignore[no-any-return]


async def talk_and_hang_up(world: Any, pbx: SimulatedPbx) -> str:
    """A queue call answered by ana (101) that ends; returns its call id."""
    pbx.phones["101"] = Phone(ring=1.0, answer=True)
    pbx.phones["102"] = Phone(answer="noanswer")
    linkedid = pbx.start_call("queue", queue="sales", talk_seconds=5)
    key = f"sim:{linkedid}"
    for _ in range(4):
        await pbx.advance(1)
    await until(lambda: key in world.panel.board.agents["ana"].calls, "ana to answer")
    for _ in range(10):
        await pbx.advance(1)
    await until(lambda: key not in world.panel.board.calls, "the call to end")
    return key


async def test_after_call_work_pauses_the_queue_until_the_wrap_up_is_saved(
    world: Any, pbx: SimulatedPbx
) -> None:
    ana = await world.sign_in("ana")
    key = await talk_and_hang_up(world, pbx)
    await until(lambda: member(pbx, "101").paused, "101 to be paused in the queue")
    assert pauses(pbx, "101") == [("true", "after-call work")]
    state = await presence(world, ana)
    assert state["status"] == "after_call_work" and state["after_call_call"] == key
    assert state["until"] == pytest.approx(world.panel.clock() + 30, abs=5)
    async with ana.post(
        world.url(f"/panel/api/calls/{key}/wrapup"), json={"notes": "ok", "disposition": ""}
    ) as r:
        assert r.status == 200, await r.text()
    await until(lambda: not member(pbx, "101").paused, "101 to be unpaused")
    assert (await presence(world, ana))["status"] == "available"
    assert pauses(pbx, "101")[-1] == ("false", "")


async def test_after_call_work_ends_when_its_time_is_up(world: Any, pbx: SimulatedPbx) -> None:
    ana = await world.sign_in("ana")
    await talk_and_hang_up(world, pbx)
    await until(lambda: member(pbx, "101").paused, "101 to be paused in the queue")
    until_at = (await presence(world, ana))["until"]
    assert world.panel.aftercall.tick(until_at - 1) == []  # not yet
    assert world.panel.aftercall.tick(until_at) == ["ana"]
    await until(lambda: not member(pbx, "101").paused, "101 to be unpaused")
    assert (await presence(world, ana))["status"] == "available"


async def test_a_pause_chosen_during_a_call_is_pending_then_applied(
    world: Any, pbx: SimulatedPbx
) -> None:
    ana = await world.sign_in("ana")
    pbx.phones["101"] = Phone(ring=1.0, answer=True)
    pbx.phones["102"] = Phone(answer="noanswer")
    linkedid = pbx.start_call("queue", queue="sales", talk_seconds=5)
    key = f"sim:{linkedid}"
    for _ in range(4):
        await pbx.advance(1)
    await until(lambda: key in world.panel.board.agents["ana"].calls, "ana to answer")
    async with ana.post(
        world.url("/panel/api/presence"), json={"status": "paused", "reason": "lunch"}
    ) as r:
        body = await r.json()
    assert body["status"] == "on_call"
    assert body["pending"] == {"status": "paused", "reason": "lunch"}
    assert pauses(pbx, "101") == []  # nothing changes in the queue mid-call
    for _ in range(10):
        await pbx.advance(1)
    await until(lambda: key not in world.panel.board.calls, "the call to end")
    state = await presence(world, ana)
    assert state["status"] == "after_call_work" and state["pending"]["status"] == "paused"
    world.panel.aftercall.tick(state["until"])
    await until(lambda: len(pauses(pbx, "101")) == 2, "the pause to reach the PBX")
    state = await presence(world, ana)
    assert (state["status"], state["reason"], state["pending"]) == ("paused", "lunch", None)
    assert pauses(pbx, "101") == [("true", "after-call work"), ("true", "lunch")]
    assert member(pbx, "101").paused and member(pbx, "101").paused_reason == "lunch"


async def test_after_call_work_is_announced_on_the_socket(world: Any, pbx: SimulatedPbx) -> None:
    ana = await world.sign_in("ana")
    ws = await ana.ws_connect(world.url("/panel/ws"))
    key = await talk_and_hang_up(world, pbx)
    while True:
        msg = await ws.receive_json(timeout=5)
        if msg["type"] == "aftercall":
            break
    assert msg["data"]["state"] == "started" and msg["data"]["call_id"] == key
    assert msg["data"]["seconds"] == 30
    await ws.close()
    await asyncio.sleep(0)
