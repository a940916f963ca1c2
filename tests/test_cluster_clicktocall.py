"""Click-to-call and call controls from any instance of a cluster reach the PBX's owner
(gateway/cluster/relay.py): two gateways on one real Redis (Debian's redis-server) and the
simulated PBX over real TCP, each with its own SQLite store; gw-a owns the PBX's AMI link and
the agent's browser is on gw-b. The agent clicks to call and the PBX originates it once, the
progress reaches the tab, the attempt's state reads back from either instance; hold, hang-up
and a queue pause asked of gw-b act on the PBX; with the owner dead and nobody owning the PBX
yet the answer is a clear 503, at once; a takeover in the middle of a click-to-call carries
it on without dialing it again; a request the owner did not take in time is never dialed."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import Gateway, create_app
from gateway.calls.settings import TrackingSettings
from gateway.config import ApiSettings, ApiToken, GatewayConfig
from gateway.panel.routes import PANEL
from gateway.panel.service import PanelService
from gateway.panel.sessions import COOKIE
from gateway.panel.settings import PanelSettings
from gateway.push.messages import CLICKTOCALL_PROGRESS
from gateway.sim.clock import ManualClock
from gateway.sim.pbx import SimulatedPbx
from gateway.sim.state import Phone
from tests.redis_fixtures import RedisServer, redis_server  # noqa: F401
from tests.test_cluster_failover import LEASE, RENEW, _closed_port, until
from tests.test_cluster_failover import config as failover_config
from tests.test_panel_support import FAST_HASHER, PASSWORD

CRM = {"Authorization": "Bearer crm-originate-token"}
OTHER_CRM = {"Authorization": "Bearer other-crm-token"}
NOTHING_DIALED = "The phone system is not reachable right now; nothing was dialed."


def config(tmp_path: Path, name: str, port: int, redis_url: str) -> GatewayConfig:
    tokens = [
        ApiToken(name="crm", token="crm-originate-token", scopes=["originate"]),
        ApiToken(name="other", token="other-crm-token", scopes=["originate"]),
    ]
    return msgspec.structs.replace(
        failover_config(tmp_path, name, port, redis_url),
        api=ApiSettings(tokens=tokens),
        panel=PanelSettings(originate_limit=2, originate_window=60),
        tracking=TrackingSettings(),  # a usual PJSIP Asterisk's dialplan, as the sim below
    )


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedPbx]:
    """A simulated PBX shaped like a usual PJSIP Asterisk (AMI secret ``gw``), on a manual
    clock: its call controls work as the panel's tests know them (tests/test_desk_controls)."""
    pbx = SimulatedPbx(secret="gw", clock=ManualClock(), flavour="pjsip")
    await pbx.start()
    yield pbx
    await pbx.stop()


class Node:
    """One gateway of the cluster, its HTTP face and its panel."""

    def __init__(self, gw: Gateway, client: TestClient[Any, Any]) -> None:
        self.gw = gw
        self.client = client
        self.panel: PanelService = client.app[PANEL]
        self.panel.users.hasher = FAST_HASHER

    @property
    def linked(self) -> bool:
        assert self.gw.cluster is not None
        return self.gw.cluster.owns("lab") and self.gw.links["lab"].health().logged_in

    @property
    def origin(self) -> str:
        return f"http://{self.client.host}:{self.client.port}"

    async def sign_in(self, name: str, exts: list[str], role: str = "agent") -> str:
        """A user of this instance's store, signed in here: the session cookie's value."""
        if await self.panel.users.get(name) is None:
            await self.panel.users.add(name, PASSWORD, role, exts, name.title())
        resp = await self.client.post(
            "/panel/api/login", json={"username": name, "password": PASSWORD}
        )
        assert resp.status == 200, await resp.text()
        return str(resp.cookies[COOKIE].value)

    async def post(self, path: str, cookie: str, body: Any = None) -> tuple[int, Any]:
        resp = await self.client.post(
            path, json=body if body is not None else {}, cookies={COOKIE: cookie},
            headers={"Origin": self.origin},
        )  # fmt: skip
        return resp.status, await resp.json()

    async def tab(self, cookie: str) -> aiohttp.ClientWebSocketResponse:
        ws = await self.client.ws_connect(
            "/panel/ws", headers={"Origin": self.origin, "Cookie": f"{COOKIE}={cookie}"}
        )
        assert json.loads((await ws.receive(timeout=5)).data)["type"] == "hello"
        return ws

    async def originate_status(self, call_id: str, headers: dict[str, str]) -> tuple[int, Any]:
        resp = await self.client.get(f"/api/v1/originate/{call_id}", headers=headers)
        return resp.status, await resp.json()

    async def crash(self) -> None:
        """As if the process died: its AMI link drops and its lease is left to expire, it no
        longer listens for requests nor follows its click-to-calls."""
        assert self.gw.cluster is not None and self.panel.relay is not None
        await self.panel.clicktocall.close()  # first: nothing of it runs once the link drops
        await self.gw.cluster.close(release=False)
        await self.panel.relay.close()


class Cluster:
    """Starts the gateways of a test; stops them all at its end."""

    def __init__(self, tmp_path: Path, sim: SimulatedPbx, redis_url: str) -> None:
        self.tmp_path, self.sim, self.redis_url = tmp_path, sim, redis_url
        self.started: list[TestClient[Any, Any]] = []

    async def start(self, name: str) -> Node:
        cfg = config(self.tmp_path, name, self.sim.port, self.redis_url)
        gw = Gateway(cfg, clock=self.sim.clock.now)
        client = TestClient(TestServer(await create_app(cfg, gw)))
        await client.start_server()
        self.started.append(client)
        return Node(gw, client)

    async def standby(self, owner: str) -> Node:
        """gw-b, once it sees ``owner`` hold the PBX."""
        b = await self.start("gw-b")
        assert b.gw.cluster is not None
        lease = b.gw.cluster.owners["lab"]
        await until(f"gw-b to see {owner}'s lease", lambda: lease.holder)
        assert lease.holder is not None and lease.holder.instance == owner
        return b

    async def pair(self) -> tuple[Node, Node]:
        """gw-a owning the PBX (logged in), gw-b standing by."""
        a = await self.start("gw-a")
        await until("gw-a to own the PBX and log in", lambda: a.linked)
        return a, await self.standby("gw-a")


@pytest.fixture
async def cluster(
    tmp_path: Path,
    sim: SimulatedPbx,
    redis_server: RedisServer,  # noqa: F811
) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path, sim, redis_server.url)
    yield c
    for client in reversed(c.started):
        async with asyncio.timeout(15):
            await client.close()


def sent(sim: SimulatedPbx, action: str) -> list[dict[str, str]]:
    return [a for a in sim.received_actions if a.get("Action") == action]


async def progress(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    """The next click-to-call progress message's data (other messages skipped)."""
    while True:
        msg = json.loads((await ws.receive(timeout=5)).data)
        if msg["type"] == CLICKTOCALL_PROGRESS:
            data: dict[str, Any] = msg["data"]
            return data


async def test_an_agent_on_the_standby_clicks_to_call_and_the_owner_places_it(
    cluster: Cluster, sim: SimulatedPbx
) -> None:
    a, b = await cluster.pair()
    ana = await b.sign_in("ana", ["101"])  # her user and session are in gw-b's store only
    ws = await b.tab(ana)
    sim.phones["101"] = Phone(ring=1.0, answer=True)
    status, started = await b.post("/panel/api/originate", ana, {"number": "+34 911 23 45 67"})
    assert status == 200, started
    assert started["state"] == "calling_agent" and started["number"] == "+34911234567"
    call_id = started["call_id"]
    await until("the Originate to reach the PBX", lambda: sent(sim, "Originate"))
    (originate,) = sent(sim, "Originate")
    assert originate["Channel"] == "PJSIP/101" and originate["Exten"] == "+34911234567"
    assert originate["Variable"] == f"GATEWAY_CALL_ID={call_id}"
    # the owner follows it; gw-b only forwarded it
    assert a.panel.clicktocall.find(call_id) is not None
    assert b.panel.clicktocall.find(call_id) is None
    states = [(await progress(ws))["state"]]
    for seconds in (1.2, 2.5, 4):
        await sim.advance(seconds)
        states.append((await progress(ws))["state"])
    assert states == ["calling_agent", "calling_customer", "connected", "ended"]
    # the call is the owner's: logged in gw-a's store, as a click-to-call of ana's
    assert a.gw.db is not None and b.gw.db is not None
    await until("gw-a to log the call", lambda: _logged(a, call_id))
    assert await _logged(b, call_id) == []
    assert sent(sim, "Originate") == [originate]
    await ws.close()

    # a CRM asks gw-b to ring 101 (an extension of gw-b's users) and polls either instance
    resp = await b.client.post(
        "/api/v1/originate", json={"extension": "101", "number": "600111222"}, headers=CRM
    )
    assert resp.status == 202, await resp.text()
    crm_call = (await resp.json())["call_id"]
    await until("the CRM's Originate", lambda: len(sent(sim, "Originate")) == 2)
    for node in (a, b):
        status, doc = await node.originate_status(crm_call, CRM)
        assert status == 200 and doc["call_id"] == crm_call
        assert doc["state"] == "calling_agent" and doc["number"] == "+34600111222"
        status, _ = await node.originate_status(crm_call, OTHER_CRM)  # not its attempt
        assert status == 404
    for seconds in (1.2, 2.5, 4):
        await sim.advance(seconds)
    await until("gw-b to say it ended", lambda: _ended(b, crm_call))
    await until("gw-a to say it ended", lambda: _ended(a, crm_call))
    assert len(sent(sim, "Originate")) == 2
    health = (await (await b.client.get("/health")).json())["cluster"]["relay"]
    assert health["redis_ok"] and health["forwarded"] == 2 and health["lost"] == 0
    health = (await (await a.client.get("/health")).json())["cluster"]["relay"]
    assert health["served"] == 2


async def test_the_agents_limit_on_click_to_call_holds_across_instances(
    cluster: Cluster, sim: SimulatedPbx
) -> None:
    a, b = await cluster.pair()
    sim.phones["101"] = Phone(answer="noanswer")
    on_a, on_b = await a.sign_in("ana", ["101"]), await b.sign_in("ana", ["101"])
    assert (await a.post("/panel/api/originate", on_a, {"number": "911234567"}))[0] == 200
    assert (await b.post("/panel/api/originate", on_b, {"number": "911234567"}))[0] == 200
    for node, cookie in ((a, on_a), (b, on_b)):  # two a minute, wherever she clicks
        status, doc = await node.post("/panel/api/originate", cookie, {"number": "911234567"})
        assert status == 429 and doc["error"]["id"] == "rate_limited", doc
        assert 0 < doc["error"]["details"]["retry_after"] <= 60
    bruno = await b.sign_in("bruno", ["102"])
    assert (await b.post("/panel/api/originate", bruno, {"number": "911234567"}))[0] == 200
    await until("three Originates", lambda: len(sent(sim, "Originate")) == 3)


async def test_controls_and_queue_pauses_asked_of_the_standby_act_on_the_pbx(
    cluster: Cluster, sim: SimulatedPbx
) -> None:
    a, b = await cluster.pair()
    ana = await b.sign_in("ana", ["101"])
    bruno = await b.sign_in("bruno", ["102"])

    # a pause reaches the PBX's queues through its owner
    status, doc = await b.post("/panel/api/presence", ana, {"status": "paused", "reason": "lunch"})
    assert status == 200 and doc["pbx_warning"] == "", doc
    (pause,) = sent(sim, "QueuePause")
    assert (pause["Interface"], pause["Paused"], pause["Reason"]) == ("PJSIP/101", "true", "lunch")
    member = next(m for m in sim.queues["sales"].members if m.extension == "101")
    assert member.paused and member.paused_reason == "lunch"
    status, doc = await b.post("/panel/api/presence", ana, {"status": "available"})
    assert status == 200 and doc["pbx_warning"] == "" and not member.paused

    # ana answers a call; the owner (gw-a) tracks it
    sim.phones["101"] = Phone(ring=1.0, answer=True)
    key = "lab:" + sim.start_call("inbound", agent="101", talk_seconds=60)
    for _ in range(3):
        await sim.advance(1)
    board = a.panel.board
    await until("ana to answer", lambda: key in board.calls and board.calls[key].answered_by)
    legs = sorted(sim.channels)

    status, doc = await b.post(f"/panel/api/calls/{key}/hold", ana)
    assert (status, doc) == (200, {"call_id": key, "action": "hold", "held": True})
    (redirect,) = sent(sim, "Redirect")
    agent_leg, customer_leg = redirect["ExtraChannel"], redirect["Channel"]
    assert re.match(r"^[^/]+/101-", agent_leg) and redirect["Exten"] == "hold"
    assert sorted([agent_leg, customer_leg]) == legs  # the call's two legs, as the PBX has them
    # the owner's answers, word for word
    status, doc = await b.post(f"/panel/api/calls/{key}/hold", ana)
    assert (status, doc["error"]["id"]) == (409, "already_on_hold")
    assert doc["error"]["message"] == "This call is already on hold."
    status, doc = await b.post(f"/panel/api/calls/{key}/hangup", bruno)
    assert (status, doc["error"]["id"]) == (403, "not_your_call")
    status, doc = await b.post("/panel/api/calls/lab:nope/hangup", ana)
    assert (status, doc["error"]["id"]) == (404, "no_live_call")
    status, doc = await b.post(f"/panel/api/calls/{key}/resume", ana)
    assert (status, doc["held"]) == (200, False)
    (bridge,) = sent(sim, "Bridge")
    assert (bridge["Channel1"], bridge["Channel2"]) == (agent_leg, customer_leg)

    status, doc = await b.post(f"/panel/api/calls/{key}/hangup", ana)
    assert (status, doc["action"]) == (200, "hangup")
    assert [h["Channel"] for h in sent(sim, "Hangup")] == [agent_leg]
    for _ in range(3):
        await sim.advance(1)
    await until("the call to end", lambda: key not in board.calls)
    assert len(sent(sim, "Hangup")) == 1  # once, by the owner


async def test_with_the_owner_dead_and_no_owner_yet_the_answer_is_a_clear_503(
    cluster: Cluster, sim: SimulatedPbx
) -> None:
    a, b = await cluster.pair()
    ana = await b.sign_in("ana", ["101"])
    await a.crash()  # its lease still names it for up to LEASE seconds
    async with asyncio.timeout(RENEW):  # at once: Redis says nobody listens for gw-a
        status, doc = await b.post("/panel/api/originate", ana, {"number": "911234567"})
        assert status == 503 and doc["error"]["id"] == "pbx_down", doc
        assert doc["error"]["message"] == NOTHING_DIALED
        status, doc = await b.post("/panel/api/calls/lab:1700000000.1/hold", ana)
        assert status == 503 and doc["error"]["id"] == "pbx_down", doc
        resp = await b.client.post(
            "/api/v1/originate", json={"extension": "101", "number": "600111222"}, headers=CRM
        )
        assert resp.status == 503 and (await resp.json())["error"]["id"] == "pbx_down"
        status, doc = await b.post("/panel/api/presence", ana, {"status": "paused"})
        assert status == 200 and "could not be updated" in doc["pbx_warning"]
    assert sent(sim, "Originate") == [] and sent(sim, "QueuePause") == []
    assert b.panel.relay is not None and b.panel.relay.health()["no_owner"] >= 4

    # once gw-b owns the PBX it places the call itself
    await until("gw-b to take the PBX over", lambda: b.linked, within=LEASE + 5)
    status, doc = await b.post("/panel/api/originate", ana, {"number": "911234567"})
    assert status == 200, doc
    await until("gw-b's Originate", lambda: sent(sim, "Originate"))
    assert b.panel.clicktocall.find(doc["call_id"]) is not None


async def test_a_takeover_mid_way_carries_the_click_to_call_on_without_dialing_it_again(
    cluster: Cluster, sim: SimulatedPbx
) -> None:
    a, b = await cluster.pair()
    ana = await b.sign_in("ana", ["101"])
    ws = await b.tab(ana)
    sim.phones["101"] = Phone(ring=3.0, answer=True)
    status, started = await b.post("/panel/api/originate", ana, {"number": "911234567"})
    assert status == 200, started
    call_id = started["call_id"]
    assert (await progress(ws))["state"] == "calling_agent"
    await until("the Originate to reach the PBX", lambda: sent(sim, "Originate"))
    await sim.advance(1)  # ana's phone is ringing when gw-a dies
    await a.crash()
    await until("gw-b to take the PBX over", lambda: b.linked, within=LEASE + 5)
    # gw-b finds the attempt on the PBX (its agent's channel carries the call id) and follows
    await until("gw-b to carry the attempt on", lambda: b.panel.clicktocall.find(call_id))
    await sim.advance(2.5)  # ana picks up: the customer is dialed
    assert (await progress(ws))["state"] == "calling_customer"
    await sim.advance(2.5)
    assert (await progress(ws))["state"] == "connected"
    await sim.advance(4)
    assert (await progress(ws))["state"] == "ended"
    assert len(sent(sim, "Originate")) == 1  # dialed once, by gw-a
    assert b.panel.clicktocall.find(call_id) is not None
    # gw-b logs it as the click-to-call it was (not as an outbound call of 101's)
    await until("gw-b to log the call", lambda: _logged(b, call_id))
    assert await _logged(b, call_id) == [("answered", 1)]
    await ws.close()


async def _logged(node: Node, call_id: str) -> list[Any]:
    assert node.gw.db is not None
    rows = await node.gw.db.conn.execute_fetchall(
        "SELECT outcome, click_to_call FROM calls WHERE call_id = ?", (call_id,)
    )
    return [tuple(r) for r in rows]


async def _ended(node: Node, call_id: str) -> bool:
    status, doc = await node.originate_status(call_id, CRM)
    return status == 200 and doc["state"] == "ended"


async def test_a_click_the_frozen_owner_did_not_take_in_time_is_never_dialed(
    tmp_path: Path,
    cluster: Cluster,
    sim: SimulatedPbx,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    """The real thing: gw-a is ``centralita run`` in its own process and freezes (SIGSTOP)
    with its sockets open, so the request reaches it but nobody takes it: gw-b says nothing
    was dialed. When gw-a wakes up (SIGCONT) and reads the request, it drops it."""
    port = _closed_port()
    config_file = tmp_path / "gw-a.yaml"
    config_file.write_text(
        f"""
pbx:
  - {{name: lab, port: {sim.port}, username: gateway, secret: gw, ping_interval: 1,
      reconnect: {{initial: 0.05, maximum: 0.2}}}}
store: {{path: {tmp_path / "gw-a" / "centralita.db"}}}
http: {{port: {port}}}
campaigns: {{enabled: false}}
cluster: {{redis_url: "{redis_server.url}", instance: gw-a, lease_seconds: {LEASE},
           renew_seconds: {RENEW}}}
"""
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "run", "-c", str(config_file),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        cwd=Path(__file__).parent.parent,
    )  # fmt: skip
    http = aiohttp.ClientSession()

    async def health_of_a() -> dict[str, Any] | None:
        try:
            async with http.get(f"http://127.0.0.1:{port}/health") as r:
                doc: dict[str, Any] = await r.json()
                return doc
        except aiohttp.ClientError:  # not up yet
            return None

    async def a_owns() -> bool:
        doc = await health_of_a()
        return doc is not None and doc["pbx"][0]["logged_in"] is True

    async def a_dropped_it() -> bool:
        doc = await health_of_a()
        relay = doc["cluster"]["relay"] if doc else {}
        return relay.get("dropped") == 1 and relay.get("served") == 0

    try:
        await until("gw-a (a process) to own the PBX", a_owns, 30)
        b = await cluster.standby("gw-a")
        ana = await b.sign_in("ana", ["101"])
        proc.send_signal(signal.SIGSTOP)
        try:
            status, doc = await b.post("/panel/api/originate", ana, {"number": "911234567"})
        finally:
            proc.send_signal(signal.SIGCONT)
        assert status == 503 and doc["error"]["message"] == NOTHING_DIALED, doc
        await until("gw-a to drop the request it woke up to", a_dropped_it)
        assert sent(sim, "Originate") == []
    finally:
        await http.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
