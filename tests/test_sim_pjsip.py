"""The simulator's PJSIP flavour against the real Asterisk 22.10.1 PJSIP captures.

Fidelity claim, as for the lab flavour: rendered with a capture's start time and Asterisk's
id counters where the capture found them, every PJSIP scenario is that capture, frame for
frame and header for header, noise included (VarSet/Newexten, RTCP reports, a handset
re-registering). Only values that differ on every real run differ: bridge and RTP stream
UUIDs, the login's session details, QueueMemberStatus ``LoginTime``. Replayed through the
call tracker, the simulated stream and the capture give the same records.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from pathlib import Path
from typing import Any

import pytest

from gateway.ami.frames import AmiFrame, encode_frame, iter_capture
from gateway.calls.replay import replay_capture
from gateway.calls.settings import TrackingSettings
from gateway.sim.clock import ManualClock
from gateway.sim.pbx import SimulatedPbx
from gateway.sim.render import render_scenario
from gateway.sim.scenarios import scenario_names

TRACES = Path(__file__).parent / "data" / "ami-traces" / "asterisk-22.10.1-pjsip"
PJSIP = scenario_names("pjsip")
RUN_TO_RUN = {"BridgeUniqueid", "SessionID", "RemoteAddress", "EventTV", "SessionTV", "LoginTime"}
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _real(name: str) -> list[AmiFrame]:
    return iter_capture((TRACES / f"{name}.ami").read_bytes())[1]


def _name(frame: AmiFrame) -> str:
    return frame.get("Event") or "Response:" + frame["Response"]


def _like_capture(name: str, **params: Any) -> bytes:
    """Render with the capture's own start time and Asterisk counters."""
    real = _real(name)
    first = next(f for f in real if f.get("Event") == "Newchannel")
    start = float(next(f["Timestamp"] for f in real[3:] if "Timestamp" in f))
    chan = int(first["Channel"].rsplit("-", 1)[1], 16)
    uid = int(first["Uniqueid"].split(".")[1])
    return render_scenario(
        name, flavour="pjsip", start=start, first_uid=uid, first_channel=chan, **params
    )


def test_every_pjsip_capture_is_a_scenario() -> None:
    captured = {p.name.removesuffix(".ami") for p in TRACES.glob("*.ami")}
    assert sorted(n for n in captured if not n.endswith(".sent")) == sorted(PJSIP)
    assert {"inbound_hold_resume", "click_to_call_customer_noanswer"} <= set(PJSIP)


@pytest.mark.parametrize("name", PJSIP)
def test_default_render_has_the_capture_event_sequence_and_header_order(name: str) -> None:
    real = _real(name)
    mine = iter_capture(render_scenario(name, flavour="pjsip"))[1]
    assert [_name(f) for f in mine] == [_name(f) for f in real]
    assert [list(f) for f in mine] == [list(f) for f in real]


@pytest.mark.parametrize("name", PJSIP)
def test_render_at_the_capture_time_reproduces_every_value(name: str) -> None:
    real = _real(name)
    mine = iter_capture(_like_capture(name))[1]
    assert len(mine) == len(real)
    diffs = []
    for i, (a, b) in enumerate(zip(real, mine, strict=True)):
        for key in a:
            if key in RUN_TO_RUN or _UUID.search(a[key]):
                continue
            if key == "Timestamp" and a.get("Event") == "SuccessfulAuth" and i < 4:
                continue  # our own login, before the call
            if key == "Timestamp" and abs(float(a[key]) - float(b[key])) < 2e-6:
                continue  # float rounding of the re-timed microseconds
            if a[key] != b.get(key):
                diffs.append((i, _name(a), key, a[key], b.get(key)))
    assert diffs == []


def _records(data: bytes) -> list[dict[str, Any]]:
    result = replay_capture(data, TrackingSettings())
    assert result.parse_errors == 0
    return [r.to_json() for r in result.records]


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) < 0.01
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@pytest.mark.parametrize("name", PJSIP)
def test_the_tracker_makes_the_same_records_of_the_simulated_stream(name: str) -> None:
    """Every field ``to_json()`` gives, whatever the tracker adds, equal to the capture's."""
    real = _records((TRACES / f"{name}.ami").read_bytes())
    sim = _records(_like_capture(name))
    assert len(sim) == len(real) == 1
    diffs = {k: (v, sim[0].get(k)) for k, v in real[0].items() if not _same(v, sim[0].get(k))}
    assert diffs == {}
    assert sim[0].keys() == real[0].keys()


IDENTITY = {"linkedid", "started_at", "ended_at", "answered_at", "pbx"}


@pytest.mark.parametrize("name", PJSIP)
def test_another_start_and_other_counters_give_the_same_call(name: str) -> None:
    real = _records((TRACES / f"{name}.ami").read_bytes())[0]
    sim = _records(render_scenario(name, flavour="pjsip", start=1_800_000_000.0))[0]
    for rec in (real, sim):  # these embed uniqueids, which differ by nature
        rec["recordings"] = len(rec.get("recordings") or [])
        rec["transfers"] = len(rec.get("transfers") or [])
    want = {k: v for k, v in real.items() if k not in IDENTITY}
    got = {k: v for k, v in sim.items() if k not in IDENTITY}
    assert _same(got, want), {
        k: (want[k], got.get(k)) for k in want if not _same(want[k], got.get(k))
    }
    assert sim["started_at"] == pytest.approx(1_800_000_000.0, abs=1.0)


def test_a_production_pjsip_asterisk_shape() -> None:
    frames = iter_capture(render_scenario("inbound_answered", flavour="pjsip", agent="105"))[1]
    created = [f for f in frames if f.get("Event") == "Newchannel"]
    assert [f["Channel"] for f in created] == ["PJSIP/trunk-00000000", "PJSIP/105-00000001"]
    trunk, phone = created
    # the trunk leg is born ringing in its endpoint's context, caller ID from the INVITE
    assert (trunk["ChannelStateDesc"], trunk["Context"], trunk["CallerIDNum"]) == (
        "Ring",
        "from-pstn",
        "+34911234567",
    )
    # the agent leg carries its endpoint's context and caller ID
    assert (phone["Context"], phone["CallerIDNum"], phone["CallerIDName"]) == (
        "from-agents",
        "105",
        "Agent 105",
    )
    dial = next(f for f in frames if f.get("Event") == "DialBegin")
    assert (dial["DestChannel"], dial["DialString"]) == ("PJSIP/105-00000001", "105")
    c2c = iter_capture(render_scenario("click_to_call", flavour="pjsip", caller="+14155550132"))[1]
    legs = [f for f in c2c if f.get("Event") == "Newchannel"]
    assert [f["Channel"] for f in legs] == ["PJSIP/101-00000000", "PJSIP/trunk-00000001"]
    customer = legs[1]
    assert (customer["ChannelStateDesc"], customer["Context"]) == ("Down", "from-pstn")
    dials = [f["DialString"] for f in c2c if f.get("Event") == "DialBegin" and "DialString" in f]
    assert dials == ["101", "+14155550132@trunk"]


def test_hold_and_resume_follow_the_hold_parameter() -> None:
    frames = iter_capture(
        render_scenario("inbound_hold_resume", flavour="pjsip", hold_seconds=42.0)
    )[1]
    at = {f["Event"]: float(f["Timestamp"]) for f in frames if f.get("Event") in ("Hold", "Unhold")}
    assert at["Unhold"] - at["Hold"] == pytest.approx(42.0, abs=0.01)
    hold = next(f for f in frames if f.get("Event") == "Hold")
    moh = next(f for f in frames if f.get("Event") == "MusicOnHoldStart")
    assert hold["Channel"].startswith("PJSIP/101-") and moh["Channel"].startswith("PJSIP/trunk-")


def test_a_shorter_call_drops_the_rtcp_reports_it_has_no_time_for() -> None:
    """RTCP comes every 5 s of media: a 1 s conversation has none after its hangup."""
    frames = iter_capture(render_scenario("queue_answered", flavour="pjsip", talk_seconds=1.0))[1]
    stamped = [f for f in frames if "Timestamp" in f and f.get("Event") != "SuccessfulAuth"]
    hangup = max(float(f["Timestamp"]) for f in stamped if f["Event"] == "Hangup")
    assert not any(f["Event"].startswith("RTCP") for f in stamped)
    assert all(float(f["Timestamp"]) <= hangup + 0.01 for f in stamped)
    gone: set[str] = set()
    for f in stamped:  # no media report, state change or bridge move for a hung-up channel
        if f["Event"] not in ("CEL", "Cdr"):
            assert f.get("Channel") not in gone, f
        if f["Event"] == "Hangup":
            gone.add(f["Channel"])


def _key(f: AmiFrame) -> tuple[str, str, str]:
    return (_name(f), f.get("Channel", ""), f.get("Variable", ""))


@pytest.mark.parametrize("name", PJSIP)
def test_retimed_pjsip_calls_stay_in_capture_order(name: str) -> None:
    slow: dict[str, Any] = {"ring_seconds": 9.5, "talk_seconds": 61.0, "hold_seconds": 20.0}
    default = iter_capture(render_scenario(name, flavour="pjsip"))[1]
    retimed = iter_capture(render_scenario(name, flavour="pjsip", **slow))[1]
    assert [_key(f) for f in retimed] == [_key(f) for f in default]
    stamps = [float(f["Timestamp"]) for f in retimed[4:] if "Timestamp" in f]
    assert all(b - a > -0.01 for a, b in itertools.pairwise(stamps))  # Asterisk's own jitter


def test_scenarios_captured_only_over_pjsip_are_a_clear_error_in_the_lab_flavour() -> None:
    with pytest.raises(ValueError, match="no lab capture"):
        render_scenario("inbound_hold_resume")
    with pytest.raises(ValueError, match="no lab capture"):
        render_scenario("click_to_call_customer_noanswer", flavour="lab")


async def _session(pbx: SimulatedPbx, *actions: dict[str, str], wait: float) -> list[AmiFrame]:
    """Log in, send ``actions``, let ``wait`` simulated seconds pass, log off: every frame."""
    reader, writer = await asyncio.open_connection("127.0.0.1", pbx.port)
    login = {"Action": "Login", "ActionID": "gw-1", "Username": "gateway", "Secret": "s"}
    for action in (login, {"Action": "Events", "ActionID": "gw-2", "EventMask": "on"}, *actions):
        writer.write(encode_frame(action))
    await writer.drain()
    await asyncio.sleep(0.05)
    assert isinstance(pbx.clock, ManualClock)
    await pbx.advance(wait)
    writer.write(encode_frame({"Action": "Logoff", "ActionID": "gw-9"}))
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return iter_capture(data)[1]


async def test_click_to_call_to_a_customer_who_never_answers() -> None:
    pbx = SimulatedPbx(secret="s", clock=ManualClock(), flavour="pjsip")
    await pbx.start()
    try:
        originate = {
            "Action": "Originate",
            "ActionID": "c2c-9",
            "Channel": "PJSIP/101",
            "Context": "outbound",
            "Exten": "+34911234567",
            "Priority": "1",
            "CallerID": '"Click-to-call" <+34911234567>',
            "Timeout": "20000",
            "Async": "true",
            "Variable": "GATEWAY_CALL_ID=gw-c2c-9,CUSTRING=noanswer",
        }
        frames = await _session(pbx, originate, wait=60.0)
    finally:
        await pbx.stop()
    result = next(f for f in frames if f.get("Event") == "OriginateResponse")
    assert (result["ActionID"], result["Response"], result["Reason"]) == ("c2c-9", "Success", "4")
    ends = {
        f["DestChannel"].split("-")[0]: f["DialStatus"]
        for f in frames
        if f.get("Event") == "DialEnd"
    }
    assert ends == {"PJSIP/101": "ANSWER", "PJSIP/trunk": "NOANSWER"}
    begin = next(f for f in frames if f.get("Event") == "DialBegin" and "trunk" in f["DestChannel"])
    end = next(f for f in frames if f.get("Event") == "DialEnd" and "trunk" in f["DestChannel"])
    assert float(end["Timestamp"]) - float(begin["Timestamp"]) == pytest.approx(30.0, abs=0.1)
    records = replay_capture(
        b"Asterisk Call Manager/11.0.0\r\n" + b"".join(encode_frame(f) for f in frames),
        TrackingSettings(),
    ).records
    assert len(records) == 1 and records[0].to_json()["click_to_call"]
