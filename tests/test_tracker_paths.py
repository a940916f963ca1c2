"""The tracker on the failure and recovery paths a real Asterisk takes (issue #11): queue
waits before any phone rings, attended transfers through Local channels, lost events,
anonymous callers, renamed channels. Each test asserts a whole record or event list."""

from __future__ import annotations

from gateway.ami.frames import AmiFrame
from gateway.calls.events import (
    CallAnswered,
    CallEnded,
    CallRinging,
    CallTransferred,
    DomainEvent,
)
from gateway.calls.model import CallRecord, Outcome
from gateway.calls.settings import TrackingSettings
from gateway.calls.tracker import CallTracker
from tests.test_tracker import A101, A102, T0, TRUNK, Stream, chan, dest, feed, records


def one(events: list[DomainEvent]) -> CallRecord:
    (rec,) = records(events)
    return rec


def kinds(events: list[DomainEvent]) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for e in events:
        if isinstance(e, CallRinging):
            out.append(("ringing", e.ringing))
        elif isinstance(e, CallAnswered):
            out.append(("answered", e.by))
        elif isinstance(e, CallTransferred):
            out.append(("transferred", e.transfer.to_json()))
        elif isinstance(e, CallEnded):
            out.append(("ended", e.record.outcome.value))
    return out


def queue_call(s: Stream, wait: float, ring: float, answer: bool = True) -> list[AmiFrame]:
    """A caller joins queue sales, waits ``wait`` s before 101 rings, 101 rings ``ring`` s."""
    trunk = chan(TRUNK, "20.1", "20.1", "from-trunk", "5551000", "+34911234567")
    agent = dest(A101, "20.2", "20.1", "from-agents", "s", "101")
    frames = [
        s.ev("Newchannel", trunk),
        s.ev("QueueCallerJoin", trunk, Queue="sales", Position="2"),
        s.at(wait).ev("Newchannel", chan(A101, "20.2", "20.1", "from-agents", "s", "101")),
        s.ev("DialBegin", trunk, agent, DialString="PJSIP/101"),
    ]
    if answer:
        frames += [
            s.at(ring).ev("DialEnd", trunk, agent, DialStatus="ANSWER"),
            s.ev("QueueCallerLeave", trunk, Queue="sales"),
            s.at(30).ev("Hangup", chan(TRUNK, "20.1", "20.1"), Cause="16"),
            s.ev("Hangup", chan(A101, "20.2", "20.1"), Cause="16"),
        ]
    else:
        frames += [
            s.at(ring).ev("DialEnd", trunk, agent, DialStatus="NOANSWER"),
            s.ev("Hangup", chan(A101, "20.2", "20.1"), Cause="0"),
            s.at(5).ev("QueueCallerLeave", trunk, Queue="sales"),  # the queue timed out
            s.at(1).ev("Hangup", chan(TRUNK, "20.1", "20.1"), Cause="16"),
        ]
    return frames


def test_second_in_line_queue_caller_reports_ring_and_queue_wait_apart() -> None:
    rec = one(feed(CallTracker(TrackingSettings()), queue_call(Stream(), wait=40, ring=2)))
    assert rec.to_json() | {"warnings": []} == {
        "linkedid": "20.1",
        "pbx": "default",
        "direction": "inbound",
        "click_to_call": False,
        "call_id": None,
        "caller": "+34911234567",
        "caller_name": None,
        "did": "5551000",
        "dialed": None,
        "queue": "sales",
        "agents_rang": ["101"],
        "agents_answered": ["101"],
        "answered_by": "101",
        "transfers": [],
        "outcome": "answered",
        "started_at": T0,
        "answered_at": T0 + 42,
        "ended_at": T0 + 72,
        "ring_seconds": 2.0,  # the agent's phone, not the 40 s in line
        "queue_wait_seconds": 42.0,  # the call centre's speed of answer
        "talk_seconds": 30.0,
        "total_seconds": 72.0,
        "hangup_cause": "16",
        "recordings": [],
        "reconstructed": False,
        "warnings": [],
    }


def test_queue_call_that_times_out_unanswered_is_noanswer_with_ring_to_the_last_ring() -> None:
    events = feed(CallTracker(TrackingSettings()), queue_call(Stream(), 10, 15, answer=False))
    assert kinds(events) == [("ringing", ("101",)), ("ringing", ()), ("ended", "noanswer")]
    rec = one(events)
    assert (rec.ring_seconds, rec.queue_wait_seconds, rec.total_seconds) == (15.0, 30.0, 31.0)
    assert rec.answered_at is None and rec.talk_seconds == 0.0


def test_inbound_call_that_never_dials_anyone_is_noanswer_with_a_warning() -> None:
    s = Stream()
    trunk = chan(TRUNK, "21.1", "21.1", "from-trunk", "5551000", "+34911234567")
    rec = one(feed(CallTracker(TrackingSettings()), [
        s.ev("Newchannel", trunk),
        s.at(12).ev("Hangup", trunk, Cause="16"),  # an IVR or voicemail, nobody rang
    ]))  # fmt: skip
    assert (rec.outcome, rec.ring_seconds, rec.total_seconds) == (Outcome.NOANSWER, 0.0, 12.0)
    assert rec.warnings == [
        "no agent phone rang (if one did, check tracking.agent_channels and "
        "tracking.agent_contexts)"
    ]


def test_cdr_disposition_decides_when_the_dial_legs_say_nothing() -> None:
    for disposition, outcome in [
        ("BUSY", Outcome.BUSY),
        ("NO ANSWER", Outcome.NOANSWER),
        ("FAILED", Outcome.FAILED),
    ]:
        s = Stream()
        trunk = chan(TRUNK, "22.1", "22.1", "from-trunk", "5551000", "+34911234567")
        rec = one(feed(CallTracker(TrackingSettings()), [
            s.ev("Newchannel", trunk),
            s.ev("Cdr", UniqueID="22.1", Disposition=disposition, Duration="3"),
            s.at(3).ev("Hangup", trunk, Cause="17"),
        ]))  # fmt: skip
        assert rec.outcome is outcome, disposition


def test_inbound_leg_with_another_status_is_failed() -> None:
    s = Stream()
    trunk = chan(TRUNK, "23.1", "23.1", "from-trunk", "5551000", "+34911234567")
    agent = dest(A101, "23.2", "23.1", "from-agents", "s")
    events = feed(CallTracker(TrackingSettings()), [
        s.ev("Newchannel", trunk),
        s.ev("DialBegin", trunk, agent, DialString="101"),
        s.at(1).ev("DialEnd", trunk, agent, DialStatus="CHANUNAVAIL"),
        s.ev("Hangup", chan(A101, "23.2", "23.1"), Cause="20"),
        s.ev("Hangup", trunk, Cause="20"),
    ])  # fmt: skip
    assert kinds(events) == [("ringing", ("101",)), ("ringing", ()), ("ended", "failed")]
    assert one(events).ring_seconds == 1.0


def test_agent_leg_hanging_up_without_dialend_stops_ringing_then_the_caller_gives_up() -> None:
    s = Stream()
    trunk = chan(TRUNK, "24.1", "24.1", "from-trunk", "5551000", "+34911234567")
    agent = dest(A101, "24.2", "24.1", "from-agents", "s")
    events = feed(CallTracker(TrackingSettings()), [
        s.ev("Newchannel", trunk),
        s.ev("DialBegin", trunk, agent, DialString="101"),
        s.at(4).ev("Hangup", chan(A101, "24.2", "24.1"), Cause="0"),  # no DialEnd
        s.at(6).ev("Hangup", trunk, Cause="16"),
    ])  # fmt: skip
    assert kinds(events) == [("ringing", ("101",)), ("ringing", ()), ("ended", "noanswer")]
    assert one(events).ring_seconds == 4.0  # ringing ended with the leg, not the call


def test_agent_connect_answers_a_queue_call_whose_dialend_was_lost() -> None:
    s = Stream()
    trunk = chan(TRUNK, "25.1", "25.1", "from-trunk", "5551000", "+34911234567")
    agent = dest(A101, "25.2", "25.1", "from-agents", "s")
    events = feed(CallTracker(TrackingSettings()), [
        s.ev("Newchannel", trunk),
        s.ev("QueueCallerJoin", trunk, Queue="sales"),
        s.at(1).ev("DialBegin", trunk, agent, DialString="PJSIP/101"),
        s.at(3).ev("AgentConnect", trunk, agent, Queue="sales", Interface="PJSIP/101"),
        s.at(10).ev("Hangup", trunk, Cause="16"),
        s.ev("Hangup", chan(A101, "25.2", "25.1"), Cause="16"),
    ])  # fmt: skip
    assert kinds(events) == [("ringing", ("101",)), ("answered", "101"), ("ended", "answered")]
    rec = one(events)
    assert (rec.ring_seconds, rec.queue_wait_seconds, rec.talk_seconds) == (3.0, 4.0, 10.0)


def test_agent_connect_without_any_dial_event_names_the_member() -> None:
    s = Stream()
    trunk = chan(TRUNK, "26.1", "26.1", "from-trunk", "5551000", "+34911234567")
    events = feed(CallTracker(TrackingSettings()), [
        s.ev("Newchannel", trunk),
        s.ev("QueueCallerJoin", trunk, Queue="sales"),
        s.at(5).ev("AgentConnect", trunk, Queue="sales", Interface="PJSIP/102",
                   DestUniqueid="nope"),
        s.at(10).ev("Hangup", trunk, Cause="16"),
    ])  # fmt: skip
    assert kinds(events) == [("answered", "102"), ("ended", "answered")]
    rec = one(events)
    assert rec.agents_rang == ["102"] and rec.queue_wait_seconds == 5.0


def test_anonymous_caller_is_no_number_not_the_text_unknown() -> None:
    s = Stream()
    trunk = chan(TRUNK, "27.1", "27.1", "from-trunk", "5551000", "<unknown>")
    agent = dest(A101, "27.2", "27.1", "from-agents", "s")
    events = feed(CallTracker(TrackingSettings()), [
        s.ev("Newchannel", trunk),
        s.ev("NewCallerid", trunk, CallerIDNum="<unknown>", CallerIDName="<unknown>"),
        s.ev("DialBegin", trunk, agent, DialString="101"),
        s.at(2).ev("DialEnd", trunk, agent, DialStatus="NOANSWER"),
        s.ev("Hangup", trunk, Cause="16"),
        s.ev("Hangup", chan(A101, "27.2", "27.1"), Cause="0"),
    ])  # fmt: skip
    ring = events[0]
    assert isinstance(ring, CallRinging) and ring.number is None and ring.caller_name is None
    assert (one(events).caller, one(events).caller_name) == (None, None)


def test_newcallerid_gives_the_number_and_name_a_channel_was_born_without() -> None:
    s = Stream()
    trunk = chan(TRUNK, "28.1", "28.1", "from-trunk", "5551000")
    agent = dest(A101, "28.2", "28.1", "from-agents", "s")
    events = feed(CallTracker(TrackingSettings()), [
        s.ev("Newchannel", trunk),
        s.ev("NewCallerid", trunk, CallerIDNum="+34600111222", CallerIDName="Lucía"),
        s.ev("DialBegin", trunk, agent, DialString="101"),
        s.at(1).ev("DialEnd", trunk, agent, DialStatus="BUSY"),
        s.ev("Hangup", trunk, Cause="17"),
        s.ev("Hangup", chan(A101, "28.2", "28.1"), Cause="17"),
    ])  # fmt: skip
    ring = events[0]
    assert isinstance(ring, CallRinging)
    assert (ring.number, ring.caller_name) == ("+34600111222", "Lucía")
    assert one(events).outcome is Outcome.BUSY


def test_renamed_channel_becomes_the_agent_it_now_names() -> None:
    s = Stream()
    trunk = chan(TRUNK, "29.1", "29.1", "from-trunk", "5551000", "+34911234567")
    temp = "PJSIP/transient-00000001"
    events = feed(CallTracker(TrackingSettings()), [
        s.ev("Newchannel", trunk),
        s.ev("Newchannel", chan(temp, "29.2", "29.1", "from-agents", "s")),
        s.ev("Rename", chan(temp, "29.2", "29.1"), Newname=A102),
        s.ev("DialBegin", trunk, dest(A102, "29.2", "29.1", "from-agents", "s")),
        s.at(2).ev("DialEnd", trunk, dest(A102, "29.2", "29.1"), DialStatus="ANSWER"),
        s.at(5).ev("Hangup", trunk, Cause="16"),
        s.ev("Hangup", chan(A102, "29.2", "29.1"), Cause="16"),
    ])  # fmt: skip
    assert kinds(events) == [("ringing", ("102",)), ("answered", "102"), ("ended", "answered")]


def test_attended_transfer_through_a_local_channel_names_the_agent_who_took_it() -> None:
    """AMI Atxfer on PJSIP: the consultation runs through Local/102@transfer (not an agent
    context), whose ;2 half dials PJSIP/102; AttendedTransfer names the Local ;1 half."""
    s = Stream()
    trunk = chan(TRUNK, "30.1", "30.1", "from-pstn", "5551000", "+34911234567")
    a101 = dest(A101, "30.2", "30.1", "from-agents", "s")
    l1, l2 = "Local/102@transfer-00000000;1", "Local/102@transfer-00000000;2"
    frames = [
        s.ev("Newchannel", trunk),
        s.ev("DialBegin", trunk, a101, DialString="101"),
        s.at(2).ev("DialEnd", trunk, a101, DialStatus="ANSWER"),
        s.at(5).ev("Newchannel", chan(l1, "31.1", "31.1", "transfer", "102")),
        s.ev("Newchannel", chan(l2, "31.2", "31.1", "transfer", "102")),
        s.ev("DialBegin", chan(l2, "31.2", "31.1"), dest(A102, "31.3", "31.1", "from-agents")),
        s.at(3).ev("DialEnd", chan(l2, "31.2", "31.1"), dest(A102, "31.3", "31.1"),
                   DialStatus="ANSWER"),
        s.at(4).ev(
            "AttendedTransfer", Result="Success",
            OrigTransfererChannel=A101, OrigTransfererUniqueid="30.2",
            OrigTransfererLinkedid="30.1",
            TransfereeChannel=TRUNK, TransfereeUniqueid="30.1", TransfereeLinkedid="30.1",
            TransferTargetChannel=l1, TransferTargetUniqueid="31.1",
            TransferTargetLinkedid="31.1", DestType="Bridge",
        ),
        s.ev("Hangup", chan(A101, "30.2", "30.1"), Cause="16"),
        s.ev("Hangup", chan(l1, "31.1", "31.1"), Cause="16"),
        s.ev("Hangup", chan(l2, "31.2", "31.1"), Cause="16"),
        s.at(20).ev("Hangup", trunk, Cause="16"),
        s.ev("Hangup", chan(A102, "31.3", "31.1"), Cause="16"),
    ]  # fmt: skip
    tracker = CallTracker(TrackingSettings())
    events = feed(tracker, frames)
    customer = next(r for r in records(events) if r.linkedid == "30.1")
    assert [t.to_json() for t in customer.transfers] == [
        {"kind": "attended", "from": "101", "to": "102"}
    ]
    assert customer.outcome is Outcome.TRANSFERRED
    assert customer.agents_answered == ["101", "102"]
    assert customer.ended_at == T0 + 34  # the Local halves joined it: it ends with the trunk
    assert tracker.open_calls == 0


def test_attended_transfer_target_moves_into_the_customers_call() -> None:
    s = Stream()
    trunk = chan(TRUNK, "32.1", "32.1", "from-pstn", "5551000", "+34911234567")
    a101 = dest(A101, "32.2", "32.1", "from-agents", "s")
    consult = chan("PJSIP/101-00000099", "33.1", "33.1", "from-agents", "102", "101")
    target = dest(A102, "33.2", "33.1", "from-agents", "s")
    frames = [
        s.ev("Newchannel", trunk),
        s.ev("DialBegin", trunk, a101, DialString="101"),
        s.at(2).ev("DialEnd", trunk, a101, DialStatus="ANSWER"),
        s.ev("Newchannel", consult),
        s.ev("DialBegin", consult, target, DialString="102"),
        s.at(2).ev("DialEnd", consult, target, DialStatus="ANSWER"),
        s.at(1).ev(
            "AttendedTransfer", Result="Success",
            OrigTransfererUniqueid="32.2", OrigTransfererLinkedid="32.1",
            TransfereeUniqueid="32.1", TransferTargetChannel=A102,
            TransferTargetUniqueid="33.2", TransferTargetLinkedid="33.1",
        ),
        s.ev("Hangup", chan(A101, "32.2", "32.1"), Cause="16"),
        s.ev("Hangup", consult, Cause="16"),
        s.at(30).ev("Hangup", chan(A102, "33.2", "33.1"), Cause="16"),
        s.at(1).ev("Hangup", trunk, Cause="16"),
    ]  # fmt: skip
    events = feed(CallTracker(TrackingSettings()), frames)
    recs = {r.linkedid: r for r in records(events)}
    # the consultation call ends with its caller; the target talks on in the customer's call
    assert recs["33.1"].ended_at == T0 + 5
    assert recs["32.1"].ended_at == T0 + 36 and recs["32.1"].talk_seconds == 34.0
    assert [r.linkedid for r in records(events)] == ["33.1", "32.1"]
