"""Replay a raw AMI capture through the call tracker: what ``centralita replay`` prints.

Administrators point it at their own captures, so it never raises: unreadable bytes become
parse errors, an unfamiliar dialplan becomes best-effort records with warnings.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.ami.frames import AmiFrame, FrameParser
from gateway.calls.events import CallCorrected, CallEnded
from gateway.calls.model import CallRecord
from gateway.calls.settings import TrackingSettings
from gateway.calls.tracker import CallTracker, event_filter

log = logging.getLogger("gateway.calls.replay")


@dataclass(slots=True)
class ReplayResult:
    """Records in the order the calls ended, plus what went wrong on the way. A record that
    a later event corrected (a Cdr after the last Hangup) appears once, corrected."""

    records: list[CallRecord] = field(default_factory=list)
    corrections: int = 0
    warnings: list[str] = field(default_factory=list)
    parse_errors: int = 0
    frames: int = 0
    events: int = 0
    open_calls: int = 0  # calls still going when the capture ended


def lab_settings() -> TrackingSettings:
    """The lab PBX of ``ami-traces/`` (Local-channel agents in ``[agents]``, DIDs arriving in
    ``[from-pstn]``, click-to-call through ``[outbound]``); same as ``config/lab.yaml``."""
    return TrackingSettings(
        agent_contexts=["agents"],
        inbound_contexts=["from-pstn"],
        click_to_call_context="outbound",
    )


def replay_capture(
    data: bytes,
    settings: TrackingSettings,
    pbx: str = "replay",
    *,
    filtered: bool = False,
    flush_open: bool = False,
) -> ReplayResult:
    """Replay a whole capture held in memory (see ``replay_stream``)."""
    return replay_stream((data,), settings, pbx, filtered=filtered, flush_open=flush_open)


def replay_stream(
    chunks: Iterable[bytes],
    settings: TrackingSettings,
    pbx: str = "replay",
    *,
    filtered: bool = False,
    flush_open: bool = False,
) -> ReplayResult:
    """Feed a capture, cut anywhere, through a parser and a tracker.

    ``filtered`` drops noise before parsing as the live link does. A CoreShowChannels answer
    recorded in the stream is merged like the live resync. With ``flush_open`` the calls still
    open at the end are closed as reconstructed records instead of only counted.
    """
    result = ReplayResult()
    parser = FrameParser(drop=event_filter(settings) if filtered else None)
    tracker = CallTracker(settings, pbx)
    snapshot: list[AmiFrame] = []
    seen_timestamp = False
    last_stamp: float | None = None  # of any event: a snapshot's own frames carry none
    try:
        for chunk in chunks:
            for frame in parser.feed(chunk):
                result.frames += 1
                name = frame.get("Event")
                if name is None:
                    continue
                result.events += 1
                if "Timestamp" in frame:
                    seen_timestamp = True
                    last_stamp = _stamp(frame, last_stamp)
                if name == "CoreShowChannel":
                    snapshot.append(frame)
                    continue
                if name == "CoreShowChannelsComplete":
                    at = _stamp(frame, last_stamp)
                    _collect(tracker.resync(snapshot, 0.0 if at is None else at), result)
                    snapshot = []
                    continue
                _collect(tracker.feed(frame), result)
        if flush_open:
            _collect(tracker.close_all(reason="the capture ended before the call did"), result)
    except Exception as e:  # never let one bad capture take the CLI down with a traceback
        log.exception("replay stopped early")
        result.warnings.append(f"replay stopped early: {type(e).__name__}: {e}")
    result.parse_errors = len(parser.errors)
    for err in parser.errors[:20]:
        result.warnings.append(f"skipped input: {err.reason} ({err.sample[:60]!r})")
    if parser.banner is None:
        result.warnings.append("no 'Asterisk Call Manager/' banner: is this a raw AMI capture?")
    if result.events and not seen_timestamp:
        result.warnings.append(
            "events carry no Timestamp header (manager.conf timestampevents=no): times and "
            "durations are unknown"
        )
    result.open_calls = tracker.open_calls
    if tracker.open_calls:
        result.warnings.append(f"{tracker.open_calls} call(s) still in progress at the end")
    if tracker.orphan_hangups:
        result.warnings.append(f"{tracker.orphan_hangups} Hangup(s) of channels never seen")
    if tracker.errors:
        result.warnings.append(f"{tracker.errors} event(s) the tracker could not apply")
    for record in result.records:
        for w in record.warnings:
            result.warnings.append(f"call {record.linkedid}: {w}")
    return result


def _collect(events: Iterable[object], result: ReplayResult) -> None:
    for e in events:
        if isinstance(e, CallEnded):
            result.records.append(e.record)
        elif isinstance(e, CallCorrected):
            result.corrections += 1
            for i, old in enumerate(result.records):
                if old.linkedid == e.record.linkedid:
                    result.records[i] = e.record


def _stamp(frame: AmiFrame, default: float | None) -> float | None:
    try:
        return float(frame["Timestamp"])
    except (KeyError, ValueError):
        return default
