"""Today's wallboard figures survive a restart of the daemon: the real gateway on the simulated
PBX (manual clock), stopped and started again on the same store. Figures come from the call log
at start, live queue events continue from there, and no call is counted twice, not even one
that was in progress across the restart."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from gateway.app import Gateway, create_app
from gateway.config import StoreSettings
from gateway.panel.routes import PANEL
from gateway.panel.wallboard_feed import FEED
from gateway.sim.clock import ManualClock
from gateway.sim.pbx import Phone, SimulatedPbx
from gateway.store.calllog import CallLog
from gateway.store.db import Database
from tests.test_panel_support import FAST_HASHER, PASSWORD, USERS, PanelWorld, make_config, until

T0 = 1796028600.0  # 2026-11-30 09:50 in Madrid
MIDNIGHT = 1795993200.0  # 2026-11-30 00:00 in Madrid (23:00 UTC the day before)


def row(lid: str, outcome: str, started: float, wait: float, talk: float = 0.0, **kw: Any) -> dict:
    answered = outcome in ("answered", "transferred")
    return {
        "pbx": "sim",
        "linkedid": lid,
        "direction": "inbound",
        "caller": "+34911234567",
        "queue": "sales",
        "outcome": outcome,
        "started_at": started,
        "answered_at": started + wait if answered else None,
        "ended_at": started + wait + talk,
        "queue_wait_seconds": wait,
        "talk_seconds": talk,
        "answered_by": "101" if answered else None,
        "agents_rang": ["101", "102"],
        **kw,
    }


# the day so far as the call log has it, and what it must not count
TODAY = [
    row("t1", "answered", T0 - 3000, wait=8, talk=100),  # within 20 s
    row("t2", "answered", T0 - 2000, wait=35, talk=200, answered_by="102"),  # outside
    row("t3", "abandoned", T0 - 1500, wait=40),  # a real abandon
    row("t4", "abandoned", T0 - 1000, wait=3),  # hung up within 5 s: not in the service level
    row("t5", "transferred", T0 - 900, wait=10, talk=60),  # answered, then transferred
    row("t6", "answered", MIDNIGHT - 30, wait=45, talk=90),  # rang before midnight, answered after
]
NOT_TODAY = [
    row("y1", "answered", T0 - 86400, wait=2, talk=30),  # yesterday
    row("y2", "abandoned", MIDNIGHT - 600, wait=30),  # yesterday, before midnight
    row("n1", "noanswer", T0 - 800, wait=60),  # the queue gave up: neither answered nor abandoned
    row("d1", "answered", T0 - 700, wait=2, talk=50, queue=None),  # a direct call, no queue
]
FROM_THE_LOG = {
    "answered": 4,
    "answered_in_sl": 2,
    "abandoned": 2,
    "abandoned_short": 1,
    "service_level": 40.0,  # 2 within 20 s of 5 (4 answered + 1 real abandon)
    "average_speed_of_answer": 24.5,  # (8 + 35 + 10 + 45) / 4
    "average_handle_time": 112.5,  # (100 + 200 + 60 + 90) / 4, the queue gives no wrap-up
}
COUNTED = tuple(FROM_THE_LOG)


@pytest.fixture
async def pbx() -> AsyncIterator[SimulatedPbx]:
    sim = SimulatedPbx(clock=ManualClock(start=T0), flavour="pjsip")
    await sim.start()
    yield sim
    await sim.stop()


@contextlib.asynccontextmanager
async def daemon(tmp_path: Path, pbx: SimulatedPbx) -> AsyncIterator[PanelWorld]:
    """One run of the gateway on the store in ``tmp_path``; leaving the block stops it."""
    clock = pbx.clock
    assert isinstance(clock, ManualClock)
    gw = Gateway(make_config(tmp_path, pbx.port), clock=clock.now)
    app = await create_app(gw.cfg, gw)
    panel = app[PANEL]
    panel.users.hasher = FAST_HASHER
    for username, role, ext, name in USERS:
        if await panel.users.get(username) is None:
            await panel.users.add(username, PASSWORD, role, [ext], name)
    server = TestServer(app)
    await server.start_server()
    world = PanelWorld(gw, panel, server)
    try:
        await until(lambda: gw.links["sim"].health().logged_in, "the AMI link to log in")
        yield world
    finally:
        await world.close()
        await server.close()


async def sales(world: PanelWorld, boss: Any) -> dict[str, Any]:
    async with boss.get(world.url("/panel/api/wallboard")) as r:
        assert r.status == 200
        doc = await r.json()
    (queue,) = [q for q in doc["queues"] if q["queue"] == "sales"]
    return {k: queue[k] for k in COUNTED}


async def seed(tmp_path: Path) -> None:
    # the store the daemon's config names (make_config), on whichever engine the tests run
    db = await Database.open_configured(StoreSettings(path=str(tmp_path / "centralita.db")))
    try:
        for record in TODAY + NOT_TODAY:
            assert await CallLog(db).save(record)
    finally:
        await db.close()


async def queue_call(world: PanelWorld, pbx: SimulatedPbx, talk: float) -> str:
    """A queue call rung at 101 and 102, answered by 101 (ana); returns its call key."""
    pbx.phones["101"] = Phone(ring=1.0, answer=True)
    pbx.phones["102"] = Phone(answer="noanswer")
    key = "sim:" + pbx.start_call("queue", queue="sales", talk_seconds=talk)
    for _ in range(4):
        await pbx.advance(1)
    await until(lambda: key in world.panel.board.calls, "the call to reach the panel")
    await until(lambda: world.panel.board.calls[key].answered_by == "101", "101 to answer the call")
    return key


async def hang_up(world: PanelWorld, pbx: SimulatedPbx, key: str, seconds: int) -> None:
    for _ in range(seconds):
        await pbx.advance(1)
    await until(lambda: key not in world.panel.board.calls, "the call to end")
    call_log = world.gw.call_log
    assert call_log is not None
    for _ in range(500):  # the record is written by the call-log writer task
        if await call_log.get(key) is not None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{key} never reached the call log")


async def test_figures_survive_restarts_and_each_call_counts_once(
    tmp_path: Path, pbx: SimulatedPbx
) -> None:
    await seed(tmp_path)
    async with daemon(tmp_path, pbx) as first:
        boss = await first.sign_in("sofia")
        assert await sales(first, boss) == FROM_THE_LOG  # the day so far, from the log
        assert first.server.app[FEED].refilled == len(TODAY)

        # a live queue call adds exactly one answer, and its record (when it ends) nothing
        key = await queue_call(first, pbx, talk=5)
        live = await sales(first, boss)
        assert (live["answered"], live["abandoned"]) == (5, 2)
        assert live["answered_in_sl"] == 3  # it rang 101 for about a second
        await hang_up(first, pbx, key, 8)
        ended = await sales(first, boss)
        assert (ended["answered"], ended["answered_in_sl"], ended["abandoned"]) == (5, 3, 2)
        assert ended["service_level"] == 50.0  # 3 of 6
        # one more answered call, in progress when the daemon stops
        across = await queue_call(first, pbx, talk=30)
        assert (await sales(first, boss))["answered"] == 6

    async with daemon(tmp_path, pbx) as second:
        boss = await second.sign_in("sofia")
        # the finished call comes back from the log; the one still up is not in it yet
        assert await sales(second, boss) == ended
        tracker = second.gw.trackers["sim"]
        await until(lambda: tracker.open_calls == 1, "the call still up to be joined in progress")
        await hang_up(second, pbx, across, 40)
        after = await sales(second, boss)
        assert (after["answered"], after["answered_in_sl"], after["abandoned"]) == (6, 4, 2)

    async with daemon(tmp_path, pbx) as third:
        boss = await third.sign_in("sofia")
        assert await sales(third, boss) == after  # counted once, whoever counted it
