"""The simulator's call scenarios against the real Asterisk 22.10.1 captures.

Fidelity claim: rendered with the capture's start time and id counters, every scenario is
the capture, frame for frame and header for header. The only values that differ are ones
that differ on every real run too: bridge UUIDs (and the CEL ``Extra`` JSON quoting them),
the login's SessionID/RemoteAddress/timestamps, and QueueMemberStatus ``LoginTime`` (the
Asterisk boot second, which the simulator derives from FullyBooted's whole-second Uptime).
No event is dropped or reordered: the VarSet/Newexten noise is kept on purpose.
"""

from __future__ import annotations

import itertools
import random
import re
from pathlib import Path

import pytest

from gateway.ami.frames import AmiFrame, iter_capture
from gateway.sim.render import render_scenario
from gateway.sim.scenarios import (
    CallIds,
    IdAllocator,
    render_call,
    scenario_names,
    scenario_params,
)
from gateway.sim.traffic import render_traffic

TRACES = Path(__file__).parent / "data" / "ami-traces"
SCENARIO_NAMES = scenario_names("lab")  # this file checks the lab flavour's captures
RUN_TO_RUN = {"BridgeUniqueid", "SessionID", "RemoteAddress", "EventTV", "SessionTV", "LoginTime"}


def _real(name: str) -> list[AmiFrame]:
    return iter_capture((TRACES / f"{name}.ami").read_bytes())[1]


def _name(frame: AmiFrame) -> str:
    return frame.get("Event") or "Response:" + frame["Response"]


def _render_like(name: str, real: list[AmiFrame], **params: object) -> list[AmiFrame]:
    """Render with the capture's own start second and Asterisk counters."""
    first = next(f for f in real if f.get("Event") == "Newchannel")
    start = float(next(f["Timestamp"] for f in real[3:] if "Timestamp" in f))
    chan = int(re.search(r"-([0-9a-f]{8});", first["Channel"]).group(1), 16)
    data = render_scenario(
        name,
        start=start,
        first_uid=int(first["Uniqueid"].split(".")[1]),
        first_channel=chan,
        **params,
    )
    return iter_capture(data)[1]


def test_every_required_scenario_exists() -> None:
    required = {
        "inbound_answered",
        "inbound_missed_noanswer",
        "inbound_busy",
        "inbound_caller_abandons",
        "queue_answered",
        "queue_abandoned",
        "click_to_call",
        "click_to_call_agent_noanswer",
        "click_to_call_agent_busy",
        "blind_transfer",
    }
    assert required <= set(SCENARIO_NAMES)


@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_default_render_has_the_capture_event_sequence_and_header_sets(name: str) -> None:
    real = _real(name)
    mine = iter_capture(render_scenario(name))[1]
    assert [_name(f) for f in mine] == [_name(f) for f in real]
    assert [list(f) for f in mine] == [list(f) for f in real]  # header names, in order


@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_render_at_the_capture_time_reproduces_every_value(name: str) -> None:
    real = _real(name)
    mine = _render_like(name, real)
    assert len(mine) == len(real)
    diffs = []
    for i, (a, b) in enumerate(zip(real, mine, strict=True)):
        for key in a:
            if key in RUN_TO_RUN or (key == "Extra" and "bridge_id" in a[key]):
                continue
            if key == "Timestamp" and a.get("Event") == "SuccessfulAuth":
                continue
            if key == "Timestamp" and abs(float(a[key]) - float(b[key])) < 2e-6:
                continue  # float rounding of the re-timed microseconds
            if a[key] != b[key]:
                diffs.append((i, _name(a), key, a[key], b[key]))
    assert diffs == []


def test_stream_starts_like_a_real_session() -> None:
    data = render_scenario("inbound_answered")
    assert data.startswith(b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\n")
    assert data.endswith(b"Message: Thanks for all the fish.\r\n\r\n")
    assert b"\r\n\r\n\r\n" not in data
    assert data.replace(b"\r\n", b"").count(b"\n") == 0  # only CRLF line endings


def _cdrs(frames: list[AmiFrame]) -> list[AmiFrame]:
    return [f for f in frames if f.get("Event") == "Cdr"]


def test_ring_and_talk_seconds_retime_the_call_consistently() -> None:
    start = 1_800_000_000.0
    frames = iter_capture(
        render_scenario("inbound_answered", start=start, ring_seconds=7.0, talk_seconds=42.0)
    )[1]
    stamps = {f["Event"]: float(f["Timestamp"]) for f in frames if f.get("Event") == "DialEnd"}
    answer = stamps["DialEnd"]
    hangup = next(float(f["Timestamp"]) for f in frames if f.get("Event") == "Hangup")
    assert answer - start == pytest.approx(7.0, abs=0.05)
    assert hangup - answer == pytest.approx(42.0, abs=0.05)
    trunk_cdr = next(f for f in _cdrs(frames) if f["LastApplication"] == "Dial")
    assert trunk_cdr["Disposition"] == "ANSWERED"
    assert trunk_cdr["BillableSeconds"] == "42"
    assert trunk_cdr["Duration"] == "49"
    assert trunk_cdr["StartTime"] == "2027-01-15 08:00:00"
    assert trunk_cdr["AnswerTime"] == "2027-01-15 08:00:07"
    assert trunk_cdr["EndTime"] == "2027-01-15 08:00:49"
    answered = {f["Variable"]: f["Value"] for f in frames if f.get("Event") == "VarSet"}
    assert answered["ANSWEREDTIME"] == "42"
    assert answered["DIALEDTIME"] == "49"


@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_retiming_keeps_the_capture_order(name: str) -> None:
    """Longer phases move bursts, never events inside them (Cdr stays where Asterisk put it)."""
    slow = {"ring_seconds": 9.5, "talk_seconds": 61.0, "transfer_talk_seconds": 30.0}
    params = {k: v for k, v in slow.items() if k in scenario_params(name)}
    default = iter_capture(render_scenario(name))[1]
    retimed = iter_capture(render_scenario(name, **params))[1]
    key = lambda f: (_name(f), f.get("Channel", ""), f.get("Variable", ""))  # noqa: E731
    assert [key(f) for f in retimed] == [key(f) for f in default]


def test_queue_hold_and_talk_times_follow_the_parameters() -> None:
    frames = iter_capture(render_scenario("queue_answered", ring_seconds=12.0, talk_seconds=30.0))[
        1
    ]
    connect = next(f for f in frames if f.get("Event") == "AgentConnect")
    complete = next(f for f in frames if f.get("Event") == "AgentComplete")
    assert connect["HoldTime"] == "12"
    assert complete["HoldTime"] == "12"
    assert int(complete["TalkTime"]) in (30, 31)  # Asterisk rounds the talk time
    abandoned = iter_capture(render_scenario("queue_abandoned", ring_seconds=20.0))[1]
    abandon = next(f for f in abandoned if f.get("Event") == "QueueCallerAbandon")
    assert abandon["HoldTime"] == "20"


def test_parameters_relabel_caller_did_agents_queue_and_call_id() -> None:
    data = render_scenario(
        "queue_answered",
        caller="+442079460958",
        did="8005551234",
        agents=("201", "202"),
        queue="support",
    )
    frames = iter_capture(data)[1]
    join = next(f for f in frames if f.get("Event") == "QueueCallerJoin")
    assert (join["Queue"], join["CallerIDNum"], join["Exten"]) == (
        "support",
        "+442079460958",
        "8005551234",
    )
    called = [f["Interface"] for f in frames if f.get("Event") == "AgentCalled"]
    assert called == ["Local/201@agents/n", "Local/202@agents/n"]
    assert b"+34911234567" not in data and b"sales" not in data and b"5551000" not in data
    c2c = render_scenario("click_to_call", gateway_call_id="gw-42", caller="+14155550132")
    assert b"GATEWAY_CALL_ID=gw-42" in c2c
    assert b"Exten: +14155550132" in c2c


def test_hostile_caller_name_is_carried_verbatim_and_cannot_inject_headers() -> None:
    name = "<script>alert(1)</script>\r\nEvent: Fake"
    frames = iter_capture(render_scenario("inbound_answered", caller_name=name))[1]
    assert not any(f.get("Event") == "Fake" for f in frames)
    shown = {f["CallerIDName"] for f in frames if f.get("CallerIDNum") == "+34911234567"}
    assert shown == {"<script>alert(1)</script>  Event: Fake"}
    cdr = _cdrs(frames)[0]
    assert cdr["CallerID"] == '"<script>alert(1)</script>  Event: Fake" <+34911234567>'
    braces = iter_capture(render_scenario("queue_answered", caller_name="{caller}{0}%s"))[1]
    assert {f["CallerIDName"] for f in braces if f.get("Event") == "QueueCallerJoin"} == {
        "{caller}{0}%s"
    }


def test_timeline_comes_from_the_injected_start_only() -> None:
    a = render_call("inbound_busy", start=1000.0)
    b = render_call("inbound_busy", start=1000.0)
    assert [f.headers for f in a] == [f.headers for f in b]
    assert a[0].at == pytest.approx(1000.0, abs=0.01)
    assert all(x.at <= y.at for x, y in itertools.pairwise(a))


def test_calls_sharing_counters_get_distinct_ids() -> None:
    alloc = IdAllocator()
    first = render_call("inbound_answered", ids=CallIds(alloc))
    second = render_call("inbound_answered", ids=CallIds(alloc))
    uids = lambda fs: {f.headers["Uniqueid"] for f in fs if "Uniqueid" in f.headers}  # noqa: E731
    assert uids(first).isdisjoint(uids(second))
    assert second[1].headers["Channel"] == "Local/5551000@from-pstn-00000002;1"


def test_unknown_scenario_or_parameter_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        render_scenario("inbound_teleport")
    with pytest.raises(TypeError, match="ring_secs"):
        scenario_params("inbound_answered", ring_secs=3)
    with pytest.raises(ValueError, match="flavour"):
        render_scenario("inbound_answered", flavour="sip")


def test_bulk_traffic_is_a_valid_stream_with_distinct_calls() -> None:
    data = render_traffic(40, 1_800_000_000.0, random.Random(3))
    parser, frames = iter_capture(data)
    assert parser.errors == []
    created = [f["Uniqueid"] for f in frames if f.get("Event") == "Newchannel"]
    ended = [f["Uniqueid"] for f in frames if f.get("Event") == "Hangup"]
    assert len(created) == len(set(created)) >= 40 * 2
    assert sorted(created) == sorted(ended)
    linkedids = {f["Linkedid"] for f in frames if f.get("Event") == "Newchannel"}
    assert len(linkedids) == 40


IDENTITY = {"linkedid", "started_at", "ended_at", "answered_at", "pbx"}


@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_the_call_tracker_sees_the_same_call_as_in_the_capture(name: str) -> None:
    from gateway.calls.replay import lab_settings, replay_capture

    real = replay_capture((TRACES / f"{name}.ami").read_bytes(), lab_settings()).records
    sim = replay_capture(render_scenario(name), lab_settings()).records
    assert len(real) == len(sim) == 1
    want = {k: v for k, v in real[0].to_json().items() if k not in IDENTITY}
    got = {k: v for k, v in sim[0].to_json().items() if k not in IDENTITY}
    for rec in (want, got):  # transfers and recordings embed uniqueids
        rec["recordings"] = len(rec["recordings"])
        rec["transfers"] = len(rec["transfers"])
    assert got == want
