"""Calls in progress on every instance's board, end to end: gateways on one real Redis
(Debian's redis-server) and the simulated PBX over TCP, each with its own SQLite store. The
PBX owner tracks the calls; an agent and a supervisor signed in on a standby see them in
``/panel/api/state``, the board and the wallboard (queue figures included), ringing, then
answered, then gone; a tab there reloads mid-call and misses nothing; and after the owner dies
and another instance takes the PBX over, each call is still shown once, everywhere.
Component tests of the share: tests/test_cluster_calls.py."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import Gateway, create_app
from gateway.panel.routes import PANEL
from gateway.panel.sessions import COOKIE
from gateway.push.messages import CALL_ENDED
from gateway.sim.pbx import SimulatedPbx
from tests.redis_fixtures import RedisServer, redis_server  # noqa: F401
from tests.test_cluster_failover import LEASE, config, until
from tests.test_panel_support import FAST_HASHER, PASSWORD


class Node:
    """One gateway of the cluster, its HTTP face, and the users signed in on it."""

    def __init__(self, gw: Gateway, client: TestClient) -> None:
        self.gw, self.client = gw, client
        self.panel = client.app[PANEL]
        self.cookies: dict[str, str] = {}

    @property
    def owns(self) -> bool:
        assert self.gw.cluster is not None
        return self.gw.cluster.owns("lab") and self.gw.links["lab"].health().logged_in

    async def sign_in(self, name: str, role: str, exts: list[str]) -> None:
        await self.panel.users.add(name, PASSWORD, role, exts, name.title())
        resp = await self.client.post(
            "/panel/api/login", json={"username": name, "password": PASSWORD}
        )
        assert resp.status == 200, await resp.text()
        self.cookies[name] = str(resp.cookies[COOKIE].value)
        self.client.session.cookie_jar.clear()  # each request names its user

    async def get(self, path: str, user: str) -> Any:
        resp = await self.client.get(path, cookies={COOKIE: self.cookies[user]})
        assert resp.status == 200, await resp.text()
        return await resp.json()

    async def calls(self, user: str) -> list[dict[str, Any]]:
        """The calls of ``user``'s state, as a reloading tab gets them."""
        return [c["call"] for c in (await self.get("/panel/api/state", user))["calls"]]

    async def crash(self) -> None:
        """Stop all it does with Redis as a killed process would: nothing released."""
        assert self.gw.cluster is not None
        await self.gw.cluster.close(release=False)
        await self.panel.shared_board.close(release=False)
        await self.panel.fanout.close()


@pytest.fixture
async def cluster(
    tmp_path: Path,
    sim: SimulatedPbx,
    redis_server: RedisServer,  # noqa: F811
) -> AsyncIterator[Callable[..., Any]]:
    started: list[Node] = []

    async def start(name: str) -> Node:
        cfg = config(tmp_path, name, sim.port, redis_server.url)
        gw = Gateway(cfg, clock=sim.clock.now)
        client = TestClient(TestServer(await create_app(cfg, gw)))
        await client.start_server()
        client.app[PANEL].users.hasher = FAST_HASHER
        node = Node(gw, client)
        started.append(node)
        return node

    yield start
    for node in reversed(started):
        with contextlib.suppress(Exception):
            await node.client.close()


async def advance_until(sim: SimulatedPbx, what: str, condition: Callable[[], Any]) -> None:
    """Move the simulated PBX's clock on, a little at a time, until ``condition`` holds."""

    async def step() -> bool:
        await sim.advance(0.25)
        result = condition()
        return bool(await result) if hasattr(result, "__await__") else bool(result)

    await until(what, step)


async def test_a_call_on_the_owner_shows_on_the_standby_ringing_answered_and_gone(
    cluster: Callable[..., Any], sim: SimulatedPbx
) -> None:
    a: Node = await cluster("gw-a")
    await until("gw-a to own the PBX", lambda: a.owns)
    b: Node = await cluster("gw-b")
    await b.sign_in("ana", "agent", ["101"])  # ana and her supervisor: on the standby only
    await b.sign_in("sofia", "supervisor", [])
    await until("A to seat ana", lambda: a.panel.board.agents_at(["101"]) == ["ana"])

    # a queue call rings 101 (ana) and 102: the standby's state, board and wall have it
    lid = sim.start_call(
        "queue_answered", agents=("102", "101"), caller="+34911000001", ring_seconds=6,
        talk_seconds=8,
    )  # fmt: skip
    key = f"lab:{lid}"
    await advance_until(sim, "ana's state on B to show the call", lambda: b.calls("ana"))
    (call,) = await b.calls("ana")
    assert (call["id"], call["state"], call["agents"]) == (key, "ringing", ["ana"])
    assert call["number"] == "+34911000001" and call["queue"] == "sales"
    state = await b.get("/panel/api/state", "ana")
    assert state["presence"]["status"] == "available"
    await until("the card to come with it", _card_on(b))
    board = await b.get("/panel/api/board", "sofia")
    assert [c["id"] for c in board["calls"]] == [key]
    wall = await b.get("/panel/api/wallboard", "sofia")
    assert [c["id"] for c in wall["calls"]] == [key] and wall["calls"][0]["agent_names"]
    await until("B's wall to show the owner's queue", _waiting_on(b, 1))

    # answered by ana: on a call, on every view the standby serves
    await advance_until(sim, "the call answered on B", _state_on(b, "answered"))
    state = await b.get("/panel/api/state", "ana")
    assert state["presence"]["status"] == "on_call"
    assert state["calls"][0]["call"]["answered_agent"] == "ana"
    board = await b.get("/panel/api/board", "sofia")
    (ana,) = [x for x in board["agents"] if x["username"] == "ana"]
    assert ana["status"] == "on_call" and board["calls"][0]["state"] == "answered"
    await until("B's wall to count the answer", _answered_on(b, 1))
    wall = await b.get("/panel/api/wallboard", "sofia")
    (ana,) = [x for x in wall["agents"] if x["username"] == "ana"]
    assert ana["state"] == "on_call" and wall["queues"][0]["waiting"] == 0

    # ana's tab reloads on B mid-call: it resumes from the state's number, and the end of
    # the call comes next, numbered after it (nothing missed, nothing repeated)
    seq, epoch = state["seq"], state["epoch"]
    assert seq >= 2  # the ring and the answer at least
    origin = f"http://{b.client.host}:{b.client.port}"
    ws = await b.client.ws_connect(
        f"/panel/ws?since={seq}&epoch={epoch}",
        headers={"Origin": origin, "Cookie": f"{COOKIE}={b.cookies['ana']}"},
    )
    try:
        hello = json.loads((await ws.receive(timeout=5)).data)
        assert hello["type"] == "hello" and hello["seq"] == seq
        await advance_until(sim, "the call to end on B", lambda: _no_calls(b))
        msg = await ws.receive(timeout=5)
        assert msg.type is WSMsgType.TEXT
        first = json.loads(msg.data)
        assert first["seq"] == seq + 1 and first["type"] == CALL_ENDED
        assert first["data"]["call"]["id"] == key
    finally:
        await ws.close()

    # gone: the state and the board hold no call; ana wraps up (the owner's after-call work)
    state = await b.get("/panel/api/state", "ana")
    assert state["calls"] == [] and state["presence"]["status"] == "after_call_work"
    assert state["presence"]["after_call_call"] == key
    board = await b.get("/panel/api/board", "sofia")
    assert board["calls"] == []
    (ana,) = [x for x in board["agents"] if x["username"] == "ana"]
    assert ana["status"] == "after_call_work"
    # the wall: no call, and ana's queue membership paused for her wrap-up (the owner's
    # QueuePause, its figures shared a second later at most)
    await until("B's wall to show ana wrapping up", _wall_state_on(b, "ana", "after_call_work"))
    assert (await b.get("/panel/api/wallboard", "sofia"))["calls"] == []


async def test_after_the_owner_dies_and_a_takeover_each_call_is_shown_once(
    cluster: Callable[..., Any], sim: SimulatedPbx
) -> None:
    a: Node = await cluster("gw-a")
    await until("gw-a to own the PBX", lambda: a.owns)
    b: Node = await cluster("gw-b")
    c: Node = await cluster("gw-c")
    await c.sign_in("ana", "agent", ["101"])
    await b.sign_in("sofia", "supervisor", [])
    await until("A to seat ana", lambda: a.panel.board.agents_at(["101"]) == ["ana"])

    lid = sim.start_call("inbound_answered", caller="+34911000002", talk_seconds=20)
    key = f"lab:{lid}"
    await advance_until(sim, "ana on the call, on C", _state_on(c, "answered"))
    await until("sofia's board on B to show it", _board_calls(b, [key]))

    await a.crash()
    # through the takeover the call stays on the boards, once (the dead owner's share)...
    shown: list[list[str]] = []

    async def new_owner() -> bool:
        shown.append([x["id"] for x in await c.calls("ana")])
        return b.owns or c.owns

    await until("B or C to take the PBX over", new_owner, within=LEASE + 5)
    owner, other = (b, c) if b.owns else (c, b)
    await until("the new owner to join the call", lambda: key in owner.panel.board.calls)
    # ...and after it, once: the new owner's own call (not the dead owner's share too), and
    # on the other instance the new owner's share, which replaced the dead owner's
    await until("the new owner to drop the share", lambda: not owner.panel.board.shared_pbxs())
    assert list(other.panel.board.shared_calls("lab")) == [key] and not other.panel.board.calls
    shown.append([x["id"] for x in await c.calls("ana")])
    assert set(map(tuple, shown)) == {(key,)}, shown
    (call,) = await c.calls("ana")
    assert (call["id"], call["state"]) == (key, "answered")
    assert (await c.get("/panel/api/state", "ana"))["presence"]["status"] == "on_call"
    board = await b.get("/panel/api/board", "sofia")
    assert [x["id"] for x in board["calls"]] == [key]
    wall = await b.get("/panel/api/wallboard", "sofia")
    assert [x["id"] for x in wall["calls"]] == [key]
    assert owner.panel.shared_board.health()["calls"]["owned"] == ["lab"]

    # the call ends at the new owner: gone everywhere
    await advance_until(sim, "the call to end on C", lambda: _no_calls(c))
    await until("sofia's board on B to drop it", _board_calls(b, []))


async def test_a_state_read_before_the_share_is_heard_still_holds_what_its_number_covers(
    cluster: Callable[..., Any], sim: SimulatedPbx
) -> None:
    """A change of the owner's calls and the message about it reach a standby on two Redis
    connections, in either order (measured: about a third of them message first). A tab that
    loads its state in between must not get the message's number without the change: it
    would never be sent that message again. Here B hears no change of the share at all."""
    a: Node = await cluster("gw-a")
    await until("gw-a to own the PBX", lambda: a.owns)
    b: Node = await cluster("gw-b")
    await b.sign_in("ana", "agent", ["101"])
    await until("A to seat ana", lambda: a.panel.board.agents_at(["101"]) == ["ana"])
    shared = b.panel.shared_board.calls
    for task in shared._tasks[0], shared._tasks[2]:  # its subscriber and its beat: deaf
        task.cancel()
    before = b.panel.hub.last_seq("ana")

    lid = sim.start_call("inbound", agent="101", caller="+34911000003")
    await advance_until(sim, "B to hear the pop-up", lambda: b.panel.hub.last_seq("ana") > before)
    state = await b.get("/panel/api/state", "ana")
    assert [c["call"]["id"] for c in state["calls"]] == [f"lab:{lid}"]
    assert state["seq"] > before
    assert not b.panel.board.calls  # read from the owner's share, not B's own


# -- conditions (async: read over HTTP) ----------------------------------------------------


def _state_on(node: Node, state: str) -> Callable[[], Any]:
    async def check() -> bool:
        return [c["state"] for c in await node.calls("ana")] == [state]

    return check


def _card_on(node: Node) -> Callable[[], Any]:
    async def check() -> bool:
        calls = (await node.get("/panel/api/state", "ana"))["calls"]
        return bool(calls) and calls[0]["card"] is not None

    return check


async def _no_calls(node: Node) -> bool:
    return not await node.calls("ana")


def _board_calls(node: Node, keys: list[str]) -> Callable[[], Any]:
    async def check() -> bool:
        board = await node.get("/panel/api/board", "sofia")
        return [x["id"] for x in board["calls"]] == keys

    return check


def _wall_state_on(node: Node, user: str, state: str) -> Callable[[], Any]:
    async def check() -> bool:
        wall = await node.get("/panel/api/wallboard", "sofia")
        return [x["state"] for x in wall["agents"] if x["username"] == user] == [state]

    return check


def _queue(node: Node) -> Callable[[], Any]:
    async def sales() -> dict[str, Any] | None:
        wall = await node.get("/panel/api/wallboard", "sofia")
        queues = [q for q in wall["queues"] if q["pbx"] == "lab" and q["queue"] == "sales"]
        return queues[0] if queues else None

    return sales


def _waiting_on(node: Node, waiting: int) -> Callable[[], Any]:
    async def check() -> bool:
        q = await _queue(node)()
        return q is not None and q["waiting"] == waiting and q["longest_wait"] >= 0

    return check


def _answered_on(node: Node, answered: int) -> Callable[[], Any]:
    async def check() -> bool:
        q = await _queue(node)()
        return q is not None and q["answered"] == answered

    return check
