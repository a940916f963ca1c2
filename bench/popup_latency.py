"""Ring-to-pop-up latency with 1,000 agents connected and 50 new calls per second.

The server process runs the simulated PBX (real AMI over TCP on loopback), the gateway (AMI
link, tracker, store lookup) and the panel's websocket hub. A separate process holds 1,000
agent websockets (the ``websockets`` library) and timestamps every ``call.ringing`` pop-up as
it arrives. Latency = arrival at the agent's socket minus the moment the PBX wrote the first
frame of the call's ringing burst to its socket (an upper bound: the frame that actually
starts the ring is a few frames later in the same burst). Both processes read the same wall
clock (``time.time``) on one machine.

    python bench/popup_latency.py [--agents 1000] [--rate 50] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing as mp
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp import web

from gateway.app import Gateway, create_app, settle
from gateway.config import GatewayConfig, PbxSettings, StoreSettings
from gateway.panel.routes import PANEL
from gateway.panel.users import Role, User
from gateway.sim.pbx import SimulatedPbx


class TimedPbx(SimulatedPbx):
    """The simulated PBX, noting when the first frame of each call left for the socket."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.first_sent: dict[str, float] = {}

    def _emit_frame(self, call: Any, tf: Any) -> None:
        if call.linkedid not in self.first_sent:
            self.first_sent[call.linkedid] = time.time()
        super()._emit_frame(call, tf)


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# -- the agents' process ----------------------------------------------------------------------


def agents_process(url: str, origin: str, tokens: list[str], ready: Any, results: Any) -> None:
    asyncio.run(_agents(url, origin, tokens, ready, results))


async def _agents(url: str, origin: str, tokens: list[str], ready: Any, results: Any) -> None:
    import websockets

    arrivals: dict[str, float] = {}
    counts = {"messages": 0}

    async def agent(token: str) -> None:
        async with websockets.connect(
            url,
            origin=origin,
            additional_headers={"Cookie": f"centralita_session={token}"},
            max_queue=None,
            compression=None,
        ) as ws:
            connected.append(1)
            if len(connected) == len(tokens):
                all_in.set()
            async for raw in ws:
                now = time.time()
                counts["messages"] += 1
                if '"type":"call.ringing"' in raw:
                    linkedid = json.loads(raw)["data"]["call"]["linkedid"]
                    arrivals.setdefault(linkedid, now)

    connected: list[int] = []
    all_in = asyncio.Event()
    tasks = []
    for i in range(0, len(tokens), 100):  # connect in waves: a SYN flood helps nobody
        tasks += [asyncio.create_task(agent(t)) for t in tokens[i : i + 100]]
        await asyncio.sleep(0.05)
    await all_in.wait()
    # the measuring side must not add its own pauses to the figures: no GC while it listens
    gc.disable()
    ready.set()
    # the server tells us when traffic is over by putting None on the results queue
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, results.get)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    results.put({"arrivals": arrivals, "messages": counts["messages"]})


# -- the server ---------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> None:
    state = Path(tempfile.mkdtemp(prefix="centralita-bench-"))
    pbx = TimedPbx(flavour="pjsip", rng=random.Random(1))
    pbx.queues.clear()
    await pbx.start()
    cfg = GatewayConfig(
        pbx=[PbxSettings(name="bench", port=pbx.port, username="gateway", secret="gw-lab-secret")],
        store=StoreSettings(path=str(state / "bench.db")),
    )
    gw = Gateway(cfg)
    app = await create_app(cfg, gw)  # the app `centralita run` serves
    panel = app[PANEL]
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    for _ in range(500):
        if gw.links["bench"].health().logged_in:
            break
        await asyncio.sleep(0.01)

    # 1,000 agents, each at their own extension, each with a session (no argon2 in the loop)
    extensions = [str(2000 + i) for i in range(args.agents)]
    tokens = []
    async with gw.db.transaction() as conn:
        await conn.executemany(
            "INSERT INTO users (username, display_name, role, password_hash, extensions,"
            " created_at, updated_at) VALUES (?, ?, 'agent', 'x', ?, 0, 0)",
            [(f"agent{e}", f"Agent {e}", json.dumps([e])) for e in extensions],
        )
    for ext in extensions:
        user = User(f"agent{ext}", f"Agent {ext}", Role.AGENT, (ext,))
        token, s = await panel.sessions.create(user, (ext,))
        panel.board.sign_in(s.username, s.display_name, "agent", s.extensions)
        tokens.append(token)

    rss_before = rss_kib()
    ctx = mp.get_context("spawn")
    ready, results = ctx.Event(), ctx.Queue()
    origin = f"http://127.0.0.1:{port}"
    proc = ctx.Process(
        target=agents_process,
        args=(f"ws://127.0.0.1:{port}/panel/ws", origin, tokens, ready, results),
    )
    proc.start()
    await asyncio.get_running_loop().run_in_executor(None, ready.wait)
    await asyncio.sleep(0.5)
    rss_after = rss_kib()
    print(f"agents connected: {panel.hub.connections()}  ")

    lags: list[float] = []

    async def watch_loop() -> None:
        # how late the server's event loop wakes up: time it could not spend on pop-ups
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append((time.perf_counter() - t - 0.005) * 1000)

    gc_pauses: list[float] = []
    gc_start = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_start[0] = time.perf_counter()
        else:
            gc_pauses.append((time.perf_counter() - gc_start[0]) * 1000)

    gc.callbacks.append(on_gc)
    if not args.no_freeze:
        await settle(gw)  # what `centralita run` does once it listens
    watcher = asyncio.create_task(watch_loop())
    cpu0 = time.process_time()
    sent_before = panel.hub.messages_sent
    t0 = time.monotonic()
    n_calls = int(args.rate * args.seconds)
    started: list[str] = []
    for i in range(n_calls):
        due = t0 + i / args.rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        ext = extensions[i % len(extensions)]
        caller = f"+3460{random.randrange(10**7):07d}"
        started.append(
            pbx.start_call(
                "inbound_answered", agent=ext, caller=caller, ring_seconds=2.0, talk_seconds=3.0
            )
        )
    await asyncio.sleep(6)  # let the last calls ring, answer and end
    elapsed = time.monotonic() - t0
    cpu = time.process_time() - cpu0
    watcher.cancel()
    gc.callbacks.remove(on_gc)
    sent = panel.hub.messages_sent - sent_before
    results.put(None)
    report = await asyncio.get_running_loop().run_in_executor(None, results.get)
    proc.join(10)
    await runner.cleanup()
    await pbx.stop()

    lat = sorted(
        (report["arrivals"][lid] - pbx.first_sent[lid]) * 1000
        for lid in started
        if lid in report["arrivals"] and lid in pbx.first_sent
    )
    missing = len(started) - len(lat)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, round(p / 100 * (len(lat) - 1)))]

    print(f"calls started: {len(started)} at {args.rate:g}/s over {args.seconds:g} s")
    print(f"pop-ups received: {len(lat)} (missing {missing})")
    if lat:
        print(
            f"ring-to-pop-up latency ms: p50 {pct(50):.2f}  p99 {pct(99):.2f}  "
            f"max {lat[-1]:.2f}  mean {statistics.fmean(lat):.2f}"
        )
    print(f"hub messages sent: {sent} ({sent / elapsed:.0f}/s over {elapsed:.1f} s)")
    print(f"agent process received: {report['messages']} messages")
    print(
        f"server GC: {len(gc_pauses)} collections, longest {max(gc_pauses, default=0):.1f} ms,"
        f" total {sum(gc_pauses):.0f} ms"
    )
    lags.sort()
    if lags:
        print(
            f"server event-loop lag ms: p50 {lags[len(lags) // 2]:.2f}  "
            f"p99 {lags[int(len(lags) * 0.99)]:.2f}  max {lags[-1]:.2f}; "
            f"server CPU {100 * cpu / elapsed:.0f}% of one core (PBX simulator included)"
        )
    per_conn = (rss_after - rss_before) * 1024 / max(1, args.agents)
    print(
        f"server RSS: {rss_before / 1024:.1f} MiB before agents, {rss_after / 1024:.1f} MiB "
        f"with {args.agents} sockets = {per_conn / 1024:.1f} KiB per connection"
    )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, default=1000)
    p.add_argument("--rate", type=float, default=50.0)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument(
        "--no-freeze", action="store_true", help="skip the server's gc.freeze() after start-up"
    )
    asyncio.run(main(p.parse_args()))
