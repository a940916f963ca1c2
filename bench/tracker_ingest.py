"""AMI ingest on one core: bytes -> frames -> call records, beside the bare parse rate.

    python bench/tracker_ingest.py [--copies N] [--rounds R] [--profile]

Builds one long stream from every real capture (each repeated with its uniqueids, linkedids
and timestamps shifted so every copy is a distinct set of calls), then times three paths
over it, counting INPUT events (before any filtering) per second:

  parse            FrameParser alone
  parse+filter     FrameParser dropping noise events unparsed (what the live link does)
  end to end       parse+filter+CallTracker.feed for every frame, records out

(The filter compares event names as bytes and looks for rescue patterns only inside VarSet
frames: that change, proposed from this benchmark, made the filtered paths ~30% faster.)
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.ami.frames import FrameParser
from gateway.calls.events import CallEnded
from gateway.calls.replay import lab_settings
from gateway.calls.tracker import CallTracker, event_filter

TRACES = Path(__file__).resolve().parent.parent / "tests" / "data" / "ami-traces"
_ID = re.compile(rb"\b(1795\d{6})\.(\d+)\b")
CHUNK = 64 * 1024


def build_stream(copies: int) -> tuple[bytes, int]:
    """One banner, then every capture ``copies`` times with shifted ids; returns the bytes
    and how many events they hold."""
    bodies = []
    for path in sorted(TRACES.glob("*.ami")):
        if path.stem.endswith(".sent") or "login" in path.stem:
            continue
        data = path.read_bytes()
        bodies.append(data[data.index(b"\r\n") + 2 :])  # drop the banner line
    parts = [b"Asterisk Call Manager/11.0.0\r\n"]
    for k in range(copies):
        shift = k * 1000  # captures span ~80 s: copies never share an id

        def renumber(m: re.Match[bytes], shift: int = shift) -> bytes:
            return b"%d.%s" % (int(m.group(1)) + shift, m.group(2))

        parts.extend(_ID.sub(renumber, body) for body in bodies)
    stream = b"".join(parts)
    events = sum(1 for f in FrameParser().feed(stream) if "Event" in f)
    return stream, events


def chunks(data: bytes) -> list[bytes]:
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


def run_parse(pieces: list[bytes]) -> int:
    parser = FrameParser()
    n = 0
    for piece in pieces:
        n += len(parser.feed(piece))
    return n


def run_filter(pieces: list[bytes]) -> int:
    """Frames that pass the filter."""
    parser = FrameParser(drop=event_filter(lab_settings()))
    n = 0
    for piece in pieces:
        n += len(parser.feed(piece))
    return n


def run_tracker(pieces: list[bytes]) -> int:
    settings = lab_settings()
    parser = FrameParser(drop=event_filter(settings))
    tracker = CallTracker(settings, "bench")
    feed = tracker.feed
    ended = 0
    for piece in pieces:
        for frame in parser.feed(piece):
            for event in feed(frame):
                if type(event) is CallEnded:
                    ended += 1
    assert tracker.open_calls == 0, tracker.open_calls
    return ended


def best_rate(fn, pieces: list[bytes], events: int, rounds: int) -> tuple[float, int]:
    best = float("inf")
    out = 0
    for _ in range(rounds):
        t = time.perf_counter()
        out = fn(pieces)
        best = min(best, time.perf_counter() - t)
    return events / best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="cProfile the end-to-end path")
    args = ap.parse_args()
    stream, events = build_stream(args.copies)
    pieces = chunks(stream)
    print(f"stream: {len(stream) / 1e6:.1f} MB, {events} events, {args.copies} copies")
    if args.profile:
        prof = cProfile.Profile()
        prof.runcall(run_tracker, pieces)
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
        return
    rate, frames = best_rate(run_parse, pieces, events, args.rounds)
    print(f"parse            {rate:>10,.0f} events/s  ({frames} frames)")
    rate, frames = best_rate(run_filter, pieces, events, args.rounds)
    print(f"parse+filter     {rate:>10,.0f} events/s  ({frames} frames reach the tracker)")
    rate, calls = best_rate(run_tracker, pieces, events, args.rounds)
    print(f"end to end       {rate:>10,.0f} events/s  ({calls} call records)")


if __name__ == "__main__":
    main()
