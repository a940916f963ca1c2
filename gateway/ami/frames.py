"""Sans-IO AMI framing: bytes in, header dicts out, and back.

An AMI frame is a block of ``Key: Value`` lines ended by a blank line (``\\r\\n\\r\\n``).
The parser never raises on input from the socket: garbage, truncated blocks, bad UTF-8,
header lines without a colon and oversized frames are counted and reported through
``FrameParser.errors`` and skipped, and every frame after them still comes out.

A frame is a plain ``dict[str, str]`` (the fastest thing CPython can build). A header that
repeats inside one frame (``Variable``, ``ChanVariable``) keeps every value, joined by
``"\\n"``: AMI values cannot contain a newline, so the join is lossless (see ``values``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

AmiFrame = dict[str, str]

BANNER_PREFIX = "Asterisk Call Manager/"
_END = b"\r\n\r\n"
DEFAULT_MAX_FRAME = 512 * 1024


@dataclass(slots=True)
class FrameError:
    """One piece of input the parser skipped, with why (for a log line and a counter)."""

    reason: str
    sample: bytes


class EventFilter:
    """Events to drop before parsing (the hot path's biggest saving: about half of a real
    stream is ``VarSet``/``Newexten`` noise). With ``keep=False`` the named events are
    dropped; with ``keep=True`` every event *not* named is. A dropped ``VarSet`` is rescued
    when its bytes contain one of ``rescue`` (e.g. ``b"Variable: MIXMONITOR_FILENAME\r\n"``).
    Responses and events that answer an action (they carry ``ActionID``) are never dropped.
    """

    __slots__ = ("_names", "events", "keep", "rescue")

    def __init__(
        self, events: frozenset[str], rescue: tuple[bytes, ...] = (), keep: bool = False
    ) -> None:
        self.events = events
        self.rescue = rescue
        self.keep = keep
        self._names = frozenset(e.encode() for e in events)

    def drops(self, buf: bytes, start: int, end: int) -> bool:
        if not buf.startswith(b"Event: ", start):
            return False
        eol = buf.find(b"\r\n", start, end)
        name = buf[start + 7 : end if eol < 0 else eol]
        if (name in self._names) is self.keep:
            return False
        # the whole frame is searched: CoreShowChannel names its ActionID second, but
        # QueueParams/QueueMember/QueueEntry name it last (Asterisk 22)
        if buf.find(b"\r\nActionID: ", start, end) >= 0:
            return False  # part of an action's answer: never drop
        if name == b"VarSet" and self.rescue:
            return not any(buf.find(r, start, end) >= 0 for r in self.rescue)
        return True


@dataclass(slots=True)
class FrameParser:
    """Incremental AMI parser: ``feed(chunk)`` returns the complete frames in that chunk.

    The result does not depend on where the byte stream is cut: partial frames wait in the
    buffer for the rest. A frame larger than ``max_frame`` is dropped whole, even while it
    is still arriving, so a hostile peer cannot grow memory without bound.
    """

    max_frame: int = DEFAULT_MAX_FRAME
    drop: EventFilter | None = None
    banner: str | None = None
    errors: list[FrameError] = field(default_factory=list)
    frames_parsed: int = 0
    frames_dropped: int = 0
    _buf: bytes = b""
    _skipping: bool = False
    _expect_banner: bool = True

    def feed(self, data: bytes) -> list[AmiFrame]:
        buf = self._buf + data if self._buf else data
        if self._expect_banner and buf:
            after_banner = self._take_banner(buf)
            if after_banner is None:
                return []
            buf = after_banner
        out: list[AmiFrame] = []
        start = 0
        find = buf.find
        while True:
            end = find(_END, start)
            if end < 0:
                break
            if self._skipping:
                # tail of an oversized frame: drop through its terminator, then resume
                self._skipping = False
            elif self.drop is not None and self.drop.drops(buf, start, end):
                self.frames_dropped += 1
            else:
                frame = self._parse_block(buf, start, end)
                if frame is not None:
                    out.append(frame)
            start = end + 4
        rest = buf[start:] if start else buf
        if len(rest) > self.max_frame:
            self._error(f"frame larger than {self.max_frame} bytes dropped", rest)
            self._skipping = True
            # keep the last 3 bytes: the terminator may straddle this chunk and the next
            rest = rest[-3:]
        self._buf = rest
        self.frames_parsed += len(out)
        return out

    def _take_banner(self, buf: bytes) -> bytes | None:
        """Strip the one-line banner (it has no blank line after it) from the stream head."""
        if BANNER_PREFIX.encode().startswith(buf[: len(BANNER_PREFIX)]) and len(buf) < len(
            BANNER_PREFIX
        ):
            self._buf = buf  # too short to tell yet
            return None
        self._expect_banner = False
        if not buf.startswith(BANNER_PREFIX.encode()):
            return buf
        eol = buf.find(b"\r\n")
        if eol < 0:
            self._buf = buf
            self._expect_banner = True
            return None
        self.banner = buf[:eol].decode("utf-8", "replace")
        return buf[eol + 2 :]

    def _parse_block(self, buf: bytes, start: int, end: int) -> AmiFrame | None:
        raw = buf[start:end]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            # keep the frame: a caller ID name in Latin-1 must not cost us the Hangup
            text = raw.decode("utf-8", "replace")
            self._error("invalid UTF-8 replaced", raw)
        frame: AmiFrame = {}
        bad = False
        for line in text.split("\r\n"):
            key, sep, value = line.partition(": ")
            if not sep:
                if line.endswith(":"):  # "Key:" with an empty value
                    key, value = line[:-1], ""
                elif not line.strip():
                    continue
                else:
                    bad = True
                    continue
            if key in frame:
                frame[key] = frame[key] + "\n" + value
            else:
                frame[key] = value
        if bad:
            self._error("header line without a colon skipped", raw)
        if "Event" in frame or "Response" in frame or "Action" in frame:
            return frame
        if frame or text.strip():
            self._error("block with no Event, Response or Action header skipped", raw)
        return None

    def _error(self, reason: str, raw: bytes) -> None:
        self.errors.append(FrameError(reason, raw[:120]))
        # the list is drained by the owner; cap it so an unattended parser stays small
        if len(self.errors) > 1000:
            del self.errors[:500]


def values(frame: Mapping[str, str], key: str) -> list[str]:
    """Every value of a header that may repeat (``Variable``, ``ChanVariable``)."""
    raw = frame.get(key)
    return [] if raw is None else raw.split("\n")


def encode_frame(headers: Mapping[str, str | Iterable[str]]) -> bytes:
    """Serialize one frame. Iterable values become repeated headers, in order.

    Values are sanitized of CR/LF so a hostile value can never start a header of its own.
    """
    # fast path, the simulated PBX's per-frame cost: every value a str (": ".join raises
    # on anything else) and no CR/LF in any key or value (then the joined text holds
    # exactly the line ends the join put there); otherwise the careful loop below
    try:
        text = "\r\n".join(map(": ".join, headers.items()))  # type: ignore[arg-type]
    except TypeError:
        pass
    else:
        n = len(headers)
        if n and text.count("\n") == n - 1 == text.count("\r"):
            return (text + "\r\n\r\n").encode("utf-8")
    parts: list[str] = []
    for key, value in headers.items():
        if isinstance(value, str):
            vals: Iterable[str] = value.split("\n") if "\n" in value else (value,)
        else:
            vals = value
        for v in vals:
            parts.append(f"{key}: {_clean(str(v))}\r\n")
    parts.append("\r\n")
    return "".join(parts).encode("utf-8")


def _clean(value: str) -> str:
    if "\r" in value or "\n" in value:
        return value.replace("\r", " ").replace("\n", " ")
    return value


def iter_capture(data: bytes, chunk: int | None = None) -> tuple[FrameParser, list[AmiFrame]]:
    """Parse a whole capture (as received from the socket), optionally in fixed chunks."""
    parser = FrameParser()
    if chunk is None:
        return parser, parser.feed(data)
    frames: list[AmiFrame] = []
    for i in range(0, len(data), chunk):
        frames.extend(parser.feed(data[i : i + chunk]))
    return parser, frames
