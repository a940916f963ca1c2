"""Click-to-call when the AMI link drops after the Originate left, against the simulated PBX
over real TCP: the attempt follows what the PBX actually did instead of claiming nothing was
dialed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.ami.events import LinkStatus
from gateway.sim.pbx import Phone, SimulatedPbx
from tests.test_panel_support import open_world, receive_type, until


@pytest.fixture
async def world(aiohttp_server: Any, tmp_path: Path, pbx: SimulatedPbx) -> AsyncIterator[Any]:
    gen = open_world(aiohttp_server, tmp_path, pbx_port=pbx.port)
    w = await gen.__anext__()
    link = w.gw.links["sim"]
    await until(lambda: link.health().logged_in, "the AMI link to log in to the simulated PBX")
    yield w
    await gen.aclose()


def originates(pbx: SimulatedPbx) -> list[dict[str, str]]:
    return [a for a in pbx.received_actions if a.get("Action") == "Originate"]


async def progress_until(ws: Any, states: set[str]) -> list[dict[str, Any]]:
    """Every progress message up to the first one in ``states``."""
    seen = []
    while True:
        data = (await receive_type(ws, "clicktocall.progress"))["data"]
        seen.append(data)
        if data["state"] in states:
            return seen


async def test_a_drop_while_the_agent_rings_is_followed_to_the_answered_call(
    world: Any, pbx: SimulatedPbx
) -> None:
    pbx.phones["101"] = Phone(ring=1.0, answer=True)
    link = world.gw.links["sim"]
    ana = await world.sign_in("ana")
    ws = await ana.ws_connect(world.url("/panel/ws"))
    async with ana.post(world.url("/panel/api/originate"), json={"number": "911234567"}) as r:
        call_id = (await r.json())["call_id"]
    await progress_until(ws, {"calling_agent"})
    await until(lambda: originates(pbx), "the Originate to reach the PBX")
    await pbx.advance(0.5)  # the agent's phone rings
    await until(lambda: world.gw.trackers["sim"].open_calls, "the tracker to see the call")
    pbx.drop_connections()  # a short AMI drop while the Originate waits for the agent
    checking = await progress_until(ws, {"calling_agent", "failed"})
    assert checking[-1]["state"] == "calling_agent", checking
    assert "checking" in checking[-1]["message"]
    await until(lambda: link.status is LinkStatus.READY, "the link to come back")
    resumed = await progress_until(ws, {"calling_agent", "calling_customer", "failed"})
    assert resumed[-1]["state"] != "failed", resumed
    await pbx.advance(3.5)  # the agent answers, the customer is dialed and answers
    after = await progress_until(ws, {"connected", "failed"})
    assert after[-1]["state"] == "connected", after
    await pbx.advance(4)
    assert (await progress_until(ws, {"ended", "failed"}))[-1]["state"] == "ended"
    await world.gw._ended.join()
    rows = await world.gw.db.conn.execute_fetchall(
        "SELECT outcome FROM calls WHERE call_id = ?", (call_id,)
    )
    assert [tuple(r) for r in rows] == [("answered",)]
    await ws.close()


async def test_a_drop_after_which_the_call_is_nowhere_says_so_without_claiming_nothing_rang(
    world: Any, pbx: SimulatedPbx
) -> None:
    pbx.phones["101"] = Phone(ring=1.0, answer=True)
    ana = await world.sign_in("ana")
    ws = await ana.ws_connect(world.url("/panel/ws"))
    async with ana.post(world.url("/panel/api/originate"), json={"number": "911234567"}) as r:
        call_id = (await r.json())["call_id"]
    await progress_until(ws, {"calling_agent"})
    await until(lambda: originates(pbx), "the Originate to reach the PBX")
    pbx.send_shutdown()  # Asterisk restarts under the Originate: the call is gone with it
    final = (await progress_until(ws, {"failed", "ended", "connected"}))[-1]
    assert final["state"] == "failed" and final["reason"] == "pbx_lost", final
    assert "nothing was dialed" not in final["message"]
    assert final["call_id"] == call_id
    await ws.close()
