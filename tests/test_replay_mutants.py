"""What ``centralita replay`` reports for a capture, whole: records, warnings and counters.

Small captures crafted from the lab's real ones (no banner, no timestamps, garbage, cut
mid-call, a failing chunk source), each checked against the complete ReplayResult an
administrator reads, found by mutation testing (issue #11).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.calls.replay import ReplayResult, lab_settings, replay_capture, replay_stream
from gateway.calls.tracker import CallTracker

TRACES = Path(__file__).parent / "data" / "ami-traces"
BANNER = b"Asterisk Call Manager/11.0.0\r\n"
CUT_WARNING = "the capture ended before the call did"
NO_STAMPS = (
    "events carry no Timestamp header (manager.conf timestampevents=no): times and "
    "durations are unknown"
)


def _capture(name: str) -> bytes:
    return (TRACES / f"{name}.ami").read_bytes()


def _counts(data: bytes) -> tuple[int, int]:
    """Frames and events of a capture, counted on its text (one blank line ends a frame; an
    unfinished last frame is not one)."""
    data = data[: data.rfind(b"\r\n\r\n") + 4]
    return data.count(b"\r\n\r\n"), len(re.findall(rb"(?:^|\r\n\r\n)Event: ", data))


def _frame(**fields: str) -> bytes:
    return b"".join(f"{k}: {v}\r\n".encode() for k, v in fields.items()) + b"\r\n"


def _summary(result: ReplayResult) -> dict[str, object]:
    return {
        "records": [(r.linkedid, r.outcome.value, r.answered_by) for r in result.records],
        "corrections": result.corrections,
        "warnings": result.warnings,
        "parse_errors": result.parse_errors,
        "frames": result.frames,
        "events": result.events,
        "open_calls": result.open_calls,
    }


INBOUND = _capture("inbound_answered")
INBOUND_ID = "1795346324.0"
FRAMES, EVENTS = _counts(INBOUND)


def test_a_clean_capture_gives_its_record_and_no_warning() -> None:
    assert (FRAMES, EVENTS) == (142, 138)  # 4 frames are action responses
    result = replay_capture(INBOUND, lab_settings())
    assert _summary(result) == {
        "records": [(INBOUND_ID, "answered", "101")],
        "corrections": 0,
        "warnings": [],
        "parse_errors": 0,
        "frames": FRAMES,
        "events": EVENTS,
        "open_calls": 0,
    }
    rec = result.records[0].to_json()
    assert rec["pbx"] == "replay" and rec["talk_seconds"] > 0


def test_the_pbx_name_is_written_on_every_record() -> None:
    assert replay_capture(INBOUND, lab_settings(), "lab").records[0].pbx == "lab"


def test_a_capture_without_banner_is_questioned_but_replayed() -> None:
    headless = INBOUND[len(BANNER) :]
    assert _summary(replay_capture(headless, lab_settings())) == {
        "records": [(INBOUND_ID, "answered", "101")],
        "corrections": 0,
        "warnings": ["no 'Asterisk Call Manager/' banner: is this a raw AMI capture?"],
        "parse_errors": 0,
        "frames": FRAMES,
        "events": EVENTS,
        "open_calls": 0,
    }


def test_events_without_timestamps_warn_that_times_are_unknown() -> None:
    bare = re.sub(rb"Timestamp: [^\r]*\r\n", b"", INBOUND)
    result = replay_capture(bare, lab_settings())
    assert _summary(result) == {
        "records": [(INBOUND_ID, "answered", "101")],
        "corrections": 0,
        "warnings": [NO_STAMPS],
        "parse_errors": 0,
        "frames": FRAMES,
        "events": EVENTS,
        "open_calls": 0,
    }
    rec = result.records[0]
    assert (rec.started_at, rec.ended_at, rec.talk_seconds, rec.total_seconds) == (0, 0, 0, 0)


def test_a_capture_with_no_event_at_all_has_nothing_to_warn_about() -> None:
    data = BANNER + _frame(Response="Success", Message="Authentication accepted")
    assert _summary(replay_capture(data, lab_settings())) == {
        "records": [],
        "corrections": 0,
        "warnings": [],
        "parse_errors": 0,
        "frames": 1,
        "events": 0,
        "open_calls": 0,
    }


def test_one_stamped_event_is_enough_to_trust_the_times() -> None:
    # only the first event keeps its Timestamp: no warning about timestampevents
    first, rest = INBOUND.split(b"Timestamp: ", 1)
    rest = re.sub(rb"Timestamp: [^\r]*\r\n", b"", rest)
    result = replay_capture(first + b"Timestamp: " + rest, lab_settings())
    assert result.warnings == [] and len(result.records) == 1


def test_a_capture_cut_mid_call_counts_the_call_in_progress() -> None:
    cut = INBOUND[: len(INBOUND) // 2]
    frames, events = _counts(cut)
    assert _summary(replay_capture(cut, lab_settings())) == {
        "records": [],
        "corrections": 0,
        "warnings": ["1 call(s) still in progress at the end"],
        "parse_errors": 0,
        "frames": frames,
        "events": events,
        "open_calls": 1,
    }


def test_flush_closes_the_call_in_progress_as_a_reconstructed_record() -> None:
    cut = INBOUND[: len(INBOUND) // 2]
    frames, events = _counts(cut)
    result = replay_capture(cut, lab_settings(), flush_open=True)
    assert _summary(result) == {
        "records": [(INBOUND_ID, "abandoned", None)],
        "corrections": 0,
        "warnings": [f"call {INBOUND_ID}: {CUT_WARNING}"],
        "parse_errors": 0,
        "frames": frames,
        "events": events,
        "open_calls": 0,
    }
    rec = result.records[0]
    assert rec.reconstructed and rec.warnings == [CUT_WARNING]
    assert rec.agents_rang == ["101"] and rec.caller == "+34911234567"


def test_flush_of_a_whole_capture_changes_nothing() -> None:
    plain = replay_capture(INBOUND, lab_settings())
    flushed = replay_capture(INBOUND, lab_settings(), flush_open=True)
    assert _summary(flushed) == _summary(plain)


def test_hangups_of_unknown_channels_are_counted() -> None:
    hangup = _frame(
        Event="Hangup",
        Timestamp="1795346400.5",
        Channel="PJSIP/trunk-00000009",
        Uniqueid="1795346399.9",
        Linkedid="1795346399.9",
        Cause="16",
    )
    assert _summary(replay_capture(BANNER + hangup + hangup, lab_settings())) == {
        "records": [],
        "corrections": 0,
        "warnings": ["2 Hangup(s) of channels never seen"],
        "parse_errors": 0,
        "frames": 2,
        "events": 2,
        "open_calls": 0,
    }


def test_garbage_is_skipped_and_the_first_twenty_pieces_are_shown() -> None:
    junk = [b"Junk: " + b"x" * 100 + b"\r\n\r\n"] + [_frame(Junk=str(i)) for i in range(1, 21)]
    data = BANNER + b"".join(junk) + INBOUND[len(BANNER) :]
    result = replay_capture(data, lab_settings())
    skipped = "skipped input: block with no Event, Response or Action header skipped"
    assert result.warnings == [f"{skipped} ({b'Junk: ' + b'x' * 54!r})"] + [
        f"{skipped} ({f'Junk: {i}'.encode()!r})" for i in range(1, 20)
    ]
    assert _summary(result) | {"warnings": None} == {
        "records": [(INBOUND_ID, "answered", "101")],
        "corrections": 0,
        "warnings": None,
        "parse_errors": 21,
        "frames": FRAMES,
        "events": EVENTS,
        "open_calls": 0,
    }


def test_a_failing_source_stops_the_replay_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    half = len(INBOUND) // 2

    def chunks() -> Iterator[bytes]:
        yield INBOUND[:half]
        raise OSError("disk gone")

    with caplog.at_level(logging.ERROR, logger="gateway.calls.replay"):
        result = replay_stream(chunks(), lab_settings(), flush_open=True)
    frames, events = _counts(INBOUND[:half])
    assert _summary(result) == {
        "records": [],  # the flush never ran: the call is still counted as open
        "corrections": 0,
        "warnings": [
            "replay stopped early: OSError: disk gone",
            "1 call(s) still in progress at the end",
        ],
        "parse_errors": 0,
        "frames": frames,
        "events": events,
        "open_calls": 1,
    }
    logged = [r for r in caplog.records if r.name == "gateway.calls.replay"]
    assert [r.getMessage() for r in logged] == ["replay stopped early"]
    assert logged[0].exc_info is not None


def test_events_the_tracker_fails_on_are_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: CallTracker, frame: object, at: float) -> None:
        raise RuntimeError("tracker bug")

    monkeypatch.setattr(CallTracker, "_on_dial_begin", broken)
    result = replay_capture(INBOUND, lab_settings())
    dials = INBOUND.count(b"Event: DialBegin\r\n")
    assert dials >= 1
    assert f"{dials} event(s) the tracker could not apply" in result.warnings
    assert (result.frames, result.events, result.parse_errors) == (FRAMES, EVENTS, 0)


RESTART = (TRACES / "restart" / "gateway_restart_mid_call.after.ami").read_bytes()
RESTART_ID = "1796027602.0"
RESTART_WARNINGS = [
    "the start of this call was not seen: times are approximate",
    "joined in progress from the channel list read on connect",
    "answered while the link was down: answer time estimated",
]


def test_a_snapshot_in_the_capture_joins_the_call_in_progress() -> None:
    """A gateway started mid-call: the CoreShowChannels answer in the capture opens the
    call, the late Cdr corrects it once, and the next (unfinished) call stays open."""
    result = replay_capture(RESTART, lab_settings())
    frames, events = _counts(RESTART)
    assert _summary(result) == {
        "records": [(RESTART_ID, "answered", "101")],
        "corrections": 1,
        "warnings": ["1 call(s) still in progress at the end"]
        + [f"call {RESTART_ID}: {w}" for w in RESTART_WARNINGS],
        "parse_errors": 0,
        "frames": frames,
        "events": events,
        "open_calls": 1,
    }
    rec = result.records[0]
    # the snapshot is dated by the last stamped event before it (its own frames carry none)
    assert rec.started_at == pytest.approx(1796027603.021915)
    assert rec.answered_at == pytest.approx(1796027605.021915)
    assert rec.ended_at == pytest.approx(1796027630.021915)
    assert (rec.ring_seconds, rec.talk_seconds, rec.total_seconds) == (1.98, 25.0, 27.0)
    assert rec.recordings == ["/var/spool/asterisk/monitor/1796027602.1.wav"]  # corrected
    assert rec.reconstructed and rec.warnings == RESTART_WARNINGS


def test_a_snapshot_without_any_time_is_dated_zero() -> None:
    bare = re.sub(rb"Timestamp: [^\r]*\r\n", b"", RESTART)
    result = replay_capture(bare, lab_settings())
    assert result.warnings[:2] == [NO_STAMPS, "1 call(s) still in progress at the end"]
    rec = result.records[0]
    assert (rec.started_at, rec.answered_at, rec.ended_at) == (-27.0, -25.0, 0.0)


def test_an_unreadable_timestamp_keeps_the_last_good_one() -> None:
    at = RESTART.index(b"Event: CoreShowChannel\r\n")
    odd = _frame(Event="FullyBooted", Timestamp="soon", Status="Fully Booted")
    result = replay_capture(RESTART[:at] + odd + RESTART[at:], lab_settings())
    rec = result.records[0]
    assert rec.started_at == pytest.approx(1796027603.021915)
    assert rec.ended_at == pytest.approx(1796027630.021915)


def test_filtered_replay_counts_only_the_frames_it_kept() -> None:
    plain = replay_capture(INBOUND, lab_settings())
    filtered = replay_capture(INBOUND, lab_settings(), filtered=True)
    assert [r.to_json() for r in filtered.records] == [r.to_json() for r in plain.records]
    assert filtered.warnings == [] and filtered.parse_errors == 0
    assert 0 < filtered.events < plain.events and filtered.frames < plain.frames


def test_a_second_snapshot_does_not_bring_back_a_call_that_ended() -> None:
    """Two reconnects in one capture: the second channel list (empty: the first call is
    over) must not be merged with the first one's channels."""
    at = RESTART.index(b"Event: Newchannel\r\nPrivilege: call,all\r\nTimestamp: 1796027644.7")
    empty = _frame(
        Event="CoreShowChannelsComplete",
        ActionID="centralita-resync-2",
        EventList="Complete",
        ListItems="0",
    )
    result = replay_capture(RESTART[:at] + empty + RESTART[at:], lab_settings())
    assert [(r.linkedid, r.outcome.value) for r in result.records] == [(RESTART_ID, "answered")]
    assert (result.corrections, result.open_calls) == (1, 1)
    assert result.warnings == ["1 call(s) still in progress at the end"] + [
        f"call {RESTART_ID}: {w}" for w in RESTART_WARNINGS
    ]
