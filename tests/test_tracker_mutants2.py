"""More tests that would notice (issue #11, second round): memory bounds, the extension cache,
the reconnect snapshot, transfers that fail or name channels the tracker never saw, the Cdr's
UserField and seconds. Each pins what a user sees (a record, an event list, a bound) that a
one-token change in ``gateway/calls/tracker.py`` left unnoticed (``bench/mutation.py``)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pytest

from gateway.ami.frames import AmiFrame
from gateway.calls.events import (
    CallAnswered,
    CallCorrected,
    CallEnded,
    CallRinging,
    CallTransferred,
    DomainEvent,
)
from gateway.calls.model import Direction
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
    records,
    snapshot_of,
)
from tests.test_tracker_paths import kinds, one

A103 = "PJSIP/103-0000000d"
CALLER = "+34911234567"
DID = "5551000"
NO_AGENT = (
    "no agent phone rang (if one did, check tracking.agent_channels and tracking.agent_contexts)"
)
PARTIAL = "the start of this call was not seen: times are approximate"
JOINED = "joined in progress from the channel list read on connect"
ESTIMATED = "answered while the link was down: answer time estimated"
LINK_DOWN = "ended while the link to the PBX was down"


def inbound(linkedid: str, **changes: Any) -> dict[str, Any]:
    """A whole record as ``to_json`` gives it: an inbound call of ``CALLER`` to ``DID``
    answered by 101 after 2 s of ringing, 10 s of talk."""
    base: dict[str, Any] = {
        "linkedid": linkedid,
        "pbx": "default",
        "direction": "inbound",
        "click_to_call": False,
        "call_id": None,
        "caller": CALLER,
        "caller_name": None,
        "did": DID,
        "dialed": None,
        "queue": None,
        "agents_rang": ["101"],
        "agents_answered": ["101"],
        "answered_by": "101",
        "transfers": [],
        "outcome": "answered",
        "started_at": T0,
        "answered_at": T0 + 2,
        "ended_at": T0 + 12,
        "ring_seconds": 2.0,
        "queue_wait_seconds": None,
        "talk_seconds": 10.0,
        "total_seconds": 12.0,
        "hangup_cause": "16",
        "recordings": [],
        "reconstructed": False,
        "warnings": [],
    }
    return base | changes


def answered_by_101(s: Stream, lid: str, *tail: AmiFrame) -> list[AmiFrame]:
    """``CALLER`` calls ``DID``; 101 answers after 2 s; ``tail`` happens 5 s into the talk;
    both hang up 10 s after the answer."""
    trunk = chan(TRUNK, lid, lid, "from-trunk", DID, CALLER)
    agent = dest(A101, lid + "1", lid, "from-internal", "101")
    frames = [
        s.ev("Newchannel", trunk),
        s.ev("Newchannel", chan(A101, lid + "1", lid, "from-internal", "101")),
        s.ev("DialBegin", trunk, agent, DialString="101"),
        s.at(2).ev("DialEnd", trunk, agent, DialStatus="ANSWER"),
    ]
    s.at(5)
    frames += list(tail)
    s.at(5)
    return [
        *frames,
        s.ev("Hangup", chan(TRUNK, lid, lid), Cause="16"),
        s.ev("Hangup", chan(A101, lid + "1", lid), Cause="16"),
    ]


def event_rows(events: list[DomainEvent]) -> list[tuple[str, dict[str, Any]]]:
    """Whole events, records as ``to_json`` gives them."""
    out: list[tuple[str, dict[str, Any]]] = []
    for e in events:
        if isinstance(e, CallEnded | CallCorrected):
            out.append((type(e).__name__, e.record.to_json()))
        else:
            out.append((type(e).__name__, asdict(e)))
    return out


# ------------------------------------------------------------------ memory bounds


def test_the_last_4096_ended_calls_are_remembered_and_older_ones_forgotten_by_halves() -> None:
    """A late event for a call that ended is dropped, for the last 4096 ended calls; when that
    memory is full the older half is forgotten at once (a bound, never a growing dict)."""
    tracker = CallTracker(TrackingSettings())
    s = Stream()
    for i in range(4096):
        trunk = chan(TRUNK, f"{i}.1", f"{i}.1", "from-trunk", DID)
        tracker.feed(s.ev("Newchannel", trunk))
        assert len(tracker.feed(s.at(1).ev("Hangup", trunk, Cause="16"))) == 1

    def late(i: int) -> None:
        agent = chan(A101, f"{i}.2", f"{i}.1", "from-internal", "101")
        assert tracker.feed(s.ev("Newchannel", agent)) == []

    late(0)  # all 4096 remembered: the first one too
    assert (tracker.late_events, tracker.open_calls) == (1, 0)
    last = chan(TRUNK, "4096.1", "4096.1", "from-trunk", DID)
    tracker.feed(s.ev("Newchannel", last))
    tracker.feed(s.at(1).ev("Hangup", last, Cause="16"))  # the 4097th: the oldest half goes
    late(2048)
    late(4096)
    assert (tracker.late_events, tracker.open_calls) == (3, 0)
    late(2047)  # forgotten: a late event now looks like a call joined mid-way
    assert (tracker.late_events, tracker.open_calls) == (3, 1)


def test_a_late_cdr_corrects_only_the_last_256_calls_closed_out_of_sight() -> None:
    tracker = CallTracker(TrackingSettings())
    s = Stream()
    for i in range(257):
        tracker.feed(s.ev("Newchannel", chan(TRUNK, f"{i}.1", f"{i}.1", "from-trunk", DID)))
    ended = records(tracker.resync([], s.at(60).t))
    assert len(ended) == 257 and all(r.ended_at == T0 + 60 for r in ended)
    # the oldest is no longer kept for correction; the next one is
    assert tracker.feed(s.ev("Cdr", UniqueID="0.1", Disposition="NO ANSWER", Duration="9")) == []
    corrected = tracker.feed(s.ev("Cdr", UniqueID="1.1", Disposition="NO ANSWER", Duration="9"))
    assert [(type(e), e.record.linkedid, e.record.ended_at) for e in corrected] == [  # type: ignore[attr-defined]
        (CallCorrected, "1.1", T0 + 9)
    ]


def test_the_extension_cache_holds_one_entry_per_phone_and_stays_bounded() -> None:
    """``PJSIP/101-0000000b`` and ``PJSIP/101-0000000c`` are the same phone: one cache entry,
    however many calls it takes; a PBX with more phones than the cache holds starts over."""
    tracker = CallTracker(TrackingSettings())
    s = Stream()
    for i in range(40):
        lid = f"{i}.1"
        trunk = chan(f"PJSIP/trunk-{i:08x}", lid, lid, "from-trunk", DID, CALLER)
        name = f"PJSIP/{101 + i % 2}-{0x100 + i:08x}"
        agent = dest(name, f"{i}.2", lid, "from-internal", "s")
        rec = one(feed(tracker, [
            s.ev("Newchannel", trunk),
            s.ev("DialBegin", trunk, agent),
            s.at(1).ev("DialEnd", trunk, agent, DialStatus="ANSWER"),
            s.at(1).ev("Hangup", trunk, Cause="16"),
            s.ev("Hangup", chan(name, f"{i}.2", lid), Cause="16"),
        ]))  # fmt: skip
        assert (rec.answered_by, rec.warnings) == (str(101 + i % 2), [])
    assert tracker._ext_cache == {
        "PJSIP/trunk\x00": None,
        "PJSIP/101\x00": "101",
        "PJSIP/102\x00": "102",
    }
    for i in range(8200):
        phone = chan(f"PJSIP/{10000 + i}-0000000a", f"p{i}", f"p{i}", "from-internal", "s")
        tracker.feed(s.ev("Newchannel", phone))
        tracker.feed(s.ev("Hangup", phone, Cause="16"))
        assert len(tracker._ext_cache) <= 8192
    assert tracker._ext_of("PJSIP/18199-0000000b") == "18199"
    assert tracker._ext_of("PJSIP/18199") is None


# ------------------------------------------------------------------ resync


def test_a_snapshot_channel_the_tracker_cannot_merge_is_counted_and_the_rest_merged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tracker = CallTracker(TrackingSettings())
    real = tracker._add_channel

    def flaky(uid: str, *args: Any, **kw: Any) -> Any:
        if uid == "70.9":
            raise RuntimeError("bug")
        return real(uid, *args, **kw)

    tracker._add_channel = flaky  # type: ignore[method-assign]
    snap = [
        snapshot_of(TRUNK, "70.9", "70.9", "Up"),
        snapshot_of(TRUNK, "71.1", "71.1", "Ring"),
        snapshot_of(A101, "71.2", "71.1", "Ringing", Context="from-internal", Extension="101"),
    ]
    with caplog.at_level("ERROR", logger="gateway.calls"):
        events = tracker.resync(snap, T0)
    assert kinds(events) == [("ringing", ("101",))]
    assert (tracker.errors, tracker.open_calls) == (1, 1)
    assert [r.getMessage() for r in caplog.records] == [
        "call tracker could not merge a snapshot channel"
    ]


def test_a_phone_that_hung_up_before_the_snapshot_was_read_does_not_answer_the_call() -> None:
    """101 was busy and hung up; 102 rings; the channel list read on reconnect still shows
    101's channel Up (its Hangup arrived while the list was read): no answer by 101."""
    s = Stream()
    trunk = chan(TRUNK, "72.1", "72.1", "from-trunk", DID, CALLER)
    a101 = dest(A101, "72.2", "72.1", "from-internal", "101")
    a102 = dest(A102, "72.3", "72.1", "from-internal", "102")
    tracker = CallTracker(TrackingSettings())
    events = feed(tracker, [
        s.ev("Newchannel", trunk),
        s.ev("DialBegin", trunk, a101),
        s.at(1).ev("DialEnd", trunk, a101, DialStatus="BUSY"),
        s.ev("Hangup", chan(A101, "72.2", "72.1"), Cause="17"),
        s.ev("DialBegin", trunk, a102),
    ])  # fmt: skip
    assert kinds(events) == [("ringing", ("101",)), ("ringing", ()), ("ringing", ("102",))]
    snap = [
        snapshot_of(TRUNK, "72.1", "72.1", "Up"),
        snapshot_of(A101, "72.2", "72.1", "Up", Context="from-internal", Extension="101"),
        snapshot_of(A102, "72.3", "72.1", "Ringing", Context="from-internal", Extension="102"),
    ]
    assert tracker.resync(snap, s.at(2).t) == []
    events = feed(tracker, [
        s.at(10).ev("Hangup", trunk, Cause="16"),
        s.ev("Hangup", chan(A102, "72.3", "72.1"), Cause="16"),
    ])  # fmt: skip
    assert one(events).to_json() == inbound(
        "72.1",
        outcome="abandoned",
        agents_rang=["101", "102"],
        agents_answered=[],
        answered_by=None,
        answered_at=None,
        ended_at=T0 + 13,
        ring_seconds=13.0,
        talk_seconds=0.0,
        total_seconds=13.0,
    )


def test_a_call_joined_ringing_on_reconnect_counts_its_ring_from_the_phone_s_age() -> None:
    tracker = CallTracker(TrackingSettings())
    snap = [
        snapshot_of(TRUNK, "73.1", "73.1", "Ring", CallerIDNum=CALLER),
        snapshot_of(A101, "73.2", "73.1", "Ringing", Context="from-internal", Extension="101",
                    Duration="00:00:03"),
    ]  # fmt: skip
    assert kinds(tracker.resync(snap, T0)) == [("ringing", ("101",))]
    s = Stream().at(1)
    trunk = chan(TRUNK, "73.1", "73.1", "from-trunk", DID)
    events = feed(tracker, [
        s.ev("DialEnd", trunk, dest(A101, "73.2", "73.1"), DialStatus="ANSWER"),
        s.at(5).ev("Hangup", trunk, Cause="16"),
        s.ev("Hangup", chan(A101, "73.2", "73.1"), Cause="16"),
    ])  # fmt: skip
    assert kinds(events) == [("answered", "101"), ("ended", "answered")]
    assert one(events).to_json() == inbound(
        "73.1",
        started_at=T0 - 5,
        answered_at=T0 + 1,
        ended_at=T0 + 6,
        ring_seconds=4.0,
        talk_seconds=5.0,
        total_seconds=11.0,
        reconstructed=True,
        warnings=[PARTIAL, JOINED],
    )


def test_an_internal_call_answered_while_the_link_was_down_is_answered_by_the_callee() -> None:
    s = Stream()
    caller = chan(A101, "74.1", "74.1", "from-internal", "102", "101")
    callee = dest(A102, "74.2", "74.1", "from-internal", "102")
    tracker = CallTracker(TrackingSettings())
    events = feed(tracker, [
        s.ev("Newchannel", caller),
        s.ev("Newchannel", chan(A102, "74.2", "74.1", "from-internal", "102")),
        s.ev("DialBegin", caller, callee, DialString="102"),
    ])  # fmt: skip
    assert kinds(events) == [("ringing", ("102",))]
    snap = [
        snapshot_of(A101, "74.1", "74.1", "Up", Context="from-internal", Extension="102",
                    CallerIDNum="101"),
        snapshot_of(A102, "74.2", "74.1", "Up", Context="from-internal", Extension="102",
                    CallerIDNum="101"),
    ]  # fmt: skip
    events = tracker.resync(snap, s.at(10).t)
    assert kinds(events) == [("answered", "102")]
    events = feed(tracker, [
        s.at(10).ev("Hangup", caller, Cause="16"),
        s.ev("Hangup", chan(A102, "74.2", "74.1"), Cause="16"),
    ])  # fmt: skip
    assert one(events).to_json() == inbound(
        "74.1",
        direction="internal",
        caller="101",
        did=None,
        dialed="102",
        agents_rang=["102"],
        agents_answered=["102"],
        answered_by="102",
        answered_at=T0 + 10,
        ended_at=T0 + 20,
        ring_seconds=10.0,
        talk_seconds=10.0,
        total_seconds=20.0,
        warnings=[ESTIMATED],
    )


def test_a_call_joined_on_reconnect_starts_with_its_oldest_channel_whatever_the_order() -> None:
    """CoreShowChannels lists channels in no particular order: the agent's (3 s old) comes
    before the trunk's (10 s old); the call started with the trunk."""
    tracker = CallTracker(TrackingSettings())
    snap = [
        snapshot_of(A101, "75.2", "75.1", "Up", Context="from-internal", Extension="101",
                    Duration="00:00:03"),
        snapshot_of(TRUNK, "75.1", "75.1", "Up", Duration="00:00:10"),
    ]  # fmt: skip
    assert kinds(tracker.resync(snap, T0)) == [("answered", "101")]
    s = Stream().at(5)
    events = feed(tracker, [
        s.ev("Hangup", chan(TRUNK, "75.1", "75.1"), Cause="16"),
        s.ev("Hangup", chan(A101, "75.2", "75.1"), Cause="16"),
    ])  # fmt: skip
    assert one(events).to_json() == inbound(
        "75.1",
        started_at=T0 - 10,
        answered_at=T0,
        ended_at=T0 + 5,
        ring_seconds=3.0,
        talk_seconds=5.0,
        total_seconds=15.0,
        reconstructed=True,
        warnings=[PARTIAL, JOINED, ESTIMATED],
    )


def test_an_estimated_answer_gives_way_to_the_real_one_arriving_after_the_snapshot() -> None:
    """The snapshot dates the answer at the reconnect; the DialEnd Asterisk sent before the
    snapshot arrives after it: the record takes the real answer time."""
    s = Stream()
    tracker = CallTracker(TrackingSettings())
    frames = answered_by_101(s, "76.1")
    assert kinds(feed(tracker, frames[:3])) == [("ringing", ("101",))]
    snap = [
        snapshot_of(TRUNK, "76.1", "76.1", "Up"),
        snapshot_of(A101, "76.11", "76.1", "Up", Context="from-internal", Extension="101"),
    ]
    events = tracker.resync(snap, T0 + 4)
    assert event_rows(events) == [
        (
            "CallAnswered",
            asdict(
                CallAnswered(
                    "default", "76.1", "101", Direction.INBOUND, CALLER, DID, None, None,
                    False, None, T0 + 4,
                )
            ),
        )
    ]  # fmt: skip
    events = feed(tracker, frames[3:])  # the DialEnd, stamped T0 + 2, then the hangups
    assert kinds(events) == [("ended", "answered")]
    assert one(events).to_json() == inbound("76.1", warnings=[ESTIMATED])


# ------------------------------------------------------------------ channels and parties


def test_a_stream_caught_mid_call_stays_partial_when_a_later_channel_s_newchannel_arrives() -> None:
    s = Stream()
    trunk = chan(TRUNK, "77.1", "77.1", "from-trunk", DID, CALLER)
    agent = dest(A101, "77.2", "77.1", "from-internal", "101")
    events = feed(CallTracker(TrackingSettings()), [
        s.ev("DialBegin", trunk, agent),
        s.at(0.5).ev("Newchannel", chan(A101, "77.2", "77.1", "from-internal", "101")),
        s.at(1.5).ev("DialEnd", trunk, agent, DialStatus="ANSWER"),
        s.at(10).ev("Hangup", trunk, Cause="16"),
        s.ev("Hangup", chan(A101, "77.2", "77.1"), Cause="16"),
    ])  # fmt: skip
    assert one(events).to_json() == inbound("77.1", reconstructed=True, warnings=[PARTIAL])


def test_a_renamed_channel_is_the_agent_it_now_names_without_a_guess() -> None:
    s = Stream()
    trunk = chan(TRUNK, "78.1", "78.1", "from-trunk", DID, CALLER)
    temp = "PJSIP/transient-00000001"
    events = feed(CallTracker(TrackingSettings()), [
        s.ev("Newchannel", trunk),
        s.ev("Newchannel", chan(temp, "78.2", "78.1", "from-agents", "s")),
        s.ev("Rename", chan(temp, "78.2", "78.1"), Newname="PJSIP/12-0000000f"),
        s.ev("DialBegin", trunk, dest("PJSIP/12-0000000f", "78.2", "78.1", "from-agents", "s")),
        s.at(2).ev("DialEnd", trunk, dest("PJSIP/12-0000000f", "78.2", "78.1"),
                   DialStatus="ANSWER"),
        s.at(10).ev("Hangup", trunk, Cause="16"),
        s.ev("Hangup", chan("PJSIP/12-0000000f", "78.2", "78.1"), Cause="16"),
    ])  # fmt: skip
    assert one(events).to_json() == inbound(
        "78.1", agents_rang=["12"], agents_answered=["12"], answered_by="12"
    )


def test_the_did_and_caller_come_from_the_dial_when_the_channel_was_born_without_them() -> None:
    """An analog line arrives in extension ``s`` with no caller ID; the dialplan goes to the
    DID's extension and the caller ID arrives: the DialBegin says both."""
    s = Stream()
    born = chan(TRUNK, "79.1", "79.1", "from-trunk", "s")
    dialing = chan(TRUNK, "79.1", "79.1", "from-trunk", DID, CALLER)
    agent = dest(A101, "79.2", "79.1", "from-internal", "101")
    events = feed(CallTracker(TrackingSettings()), [
        s.ev("Newchannel", born),
        s.ev("DialBegin", dialing, agent),
        s.at(2).ev("DialEnd", dialing, agent, DialStatus="ANSWER"),
        s.at(10).ev("Hangup", born, Cause="16"),
        s.ev("Hangup", chan(A101, "79.2", "79.1"), Cause="16"),
    ])  # fmt: skip
    ring = events[0]
    assert isinstance(ring, CallRinging) and (ring.caller, ring.did) == (CALLER, DID)
    assert one(events).to_json() == inbound("79.1")


def test_a_call_from_a_local_channel_shows_the_number_of_the_half_that_runs_the_dialplan() -> None:
    """An Originate of ``Local/5551000@from-pstn``: the ;1 half has no caller ID, the ;2 half
    (the trunk) carries the customer's number."""
    s = Stream()
    l1 = chan("Local/5551000@from-pstn-00000001;1", "80.1", "80.1", "from-pstn", DID)
    l2 = chan("Local/5551000@from-pstn-00000001;2", "80.2", "80.1", "from-pstn", DID, CALLER)
    agent = dest(A101, "80.3", "80.1", "from-internal", "101")
    events = feed(CallTracker(TrackingSettings()), [
        s.ev("Newchannel", l1),
        s.ev("Newchannel", l2),
        s.ev("DialBegin", l2, agent),
        s.at(2).ev("DialEnd", l2, agent, DialStatus="ANSWER"),
        s.at(10).ev("Hangup", chan(A101, "80.3", "80.1"), Cause="16"),
        s.ev("Hangup", l2, Cause="16"),
        s.ev("Hangup", l1, Cause="16"),
    ])  # fmt: skip
    assert one(events).to_json() == inbound("80.1")


def test_a_seven_digit_channel_is_no_guessed_agent() -> None:
    s = Stream()
    trunk = chan(TRUNK, "81.1", "81.1", "from-trunk", DID, CALLER)
    line = dest("DAHDI/5551234-1", "81.2", "81.1", "from-internal", "s")
    events = feed(CallTracker(TrackingSettings()), [
        s.ev("Newchannel", trunk),
        s.ev("DialBegin", trunk, line),
        s.at(2).ev("DialEnd", trunk, line, DialStatus="ANSWER"),
        s.at(10).ev("Hangup", trunk, Cause="16"),
        s.ev("Hangup", chan("DAHDI/5551234-1", "81.2", "81.1"), Cause="16"),
    ])  # fmt: skip
    assert one(events).to_json() == inbound(
        "81.1",
        outcome="noanswer",
        agents_rang=[],
        agents_answered=[],
        answered_by=None,
        answered_at=None,
        ring_seconds=0.0,
        talk_seconds=0.0,
        warnings=[NO_AGENT],
    )


def test_talk_seconds_are_kept_to_the_millisecond() -> None:
    s = Stream()
    frames = answered_by_101(s, "82.1")
    frames[-2]["Timestamp"] = frames[-1]["Timestamp"] = f"{T0 + 12.22222:.6f}"
    rec = one(feed(CallTracker(TrackingSettings()), frames))
    assert (rec.talk_seconds, rec.total_seconds) == (10.222, 12.222)


def test_eviction_dates_the_end_at_the_last_dial_seen() -> None:
    tracker = CallTracker(TrackingSettings(max_open_calls=1))
    s = Stream()
    trunk = chan(TRUNK, "83.1", "83.1", "from-trunk", DID, CALLER)
    events = feed(tracker, [
        s.ev("Newchannel", trunk),
        s.ev("Newchannel", chan(A101, "83.2", "83.1", "from-internal", "101")),
        s.at(5).ev("DialBegin", trunk, dest(A101, "83.2", "83.1", "from-internal", "101")),
        s.at(4).ev("Newchannel", chan(TRUNK, "84.1", "84.1", "from-trunk", DID)),
    ])  # fmt: skip
    assert kinds(events) == [("ringing", ("101",)), ("ended", "abandoned")]
    closed = "closed without a Hangup: more than 1 calls were open (tracking.max_open_calls)"
    assert one(events).to_json() == inbound(
        "83.1",
        outcome="abandoned",
        agents_answered=[],
        answered_by=None,
        answered_at=None,
        ended_at=T0 + 5,
        ring_seconds=0.0,
        talk_seconds=0.0,
        total_seconds=5.0,
        hangup_cause=None,
        reconstructed=True,
        warnings=[closed],
    )


# ------------------------------------------------------------------ queues


def test_a_queue_member_answering_without_a_dialend_stops_ringing_on_the_others() -> None:
    """Ringall: 101 and 102 ring; 102 answers (AgentConnect, its DialEnd lost); 101's leg is
    cancelled: the pop-up is dismissed, not left on 102 who is talking."""
    s = Stream()
    trunk = chan(TRUNK, "85.1", "85.1", "from-trunk", DID, CALLER)
    m101 = dest(A101, "85.2", "85.1", "from-internal", "s")
    m102 = dest(A102, "85.3", "85.1", "from-internal", "s")
    events = feed(CallTracker(TrackingSettings()), [
        s.ev("Newchannel", trunk),
        s.ev("QueueCallerJoin", trunk, Queue="sales"),
        s.ev("DialBegin", trunk, m101),
        s.ev("DialBegin", trunk, m102),
        s.at(3).ev("AgentConnect", trunk, m102, Queue="sales", Interface="PJSIP/102"),
        s.ev("DialEnd", trunk, m101, DialStatus="CANCEL"),
        s.ev("QueueCallerLeave", trunk, Queue="sales"),
        s.at(10).ev("Hangup", trunk, Cause="16"),
        s.ev("Hangup", chan(A102, "85.3", "85.1"), Cause="16"),
        s.ev("Hangup", chan(A101, "85.2", "85.1"), Cause="26"),
    ])  # fmt: skip
    assert kinds(events) == [
        ("ringing", ("101",)),
        ("ringing", ("101", "102")),
        ("answered", "102"),
        ("ringing", ()),
        ("ended", "answered"),
    ]
    assert one(events).to_json() == inbound(
        "85.1",
        queue="sales",
        agents_rang=["101", "102"],
        agents_answered=["102"],
        answered_by="102",
        answered_at=T0 + 3,
        ended_at=T0 + 13,
        ring_seconds=3.0,
        queue_wait_seconds=3.0,
        total_seconds=13.0,
    )


def test_a_local_queue_member_named_only_by_its_interface_answers() -> None:
    """``Local/102@agents/n`` (the ``/n`` of a queue member) is agent 102."""
    s = Stream()
    trunk = chan(TRUNK, "86.1", "86.1", "from-trunk", DID, CALLER)
    events = feed(CallTracker(TrackingSettings(agent_contexts=["agents"])), [
        s.ev("Newchannel", trunk),
        s.ev("QueueCallerJoin", trunk, Queue="sales"),
        s.at(2).ev("AgentConnect", trunk, Queue="sales", Interface="Local/102@agents/n",
                   DestUniqueid="nope"),
        s.at(10).ev("Hangup", trunk, Cause="16"),
    ])  # fmt: skip
    assert kinds(events) == [("answered", "102"), ("ended", "answered")]
    assert one(events).to_json() == inbound(
        "86.1",
        queue="sales",
        agents_rang=["102"],
        agents_answered=["102"],
        answered_by="102",
        ring_seconds=0.0,
        queue_wait_seconds=2.0,
    )


# ------------------------------------------------------------------ transfers


def _blind(result: str, **over: str) -> dict[str, str]:
    frame = {
        "Result": result,
        "TransfererChannel": A101,
        "TransfererUniqueid": "87.11",
        "TransfererLinkedid": "87.1",
        "TransfereeChannel": TRUNK,
        "TransfereeUniqueid": "87.1",
        "TransfereeLinkedid": "87.1",
        "IsExternal": "Yes",
        "Context": "transfer",
        "Extension": "102",
    }
    return frame | over


def test_a_failed_blind_transfer_is_no_transfer() -> None:
    s = Stream()
    events = feed(CallTracker(TrackingSettings()), answered_by_101(
        s, "87.1", s.ev("BlindTransfer", _blind("Fail"))
    ))  # fmt: skip
    assert kinds(events) == [("ringing", ("101",)), ("answered", "101"), ("ended", "answered")]
    assert one(events).to_json() == inbound("87.1")


def test_a_blind_transfer_naming_unseen_channels_finds_the_call_by_its_linkedid() -> None:
    """The transfer names channels whose Newchannel the tracker never saw (a filtered link):
    the Linkedid still says which call was transferred."""
    s = Stream()
    unseen = _blind(
        "Success", TransfererUniqueid="87.98", TransferrerLinkedid="", TransfereeUniqueid="87.99"
    )
    unseen["TransfererLinkedid"] = "none"
    events = feed(CallTracker(TrackingSettings()), answered_by_101(
        s, "87.1", s.ev("BlindTransfer", unseen)
    ))  # fmt: skip
    assert kinds(events) == [
        ("ringing", ("101",)),
        ("answered", "101"),
        ("transferred", {"kind": "blind", "from": "101", "to": "102"}),
        ("ended", "transferred"),
    ]
    moved = {"kind": "blind", "from": "101", "to": "102"}
    assert one(events).to_json() == inbound("87.1", outcome="transferred", transfers=[moved])


def test_a_failed_attended_transfer_is_no_transfer() -> None:
    s = Stream()
    failed = s.at(0).ev(
        "AttendedTransfer", Result="Fail", OrigTransfererChannel=A101,
        OrigTransfererUniqueid="88.11", OrigTransfererLinkedid="88.1",
        TransfereeChannel=TRUNK, TransfereeUniqueid="88.1", TransfereeLinkedid="88.1",
        TransferTargetChannel=A102, TransferTargetUniqueid="nope", DestType="Bridge",
    )  # fmt: skip
    events = feed(CallTracker(TrackingSettings()), answered_by_101(s, "88.1", failed))
    assert kinds(events) == [("ringing", ("101",)), ("answered", "101"), ("ended", "answered")]
    assert one(events).to_json() == inbound("88.1")


def test_an_attended_transfer_to_a_consultation_never_seen_names_the_target_phone() -> None:
    s = Stream()
    unseen = s.at(0).ev(
        "AttendedTransfer", Result="Success", OrigTransfererChannel=A101,
        OrigTransfererUniqueid="89.11", OrigTransfererLinkedid="89.1",
        TransfereeChannel=TRUNK, TransfereeUniqueid="89.1", TransfereeLinkedid="89.1",
        TransferTargetChannel=A102, TransferTargetUniqueid="90.2",
        TransferTargetLinkedid="90.1", DestType="Bridge",
    )  # fmt: skip
    events = feed(CallTracker(TrackingSettings()), answered_by_101(s, "89.1", unseen))
    moved = {"kind": "attended", "from": "101", "to": "102"}
    assert kinds(events) == [
        ("ringing", ("101",)),
        ("answered", "101"),
        ("transferred", moved),
        ("answered", "102"),
        ("ended", "transferred"),
    ]
    assert one(events).to_json() == inbound(
        "89.1",
        outcome="transferred",
        transfers=[moved],
        agents_rang=["101", "102"],
        agents_answered=["101", "102"],
    )


def test_attended_transfer_without_channel_names_takes_the_agents_from_the_uniqueids() -> None:
    """The frame names the transferer and the target by Uniqueid only: the customer's record
    says who transferred to whom, and the target is among the agents the call rang."""
    s = Stream()
    trunk = chan(TRUNK, "32.1", "32.1", "from-pstn", DID, CALLER)
    a101 = dest(A101, "32.2", "32.1", "from-agents", "s")
    consult = chan("PJSIP/101-00000099", "33.1", "33.1", "from-agents", "102", "101")
    target = dest(A102, "33.2", "33.1", "from-agents", "s")
    events = feed(CallTracker(TrackingSettings()), [
        s.ev("Newchannel", trunk),
        s.ev("DialBegin", trunk, a101, DialString="101"),
        s.at(2).ev("DialEnd", trunk, a101, DialStatus="ANSWER"),
        s.ev("Newchannel", consult),
        s.ev("DialBegin", consult, target, DialString="102"),
        s.at(2).ev("DialEnd", consult, target, DialStatus="ANSWER"),
        s.at(1).ev(
            "AttendedTransfer", Result="Success",
            OrigTransfererUniqueid="32.2", OrigTransfererLinkedid="32.1",
            TransfereeUniqueid="32.1", TransferTargetUniqueid="33.2",
            TransferTargetLinkedid="33.1",
        ),
        s.ev("Hangup", chan(A101, "32.2", "32.1"), Cause="16"),
        s.ev("Hangup", consult, Cause="16"),
        s.at(4).ev("Hangup", chan(A102, "33.2", "33.1"), Cause="16"),
        s.ev("Hangup", trunk, Cause="16"),
    ])  # fmt: skip
    moved = {"kind": "attended", "from": "101", "to": "102"}
    customer = next(r for r in records(events) if r.linkedid == "32.1")
    assert customer.to_json() == inbound(
        "32.1",
        outcome="transferred",
        transfers=[moved],
        agents_rang=["101", "102"],
        agents_answered=["101", "102"],
        ended_at=T0 + 9,
        talk_seconds=7.0,
        total_seconds=9.0,
    )


def test_attended_transfer_through_a_local_channel_leaves_the_consultation_its_own_record() -> None:
    s = Stream()
    trunk = chan(TRUNK, "30.1", "30.1", "from-pstn", DID, CALLER)
    a101 = dest(A101, "30.2", "30.1", "from-agents", "s")
    l1, l2 = "Local/600@transfer-00000000;1", "Local/600@transfer-00000000;2"
    frames = [
        s.ev("Newchannel", trunk),
        s.ev("DialBegin", trunk, a101, DialString="101"),
        s.at(2).ev("DialEnd", trunk, a101, DialStatus="ANSWER"),
        s.at(5).ev("Newchannel", chan(l1, "31.1", "31.1", "transfer", "600")),
        s.ev("Newchannel", chan(l2, "31.2", "31.1", "transfer", "600")),
        # the hunt extension tries 102, who answers then hangs up, then 103 who takes it
        s.ev("DialBegin", chan(l2, "31.2", "31.1"), dest(A102, "31.3", "31.1", "from-agents")),
        s.at(1).ev("DialEnd", chan(l2, "31.2", "31.1"), dest(A102, "31.3", "31.1"),
                   DialStatus="ANSWER"),
        s.at(1).ev("Hangup", chan(A102, "31.3", "31.1"), Cause="16"),
        s.ev("DialBegin", chan(l2, "31.2", "31.1"), dest(A103, "31.4", "31.1", "from-agents")),
        s.at(1).ev("DialEnd", chan(l2, "31.2", "31.1"), dest(A103, "31.4", "31.1"),
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
        s.ev("Hangup", chan(A103, "31.4", "31.1"), Cause="16"),
    ]  # fmt: skip
    tracker = CallTracker(TrackingSettings())
    events = feed(tracker, frames)
    moved = {"kind": "attended", "from": "101", "to": "103"}
    assert [e.transfer.to_json() for e in events if isinstance(e, CallTransferred)] == [moved]
    customer, consultation = records(events)
    assert customer.to_json() == inbound(
        "30.1",
        outcome="transferred",
        transfers=[moved],
        agents_rang=["101", "103"],
        agents_answered=["101", "103"],
        ended_at=T0 + 34,
        talk_seconds=32.0,
        total_seconds=34.0,
    )
    # the consultation call keeps the phones that rang in it and lasts while 103 talks; the
    # Local halves went to the customer's call, so it reads as a call between agents
    c = consultation.to_json()
    assert (c["linkedid"], c["direction"], c["outcome"], c["warnings"]) == (
        "31.1",
        "internal",
        "answered",
        [],
    )
    assert (c["agents_rang"], c["agents_answered"], c["answered_by"]) == (
        ["102", "103"],
        ["102", "103"],
        "102",
    )
    assert (c["started_at"], c["answered_at"], c["ended_at"]) == (T0 + 7, T0 + 8, T0 + 34)
    assert tracker.open_calls == 0


# ------------------------------------------------------------------ the Cdr


def test_recordings_come_from_the_cdr_userfield_trimmed_and_only_when_reasonably_long() -> None:
    s = Stream()
    huge = "x" * 4100 + ";/var/spool/asterisk/monitor/huge.wav"
    events = feed(CallTracker(TrackingSettings()), answered_by_101(
        s, "91.1",
        s.ev("Cdr", UniqueID="91.1", Disposition="ANSWERED", Duration="7", BillableSeconds="5",
             UserField="notes.txt; /var/spool/asterisk/monitor/91.1.wav "),
        s.ev("Cdr", UniqueID="91.11", Disposition="ANSWERED", Duration="7",
             BillableSeconds="5", UserField=huge),
    ))  # fmt: skip
    assert one(events).to_json() == inbound(
        "91.1", recordings=["/var/spool/asterisk/monitor/91.1.wav"]
    )


def test_a_cdr_without_its_numbers_counts_as_zero_seconds() -> None:
    s = Stream()
    tracker = CallTracker(TrackingSettings())
    feed(tracker, answered_by_101(s, "92.1")[:4])
    feed(tracker, [s.at(1).ev("Cdr", UniqueID="92.1", Disposition="ANSWERED")])
    rec = one(tracker.resync([], T0 + 30))
    assert rec.to_json() == inbound(
        "92.1",
        ended_at=T0 + 30,
        talk_seconds=28.0,
        total_seconds=30.0,
        hangup_cause=None,
        reconstructed=True,
        warnings=[LINK_DOWN],
    )


def test_an_unanswered_call_closed_out_of_sight_gets_no_answer_from_its_cdr() -> None:
    s = Stream()
    tracker = CallTracker(TrackingSettings())
    feed(tracker, answered_by_101(s, "93.1")[:3])
    feed(tracker, [s.at(10).ev("Cdr", UniqueID="93.1", Disposition="NO ANSWER", Duration="10")])
    rec = one(tracker.resync([], T0 + 60))
    assert rec.to_json() == inbound(
        "93.1",
        outcome="abandoned",
        agents_answered=[],
        answered_by=None,
        answered_at=None,
        ended_at=T0 + 10,
        ring_seconds=10.0,
        talk_seconds=0.0,
        total_seconds=10.0,
        hangup_cause=None,
        reconstructed=True,
        warnings=[LINK_DOWN],
    )


@pytest.mark.parametrize(
    ("cdrs", "ring"),
    [
        ([("95.1", "40", "38")], 0.0),  # the trunk's Cdr may include IVR time: not ringing
        ([("95.2", "38", "38")], 0.0),  # the phone answered at once
        ([("95.2", "40", "38")], 2.0),  # the phone existed 2 s before it talked
        ([("95.2", "40", "38"), ("95.1", "40", "39")], 2.0),
    ],
)
def test_a_call_spanning_a_restart_rings_as_long_as_the_agent_phone_s_cdr_says(
    cdrs: list[tuple[str, str, str]], ring: float
) -> None:
    """The snapshot read on connect shows the call answered (bridged as long as the phone
    exists, so no ringing was seen); the Cdrs at the end say what happened."""
    tracker = CallTracker(TrackingSettings())
    agent = snapshot_of(A101, "95.2", "95.1", "Up", Context="from-internal", Extension="101",
                        Duration="00:00:10")  # fmt: skip
    snap = [
        snapshot_of(TRUNK, "95.1", "95.1", "Up", Duration="00:00:12"),
        agent | {"BridgedDuration": "00:00:10"},
    ]
    assert kinds(tracker.resync(snap, T0)) == [("answered", "101")]
    s = Stream().at(28)
    frames = [
        s.ev("Cdr", UniqueID=uid, Disposition="ANSWERED", Duration=d, BillableSeconds=b)
        for uid, d, b in cdrs
    ]
    frames += [
        s.ev("Hangup", chan(TRUNK, "95.1", "95.1"), Cause="16"),
        s.ev("Hangup", chan(A101, "95.2", "95.1"), Cause="16"),
    ]
    rec = one(feed(tracker, frames))
    assert rec.to_json() == inbound(
        "95.1",
        started_at=T0 - 12,
        answered_at=T0 - 10,
        ended_at=T0 + 28,
        ring_seconds=ring,
        talk_seconds=38.0,
        total_seconds=40.0,
        reconstructed=True,
        warnings=[PARTIAL, JOINED, ESTIMATED],
    )


# ------------------------------------------------------------------ bounds on values


def test_values_up_to_4096_characters_are_kept_and_a_record_keeps_20_warnings_at_most() -> None:
    s = Stream()
    trunk = chan(TRUNK, "96.1", "96.1", "from-trunk", DID, CALLER)
    path = "/rec/" + "x" * (4096 - 9) + ".wav"
    assert len(path) == 4096
    frames = [
        s.ev("Newchannel", trunk),
        s.ev("VarSet", trunk, Variable="MIXMONITOR_FILENAME", Value=path),
    ]
    frames += [
        s.ev("DialBegin", trunk, dest(f"DAHDI/{10 + i}-1", f"96.{10 + i}", "96.1", "x", "s"))
        for i in range(25)
    ]
    tracker = CallTracker(TrackingSettings())
    feed(tracker, frames)
    rec = one(list(tracker.close_all(T0 + 9)))  # one warning more: past the bound
    assert rec.recordings == [path]
    assert rec.warnings == [
        f"'DAHDI/{10 + i}-1' is not a configured agent phone; guessed extension {10 + i} "
        "(see tracking.agent_channels / tracking.agent_contexts)"
        for i in range(20)
    ]


def test_a_channel_listed_with_no_age_joins_at_the_snapshot_time() -> None:
    tracker = CallTracker(TrackingSettings())
    tracker.resync([snapshot_of(TRUNK, "97.1", "97.1", "Up", Duration="00:00:00")], T0)
    rec = one(feed(tracker, [Stream().at(4).ev("Hangup", chan(TRUNK, "97.1", "97.1"))]))
    assert (rec.started_at, rec.total_seconds) == (T0, 4.0)
