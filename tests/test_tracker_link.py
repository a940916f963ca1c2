"""The tracker's event filter on a live link: the simulated PBX over real TCP answers
QueueStatus the way Asterisk 22 does (ActionID last), and the snapshot must keep it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway.ami.events import ResyncSnapshot
from gateway.ami.link import LINK_EVENTS, AmiLink
from gateway.bus import Bus
from gateway.calls.settings import TrackingSettings
from gateway.calls.tracker import event_filter
from gateway.config import PbxSettings, ReconnectSettings
from gateway.sim.clock import ManualClock
from gateway.sim.pbx import SimulatedPbx

SECRET = "tracker-link-secret"


@pytest.fixture
async def pbx() -> AsyncIterator[SimulatedPbx]:
    sim = SimulatedPbx(username="gateway", secret=SECRET, clock=ManualClock())
    await sim.start()
    yield sim
    await sim.stop()


async def test_queue_status_snapshot_survives_the_trackers_event_filter(
    pbx: SimulatedPbx,
) -> None:
    bus = Bus()
    snapshots: list[ResyncSnapshot] = []
    bus.subscribe(ResyncSnapshot, snapshots.append)
    settings = PbxSettings(
        name="main", host="127.0.0.1", port=pbx.port, username="gateway", secret=SECRET,
        ping_interval=1.0, action_timeout=1.0, connect_timeout=1.0,
        reconnect=ReconnectSettings(initial=0.05, maximum=0.2),
    )  # fmt: skip
    # the filter the gateway really runs with (gateway/app.py)
    link = AmiLink(settings, bus, event_filter=event_filter(TrackingSettings(), also=LINK_EVENTS))
    link.start()
    try:
        for _ in range(500):
            if snapshots:
                break
            await asyncio.sleep(0.01)
        assert snapshots, "no resync snapshot within 5 s"
    finally:
        await link.stop()
    queues = snapshots[0].queues
    members = sorted(
        (q["Queue"], q["Name"], q["Location"]) for q in queues if q["Event"] == "QueueMember"
    )
    assert [q["Event"] for q in queues if q["Event"] == "QueueParams"] == ["QueueParams"]
    assert members == [
        ("sales", "Agent 101", "Local/101@agents/n"),
        ("sales", "Agent 102", "Local/102@agents/n"),
    ]
