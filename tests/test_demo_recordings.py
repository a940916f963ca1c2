"""The demo's recordings are real WAV files, of the call's length, where the panel serves them."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

from gateway.bus import Bus
from gateway.calls.events import CallEnded
from gateway.calls.model import CallRecord, Direction, Outcome
from gateway.demo import DemoRecorder
from gateway.panel.service import safe_recording_path
from gateway.sim.clock import ManualClock
from gateway.sim.pbx import SimulatedPbx


class _Gateway:
    def __init__(self) -> None:
        self.bus = Bus()


async def test_simulated_mixmonitor_writes_into_the_demo_folder_and_the_file_plays(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "recordings"
    folder.mkdir()
    pbx = SimulatedPbx(clock=ManualClock(), flavour="pjsip")
    pbx.recordings_dir = f"{folder}/"
    emitted: list[dict[str, str]] = []
    track = pbx._track

    def tracked(headers: dict[str, str]) -> None:
        emitted.append(headers)
        track(headers)

    pbx._track = tracked  # type: ignore[method-assign]
    linkedid = pbx.start_call(
        "inbound_answered", caller="+34911234567", agents=("101", "102"), talk_seconds=7.0
    )
    await pbx.advance(30)
    # where the simulated Asterisk says MixMonitor wrote: inside the demo's folder
    [name] = {h["Value"] for h in emitted if h.get("Variable") == "MIXMONITOR_FILENAME"}
    assert name == f"{folder}/{linkedid}.wav"
    assert not [h for h in emitted if any("/var/spool" in v for v in h.values())]
    assert name.startswith(f"{folder}/")

    gw = _Gateway()
    recorder = DemoRecorder(gw, folder)
    record = CallRecord(
        linkedid=linkedid,
        pbx="demo-pbx",
        direction=Direction.INBOUND,
        outcome=Outcome.ANSWERED,
        started_at=0.0,
        ended_at=10.0,
        recordings=[name, "/etc/passwd.wav"],
        talk_seconds=7.0,
    )
    gw.bus.publish(CallEnded(record))
    await recorder.settled()
    await asyncio.sleep(0)
    path = safe_recording_path(str(folder), name)  # what the panel's player asks for
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert w.getnframes() == 7 * 8000  # the player shows the call's 7 s
        frames = w.readframes(w.getnframes())
    assert any(frames)  # sound, not silence
    assert not (folder / "passwd.wav").exists() and recorder.written == 1
