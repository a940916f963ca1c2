"""A call that spans a gateway restart: logged once, then corrected in place when the Cdr
that follows its last Hangup brings the recording (the real streams of issue #11)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from gateway.ami.events import AmiEvent, ResyncSnapshot
from gateway.ami.frames import iter_capture
from gateway.app import Gateway
from gateway.calls.events import CallCorrected, CallEnded
from gateway.config import GatewayConfig, PbxSettings, StoreSettings
from gateway.demo import LAB_TRACKING
from gateway.store.calllog import CallLog
from gateway.store.db import Database

RESTART = Path(__file__).parent / "data" / "ami-traces" / "restart"
CALL = "lab:1796027602.0"
RECORDING = "/var/spool/asterisk/monitor/1796027602.1.wav"


def _gateway(tmp_path: Path) -> Gateway:
    return Gateway(
        GatewayConfig(
            pbx=[PbxSettings(name="lab", port=1, username="gateway", secret="gw")],
            store=StoreSettings(path=str(tmp_path / "c.db")),
            tracking=LAB_TRACKING,
        )
    )


async def test_the_restarted_gateway_logs_the_call_once_with_the_cdrs_values(
    tmp_path: Path,
) -> None:
    gw = _gateway(tmp_path)
    await gw.open()
    ended: list[CallEnded] = []
    corrected: list[CallCorrected] = []
    gw.bus.subscribe(CallEnded, ended.append)
    gw.bus.subscribe(CallCorrected, corrected.append)
    writer = asyncio.create_task(gw._write_calls())
    try:
        _, frames = iter_capture((RESTART / "gateway_restart_mid_call.after.ami").read_bytes())
        snapshot: list[dict[str, str]] = []
        for f in frames:
            if f.get("Event") == "CoreShowChannel":
                snapshot.append(f)
            elif f.get("Event") == "CoreShowChannelsComplete":
                gw._on_resync(ResyncSnapshot("lab", 1796027613.05, snapshot, [], True))
            elif "Event" in f:
                gw._on_ami_event(AmiEvent("lab", f, 1796027613.05))
        await gw._ended.join()
        assert [e.linkedid for e in ended] == [e.linkedid for e in corrected] == ["1796027602.0"]
        assert gw.call_log is not None
        row = await gw.call_log.get(CALL)
        assert row is not None
        assert row["recordings"] == [RECORDING]
        assert row["talk_seconds"] == 25.0 and row["answered_by"] == "101"
        assert gw.calls_ended == 1  # one call, one row, however many times it was corrected
    finally:
        writer.cancel()
        await gw.stop()


def _record(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": CALL,
        "linkedid": "1796027602.0",
        "pbx": "lab",
        "direction": "inbound",
        "outcome": "answered",
        "caller": "+34911000020",
        "did": "5551000",
        "agents_rang": ["101"],
        "agents_answered": ["101"],
        "answered_by": "101",
        "started_at": 1796027603.02,
        "answered_at": 1796027605.02,
        "ended_at": 1796027630.02,
        "ring_seconds": 2.0,
        "talk_seconds": 25.0,
        "total_seconds": 27.0,
        "recordings": [],
        "reconstructed": True,
    }
    return base | over


async def test_call_log_correct_updates_the_row_once_and_keeps_the_agents_notes(
    tmp_path: Path,
) -> None:
    db = await Database.open(tmp_path / "c.db")
    try:
        log = CallLog(db)
        assert await log.save(_record())
        await log.annotate(CALL, notes="customer wants a quote", disposition="callback")
        assert await log.correct(_record(recordings=[RECORDING]))
        assert not await log.correct(_record(recordings=[RECORDING]))  # nothing new
        row = await log.get(CALL)
        assert row is not None
        assert row["recordings"] == [RECORDING]
        assert (row["notes"], row["disposition"]) == ("customer wants a quote", "callback")
        page = await log.list()
        assert [c["id"] for c in page.items] == [CALL]
        # a correction of a call never stored stores it
        assert await log.correct(_record(id="lab:9.9", linkedid="9.9"))
        assert await log.get("lab:9.9") is not None
    finally:
        await db.close()


async def test_a_gateway_restarted_mid_call_over_tcp_logs_it_once_with_the_true_times(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    """The same case against the simulated PBX over real TCP: the first gateway sees the call
    ring and be answered, then stops; while no gateway runs, the call goes on; the second
    one, on the same store, learns the call from CoreShowChannels and closes it once, with
    ring and talk time as the PBX measured them, not the outage."""
    import msgspec

    from gateway.app import create_app
    from gateway.config import ReconnectSettings
    from gateway.sim.clock import ManualClock
    from gateway.sim.pbx import SimulatedPbx

    sim = SimulatedPbx(secret="gw", clock=ManualClock(), flavour="lab")
    await sim.start()
    try:
        cfg = msgspec.structs.replace(
            _gateway(tmp_path).cfg,
            pbx=[
                PbxSettings(
                    name="lab", port=sim.port, username="gateway", secret="gw",
                    ping_interval=1.0, reconnect=ReconnectSettings(initial=0.05, maximum=0.2),
                )
            ],
        )  # fmt: skip
        first = Gateway(cfg)
        client = await aiohttp_client(await create_app(cfg, first))
        await _until(lambda: first.links["lab"].health().logged_in)
        linkedid = sim.start_call("inbound_answered", ring_seconds=3, talk_seconds=40)
        await sim.advance(8)  # rang 3 s, answered, 5 s into the talk
        await _until(lambda: first.trackers["lab"].open_calls == 1)
        await client.close()  # the first gateway stops (its store closes with it)
        await sim.advance(20)  # the call goes on while no gateway is there

        second = Gateway(cfg)
        ended: list[CallEnded] = []
        second.bus.subscribe(CallEnded, ended.append)
        await aiohttp_client(await create_app(cfg, second))
        await _until(lambda: second.trackers["lab"].open_calls == 1)
        await sim.advance(30)  # the call ends with the second gateway watching
        await _until(lambda: len(ended) == 1)
        await second._ended.join()
        assert second.call_log is not None
        rows = (await second.call_log.list()).items
        assert [r["id"] for r in rows] == [f"lab:{linkedid}"]  # once, across both gateways
        row = rows[0]
        assert row["outcome"] == "answered" and row["answered_by"] == "101"
        assert abs(row["ring_seconds"] - 3) < 1.5  # the PBX's ring time, not 0
        assert abs(row["talk_seconds"] - 40) < 1.5  # as the PBX timed it
        assert row["talk_seconds"] < row["total_seconds"] < 50
    finally:
        await sim.stop()


async def _until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition never became true"
        await asyncio.sleep(0.01)
