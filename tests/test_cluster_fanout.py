"""Pop-ups across instances: two AgentHubs, each with its RedisFanout, on one real Redis
(Debian's redis-server): a message published on one reaches the tabs held by the other, in
order and numbered without gaps; a tab that moves to the other instance gets exactly what it
missed; Redis going away degrades delivery to the local tabs, never crashes, and heals."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import Gateway, create_app
from gateway.cluster.fanout import RedisFanout
from gateway.cluster.settings import ClusterSettings
from gateway.panel.routes import PANEL
from gateway.panel.sessions import COOKIE
from gateway.push.hub import AgentHub
from gateway.push.messages import CALL_RINGING, encode
from gateway.sim.pbx import SimulatedPbx
from tests.redis_fixtures import RedisServer, redis_server  # noqa: F401
from tests.test_cluster_failover import config as failover_config
from tests.test_panel_support import FAST_HASHER, PASSWORD


async def _by_header(request: web.Request) -> str | None:
    return request.headers.get("X-Test-Agent")


class Node:
    """One instance: a hub publishing through Redis, and its websocket route."""

    def __init__(self, hub: AgentHub, fanout: RedisFanout, client: TestClient) -> None:
        self.hub, self.fanout, self.client = hub, fanout, client

    async def connect(self, agent: str = "ana", query: str = "") -> aiohttp.ClientWebSocketResponse:
        origin = f"http://{self.client.host}:{self.client.port}"
        return await self.client.ws_connect(
            "/panel/ws" + query, headers={"Origin": origin, "X-Test-Agent": agent}
        )


@pytest.fixture
async def nodes(
    redis_server: RedisServer,  # noqa: F811
) -> AsyncIterator[Callable[..., Any]]:
    made: list[Node] = []

    async def make(name: str, buffer_size: int = 256) -> Node:
        settings = ClusterSettings(
            redis_url=redis_server.url, instance=name, lease_seconds=3, renew_seconds=0.5
        )
        fanout = RedisFanout(settings, buffer_size=buffer_size, retry_seconds=0.1)
        hub = AgentHub(_by_header, buffer_size=buffer_size, fanout=fanout)
        fanout.bind(hub)
        app = web.Application()
        app.router.add_get("/panel/ws", hub.handle)
        client = TestClient(TestServer(app))
        await client.start_server()
        await fanout.start()
        node = Node(hub, fanout, client)
        made.append(node)
        return node

    yield make
    for node in made:
        await node.hub.close()
        await node.client.close()
        await node.fanout.close()


async def receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await ws.receive(timeout=5)
    assert msg.type is WSMsgType.TEXT, msg
    return json.loads(msg.data)


async def until(what: str, condition: Callable[[], Any], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {within}s waiting for {what}"
        await asyncio.sleep(0.01)


def ring(n: int) -> Any:
    return encode(CALL_RINGING, {"linkedid": f"call-{n}"})


async def test_a_message_published_on_one_instance_reaches_a_tab_on_the_other(
    nodes: Callable[..., Any],
) -> None:
    a: Node = await nodes("gw-a")
    b: Node = await nodes("gw-b")
    assert a.hub.epoch == b.hub.epoch  # one epoch for the cluster
    ws = await b.connect("ana")
    hello = await receive(ws)
    assert hello["type"] == "hello" and hello["data"]["epoch"] == b.hub.epoch
    for n in range(1, 21):
        a.hub.publish(["ana", "bruno"], ring(n))
    got = [await receive(ws) for _ in range(20)]
    assert [m["seq"] for m in got] == list(range(1, 21))
    assert [m["data"]["linkedid"] for m in got] == [f"call-{n}" for n in range(1, 21)]
    # every instance knows every agent's number, for the state a tab loads over HTTP
    await until("gw-a to hear its own batch", lambda: a.hub.last_seq("bruno") == 20)
    assert b.hub.last_seq("ana") == b.hub.last_seq("bruno") == 20
    # the wallboard's kind: unnumbered, not kept, delivered all the same
    a.hub.publish(["ana"], encode("wallboard", {"n": 1}), replay=False)
    board = await receive(ws)
    assert board["type"] == "wallboard" and "seq" not in board
    a.hub.publish(["ana"], ring(21))
    assert (await receive(ws))["seq"] == 21
    assert a.fanout.health()["redis_ok"] and a.fanout.health()["published"] == 42
    await ws.close()


async def test_a_tab_that_moves_to_the_other_instance_gets_exactly_what_it_missed(
    nodes: Callable[..., Any],
) -> None:
    a: Node = await nodes("gw-a", buffer_size=8)
    b: Node = await nodes("gw-b", buffer_size=8)
    ws = await a.connect("ana")
    epoch = (await receive(ws))["data"]["epoch"]
    a.hub.publish(["ana"], ring(1))
    a.hub.publish(["ana"], ring(2))
    assert [(await receive(ws))["seq"] for _ in range(2)] == [1, 2]
    await ws.close()
    for n in range(3, 7):  # published on A while the tab is away
        a.hub.publish(["ana"], ring(n))
    await until("B to hear them", lambda: b.hub.last_seq("ana") == 6)

    ws = await b.connect("ana", f"?since=2&epoch={epoch}")
    hello = await receive(ws)
    assert hello["type"] == "hello" and hello["seq"] == 6 and hello["data"]["epoch"] == epoch
    missed = [await receive(ws) for _ in range(4)]
    assert [(m["seq"], m["data"]["linkedid"]) for m in missed] == [
        (n, f"call-{n}") for n in range(3, 7)
    ]
    a.hub.publish(["ana"], ring(7))  # and live messages follow, no gap, no repeat
    assert (await receive(ws))["seq"] == 7
    await ws.close()

    # a gap older than the buffer (8 messages) gets a refresh; so does another epoch
    for n in range(8, 30):
        a.hub.publish(["ana"], ring(n))
    await until("B to hear them", lambda: b.hub.last_seq("ana") == 29)
    ws = await b.connect("ana", f"?since=7&epoch={epoch}")
    assert (await receive(ws))["type"] == "hello"
    refresh = await receive(ws)
    assert refresh["type"] == "refresh" and refresh["data"]["reason"] == "too far behind"
    assert refresh["seq"] == 29
    await ws.close()
    ws = await b.connect("ana", "?since=29&epoch=elsewhere")
    assert (await receive(ws))["type"] == "hello"
    assert (await receive(ws))["type"] == "refresh"
    await ws.close()
    ws = await b.connect("ana", f"?since=22&epoch={epoch}")  # within the buffer: 7 missed
    assert (await receive(ws))["seq"] == 29
    assert [(await receive(ws))["seq"] for _ in range(7)] == list(range(23, 30))
    await ws.close()


async def test_messages_published_during_a_handshake_are_neither_lost_nor_repeated(
    nodes: Callable[..., Any],
) -> None:
    a: Node = await nodes("gw-a")
    b: Node = await nodes("gw-b")
    first = await b.connect("ana")
    await receive(first)

    async def publish_while_tabs_connect() -> None:
        for n in range(1, 201):
            a.hub.publish(["ana"], ring(n))
            if n % 10 == 0:
                await asyncio.sleep(0)

    task = asyncio.create_task(publish_while_tabs_connect())
    await asyncio.sleep(0)
    second = await b.connect("ana", f"?since=0&epoch={b.hub.epoch}")
    await task
    seqs: list[int] = []
    while len(seqs) < 200:
        msg = await receive(second)
        if msg["type"] == "hello":
            continue
        seqs.append(msg["seq"])
    assert seqs == list(range(1, 201)), str(seqs)
    assert [(await receive(first))["seq"] for _ in range(200)] == list(range(1, 201))
    await first.close()
    await second.close()


async def test_redis_away_local_tabs_still_get_pop_ups_and_it_heals(
    nodes: Callable[..., Any],
    redis_server: RedisServer,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    a: Node = await nodes("gw-a")
    b: Node = await nodes("gw-b")
    on_a, on_b = await a.connect("ana"), await b.connect("ana")
    epoch = (await receive(on_a))["data"]["epoch"]
    await receive(on_b)
    a.hub.publish(["ana"], ring(1))
    assert (await receive(on_a))["seq"] == (await receive(on_b))["seq"] == 1

    redis_server.stop()
    a.hub.publish(["ana"], ring(2))  # the batch fails: delivered on A, unnumbered
    msg = await receive(on_a)
    assert msg["data"]["linkedid"] == "call-2" and "seq" not in msg
    await until("A to see Redis away", lambda: not a.fanout.health()["redis_ok"])
    a.hub.publish(["ana"], ring(3))
    assert (await receive(on_a))["data"]["linkedid"] == "call-3"
    await until("B to see Redis away", lambda: not b.fanout.health()["redis_ok"])
    for name in ("gw-a", "gw-b"):  # one clear line per outage, not one per message
        lines = [r for r in caplog.records if f"instance={name}: Redis at" in r.getMessage()]
        assert len(lines) == 1, lines
    # a tab reconnecting meanwhile is told to reload rather than left with a silent gap
    again = await a.connect("ana", f"?since=1&epoch={epoch}")
    assert (await receive(again))["type"] == "hello"
    assert (await receive(again))["type"] == "refresh"
    await again.close()

    redis_server.start()  # same port, no data: a new epoch, every tab reloads
    await until("A to find Redis back", lambda: a.fanout.health()["redis_ok"])
    await until("B to find Redis back", lambda: b.fanout.health()["redis_ok"])
    assert a.hub.epoch == b.hub.epoch != epoch
    for ws in (on_a, on_b):
        hello = await receive(ws)
        while hello["type"] != "hello":  # B may hold a reload notice from its catch-up
            hello = await receive(ws)
        assert hello["data"]["epoch"] == a.hub.epoch
    a.hub.publish(["ana"], ring(4))
    for ws in (on_a, on_b):
        msg = await receive(ws)
        while msg["type"] != CALL_RINGING:
            msg = await receive(ws)
        assert (msg["seq"], msg["data"]["linkedid"]) == (1, "call-4")
    await on_a.close()
    await on_b.close()


# -- end to end: two gateways, the PBX owned by A, the agent signed in only on B ---------------


async def test_the_pbx_owner_rings_an_agent_signed_in_only_on_the_other_instance(
    tmp_path: Path,
    sim: SimulatedPbx,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    clients: list[TestClient] = []

    async def instance(name: str) -> tuple[Gateway, TestClient]:
        cfg = failover_config(tmp_path, name, sim.port, redis_server.url)
        gw = Gateway(cfg, clock=sim.clock.now)
        client = TestClient(TestServer(await create_app(cfg, gw)))
        await client.start_server()
        clients.append(client)
        client.app[PANEL].users.hasher = FAST_HASHER
        return gw, client

    async def sign_in(client: TestClient, name: str, role: str, exts: list[str]) -> str:
        await client.app[PANEL].users.add(name, PASSWORD, role, exts, name.title())
        resp = await client.post("/panel/api/login", json={"username": name, "password": PASSWORD})
        assert resp.status == 200, await resp.text()
        return str(resp.cookies[COOKIE].value)

    try:
        a, client_a = await instance("gw-a")
        await until("gw-a to own the PBX", lambda: a.links["lab"].health().logged_in)
        _, client_b = await instance("gw-b")
        panel_a, panel_b = client_a.app[PANEL], client_b.app[PANEL]
        # ana signs in on B only (her user and session are in B's store): the owner seats her
        # through the shared board (gateway/cluster/board.py)
        ana = await sign_in(client_b, "ana", "agent", ["101"])
        sofia = await sign_in(client_b, "sofia", "supervisor", [])
        bruno = await sign_in(client_a, "bruno", "agent", ["102"])
        await until("A to seat ana", lambda: panel_a.board.agents_at(["101"]) == ["ana"])
        assert panel_a.board.local_seat("ana") is None

        origin = f"http://{client_b.host}:{client_b.port}"
        ws = await client_b.ws_connect(
            "/panel/ws", headers={"Origin": origin, "Cookie": f"{COOKIE}={ana}"}
        )
        assert (await receive(ws))["type"] == "hello"
        linkedid = sim.start_call("inbound", agent="101", caller="+34911000001")
        ringing: list[dict[str, Any]] = []
        deadline = time.monotonic() + 10
        while not ringing:  # the simulated PBX's clock moves when told to
            assert time.monotonic() < deadline, "no pop-up on B"
            await sim.advance(0.5)
            with contextlib.suppress(TimeoutError):
                while True:
                    msg = json.loads(await ws.receive_str(timeout=0.2))
                    if msg["type"] == CALL_RINGING:
                        ringing.append(msg)
                        break
        assert ringing[0]["data"]["call"]["linkedid"] == linkedid
        assert ringing[0]["data"]["call"]["agents"] == ["ana"]
        assert ringing[0]["seq"] >= 1

        # the supervisor on B sees A's agent on the board B serves; every agent once
        resp = await client_b.get("/panel/api/board", cookies={COOKIE: sofia})
        assert resp.status == 200, await resp.text()
        board = (await resp.json())["agents"]
        assert sorted(x["username"] for x in board) == ["ana", "bruno", "sofia"]
        # bruno pauses on A: B's board shows it
        resp = await client_a.post(
            "/panel/api/presence", json={"status": "paused", "reason": "lunch"},
            cookies={COOKIE: bruno},
            headers={"Origin": f"http://{client_a.host}:{client_a.port}"},
        )  # fmt: skip
        assert resp.status == 200, await resp.text()
        await until(
            "B to see bruno paused", lambda: panel_b.board.agents["bruno"].reason == "lunch"
        )

        resp = await client_b.get("/health")
        doc = await resp.json()
        assert doc["cluster"]["push"]["redis_ok"] is True
        assert doc["cluster"]["board"]["redis_ok"] is True
        assert doc["cluster"]["board"]["other_instances"] == ["gw-a"]
        redis_server.stop()
        await until("B to notice Redis away", lambda: not panel_b.fanout.health()["redis_ok"])
        await until("B's board to notice", lambda: not panel_b.shared_board.health()["redis_ok"])
        resp = await client_b.get("/health")
        doc = await resp.json()
        assert doc["cluster"]["push"]["redis_ok"] is False
        assert doc["cluster"]["push"]["redis_error"]
        assert doc["cluster"]["board"]["redis_ok"] is False
        assert doc["cluster"]["board"]["redis_error"]
        await ws.close()
    finally:
        for client in reversed(clients):
            await client.close()
