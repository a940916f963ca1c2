"""The agent's desk on a standby instance behaves as on the PBX's owner (#15): two gateways
on one real Redis and one real PostgreSQL store (Debian's servers), the simulated PBX over
real TCP; gw-a owns the PBX's AMI link, the agent's browser is on gw-b.

* After-call work is the owner's (its timer, its queue pause): a wrap-up saved on gw-b, or a
  presence chosen there during the wrap-up, ends it on gw-a at once (one unpause, never two;
  the tab told), and with no owner to tell the agent is warned rather than left paused.
* The state a tab loads from gw-b (``/panel/api/state``) is the one gw-a gives: the calls on
  hold, a supervisor listening in and the click-to-call in progress included."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import Gateway, create_app
from gateway.config import StoreSettings
from gateway.panel.aftercall import AFTER_CALL_REASON
from gateway.panel.sessions import COOKIE
from gateway.sim.pbx import SimulatedPbx
from gateway.sim.state import Phone
from tests.postgres_fixtures import PostgresServer
from tests.redis_fixtures import RedisServer, redis_server  # noqa: F401
from tests.test_cluster_clicktocall import Node, config, sent, sim  # noqa: F401
from tests.test_cluster_failover import LEASE, until

ACW_SECONDS = 30.0  # the panel's default after_call_seconds


@pytest.fixture
async def store_url(postgres_server: PostgresServer) -> AsyncIterator[str]:
    url = await postgres_server.fresh_database()
    yield url
    await postgres_server.drop(url)


class Cluster:
    """gw-a and gw-b on one Redis and one PostgreSQL store; stopped at the test's end."""

    def __init__(self, tmp_path: Path, pbx: SimulatedPbx, redis_url: str, store: str) -> None:
        self.tmp_path, self.sim, self.redis_url, self.store = tmp_path, pbx, redis_url, store
        self.started: list[TestClient[Any, Any]] = []

    async def start(self, name: str) -> Node:
        cfg = msgspec.structs.replace(
            config(self.tmp_path, name, self.sim.port, self.redis_url),
            store=StoreSettings(url=self.store),
        )
        gw = Gateway(cfg, clock=self.sim.clock.now)
        client = TestClient(TestServer(await create_app(cfg, gw)))
        await client.start_server()
        self.started.append(client)
        return Node(gw, client)

    async def pair(self) -> tuple[Node, Node]:
        """gw-a owning the PBX (logged in), gw-b standing by."""
        a = await self.start("gw-a")
        await until("gw-a to own the PBX and log in", lambda: a.linked)
        b = await self.start("gw-b")
        assert b.gw.cluster is not None
        lease = b.gw.cluster.owners["lab"]
        await until("gw-b to see gw-a's lease", lambda: lease.holder)
        return a, b


@pytest.fixture
async def cluster(
    tmp_path: Path,
    sim: SimulatedPbx,  # noqa: F811
    redis_server: RedisServer,  # noqa: F811
    store_url: str,
) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path, sim, redis_server.url, store_url)
    yield c
    for client in reversed(c.started):
        async with asyncio.timeout(15):
            await client.close()


async def get(node: Node, path: str, cookie: str) -> dict[str, Any]:
    resp = await node.client.get(path, cookies={COOKIE: cookie})
    assert resp.status == 200, await resp.text()
    doc: dict[str, Any] = await resp.json()
    return doc


async def ended(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    """The data of the tab's next ``aftercall`` message saying it ended (others skipped)."""
    while True:
        msg = json.loads((await ws.receive(timeout=5)).data)
        if msg["type"] == "aftercall" and msg["data"]["state"] == "ended":
            data: dict[str, Any] = msg["data"]
            return data


def pauses(pbx: SimulatedPbx) -> list[tuple[str, str]]:
    return [(p["Paused"], p.get("Reason", "")) for p in sent(pbx, "QueuePause")]


async def no_more_pauses(
    a: Node,
    b: Node,
    sim: SimulatedPbx,  # noqa: F811
    expected: list[tuple[str, str]],
) -> None:
    """The after-call work's time runs out: no timer of either instance fires, and the queue
    got ``expected`` and nothing more."""
    await sim.advance(ACW_SECONDS + 1)
    assert a.panel.aftercall.tick() == [] and b.panel.aftercall.tick() == []
    await asyncio.sleep(0.2)  # a further QueuePause would have reached the PBX by now
    assert pauses(sim) == expected


async def ana_wrapping_up_on_the_standby(
    cluster: Cluster,
    sim: SimulatedPbx,  # noqa: F811
) -> tuple[Node, Node, str, aiohttp.ClientWebSocketResponse, str]:
    """gw-a owns the PBX; ana is signed in on gw-b with a tab open there, and a call of hers
    has just ended: her after-call work runs on gw-a. Returns (a, b, her cookie, the tab,
    the call's id)."""
    a, b = await cluster.pair()
    ana = await b.sign_in("ana", ["101"])
    ws = await b.tab(ana)
    return a, b, ana, ws, await wrapping_up(a, b, sim, ana)


async def wrapping_up(a: Node, b: Node, sim: SimulatedPbx, cookie: str) -> str:  # noqa: F811
    """ana (extension 101, her tab on gw-b) answers a call and hangs up: she is in after-call
    work on gw-a (paused in the queue), which gw-b shows; the call is in the shared log."""
    board_a = a.panel.board  # her seat reaches gw-a through Redis
    await until("gw-a to seat ana at 101", lambda: board_a.agents_at(("101",)) == ["ana"])
    sim.phones["101"] = Phone(ring=1.0, answer=True)
    key = "lab:" + sim.start_call("inbound", agent="101", talk_seconds=3)
    for _ in range(6):
        await sim.advance(1)
    ana_on_a = board_a.agents["ana"]
    await until("gw-a to start ana's after-call work", lambda: ana_on_a.after_call_call == key)
    await until("the after-call pause", lambda: pauses(sim) == [("true", AFTER_CALL_REASON)])
    ana_on_b = b.panel.board.agents["ana"]
    await until("gw-b to show it", lambda: ana_on_b.to_json()["status"] == "after_call_work")

    async def logged() -> bool:
        resp = await b.client.get(f"/panel/api/calls/{key}", cookies={COOKIE: cookie})
        return resp.status == 200

    await until("the call in the shared log, as ana's", logged)
    return key


async def test_a_wrap_up_saved_on_the_standby_ends_the_owners_after_call_work_once(
    cluster: Cluster,
    sim: SimulatedPbx,  # noqa: F811
) -> None:
    a, b, ana, ws, key = await ana_wrapping_up_on_the_standby(cluster, sim)

    status, doc = await b.post(f"/panel/api/calls/{key}/wrapup", ana, {"notes": "done"})
    assert status == 200 and doc["pbx_warning"] == "", doc
    # at once on the owner: no timer left to run, the queue unpaused once
    assert a.panel.board.agents["ana"].after_call_until is None
    told = await ended(ws)
    assert (told["call_id"], told["reason"]) == (key, "wrapup")
    await until("the unpause", lambda: len(pauses(sim)) == 2)
    assert pauses(sim) == [("true", AFTER_CALL_REASON), ("false", "")]
    member = next(m for m in sim.queues["sales"].members if m.extension == "101")
    assert not member.paused
    # every instance shows her available again
    await until("gw-a's presence", lambda: a.panel.board.agents["ana"].presence == "available")
    await until("gw-b's presence", lambda: b.panel.board.agents["ana"].presence == "available")
    state = await get(b, "/panel/api/state", ana)
    assert state["presence"]["status"] == "available" and state["presence"]["until"] is None

    # saved again, and the wrap-up's time running out: nothing more reaches the queue
    status, doc = await b.post(f"/panel/api/calls/{key}/wrapup", ana, {"notes": "done."})
    assert status == 200 and doc["pbx_warning"] == "", doc
    await no_more_pauses(a, b, sim, [("true", AFTER_CALL_REASON), ("false", "")])
    await ws.close()


async def test_a_presence_chosen_on_the_standby_during_after_call_work_ends_it_on_the_owner(
    cluster: Cluster,
    sim: SimulatedPbx,  # noqa: F811
) -> None:
    a, b, ana, ws, key = await ana_wrapping_up_on_the_standby(cluster, sim)

    status, doc = await b.post("/panel/api/presence", ana, {"status": "paused", "reason": "lunch"})
    assert status == 200 and doc["pbx_warning"] == "", doc
    assert doc["status"] == "paused" and doc["reason"] == "lunch" and doc["until"] is None
    assert a.panel.board.agents["ana"].after_call_until is None
    told = await ended(ws)
    assert (told["call_id"], told["reason"], told["status"]) == (key, "presence", "paused")
    await until("the pause for lunch", lambda: len(pauses(sim)) == 2)
    assert pauses(sim) == [("true", AFTER_CALL_REASON), ("true", "lunch")]
    await until("gw-a's presence", lambda: a.panel.board.agents["ana"].presence == "paused")
    await no_more_pauses(a, b, sim, [("true", AFTER_CALL_REASON), ("true", "lunch")])
    await ws.close()


async def test_with_no_owner_to_end_it_the_saved_wrap_up_says_the_queues_were_not_told(
    cluster: Cluster,
    sim: SimulatedPbx,  # noqa: F811
) -> None:
    a, b, ana, ws, key = await ana_wrapping_up_on_the_standby(cluster, sim)
    await a.crash()  # its lease names it for a while yet; nobody listens for gw-a
    status, doc = await b.post(f"/panel/api/calls/{key}/wrapup", ana, {"notes": "done"})
    assert status == 200, doc  # the notes are kept: the wrap-up itself is in the store
    assert doc["pbx_warning"].startswith("Saved, but the phone system"), doc
    assert b.panel.relay is not None and b.panel.relay.health()["no_owner"] >= 1
    assert pauses(sim) == [("true", AFTER_CALL_REASON)]
    # gw-b, taking the PBX over, finds a pause for after-call work nobody counts: it goes
    await until("gw-b to take the PBX over", lambda: b.linked, within=LEASE + 5)
    await until("the unpause", lambda: pauses(sim)[-1:] == [("false", "")])
    assert len(pauses(sim)) == 2
    await ws.close()


async def test_a_tab_reloaded_on_the_standby_gets_the_owners_state(
    cluster: Cluster,
    sim: SimulatedPbx,  # noqa: F811
) -> None:
    a, b = await cluster.pair()
    ana = await b.sign_in("ana", ["101"])  # one session, good on both (one store)

    async def same_state() -> dict[str, Any]:
        on_a, on_b = await get(a, "/panel/api/state", ana), await get(b, "/panel/api/state", ana)
        assert on_b == on_a
        return on_b

    # a call on hold
    sim.phones["101"] = Phone(ring=1.0, answer=True)
    key = "lab:" + sim.start_call("inbound", agent="101", talk_seconds=60)
    for _ in range(3):
        await sim.advance(1)
    calls_b = b.panel.board
    await until("gw-b to show the call answered", lambda: _answered(calls_b, key))
    # a supervisor (on gw-b too) listening in: the owner's board marks it
    sofia = await b.sign_in("sofia", ["100"], role="supervisor")
    sim.phones["100"] = Phone(ring=1.0, answer=True)
    status, doc = await b.post("/panel/api/spy", sofia, {"agent": "ana", "mode": "whisper"})
    assert status == 200, doc
    state = await same_state()
    assert state["presence"]["spy"] == {"by": "sofia", "mode": "whisper"}

    status, doc = await b.post(f"/panel/api/calls/{key}/hold", ana)
    assert status == 200 and doc["held"] is True, doc
    state = await same_state()
    assert state["held"] == [key] and [c["call"]["id"] for c in state["calls"]] == [key]
    status, _ = await b.post(f"/panel/api/calls/{key}/hangup", ana)
    assert status == 200
    for _ in range(3):
        await sim.advance(1)
    await until("gw-b to see the call end", lambda: b.panel.board.call(key) is None)

    # a click-to-call ringing her phone
    sim.phones["101"] = Phone(ring=30.0, answer=True)
    status, started = await b.post("/panel/api/originate", ana, {"number": "+34 911 23 45 67"})
    assert status == 200, started
    await until("the Originate", lambda: sent(sim, "Originate"))
    await sim.advance(1)
    state = await same_state()
    (attempt,) = state["clicktocall"]
    assert attempt["call_id"] == started["call_id"] and attempt["number"] == "+34911234567"


def _answered(board: Any, key: str) -> bool:
    call = board.call(key)
    return call is not None and call.state == "answered"
