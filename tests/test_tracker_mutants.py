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
    A102,
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


def test_a_tracker_bug_costs_one_frame_is_counted_and_logged_ten_times_at_most(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tracker = CallTracker(TrackingSettings())

    def boom(f: AmiFrame, at: float) -> None:
        raise RuntimeError("bug")

    tracker._dispatch["Hangup"] = boom
    s = Stream()
    with caplog.at_level("ERROR", logger="gateway.calls"):
        for i in range(12):
            assert tracker.feed(s.ev("Hangup", Uniqueid=f"{i}")) == []
    assert tracker.errors == 12
    assert [r.getMessage() for r in caplog.records] == [
        "call tracker failed on a Hangup event"
    ] * 10
    # the tracker goes on: the next call is tracked as usual
    ringing = feed(tracker, pjsip_inbound(s)[:3])
    assert kinds(ringing) == [("ringing", ("101",))] and tracker.open_calls == 1


def test_max_open_calls_of_one_keeps_exactly_one_call() -> None:
    tracker = CallTracker(TrackingSettings(max_open_calls=1))
    s = Stream()
    first = feed(tracker, [s.ev("Newchannel", chan(TRUNK, "9.0", "9.0"))])
    assert first == [] and tracker.open_calls == 1
    ended = records(feed(tracker, [s.at(1).ev("Newchannel", chan(TRUNK, "9.1", "9.1"))]))
    assert [r.linkedid for r in ended] == ["9.0"] and tracker.open_calls == 1
    assert (tracker.evicted, tracker.late_events, tracker.orphan_hangups) == (1, 0, 0)
    feed(tracker, [s.ev("Hangup", chan(TRUNK, "9.0", "9.0")), s.ev("Cdr", UniqueID="9.0")])
    feed(tracker, [s.ev("DialBegin", chan(TRUNK, "9.0", "9.0"), dest(A101, "9.5", "9.0"))])
    assert (tracker.late_events, tracker.orphan_hangups) == (2, 1)  # caller and callee


def test_a_warning_is_given_once_however_often_it_happens() -> None:
    s = Stream()
    trunk = chan(TRUNK, "6.1", "6.1", "from-trunk", "5551000")
    huge = "/rec/" + "x" * 5000 + ".wav"
    rec = one(feed(CallTracker(TrackingSettings()), [
        s.ev("Newchannel", trunk),
        s.ev("VarSet", trunk, Variable="MIXMONITOR_FILENAME", Value=huge),
        s.ev("VarSet", trunk, Variable="MIXMONITOR_FILENAME", Value=huge),
        s.at(1).ev("Hangup", trunk, Cause="16"),
    ]))  # fmt: skip
    assert rec.warnings == [
        f"ignored a MIXMONITOR_FILENAME value of {len(huge)} characters",
        "no agent phone rang (if one did, check tracking.agent_channels and "
        "tracking.agent_contexts)",
    ]


def test_resync_finds_a_caller_waiting_in_a_queue_whose_join_was_lost() -> None:
    tracker = CallTracker(TrackingSettings())
    waiting = snapshot_of(TRUNK, "50.1", "50.1", "Up", Duration="01:02:03")
    waiting |= {"Application": "Queue", "ApplicationData": "sales,tT,,,300"}
    assert tracker.resync([waiting], T0) == []
    s = Stream().at(20)
    rec = one(feed(tracker, [s.ev("Hangup", chan(TRUNK, "50.1", "50.1"), Cause="16")]))
    assert (rec.queue, rec.outcome.value, rec.queue_wait_seconds) == ("sales", "abandoned", 20.0)
    assert (rec.started_at, rec.total_seconds) == (T0 - 3723, 3743.0)
    assert rec.warnings == [
        "the start of this call was not seen: times are approximate",
        "joined in progress from the channel list read on connect",
    ]


def test_queue_that_gives_up_before_any_phone_rings_is_abandoned() -> None:
    """The queue times out (QueueCallerLeave, no abandon) with no member ever rung."""
    s = Stream()
    trunk = chan(TRUNK, "51.1", "51.1", "from-trunk", "5551000", "+34911234567")
    events = feed(CallTracker(TrackingSettings()), [
        s.ev("Newchannel", trunk),
        s.ev("QueueCallerJoin", trunk, Queue="sales"),
        s.at(60).ev("QueueCallerLeave", trunk, Queue="sales"),
        s.at(5).ev("Hangup", trunk, Cause="16"),
    ])  # fmt: skip
    rec = one(events)
    assert (rec.outcome.value, rec.queue_wait_seconds, rec.ring_seconds) == (
        "abandoned",
        60.0,
        0.0,
    )


def test_an_originate_ringing_an_agent_who_calls_another_agent_is_internal() -> None:
    s = Stream()
    a101 = chan(A101, "52.1", "52.1", "from-internal", "101")
    events = feed(CallTracker(TrackingSettings()), [
        s.ev("Newchannel", a101),
        s.ev("DialBegin", dest(A101, "52.1", "52.1", "from-internal", "101")),
        s.at(1).ev("DialEnd", dest(A101, "52.1", "52.1"), DialStatus="ANSWER"),
        s.ev("DialBegin", chan(A101, "52.1", "52.1", "from-internal", "102"),
             dest("PJSIP/102-00000053", "52.2", "52.1", "from-internal", "102")),
        s.at(2).ev("DialEnd", chan(A101, "52.1", "52.1"),
                   dest("PJSIP/102-00000053", "52.2", "52.1"), DialStatus="ANSWER"),
        s.at(10).ev("Hangup", a101, Cause="16"),
        s.ev("Hangup", chan("PJSIP/102-00000053", "52.2", "52.1"), Cause="16"),
    ])  # fmt: skip
    rec = one(events)
    assert (rec.direction.value, rec.outcome.value, rec.dialed, rec.answered_by) == (
        "internal",
        "answered",
        "102",
        "102",
    )
    assert (rec.agents_rang, rec.ring_seconds, rec.talk_seconds) == (["101", "102"], 2.0, 10.0)


@pytest.mark.parametrize(
    ("exten", "dest_exten", "dialed"),
    [(NUMBER, "", NUMBER), ("s", NUMBER, NUMBER), ("s", "s", f"trunk/{NUMBER}")],
)
def test_the_number_dialed_comes_from_the_extension_then_the_dial_string(
    exten: str, dest_exten: str, dialed: str
) -> None:
    """A Dial() run from a subroutine sits in extension ``s``: DestExten, then the dial
    string, say what was dialed."""
    s = Stream()
    agent = chan(A101, "41.1", "41.1", "from-internal", exten, "101")
    far = dest(FAR, "41.2", "41.1", "from-trunk", dest_exten)
    rec = one(feed(CallTracker(TrackingSettings()), [
        s.ev("Newchannel", agent),
        s.ev("DialBegin", agent, far, DialString=f"trunk/{NUMBER}"),
        s.at(4).ev("DialEnd", agent, far, DialStatus="BUSY"),
        s.ev("Hangup", agent, Cause="17"),
        s.ev("Hangup", chan(FAR, "41.2", "41.1"), Cause="17"),
    ]))  # fmt: skip
    assert rec.to_json() == record(dialed=dialed, outcome="busy")


def test_a_two_digit_phone_outside_the_settings_is_still_guessed() -> None:
    s = Stream()
    trunk = chan(TRUNK, "53.1", "53.1", "from-trunk", "5551000", "+34911234567")
    phone = dest("DAHDI/42-1", "53.2", "53.1", "from-internal", "42")
    rec = one(feed(CallTracker(TrackingSettings()), [
        s.ev("Newchannel", trunk),
        s.ev("DialBegin", trunk, phone),
        s.at(2).ev("DialEnd", trunk, phone, DialStatus="ANSWER"),
        s.at(3).ev("Hangup", trunk, Cause="16"),
        s.ev("Hangup", chan("DAHDI/42-1", "53.2", "53.1"), Cause="16"),
    ]))  # fmt: skip
    assert (rec.answered_by, rec.agents_rang, rec.ring_seconds, rec.talk_seconds) == (
        "42",
        ["42"],
        2.0,
        3.0,
    )
    assert rec.warnings == [
        "'DAHDI/42-1' is not a configured agent phone; guessed extension 42 "
        "(see tracking.agent_channels / tracking.agent_contexts)"
    ]


def test_seconds_are_kept_to_the_millisecond() -> None:
    s = Stream()
    trunk = chan(TRUNK, "54.1", "54.1", "from-trunk", "5551000", "+34911234567")
    agent = dest(A101, "54.2", "54.1", "from-internal", "101")
    rec = one(feed(CallTracker(TrackingSettings()), [
        s.ev("Newchannel", trunk),
        s.at(1.2345).ev("QueueCallerJoin", trunk, Queue="sales"),
        s.at(1.1111).ev("DialBegin", trunk, agent),
        s.at(2.2222).ev("DialEnd", trunk, agent, DialStatus="NOANSWER"),
        s.at(3.3333).ev("Hangup", trunk, Cause="16"),
        s.ev("Hangup", chan(A101, "54.2", "54.1"), Cause="16"),
    ]))  # fmt: skip
    assert (rec.ring_seconds, rec.queue_wait_seconds, rec.total_seconds) == (
        2.222,
        6.667,
        7.901,
    )


def test_only_local_channels_have_halves() -> None:
    """A channel whose name merely ends in ``;1`` (ConfBridge's ``CBAnn/...;1``, a driver's
    own naming) is a channel of its own: in an inbound context its extension is the DID."""
    s = Stream()
    trunk_name = "CBAnn/sales-00000001;1"
    trunk = chan(trunk_name, "55.1", "55.1", "from-trunk", "5551000", "+34911234567")
    agent = dest(A101, "55.2", "55.1", "from-internal", "101")
    rec = one(feed(CallTracker(TrackingSettings()), [
        s.ev("Newchannel", trunk),
        s.ev("DialBegin", trunk, agent),
        s.at(2).ev("DialEnd", trunk, agent, DialStatus="NOANSWER"),
        s.ev("Hangup", trunk, Cause="16"),
        s.ev("Hangup", chan(A101, "55.2", "55.1"), Cause="16"),
    ]))  # fmt: skip
    assert (rec.did, rec.caller, rec.outcome.value, rec.warnings) == (
        "5551000",
        "+34911234567",
        "noanswer",
        [],
    )


def test_resync_stops_the_ringing_of_a_leg_that_hung_up_while_the_link_was_down() -> None:
    """101 and 102 ring; the link drops; the snapshot has 102 still ringing and no 101: the
    pop-up now shows 102 alone, and the call goes on to end with its last channel."""
    s = Stream()
    trunk = chan(TRUNK, "60.1", "60.1", "from-trunk", "5551000", "+34911234567")
    m101 = dest(A101, "60.2", "60.1", "from-internal", "101")
    m102 = dest(A102, "60.3", "60.1", "from-internal", "102")
    tracker = CallTracker(TrackingSettings())
    events = feed(tracker, [
        s.ev("Newchannel", trunk), s.ev("DialBegin", trunk, m101), s.ev("DialBegin", trunk, m102),
    ])  # fmt: skip
    assert kinds(events) == [("ringing", ("101",)), ("ringing", ("101", "102"))]
    snap = [
        snapshot_of(TRUNK, "60.1", "60.1", "Up"),
        snapshot_of(A102, "60.3", "60.1", "Ringing", Context="from-internal", Extension="102"),
    ]
    assert kinds(tracker.resync(snap, s.at(3).t)) == [("ringing", ("102",))]
    events = feed(tracker, [
        s.at(1).ev("DialEnd", trunk, m102, DialStatus="ANSWER"),
        s.at(10).ev("Hangup", trunk, Cause="16"),
        s.at(1).ev("Hangup", chan(A102, "60.3", "60.1"), Cause="16"),
    ])  # fmt: skip
    assert kinds(events) == [("answered", "102"), ("ended", "answered")]
    rec = one(events)
    assert (rec.agents_rang, rec.answered_by, rec.ended_at) == (["101", "102"], "102", T0 + 15)
    assert (rec.ring_seconds, rec.talk_seconds, rec.reconstructed) == (4.0, 11.0, False)


def test_resync_reports_a_call_evicted_for_room_before_the_new_calls_events() -> None:
    tracker = CallTracker(TrackingSettings(max_open_calls=1))
    s = Stream()
    feed(tracker, [s.ev("Newchannel", chan(TRUNK, "61.1", "61.1", "from-trunk", "5551000"))])
    snap = [
        snapshot_of(TRUNK, "61.1", "61.1", "Up"),
        snapshot_of("PJSIP/trunk-00000062", "62.1", "62.1", "Ring"),
        snapshot_of(A101, "62.2", "62.1", "Ringing", Context="from-internal", Extension="101"),
    ]
    events = tracker.resync(snap, s.at(5).t)
    assert kinds(events) == [("ended", "noanswer"), ("ringing", ("101",))]
    assert [r.linkedid for r in records(events)] == ["61.1"] and tracker.open_calls == 1
    # reported once: the next frame does not end the evicted call again
    assert feed(tracker, [s.ev("Hangup", chan(TRUNK, "61.1", "61.1"), Cause="16")]) == []
