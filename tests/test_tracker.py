"""Hand-written AMI streams for what the lab could not capture (PJSIP names, internal and
outbound calls, lost Hangups, out-of-order and malformed events, reconnects)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from gateway.ami.frames import AmiFrame, FrameParser, encode_frame, iter_capture
from gateway.calls.events import (
    CallAnswered,
    CallEnded,
    CallRinging,
    CallTransferred,
    DomainEvent,
)
from gateway.calls.model import CallRecord, Direction, Outcome
from gateway.calls.replay import lab_settings
from gateway.calls.settings import TrackingSettings
from gateway.calls.tracker import CallTracker, event_filter

T0 = 1795346000.0


class Stream:
    """Builds frames the way Asterisk sends them, with a clock that only moves when told."""

    def __init__(self) -> None:
        self.t = T0

    def at(self, dt: float) -> Stream:
        self.t += dt
        return self

    def ev(self, name: str, *parts: dict[str, str], **headers: str) -> AmiFrame:
        frame: AmiFrame = {"Event": name, "Privilege": "call,all", "Timestamp": f"{self.t:.6f}"}
        for p in parts:
            frame.update(p)
        frame.update(headers)
        return frame


def chan(
    name: str, uid: str, lid: str, context: str = "", exten: str = "", cid: str = "", prefix=""
) -> dict[str, str]:
    return {
        f"{prefix}Channel": name,
        f"{prefix}ChannelState": "4",
        f"{prefix}ChannelStateDesc": "Ring",
        f"{prefix}CallerIDNum": cid or "<unknown>",
        f"{prefix}CallerIDName": "<unknown>",
        f"{prefix}Context": context,
        f"{prefix}Exten": exten,
        f"{prefix}Priority": "1",
        f"{prefix}Uniqueid": uid,
        f"{prefix}Linkedid": lid,
    }


def dest(*args: Any, **kw: Any) -> dict[str, str]:
    return chan(*args, prefix="Dest", **kw)


def feed(tracker: CallTracker, frames: list[AmiFrame]) -> list[DomainEvent]:
    return [e for f in frames for e in tracker.feed(f)]


def records(events: list[DomainEvent]) -> list[CallRecord]:
    return [e.record for e in events if isinstance(e, CallEnded)]


TRUNK = "PJSIP/trunk-0000000a"
A101 = "PJSIP/101-0000000b"
A102 = "PJSIP/102-0000000c"


def pjsip_inbound(s: Stream, status: str = "ANSWER") -> list[AmiFrame]:
    """A caller on the trunk rings agent 101 (PJSIP) for 3 s; it answers and talks 20 s."""
    trunk = chan(TRUNK, "1.1", "1.1", "from-trunk", "5551000", "+34911234567")
    agent = dest(A101, "1.2", "1.1", "from-internal", "101", "101")
    frames = [
        s.ev("Newchannel", trunk, CallerIDName="<script>alert(1)</script>"),
        s.at(0.01).ev("Newchannel", chan(A101, "1.2", "1.1", "from-internal", "101")),
        s.ev("DialBegin", trunk, agent, DialString="101"),
        s.at(3).ev("DialEnd", trunk, agent, DialStatus=status),
    ]
    if status == "ANSWER":
        s.at(20)
    frames += [
        s.ev("Hangup", chan(TRUNK, "1.1", "1.1"), Cause="16", **{"Cause-txt": "Normal"}),
        s.ev("Hangup", chan(A101, "1.2", "1.1"), Cause="16"),
    ]
    return frames


def test_pjsip_inbound_call_pops_up_before_answer_and_logs_the_call() -> None:
    tracker = CallTracker(TrackingSettings(), "pbx1")
    events = feed(tracker, pjsip_inbound(Stream()))
    assert [type(e) for e in events] == [CallRinging, CallAnswered, CallEnded]
    ring = events[0]
    assert isinstance(ring, CallRinging)
    assert ring.ringing == ("101",) and ring.number == "+34911234567" and ring.did == "5551000"
    assert ring.caller_name == "<script>alert(1)</script>"  # kept as data, never interpreted
    assert ring.direction is Direction.INBOUND and not ring.click_to_call
    rec = records(events)[0]
    assert rec.pbx == "pbx1" and rec.linkedid == "1.1"
    assert rec.direction is Direction.INBOUND and rec.outcome is Outcome.ANSWERED
    assert (rec.caller, rec.did, rec.answered_by) == ("+34911234567", "5551000", "101")
    assert rec.ring_seconds == 3.01 - 0.01 and rec.talk_seconds == 20.0
    assert rec.total_seconds == 23.01 and rec.hangup_cause == "16"
    assert tracker.open_calls == 0


def test_pjsip_inbound_noanswer_and_busy() -> None:
    for status, outcome in [("NOANSWER", Outcome.NOANSWER), ("BUSY", Outcome.BUSY)]:
        tracker = CallTracker(TrackingSettings())
        events = feed(tracker, pjsip_inbound(Stream(), status))
        rec = records(events)[0]
        assert rec.outcome is outcome and rec.answered_by is None and rec.talk_seconds == 0
        assert rec.agents_rang == ["101"]
        assert [type(e) for e in events] == [CallRinging, CallRinging, CallEnded]


def test_internal_call_between_two_agents() -> None:
    s = Stream()
    caller = chan(A101, "2.1", "2.1", "from-internal", "102", "101")
    callee = dest(A102, "2.2", "2.1", "from-internal", "102")
    frames = [
        s.ev("Newchannel", caller),
        s.ev("Newchannel", chan(A102, "2.2", "2.1", "from-internal", "102")),
        s.ev("DialBegin", caller, callee, DialString="102"),
        s.at(4).ev("DialEnd", caller, callee, DialStatus="ANSWER"),
        s.at(60).ev("Hangup", chan(A102, "2.2", "2.1"), Cause="16"),
        s.ev("Hangup", chan(A101, "2.1", "2.1"), Cause="16"),
    ]
    events = feed(CallTracker(TrackingSettings()), frames)
    assert isinstance(events[0], CallRinging) and events[0].ringing == ("102",)
    assert events[0].direction is Direction.INTERNAL
    rec = records(events)[0]
    assert rec.direction is Direction.INTERNAL and rec.outcome is Outcome.ANSWERED
    assert (rec.caller, rec.dialed, rec.answered_by) == ("101", "102", "102")
    assert rec.agents_rang == ["102"] and rec.talk_seconds == 60.0


def outbound(status: str) -> list[AmiFrame]:
    s = Stream()
    agent = chan(A101, "3.1", "3.1", "from-internal", "0034911234567", "101")
    # the outgoing trunk leg sits in the trunk's own (inbound) context: still outbound
    far = dest("PJSIP/trunk-0000000d", "3.2", "3.1", "from-trunk", "s")
    return [
        s.ev("Newchannel", agent),
        s.ev("Newchannel", chan("PJSIP/trunk-0000000d", "3.2", "3.1", "from-trunk", "s")),
        s.ev("DialBegin", agent, far, DialString="trunk/0034911234567"),
        s.at(5).ev("DialEnd", agent, far, DialStatus=status),
        s.at(30 if status == "ANSWER" else 0).ev("Hangup", chan(A101, "3.1", "3.1"), Cause="16"),
        s.ev("Hangup", chan("PJSIP/trunk-0000000d", "3.2", "3.1"), Cause="16"),
    ]


def test_outbound_call_from_an_agent_to_an_outside_number() -> None:
    events = feed(CallTracker(TrackingSettings()), outbound("ANSWER"))
    assert [type(e) for e in events] == [CallAnswered, CallEnded]  # no agent phone rang
    rec = records(events)[0]
    assert rec.direction is Direction.OUTBOUND and rec.outcome is Outcome.ANSWERED
    assert (rec.caller, rec.dialed, rec.answered_by) == ("101", "0034911234567", "101")
    assert rec.agents_rang == [] and not rec.click_to_call
    assert rec.ring_seconds == 5.0 and rec.talk_seconds == 30.0
    for status, outcome in [("BUSY", Outcome.BUSY), ("NOANSWER", Outcome.NOANSWER)]:
        rec = records(feed(CallTracker(TrackingSettings()), outbound(status)))[0]
        assert rec.outcome is outcome and rec.direction is Direction.OUTBOUND


def test_click_to_call_is_recognised_only_by_the_gateway_variable() -> None:
    s = Stream()
    agent = chan(A101, "4.1", "4.1", "from-internal", "101")
    frames = [
        s.ev("Newchannel", agent),
        s.ev("VarSet", agent, Variable="GATEWAY_CALL_ID", Value="gw-42"),
        s.ev("DialBegin", dest(A101, "4.1", "4.1", "from-internal", "101"), DialString="101"),
        s.at(2).ev("DialEnd", dest(A101, "4.1", "4.1"), DialStatus="ANSWER"),
        s.ev("Hangup", agent, Cause="16"),
    ]
    events = feed(CallTracker(TrackingSettings()), frames)
    assert isinstance(events[0], CallRinging)
    assert events[0].click_to_call and events[0].call_id == "gw-42"
    assert events[0].ringing == ("101",)
    rec = records(events)[0]
    assert rec.click_to_call and rec.call_id == "gw-42" and rec.direction is Direction.OUTBOUND
    # the agent answered, the customer was never dialed: the attempt failed
    assert rec.outcome is Outcome.FAILED
    # the same stream without the variable is not a click-to-call
    plain = [f for f in frames if f["Event"] != "VarSet"]
    rec = records(feed(CallTracker(TrackingSettings()), plain))[0]
    assert not rec.click_to_call and rec.call_id is None


def test_a_stream_that_never_hangs_up_cannot_grow_without_bound() -> None:
    tracker = CallTracker(TrackingSettings(max_open_calls=3))
    s = Stream()
    ended: list[CallRecord] = []
    for i in range(5):
        ended += records(feed(tracker, [s.at(1).ev("Newchannel", chan(TRUNK, f"9.{i}", f"9.{i}"))]))
        assert tracker.open_calls <= 3
    assert [r.linkedid for r in ended] == ["9.0", "9.1"]  # the oldest go first
    assert all(r.reconstructed for r in ended)
    assert all(any("max_open_calls" in w for w in r.warnings) for r in ended)
    assert tracker.evicted == 2
    # a late Hangup of an evicted call does not bring it back
    assert feed(tracker, [s.ev("Hangup", chan(TRUNK, "9.0", "9.0"), Cause="16")]) == []
    assert tracker.open_calls == 3


def test_hangup_without_newchannel_is_counted_not_a_call() -> None:
    tracker = CallTracker(TrackingSettings())
    s = Stream()
    assert feed(tracker, [s.ev("Hangup", chan(TRUNK, "7.1", "7.1"), Cause="16")]) == []
    assert tracker.orphan_hangups == 1 and tracker.open_calls == 0 and tracker.errors == 0


def test_events_out_of_order_still_make_one_correct_call() -> None:
    s = Stream()
    trunk = chan(TRUNK, "5.1", "5.1", "from-trunk", "5551000", "+34600000000")
    agent = dest(A101, "5.2", "5.1", "from-internal", "101")
    frames = [
        # DialBegin before either Newchannel; timestamps going backwards
        s.at(1).ev("DialBegin", trunk, agent, DialString="101"),
        s.at(-0.5).ev("Newchannel", trunk),
        s.ev("Newchannel", chan(A101, "5.2", "5.1", "from-internal", "101")),
        s.at(2.5).ev("Hangup", chan(A101, "5.2", "5.1"), Cause="19"),  # before its DialEnd
        s.ev("DialEnd", trunk, agent, DialStatus="CANCEL"),
        s.ev("Hangup", chan(TRUNK, "5.1", "5.1"), Cause="19"),
        s.ev("Hangup", chan(TRUNK, "5.1", "5.1"), Cause="19"),  # a duplicate
    ]
    tracker = CallTracker(TrackingSettings())
    events = feed(tracker, frames)
    recs = records(events)
    assert len(recs) == 1
    rec = recs[0]
    assert rec.outcome is Outcome.ABANDONED and rec.agents_rang == ["101"]
    assert rec.caller == "+34600000000" and rec.did == "5551000"
    assert rec.ring_seconds >= 0 and rec.total_seconds >= 0
    assert rec.started_at == T0 + 0.5  # the Newchannel's time, though it came late
    assert not rec.reconstructed and rec.warnings == []
    assert tracker.open_calls == 0 and tracker.errors == 0


def test_unknown_events_and_malformed_frames_do_no_harm() -> None:
    tracker = CallTracker(TrackingSettings())
    s = Stream()
    junk: list[AmiFrame] = [
        {"Event": "SomethingNew", "Foo": "bar"},
        {"Response": "Success", "ActionID": "1"},
        {},
        {"Event": "Newchannel"},
        {"Event": "Newchannel", "Uniqueid": "8.1", "Timestamp": "not-a-number"},
        {"Event": "DialBegin"},
        {"Event": "DialBegin", "Uniqueid": "8.1", "DestChannel": "PJSIP/101-1"},
        {"Event": "DialEnd", "DestUniqueid": "nope"},
        {"Event": "AgentCalled", "Queue": "q"},
        {"Event": "AgentConnect", "DestUniqueid": "8.1"},
        {"Event": "QueueCallerJoin"},
        {"Event": "QueueCallerLeave", "Uniqueid": "zzz"},
        {"Event": "QueueCallerAbandon"},
        {"Event": "BlindTransfer"},
        {"Event": "AttendedTransfer", "Result": "Success"},
        {"Event": "VarSet", "Variable": "MIXMONITOR_FILENAME"},
        {"Event": "Cdr"},
        {"Event": "Cdr", "UniqueID": "8.1", "Duration": "x", "UserField": ";;;"},
        {"Event": "NewCallerid", "Uniqueid": "8.1"},
        {"Event": "Rename", "Uniqueid": "8.1"},
        {"Event": "Hangup"},
        s.ev("Hangup", Uniqueid="8.1"),
    ]
    events = feed(tracker, junk)
    assert tracker.errors == 0
    assert tracker.open_calls == 0
    assert len(records(events)) == 1  # the one channel that had a Uniqueid came and went
    assert tracker.resync([{}, {"Event": "CoreShowChannel"}], T0) == []


def test_huge_varset_values_are_refused_not_stored() -> None:
    s = Stream()
    trunk = chan(TRUNK, "6.1", "6.1", "from-trunk", "5551000")
    huge = "/var/spool/" + "x" * 200_000 + ".wav"
    data = b"Asterisk Call Manager/11.0.0\r\n" + b"".join(
        encode_frame(f)
        for f in [
            s.ev("Newchannel", trunk),
            s.ev("VarSet", trunk, Variable="MIXMONITOR_FILENAME", Value=huge),
            s.ev("VarSet", trunk, Variable="GATEWAY_CALL_ID", Value="y" * 100_000),
            s.ev("VarSet", trunk, Variable="MIXMONITOR_FILENAME", Value="/rec/ok.wav"),
            s.at(1).ev("Hangup", trunk, Cause="16"),
        ]
    )
    for parser in (FrameParser(), FrameParser(drop=event_filter(TrackingSettings()))):
        tracker = CallTracker(TrackingSettings())
        recs = records([e for f in parser.feed(data) for e in tracker.feed(f)])
        assert len(recs) == 1
        assert recs[0].recordings == ["/rec/ok.wav"]
        assert recs[0].call_id is None and not recs[0].click_to_call
        assert any("ignored a MIXMONITOR_FILENAME value" in w for w in recs[0].warnings)


def test_late_cdr_after_the_last_hangup_does_not_resurrect_the_call() -> None:
    tracker = CallTracker(TrackingSettings())
    s = Stream()
    events = feed(tracker, pjsip_inbound(s))
    assert len(records(events)) == 1
    late = [
        s.ev("Cdr", UniqueID="1.1", Disposition="ANSWERED", UserField="/x.wav"),
        s.ev("DialBegin", chan(TRUNK, "1.1", "1.1"), dest(A102, "1.9", "1.1")),
    ]
    assert feed(tracker, late) == []
    assert tracker.open_calls == 0 and tracker.late_events >= 1


def test_receive_time_is_used_when_the_pbx_sends_no_timestamps() -> None:
    tracker = CallTracker(TrackingSettings())
    frames = pjsip_inbound(Stream())
    times = [float(f.pop("Timestamp")) for f in frames]
    events = [e for f, t in zip(frames, times, strict=True) for e in tracker.feed(f, t + 100)]
    rec = records(events)[0]
    assert rec.started_at == T0 + 100 and rec.talk_seconds == 20.0


def snapshot_of(name: str, uid: str, lid: str, state: str, **extra: str) -> AmiFrame:
    return {
        "Event": "CoreShowChannel",
        "Channel": name,
        "Uniqueid": uid,
        "Linkedid": lid,
        "ChannelStateDesc": state,
        "Context": extra.get("Context", "from-trunk"),
        "Extension": extra.get("Extension", "5551000"),
        "CallerIDNum": extra.get("CallerIDNum", "+34911234567"),
        "Duration": extra.get("Duration", "00:00:05"),
    }


def test_resync_continues_a_call_in_progress_without_duplicating_it() -> None:
    frames = pjsip_inbound(Stream())
    before, after = frames[:4], frames[4:]  # answered, then the link drops
    tracker = CallTracker(TrackingSettings())
    events = feed(tracker, before)
    assert [type(e) for e in events] == [CallRinging, CallAnswered]
    snap = [snapshot_of(TRUNK, "1.1", "1.1", "Up"), snapshot_of(A101, "1.2", "1.1", "Up")]
    assert tracker.resync(snap, T0 + 10) == []  # nothing new happened
    assert tracker.open_calls == 1
    events = feed(tracker, after)
    recs = records(events)
    assert len(recs) == 1 and [type(e) for e in events] == [CallEnded]
    assert not recs[0].reconstructed and recs[0].outcome is Outcome.ANSWERED
    assert recs[0].talk_seconds == 20.0


def test_resync_closes_calls_that_ended_while_the_link_was_down() -> None:
    s = Stream()
    frames = pjsip_inbound(s)[:4]
    tracker = CallTracker(TrackingSettings())
    feed(tracker, frames)
    feed(tracker, [s.at(1).ev("Cdr", UniqueID="1.1", Disposition="ANSWERED", Duration="8")])
    # a second call that only rang: its channels are gone too
    s2 = Stream().at(2)
    ringing = pjsip_inbound(s2)[:3]
    for f in ringing:
        for k in ("Uniqueid", "Linkedid", "DestUniqueid", "DestLinkedid"):
            if k in f:
                f[k] = f[k].replace("1.", "2.")
    feed(tracker, ringing)
    assert tracker.open_calls == 2
    events = tracker.resync([], T0 + 600)
    recs = records(events)
    assert sorted(r.linkedid for r in recs) == ["1.1", "2.1"]
    assert all(r.reconstructed for r in recs)
    assert all(any("link to the PBX was down" in w for w in r.warnings) for r in recs)
    first = next(r for r in recs if r.linkedid == "1.1")
    assert first.outcome is Outcome.ANSWERED and first.answered_by == "101"
    assert first.ended_at == first.started_at + 8  # from the Cdr, not the reconnect time
    assert tracker.open_calls == 0
    assert tracker.resync([], T0 + 700) == []  # a second snapshot ends nothing twice


def test_resync_joins_a_ringing_call_and_pops_it_up() -> None:
    tracker = CallTracker(TrackingSettings())
    snap = [
        snapshot_of(TRUNK, "3.1", "3.1", "Ring"),
        snapshot_of(A101, "3.2", "3.1", "Ringing", Context="from-internal", Extension="101"),
    ]
    events = tracker.resync(snap, T0)
    assert len(events) == 1 and isinstance(events[0], CallRinging)
    assert events[0].ringing == ("101",) and events[0].caller == "+34911234567"
    # the call then goes on as usual and ends once
    s = Stream().at(1)
    trunk = chan(TRUNK, "3.1", "3.1", "from-trunk", "5551000")
    events = feed(
        tracker,
        [
            s.ev("DialEnd", trunk, dest(A101, "3.2", "3.1"), DialStatus="ANSWER"),
            s.at(5).ev("Hangup", trunk, Cause="16"),
            s.ev("Hangup", chan(A101, "3.2", "3.1"), Cause="16"),
        ],
    )
    assert [type(e) for e in events] == [CallAnswered, CallEnded]
    rec = records(events)[0]
    assert rec.answered_by == "101" and rec.reconstructed and rec.started_at == T0 - 5


def test_attended_transfer_moves_the_target_into_the_customer_call() -> None:
    s = Stream()
    trunk = chan(TRUNK, "10.1", "10.1", "from-trunk", "5551000", "+34911234567")
    a1 = dest(A101, "10.2", "10.1", "from-internal", "101")
    consult = chan("PJSIP/101-00000020", "11.1", "11.1", "from-internal", "102", "101")
    target = dest(A102, "11.2", "11.1", "from-internal", "102")
    frames = [
        s.ev("Newchannel", trunk),
        s.ev("Newchannel", chan(A101, "10.2", "10.1", "from-internal", "101")),
        s.ev("DialBegin", trunk, a1),
        s.at(2).ev("DialEnd", trunk, a1, DialStatus="ANSWER"),
        s.at(5).ev("Newchannel", consult),
        s.ev("Newchannel", chan(A102, "11.2", "11.1", "from-internal", "102")),
        s.ev("DialBegin", consult, target),
        s.at(2).ev("DialEnd", consult, target, DialStatus="ANSWER"),
        s.at(3).ev(
            "AttendedTransfer",
            Result="Success",
            OrigTransfererChannel=A101,
            OrigTransfererUniqueid="10.2",
            OrigTransfererLinkedid="10.1",
            SecondTransfererChannel="PJSIP/101-00000020",
            SecondTransfererUniqueid="11.1",
            SecondTransfererLinkedid="11.1",
            TransfereeChannel=TRUNK,
            TransfereeUniqueid="10.1",
            TransfereeLinkedid="10.1",
            TransferTargetChannel=A102,
            TransferTargetUniqueid="11.2",
            TransferTargetLinkedid="11.1",
            DestType="Bridge",
        ),
        s.ev("Hangup", chan(A101, "10.2", "10.1"), Cause="16"),
        s.ev("Hangup", chan("PJSIP/101-00000020", "11.1", "11.1"), Cause="16"),
        s.at(30).ev("Hangup", trunk, Cause="16"),
        s.ev("Hangup", chan(A102, "11.2", "11.1"), Cause="16"),
    ]
    tracker = CallTracker(TrackingSettings())
    events = feed(tracker, frames)
    transferred = [e for e in events if isinstance(e, CallTransferred)]
    assert len(transferred) == 1 and transferred[0].linkedid == "10.1"
    recs = {r.linkedid: r for r in records(events)}
    customer, consult_call = recs["10.1"], recs["11.1"]
    assert customer.outcome is Outcome.TRANSFERRED
    assert [t.to_json() for t in customer.transfers] == [
        {"kind": "attended", "from": "101", "to": "102"}
    ]
    assert customer.agents_answered == ["101", "102"]
    assert customer.ended_at == T0 + 42  # it lasted until 102 hung up
    assert consult_call.direction is Direction.INTERNAL and consult_call.answered_by == "102"
    assert tracker.open_calls == 0


def test_local_channel_agents_are_configurable_not_hard_coded() -> None:
    s = Stream()
    trunk = chan("DAHDI/1-1", "12.1", "12.1", "incoming", "900", "+15550001")
    agent = dest("Local/7001@phones-0000001;1", "12.2", "12.1", "phones", "7001")
    frames = [
        s.ev("Newchannel", trunk),
        s.ev("DialBegin", trunk, agent),
        s.at(1).ev("DialEnd", trunk, agent, DialStatus="ANSWER"),
        s.at(1).ev("Hangup", trunk, Cause="16"),
        s.ev("Hangup", chan("Local/7001@phones-0000001;1", "12.2", "12.1"), Cause="16"),
    ]
    settings = TrackingSettings(agent_contexts=["phones"], inbound_contexts=["incoming"])
    rec = records(feed(CallTracker(settings), frames))[0]
    assert rec.answered_by == "7001" and rec.did == "900" and rec.warnings == []
    # without the settings the same stream is only a best-effort guess, with a warning
    rec = records(feed(CallTracker(TrackingSettings()), frames))[0]
    assert rec.answered_by == "7001" and rec.warnings


def test_pjsip_queue_rings_every_member_before_the_answer() -> None:
    s = Stream()
    trunk = chan(TRUNK, "13.1", "13.1", "from-trunk", "5551000", "+34911234567")
    m101 = dest(A101, "13.2", "13.1", "from-internal", "101")
    m102 = dest(A102, "13.3", "13.1", "from-internal", "102")
    frames = [
        s.ev("Newchannel", trunk),
        s.at(0.5).ev("QueueCallerJoin", trunk, Queue="support", Position="1"),
        # AgentCalled names the member by its Interface ("PJSIP/101", no suffix) first
        s.ev("AgentCalled", trunk, m101, Queue="support", Interface="PJSIP/101"),
        s.ev("DialBegin", trunk, m101, DialString="PJSIP/101"),
        s.ev("AgentCalled", trunk, m102, Queue="support", Interface="PJSIP/102"),
        s.ev("DialBegin", trunk, m102, DialString="PJSIP/102"),
        s.at(4).ev("DialEnd", trunk, m102, DialStatus="ANSWER"),
        s.ev("DialEnd", trunk, m101, DialStatus="CANCEL"),
        s.ev("Hangup", chan(A101, "13.2", "13.1"), Cause="26"),
        s.ev("QueueCallerLeave", trunk, Queue="support"),
        s.ev("AgentConnect", trunk, m102, Queue="support", Interface="PJSIP/102"),
        s.at(10).ev("Hangup", trunk, Cause="16"),
        s.ev("Hangup", chan(A102, "13.3", "13.1"), Cause="16"),
    ]
    events = feed(CallTracker(TrackingSettings()), frames)
    assert [(type(e).__name__, getattr(e, "ringing", getattr(e, "by", None))) for e in events] == [
        ("CallRinging", ("101",)),
        ("CallRinging", ("101", "102")),
        ("CallAnswered", "102"),
        ("CallRinging", ()),
        ("CallEnded", None),
    ]
    assert isinstance(events[1], CallRinging) and events[1].queue == "support"
    rec = records(events)[0]
    assert rec.queue == "support" and rec.agents_rang == ["101", "102"]
    assert rec.answered_by == "102" and rec.outcome is Outcome.ANSWERED
    assert rec.ring_seconds == 4.0 and rec.talk_seconds == 10.0 and rec.total_seconds == 14.5


def test_queue_caller_who_hangs_up_waiting_is_abandoned() -> None:
    s = Stream()
    trunk = chan(TRUNK, "14.1", "14.1", "from-trunk", "5551000", "+34911234567")
    frames = [
        s.ev("Newchannel", trunk),
        s.ev("QueueCallerJoin", trunk, Queue="support"),
        s.at(30).ev("QueueCallerAbandon", trunk, Queue="support", HoldTime="30"),
        s.ev("Hangup", trunk, Cause="16"),
    ]
    rec = records(feed(CallTracker(TrackingSettings()), frames))[0]
    # no phone ever rang: all 30 s were queue wait
    assert rec.outcome is Outcome.ABANDONED and rec.ring_seconds == 0.0
    assert rec.queue_wait_seconds == 30.0
    assert rec.agents_rang == [] and rec.queue == "support"


def test_mangled_real_streams_never_break_the_tracker_or_leak_state() -> None:
    traces = Path(__file__).parent / "data" / "ami-traces"
    frames: list[AmiFrame] = []
    for path in sorted(traces.glob("*.ami")):
        if not path.stem.endswith(".sent"):
            frames += iter_capture(path.read_bytes())[1]
    rng = random.Random(7)
    junk = ["", "<unknown>", "x" * 5000, "1795346324.0", "Local/101@agents-1;1", ";", "-1"]
    for round_ in range(12):
        tracker = CallTracker(lab_settings() if round_ % 2 else TrackingSettings(max_open_calls=4))
        stream = frames[:]
        if round_ % 3 == 0:
            rng.shuffle(stream)
        for frame in stream:
            mangled = dict(frame)
            for key in list(mangled):
                r = rng.random()
                if r < 0.05:
                    del mangled[key]
                elif r < 0.08:
                    mangled[key] = rng.choice(junk)
            tracker.feed(mangled)
            if rng.random() < 0.01:
                tracker.resync([dict(rng.choice(frames), Event="CoreShowChannel")], T0)
        tracker.close_all()
        assert tracker.errors == 0
        assert tracker.open_calls == 0 and not tracker._chans


def test_outbound_through_a_local_route_does_not_mistake_the_trunk_for_an_agent() -> None:
    s = Stream()
    agent = chan(A101, "20.1", "20.1", "from-internal", "0034911234567", "101")
    route = "Local/0034911234567@outbound-routes-00000001"
    hop1 = dest(route + ";1", "20.2", "20.1", "outbound-routes", "0034911234567")
    hop2 = chan(route + ";2", "20.3", "20.1", "outbound-routes", "0034911234567")
    trunk = dest("DAHDI/1234-5", "20.4", "20.1", "from-trunk", "s")  # looks like an extension
    frames = [
        s.ev("Newchannel", agent),
        s.ev("DialBegin", agent, hop1),
        s.ev("Newchannel", hop2),
        s.ev("DialBegin", hop2, trunk),
        s.at(6).ev("DialEnd", hop2, trunk, DialStatus="ANSWER"),
        s.ev("DialEnd", agent, hop1, DialStatus="ANSWER"),
        s.at(9).ev("Hangup", agent, Cause="16"),
        s.ev("Hangup", {"Uniqueid": "20.2", "Linkedid": "20.1"}, Cause="16"),
        s.ev("Hangup", hop2, Cause="16"),
        s.ev("Hangup", {"Uniqueid": "20.4", "Linkedid": "20.1"}, Cause="16"),
    ]
    events = feed(CallTracker(TrackingSettings()), frames)
    assert [type(e) for e in events] == [CallAnswered, CallEnded]
    rec = records(events)[0]
    assert rec.direction is Direction.OUTBOUND and rec.outcome is Outcome.ANSWERED
    assert (rec.dialed, rec.answered_by, rec.agents_rang) == ("0034911234567", "101", [])
    assert rec.ring_seconds == 6.0 and rec.talk_seconds == 9.0 and rec.warnings == []


def test_non_finite_timestamps_fall_back_to_the_receive_time() -> None:
    tracker = CallTracker(TrackingSettings())
    frames = pjsip_inbound(Stream())
    for f in frames:
        f["Timestamp"] = "nan" if f["Event"] == "DialEnd" else "inf"
    events = [e for i, f in enumerate(frames) for e in tracker.feed(f, T0 + i)]
    rec = records(events)[0]
    assert rec.started_at == T0 and rec.ended_at == T0 + len(frames) - 1
    assert rec.answered_at == T0 + 3 and rec.talk_seconds == len(frames) - 4
