"""Every real Asterisk capture replays to its ground truth, however the byte stream is cut."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from gateway.ami.frames import EventFilter, FrameParser, iter_capture
from gateway.calls.events import CallAnswered, CallCorrected, CallEnded, CallRinging
from gateway.calls.model import CallRecord
from gateway.calls.replay import lab_settings, replay_capture, replay_stream
from gateway.calls.settings import TrackingSettings
from gateway.calls.tracker import RESCUE_VARIABLES, TRACKED_EVENTS, CallTracker, event_filter
from gateway.config import load_config

TRACES = Path(__file__).parent / "data" / "ami-traces"
PJSIP = TRACES / "asterisk-22.10.1-pjsip"  # the same calls on a PJSIP deployment (phones and trunk)
RESTART = TRACES / "restart"  # two gateway processes' streams around a restart mid-call


def _scenarios(folder: Path) -> list[str]:
    return sorted(
        p.stem
        for p in folder.glob("*.ami")
        if not p.stem.endswith(".sent") and "login" not in p.stem
    )


SCENARIOS = _scenarios(TRACES)
PJSIP_SCENARIOS = _scenarios(PJSIP)
TOLERANCE = 0.1


def capture(name: str, folder: Path = TRACES) -> bytes:
    return (folder / f"{name}.ami").read_bytes()


def truth(name: str, folder: Path = TRACES) -> dict[str, Any]:
    return json.loads((folder / f"{name}.json").read_text())["calls"][0]


def only_record(name: str, **kw: Any) -> CallRecord:
    result = replay_capture(capture(name), lab_settings(), **kw)
    assert result.parse_errors == 0
    assert len(result.records) == 1, result.warnings
    return result.records[0]


def test_every_scenario_has_ground_truth() -> None:
    assert len(SCENARIOS) == 10
    assert len(PJSIP_SCENARIOS) == 12
    for folder, names in ((TRACES, SCENARIOS), (PJSIP, PJSIP_SCENARIOS)):
        for name in names:
            assert (folder / f"{name}.json").exists()


def assert_matches_truth(rec: CallRecord, gt: dict[str, Any]) -> None:
    """One replayed record against the lab's ground truth (both capture sets)."""
    assert rec.outcome.value == gt["outcome"]
    assert rec.linkedid == gt["linkedid"][0]
    assert rec.recordings == ([gt["recording_path"]] if gt["recording_path"] else [])
    assert not rec.reconstructed and rec.warnings == []
    if gt["kind"] == "click_to_call":
        assert rec.click_to_call and rec.call_id == gt["gateway_call_id"]
        assert rec.direction.value == "outbound"
        assert rec.caller == gt["agent_extension"]
        assert rec.agents_rang == [gt["agent_extension"]]
        answered = gt["outcome"] == "answered"
        assert rec.answered_by == (gt["agent_extension"] if answered else None)
        # the customer's number is known from the Originate even when it was never dialed
        assert rec.dialed == gt["callee_number"]
        # ring: from the agent's phone ringing until the customer picked up (or it gave up)
        ring = gt["agent_ring_seconds"] + (gt["customer_ring_seconds"] or 0)
        assert rec.ring_seconds == pytest.approx(ring, abs=TOLERANCE)
        assert rec.talk_seconds == pytest.approx(gt["talk_seconds_measured"], abs=TOLERANCE)
        assert rec.transfers == [] and rec.queue is None and rec.queue_wait_seconds is None
        return
    assert not rec.click_to_call and rec.call_id is None
    assert rec.direction.value == "inbound"
    assert rec.caller == gt["caller_number"]
    assert rec.did == gt["did"]
    assert rec.queue == gt["queue"]
    assert rec.agents_rang == gt["agents_rang"]
    assert rec.agents_answered == gt["agents_answered"]
    assert rec.answered_by == (gt["agents_answered"][0] if gt["agents_answered"] else None)
    assert [t.to_json() for t in rec.transfers] == (
        [{"kind": "blind", "from": "101", "to": "102"}] if gt["transfer_events"] else []
    )
    assert rec.ring_seconds == pytest.approx(gt["ring_seconds_measured"], abs=TOLERANCE)
    if gt["queue"] is None:
        assert rec.queue_wait_seconds is None
    else:
        wait = gt["queue_wait_seconds_measured"]
        assert rec.queue_wait_seconds == pytest.approx(wait, abs=TOLERANCE)
    assert rec.talk_seconds == pytest.approx(gt["talk_seconds_measured"], abs=TOLERANCE)
    assert rec.total_seconds == pytest.approx(gt["total_seconds_measured"], abs=TOLERANCE)
    assert rec.hangup_cause == gt["trunk_hangup_cause"]
    assert (rec.answered_at is not None) == bool(gt["agents_answered"])


@pytest.mark.parametrize("name", SCENARIOS)
def test_replay_matches_ground_truth(name: str) -> None:
    assert_matches_truth(only_record(name), truth(name))


@pytest.mark.parametrize("name", PJSIP_SCENARIOS)
@pytest.mark.parametrize("filtered", [False, True])
def test_pjsip_capture_replays_to_its_ground_truth(name: str, filtered: bool) -> None:
    # a PJSIP deployment needs no tracking settings at all: the defaults describe it
    result = replay_capture(capture(name, PJSIP), TrackingSettings(), filtered=filtered)
    assert result.parse_errors == 0 and result.warnings == []
    assert len(result.records) == 1
    assert_matches_truth(result.records[0], truth(name, PJSIP))


def test_restart_mid_call_second_process_logs_the_true_call() -> None:
    """The .after stream alone (a gateway started mid-call): the resync snapshot and the
    Cdrs that follow give the values measured on the whole call, in one corrected record."""
    gt = truth("gateway_restart_mid_call", RESTART)
    data = capture("gateway_restart_mid_call.after", RESTART)
    result = replay_capture(data, lab_settings())
    assert result.corrections == 1
    rec = next(r for r in result.records if r.linkedid == gt["linkedid"][0])
    assert [r.linkedid for r in result.records] == [rec.linkedid]
    assert rec.outcome.value == gt["outcome"] and rec.answered_by == "101"
    assert rec.agents_rang == gt["agents_rang"] and rec.agents_answered == gt["agents_answered"]
    assert (rec.caller, rec.did) == (gt["caller_number"], gt["did"])
    assert rec.ring_seconds == pytest.approx(gt["ring_seconds_measured"], abs=TOLERANCE)
    assert rec.talk_seconds == pytest.approx(gt["talk_seconds_measured"], abs=TOLERANCE)
    assert rec.total_seconds == pytest.approx(gt["total_seconds_measured"], abs=TOLERANCE)
    assert rec.recordings == [gt["recording_path"]]
    assert rec.hangup_cause == gt["trunk_hangup_cause"]
    assert rec.reconstructed  # still flagged: part of it was estimated


def tracker_events(tracker: CallTracker, frames: list[Any], resync_at: float) -> list[object]:
    """What the tracker publishes for a capture taken by a gateway that (re)connected: the
    CoreShowChannel list it read is handed over as one resync snapshot at ``resync_at``."""
    events: list[object] = []
    snapshot: list[dict[str, str]] = []
    for f in frames:
        if f.get("Event") == "CoreShowChannel":
            snapshot.append(f)
        elif f.get("Event") == "CoreShowChannelsComplete":
            events += tracker.resync(snapshot, resync_at)
        else:
            events += tracker.feed(f)
    return events


def test_restart_mid_call_ends_once_and_is_corrected_once() -> None:
    _, frames = iter_capture(capture("gateway_restart_mid_call.after", RESTART))
    tracker = CallTracker(lab_settings(), "lab")
    events = tracker_events(tracker, frames, 1796027613.05)
    ends = [e for e in events if isinstance(e, CallEnded)]
    fixes = [e for e in events if isinstance(e, CallCorrected)]
    assert [e.linkedid for e in ends] == [e.linkedid for e in fixes] == ["1796027602.0"]
    # the Hangup closes the record without the recording; the trunk's late Cdr adds it once
    assert ends[0].record.recordings == []
    assert fixes[0].record.recordings == ["/var/spool/asterisk/monitor/1796027602.1.wav"]
    assert ends[0].record.talk_seconds == fixes[0].record.talk_seconds == 25.0
    # nothing but the late evidence changed
    before, after = ends[0].record.to_json(), fixes[0].record.to_json()
    assert {k for k in after if after[k] != before[k]} == {"recordings"}


@pytest.mark.parametrize("name", SCENARIOS)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_same_records_whatever_the_chunk_boundaries(name: str, seed: int) -> None:
    data = capture(name)
    rng = random.Random(seed)
    chunks = []
    i = 0
    while i < len(data):
        n = rng.choice([1, 2, 3, 7, 64, 500, 4096])
        chunks.append(data[i : i + n])
        i += n
    whole = [r.to_json() for r in replay_capture(data, lab_settings()).records]
    cut = [r.to_json() for r in replay_stream(chunks, lab_settings()).records]
    assert cut == whole
    assert len(whole) == 1


@pytest.mark.parametrize("name", SCENARIOS)
def test_filtered_frames_give_the_same_calls_and_events(name: str) -> None:
    data = capture(name)
    full = replay_capture(data, lab_settings())
    filtered = replay_capture(data, lab_settings(), filtered=True)
    assert [r.to_json() for r in filtered.records] == [r.to_json() for r in full.records]

    def events(parser: FrameParser) -> list[object]:
        tracker = CallTracker(lab_settings(), "lab")
        return [e for f in parser.feed(data) for e in tracker.feed(f)]

    everything = events(FrameParser())
    dropping = FrameParser(drop=event_filter(lab_settings()))
    assert events(dropping) == everything
    assert dropping.frames_dropped > 0  # the filter really did drop the noise
    # the published names alone are enough to build an equivalent filter (as the link does)
    rescue = tuple(f"Variable: {v}\r\n".encode() for v in RESCUE_VARIABLES)
    published = FrameParser(drop=EventFilter(TRACKED_EVENTS, rescue=rescue, keep=True))
    assert events(published) == everything


def test_ringing_reaches_every_queue_member_before_the_answer() -> None:
    _, frames = iter_capture(capture("queue_answered"))
    tracker = CallTracker(lab_settings(), "lab")
    events = [e for f in frames for e in tracker.feed(f)]
    kinds = [type(e) for e in events]
    answered = kinds.index(CallAnswered)
    rings = [e for e in events[:answered] if isinstance(e, CallRinging)]
    assert rings[-1].ringing == ("101", "102")
    assert rings[-1].queue == "sales" and rings[-1].number == "+34911234567"
    assert rings[-1].did == "5551000"
    assert events[answered].by == "102"
    # 101 stops ringing once 102 took the call: its pop-up can go
    assert isinstance(events[answered + 1], CallRinging) and events[answered + 1].ringing == ()
    assert isinstance(events[-1], CallEnded)
    assert tracker.open_calls == 0


def test_blind_transfer_target_gets_its_own_ringing_and_answer() -> None:
    _, frames = iter_capture(capture("blind_transfer"))
    tracker = CallTracker(lab_settings(), "lab")
    events = [e for f in frames for e in tracker.feed(f)]
    names = [
        (type(e).__name__, getattr(e, "ringing", None) or getattr(e, "by", None)) for e in events
    ]
    assert names == [
        ("CallRinging", ("101",)),
        ("CallAnswered", "101"),
        ("CallTransferred", None),
        ("CallRinging", ("102",)),
        ("CallAnswered", "102"),
        ("CallEnded", None),
    ]


def test_lab_yaml_describes_the_same_lab() -> None:
    cfg = load_config(Path(__file__).parent.parent / "config" / "lab.yaml")
    assert cfg.tracking == lab_settings()


def test_unknown_dialplan_gives_best_effort_records_with_warnings() -> None:
    # default settings know nothing of Local/1XX@agents nor of the lab's contexts
    settings = TrackingSettings(inbound_contexts=["from-trunk"])
    result = replay_capture(capture("queue_answered"), settings)
    assert len(result.records) == 1
    rec = result.records[0]
    assert rec.outcome.value == "answered"  # extensions guessed from the channel names
    assert rec.agents_rang == ["101", "102"] and rec.answered_by == "102"
    assert any("not a configured agent" in w for w in rec.warnings)
    assert any("not in tracking.inbound_contexts" in w for w in rec.warnings)
    assert result.warnings  # surfaced for `centralita replay`


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage without any structure",
        b"\xff\xfe\x00binary\r\n\r\n\r\n",
        b"Asterisk Call Manager/11.0.0\r\nEvent: Hangup\r\n\r\nEvent: DialBegin\r\n\r\n",
        b"Asterisk Call Manager/11.0.0\r\nEvent: Newchannel\r\nUniqueid: 1\r\nLinkedid: 1\r\n",
    ],
)
def test_replay_never_raises(data: bytes) -> None:
    result = replay_capture(data, lab_settings())
    assert result.records == []
    assert isinstance(result.warnings, list)


def test_truncated_capture_can_flush_calls_in_progress() -> None:
    data = capture("inbound_answered")
    cut = data[: len(data) // 2]
    assert replay_capture(cut, lab_settings()).open_calls == 1
    result = replay_capture(cut, lab_settings(), flush_open=True)
    assert len(result.records) == 1
    rec = result.records[0]
    assert rec.reconstructed and rec.agents_rang == ["101"]
    assert any("capture ended" in w for w in rec.warnings)


def test_record_json_uses_the_replay_field_names() -> None:
    rec = only_record("blind_transfer").to_json()
    for key in [
        "linkedid",
        "direction",
        "click_to_call",
        "caller",
        "did",
        "dialed",
        "queue",
        "agents_rang",
        "answered_by",
        "transfers",
        "outcome",
        "started_at",
        "answered_at",
        "ended_at",
        "ring_seconds",
        "talk_seconds",
        "total_seconds",
        "hangup_cause",
        "recordings",
    ]:
        assert key in rec
    assert json.loads(json.dumps(rec)) == rec
    assert rec["transfers"] == [{"kind": "blind", "from": "101", "to": "102"}]
    assert rec["started_at"] < rec["answered_at"] < rec["ended_at"]


def live_channels(frames: list[dict[str, str]]) -> list[dict[str, str]]:
    """What CoreShowChannels would list after these frames: every channel not hung up yet,
    with its latest state (built from the channel headers every event carries)."""
    live: dict[str, dict[str, str]] = {}
    for f in frames:
        uid = f.get("Uniqueid")
        if not uid or "Channel" not in f or "Linkedid" not in f:
            continue
        if f.get("Event") == "Hangup":
            live.pop(uid, None)
            continue
        live[uid] = {
            "Event": "CoreShowChannel",
            "Channel": f["Channel"],
            "Uniqueid": uid,
            "Linkedid": f["Linkedid"],
            "Context": f.get("Context", ""),
            "Extension": f.get("Exten", ""),
            "ChannelStateDesc": f.get("ChannelStateDesc", ""),
            "CallerIDNum": f.get("CallerIDNum", ""),
            "Duration": "00:00:01",
        }
    return list(live.values())


def replay_with_reconnect(name: str, cut: int, resume: int) -> list[CallRecord]:
    """Frames before ``cut`` arrive, the link drops, ``resume`` is where it comes back."""
    _, frames = iter_capture(capture(name))
    tracker = CallTracker(lab_settings(), "lab")
    out = [e for f in frames[:cut] for e in tracker.feed(f)]
    stamps = [float(f["Timestamp"]) for f in frames[:resume] if "Timestamp" in f]
    out += tracker.resync(live_channels(frames[:resume]), stamps[-1] if stamps else 0.0)
    out += [e for f in frames[resume:] for e in tracker.feed(f)]
    assert tracker.open_calls == 0
    return [e.record for e in out if isinstance(e, CallEnded)]


@pytest.mark.parametrize("name", SCENARIOS)
def test_reconnect_mid_call_continues_the_same_call(name: str) -> None:
    whole = only_record(name)
    _, frames = iter_capture(capture(name))
    for tenth in range(1, 10):
        cut = len(frames) * tenth // 10
        recs = replay_with_reconnect(name, cut, cut)
        assert len(recs) == 1, (tenth, recs)
        rec = recs[0]
        assert rec.linkedid == whole.linkedid
        assert (rec.outcome, rec.agents_rang, rec.answered_by, rec.queue) == (
            whole.outcome,
            whole.agents_rang,
            whole.answered_by,
            whole.queue,
        )
        assert rec.transfers == whole.transfers and rec.recordings == whole.recordings
        assert rec.talk_seconds == pytest.approx(whole.talk_seconds, abs=TOLERANCE)
        assert not any("link to the PBX was down" in w for w in rec.warnings)


def test_call_that_ends_while_the_link_is_down_is_closed_as_reconstructed() -> None:
    _, frames = iter_capture(capture("inbound_answered"))
    answered = next(i for i, f in enumerate(frames) if f.get("DialStatus") == "ANSWER")
    first_hangup = next(i for i, f in enumerate(frames) if f.get("Event") == "Hangup")
    recs = replay_with_reconnect("inbound_answered", answered + 1, len(frames))
    assert first_hangup > answered + 1
    assert len(recs) == 1
    rec = recs[0]
    assert rec.reconstructed and any("link to the PBX was down" in w for w in rec.warnings)
    assert rec.outcome.value == "answered" and rec.answered_by == "101"
    assert rec.agents_rang == ["101"] and rec.caller == "+34911234567"


@pytest.mark.parametrize("name", ["inbound_answered", "queue_answered", "click_to_call"])
def test_reconnect_that_missed_the_answer_still_knows_who_answered(name: str) -> None:
    whole = only_record(name)
    _, frames = iter_capture(capture(name))
    ring = next(
        i for i, f in enumerate(frames) if f.get("Event") == "DialBegin" and "Uniqueid" in f
    )
    answer = max(i for i, f in enumerate(frames) if f.get("DialStatus") == "ANSWER")
    recs = replay_with_reconnect(name, ring + 1, answer + 1)  # the answer happened unseen
    assert len(recs) == 1
    rec = recs[0]
    assert (rec.outcome, rec.answered_by, rec.agents_rang) == (
        whole.outcome,
        whole.answered_by,
        whole.agents_rang,
    )
    assert rec.answered_at is not None and rec.ended_at == whole.ended_at
