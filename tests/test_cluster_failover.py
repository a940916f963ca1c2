"""Two gateway instances, one PBX: one owns the AMI link, the other stands by, and when the
owner dies the standby takes over within the lease time, carries the calls in progress and logs
each of them once. A real Redis (Debian's redis-server), the simulated PBX over real TCP, and
each instance with its own SQLite store, as two machines would have (SQLite is one machine's
file; the shared PostgreSQL store is not built yet, see docs/scale-out.md)."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import Gateway, create_app
from gateway.cluster.settings import ClusterSettings
from gateway.config import GatewayConfig, PbxSettings, ReconnectSettings, StoreSettings
from gateway.demo import LAB_TRACKING
from gateway.sim.clock import ManualClock
from gateway.sim.pbx import SimulatedPbx
from tests.redis_fixtures import RedisServer, redis_server  # noqa: F401

LEASE = 2.0  # seconds; renewals every half second
RENEW = 0.5


def config(tmp_path: Path, name: str, port: int, redis_url: str, **cluster: Any) -> GatewayConfig:
    pbx = PbxSettings(
        name="lab", port=port, username="gateway", secret="gw", ping_interval=1.0,
        action_timeout=1.0, connect_timeout=1.0,
        reconnect=ReconnectSettings(initial=0.05, maximum=0.2),
    )  # fmt: skip
    settings = {"lease_seconds": LEASE, "renew_seconds": RENEW, "link_grace_seconds": 2.0}
    return GatewayConfig(
        pbx=[pbx],
        store=StoreSettings(path=str(tmp_path / name / "centralita.db")),
        tracking=LAB_TRACKING,
        cluster=ClusterSettings(redis_url=redis_url, instance=name, **settings | cluster),
    )


class Instance:
    """One gateway of the cluster with its HTTP face."""

    def __init__(self, gw: Gateway, client: TestClient) -> None:
        self.gw = gw
        self.client = client

    @property
    def owns(self) -> bool:
        assert self.gw.cluster is not None
        return self.gw.cluster.owns("lab")

    @property
    def linked(self) -> bool:
        return self.owns and self.gw.links["lab"].health().logged_in

    async def health(self) -> tuple[int, dict[str, Any]]:
        resp = await self.client.get("/health")
        return resp.status, await resp.json()

    async def logged(self) -> list[str]:
        assert self.gw.db is not None
        rows = await self.gw.db.conn.execute_fetchall("SELECT id FROM calls ORDER BY id")
        return [r[0] for r in rows]

    async def close(self) -> None:
        """Stop the instance as its server stops (``cleanup_ctx``: leases handed back)."""
        await self.client.close()  # idempotent


@pytest.fixture
async def cluster(
    tmp_path: Path,
    sim: SimulatedPbx,
    redis_server: RedisServer,  # noqa: F811
) -> AsyncIterator[Callable[..., Any]]:
    """Starts instances on demand (``await cluster("gw-a")``); stops them all at the end."""
    started: list[Instance] = []

    async def start(name: str, port: int | None = None, **cluster: Any) -> Instance:
        cfg = config(tmp_path, name, port or sim.port, redis_server.url, **cluster)
        gw = Gateway(cfg, clock=sim.clock.now)
        client = TestClient(TestServer(await create_app(cfg, gw)))
        await client.start_server()
        instance = Instance(gw, client)
        started.append(instance)
        return instance

    yield start
    for instance in reversed(started):
        async with asyncio.timeout(15):  # a stop that hangs fails the test instead of CI
            await instance.close()


async def until(what: str, condition: Callable[[], Any], within: float = 10.0) -> float:
    """Poll ``condition`` (a plain or async callable) until true; returns the seconds it took."""
    t0 = time.monotonic()
    while True:
        result = condition()
        if asyncio.iscoroutine(result):  # an HTTP or store read: bounded too, never a hang
            left = within - (time.monotonic() - t0)
            result = await asyncio.wait_for(result, max(left, 0.5))
        if result:
            return time.monotonic() - t0
        assert time.monotonic() - t0 < within, f"timed out after {within}s waiting for {what}"
        await asyncio.sleep(0.02)


def lab(pbx: dict[str, Any]) -> dict[str, Any]:
    (line,) = [p for p in pbx["pbx"] if p["name"] == "lab"]
    return line


async def test_the_standby_takes_over_a_dead_owner_and_logs_each_live_call_once(
    cluster: Callable[..., Any], sim: SimulatedPbx
) -> None:
    a: Instance = await cluster("gw-a")
    await until("gw-a to own the PBX and log in", lambda: a.linked)
    b: Instance = await cluster("gw-b")
    await until("gw-b to see gw-a's lease", lambda: b.gw.cluster.owners["lab"].holder)

    # /health on each instance names the owner; the standby is healthy (200), not "down"
    status, doc = await a.health()
    assert status == 200 and doc["instance"] == "gw-a"
    assert lab(doc)["owner"] == "gw-a" and lab(doc)["this_instance_owns"] is True
    assert lab(doc)["logged_in"] is True and lab(doc)["lease_until"] > sim.clock.now()
    status, doc = await b.health()
    assert status == 200 and doc["instance"] == "gw-b" and doc["cluster"]["redis_ok"] is True
    assert lab(doc)["owner"] == "gw-a" and lab(doc)["this_instance_owns"] is False
    assert lab(doc)["logged_in"] is False

    # one call ends while gw-a owns the link; two are answered and still talking when it dies
    short = "lab:" + sim.start_call("inbound_answered", caller="+34911000001", talk_seconds=3)
    live = [
        "lab:" + sim.start_call("inbound_answered", caller=f"+3491100000{n}", talk_seconds=60)
        for n in (2, 3)
    ]
    for _ in range(10):
        await sim.advance(1)
    await until("gw-a to log the short call", lambda: _has(a, short))
    await until("gw-a to track the two live calls", lambda: a.gw.trackers["lab"].open_calls == 2)

    # gw-a dies: its link drops and nobody renews its lease (nor releases it)
    assert a.gw.cluster is not None
    await a.gw.cluster.close(release=False)
    took = await until("gw-b to take the PBX over", lambda: b.linked, within=LEASE + 5)
    print(f"takeover after the owner died: {took:.2f}s (lease {LEASE:g}s, renew {RENEW:g}s)")
    # the standby asks again just as the lease runs out, not up to RENEW later
    assert took <= LEASE + 1.0
    await until("gw-b to join the live calls", lambda: b.gw.trackers["lab"].open_calls == 2)
    status, doc = await b.health()
    assert status == 200
    assert lab(doc)["owner"] == "gw-b" and lab(doc)["this_instance_owns"] is True
    assert lab(doc)["lease_token"] > 1 and lab(doc)["takeovers"] == 1

    # a call that starts after the takeover, and the end of the two carried over
    after = "lab:" + sim.start_call("inbound_answered", caller="+34911000004", talk_seconds=3)
    for _ in range(70):
        await sim.advance(1)
    for key in [*live, after]:
        await until(f"gw-b to log {key}", lambda key=key: _has(b, key))
    assert b.gw.call_log is not None
    for key in live:  # joined in progress, yet a full answered call in the log
        record = await b.gw.call_log.get(key)
        assert record is not None
        assert record["outcome"] == "answered" and record["answered_by"] == "101"
        assert record["caller"] in ("+34911000002", "+34911000003")

    # each call is in exactly one store: the dead owner's calls in its store, the rest here
    assert await a.logged() == [short]
    assert await b.logged() == sorted([*live, after])

    # gw-a comes back (a new process on its store): a standby now, and it says so
    await a.close()
    a2: Instance = await cluster("gw-a")
    await until("gw-a to see gw-b's lease", lambda: a2.gw.cluster.owners["lab"].holder)
    status, doc = await a2.health()
    assert status == 200
    assert lab(doc)["owner"] == "gw-b" and lab(doc)["this_instance_owns"] is False

    # a planned stop of gw-b hands the lease back: gw-a goes on without waiting out the lease
    await b.close()
    handover = await until("gw-a to take over from a stopped gw-b", lambda: a2.linked)
    print(f"takeover after a planned stop: {handover:.2f}s")
    assert handover <= RENEW + 1.5
    assert await a2.logged() == [short]  # nothing logged twice on the way back


async def test_an_owner_that_loses_redis_stops_its_link_before_the_lease_can_pass(
    cluster: Callable[..., Any],
    redis_server: RedisServer,  # noqa: F811
) -> None:
    a: Instance = await cluster("gw-a")
    await until("gw-a to own the PBX and log in", lambda: a.linked)
    redis_server.stop()
    # the link must be down before Redis would free the lease to another instance
    stopped = await until(
        "gw-a to stop its link", lambda: not a.gw.links["lab"].health().connected, within=LEASE
    )
    assert stopped < LEASE
    status, doc = await a.health()
    assert status == 503  # nobody is known to own the PBX from here
    assert doc["cluster"]["redis_ok"] is False and doc["cluster"]["redis_error"]
    assert lab(doc)["this_instance_owns"] is False and lab(doc)["owner"] is None
    # Redis is back: the instance was never stopped by the outage and takes the PBX again
    redis_server.start()
    await until("gw-a to own the PBX again", lambda: a.linked, within=LEASE + 5)
    status, doc = await a.health()
    assert status == 200 and doc["cluster"]["redis_ok"] is True


async def test_an_owner_that_cannot_reach_the_pbx_lets_another_instance_take_it(
    cluster: Callable[..., Any], sim: SimulatedPbx
) -> None:
    unreachable = _closed_port()
    a: Instance = await cluster("gw-a", port=unreachable)  # its route to the PBX is broken
    await until("gw-a to take the lease", lambda: a.owns)
    b: Instance = await cluster("gw-b")
    took = await until("gw-b to take over the PBX gw-a cannot reach", lambda: b.linked)
    assert took <= 2.0 + RENEW + 2.0  # link_grace_seconds, a renewal, connecting
    assert not a.owns
    # gw-a cannot reach the PBX, but the PBX has an owner that can: gw-a is healthy (200)
    await until("gw-a to see gw-b's lease", lambda: _health_names(a, "gw-b"))


async def test_an_owner_frozen_past_its_lease_logs_nothing_it_reads_on_waking(
    cluster: Callable[..., Any], sim: SimulatedPbx
) -> None:
    """A process that stops for longer than its lease (a long pause, a suspended VM) may wake
    up after another instance took the PBX: what it reads then is not its to log."""
    a: Instance = await cluster("gw-a")
    await until("gw-a to own the PBX and log in", lambda: a.linked)
    key = "lab:" + sim.start_call("inbound_answered", caller="+34911000009", talk_seconds=5)
    await sim.advance(2)
    await until("gw-a to track the call", lambda: a.gw.trackers["lab"].open_calls == 1)
    assert isinstance(sim.clock, ManualClock)
    sim.clock.advance(10)  # the call ends: its Hangup is on the wire, not read yet
    time.sleep(LEASE + 0.2)  # noqa: ASYNC251 (the whole process freezes, on purpose)
    await until(
        "gw-a to stop and take the PBX again", lambda: a.gw.cluster.owners["lab"].takeovers == 2
    )
    await until("gw-a to log in again", lambda: a.linked)
    assert not sim.channels  # the call is over on the PBX...
    assert key not in await a.logged()  # ...but its end, read after the lease lapsed, is not
    assert await a.logged() == []
    assert a.gw.trackers["lab"].open_calls == 0


async def test_an_owner_killed_with_sigkill_is_replaced_and_its_live_call_logged_once(
    tmp_path: Path,
    cluster: Callable[..., Any],
    sim: SimulatedPbx,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    """The real thing: ``centralita run`` in its own process owns the PBX and is killed with
    SIGKILL mid-call (no code of it runs: no release, no Logoff); the standby takes over."""
    port = _closed_port()
    config_file = tmp_path / "gw-a.yaml"
    config_file.write_text(
        f"""
pbx:
  - {{name: lab, port: {sim.port}, username: gateway, secret: gw, ping_interval: 1,
      reconnect: {{initial: 0.05, maximum: 0.2}}}}
tracking: {{agent_contexts: [agents], inbound_contexts: [from-pstn], click_to_call_context: outbound}}
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

    async def open_calls() -> int | None:
        """gw-a's open calls from its /health while it owns the PBX (None otherwise)."""
        try:
            async with http.get(f"http://127.0.0.1:{port}/health") as r:
                doc = await r.json()
        except aiohttp.ClientError:  # not up yet
            return None
        (line,) = doc["pbx"]
        owns = line["this_instance_owns"] and line["logged_in"]
        return doc["open_calls"]["lab"] if owns else None

    try:
        await until("gw-a (a process) to own the PBX", lambda: _is(open_calls(), 0), 30)
        b: Instance = await cluster("gw-b")
        await until("gw-b to see gw-a's lease", lambda: b.gw.cluster.owners["lab"].holder)
        key = "lab:" + sim.start_call("inbound_answered", caller="+34911000005", talk_seconds=30)
        for _ in range(5):
            await sim.advance(1)
        await until("gw-a to track the call", lambda: _is(open_calls(), 1))
        proc.kill()
        await proc.wait()
        took = await until("gw-b to take over", lambda: b.linked, within=LEASE + 5)
        print(f"takeover after SIGKILL: {took:.2f}s")
        assert took <= LEASE + 1.0
        await until("gw-b to join the call", lambda: b.gw.trackers["lab"].open_calls == 1)
        for _ in range(40):
            await sim.advance(1)
        await until(f"gw-b to log {key}", lambda: _has(b, key))
        assert await b.logged() == [key]
        with sqlite3.connect(tmp_path / "gw-a" / "centralita.db") as db:
            assert db.execute("SELECT id FROM calls").fetchall() == []
    finally:
        await http.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _is(value: Any, expected: Any) -> bool:
    return await value == expected


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _health_names(instance: Instance, owner: str) -> bool:
    status, doc = await instance.health()
    return status == 200 and lab(doc)["owner"] == owner


async def _has(instance: Instance, key: str) -> bool:
    return key in await instance.logged()
