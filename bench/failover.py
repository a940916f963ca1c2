"""The failover gap: two `centralita run` processes on one Redis, the PBX owner killed mid-traffic.

    python bench/failover.py [--agents 100] [--rate 50] [--before 5] [--after 12]
        [--lease 5] [--renew 1.5] [--runs 3] [--postgres [--no-witness]]

A redis-server and the simulated PBX (real AMI over TCP on loopback) run here; instance A and
instance B are real ``centralita run`` processes with a ``cluster:`` section, each on its own
SQLite store, or with ``--postgres`` both on one PostgreSQL database (Debian's server, started
in a temporary folder as the tests start it; a new database per run), where B witnesses the
PBX while A owns it. A starts first and owns the PBX. Every agent signs in on B and keeps its
browser socket there: A knows them from the shared board, so their pop-ups cross Redis while A owns
the PBX and come from B once B does.

Calls ring at ``--rate`` per second, each at the next agent's extension. After ``--before``
seconds A is killed with SIGKILL (no code of it runs: no lease release, no Logoff), and calls go
on for ``--after`` seconds. Printed per run:

* the takeover: from the kill until B's /health says B owns the PBX and is logged in;
* the gap: from the kill until the first pop-up of a call that started ringing after it (the
  frame that starts the phone's ring: DialBegin);
* the pop-ups of calls that began ringing before B took over: how many came, and how late;
* the calls whose pop-up never came;
* with ``--postgres``, once every call has ended: the calls in the shared call log, those
  missing from it (a call that ended while nobody owned the PBX, unless B's witness saw it:
  ``--no-witness`` turns it off to compare) and those logged twice.

These figures are bench/failover_gap.py's, which ``bench/popup_latency.py --instances 2`` prints
too, at 10,000 agents, half of them with their socket on the owner (gone with it); there the
owner is the app ``centralita run`` serves, started by the bench in a process of its own.

``--lease`` and ``--renew`` are the cluster's ``lease_seconds`` and ``renew_seconds`` (the
defaults of gateway/cluster/settings.py when not given).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.failover_gap import Failover, describe, failover_figures, owns, until  # noqa: E402
from bench.popup_latency import TimedPbx, drive_calls  # noqa: E402
from gateway.cluster.settings import ClusterSettings  # noqa: E402
from gateway.config import StoreSettings  # noqa: E402
from gateway.panel.users import HASHER  # noqa: E402
from gateway.store.db import Database  # noqa: E402
from tests.postgres_fixtures import PostgresServer  # noqa: E402
from tests.postgres_fixtures import _bin_dir as postgres_bin  # noqa: E402
from tests.redis_fixtures import RedisServer  # noqa: E402

PASSWORD = "bench-failover-pass-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Instance:
    """One ``centralita run`` process with its config file, store and HTTP port."""

    def __init__(
        self, root: Path, name: str, pbx_port: int, redis_url: str, lease: str, store_url: str
    ) -> None:
        self.name = name
        self.port = free_port()
        self.store = StoreSettings(path=str(root / name / "centralita.db"), url=store_url)
        self.config = root / f"{name}.yaml"
        where = f"url: '{store_url}'" if store_url else f"path: {self.store.path}"
        self.config.write_text(
            f"""
pbx:
  - {{name: bench, port: {pbx_port}, username: gateway, secret: gw-lab-secret}}
store: {{{where}}}
http: {{port: {self.port}}}
campaigns: {{enabled: false}}
cluster: {{redis_url: "{redis_url}", instance: {name}{lease}}}
"""
        )
        self.proc: asyncio.subprocess.Process | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    async def add_agents(self, extensions: list[str], password_hash: str) -> None:
        Path(self.store.path).parent.mkdir(parents=True, exist_ok=True)
        db = await Database.open_configured(self.store)
        async with db.transaction() as conn:
            await conn.executemany(
                "INSERT INTO users (username, display_name, role, password_hash, extensions,"
                " created_at, updated_at) VALUES (?, ?, 'agent', ?, ?, 0, 0)",
                [(f"agent{e}", f"Agent {e}", password_hash, json.dumps([e])) for e in extensions],
            )
        await db.close()

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "run", "-c", str(self.config),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=ROOT,
        )  # fmt: skip

    async def owns(self, http: aiohttp.ClientSession) -> bool:
        """This instance holds the PBX's lease and its link is logged in."""
        return await owns(http, self.url)

    async def sign_in(self, http: aiohttp.ClientSession, username: str) -> str:
        async with http.post(
            f"{self.url}/panel/api/login", json={"username": username, "password": PASSWORD}
        ) as r:
            r.raise_for_status()
            return r.cookies["centralita_session"].value

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def one_run(
    args: argparse.Namespace, run: int, password_hash: str, pg: PostgresServer | None
) -> tuple[Failover, dict[str, Any]]:
    """One kill: its figures, and with ``--postgres`` the shared call log's."""
    root = Path(tempfile.mkdtemp(prefix="centralita-failover-"))
    store_url = "" if pg is None else await pg.empty_database()
    redis = RedisServer()
    redis.start()
    pbx = TimedPbx(flavour="pjsip", rng=random.Random(run))
    pbx.queues.clear()
    await pbx.start()
    lease = ""
    if args.lease is not None:
        lease += f", lease_seconds: {args.lease}"
    if args.renew is not None:
        lease += f", renew_seconds: {args.renew}"
    if args.no_witness:
        lease += ", witness: false"
    a = Instance(root, "bench-a", pbx.port, redis.url, lease, store_url)
    b = Instance(root, "bench-b", pbx.port, redis.url, lease, store_url)
    extensions = [str(2000 + i) for i in range(args.agents)]
    arrivals: dict[str, float] = {}
    sockets: list[asyncio.Task[None]] = []
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))  # sockets + polls
    try:
        await b.add_agents(extensions, password_hash)  # the agents' users live on B
        await a.start()
        await until(lambda: a.owns(http), 30, "instance A to own the PBX")
        await b.start()
        await until(lambda: _answers(http, b.url), 30, "instance B to answer")
        # on B only: the shared board seats them on A too
        cookies = {ext: await b.sign_in(http, f"agent{ext}") for ext in extensions}
        connected = asyncio.Event()
        count = [0]

        async def agent(cookie: str) -> None:
            headers = {"Cookie": f"centralita_session={cookie}", "Origin": b.url}
            async with http.ws_connect(f"{b.url}/panel/ws", headers=headers) as ws:
                count[0] += 1
                if count[0] == len(extensions):
                    connected.set()
                async for msg in ws:
                    if msg.type is aiohttp.WSMsgType.TEXT and '"call.ringing"' in msg.data:
                        lid = json.loads(msg.data)["data"]["call"]["linkedid"]
                        arrivals.setdefault(lid, time.time())

        sockets = [asyncio.create_task(agent(cookies[e])) for e in extensions]
        await asyncio.wait_for(connected.wait(), 30)
        await asyncio.sleep(0.5)

        # linkedids, in order: call i rings the agent at extensions[i % len(extensions)]
        started = await drive_calls(pbx, extensions, args.rate, args.before)
        assert a.proc is not None
        killed = time.time()
        a.proc.kill()
        took: list[float] = []

        async def watch_takeover() -> None:
            took.append(await until(lambda: b.owns(http), 60, "instance B to take over"))

        watcher = asyncio.create_task(watch_takeover())
        started += await drive_calls(pbx, extensions, args.rate, args.after, first=len(started))
        await watcher
        await asyncio.sleep(3)  # the last pop-ups
        # (linkedid, when the PBX started its ring)
        rings = [(lid, pbx.ring_sent[lid]) for lid in started if lid in pbx.ring_sent]
        log = await call_log(b.store, [f"bench:{lid}" for lid in started]) if pg else {}
        return failover_figures(rings, arrivals, killed, took[0]), log
    finally:
        for task in sockets:
            task.cancel()
        await asyncio.gather(*sockets, return_exceptions=True)
        await http.close()
        for inst in (a, b):
            await inst.stop()
        await pbx.stop()
        redis.close()


async def call_log(store: StoreSettings, expected: list[str]) -> dict[str, Any]:
    """Once every call has ended (ring 2 s, talk 3 s): which are in the shared call log."""
    db = await Database.open_configured(store)
    try:
        for _ in range(100):  # B writes the last ones within a few seconds
            rows = await db.conn.execute_fetchall("SELECT id, count(*) FROM calls GROUP BY id")
            counts = {r[0]: r[1] for r in rows}
            if all(key in counts for key in expected):
                break
            await asyncio.sleep(0.1)
    finally:
        await db.close()
    return {
        "logged": sum(1 for key in expected if key in counts),
        "not_logged": sum(1 for key in expected if key not in counts),
        "twice": sum(1 for n in counts.values() if n > 1),
    }


async def _answers(http: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with http.get(f"{url}/health") as r:
            return r.status in (200, 503)
    except aiohttp.ClientError:
        return False


async def main(args: argparse.Namespace) -> None:
    defaults = ClusterSettings()
    lease = args.lease if args.lease is not None else defaults.lease_seconds
    renew = args.renew if args.renew is not None else defaults.renew_seconds
    print(
        f"lease {lease:g} s, renewed every {renew:g} s; {args.agents} agents on B,"
        f" {args.rate:g} calls/s; A killed with SIGKILL after {args.before:g} s"
    )
    password_hash = HASHER.hash(PASSWORD)
    gaps: list[float] = []
    pg: PostgresServer | None = None
    if args.postgres:
        bin_dir = postgres_bin()
        if bin_dir is None:
            raise SystemExit("--postgres: PostgreSQL is not installed (apt-get install postgresql)")
        pg = PostgresServer(bin_dir)
        pg.start()
    try:
        for run in range(1, args.runs + 1):
            gaps += await report_run(args, run, password_hash, pg)
    finally:
        if pg is not None:
            pg.stop()
    if gaps:
        print(f"gap over {len(gaps)} runs: min {min(gaps):.2f} s, max {max(gaps):.2f} s")


async def report_run(
    args: argparse.Namespace, run: int, password_hash: str, pg: PostgresServer | None
) -> list[float]:
    """One run, printed; its gap (empty if no pop-up came after the kill)."""
    r, log = await one_run(args, run, password_hash, pg)
    print(f"run {run}: {describe(r, 'B')}")
    if log:
        print(
            f"  shared call log: {log['logged']} of {r.calls} calls logged,"
            f" {log['not_logged']} not logged, {log['twice']} logged twice"
        )
    return [] if r.gap is None else [r.gap]


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, default=100)
    p.add_argument("--rate", type=float, default=50.0)
    p.add_argument("--before", type=float, default=5.0, help="seconds of calls before the kill")
    p.add_argument("--after", type=float, default=12.0, help="seconds of calls after the kill")
    p.add_argument("--lease", type=float, help="lease_seconds (default: the config's default)")
    p.add_argument("--renew", type=float, help="renew_seconds (default: the config's default)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--postgres", action="store_true", help="both instances on one PostgreSQL store")
    p.add_argument("--no-witness", action="store_true", help="cluster.witness: false, to compare")
    asyncio.run(main(p.parse_args()))
