"""Finished calls are freed at once, not left for the garbage collector.

A reference cycle per call (a timer holding a callback holding the call holding the timer,
a channel pointing at its call pointing at its channels) survives until a full collection,
whose pause grows with the heap: with 1,000 agents connected that pause delayed pop-ups by
over 100 ms (bench/popup_latency.py). These tests run calls to their end with the collector
off, then ask it what it would have had to free.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.ami.frames import FrameParser
from gateway.calls.events import CallEnded
from gateway.calls.replay import lab_settings
from gateway.calls.settings import TrackingSettings
from gateway.calls.tracker import CallTracker
from gateway.calls.tracker import __name__ as tracker_module
from gateway.sim.clock import ManualClock
from gateway.sim.pbx import LiveCall, SimulatedPbx
from gateway.sim.scenarios import CallScript, TimedFrame

TRACES = Path(__file__).parent / "data" / "ami-traces"
PJSIP = TRACES / "asterisk-22.10.1-pjsip"


@pytest.fixture
def collector_off() -> Iterator[None]:
    """No automatic collection while the test runs: only refcounting frees objects."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def cyclic_garbage() -> list[object]:
    """What a full collection would free now (refcounting could not)."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        garbage = list(gc.garbage)
    finally:
        gc.garbage.clear()
        gc.set_debug(0)
    return garbage


def of_types(objs: list[object], *types: type) -> list[str]:
    return [type(o).__name__ for o in objs if isinstance(o, types)]


def test_a_simulated_call_keeps_one_timer_and_leaves_nothing_behind(
    collector_off: None,
) -> None:
    pbx = SimulatedPbx(clock=ManualClock(), flavour="pjsip")
    for i in range(5):
        pbx.start_call("inbound_answered", agent=str(101 + i), caller=f"+3460000000{i}")
    assert isinstance(pbx.clock, ManualClock)
    # one pending emission per call, not one per frame (~100 per call): fewer objects for
    # the collector to walk and a short timer heap for the event loop
    assert pbx.clock.pending() == len(pbx.calls) == 5
    pbx.clock.advance(120)
    assert pbx.calls == {} and pbx.clock.pending() == 0
    assert of_types(cyclic_garbage(), LiveCall, CallScript, TimedFrame) == []


async def test_calls_on_the_event_loop_are_freed_when_they_end(
    collector_off: None,
) -> None:
    """The real clock's timers (asyncio handles) hold the call while it is pending."""
    pbx = SimulatedPbx(flavour="pjsip")
    for i in range(3):
        pbx.start_call(
            "inbound_answered",
            agent=str(101 + i),
            caller=f"+3460000000{i}",
            ring_seconds=0.6,
            talk_seconds=0.6,
        )
    for _ in range(500):  # the calls last ~2 s of wall clock
        if not pbx.calls:
            break
        await asyncio.sleep(0.02)
    assert pbx.calls == {}
    assert of_types(cyclic_garbage(), LiveCall, CallScript, TimedFrame) == []
    await pbx.stop()


def test_a_stopped_pbx_frees_the_calls_it_was_running(collector_off: None) -> None:
    pbx = SimulatedPbx(clock=ManualClock(), flavour="pjsip")
    pbx.start_call("inbound_answered", agent="101", caller="+34600000001")
    pbx.clock.advance(1)
    pbx.send_shutdown()  # Asterisk restarts: the calls in progress are gone
    assert pbx.calls == {}
    assert of_types(cyclic_garbage(), LiveCall, CallScript, TimedFrame) == []


@pytest.mark.parametrize(
    ("folder", "settings"),
    [(TRACES, lab_settings()), (PJSIP, TrackingSettings())],
    ids=["lab", "pjsip"],
)
def test_the_tracker_frees_every_call_it_ends(
    collector_off: None, folder: Path, settings: TrackingSettings
) -> None:
    tracker = CallTracker(settings)
    ended = 0
    for path in sorted(folder.glob("*.ami")):
        if path.stem.endswith(".sent") or "login" in path.stem:
            continue
        for frame in FrameParser().feed(path.read_bytes()):
            ended += sum(isinstance(e, CallEnded) for e in tracker.feed(frame))
        ended += len(tracker.close_all())
    assert ended >= 10 and tracker.open_calls == 0
    # the tracker itself is alive: nothing of its calls may be waiting for a collection
    left = [type(o).__name__ for o in cyclic_garbage() if type(o).__module__ == tracker_module]
    assert left == []
