"""The AMI framer: exact frames from real captures, and no crash or loss on hostile bytes."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from gateway.ami.frames import EventFilter, FrameParser, encode_frame, iter_capture, values

TRACES = Path(__file__).parent / "data" / "ami-traces"
CAPTURES = sorted(p for p in TRACES.glob("*.ami") if not p.name.endswith(".sent.ami"))


def _event(name: str, **headers: str) -> bytes:
    return encode_frame({"Event": name, **headers})


def test_captures_are_present() -> None:
    assert len(CAPTURES) >= 12


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.stem)
def test_capture_parses_whole_and_in_random_chunks(path: Path) -> None:
    data = path.read_bytes()
    parser, frames = iter_capture(data)
    assert parser.banner == "Asterisk Call Manager/11.0.0"
    assert parser.errors == []
    # every message of the capture comes out, in order
    assert len(frames) == data.count(b"\r\n\r\n")
    rng = random.Random(path.name)
    for _ in range(3):
        p = FrameParser()
        got = []
        i = 0
        while i < len(data):
            n = rng.randint(1, 700)
            got.extend(p.feed(data[i : i + n]))
            i += n
        assert got == frames


def test_banner_split_across_reads_and_glued_to_first_response() -> None:
    p = FrameParser()
    assert p.feed(b"Asterisk Call") == []
    frames = p.feed(b" Manager/11.0.0\r\nResponse: Success\r\nActionID: 1\r\n\r\n")
    assert p.banner == "Asterisk Call Manager/11.0.0"
    assert frames == [{"Response": "Success", "ActionID": "1"}]


def test_garbage_and_colonless_lines_are_reported_and_later_events_survive() -> None:
    p = FrameParser()
    stream = (
        b"\x00\xff\xfegarbage without structure\r\n\r\n"
        + b"Event: Newchannel\r\nthis line has no colon\r\nUniqueid: 1.1\r\n\r\n"
        + _event("Hangup", Uniqueid="1.1", Cause="16")
    )
    frames = p.feed(stream)
    assert [f["Event"] for f in frames] == ["Newchannel", "Hangup"]
    assert frames[0]["Uniqueid"] == "1.1"
    reasons = [e.reason for e in p.errors]
    assert any("no Event, Response or Action" in r for r in reasons)
    assert any("without a colon" in r for r in reasons)


def test_invalid_utf8_keeps_the_frame_with_replacement_characters() -> None:
    p = FrameParser()
    frames = p.feed(b"Event: Newchannel\r\nCallerIDName: Jos\xe9 \xff\r\nUniqueid: 9.9\r\n\r\n")
    assert frames[0]["CallerIDName"] == "Jos\ufffd \ufffd"
    assert frames[0]["Uniqueid"] == "9.9"
    assert p.errors and "UTF-8" in p.errors[0].reason


def test_truncated_frame_waits_for_the_rest() -> None:
    p = FrameParser()
    assert p.feed(b"Event: Hangup\r\nUniqueid: 1") == []
    assert p.feed(b".2\r\n\r") == []
    assert p.feed(b"\n") == [{"Event": "Hangup", "Uniqueid": "1.2"}]


def test_one_megabyte_line_is_dropped_and_memory_stays_bounded() -> None:
    p = FrameParser(max_frame=64 * 1024)
    huge = b"Event: VarSet\r\nValue: " + b"x" * (1024 * 1024)
    for i in range(0, len(huge), 8192):
        assert p.feed(huge[i : i + 8192]) == []
        assert len(p._buf) <= 64 * 1024 + 8192
    frames = p.feed(b"\r\n\r\n" + _event("Hangup", Uniqueid="2.2"))
    assert frames == [{"Event": "Hangup", "Uniqueid": "2.2"}]
    assert any("larger than" in e.reason for e in p.errors)


def test_large_but_allowed_value_passes_through() -> None:
    value = "v" * 200_000
    frames = FrameParser().feed(_event("VarSet", Variable="BIG", Value=value))
    assert frames[0]["Value"] == value


def test_repeated_headers_keep_every_value() -> None:
    raw = b"Event: X\r\nVariable: A=1\r\nVariable: B=2\r\n\r\n"
    frame = FrameParser().feed(raw)[0]
    assert values(frame, "Variable") == ["A=1", "B=2"]
    assert encode_frame(frame) == raw


def test_empty_values_with_and_without_trailing_space() -> None:
    frame = FrameParser().feed(b"Event: Cdr\r\nAccountCode: \r\nUserField:\r\n\r\n")[0]
    assert frame == {"Event": "Cdr", "AccountCode": "", "UserField": ""}


def test_encode_frame_cannot_be_used_to_smuggle_headers() -> None:
    raw = encode_frame({"Action": "Originate", "CallerID": "x\r\nAction: Hangup"})
    frames = FrameParser().feed(raw)
    assert len(frames) == 1
    assert "Hangup" not in frames[0].get("Action", "")


def test_event_filter_drops_noise_but_keeps_rescued_and_action_answers() -> None:
    stream = b"".join(
        [
            _event("VarSet", Variable="FOO", Value="1"),
            _event("VarSet", Variable="MIXMONITOR_FILENAME", Value="/r/1.wav"),
            _event("Newexten", Application="NoOp"),
            _event("CoreShowChannel", ActionID="a1", Channel="PJSIP/101-1"),
            _event("Hangup", Uniqueid="3.3"),
            encode_frame({"Response": "Success", "ActionID": "a2"}),
        ]
    )
    keep = EventFilter(
        frozenset({"Hangup"}), rescue=(b"Variable: MIXMONITOR_FILENAME\r\n",), keep=True
    )
    p = FrameParser(drop=keep)
    names = [f.get("Event") or f.get("Response") for f in p.feed(stream)]
    assert names == ["VarSet", "CoreShowChannel", "Hangup", "Success"]
    assert p.frames_dropped == 2
    drop = EventFilter(frozenset({"VarSet", "Newexten"}))
    names = [f.get("Event") or f.get("Response") for f in FrameParser(drop=drop).feed(stream)]
    assert names == ["CoreShowChannel", "Hangup", "Success"]


RESTART = TRACES / "restart" / "gateway_restart_mid_call.after.ami"


def test_tracker_filter_keeps_queue_status_whose_action_id_comes_last() -> None:
    """Asterisk 22 names ActionID last in QueueParams/QueueMember (the real stream)."""
    from gateway.calls.settings import TrackingSettings
    from gateway.calls.tracker import event_filter

    data = RESTART.read_bytes()
    everything = FrameParser().feed(data)
    kept = FrameParser(drop=event_filter(TrackingSettings())).feed(data)
    wanted = [f for f in everything if f.get("Event") in ("QueueParams", "QueueMember")]
    assert [f["Event"] for f in wanted] == ["QueueParams", "QueueMember", "QueueMember"]
    assert [f for f in kept if f.get("Event") in ("QueueParams", "QueueMember")] == wanted


def test_filter_drops_noise_and_rescues_only_the_wanted_varset() -> None:
    f = EventFilter(frozenset({"Hangup"}), rescue=(b"Variable: WANTED\r\n",), keep=True)
    p = FrameParser(drop=f)
    frames = p.feed(
        _event("VarSet", Variable="NOISE", Value="1")
        + _event("VarSet", Variable="WANTED", Value="/rec/a.wav")
        + _event("Newexten", Uniqueid="1")
        + _event("Hangup", Uniqueid="1")
        + _event("QueueMember", Queue="q", ActionID="a1")
    )
    assert frames == [
        {"Event": "VarSet", "Variable": "WANTED", "Value": "/rec/a.wav"},
        {"Event": "Hangup", "Uniqueid": "1"},
        {"Event": "QueueMember", "Queue": "q", "ActionID": "a1"},
    ]
    assert p.frames_dropped == 2
    # keep=False: the named events are the ones dropped
    p2 = FrameParser(drop=EventFilter(frozenset({"Newexten"})))
    assert [x["Event"] for x in p2.feed(_event("Newexten") + _event("Hangup"))] == ["Hangup"]


def test_oversized_frame_is_skipped_whole_and_the_next_one_survives() -> None:
    p = FrameParser(max_frame=100)
    big = b"Event: VarSet\r\nValue: " + b"x" * 300
    out = p.feed(big) + p.feed(b"y" * 50 + b"\r\n\r\n" + _event("Hangup", Uniqueid="9"))
    assert out == [{"Event": "Hangup", "Uniqueid": "9"}]
    assert [e.reason for e in p.errors] == ["frame larger than 100 bytes dropped"]


def test_banner_cut_right_after_its_prefix() -> None:
    p = FrameParser()
    assert p.feed(b"Asterisk Call Manager/") == []
    assert p.feed(b"11.0.0") == []
    assert p.feed(b"\r\nResponse: Success\r\n\r\n") == [{"Response": "Success"}]
    assert p.banner == "Asterisk Call Manager/11.0.0" and p.errors == []


def test_colonless_line_is_not_stored_as_a_header() -> None:
    p = FrameParser()
    (frame,) = p.feed(b"Event: Hangup\r\nno colon here\r\nEmpty:\r\nUniqueid: 1\r\n\r\n")
    assert frame == {"Event": "Hangup", "Empty": "", "Uniqueid": "1"}
    assert [e.reason for e in p.errors] == ["header line without a colon skipped"]


def test_error_list_is_capped() -> None:
    p = FrameParser()
    p.feed(b"Foo: bar\r\n\r\n" * 1001)
    assert len(p.errors) == 501
    p.feed(b"Foo: bar\r\n\r\n" * 10)
    assert len(p.errors) == 511


def test_encode_frame_repeats_list_values_and_strips_cr() -> None:
    assert encode_frame({"Action": "Originate", "Variable": ["A=1", "B=2"]}) == (
        b"Action: Originate\r\nVariable: A=1\r\nVariable: B=2\r\n\r\n"
    )
    assert encode_frame({"Action": "X", "Data": "a\rb\nc"}) == (
        b"Action: X\r\nData: a b\r\nData: c\r\n\r\n"
    )
