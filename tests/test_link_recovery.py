"""The AMI link after trouble, against the simulated PBX over real TCP: the backoff after a
healthy session, and a capture read from a gateway that is still running."""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.ami.events import LinkStatus
from gateway.ami.link import AmiLink
from gateway.bus import Bus
from gateway.calls.replay import lab_settings, replay_capture
from gateway.config import ReconnectSettings
from gateway.sim.clock import ManualClock
from gateway.sim.pbx import SimulatedPbx
from tests.test_ami_link import SECRET, Seen, settings, until

TRACES = Path(__file__).parent / "data" / "ami-traces"


def waits(caplog: pytest.LogCaptureFixture) -> list[float]:
    """The reconnect waits the link announced, in order (what an operator reads in the log)."""
    found = (re.search(r"reconnect_in=([\d.]+)s", r.getMessage()) for r in caplog.records)
    return [float(m.group(1)) for m in found if m]


async def test_a_session_that_stayed_up_starts_the_next_backoff_from_the_beginning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.ami")
    first = SimulatedPbx(username="gateway", secret=SECRET, clock=ManualClock())
    await first.start()
    port = first.port
    await first.stop()  # the PBX is away: every attempt fails and the waits grow
    now = [1_000.0]
    backoff = ReconnectSettings(initial=0.05, maximum=0.4)
    bus = Bus()
    seen = Seen(bus)
    link = AmiLink(
        settings(port, reconnect=backoff), bus, clock=lambda: now[0], rng=random.Random(7)
    )
    link.start()
    pbx = SimulatedPbx(username="gateway", secret=SECRET, clock=ManualClock())
    try:
        await until(lambda: len(waits(caplog)) >= 4)
        assert waits(caplog)[3] >= 0.8 * backoff.maximum  # the outage escalated to the cap
        await pbx.start(port=port)
        # ready: logged in, resynced and the session's start noted (status READY and the
        # snapshot come a little before that; the clock must move only after it)
        assert await link.wait_ready(5) and seen.resyncs
        now[0] += 30  # half a minute of healthy service
        caplog.clear()
        pbx.drop_connections()
        await until(lambda: waits(caplog))
        # a new incident: the first wait is the initial one (with its ±20 % jitter)
        assert waits(caplog)[0] <= 1.2 * backoff.initial
        await until(lambda: link.status is LinkStatus.READY and len(seen.resyncs) >= 2)
    finally:
        await link.stop()
        await pbx.stop()


async def test_a_link_that_drops_right_after_login_keeps_backing_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.ami")
    pbx = SimulatedPbx(username="gateway", secret=SECRET, clock=ManualClock())
    await pbx.start()
    backoff = ReconnectSettings(initial=0.05, maximum=0.4)
    bus = Bus()
    seen = Seen(bus)
    link = AmiLink(settings(pbx.port, reconnect=backoff), bus, clock=lambda: 1_000.0)
    link.start()
    try:
        for n in range(1, 4):  # each session is cut as soon as it is up: a flapping PBX
            await until(lambda n=n: len(seen.resyncs) >= n)
            pbx.drop_connections()
            await until(lambda n=n: len(waits(caplog)) >= n)
        # the third wait is 4x the first (jitter at most -20 %); the log shows 2 decimals
        assert waits(caplog)[2] >= round(0.8 * 4 * backoff.initial, 2) - 0.005
    finally:
        await link.stop()
        await pbx.stop()


async def test_a_capture_copied_from_a_running_gateway_holds_every_call_it_saw(
    pbx: SimulatedPbx, tmp_path: Path
) -> None:
    capture = tmp_path / "raw.ami"
    bus = Bus()
    seen = Seen(bus)
    link = AmiLink(settings(pbx.port, record_to=str(capture)), bus)
    link.start()
    # a call as the real Asterisk 22 sent it, one event per write as Asterisk writes them
    trace = (TRACES / "inbound_answered.ami").read_bytes().split(b"\r\n\r\n")
    events = [block + b"\r\n\r\n" for block in trace if block.startswith(b"Event: ")]
    last_hangup = max(i for i, e in enumerate(events) if e.startswith(b"Event: Hangup"))
    call = events[: last_hangup + 1]
    try:
        await until(lambda: link.status is LinkStatus.READY and seen.resyncs)
        before = len(seen.events)
        for event in call:
            pbx.inject(event)
            await asyncio.sleep(0)  # let the link read it: one small read per event
        await until(lambda: len(seen.events) - before >= len(call))
        data = capture.read_bytes()  # the gateway is still running
        replayed = replay_capture(data, lab_settings())
        assert [r.linkedid for r in replayed.records] == ["1795346324.0"]
        assert replayed.records[0].outcome.value == "answered"
    finally:
        await link.stop()


@pytest.fixture
async def pbx() -> AsyncIterator[SimulatedPbx]:
    sim = SimulatedPbx(username="gateway", secret=SECRET, clock=ManualClock())
    await sim.start()
    yield sim
    await sim.stop()
