"""What the server keeps for the desk across a reload and a restart of the gateway: the
wrap-ups an agent still owes (``GET /panel/api/state`` ``wrapups``), and a presence chosen
during a call (pending), which reaches the PBX's queues when the agent is free even if the
gateway restarted in between."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.ami.events import ResyncSnapshot
from gateway.panel import service as service_module
from gateway.panel.aftercall import AfterCallWork
from gateway.panel.board import Board
from gateway.panel.service import PanelService
from gateway.sim.pbx import Phone, SimulatedPbx
from tests.test_desk_aftercall import member, pauses, talk_and_hang_up
from tests.test_panel_support import answered, ended, open_world, ringing, until


@pytest.fixture
async def world(aiohttp_server: Any, tmp_path: Path, pbx: SimulatedPbx) -> Any:
    gen = open_world(aiohttp_server, tmp_path, pbx_port=pbx.port)
    w = await gen.__anext__()
    link = w.gw.links["sim"]
    await until(lambda: link.health().logged_in, "the AMI link to log in")
    yield w
    await gen.aclose()


async def state(session: Any, world: Any) -> dict[str, Any]:
    async with session.get(world.url("/panel/api/state")) as r:
        assert r.status == 200
        return await r.json()  # type: ignore[no-any-return]


async def rows(world: Any, username: str) -> list[str]:
    found = await world.gw.db.conn.execute_fetchall(
        "SELECT call_id FROM pending_wrapups WHERE username = ? ORDER BY ended_at, call_id",
        (username,),
    )
    return [r["call_id"] for r in found]


async def settle(world: Any, username: str, count: int) -> None:
    for _ in range(500):
        if len(await rows(world, username)) == count:
            return
        await world.panel.flush()
        await asyncio.sleep(0.01)
    assert len(await rows(world, username)) == count


def talk(world: Any, linkedid: str, ext: str = "101", end: bool = True) -> None:
    world.gw.bus.publish(ringing(linkedid, (ext,)))
    world.gw.bus.publish(answered(linkedid, ext))
    if end:
        world.gw.bus.publish(ended(linkedid, [ext], ext))


async def test_an_unsaved_wrap_up_is_served_until_it_is_saved(world: Any) -> None:
    ana = await world.sign_in("ana")
    bruno = await world.sign_in("bruno")
    talk(world, "w1")
    await settle(world, "ana", 1)
    for _ in range(200):  # the call ended before its lookup did: the card follows
        (item,) = (await state(ana, world))["wrapups"]
        if item["card"]:
            break
        await asyncio.sleep(0.01)
    assert item["call"]["id"] == "sim:w1"
    assert item["call"]["state"] == "ended" and item["call"]["wrapup"] == ["ana"]
    assert item["call"]["talk_seconds"] == 27.0
    assert item["card"]["number"] == "+34911234567"
    assert (await state(bruno, world))["wrapups"] == []  # only who talked owes it
    for _ in range(100):  # the call log row is written by its own task
        async with ana.post(
            world.url("/panel/api/calls/sim:w1/wrapup"), json={"disposition": "interested"}
        ) as r:
            if r.status != 404:
                break
        await asyncio.sleep(0.02)
    assert r.status == 200
    assert (await state(ana, world))["wrapups"] == []


async def test_an_agent_who_never_saves_keeps_only_the_newest(
    world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service_module, "PENDING_WRAPUPS_KEPT", 3)
    ana = await world.sign_in("ana")
    for i in range(5):
        talk(world, f"k{i}")
    await settle(world, "ana", 3)
    ids = [x["call"]["id"] for x in (await state(ana, world))["wrapups"]]
    assert ids == ["sim:k4", "sim:k3", "sim:k2"]


async def test_a_pause_chosen_on_a_call_reaches_the_queue_after_a_restart(
    world: Any, pbx: SimulatedPbx
) -> None:
    ana = await world.sign_in("ana")
    pbx.phones["101"] = Phone(ring=1.0, answer=True)
    key = "sim:" + pbx.start_call("inbound", agent="101", talk_seconds=30)
    for _ in range(3):
        await pbx.advance(1)
    await until(lambda: key in world.panel.board.agents["ana"].calls, "ana to answer")
    async with ana.post(
        world.url("/panel/api/presence"), json={"status": "paused", "reason": "Lunch"}
    ) as r:
        assert (await r.json())["pending"] == {"status": "paused", "reason": "Lunch"}

    async def stored() -> int:
        found = await world.gw.db.conn.execute_fetchall(
            "SELECT pending FROM agent_presence WHERE username = 'ana'"
        )
        return int(found[0]["pending"])

    for _ in range(200):
        if await stored():
            break
        await asyncio.sleep(0.01)
    assert await stored() == 1

    await world.panel.stop()  # the gateway goes down; the call ends meanwhile
    for _ in range(40):
        await pbx.advance(1)
    pauses_before = [a for a in pbx.received_actions if a.get("Action") == "QueuePause"]
    assert pauses_before == []  # the pause never reached the PBX

    again = PanelService.from_gateway(world.gw)  # the restarted gateway's panel
    await again.start()
    try:
        agent = again.board.agents["ana"]
        assert (agent.status, agent.reason, agent.pending) == ("paused", "Lunch", True)
        # the PBX's live picture after the link comes back: ana's call is gone
        world.gw.bus.publish(ResyncSnapshot("sim", pbx.clock.now(), []))
        await until(
            lambda: [a for a in pbx.received_actions if a.get("Action") == "QueuePause"],
            "the pause to reach the PBX",
        )
        (pause,) = [a for a in pbx.received_actions if a.get("Action") == "QueuePause"]
        assert (pause["Interface"], pause["Paused"], pause["Reason"]) == (
            "PJSIP/101", "true", "Lunch"
        )  # fmt: skip
        assert agent.to_json()["status"] == "paused" and agent.to_json()["pending"] is None
        for _ in range(200):
            if not await stored():
                break
            await asyncio.sleep(0.01)
        assert await stored() == 0
    finally:
        await again.stop()


def test_a_restored_choice_waits_while_the_call_goes_on() -> None:
    board = Board()
    board.sign_in("ana", "Ana", "agent", ("101",))
    board.set_status("ana", "paused", "Lunch")
    sent: list[tuple[tuple[str, ...], bool, str]] = []

    async def queue_pause(exts: tuple[str, ...], paused: bool, reason: str) -> str:
        sent.append((exts, paused, reason))
        return ""

    def spawn(coro: Any, name: str) -> None:
        coro.close()
        sent.append((("spawned",), True, name))

    acw = AfterCallWork(board, 0, lambda: 0.0, queue_pause, lambda *a: None, lambda u: None, spawn)
    agent = board.agents["ana"]
    agent.pending = True
    agent.calls.add("sim:1")  # the resync brought the call back: its end decides
    assert acw.apply_restored("ana") is False and agent.pending and sent == []
    agent.calls.clear()
    assert acw.apply_restored("ana") is True
    assert agent.pending is False and len(sent) == 1


async def _acw_row(world: Any) -> tuple[float | None, str | None]:
    found = await world.gw.db.conn.execute_fetchall(
        "SELECT after_call_until, after_call_call FROM agent_presence WHERE username = 'ana'"
    )
    return (found[0][0], found[0][1]) if found else (None, None)


async def _stored_acw(world: Any, present: bool) -> tuple[float | None, str | None]:
    for _ in range(300):
        row = await _acw_row(world)
        if (row[0] is not None) == present:
            return row
        await asyncio.sleep(0.01)
    raise AssertionError(f"after-call work {'not ' if present else ''}stored: {row}")


async def test_after_call_work_survives_a_restart_and_unpauses_the_queue_on_time(
    world: Any, pbx: SimulatedPbx
) -> None:
    await world.sign_in("ana")
    key = await talk_and_hang_up(world, pbx)
    await until(lambda: member(pbx, "101").paused, "101 to be paused for after-call work")
    until_at, call = await _stored_acw(world, present=True)
    assert call == key and until_at == world.panel.board.agents["ana"].after_call_until

    await world.panel.stop()  # the gateway goes down while ana wraps up
    again = PanelService.from_gateway(world.gw)
    await again.start()
    try:
        agent = again.board.agents["ana"]
        assert agent.to_json()["status"] == "after_call_work"
        assert (agent.after_call_until, agent.after_call_call) == (until_at, key)
        assert again.aftercall.tick(until_at - 1) == []
        assert again.aftercall.tick(until_at) == ["ana"]
        await until(lambda: not member(pbx, "101").paused, "101 to be unpaused")
        assert pauses(pbx, "101") == [("true", "after-call work"), ("false", "")]
        assert await _stored_acw(world, present=False) == (None, None)
    finally:
        await again.stop()


async def test_a_stale_after_call_pause_is_lifted_at_the_next_resync(
    world: Any, pbx: SimulatedPbx
) -> None:
    """The PBX still holds an after-call pause the gateway no longer counts (its end could
    not reach the PBX while the link was down): the resync after the reconnect lifts it, and
    leaves a pause made by hand on another member alone."""
    await world.sign_in("ana")
    await world.sign_in("bruno")
    ana, bruno = member(pbx, "101"), member(pbx, "102")
    ana.paused, ana.paused_reason = True, "after-call work"
    bruno.paused, bruno.paused_reason = True, "Supervisor"
    assert world.panel.board.agents["ana"].after_call_until is None
    link = world.gw.links["sim"]
    pbx.drop_connections()
    await until(lambda: not link.health().logged_in, "the link to notice the drop")
    await until(lambda: link.health().logged_in, "the link to come back")
    await until(lambda: not ana.paused, "101's stale pause to be lifted")
    assert pauses(pbx, "101") == [("false", "")]
    assert bruno.paused and pauses(pbx, "102") == []


async def test_after_call_work_the_pbx_lost_is_paused_again_at_the_resync(
    world: Any, pbx: SimulatedPbx
) -> None:
    """The PBX restarted and came back with ana unpaused while she still wraps up."""
    await world.sign_in("ana")
    await talk_and_hang_up(world, pbx)
    await until(lambda: member(pbx, "101").paused, "101 to be paused for after-call work")
    member(pbx, "101").paused = False
    link = world.gw.links["sim"]
    pbx.drop_connections()
    await until(lambda: not link.health().logged_in, "the link to notice the drop")
    await until(lambda: link.health().logged_in, "the link to come back")
    await until(lambda: member(pbx, "101").paused, "101 to be paused again")
    assert pauses(pbx, "101") == [("true", "after-call work")] * 2
    assert member(pbx, "101").paused_reason == "after-call work"
