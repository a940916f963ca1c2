"""What a request carried to the PBX's owner costs (gateway/cluster/relay.py).

    python bench/relay.py [--requests 300] [--echo 2000]

A redis-server and the simulated PBX (real AMI over TCP on loopback) run here, with two
gateways in this process: gw-a owns the PBX, gw-b stands by. An agent signed in on both holds
a call the PBX keeps up; the bench then alternates, request by request, between asking gw-a
(the owner: it acts itself) and gw-b (it forwards to gw-a through Redis), and prints the HTTP
latency of each kind as the agent's browser would see it:

* hold + resume of the live call (each: the owner reads the call's channels, then acts);
* click-to-call (``POST /panel/api/originate`` until its answer; the Originate itself is sent
  after the answer, on the owner's link).

Then ``--echo`` bare relay round trips (a handler that answers at once), one at a time and 50
at a time, to show the relay's own share. The machine is shared: run it twice and compare.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
from aiohttp.test_utils import TestClient, TestServer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from argon2 import PasswordHasher  # noqa: E402

from gateway.app import Gateway, create_app  # noqa: E402
from gateway.calls.settings import TrackingSettings  # noqa: E402
from gateway.cluster.relay import OwnerRelay  # noqa: E402
from gateway.cluster.settings import ClusterSettings  # noqa: E402
from gateway.config import (  # noqa: E402
    GatewayConfig,
    PbxSettings,
    ReconnectSettings,
    StoreSettings,
)
from gateway.panel.routes import PANEL  # noqa: E402
from gateway.panel.sessions import COOKIE  # noqa: E402
from gateway.panel.settings import PanelSettings  # noqa: E402
from gateway.sim.clock import ManualClock  # noqa: E402
from gateway.sim.pbx import SimulatedPbx  # noqa: E402
from gateway.sim.state import Phone  # noqa: E402
from tests.redis_fixtures import RedisServer  # noqa: E402

PASSWORD = "bench-relay-password-1"


def config(root: Path, name: str, pbx_port: int, redis_url: str) -> GatewayConfig:
    pbx = PbxSettings(
        name="lab", port=pbx_port, username="gateway", secret="gw", ping_interval=5.0,
        reconnect=ReconnectSettings(initial=0.05, maximum=0.2),
    )  # fmt: skip
    return GatewayConfig(
        pbx=[pbx],
        store=StoreSettings(path=str(root / name / "centralita.db")),
        tracking=TrackingSettings(),
        panel=PanelSettings(originate_limit=1_000_000, originate_window=1),
        cluster=ClusterSettings(redis_url=redis_url, instance=name),
    )


def figures(label: str, seconds: list[float]) -> None:
    ms = sorted(s * 1000 for s in seconds)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    print(
        f"  {label:<34} n={len(ms):<5} p50 {statistics.median(ms):6.2f} ms"
        f"  p99 {p99:6.2f} ms  max {ms[-1]:6.2f} ms"
    )


async def wait_for(what: str, condition: Any, within: float = 15) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def main(args: argparse.Namespace) -> None:
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="centralita-bench-relay-"))
    redis = RedisServer()
    redis.start()
    sim = SimulatedPbx(secret="gw", clock=ManualClock(), flavour="pjsip")
    await sim.start()
    clients: list[TestClient[Any, Any]] = []
    try:
        nodes = []
        for name in ("gw-a", "gw-b"):
            cfg = config(root, name, sim.port, redis.url)
            gw = Gateway(cfg, clock=sim.clock.now)
            client = TestClient(TestServer(await create_app(cfg, gw)))
            await client.start_server()
            clients.append(client)
            client.app[PANEL].users.hasher = PasswordHasher(
                time_cost=1, memory_cost=8192, parallelism=1
            )
            nodes.append((gw, client))
            if name == "gw-a":
                link = gw.links["lab"]
                await wait_for("gw-a to own the PBX", lambda link=link: link.health().logged_in)
        (_, client_a), (_, client_b) = nodes
        cookies = {}
        for client in (client_a, client_b):
            panel = client.app[PANEL]
            await panel.users.add("ana", PASSWORD, "agent", ["101"], "Ana")
            resp = await client.post(
                "/panel/api/login", json={"username": "ana", "password": PASSWORD}
            )
            cookies[client] = resp.cookies[COOKIE].value
        sim.phones["101"] = Phone(ring=1.0, answer=True)
        key = "lab:" + sim.start_call("inbound", agent="101", talk_seconds=10_000)
        for _ in range(3):
            await sim.advance(1)
        board = client_a.app[PANEL].board
        await wait_for("ana to answer", lambda: key in board.calls and board.calls[key].answered_by)

        async def post(client: TestClient[Any, Any], path: str, body: Any) -> float:
            started = time.perf_counter()
            resp = await client.post(
                path, json=body, cookies={COOKIE: cookies[client]},
                headers={"Origin": f"http://{client.host}:{client.port}"},
            )  # fmt: skip
            await resp.read()
            took = time.perf_counter() - started
            if resp.status != 200:
                raise SystemExit(f"{path} answered {resp.status}: {await resp.text()}")
            return took

        took: dict[str, list[float]] = {}
        for i in range(args.requests):  # alternate: the same machine state for both
            order = [("owner", client_a), ("standby", client_b)]
            for where, client in order if i % 2 == 0 else order[::-1]:
                t = await post(client, f"/panel/api/calls/{key}/hold", {})
                t += await post(client, f"/panel/api/calls/{key}/resume", {})
                took.setdefault(f"hold+resume via {where}", []).append(t)
                t = await post(client, "/panel/api/originate", {"number": "+34911234567"})
                took.setdefault(f"click-to-call via {where}", []).append(t)
        for _ in range(20):  # the click-to-calls ring out (no answer, no customer)
            await sim.advance(10)
            await asyncio.sleep(0.05)
        print(f"HTTP, {args.requests} of each, alternating owner and standby:")
        for label in sorted(took):
            figures(label, took[label])

        settings = ClusterSettings(redis_url=redis.url, instance="echo-a")
        owner = OwnerRelay(settings, {"echo": None})
        asker = OwnerRelay(msgspec.structs.replace(settings, instance="echo-b"), {"echo": None})

        async def echo(pbx: str, body: dict[str, Any]) -> Any:
            return body

        owner.handle("echo", echo)
        await owner.start()
        await asker.start()
        await owner.redis.set("centralita:pbx:echo:lease", "echo-a|1")
        one: list[float] = []
        for _ in range(args.echo):
            started = time.perf_counter()
            await asker.call("echo", "echo", {"x": 1}, within=5)
            one.append(time.perf_counter() - started)

        async def timed() -> float:
            started = time.perf_counter()
            await asker.call("echo", "echo", {"x": 1}, within=5)
            return time.perf_counter() - started

        many: list[float] = []
        t0 = time.perf_counter()
        for _ in range(args.echo // 50):
            many += await asyncio.gather(*(timed() for _ in range(50)))
        rate = len(many) / (time.perf_counter() - t0)
        print(f"relay round trips (echo handler), {args.echo} of each:")
        figures("one at a time", one)
        figures(f"50 at a time ({rate:,.0f}/s)", many)
        await asker.close()
        await owner.close()
    finally:
        for client in reversed(clients):
            await client.close()
        await sim.stop()
        redis.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--echo", type=int, default=2000)
    asyncio.run(main(parser.parse_args()))
