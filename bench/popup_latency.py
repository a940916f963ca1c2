"""Ring-to-pop-up latency, 1,000 agents, 50 new calls/s; with --instances 2 the failover gap too.

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
        [--instances 2 [--kill-after 2] [--failover-seconds 8]]

``--instances 2`` runs a cluster (docs/scale-out.md): a redis-server on loopback (Debian's,
as the tests start it), instance A, the PBX owner (it tracks the calls and publishes the
pop-ups), in a process of its own, and instance B, the standby, in the bench's process; A
starts first, so it takes the PBX's lease. The agents are split between them (every other one
connects to A), so half the pop-ups cross Redis to reach their socket. Each agent is signed in
only on the instance that holds their socket: the bench makes every session in B's store and
moves A's half to A's before either serves (each instance has its own SQLite store; sessions
are not shared across instances yet); A (the PBX owner) learns B's agents through the shared
board in Redis (gateway/cluster/board.py). Latency is the same span, measured for every agent
wherever its socket is; RSS per connection adds both instances' growth; the GC, loop-lag and
RSS-while-ringing lines are B's (this process), A's loop lag and CPU are printed beside them.

Then, in the same run and with the same agents connected, the failover phase: calls ring on at
``--rate`` for ``--kill-after`` (2) + ``--failover-seconds`` (8) s, and ``--kill-after`` s in A
is killed with SIGKILL, as a crash would (no lease release, no Logoff: that is why A is not
the bench's own process). The agents whose socket was on A lose it (counted and printed; here
they do not reconnect); only the calls at B's agents count for the figures, measured as
bench/failover.py measures them (bench/failover_gap.py): the takeover (from the kill until B's
/health says B owns the PBX and is logged in), the gap (from the kill until the first pop-up
of a call that started ringing after it), the calls that started ringing before B took over
(how many popped, how late) and the calls whose pop-up never came. ``--stages`` times the
PBX owner's path in the bench's process: it is not available with ``--instances 2``.

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

import aiohttp
from aiohttp import web

from bench.failover_gap import describe, failover_figures, owns, until
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
    url: str, origin: str, tokens: list[str], ready: Any, results: Any, measured: Any, stop: Any
) -> None:
    asyncio.run(_agents(url, origin, tokens, ready, results, measured, stop))


async def _agents(
    url: str, origin: str, tokens: list[str], ready: Any, results: Any, measured: Any, stop: Any
) -> None:
    import websockets

    arrivals: dict[str, float] = {}
    counts = {"messages": 0}
    lags: list[float] = []

    async def agent(token: str) -> None:
        try:
            async with websockets.connect(
                url,
                origin=origin,
                additional_headers={"Cookie": f"centralita_session={token}"},
                max_queue=None,
                compression=None,
                # a browser never pings (it answers the hub's pings): the library's own
                # pings every 20 s, sent by every socket at once, put thousands of wake-ups
                # in the server's young generation together that no real tab causes
                ping_interval=None,
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
        except websockets.ConnectionClosed:
            pass
        # the socket closed under it (its instance was killed: --instances 2); the
        # cancellation at the end of the run skips this
        lost[0] += 1

    connected: list[int] = []
    lost = [0]
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
    # the server tells us when the latency phase is over (``measured``: the lag figure is
    # its, not the failover phase's, when thousands of sockets may close at once) and when
    # traffic is over (``stop``)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, measured.wait)
    in_phase = len(lags)
    await loop.run_in_executor(None, stop.wait)
    watcher.cancel()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    results.put(
        {
            "arrivals": arrivals,
            "messages": counts["messages"],
            "lags": lags[:in_phase],
            "lost": lost[0],
        }
    )


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
    pbx: TimedPbx, extensions: list[str], rate: float, seconds: float, first: int = 0
) -> list[str]:
    """Start ``rate`` calls a second for ``seconds``, the call numbered k (from ``first``) at
    the agent at ``extensions[k % len(extensions)]``; their linkedids, in order."""
    t0 = time.monotonic()
    started: list[str] = []
    for i in range(int(rate * seconds)):
        due = t0 + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        ext = extensions[(first + i) % len(extensions)]
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
    more: Any,
) -> None:
    asyncio.run(_pbx(extensions, rate, seconds, stages, port, go, results, more))


async def _pbx(
    extensions: list[str],
    rate: float,
    seconds: float,
    stages: bool,
    port: Any,
    go: Any,
    results: Any,
    more: Any,
) -> None:
    """The latency phase's calls, then (``more``: seconds, 0 for none) the failover phase's."""
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
    seconds = await asyncio.get_running_loop().run_in_executor(None, more.get)
    if seconds:  # --instances 2: calls go on while the owner is killed
        more_started = await drive_calls(pbx, extensions, rate, seconds, first=len(started))
        await asyncio.sleep(3)  # the last pop-ups (a call rings 2 s)
        results.put({"started": more_started, "ring_sent": pbx.ring_sent})
    await pbx.stop()


# -- instance A, the PBX owner (--instances 2) --------------------------------------------------


def owner_process(*args: Any) -> None:
    """The entry point of A's process: ``_owner(*args)``."""
    asyncio.run(_owner(*args))


async def copy_sessions(db: Any, db_from: str, agents: list[str]) -> None:
    """The users of another instance's store, and the sessions it made for ``agents``, into
    this one's: sessions are not shared across instances yet (docs/scale-out.md), so the
    bench hands each instance the ones of the agents whose socket it holds (each agent is
    signed in there only; the PBX owner seats the others through Redis)."""
    await db.conn.execute("ATTACH DATABASE ? AS other", (db_from,))
    async with db.transaction() as conn:
        await conn.execute("INSERT OR IGNORE INTO users SELECT * FROM other.users")
        await conn.execute(
            "INSERT OR IGNORE INTO sessions SELECT * FROM other.sessions"
            " WHERE username IN (SELECT value FROM json_each(?))",
            (json.dumps(agents),),
        )
    await db.conn.execute("DETACH DATABASE other")


async def _owner(
    db_b: str,
    agents: list[str],
    total: int,
    pbx_port: int,
    redis_url: str,
    settle_first: bool,
    freeze: bool,
    out: Any,
    ctl: Any,
) -> None:
    """Instance A: started first, it takes the PBX's lease and tracks every call; it holds
    the sockets of ``agents``. In a process of its own so that the failover phase can kill
    it with SIGKILL, as a crash would (no lease release, no Logoff). It answers the bench on
    ``out`` at each step the bench asks for on ``ctl``."""
    from gateway.cluster.settings import ClusterSettings

    cfg = GatewayConfig(
        pbx=[PbxSettings(name="bench", port=pbx_port, username="gateway", secret="gw-lab-secret")],
        store=StoreSettings(path=str(Path(db_b).with_name("bench-a.db"))),
        cluster=ClusterSettings(redis_url=redis_url, instance="bench-a"),
    )
    gw = Gateway(cfg)
    app = await create_app(cfg, gw)
    await copy_sessions(gw.db, db_b, agents)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    for _ in range(3000):  # the lease is free: it takes it at once, then logs in
        if gw.links["bench"].health().logged_in:
            break
        await asyncio.sleep(0.01)
    else:
        raise SystemExit("instance A did not log in to the PBX within 30 s")
    if settle_first and freeze:
        await settle(gw)
    loop = asyncio.get_running_loop()
    out.put((port, rss_kib()))
    panel = app[PANEL]
    deadline = time.monotonic() + 30  # B's agents, from the shared board
    while sum(a.signed_in for a in panel.board.agents.values()) < total:
        if time.monotonic() > deadline:
            raise SystemExit("instance A did not seat B's agents within 30 s")
        await asyncio.sleep(0.05)
    out.put("seated")
    await loop.run_in_executor(None, ctl.get)  # the agents are in
    conns, rss = panel.hub.connections(), rss_kib()
    if freeze and not settle_first:
        await settle(gw)
    out.put((conns, rss))
    lags: list[float] = []
    watcher = asyncio.create_task(watch_loop(lags))
    cpu0, sent0 = time.process_time(), panel.hub.messages_sent
    await loop.run_in_executor(None, ctl.get)  # the latency phase is over
    watcher.cancel()
    out.put(
        {
            "cpu": time.process_time() - cpu0,
            "sent": panel.hub.messages_sent - sent0,
            "lags": sorted(lags),
            "fanout": panel.fanout.health() if panel.fanout is not None else {},
        }
    )
    await loop.run_in_executor(None, ctl.get)  # (the failover phase kills it first)
    await runner.cleanup()


async def failover_phase(
    args: argparse.Namespace,
    a_proc: Any,
    url_b: str,
    extensions: list[str],
    first: int,
    pbx: TimedPbx | None,
    pbx_more: Any,
    pbx_results: Any,
) -> tuple[float, float, list[str], dict[str, float]]:
    """Calls ring at ``--rate`` for ``--kill-after`` + ``--failover-seconds``, numbered on
    from ``first``; ``--kill-after`` s in, instance A (the owner) is killed with SIGKILL.
    Returns when A was killed (``time.time``), how long B took to own the PBX and be logged
    in (polling its /health), the calls started and when each began ringing."""
    seconds = args.kill_after + args.failover_seconds
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as http:
        if pbx is not None:
            ringing = asyncio.create_task(
                drive_calls(pbx, extensions, args.rate, seconds, first=first)
            )
        else:
            pbx_more.put(seconds)
        await asyncio.sleep(args.kill_after)
        killed = time.time()
        a_proc.kill()
        takeover = await until(lambda: owns(http, url_b), 60, "instance B to take over")
    if pbx is not None:
        started = await ringing
        await asyncio.sleep(3)  # the last pop-ups (a call rings 2 s)
        return killed, takeover, started, pbx.ring_sent
    done = await loop.run_in_executor(None, pbx_results.get)
    return killed, takeover, done["started"], done["ring_sent"]


# -- the server ---------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> None:
    state = Path(tempfile.mkdtemp(prefix="centralita-bench-"))
    ctx = mp.get_context("spawn")
    extensions = [str(2000 + i) for i in range(args.agents)]
    pbx: TimedPbx | None = None
    pbx_more = None
    if args.pbx_process:
        pbx_port, pbx_go, pbx_results = ctx.Queue(), ctx.Event(), ctx.Queue()
        pbx_more = ctx.Queue()
        pbx_proc = ctx.Process(
            target=pbx_process,
            args=(
                extensions,
                args.rate,
                args.seconds,
                args.stages,
                pbx_port,
                pbx_go,
                pbx_results,
                pbx_more,
            ),
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
        # this process is instance B, the standby; A, the owner, runs in a process of its own
        cluster = ClusterSettings(redis_url=redis_server.url, instance="bench-b")
    cfg = GatewayConfig(
        pbx=[
            PbxSettings(name="bench", port=port_of_pbx, username="gateway", secret="gw-lab-secret")
        ],
        store=StoreSettings(path=str(state / "bench.db")),
        cluster=cluster,
    )
    gw = Gateway(cfg)
    app = await create_app(cfg, gw)  # the app `centralita run` serves (its store open)
    panel = app[PANEL]

    # the agents, each at their own extension, each with a session (no argon2 in the loop);
    # the panel seats every session of its store as it starts
    tokens = []
    async with gw.db.transaction() as conn:
        await conn.executemany(
            "INSERT INTO users (username, display_name, role, password_hash, extensions,"
            " created_at, updated_at) VALUES (?, ?, 'agent', 'x', ?, 0, 0)",
            [(f"agent{e}", f"Agent {e}", json.dumps([e])) for e in extensions],
        )
    for ext in extensions:
        user = User(f"agent{ext}", f"Agent {ext}", Role.AGENT, (ext,))
        token, _ = await panel.sessions.create(user, (ext,))
        tokens.append(token)
    ports = []
    a_proc = None
    if redis_server is not None:
        # instance A, started first so that it owns the PBX, with every other agent's session
        # (moved there: each agent is signed in only where their socket is)
        on_a = [f"agent{e}" for e in extensions[0::2]]
        a_out, a_ctl = ctx.Queue(), ctx.Queue()
        a_proc = ctx.Process(
            target=owner_process,
            args=(
                str(state / "bench.db"),
                on_a,
                len(extensions),
                port_of_pbx,
                redis_server.url,
                args.agents_after_settle,
                not args.no_freeze,
                a_out,
                a_ctl,
            ),
        )
        a_proc.start()
        port_a, a_rss_before = await asyncio.get_running_loop().run_in_executor(None, a_out.get)
        ports.append(port_a)
        async with gw.db.transaction() as conn:
            await conn.execute(
                "DELETE FROM sessions WHERE username IN (SELECT value FROM json_each(?))",
                (json.dumps(on_a),),
            )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    ports.append(port)
    if a_proc is None:
        for _ in range(500):
            if gw.links["bench"].health().logged_in:
                break
            await asyncio.sleep(0.01)
    else:  # A seats B's agents from the shared board
        await asyncio.get_running_loop().run_in_executor(None, a_out.get)

    if args.agents_after_settle and not args.no_freeze:
        await settle(gw)  # production's order: settled when it listens, agents sign in later
    rss_before = rss_kib()
    results, measured, stop = ctx.Queue(), ctx.Event(), ctx.Event()
    procs, readies = [], []
    n_proc = max(1, args.clients)
    for i, on in enumerate(ports):  # with two instances, every other agent is on A
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
                    measured,
                    stop,
                ),
            )
            # starting a spawned process holds the caller ~1 s: not on the loop, which
            # must keep serving (with --instances 2, answering Redis and the shared board)
            await asyncio.get_running_loop().run_in_executor(None, proc.start)
            procs.append(proc)
            readies.append(ready)
    for ready in readies:
        await asyncio.get_running_loop().run_in_executor(None, ready.wait)
    await asyncio.sleep(0.5)
    a_conns, a_rss_after = 0, 0
    if a_proc is not None:
        a_ctl.put("in")  # A settles (unless --agents-after-settle) and measures
        a_conns, a_rss_after = await asyncio.get_running_loop().run_in_executor(None, a_out.get)
    stages = install_stage_stamps(gw, panel) if args.stages else None
    if args.stages and pbx is not None:
        pbx.sent_log = {}
    rss_after = rss_kib()
    print(
        "agents connected: "
        + (
            f"{a_conns} on A (the PBX owner, its own process), {panel.hub.connections()} on B"
            f" (the standby, this process)"
            if a_proc is not None
            else f"{panel.hub.connections()}"
        )
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
    measured.set()
    a_report: dict[str, Any] = {}
    failover = None
    if a_proc is not None:
        a_ctl.put("report")
        a_report = await asyncio.get_running_loop().run_in_executor(None, a_out.get)
        # the same agents stay connected; A is killed while calls go on ringing
        failover = await failover_phase(
            args,
            a_proc,
            f"http://127.0.0.1:{port}",
            extensions,
            len(started),
            pbx,
            pbx_more,
            None if pbx is not None else pbx_results,
        )
    elif pbx_more is not None:
        pbx_more.put(0)
    stop.set()
    report: dict[str, Any] = {"arrivals": {}, "messages": 0, "lags": [], "lost": 0}
    for _ in procs:
        part = await asyncio.get_running_loop().run_in_executor(None, results.get)
        for lid, at in part["arrivals"].items():
            report["arrivals"][lid] = min(at, report["arrivals"].get(lid, at))
        report["messages"] += part["messages"]
        report["lags"] += part["lags"]
        report["lost"] += part["lost"]
    for proc in procs:
        proc.join(10)
    if a_proc is not None:
        a_proc.join(10)  # (killed)
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
    if a_proc is not None and lat:  # call i rings agent i; every other agent is on A
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
    this = "server" if a_proc is None else "instance B (the standby, this process)"
    if a_proc is not None:
        sent = a_report["sent"]
    print(
        f"hub messages sent: {sent} ({sent / elapsed:.0f}/s over {elapsed:.1f} s)"
        + (" by A alone" if a_proc is not None else "")
    )
    print(
        f"agent process received: {report['messages']} messages"
        + (" (the failover phase's included)" if a_proc is not None else "")
    )
    print(
        f"{this} GC while ringing: {len(gc_pauses)} collections,"
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
            f"{this} event-loop lag ms: p50 {lags[len(lags) // 2]:.2f}  "
            f"p99 {lags[int(len(lags) * 0.99)]:.2f}  max {lags[-1]:.2f}; "
            f"CPU {100 * cpu / elapsed:.0f}% of one core"
            + ("" if args.pbx_process else " (PBX simulator included)")
        )
    a_lags = a_report.get("lags")
    if a_lags:
        print(
            f"instance A (the PBX owner) event-loop lag ms: p50 {a_lags[len(a_lags) // 2]:.2f}  "
            f"p99 {a_lags[int(len(a_lags) * 0.99)]:.2f}  max {a_lags[-1]:.2f}; "
            f"CPU {100 * a_report['cpu'] / elapsed:.0f}% of one core"
        )
    clags = sorted(report["lags"])
    if clags:
        print(
            f"agent process(es) x{n_proc} event-loop lag ms: p50 {clags[len(clags) // 2]:.2f}  "
            f"p99 {clags[int(len(clags) * 0.99)]:.2f}  max {clags[-1]:.2f}"
            + (" (the latency phase)" if a_proc is not None else "")
        )
    if stages is not None:
        stages["receive"] = report["arrivals"]
        print_stages(first_sent, sent_log, started, stages)
    per_conn = (rss_after - rss_before) * 1024 / max(1, args.agents)
    if a_proc is not None:
        grown = (rss_after - rss_before) + (a_rss_after - a_rss_before)
        per_conn = grown * 1024 / max(1, args.agents)
        print(
            f"instance A RSS: {a_rss_before / 1024:.1f} -> {a_rss_after / 1024:.1f} MiB,"
            f" instance B RSS: {rss_before / 1024:.1f} -> {rss_after / 1024:.1f} MiB"
            f" = {per_conn / 1024:.1f} KiB per connection over both"
        )
        fan = a_report["fanout"]
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
        f"{this} RSS while ringing (every 5 s): first {rss_samples[0] / 1024:.1f} MiB,"
        f" max {max(rss_samples) / 1024:.1f}, max of the second half"
        f" {max(rss_samples[half:]) / 1024:.1f}, last {rss_samples[-1] / 1024:.1f} MiB"
    )
    # what RSS is meant to grow by: each agent's replay buffer fills up to its bound
    print(
        f"  of which the hub's replay buffers: {buffered[0]} messages, {buffered[1] / 2**20:.1f}"
        f" MiB of text (bounded: {panel.hub.buffer_size} messages per agent)"
    )
    if failover is not None:
        print_failover(args, failover, report, extensions, len(started))


def print_failover(
    args: argparse.Namespace,
    failover: tuple[float, float, list[str], dict[str, float]],
    report: dict[str, Any],
    extensions: list[str],
    first: int,
) -> None:
    """The failover phase's figures, counting only the calls at B's agents (A's lost their
    sockets with A)."""
    killed, takeover, started, ring_sent = failover
    n = len(extensions)
    # call k rings the agent at extensions[k % n]; the odd ones hold their socket on B
    rings = [
        (lid, ring_sent[lid])
        for k, lid in enumerate(started, start=first)
        if (k % n) % 2 == 1 and lid in ring_sent
    ]
    figures = failover_figures(rings, report["arrivals"], killed, takeover)
    print(
        f"failover: instance A (the PBX owner) killed with SIGKILL (no lease release, no"
        f" Logoff) {args.kill_after:g} s into {args.kill_after + args.failover_seconds:g} s"
        f" more of calls at {args.rate:g}/s ({len(started)} calls)"
    )
    print(
        f"  sockets lost with A: {report['lost']} (the agents whose socket was on A; here they"
        f" do not reconnect, a browser would, to B): only the calls at B's {n - n // 2} agents"
        f" count below ({len(rings)} calls)"
    )
    print(f"  {describe(figures, 'B')}")


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
    p.add_argument(
        "--kill-after",
        type=float,
        default=2.0,
        help="--instances 2: seconds of calls, after the latency phase, before A is killed",
    )
    p.add_argument(
        "--failover-seconds",
        type=float,
        default=8.0,
        help="--instances 2: seconds of calls after A is killed",
    )
    args = p.parse_args()
    if args.instances == 2 and args.stages:
        p.error("--stages times the PBX owner's path in this process: not with --instances 2")
    asyncio.run(main(args))
