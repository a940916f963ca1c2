"""Tests that would notice (issue #11): the framer's limits, counters and edge cases that a
one-token change in ``gateway/ami/frames.py`` used to leave unnoticed (``bench/mutation.py``).
Mutants judged equivalent (no observable difference) are listed in
``bench/mutation-equivalents/frames.txt`` with the reason."""

from __future__ import annotations

from gateway.ami.frames import (
    DEFAULT_MAX_FRAME,
    EventFilter,
    FrameParser,
    encode_frame,
    iter_capture,
)
from gateway.calls.settings import TrackingSettings
from gateway.calls.tracker import TRACKED_EVENTS, event_filter

BANNER = b"Asterisk Call Manager/11.0.0\r\n"


def _event(name: str, **headers: str) -> bytes:
    return encode_frame({"Event": name, **headers})


def test_iter_capture_in_chunks_gives_the_same_frames_as_whole() -> None:
    data = BANNER + b"".join(_event("Hangup", Uniqueid=f"1.{i}", Cause="16") for i in range(5))
    whole_parser, whole = iter_capture(data)
    assert [f["Uniqueid"] for f in whole] == [f"1.{i}" for i in range(5)]
    for chunk in (1, 7, 64, len(data)):
        parser, frames = iter_capture(data, chunk)
        assert frames == whole, chunk
        assert parser.banner == whole_parser.banner == "Asterisk Call Manager/11.0.0"
        assert parser.frames_parsed == 5 and parser.errors == []


def test_frames_parsed_counts_every_frame_handed_out() -> None:
    p = FrameParser()
    assert p.frames_parsed == 0
    p.feed(BANNER + _event("Newchannel", Uniqueid="1") + _event("Hangup", Uniqueid="1")[:10])
    assert p.frames_parsed == 1
    p.feed(_event("Hangup", Uniqueid="1")[10:] + b"garbage\r\n\r\n")
    assert p.frames_parsed == 2  # a skipped block is an error, not a frame


def test_default_frame_limit_is_half_a_megabyte_to_the_byte() -> None:
    assert FrameParser().max_frame == DEFAULT_MAX_FRAME == 524288
    head = b"Event: VarSet\r\nValue: "
    exactly = FrameParser()
    assert exactly.feed(head + b"x" * (DEFAULT_MAX_FRAME - len(head))) == []
    assert exactly.errors == []  # still waiting for the rest of a frame at the limit
    over = FrameParser()
    assert over.feed(head + b"x" * (DEFAULT_MAX_FRAME - len(head) + 1)) == []
    assert [e.reason for e in over.errors] == ["frame larger than 524288 bytes dropped"]


def test_oversized_frame_whose_terminator_straddles_two_reads() -> None:
    """The kept tail must be long enough to see ``\\r\\n\\r`` + ``\\n`` as the end."""
    p = FrameParser(max_frame=100)
    assert p.feed(b"Event: VarSet\r\nValue: " + b"x" * 200 + b"\r\n\r") == []
    assert p.feed(b"\n" + _event("Hangup", Uniqueid="9")) == [{"Event": "Hangup", "Uniqueid": "9"}]
    assert [e.reason for e in p.errors] == ["frame larger than 100 bytes dropped"]


def test_error_samples_are_the_first_120_bytes_of_what_was_skipped() -> None:
    p = FrameParser()
    junk = bytes(range(48, 58)) * 30  # 300 bytes without a colon
    p.feed(junk + b"\r\n\r\n")
    assert [(e.reason, e.sample) for e in p.errors] == [
        ("header line without a colon skipped", junk[:120]),
        ("block with no Event, Response or Action header skipped", junk[:120]),
    ]


def test_error_list_keeps_a_thousand_then_drops_the_oldest_half() -> None:
    p = FrameParser()
    p.feed(b"".join(b"Foo: %d\r\n\r\n" % i for i in range(1000)))
    assert len(p.errors) == 1000 and p.errors[0].sample == b"Foo: 0"
    p.feed(b"Foo: 1000\r\n\r\n")
    assert len(p.errors) == 501
    assert [e.sample for e in p.errors[:2]] == [b"Foo: 500", b"Foo: 501"]
    assert p.errors[-1].sample == b"Foo: 1000"


def test_empty_block_at_the_very_start_of_the_stream_does_not_stall_it() -> None:
    p = FrameParser()
    assert p.feed(b"\r\n\r\n" + _event("Hangup", Uniqueid="1")) == [
        {"Event": "Hangup", "Uniqueid": "1"}
    ]
    assert p.errors == [] and p._buf == b""


def test_only_the_first_line_of_the_stream_is_a_banner() -> None:
    p = FrameParser()
    assert p.feed(BANNER) == []
    frames = p.feed(b"Asterisk Call Manager/2.0.0\r\nResponse: Success\r\n\r\n")
    assert frames == [{"Response": "Success"}]
    assert p.banner == "Asterisk Call Manager/11.0.0"
    assert [e.reason for e in p.errors] == ["header line without a colon skipped"]


def test_list_values_with_a_newline_cannot_smuggle_a_header() -> None:
    raw = encode_frame({"Action": "Originate", "Variable": ["A=1\nAction: Hangup", "B=2"]})
    assert raw == b"Action: Originate\r\nVariable: A=1 Action: Hangup\r\nVariable: B=2\r\n\r\n"
    assert FrameParser().feed(raw) == [
        {"Action": "Originate", "Variable": "A=1 Action: Hangup\nB=2"}
    ]


def test_keep_filter_never_drops_a_block_that_is_not_an_event() -> None:
    """A Response without ActionID (a login answer on some proxies) has no ``Event:`` line:
    a filter of events must let it through, whatever its headers say."""
    keep = EventFilter(frozenset({"Hangup"}), keep=True)
    p = FrameParser(drop=keep)
    stream = encode_frame({"Response": "Success", "Message": "Authentication accepted"})
    stream += _event("Newexten", Uniqueid="1") + _event("Hangup", Uniqueid="1")
    assert p.feed(stream) == [
        {"Response": "Success", "Message": "Authentication accepted"},
        {"Event": "Hangup", "Uniqueid": "1"},
    ]
    assert p.frames_dropped == 1


def test_only_varset_frames_are_rescued() -> None:
    """A dropped event that happens to carry a rescued text is still dropped: the rescue is
    for the VarSet noise only."""
    keep = EventFilter(frozenset({"Hangup"}), rescue=(b"Variable: WANTED\r\n",), keep=True)
    p = FrameParser(drop=keep)
    stream = _event("UserEvent", Variable="WANTED", Value="1")
    stream += _event("VarSet", Variable="WANTED", Value="2")
    assert p.feed(stream) == [{"Event": "VarSet", "Variable": "WANTED", "Value": "2"}]
    assert p.frames_dropped == 1


def test_a_rescue_text_may_start_at_the_first_byte_of_the_stream() -> None:
    keep = EventFilter(frozenset({"Hangup"}), rescue=(b"Event: VarSet\r\nVariable: A",), keep=True)
    p = FrameParser(drop=keep)
    stream = _event("VarSet", Variable="A", Value="1") + _event("VarSet", Variable="B")
    assert p.feed(stream) == [{"Event": "VarSet", "Variable": "A", "Value": "1"}]
    assert p.frames_dropped == 1


def test_the_trackers_filter_names_what_it_keeps() -> None:
    f = event_filter(TrackingSettings(), also=("FullyBooted",))
    assert f.events == TRACKED_EVENTS | {"FullyBooted"} and f.keep is True
    assert f.rescue == (b"Variable: MIXMONITOR_FILENAME\r\n", b"GATEWAY_CALL_ID\r\n")
