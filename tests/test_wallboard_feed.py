"""GET /panel/api/wallboard and the ``wallboard`` push, on the real app with the bus."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.ami.events import AmiEvent
from gateway.panel.wallboard_feed import FEED
from tests.test_panel_support import open_world, receive_type


def _earlier_today(tz: str = "Europe/Madrid") -> float:
    """A moment of today in the panel's time zone, before now: the app runs on the real clock
    and its wallboard counts today's calls only (a fixed date passes at midnight)."""
    now = time.time()
    midnight = datetime.fromtimestamp(now, ZoneInfo(tz)).replace(hour=0, minute=0, second=0)
    return float(int(max(midnight.timestamp() + 1, now - 600)))


T0 = _earlier_today()


@pytest.fixture
async def world(aiohttp_server: Any, tmp_path: Path) -> Any:
    gen = open_world(aiohttp_server, tmp_path)
    w = await gen.__anext__()
    yield w
    await gen.aclose()


def ami(world: Any, at: float, **frame: str) -> None:
    world.gw.bus.publish(AmiEvent("sim", {**frame, "Timestamp": f"{at:.6f}"}, at))


async def test_supervisor_sees_queues_and_every_agent_by_name(world: Any) -> None:
    agent = await world.sign_in("ana")
    boss = await world.sign_in("sofia")
    async with agent.get(world.url("/panel/api/wallboard")) as r:
        assert r.status == 403
    for ext in ("101", "102"):  # bruno (102) is a queue member but not signed in
        ami(
            world,
            T0,
            Event="QueueMemberStatus",
            Queue="sales",
            MemberName=f"Agent {ext}",
            Interface=f"PJSIP/{ext}",
            Status="1",
            Paused="0",
        )
    ami(world, T0 + 1, Event="QueueCallerJoin", Queue="sales", Uniqueid="u1")
    ami(
        world,
        T0 + 2,
        Event="AgentCalled",
        Queue="sales",
        Uniqueid="u1",
        Interface="PJSIP/101",
        MemberName="Agent 101",
    )
    ami(world, T0 + 4, Event="QueueCallerLeave", Queue="sales", Uniqueid="u1")
    ami(
        world,
        T0 + 4,
        Event="AgentConnect",
        Queue="sales",
        Uniqueid="u1",
        Interface="PJSIP/101",
        MemberName="Agent 101",
        HoldTime="3",
    )
    async with boss.get(world.url("/panel/api/wallboard")) as r:
        assert r.status == 200
        doc = await r.json()
    [sales] = doc["queues"]
    assert (sales["queue"], sales["answered"], sales["service_level"]) == ("sales", 1, 100.0)
    assert sales["average_speed_of_answer"] == 3.0
    by_name = {a["display_name"]: a for a in doc["agents"]}
    assert set(by_name) == {"Ana García", "Bruno Silva", "Sofía Martín"}  # names, not 101
    ana, bruno, sofia = by_name["Ana García"], by_name["Bruno Silva"], by_name["Sofía Martín"]
    assert (ana["username"], ana["state"], ana["since"]) == ("ana", "on_call", T0 + 4)
    assert ana["signed_in"] and ana["member"] and ana["queues"] == ["sales"]
    assert (bruno["state"], bruno["signed_in"], bruno["extensions"]) == (
        "available",
        False,
        ["102"],
    )
    assert (sofia["member"], sofia["state"]) == (False, "available")


async def test_wallboard_is_pushed_to_supervisors_only_when_it_changes(world: Any) -> None:
    boss = await world.sign_in("sofia")
    feed = world.server.app[FEED]
    await feed.stop()  # the once-a-second loop; this test pushes by hand
    feed.attach()
    async with boss.ws_connect(world.url("/panel/ws")) as ws:
        msg = await receive_type(ws, "wallboard")  # a tab that connects gets the board now
        assert msg["data"]["queues"] == []
        ami(world, T0, Event="QueueCallerJoin", Queue="sales", Uniqueid="u1")
        assert feed.push() is True
        msg = await receive_type(ws, "wallboard")
        assert msg["data"]["queues"][0]["waiting"] == 1
        assert feed.push() is False  # nothing new: nothing sent
        ami(world, T0 + 9, Event="QueueCallerAbandon", Queue="sales", Uniqueid="u1", HoldTime="9")
        assert feed.push() is True
        msg = await receive_type(ws, "wallboard")
        assert (msg["data"]["queues"][0]["waiting"], msg["data"]["queues"][0]["abandoned"]) == (
            0,
            1,
        )


async def test_calls_in_progress_name_their_agents_and_read_their_numbers(world: Any) -> None:
    from tests.test_panel_support import answered, ringing

    boss = await world.sign_in("sofia")
    world.gw.bus.publish(ringing("c1", ("102",), caller="+14155550132"))
    world.gw.bus.publish(ringing("c2", ("101",), caller="+34911234567"))
    world.gw.bus.publish(answered("c2", "101"))
    async with boss.get(world.url("/panel/api/wallboard")) as r:
        calls = {c["linkedid"]: c for c in (await r.json())["calls"]}
    assert (calls["c1"]["agent_names"], calls["c1"]["number_display"]) == (
        ["Bruno Silva"],  # ringing at 102, nobody signed in there: its usual agent
        "+1 415-555-0132",
    )
    assert (calls["c2"]["agent_names"], calls["c2"]["number_display"]) == (
        ["Ana García"],
        "911 23 45 67",  # a Spanish number on a Spanish wall: national
    )


def test_the_daemon_lets_through_every_event_the_wallboard_reads(tmp_path: Path) -> None:
    # the AMI link drops what nobody reads before parsing it; the tracker does not read queue
    # member states, so without this the live wallboard never saw an agent pause or log off
    from gateway.app import Gateway
    from gateway.panel import wallboard as wb
    from tests.test_app import _config

    gw = Gateway(_config(tmp_path, 5038))
    keep = gw.links["lab"].event_filter
    assert keep is not None
    for name in sorted(wb.EVENTS):
        raw = f"Event: {name}\r\nPrivilege: agent,all\r\nQueue: sales\r\n\r\n".encode()
        assert not keep.drops(raw, 0, len(raw)), name


async def test_wallboard_updates_do_not_push_a_supervisors_pop_up_out_of_the_replay(
    world: Any,
) -> None:
    import json

    from tests.test_panel_support import ringing

    boss = await world.sign_in("sofia")  # a supervisor who also takes calls, at 100
    feed = world.server.app[FEED]
    await feed.stop()  # the once-a-second loop; this test pushes by hand
    feed.attach()
    async with boss.ws_connect(world.url("/panel/ws")) as ws:
        hello = await receive_type(ws, "hello")
        await receive_type(ws, "wallboard")
    seen, epoch = hello["seq"], hello["data"]["epoch"]
    # away for a while: a call rings her phone, then a busy queue moves the board 300 times
    world.gw.bus.publish(ringing("c1", ("100",)))
    for i in range(300):
        ami(world, T0 + i, Event="QueueCallerJoin", Queue="sales", Uniqueid=f"u{i}")
        assert feed.push() is True
    assert feed.pushes == 300
    async with boss.ws_connect(world.url(f"/panel/ws?since={seen}&epoch={epoch}")) as ws:
        types = []
        while not types or types[-1] != "wallboard":
            msg = json.loads((await ws.receive(timeout=5)).data)
            types.append(msg["type"])
            if msg["type"] == "call.ringing":
                assert msg["data"]["call"]["linkedid"] == "c1"
                assert msg["seq"] == seen + 1  # replayed: the pop-up was the only message kept
            if msg["type"] == "wallboard":
                assert "seq" not in msg  # the latest state, not an event in the sequence
                assert msg["data"]["queues"][0]["waiting"] == 300  # fresh, not a stale one
    # no "refresh" (the gap is fully buffered), no burst of stale boards: one, up to date
    assert types == ["hello", "call.ringing", "wallboard"]


async def test_the_panels_after_call_pause_shows_as_wrapping_up_not_as_a_break(
    world: Any,
) -> None:
    boss = await world.sign_in("sofia")
    for ext, reason in (("101", "after-call work"), ("102", "Break")):
        ami(world, T0, Event="QueueMemberStatus", Queue="sales", MemberName=f"Agent {ext}",
            Interface=f"PJSIP/{ext}", Status="1", Paused="1", PausedReason=reason)  # fmt: skip
    async with boss.get(world.url("/panel/api/wallboard")) as r:
        agents = {a["username"]: a for a in (await r.json())["agents"]}
    assert (agents["ana"]["state"], agents["ana"]["reason"]) == ("after_call_work", "")
    assert (agents["bruno"]["state"], agents["bruno"]["reason"]) == ("paused", "Break")
