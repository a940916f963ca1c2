"""The command line as an administrator uses it: replay a capture, record a live stream."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from gateway.ami.link import AmiLink
from gateway.bus import Bus
from gateway.calls.replay import lab_settings, replay_capture
from gateway.config import PbxSettings
from gateway.sim.clock import ManualClock
from gateway.sim.pbx import SimulatedPbx

ROOT = Path(__file__).resolve().parent.parent
TRACES = ROOT / "tests" / "data" / "ami-traces"


def _cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], input=stdin, capture_output=True, cwd=ROOT
    )


def test_replay_prints_one_json_record_per_finished_call() -> None:
    out = _cli("replay", str(TRACES / "queue_answered.ami"), "-c", str(ROOT / "config/lab.yaml"))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.decode().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    truth = json.loads((TRACES / "queue_answered.json").read_text())["calls"][0]
    for key in (
        "linkedid", "direction", "click_to_call", "caller", "did", "dialed", "queue",
        "agents_rang", "answered_by", "transfers", "outcome", "started_at", "answered_at",
        "ended_at", "ring_seconds", "talk_seconds", "total_seconds", "hangup_cause", "recordings",
    ):  # fmt: skip
        assert key in record, key
    assert record["queue"] == truth["queue"] == "sales"
    assert record["agents_rang"] == truth["agents_rang"]
    assert record["answered_by"] == truth["agents_answered"][0]
    assert abs(record["talk_seconds"] - truth["talk_seconds_measured"]) <= 0.1


def test_replay_of_an_unknown_dialplan_gives_a_best_effort_record_and_a_warning() -> None:
    out = _cli("replay", str(TRACES / "inbound_answered.ami"))  # default (PJSIP) settings
    assert out.returncode == 0
    record = json.loads(out.stdout.decode().splitlines()[0])
    assert record["answered_by"] == "101"
    assert b"warning:" in out.stderr and b"agent_contexts" in out.stderr


def test_replay_never_crashes_on_garbage_or_a_cut_capture() -> None:
    cut = (TRACES / "blind_transfer.ami").read_bytes()[:20000]
    out = _cli("replay", "-", stdin=cut)
    assert out.returncode == 0 and b"Traceback" not in out.stderr
    assert b"still open" in out.stderr
    flushed = _cli("replay", "-", "--flush", stdin=cut)
    assert json.loads(flushed.stdout.decode().splitlines()[0])["reconstructed"] is True
    junk = _cli("replay", "-", stdin=bytes(range(256)) * 50 + b"\r\n\r\nEvent: X\r\n\r\n")
    assert junk.returncode == 0 and b"Traceback" not in junk.stderr


async def test_a_recorded_live_stream_replays_to_the_same_calls(tmp_path: Path) -> None:
    raw = tmp_path / "main.ami"
    pbx = SimulatedPbx(secret="s", clock=ManualClock())
    await pbx.start()
    link = AmiLink(
        PbxSettings(name="main", port=pbx.port, username="gateway", secret="s",
                    record_to=str(raw)),
        Bus(),
    )  # fmt: skip
    link.start()
    try:
        for _ in range(500):
            if link.health().logged_in:
                break
            await asyncio.sleep(0.01)
        pbx.start_call("queue_answered")
        pbx.start_call("inbound_busy")
        await pbx.advance(60)
        await asyncio.sleep(0.2)
    finally:
        await link.stop()
        await pbx.stop()
    data = raw.read_bytes()
    assert data.startswith(b"Asterisk Call Manager/11.0.0\r\n")
    result = replay_capture(data, lab_settings())
    assert sorted(r.outcome.value for r in result.records) == ["answered", "busy"]
    assert result.parse_errors == 0
