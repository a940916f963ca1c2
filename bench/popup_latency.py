"""Ring-to-pop-up latency with 1,000 agents connected and 50 new calls per second.

The server process runs the simulated PBX (real AMI over TCP on loopback), the gateway (AMI
link, tracker, store lookup) and the panel's websocket hub. A separate process holds 1,000
agent websockets (the ``websockets`` library) and timestamps every ``call.ringing`` pop-up as
it arrives. Ring-to-pop-up latency = arrival at the agent's socket minus the moment the PBX
wrote the frame that starts the phone's ring to its socket (DialBegin; AgentCalled for a
queue): before it the caller's channel runs its dialplan and no phone rings. The span from
the call's first frame is printed beside it, 2.7 ms longer in the captured timeline the
simulator replays (the burst before the ring). Both processes read the same wall clock
(``time.time``) on one machine.

    python bench/popup_latency.py [--agents 1000] [--rate 50] [--seconds 20]
        [--stages] [--pbx-process] [--clients N] [--agents-after-settle] [--profile FILE]
        [--instances 2]

``--instances 2`` runs a cluster (docs/scale-out.md): a redis-server on loopback (Debian's,
as the tests start it), instance A in the server process (it owns the PBX, tracks the calls
and publishes the pop-ups) and instance B in a process of its own; the agents are split
between them (every other one connects to B), so half the pop-ups cross Redis to reach their
socket. Each agent is signed in only on the instance that holds their socket: A seats its
half, B its own, and A (the PBX owner) learns B's through the shared board in Redis
(gateway/cluster/board.py). Each instance has its own SQLite store; B is handed a copy of the
session rows A made for B's agents (sessions are not shared across instances yet). Latency is
the same span, measured for every agent wherever its socket is; RSS per connection adds both
instances' growth.

``--stages`` also prints where the time goes, per call: the PBX's own gap from the first frame
of the burst to the frame that starts the ring (DialBegin, 2.7 ms of the capture's timeline
that no gateway can shorten; until the simulator rendered frames one at a time it wrote the
first frame ~1.3 ms late, after rendering the whole call, which shortened this span), the
link's read, the tracker's CallRinging, the hub's publish (lookup done), the socket write and
the arrival, and the gateway's whole share (ring frame -> receive). ``--pbx-process`` runs
the simulated PBX in a process of its own, as in production, so that its CPU and its
garbage are not charged to the gateway; the default keeps it in the server process. The
agents' process reports its own event-loop lag (how late it may stamp an arrival);
``--clients N`` spreads the sockets over N processes.
By default the agents connect before the server's ``settle()`` (their sockets are frozen
out of the collector's sight with the rest); ``--agents-after-settle`` connects them after,
as in production, where every full collection walks them. The server's RSS is sampled
every 5 s while calls ring: over a long run (``--seconds 120``) it must stay flat but for the
hub's replay buffers, printed beside it, which fill up to their bound (256 messages per agent:
~12 minutes of this traffic) and then stay. ``--profile FILE`` writes cProfile stats of the
server while calls ring.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing as mp
import random
import re
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

# the phone starts ringing when Asterisk dials it: DialBegin (AgentCalled for a queue member);
# the frames before it (the caller's channel, its dialplan steps) ring nothing yet
RING_EVENTS = frozenset({"DialBegin", "AgentCalled"})


class TimedPbx(SimulatedPbx):
    """The simulated PBX, noting when the first frame of each call left for the socket."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.first_sent: dict[str, float] = {}
        self.ring_sent: dict[str, float] = {}  # the frame that starts the ring (RING_EVENTS)
        self.sent_log: dict[tuple[str, str], float] | None = None  # --stages: (lid, Event)

    def _emit_frame(self, call: Any, tf: Any) -> None:
        if call.linkedid not in self.first_sent:
            self.first_sent[call.linkedid] = time.time()
        if tf.headers.get("Event") in RING_EVENTS and call.linkedid not in self.ring_sent:
            self.ring_sent[call.linkedid] = time.time()
        if self.sent_log is not None:
            self.sent_log.setdefault((call.linkedid, tf.headers.get("Event", "")), time.time())
        super()._emit_frame(call, tf)


async def watch_loop(lags: list[float]) -> None:
    """Record how late this process's event loop wakes from a 5 ms sleep, in ms: lateness it
    adds to whatever it measures (the server: time it could not spend on pop-ups)."""
    while True:
        t = time.perf_counter()
        await asyncio.sleep(0.005)
        lags.append((time.perf_counter() - t - 0.005) * 1000)


async def sample_rss(samples: list[int], every: float = 5.0) -> None:
    """Note this process's RSS (KiB) every ``every`` s: memory must stay flat while calls
    come and go, whatever the collector does."""
    while True:
        samples.append(rss_kib())
        await asyncio.sleep(every)


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# -- the agents' process ----------------------------------------------------------------------


def agents_process(
    url: str, origin: str, tokens: list[str], ready: Any, results: Any, stop: Any
) -> None:
    asyncio.run(_agents(url, origin, tokens, ready, results, stop))


async def _agents(
    url: str, origin: str, tokens: list[str], ready: Any, results: Any, stop: Any
) -> None:
    import websockets

    arrivals: dict[str, float] = {}
    counts = {"messages": 0}
    lags: list[float] = []

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
    watcher = asyncio.create_task(watch_loop(lags))
    ready.set()
    # the server tells us when traffic is over by setting ``stop``
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, stop.wait)
    watcher.cancel()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    results.put({"arrivals": arrivals, "messages": counts["messages"], "lags": lags})


# -- stage stamps (--stages) ------------------------------------------------------------------

_LINKEDID = re.compile(r'"linkedid":"([^"]*)"')


def install_stage_stamps(gw: Gateway, panel: Any) -> dict[str, dict[str, float]]:
    """Wrap the pop-up path to note, per call, when (``time.time``) it passed each stage:
    ``read`` the link's read of the chunk holding the call's first frame, ``ringing`` the
    tracker's first CallRinging, ``publish`` the hub's publish of the pop-up (lookup done),
    ``write`` the start of its socket write and ``written`` the return of that write. The
    stamps cost the server a few microseconds each; run without --stages for the figures."""
    from gateway.ami.link import _LinkProtocol
    from gateway.calls.events import CallRinging

    stamps: dict[str, dict[str, float]] = {
        k: {} for k in ("read", "ringing", "publish", "write", "written")
    }
    chunk_at = [0.0]
    orig_data = _LinkProtocol.data_received

    def data_received(self: Any, data: bytes) -> None:
        chunk_at[0] = time.time()
        orig_data(self, data)

    _LinkProtocol.data_received = data_received  # type: ignore[method-assign]
    link = gw.links["bench"]
    orig_event = link.event_received

    def event_received(frame: Any) -> None:
        lid = frame.get("Linkedid")
        if lid:
            stamps["read"].setdefault(lid, chunk_at[0])
        current[0] = frame.get("Event", "")
        orig_event(frame)

    link.event_received = event_received  # type: ignore[method-assign]
    current = [""]
    trigger: dict[str, str] = {}  # linkedid -> the Event whose frame made the tracker ring

    def on_ringing(e: CallRinging) -> None:
        if e.linkedid not in stamps["ringing"]:
            stamps["ringing"][e.linkedid] = time.time()
            trigger[e.linkedid] = current[0]

    gw.bus.subscribe(CallRinging, on_ringing)
    handlers = gw.bus._handlers[CallRinging]  # stamp before the panel's handler runs
    handlers.insert(0, handlers.pop())
    stamps["trigger"] = trigger  # type: ignore[assignment]
    hub = panel.hub
    orig_publish = hub.publish

    def publish(agents: Any, message: Any, **kw: Any) -> None:
        if message.type == "call.ringing":
            found = _LINKEDID.search(message.tail)
            if found:
                stamps["publish"].setdefault(found.group(1), time.time())
        orig_publish(agents, message, **kw)

    hub.publish = publish
    orig_send = web.WebSocketResponse.send_str

    async def send_str(self: Any, data: str, compress: int | None = None) -> None:
        found = _LINKEDID.search(data) if '"type":"call.ringing"' in data else None
        if found:
            stamps["write"].setdefault(found.group(1), time.time())
        await orig_send(self, data, compress)
        if found:
            stamps["written"].setdefault(found.group(1), time.time())

    web.WebSocketResponse.send_str = send_str  # type: ignore[method-assign]
    return stamps


def print_stages(
    first: dict[str, float],
    log: dict[tuple[str, str], float] | None,
    started: list[str],
    stamps: dict[str, dict[str, float]],
) -> None:
    trigger: dict[str, Any] = stamps["trigger"]
    log = log or {}
    names: dict[str, int] = {}
    for name in trigger.values():
        names[name] = names.get(name, 0) + 1
    print(f"  the frame that starts the ring: {names}")
    for title, a, b in (
        ("pbx first frame -> pbx ring frame", first, None),
        ("pbx ring frame -> tracker ringing", None, stamps["ringing"]),
        # the gateway's whole share: from the frame that starts the ring to the pop-up
        ("pbx ring frame -> receive", None, stamps["receive"]),
    ):
        d = []
        for lid in started:
            t_ring = log.get((lid, trigger.get(lid, "")))
            if t_ring is None or lid not in first:
                continue
            if a is not None:
                d.append((t_ring - a[lid]) * 1000)
            elif b is not None and lid in b:
                d.append((b[lid] - t_ring) * 1000)
        d.sort()
        if d:
            print(
                f"  {title} ms: p50 {d[len(d) // 2]:.3f}  "
                f"p99 {d[min(len(d) - 1, round(0.99 * (len(d) - 1)))]:.3f}  max {d[-1]:.3f}"
            )
    order = ["read", "ringing", "publish", "write", "written", "receive"]
    prev = "pbx write"
    prev_map = first
    for name in order:
        cur = stamps[name]
        d = sorted(
            (cur[lid] - prev_map[lid]) * 1000 for lid in started if lid in cur and lid in prev_map
        )
        if d:
            print(
                f"  stage {prev:>9} -> {name:<8} ms: p50 {d[len(d) // 2]:.3f}  "
                f"p99 {d[min(len(d) - 1, round(0.99 * (len(d) - 1)))]:.3f}  max {d[-1]:.3f}"
            )
        prev, prev_map = name, cur


# -- the PBX's calls (in the server process, or with --pbx-process in its own) ---------------


async def drive_calls(
    pbx: TimedPbx, extensions: list[str], rate: float, seconds: float
) -> list[str]:
    t0 = time.monotonic()
    started: list[str] = []
    for i in range(int(rate * seconds)):
        due = t0 + i / rate
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
    return started


def pbx_process(
    extensions: list[str],
    rate: float,
    seconds: float,
    stages: bool,
    port: Any,
    go: Any,
    results: Any,
) -> None:
    asyncio.run(_pbx(extensions, rate, seconds, stages, port, go, results))


async def _pbx(
    extensions: list[str],
    rate: float,
    seconds: float,
    stages: bool,
    port: Any,
    go: Any,
    results: Any,
) -> None:
    pbx = TimedPbx(flavour="pjsip", rng=random.Random(1))
    pbx.queues.clear()
    await pbx.start()
    port.put(pbx.port)
    await asyncio.get_running_loop().run_in_executor(None, go.wait)
    if stages:
        pbx.sent_log = {}
    started = await drive_calls(pbx, extensions, rate, seconds)
    await asyncio.sleep(6)  # let the last calls ring, answer and end
    results.put(
        {
            "started": started,
            "first_sent": pbx.first_sent,
            "ring_sent": pbx.ring_sent,
            "sent_log": pbx.sent_log,
        }
    )
    await pbx.stop()


# -- instance B (--instances 2) ----------------------------------------------------------------


def instance_b_process(
    db_a: str, agents: list[str], pbx_port: int, redis_url: str, out: Any, go: Any, done: Any
) -> None:
    asyncio.run(_instance_b(db_a, agents, pbx_port, redis_url, out, go, done))


async def copy_sessions(db: Any, db_a: str, agents: list[str]) -> None:
    """The users of A's store, and the sessions A made for ``agents``, into this one's:
    sessions are not shared across instances yet (docs/scale-out.md), so the bench hands B
    the ones A made for B's agents (signed in on B only; A seats them through Redis)."""
    await db.conn.execute("ATTACH DATABASE ? AS a", (db_a,))
    async with db.transaction() as conn:
        await conn.execute("INSERT OR IGNORE INTO users SELECT * FROM a.users")
        await conn.execute(
            "INSERT OR IGNORE INTO sessions SELECT * FROM a.sessions"
            " WHERE username IN (SELECT value FROM json_each(?))",
            (json.dumps(agents),),
        )
    await db.conn.execute("DETACH DATABASE a")


async def _instance_b(
    db_a: str, agents: list[str], pbx_port: int, redis_url: str, out: Any, go: Any, done: Any
) -> None:
    """A second gateway on the same Redis, with its own store: standby for the PBX, it holds
    half the sockets."""
    from gateway.cluster.settings import ClusterSettings

    cfg = GatewayConfig(
        pbx=[PbxSettings(name="bench", port=pbx_port, username="gateway", secret="gw-lab-secret")],
        store=StoreSettings(path=str(Path(db_a).with_name("bench-b.db"))),
        cluster=ClusterSettings(redis_url=redis_url, instance="bench-b"),
    )
    gw = Gateway(cfg)
    app = await create_app(cfg, gw)
    await copy_sessions(gw.db, db_a, agents)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    await settle(gw)
    loop = asyncio.get_running_loop()
    out.put((port, rss_kib()))
    await loop.run_in_executor(None, go.wait)  # the agents are in
    panel = app[PANEL]
    out.put((panel.hub.connections(), rss_kib()))
    await loop.run_in_executor(None, done.wait)
    await runner.cleanup()


# -- the server ---------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> None:
    state = Path(tempfile.mkdtemp(prefix="centralita-bench-"))
    ctx = mp.get_context("spawn")
    extensions = [str(2000 + i) for i in range(args.agents)]
    pbx: TimedPbx | None = None
    if args.pbx_process:
        pbx_port, pbx_go, pbx_results = ctx.Queue(), ctx.Event(), ctx.Queue()
        pbx_proc = ctx.Process(
            target=pbx_process,
            args=(extensions, args.rate, args.seconds, args.stages, pbx_port, pbx_go, pbx_results),
        )
        pbx_proc.start()
        port_of_pbx = await asyncio.get_running_loop().run_in_executor(None, pbx_port.get)
    else:
        pbx = TimedPbx(flavour="pjsip", rng=random.Random(1))
        pbx.queues.clear()
        await pbx.start()
        port_of_pbx = pbx.port
    redis_server = None
    cluster = None
    if args.instances == 2:
        from gateway.cluster.settings import ClusterSettings
        from tests.redis_fixtures import RedisServer

        redis_server = RedisServer()
        redis_server.start()
        cluster = ClusterSettings(redis_url=redis_server.url, instance="bench-a")
    cfg = GatewayConfig(
        pbx=[
            PbxSettings(name="bench", port=port_of_pbx, username="gateway", secret="gw-lab-secret")
        ],
        store=StoreSettings(path=str(state / "bench.db")),
        cluster=cluster,
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
    tokens = []
    async with gw.db.transaction() as conn:
        await conn.executemany(
            "INSERT INTO users (username, display_name, role, password_hash, extensions,"
            " created_at, updated_at) VALUES (?, ?, 'agent', 'x', ?, 0, 0)",
            [(f"agent{e}", f"Agent {e}", json.dumps([e])) for e in extensions],
        )
    for i, ext in enumerate(extensions):
        user = User(f"agent{ext}", f"Agent {ext}", Role.AGENT, (ext,))
        token, s = await panel.sessions.create(user, (ext,))
        if i % args.instances == 0:  # the others sign in on B (below), not here
            panel.board.sign_in(s.username, s.display_name, "agent", s.extensions)
            if panel.shared_board is not None:  # as a sign-in through the panel announces it
                panel.shared_board.changed(s.username)
        tokens.append(token)

    if args.agents_after_settle and not args.no_freeze:
        await settle(gw)  # production's order: settled when it listens, agents sign in later
    ports = [port]
    b_proc = None
    if redis_server is not None:  # instance B, on the same store and Redis
        b_out, b_go, b_done = ctx.Queue(), ctx.Event(), ctx.Event()
        b_proc = ctx.Process(
            target=instance_b_process,
            args=(
                str(state / "bench.db"),
                [f"agent{e}" for e in extensions[1::2]],  # every other agent is on B
                port_of_pbx,
                redis_server.url,
                b_out,
                b_go,
                b_done,
            ),
        )
        b_proc.start()
        port_b, b_rss_before = await asyncio.get_running_loop().run_in_executor(None, b_out.get)
        ports.append(port_b)
        deadline = time.monotonic() + 30  # A seats B's agents from the shared board
        while sum(a.signed_in for a in panel.board.agents.values()) < len(extensions):
            if time.monotonic() > deadline:
                raise SystemExit("instance A did not seat B's agents within 30 s")
            await asyncio.sleep(0.05)
    rss_before = rss_kib()
    results, stop = ctx.Queue(), ctx.Event()
    procs, readies = [], []
    n_proc = max(1, args.clients)
    for i, on in enumerate(ports):  # with two instances, every other agent is on B
        mine = tokens[i :: len(ports)]
        for k in range(n_proc):
            ready = ctx.Event()
            proc = ctx.Process(
                target=agents_process,
                args=(
                    f"ws://127.0.0.1:{on}/panel/ws",
                    f"http://127.0.0.1:{on}",
                    mine[k::n_proc],
                    ready,
                    results,
                    stop,
                ),
            )
            # starting a spawned process holds the caller ~1 s: not on the loop, whose PBX
            # lease (--instances 2) must be renewed within 2.75 s
            await asyncio.get_running_loop().run_in_executor(None, proc.start)
            procs.append(proc)
            readies.append(ready)
    for ready in readies:
        await asyncio.get_running_loop().run_in_executor(None, ready.wait)
    await asyncio.sleep(0.5)
    b_conns, b_rss_after = 0, 0
    if b_proc is not None:
        b_go.set()
        b_conns, b_rss_after = await asyncio.get_running_loop().run_in_executor(None, b_out.get)
    stages = install_stage_stamps(gw, panel) if args.stages else None
    if args.stages and pbx is not None:
        pbx.sent_log = {}
    rss_after = rss_kib()
    print(
        f"agents connected: {panel.hub.connections()}"
        + (f" on A (PBX owner), {b_conns} on B" if b_proc is not None else "")
    )

    lags: list[float] = []

    gc_pauses: list[float] = []
    gc_start = [0.0]
    gc_gens: list[int] = []

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_start[0] = time.perf_counter()
        else:
            gc_pauses.append((time.perf_counter() - gc_start[0]) * 1000)
            gc_gens.append(info["generation"])

    gc.callbacks.append(on_gc)
    if not args.no_freeze and not args.agents_after_settle:
        await settle(gw)  # what `centralita run` does once it listens
    settle_gc = list(zip(gc_pauses, gc_gens, strict=True))
    gc_pauses.clear()
    gc_gens.clear()  # from here on: collections while phones ring
    watcher = asyncio.create_task(watch_loop(lags))
    rss_samples: list[int] = []
    rss_sampler = asyncio.create_task(sample_rss(rss_samples))
    profiler = None
    if args.profile:  # the server's CPU while phones ring, not its start-up
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    cpu0 = time.process_time()
    sent_before = panel.hub.messages_sent
    t0 = time.monotonic()
    if pbx is not None:
        started = await drive_calls(pbx, extensions, args.rate, args.seconds)
        await asyncio.sleep(6)  # let the last calls ring, answer and end
        first_sent, ring_sent, sent_log = pbx.first_sent, pbx.ring_sent, pbx.sent_log
    else:
        pbx_go.set()
        done = await asyncio.get_running_loop().run_in_executor(None, pbx_results.get)
        started, first_sent, sent_log = done["started"], done["first_sent"], done["sent_log"]
        ring_sent = done["ring_sent"]
    elapsed = time.monotonic() - t0
    cpu = time.process_time() - cpu0
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    watcher.cancel()
    rss_sampler.cancel()
    rss_samples.append(rss_kib())
    gc.callbacks.remove(on_gc)
    sent = panel.hub.messages_sent - sent_before
    buffered = panel.hub.buffered()
    stop.set()
    report: dict[str, Any] = {"arrivals": {}, "messages": 0, "lags": []}
    for _ in procs:
        part = await asyncio.get_running_loop().run_in_executor(None, results.get)
        for lid, at in part["arrivals"].items():
            report["arrivals"][lid] = min(at, report["arrivals"].get(lid, at))
        report["messages"] += part["messages"]
        report["lags"] += part["lags"]
    for proc in procs:
        proc.join(10)
    if b_proc is not None:
        b_done.set()
        b_proc.join(20)
    await runner.cleanup()
    if redis_server is not None:
        redis_server.close()
    if pbx is not None:
        await pbx.stop()
    else:
        pbx_proc.join(10)

    def spans(since: dict[str, float]) -> list[float]:
        return sorted(
            (report["arrivals"][lid] - since[lid]) * 1000
            for lid in started
            if lid in report["arrivals"] and lid in since
        )

    lat = spans(ring_sent)
    from_first = spans(first_sent)
    missing = len(started) - len(from_first)

    def pct(values: list[float], p: float) -> float:
        return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]

    print(f"calls started: {len(started)} at {args.rate:g}/s over {args.seconds:g} s")
    print(f"pop-ups received: {len(from_first)} (missing {missing})")
    if lat:
        print(
            f"ring-to-pop-up latency ms (the PBX writes the frame that starts the ring ->"
            f" the pop-up at the agent's socket): p50 {pct(lat, 50):.2f}  p99 {pct(lat, 99):.2f}"
            f"  max {lat[-1]:.2f}  mean {statistics.fmean(lat):.2f}"
        )
    if from_first:
        print(
            f"  from the call's first frame (its burst before the ring included): p50"
            f" {pct(from_first, 50):.2f}  p99 {pct(from_first, 99):.2f}  max {from_first[-1]:.2f}"
        )
    if b_proc is not None and lat:  # call i rings agent i; every other agent is on B
        for name, side in (("A (the PBX owner)", 0), ("B (across Redis)", 1)):
            part = sorted(
                (report["arrivals"][lid] - ring_sent[lid]) * 1000
                for i, lid in enumerate(started)
                if (i % len(extensions)) % 2 == side
                and lid in report["arrivals"]
                and lid in ring_sent
            )
            if part:
                p99 = part[min(len(part) - 1, round(0.99 * (len(part) - 1)))]
                print(
                    f"  agents on {name}: {len(part)} pop-ups, p50"
                    f" {part[len(part) // 2]:.2f}  p99 {p99:.2f}  max {part[-1]:.2f} ms"
                )
    print(
        f"hub messages sent: {sent} ({sent / elapsed:.0f}/s over {elapsed:.1f} s)"
        + (" by A alone" if b_proc is not None else "")
    )
    print(f"agent process received: {report['messages']} messages")
    print(
        f"server GC while ringing: {len(gc_pauses)} collections,"
        f" longest {max(gc_pauses, default=0):.1f} ms,"
        f" total {sum(gc_pauses):.0f} ms"
    )
    for gen in (0, 1, 2):
        ps = [p for p, g in zip(gc_pauses, gc_gens, strict=True) if g == gen]
        if ps:
            print(f"  gen{gen}: {len(ps)} collections, longest {max(ps):.1f} ms")
    if settle_gc:
        print(
            f"  (not counted: {len(settle_gc)} before traffic, longest"
            f" {max(p for p, _ in settle_gc):.1f} ms, settle()'s gc.collect() among them)"
        )
    lags.sort()
    if lags:
        print(
            f"server event-loop lag ms: p50 {lags[len(lags) // 2]:.2f}  "
            f"p99 {lags[int(len(lags) * 0.99)]:.2f}  max {lags[-1]:.2f}; "
            f"server CPU {100 * cpu / elapsed:.0f}% of one core"
            + ("" if args.pbx_process else " (PBX simulator included)")
        )
    clags = sorted(report["lags"])
    if clags:
        print(
            f"agent process(es) x{n_proc} event-loop lag ms: p50 {clags[len(clags) // 2]:.2f}  "
            f"p99 {clags[int(len(clags) * 0.99)]:.2f}  max {clags[-1]:.2f}"
        )
    if stages is not None:
        stages["receive"] = report["arrivals"]
        print_stages(first_sent, sent_log, started, stages)
    per_conn = (rss_after - rss_before) * 1024 / max(1, args.agents)
    if b_proc is not None:
        grown = (rss_after - rss_before) + (b_rss_after - b_rss_before)
        per_conn = grown * 1024 / max(1, args.agents)
        print(
            f"instance A RSS: {rss_before / 1024:.1f} -> {rss_after / 1024:.1f} MiB,"
            f" instance B RSS: {b_rss_before / 1024:.1f} -> {b_rss_after / 1024:.1f} MiB"
            f" = {per_conn / 1024:.1f} KiB per connection over both"
        )
        fan = panel.fanout.health() if panel.fanout is not None else {}
        print(
            f"fanout on A: {fan.get('published')} messages in {fan.get('batches')} Redis"
            f" round trips, delivered locally only: {fan.get('delivered_locally')}"
        )
    else:
        print(
            f"server RSS: {rss_before / 1024:.1f} MiB before agents, {rss_after / 1024:.1f} MiB"
            f" with {args.agents} sockets = {per_conn / 1024:.1f} KiB per connection"
        )
    half = len(rss_samples) // 2
    print(
        f"server RSS while ringing (every 5 s): first {rss_samples[0] / 1024:.1f} MiB,"
        f" max {max(rss_samples) / 1024:.1f}, max of the second half"
        f" {max(rss_samples[half:]) / 1024:.1f}, last {rss_samples[-1] / 1024:.1f} MiB"
    )
    # what RSS is meant to grow by: each agent's replay buffer fills up to its bound
    print(
        f"  of which the hub's replay buffers: {buffered[0]} messages, {buffered[1] / 2**20:.1f}"
        f" MiB of text (bounded: {panel.hub.buffer_size} messages per agent)"
    )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, default=1000)
    p.add_argument("--rate", type=float, default=50.0)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument(
        "--clients", type=int, default=1, help="agent processes sharing the sockets (default 1)"
    )
    p.add_argument(
        "--pbx-process",
        action="store_true",
        help="run the simulated PBX in a process of its own (as in production: the PBX is"
        " another machine) instead of in the server process",
    )
    p.add_argument("--stages", action="store_true", help="also time each stage of the pop-up path")
    p.add_argument(
        "--profile",
        metavar="FILE",
        help="cProfile the server while calls ring (its figures are then not the product's)"
        " and write the stats to FILE (read them with pstats)",
    )
    p.add_argument(
        "--no-freeze", action="store_true", help="skip the server's gc.freeze() after start-up"
    )
    p.add_argument(
        "--agents-after-settle",
        action="store_true",
        help="settle (gc.freeze) before the agents connect, as `centralita run` does, so their"
        " sockets are not frozen (default: after, so they are)",
    )
    p.add_argument(
        "--instances",
        type=int,
        choices=(1, 2),
        default=1,
        help="2: a cluster on a loopback Redis, the agents split between the PBX owner and a"
        " second instance (in a process of its own)",
    )
    asyncio.run(main(p.parse_args()))
