"""The demo's simulated traffic never puts one agent on two answered calls at once."""

from __future__ import annotations

import random
import re

import pytest

from gateway.sim.pbx import SimulatedPbx
from gateway.sim.traffic import TrafficGenerator

_AGENT = re.compile(r"^(?:PJSIP|Local)/(10[1-3])[@-]")


def talking(pbx: SimulatedPbx) -> dict[str, set[str]]:
    """Extension -> the calls (linkedids) on which one of its channels is up."""
    out: dict[str, set[str]] = {}
    for name, ch in pbx.channels.items():
        m = _AGENT.match(name)
        if m and ch.headers.get("ChannelStateDesc") == "Up":
            out.setdefault(m.group(1), set()).add(ch.linkedid)
    return out


@pytest.mark.parametrize("flavour", ["pjsip", "lab"])
async def test_no_agent_is_on_two_answered_calls_at_once(flavour: str) -> None:
    from gateway.sim.clock import ManualClock

    pbx = SimulatedPbx(clock=ManualClock(), flavour=flavour)
    traffic = TrafficGenerator(pbx, calls_per_minute=30, rng=random.Random(5))
    traffic.start()
    worst: dict[str, int] = {}
    for _ in range(3600):  # an hour of simulated traffic, second by second
        await pbx.advance(1.0)
        for ext, calls in talking(pbx).items():
            worst[ext] = max(worst.get(ext, 0), len(calls))
    traffic.stop()
    answered = sum(1 for s, _ in traffic.started if s in ("inbound_answered", "queue_answered"))
    assert answered > 30  # the agents still take calls, as many as three can
    assert worst and max(worst.values()) == 1, worst
    # with everyone busy a caller meets a busy phone or a queue nobody answers
    assert {s for s, _ in traffic.started} & {"inbound_busy", "queue_abandoned"}
