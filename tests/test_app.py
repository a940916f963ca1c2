"""The assembled daemon: /health and /metrics, calls flowing from the PBX to the call log, and
``centralita demo`` started as a user would start it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from gateway.app import Gateway, create_app
from gateway.calls.events import CallEnded, CallRinging
from gateway.config import ApiSettings, ApiToken, GatewayConfig, PbxSettings, StoreSettings
from gateway.config import ReconnectSettings as Backoff
from gateway.demo import LAB_TRACKING
from gateway.sim.clock import ManualClock
from gateway.sim.pbx import SimulatedPbx

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "test-token-1234567890"


def _config(tmp_path: Path, port: int, **kw: Any) -> GatewayConfig:
    pbx = PbxSettings(
        name="lab", port=port, username="gateway", secret="gw", ping_interval=1.0,
        reconnect=Backoff(initial=0.05, maximum=0.2),
    )  # fmt: skip
    return GatewayConfig(
        pbx=[pbx],
        store=StoreSettings(path=str(tmp_path / "state" / "c.db")),
        tracking=LAB_TRACKING,
        api=ApiSettings(tokens=[ApiToken(name="t", token=TOKEN)]),
        **kw,
    )


async def _until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.01)


async def test_health_is_503_while_the_pbx_is_down_and_200_once_linked(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens here yet
    gw = Gateway(_config(tmp_path, port))
    client: TestClient = await aiohttp_client(await create_app(gw.cfg, gw))
    resp = await client.get("/health")
    assert resp.status == 503
    doc = await resp.json()
    assert doc["pbx"][0]["name"] == "lab" and doc["pbx"][0]["logged_in"] is False
    await _until(lambda: gw.links["lab"].last_error is not None)
    assert "Connect" in (await (await client.get("/health")).json())["pbx"][0]["last_error"]

    pbx = SimulatedPbx(secret="gw", clock=ManualClock())
    await pbx.start("127.0.0.1", port)
    try:
        await _until(lambda: gw.links["lab"].health().logged_in)
        resp = await client.get("/health")
        assert resp.status == 200
        doc = await resp.json()
        assert doc["status"] == "ok"
        assert doc["pbx"][0]["connected"] and doc["pbx"][0]["since"] is not None
        metrics = await (await client.get("/metrics")).text()
        assert 'centralita_ami_link_up{pbx="lab"} 1' in metrics
        assert "centralita_ami_reconnects_total" in metrics
    finally:
        await pbx.stop()


async def test_a_call_flows_from_pbx_to_bus_to_call_log_and_api(
    tmp_path: Path, aiohttp_client: Any, sim: SimulatedPbx
) -> None:
    gw = Gateway(_config(tmp_path, sim.port))
    ringing: list[CallRinging] = []
    ended: list[CallEnded] = []
    gw.bus.subscribe(CallRinging, ringing.append)
    gw.bus.subscribe(CallEnded, ended.append)
    client: TestClient = await aiohttp_client(await create_app(gw.cfg, gw))
    await _until(lambda: gw.links["lab"].health().logged_in)
    linkedid = sim.start_call(
        "inbound_answered", caller="+34911234567", caller_name="<img src=x onerror=alert(1)>"
    )
    await sim.advance(1)
    await _until(lambda: ringing)
    assert ringing[0].linkedid == linkedid and "101" in ringing[0].ringing
    assert not ended, "the pop-up event must come while the phone still rings"
    await sim.advance(30)
    await _until(lambda: ended)
    record = ended[0].record
    assert record.outcome.value == "answered" and record.answered_by == "101"
    await _until(lambda: gw._ended.empty() and gw.calls_ended == 1)
    await gw._ended.join()
    resp = await client.get(
        f"/api/v1/calls/lab:{linkedid}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert resp.status == 200, await resp.text()
    doc = await resp.json()
    body = doc.get("call", doc)
    assert body["caller"] == "+34911234567"
    assert body["outcome"] == "answered"
    assert (await client.get(f"/api/v1/calls/lab:{linkedid}")).status == 401


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_demo_starts_serves_health_shows_calls_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = _free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "demo", "--port", str(port),
         "--state", str(tmp_path / "demo"), "--rate", "240", "--contacts", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    try:
        health: dict[str, Any] = {}
        deadline = time.monotonic() + 60  # a loaded CI machine: the demo seeds its store first
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    health = json.load(r)
                    if health["pbx"][0]["logged_in"]:
                        break
            except OSError:
                pass
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.2)
        assert health.get("status") == "ok", health
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
            page = r.read().decode()
            assert "Centralita" in page
            assert "script-src 'self'" in r.headers["Content-Security-Policy"]
        time.sleep(3)  # at 240 calls/minute several calls ring meanwhile
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert "ana (ext 101)" in out and "password" in out
    assert "☎" in out, out  # calls shown as the gateway sees them
    assert (tmp_path / "demo" / "centralita.db").exists()
    assert "demo stopped" in out
    assert "Traceback" not in out


async def test_a_call_survives_a_dropped_link_without_duplicate_and_one_ending_in_the_gap_is_closed(
    tmp_path: Path, aiohttp_client: Any, sim: SimulatedPbx
) -> None:
    gw = Gateway(_config(tmp_path, sim.port))
    ended: list[CallEnded] = []
    gw.bus.subscribe(CallEnded, ended.append)
    await aiohttp_client(await create_app(gw.cfg, gw))
    link = gw.links["lab"]
    await _until(lambda: link.health().logged_in)

    # 1: the link drops mid-call and comes back; the call goes on and ends once
    first = sim.start_call("inbound_answered", ring_seconds=2, talk_seconds=20)
    await sim.advance(4)
    await _until(lambda: gw.trackers["lab"].open_calls == 1)
    sim.drop_connections()
    await _until(lambda: link.reconnects >= 1 and link.health().logged_in)
    await sim.advance(30)
    await _until(lambda: ended)
    await asyncio.sleep(0.1)
    assert [e.record.linkedid for e in ended] == [first]
    assert ended[0].record.outcome.value == "answered"
    assert ended[0].record.reconstructed is False

    # 2: a call ends while the link is down; the resync closes it, marked reconstructed
    second = sim.start_call("inbound_answered", ring_seconds=2, talk_seconds=5)
    await sim.advance(4)
    await _until(lambda: gw.trackers["lab"].open_calls == 1)
    reconnects = link.reconnects
    sim.go_silent()  # the PBX stops answering: the link gives up on this connection...
    await _until(lambda: not link.health().logged_in)
    await sim.advance(30)  # ...and the call ends meanwhile, unseen
    sim.wake_up()
    await _until(lambda: link.reconnects > reconnects and link.health().logged_in)
    await _until(lambda: len(ended) == 2)
    assert ended[1].record.linkedid == second
    assert ended[1].record.reconstructed is True
    await gw._ended.join()
    assert gw.call_log is not None
    page = await gw.call_log.list()
    ids = sorted(c["id"] for c in page.items)
    assert ids == sorted([f"lab:{first}", f"lab:{second}"])


async def test_a_finished_call_is_written_back_to_an_external_crm_once(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any, sim: SimulatedPbx
) -> None:
    import msgspec

    from connectors.settings import GenericHttpSettings
    from gateway.config import WritebackSettings
    from tests.fakes.generic_http import GenericCrm

    crm = GenericCrm(secret="hmac-key")
    crm.people["+34911234567"] = {"name": "Lucía Martín", "company": "Ibérica"}
    server = await aiohttp_server(crm.app())
    base = f"http://127.0.0.1:{server.port}"
    connector = GenericHttpSettings(
        name="crm",
        lookup_url=base + "/api/lookup?number={e164}",
        log_url=base + "/api/calls",
        headers={"Authorization": f"Bearer {crm.token}"},
        fields={"display_name": "data.name", "company": "data.company"},
        hmac_secret="hmac-key",
    )
    cfg = msgspec.structs.replace(
        _config(tmp_path, sim.port),
        connectors=[connector],
        writeback=WritebackSettings(hold_seconds=0),
    )
    gw = Gateway(cfg)
    ringing: list[CallRinging] = []
    gw.bus.subscribe(CallRinging, ringing.append)
    await aiohttp_client(await create_app(cfg, gw))
    await _until(lambda: gw.links["lab"].health().logged_in)
    assert gw.lookup is not None
    card = await gw.lookup.lookup("+34 911 23 45 67")
    assert (card.display_name, card.company, card.source) == ("Lucía Martín", "Ibérica", "crm")

    linkedid = sim.start_call("inbound_answered", caller="+34911234567")
    await sim.advance(30)
    await asyncio.wait_for(crm.wait_for_calls(1), 10)
    (posted,) = crm.calls.values()
    assert posted["linkedid"] == linkedid
    assert posted["outcome"] == "answered" and posted["answered_by"] == "101"
    assert crm.bad_signatures == 0
    assert posted.get("recording_url", "").endswith(f"/panel/recordings/lab:{linkedid}/0")
    for _ in range(200):
        health = await gw.outbox_health()
        if health[0]["delivered"] == 1:
            break
        await asyncio.sleep(0.02)
    assert health == [
        {"connector": "crm", "pending": 0, "delivered": 1, "parked": 0,
         "oldest_pending_at": None, "last_error": None, "held_until": None},
    ]  # fmt: skip
    assert crm.posts == 1
