"""Three gateway instances on one PostgreSQL store and one Redis (Debian's servers, started
for the test), the simulated PBX over TCP, a CRM taking write-backs over HTTP. The PBX owner
is a real ``centralita run`` process, killed with SIGKILL in the middle of calls: the issue's
end-to-end check (#15). Every call is logged once in the shared store, every pop-up reaches its
agent on whichever instance holds their tab, each call is written back to the CRM once, and a
session opened on one instance is good on every other."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import Gateway, create_app
from gateway.config import GatewayConfig, StoreSettings, load_config, parse_config
from gateway.errors import ConfigError
from gateway.panel.routes import PANEL
from gateway.panel.sessions import COOKIE
from gateway.push.messages import CALL_RINGING
from gateway.sim.pbx import SimulatedPbx
from gateway.store.db import Database, StoreInUse
from tests.fakes.generic_http import GenericCrm
from tests.postgres_fixtures import PostgresServer
from tests.redis_fixtures import RedisServer, redis_server  # noqa: F401
from tests.test_panel_support import FAST_HASHER, PASSWORD

ROOT = Path(__file__).parent.parent
LEASE, RENEW = 2.0, 0.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def store_url(postgres_server: PostgresServer) -> AsyncIterator[str]:
    url = await postgres_server.fresh_database()
    yield url
    await postgres_server.drop(url)


@pytest.fixture
async def crm(aiohttp_server: Any) -> tuple[GenericCrm, str]:
    fake = GenericCrm()
    server = await aiohttp_server(fake.app())
    return fake, str(server.make_url("/api/calls"))


class Cluster:
    """Writes each instance's config file (the same for all but the name and port) and starts
    instances: in this process (to look inside) or as a ``centralita run`` process."""

    def __init__(self, tmp: Path, sim: SimulatedPbx, redis: str, store: str, crm: str) -> None:
        self.tmp, self.sim, self.redis, self.store, self.crm_url = tmp, sim, redis, store, crm
        self.clients: list[TestClient] = []
        self.procs: list[asyncio.subprocess.Process] = []

    def config_file(self, name: str, port: int) -> Path:
        doc = {
            "pbx": [{
                "name": "lab", "port": self.sim.port, "username": "gateway", "secret": "gw",
                "ping_interval": 1, "reconnect": {"initial": 0.05, "maximum": 0.2},
            }],
            "tracking": {
                "agent_contexts": ["agents"], "inbound_contexts": ["from-pstn"],
                "click_to_call_context": "outbound",
            },
            "store": {"url": self.store},
            "http": {"port": port},
            "campaigns": {"enabled": False},
            "writeback": {"hold_seconds": 0},
            "connectors": [{
                "type": "generic_http", "name": "crm", "log_url": self.crm_url,
                "headers": {"Authorization": "Bearer s3cret-token"},
            }],
            "cluster": {
                "redis_url": self.redis, "instance": name, "lease_seconds": LEASE,
                "renew_seconds": RENEW, "link_grace_seconds": 2.0,
            },
        }  # fmt: skip
        path = self.tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump(doc))
        return path

    async def start(self, name: str) -> tuple[Gateway, TestClient]:
        cfg: GatewayConfig = load_config(self.config_file(name, free_port()))
        gw = Gateway(cfg)  # the real clock, as gw-a's process: sessions expire alike
        client = TestClient(TestServer(await create_app(cfg, gw)))
        await client.start_server()
        client.app[PANEL].users.hasher = FAST_HASHER
        self.clients.append(client)
        return gw, client

    async def spawn(self, name: str) -> tuple[asyncio.subprocess.Process, str]:
        port = free_port()
        with (self.tmp / f"{name}.log").open("w") as log:  # read it when a test fails
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway", "run", "-c", str(self.config_file(name, port)),
                stdout=asyncio.subprocess.DEVNULL, stderr=log, cwd=ROOT,
            )  # fmt: skip
        self.procs.append(proc)
        return proc, f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        for client in reversed(self.clients):
            async with asyncio.timeout(15):
                await client.close()


@pytest.fixture
async def cluster(
    tmp_path: Path,
    sim: SimulatedPbx,
    redis_server: RedisServer,  # noqa: F811
    store_url: str,
    crm: tuple[GenericCrm, str],
) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path, sim, redis_server.url, store_url, crm[1])
    yield c
    await c.close()


async def until(what: str, condition: Callable[[], Any], within: float = 15.0) -> float:
    """Poll ``condition`` (plain or async) until true; returns the seconds it took."""
    t0 = time.monotonic()
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await asyncio.wait_for(result, max(within - (time.monotonic() - t0), 0.5))
        if result:
            return time.monotonic() - t0
        assert time.monotonic() - t0 < within, f"timed out after {within}s waiting for {what}"
        await asyncio.sleep(0.02)


async def owner_over_http(http: aiohttp.ClientSession, base: str) -> bool:
    """Whether the instance at ``base`` owns the PBX and is logged in to it."""
    try:
        async with http.get(f"{base}/health") as r:
            doc = await r.json()
    except aiohttp.ClientError:  # not up yet
        return False
    (line,) = doc["pbx"]
    return bool(line["this_instance_owns"] and line["logged_in"])


async def sign_in(client: TestClient, name: str) -> str:
    resp = await client.post("/panel/api/login", json={"username": name, "password": PASSWORD})
    assert resp.status == 200, await resp.text()
    client.session.cookie_jar.clear()  # each request below says whose session it is
    return str(resp.cookies[COOKIE].value)


async def tab(client: TestClient, cookie: str) -> aiohttp.ClientWebSocketResponse:
    origin = f"http://{client.host}:{client.port}"
    ws = await client.ws_connect(
        "/panel/ws", headers={"Origin": origin, "Cookie": f"{COOKIE}={cookie}"}
    )
    hello = json.loads(await ws.receive_str(timeout=5))
    assert hello["type"] == "hello"
    return ws


async def pop_up(
    sim: SimulatedPbx, ws: aiohttp.ClientWebSocketResponse, linkedid: str
) -> dict[str, Any]:
    """The ringing pop-up of ``linkedid`` at this tab (the PBX's clock moves while we wait)."""
    deadline = time.monotonic() + 10
    while True:
        assert time.monotonic() < deadline, f"no pop-up of {linkedid}"
        with contextlib.suppress(TimeoutError):
            while True:
                msg = json.loads(await ws.receive_str(timeout=0.2))
                call = msg.get("data", {}).get("call", {})
                if msg["type"] == CALL_RINGING and call.get("linkedid") == linkedid:
                    return msg
        await sim.advance(0.5)


async def logged(db: Database) -> dict[str, int]:
    rows = await db.conn.execute_fetchall("SELECT id, count(*) AS n FROM calls GROUP BY id")
    return {r[0]: r[1] for r in rows}


async def test_the_owner_killed_mid_call_loses_no_pop_up_and_logs_and_writes_each_call_once(
    cluster: Cluster, sim: SimulatedPbx, crm: tuple[GenericCrm, str]
) -> None:
    fake = crm[0]
    http = aiohttp.ClientSession()
    try:
        # gw-a, a real process, owns the PBX; gw-b and gw-c stand by on the same store
        proc, base_a = await cluster.spawn("gw-a")
        await until("gw-a to own the PBX", lambda: owner_over_http(http, base_a), 30)
        b, client_b = await cluster.start("gw-b")
        c, client_c = await cluster.start("gw-c")
        for gw in (b, c):
            await until(
                "the standbys to see gw-a's lease",
                lambda gw=gw: (
                    gw.cluster.owners["lab"].holder is not None
                    and gw.cluster.owners["lab"].holder.instance == "gw-a"
                ),
            )

        # users made through one instance exist on all: one store
        await client_b.app[PANEL].users.add("ana", PASSWORD, "agent", ["101"], "Ana")
        await client_c.app[PANEL].users.add("luis", PASSWORD, "agent", ["102"], "Luis")
        ana = await sign_in(client_b, "ana")
        luis = await sign_in(client_b, "luis")
        # a session opened on B is good on C and on A (a load balancer need not be sticky)
        for where in (client_c.get("/panel/api/state", cookies={COOKIE: ana}),
                      http.get(f"{base_a}/panel/api/state", cookies={COOKIE: luis})):  # fmt: skip
            async with where as resp:
                assert resp.status == 200, await resp.text()
        ana_tab = await tab(client_b, ana)  # ana's browser is on B, luis's on C
        luis_tab = await tab(client_c, luis)
        for client in (client_b, client_c):
            board = client.app[PANEL].board
            await until(
                "every board to seat both",
                lambda b=board: b.agents_at(["101", "102"]) == ["ana", "luis"],
            )

        # each standby follows the PBX on a session of its own (gateway/cluster/witness.py)
        for gw in (b, c):
            await until(
                "the standbys' witnesses", lambda gw=gw: gw.witnesses["lab"].health().logged_in
            )

        # while A owns: a short call that ends, two that are still talking when A dies, and
        # one that ends after A died, before another instance holds the PBX
        short = sim.start_call("inbound_answered", caller="+34911000001", talk_seconds=2)
        assert (await pop_up(sim, ana_tab, short))["data"]["call"]["agents"] == ["ana"]
        live_ana = sim.start_call("inbound_answered", caller="+34911000002", talk_seconds=60)
        live_luis = sim.start_call(
            "inbound_answered", caller="+34911000003", talk_seconds=60, agents=("102",)
        )
        gap = sim.start_call("inbound_answered", caller="+34911000005", talk_seconds=9)
        await pop_up(sim, ana_tab, live_ana)
        assert (await pop_up(sim, luis_tab, live_luis))["data"]["call"]["agents"] == ["luis"]
        for _ in range(6):
            await sim.advance(1)
        store: Database = b.db  # type: ignore[assignment]
        await until("gw-a to log the short call", lambda: _has(store, f"lab:{short}"))

        proc.kill()  # no code of gw-a runs: no lease handed back, no Logoff
        await proc.wait()
        assert b.cluster.owners["lab"].holder.instance == "gw-a"  # type: ignore[union-attr]
        for _ in range(8):  # the gap call ends while the dead gw-a still holds the lease
            await sim.advance(1)
        assert not b.cluster.owns("lab") and not c.cluster.owns("lab")  # type: ignore[union-attr]
        took = await until(
            "gw-b or gw-c to take the PBX over",
            lambda: b.cluster.owns("lab") or c.cluster.owns("lab"),  # type: ignore[union-attr]
            LEASE + 5,
        )
        print(f"takeover after SIGKILL: {took:.2f}s")
        owner = b if b.cluster.owns("lab") else c  # type: ignore[union-attr]
        standby = c if owner is b else b
        await until(
            "the new owner to join both live calls", lambda: owner.trackers["lab"].open_calls == 2
        )
        assert standby.trackers["lab"].open_calls == 0  # tracked once, by the owner alone

        # a call after the takeover pops up too, on whichever instance holds the tab
        after = sim.start_call(
            "inbound_answered", caller="+34911000004", talk_seconds=3, agents=("102",)
        )
        assert (await pop_up(sim, luis_tab, after))["data"]["call"]["agents"] == ["luis"]
        for _ in range(70):
            await sim.advance(1)
        expected = {f"lab:{k}" for k in (short, live_ana, live_luis, gap, after)}
        await until("every call in the shared store", lambda: _all(store, expected))
        assert await logged(store) == dict.fromkeys(expected, 1)
        # the gap call came from the new owner's witness, whole: rung, answered, talked
        record = await owner.call_log.get(f"lab:{gap}")  # type: ignore[union-attr]
        assert record is not None and record["outcome"] == "answered"
        assert record["answered_by"] == "101" and record["talk_seconds"] >= 8
        assert owner.witnesses["lab"].health().handed_over >= 1
        assert not owner.witnesses["lab"].health().watching  # its own link reads the PBX now
        assert standby.witnesses["lab"].health().watching

        # the CRM holds each call once. The calls that ended after the takeover were sent once:
        # no two instances deliver the same queue. The short call may have been sent twice:
        # gw-a was killed just as it wrote it, maybe between the CRM's answer and noting it
        # delivered; the new deliverer repeats it with the same Idempotency-Key, which every
        # connector honours (connectors/base.py: log_call is idempotent on the record's id)
        async with asyncio.timeout(15):
            await fake.wait_for_calls(len(expected))
        await until("the outbox to be empty", lambda: _outbox_empty(store))
        assert set(fake.calls) == expected
        assert {k: n for k, n in fake.posts_by_key.items() if k != f"lab:{short}"} == dict.fromkeys(
            expected - {f"lab:{short}"}, 1
        )
        assert fake.posts_by_key[f"lab:{short}"] in (1, 2)

        await ana_tab.close()
        await luis_tab.close()
    finally:
        await http.close()


async def _has(db: Database, key: str) -> bool:
    return key in await logged(db)


async def _all(db: Database, keys: set[str]) -> bool:
    return keys <= set(await logged(db))


async def _outbox_empty(db: Database) -> bool:
    rows = await db.conn.execute_fetchall(
        "SELECT count(*) FROM crm_outbox WHERE delivered_at IS NULL AND parked_at IS NULL"
    )
    return bool(rows[0][0] == 0)


# -- the store.url key ------------------------------------------------------------------------

SECRET = "n0t-in-any-log"
MINIMAL = "pbx:\n  - name: main\n    username: gw\n    secret: s\n"


@pytest.mark.parametrize(
    "url",
    ["mysql://db/centralita", "postgresql://db", "postgresql://db:99999/centralita"],
)
def test_a_store_url_that_is_not_a_postgresql_database_is_refused(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(MINIMAL + f"store: {{url: '{url}'}}\n")
    assert "store.url: expected postgresql://user:password@host:port/database" in str(info.value)


def test_the_store_password_stays_out_of_errors_reprs_and_check_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(MINIMAL + f"store: {{url: 'pg://gw:{SECRET}@db/x'}}\n")
    assert SECRET not in str(info.value) and "pg://gw:***@db/x" in str(info.value)
    cfg = parse_config(MINIMAL + f"store: {{url: 'postgresql://gw:{SECRET}@db/x'}}\n")
    assert cfg.store.shared and SECRET not in repr(cfg) and cfg.store.where.endswith("@db/x")
    path = tmp_path / "c.yaml"
    path.write_text(MINIMAL + "store: {url: 'postgresql://gw:${STORE_PASSWORD}@db:5432/cc'}\n")
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(path)],
        capture_output=True, text=True, cwd=ROOT,
        env={"STORE_PASSWORD": SECRET, "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "store: postgresql://gw:***@db:5432/cc" in out.stdout
    assert SECRET not in out.stdout + out.stderr


async def test_a_gateway_alone_and_a_cluster_never_share_one_store(store_url: str) -> None:
    """Without a cluster: section a second gateway would track and write every call again."""
    store = StoreSettings(url=store_url)
    alone = await Database.open_configured(store, gateway="alone")
    try:
        for role in ("alone", "cluster"):
            with pytest.raises(StoreInUse, match="in use"):
                await Database.open_configured(store, gateway=role)  # type: ignore[arg-type]
        cli = await Database.open_configured(store)  # a command beside it (user, import) may
        await cli.close()
    finally:
        await alone.close()
    first = await Database.open_configured(store, gateway="cluster")
    second = await Database.open_configured(store, gateway="cluster")  # instances share it
    await second.close()
    await first.close()
