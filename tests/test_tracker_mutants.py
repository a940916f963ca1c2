"""Tests that would notice (issue #11): each one pins a behaviour a user sees (an outcome, an
agent, a pop-up, ring and talk seconds) that a one-token change in the tracker used to leave
unnoticed by the suite (``bench/mutation.py``). Each asserts whole records or event lists."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.ami.frames import AmiFrame
from gateway.calls.events import CallAnswered, CallRinging
from gateway.calls.settings import TrackingSettings
from gateway.calls.tracker import CallTracker
from tests.test_tracker import (
    A101,
    T0,
    TRUNK,
    Stream,
    chan,
    dest,
    feed,
    pjsip_inbound,
    records,
    snapshot_of,
)
from tests.test_tracker_paths import kinds, one

FAR = "PJSIP/trunk-00000042"
NUMBER = "0034911234567"


def record(**changes: Any) -> dict[str, Any]:
    """A whole record as ``to_json`` gives it: an unanswered outbound call of agent 101."""
    base: dict[str, Any] = {
        "linkedid": "41.1",
        "pbx": "default",
        "direction": "outbound",
        "click_to_call": False,
        "call_id": None,
        "caller": "101",
        "caller_name": None,
        "did": None,
        "dialed": NUMBER,
        "queue": None,
        "agents_rang": [],
        "agents_answered": [],
        "answered_by": None,
        "transfers": [],
        "outcome": "failed",
        "started_at": T0,
        "answered_at": None,
        "ended_at": T0 + 4,
        "ring_seconds": 4.0,
        "queue_wait_seconds": None,
        "talk_seconds": 0.0,
        "total_seconds": 4.0,
        "hangup_cause": "17",
        "recordings": [],
        "reconstructed": False,
        "warnings": [],
    }
    return base | changes


# ------------------------------------------------------------------ the Cdr's disposition


def outbound_without_dialend(dispositions: list[str]) -> list[AmiFrame]:
    """Agent 101 dials out; the trunk leg hangs up with no DialEnd; then the Cdrs arrive."""
    s = Stream()
    agent = chan(A101, "41.1", "41.1", "from-internal", NUMBER, "101")
    far = dest(FAR, "41.2", "41.1", "from-trunk", "s")
    frames = [
        s.ev("Newchannel", agent),
        s.ev("Newchannel", chan(FAR, "41.2", "41.1", "from-trunk", "s")),
        s.ev("DialBegin", agent, far, DialString=f"trunk/{NUMBER}"),
        s.at(4).ev("Hangup", chan(FAR, "41.2", "41.1"), Cause="17"),
    ]
    frames += [s.ev("Cdr", UniqueID="41.1", Disposition=d, Duration="4") for d in dispositions]
    return [*frames, s.ev("Hangup", agent, Cause="17")]


@pytest.mark.parametrize(
    ("dispositions", "outcome"),
    [
        ([], "failed"),  # nothing says why: it failed
        (["BUSY"], "busy"),
        (["NO ANSWER"], "noanswer"),
        (["FAILED"], "failed"),
        (["ANSWERED"], "failed"),  # not an outcome the legs contradict: no answer was seen
        (["BUSY", "NO ANSWER"], "noanswer"),  # the last Cdr that says something wins
        (["NO ANSWER", "CONGESTION"], "noanswer"),
        (["FAILED", "BUSY", "ANSWERED"], "busy"),
    ],
)
def test_outbound_call_whose_dial_leg_vanished_takes_the_cdr_disposition(
    dispositions: list[str], outcome: str
) -> None:
    events = feed(CallTracker(TrackingSettings()), outbound_without_dialend(dispositions))
    assert kinds(events) == [("ended", outcome)]
    assert one(events).to_json() == record(outcome=outcome)


# ------------------------------------------------------------------ click-to-call


def click_to_call(call_id: str | None, shown: str, customer: str) -> list[AmiFrame]:
    """An Originate rings agent 101 showing ``shown``; 101 answers; ``NUMBER`` is dialed and
    the customer says ``customer`` (None: the agent hangs up before it is dialed)."""
    s = Stream()
    agent = chan(A101, "41.1", "41.1", "from-internal", "101")
    frames = [s.ev("Newchannel", agent)]
    if call_id is not None:
        frames.append(s.ev("VarSet", agent, Variable="GATEWAY_CALL_ID", Value=call_id))
    frames += [
        s.ev("NewCallerid", agent, CallerIDNum=shown),
        s.ev("DialBegin", dest(A101, "41.1", "41.1", "from-internal", "101")),
        s.at(2).ev("DialEnd", dest(A101, "41.1", "41.1"), DialStatus="ANSWER"),
    ]
    src = chan(A101, "41.1", "41.1", "outbound", NUMBER, shown)
    far = dest(FAR, "41.2", "41.1", "from-trunk", "s")
    frames += [
        s.ev("Newchannel", chan(FAR, "41.2", "41.1", "from-trunk", "s")),
        s.ev("DialBegin", src, far, DialString=f"trunk/{NUMBER}"),
        s.at(2).ev("DialEnd", src, far, DialStatus=customer),
        s.ev("Hangup", chan(FAR, "41.2", "41.1"), Cause="17"),
        s.ev("Hangup", src, Cause="17"),
    ]
    return frames


def test_click_to_call_record_names_the_number_dialed_not_the_one_shown() -> None:
    """The Originate shows the customer as ``+34 911 23 45 67`` on the agent's phone; the
    dialplan dials ``0034911234567``: the record keeps what was dialed."""
    events = feed(CallTracker(TrackingSettings()), click_to_call("gw-9", "+34911234567", "BUSY"))
    ringing = [e for e in events if isinstance(e, CallRinging)]
    assert [(e.ringing, e.click_to_call, e.call_id, e.dialed) for e in ringing] == [
        (("101",), True, "gw-9", "+34911234567"),  # not dialed yet: the number it will call
    ]
    assert one(events).to_json() == record(
        click_to_call=True, call_id="gw-9", outcome="busy", agents_rang=["101"]
    )


def test_an_originate_the_gateway_did_not_send_has_no_number_of_its_own() -> None:
    """Another tool's Originate also shows a number on the agent's phone; the agent picks up
    and hangs up before anything is dialed: not a click-to-call, and nothing was dialed."""
    s = Stream()
    agent = chan(A101, "41.1", "41.1", "from-internal", "101")
    events = feed(CallTracker(TrackingSettings()), [
        s.ev("Newchannel", agent),
        s.ev("NewCallerid", agent, CallerIDNum="+34911234567"),
        s.ev("DialBegin", dest(A101, "41.1", "41.1", "from-internal", "101")),
        s.at(3).ev("DialEnd", dest(A101, "41.1", "41.1"), DialStatus="ANSWER"),
        s.at(1).ev("Hangup", agent, Cause="16"),
    ])  # fmt: skip
    assert kinds(events) == [("ringing", ("101",)), ("ended", "failed")]
    ring = events[0]
    assert isinstance(ring, CallRinging) and ring.dialed is None and not ring.click_to_call
    assert one(events).to_json() == record(
        dialed=None, agents_rang=["101"], ring_seconds=3.0, hangup_cause="16"
    )
    # the same with the gateway's variable: the number it was going to dial is known
    rec = one(feed(CallTracker(TrackingSettings()), _with_call_id(Stream())))
    assert (rec.click_to_call, rec.call_id, rec.dialed) == (True, "gw-1", "+34911234567")


def _with_call_id(s: Stream) -> list[AmiFrame]:
    agent = chan(A101, "41.1", "41.1", "from-internal", "101")
    return [
        s.ev("Newchannel", agent),
        s.ev("VarSet", agent, Variable="GATEWAY_CALL_ID", Value="gw-1"),
        s.ev("NewCallerid", agent, CallerIDNum="+34911234567"),
        s.ev("DialBegin", dest(A101, "41.1", "41.1", "from-internal", "101")),
        s.at(3).ev("DialEnd", dest(A101, "41.1", "41.1"), DialStatus="ANSWER"),
        s.at(1).ev("Hangup", agent, Cause="16"),
    ]


def test_click_to_call_the_agent_picked_up_while_the_link_was_down_is_not_failed() -> None:
    """The snapshot read on reconnect shows the agent's leg Up: the agent answered the
    gateway's Originate, so a customer who is then busy makes the call busy, not failed."""
    s = Stream()
    agent = chan(A101, "41.1", "41.1", "from-internal", "101")
    tracker = CallTracker(TrackingSettings())
    events = feed(tracker, [
        s.ev("Newchannel", agent),
        s.ev("VarSet", agent, Variable="GATEWAY_CALL_ID", Value="gw-7"),
        s.ev("NewCallerid", agent, CallerIDNum="+34911234567"),
        s.ev("DialBegin", dest(A101, "41.1", "41.1", "from-internal", "101")),
    ])  # fmt: skip
    assert kinds(events) == [("ringing", ("101",))]
    up = snapshot_of(A101, "41.1", "41.1", "Up", Context="outbound", Extension=NUMBER)
    assert tracker.resync([up], s.at(3).t) == []  # the agent's own pick-up is no answer
    src = chan(A101, "41.1", "41.1", "outbound", NUMBER, "+34911234567")
    far = dest(FAR, "41.2", "41.1", "from-trunk", "s")
    events = feed(tracker, [
        s.at(1).ev("Newchannel", chan(FAR, "41.2", "41.1", "from-trunk", "s")),
        s.ev("DialBegin", src, far, DialString=f"trunk/{NUMBER}"),
        s.at(4).ev("DialEnd", src, far, DialStatus="NOANSWER"),
        s.ev("Hangup", src, Cause="19"),
        s.ev("Hangup", chan(FAR, "41.2", "41.1"), Cause="19"),
    ])  # fmt: skip
    assert kinds(events) == [("ringing", ()), ("ended", "noanswer")]
    assert one(events).to_json() == record(
        click_to_call=True,
        call_id="gw-7",
        outcome="noanswer",
        agents_rang=["101"],
        ended_at=T0 + 8,
        ring_seconds=8.0,
        total_seconds=8.0,
        hangup_cause="19",
    )


# ------------------------------------------------------------------ resync


def test_resync_dates_the_answer_by_the_bridge_time_the_pbx_reports() -> None:
    """Asterisk 23+ says how long a channel has been bridged: the answer happened that long
    before the snapshot, and talk time counts from there."""
    s = Stream()
    tracker = CallTracker(TrackingSettings())
    assert kinds(feed(tracker, pjsip_inbound(s)[:3])) == [("ringing", ("101",))]
    agent_up = snapshot_of(A101, "1.2", "1.1", "Up", Context="from-internal", Extension="101")
    snap = [snapshot_of(TRUNK, "1.1", "1.1", "Up"), agent_up | {"BridgedDuration": "00:00:12"}]
    events = tracker.resync(snap, T0 + 30)
    assert kinds(events) == [("answered", "101")]
    assert isinstance(events[0], CallAnswered) and events[0].at == T0 + 18
    s.t = T0 + 40
    events = feed(tracker, [
        s.ev("Hangup", chan(TRUNK, "1.1", "1.1"), Cause="16"),
        s.ev("Hangup", chan(A101, "1.2", "1.1"), Cause="16"),
    ])  # fmt: skip
    rec = one(events)
    assert (rec.answered_at, rec.ring_seconds, rec.talk_seconds, rec.total_seconds) == (
        T0 + 18,
        17.99,
        22.0,
        40.0,
    )
    assert rec.warnings == ["answered while the link was down: answer time estimated"]
    assert records(events)[0].outcome.value == "answered"


def test_resync_without_a_bridge_time_dates_the_answer_at_the_snapshot() -> None:
    s = Stream()
    tracker = CallTracker(TrackingSettings())
    feed(tracker, pjsip_inbound(s)[:3])
    agent_up = snapshot_of(A101, "1.2", "1.1", "Up", Context="from-internal", Extension="101")
    events = tracker.resync([snapshot_of(TRUNK, "1.1", "1.1", "Up"), agent_up], T0 + 30)
    assert [(type(e), getattr(e, "at", None)) for e in events] == [(CallAnswered, T0 + 30)]


# ------------------------------------------------------------------ helpers


def test_moving_a_channel_into_the_call_it_is_already_in_changes_nothing() -> None:
    """``_move`` is the one way a channel changes calls; a move to where it already is
    (an event naming the same call twice) must neither reorder nor end anything."""
    s = Stream()
    tracker = CallTracker(TrackingSettings())
    feed(tracker, pjsip_inbound(s)[:3])
    trunk = tracker._chans["1.1"]
    call = trunk.call
    before = (list(call.channels), call.live)
    assert tracker._move(trunk, call, T0 + 1) == []
    assert (list(call.channels), call.live, trunk.call) == (*before, call)
    assert tracker.open_calls == 1
