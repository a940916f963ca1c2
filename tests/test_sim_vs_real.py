"""The simulated PBX turns each scenario into the same calls as the real Asterisk capture."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.calls.model import CallRecord
from gateway.calls.replay import lab_settings, replay_capture
from gateway.sim import render, scenarios

TRACES = Path(__file__).parent / "data" / "ami-traces"
REAL = {p.stem for p in TRACES.glob("*.ami")}
COMMON = sorted(name for name in scenarios.SCENARIO_NAMES if name in REAL)
TOLERANCE = 0.1


def records(data: bytes) -> list[CallRecord]:
    result = replay_capture(data, lab_settings())
    assert result.parse_errors == 0
    return result.records


def test_the_simulator_covers_every_real_scenario() -> None:
    real = sorted(n for n in REAL if not n.endswith(".sent") and "login" not in n)
    assert real == COMMON


@pytest.mark.parametrize("name", COMMON)
def test_simulated_scenario_replays_like_the_real_capture(name: str) -> None:
    real = records((TRACES / f"{name}.ami").read_bytes())
    sim = records(render.render_scenario(name))
    assert len(sim) == len(real) == 1
    s, r = sim[0], real[0]
    assert s.outcome == r.outcome
    assert s.direction == r.direction
    assert s.click_to_call == r.click_to_call
    assert s.agents_rang == r.agents_rang
    assert s.agents_answered == r.agents_answered
    assert s.answered_by == r.answered_by
    assert s.queue == r.queue
    assert [t.to_json() for t in s.transfers] == [t.to_json() for t in r.transfers]
    assert (s.caller, s.did, s.dialed) == (r.caller, r.did, r.dialed)
    assert s.ring_seconds == pytest.approx(r.ring_seconds, abs=TOLERANCE)
    assert s.talk_seconds == pytest.approx(r.talk_seconds, abs=TOLERANCE)
    assert s.total_seconds == pytest.approx(r.total_seconds, abs=TOLERANCE)
    assert bool(s.recordings) == bool(r.recordings)
    assert s.hangup_cause == r.hangup_cause
    assert s.warnings == r.warnings == []


@pytest.mark.parametrize("name", COMMON)
def test_simulated_scenario_is_stable_under_another_start_time(name: str) -> None:
    a = records(render.render_scenario(name))[0]
    b = records(render.render_scenario(name, start=1800000000.0))[0]
    assert (a.outcome, a.agents_rang, a.ring_seconds, a.talk_seconds) == (
        b.outcome,
        b.agents_rang,
        b.ring_seconds,
        b.talk_seconds,
    )
    assert b.started_at == pytest.approx(1800000000.0, abs=1.0)
