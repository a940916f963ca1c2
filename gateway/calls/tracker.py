"""The call tracker: a pure state machine that turns AMI events into calls and call records.

No I/O, no asyncio, no wall clock: frames go in through ``feed``, domain events come out.
"""

# Theory of operation
# ===================
#
# Rule 1: everything that decides what a call is lives in this file. The AMI link only parses
# frames and hands them over; the bus only carries what comes out.
#
# A *call* is every channel that shares one Asterisk Linkedid. Asterisk gives a new channel the
# Linkedid of the channel that caused it (the dialer, the queue caller, the transferee), so the
# customer's trunk leg, every agent leg that rang, the Local channel halves in between and the
# transfer targets all land in one call. Channels are indexed by Uniqueid (events name their
# channel by Uniqueid; ``Cdr`` has no Linkedid, so it is mapped through this index).
#
# What each channel *is* comes only from TrackingSettings:
#   - an agent phone: the channel name matches one of ``agent_channels`` (named group ``ext``),
#     or is ``Local/<ext>@<ctx>`` with ``ctx`` in ``agent_contexts``;
#   - the trunk leg of an inbound call: the call's first channel, when it sits in one of
#     ``inbound_contexts``. When that first channel is the ``;1`` half of a Local channel, the
#     ``;2`` half is the one running the dialplan, so the ``;2`` half is the trunk (an
#     Originate of ``Local/<did>@<inbound ctx>`` behaves like a call from outside);
#   - a click-to-call: a channel of the call carries ``call_id_variable`` (VarSet), which only
#     the gateway's own Originate sets. An Originate the gateway did not send is not one.
# A call whose first channel is an agent is outbound (it dials a non-agent, or the gateway
# originated it) or internal (it dials another agent).
#
# Ringing, answer and the outcome come from the Dial legs: DialBegin (and the queue's
# AgentCalled) opens a leg to a destination channel, DialEnd closes it with a DialStatus
# (ANSWER, NOANSWER, BUSY, CANCEL, ...). A leg to an agent phone makes that extension ring; the
# set of extensions ringing NOW is published (CallRinging) every time it changes, so a queue
# ringall reaches every agent before anyone answers, and a transfer target gets its pop-up
# too. The first ANSWER on an agent leg answers the call (CallAnswered). For an outbound call
# the answer is the far end's ANSWER. Queue events add the queue name, the queue wait as ring
# time, and the abandon.
#
# The call ends when its last channel hangs up (CallEnded with the final CallRecord); its
# state is released then, and its Linkedid is remembered for a while so that late events
# (a Cdr after the last Hangup, which is common) cannot resurrect it. Times come from each
# event's Timestamp header (or the receive time when the PBX sends none). Timestamps are not
# monotonic in stream order, so events are applied in arrival order and durations are
# clamped at zero.
#
# What the stream never says is handled explicitly:
#   - an event for a channel never announced by Newchannel creates it from the channel
#     headers every channel event carries (a capture that starts mid-call), and the call is
#     flagged as partial; a Hangup for an unknown channel is only counted;
#   - ``resync`` merges the CoreShowChannels snapshot read after a reconnect: calls still
#     there continue untouched, channels missing from it hung up while the link was down, and
#     calls left with no channel are closed as reconstructed (using the Cdr seen, if any);
#   - at most ``max_open_calls`` calls are kept: a stream that never sends Hangup costs the
#     oldest call, closed as reconstructed with a warning, never unbounded memory.
#
# The per-event path is a dict lookup on the event name; events the tracker does not read
# (about 80 % of a real stream) return at once, and the link can drop them before parsing with
# ``event_filter(settings)``. Regexes run once per channel name shape, never per event.

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from gateway.ami.frames import AmiFrame, EventFilter
from gateway.calls.events import (
    CallAnswered,
    CallCorrected,
    CallEnded,
    CallRinging,
    CallTransferred,
    DomainEvent,
)
from gateway.calls.model import CallRecord, Direction, Outcome, Transfer
from gateway.calls.settings import TrackingSettings

log = logging.getLogger("gateway.calls")

# Event names the tracker reads; every other event is ignored. VarSet is read too, but only
# for RESCUE_VARIABLES: a link that keeps just these events must rescue the VarSet frames
# naming those variables (``event_filter`` does both).
TRACKED_EVENTS: frozenset[str] = frozenset(
    {
        "Newchannel",
        "NewCallerid",
        "Rename",
        "Hangup",
        "DialBegin",
        "DialEnd",
        "QueueCallerJoin",
        "QueueCallerLeave",
        "QueueCallerAbandon",
        "AgentCalled",
        "AgentConnect",
        "BlindTransfer",
        "AttendedTransfer",
        "Cdr",
    }
)

RECORDING_VARIABLE = "MIXMONITOR_FILENAME"
# VarSet variables the tracker reads (with the default call id variable; ``event_filter``
# uses the configured one). The call id is also read as ``_NAME``/``__NAME`` (inherited).
RESCUE_VARIABLES: tuple[str, ...] = (RECORDING_VARIABLE, TrackingSettings().call_id_variable)

_MAX_VALUE = 4096  # longer VarSet values (recording path, call id) are ignored, not stored
_MAX_CDRS = 32  # per call; a looping dialplan must not grow one call without bound
_ENDED_MEMORY = 4096  # recently ended Linkedids remembered to drop late events
_EXT_CACHE_MAX = 8192
_AMEND_MEMORY = 256  # ended calls with estimated fields, kept for a late Cdr to correct
_AUDIO = (".wav", ".wav49", ".gsm", ".mp3", ".ogg", ".sln", ".g722", ".alaw", ".ulaw", ".opus")

_PARTIAL = "the start of this call was not seen: times are approximate"

# leg kinds
_AGENT = 0  # a leg to an agent phone
_SELF = 1  # an Originate ringing the agent who will make the call (click-to-call's first leg)
_FAR = 2  # an agent's call to a number outside


def event_filter(settings: TrackingSettings, also: Iterable[str] = ()) -> EventFilter:
    """A filter keeping only what the tracker reads (plus ``also``, e.g. the link's own
    events): every other event is dropped unparsed, VarSet frames naming a variable the
    tracker reads are rescued. A tracker fed only what passes gives the same calls."""
    rescue = (
        f"Variable: {RECORDING_VARIABLE}\r\n".encode(),
        # no "Variable: " prefix: also rescues the inherited _NAME / __NAME forms
        f"{settings.call_id_variable}\r\n".encode(),
    )
    return EventFilter(events=TRACKED_EVENTS | frozenset(also), rescue=rescue, keep=True)


@dataclass(slots=True, eq=False)
class _Channel:
    uid: str
    name: str
    call: _Call
    ext: str | None  # the agent extension when this channel is an agent phone
    half: int  # 1 or 2 for the halves of a Local channel, 0 otherwise
    context: str
    exten: str
    cid_num: str | None
    cid_name: str | None
    did: str | None  # the extension it first ran in an inbound context
    born: float = 0.0  # when it was created (estimated from Duration when joined by resync)
    gone: bool = False
    cause: str | None = None


@dataclass(slots=True, eq=False)
class _Leg:
    ext: str | None
    kind: int
    began: float
    src: str | None = None  # the Uniqueid of the dialing channel (None: an Originate)
    ringing: bool = True
    status: str | None = None


@dataclass(slots=True, eq=False)
class _Call:
    linkedid: str
    started_at: float
    last_at: float
    partial: bool = False
    channels: dict[str, _Channel] = field(default_factory=dict)
    live: int = 0
    legs: dict[str, _Leg] = field(default_factory=dict)
    last_ringing: tuple[str, ...] = ()
    ring_start: float | None = None  # the first phone (agent or far end) started ringing
    answer_ring_start: float | None = None  # the answering agent's own phone started ringing
    offer_end: float | None = None  # the last phone stopped ringing (None: one still rings)
    rang: dict[str, None] = field(default_factory=dict)  # ordered set
    answered: dict[str, None] = field(default_factory=dict)
    answered_at: float | None = None
    answered_by: str | None = None
    agent_answered: bool = False  # the agent picked up the gateway's originate
    answer_estimated: bool = False  # the answer happened out of sight (resync)
    dialed: str | None = None
    c2c_number: str | None = None  # the caller ID the gateway's Originate gave the agent leg
    c2c_context: bool = False
    queue: str | None = None
    in_queue: bool = False
    queue_joined: float | None = None
    queue_left: float | None = None
    queue_abandoned: bool = False
    transfers: list[Transfer] = field(default_factory=list)
    recordings: dict[str, None] = field(default_factory=dict)
    call_id: str | None = None
    # disposition, duration, billable seconds, whether it is an agent phone's Cdr
    cdrs: list[tuple[str, int, int, bool]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    last_cause: str | None = None
    ended_at: float | None = None
    reconstructed: str | None = None  # why, when the record was closed out of sight

    def warn(self, text: str) -> None:
        if text not in self.warnings and len(self.warnings) < 20:
            self.warnings.append(text)


@dataclass(slots=True)
class _View:
    """How a call reads right now: direction and the parties, derived from its channels."""

    direction: Direction
    anchor: _Channel | None  # the trunk leg (inbound) or the calling agent's channel
    caller: str | None
    caller_name: str | None
    did: str | None
    dialed: str | None


class CallTracker:
    """Feeds on AMI frames of one PBX and emits CallRinging / CallAnswered / CallTransferred /
    CallEnded. Pure: the caller supplies frames and, when frames carry no Timestamp, the time
    they were received."""

    def __init__(self, settings: TrackingSettings, pbx: str = "default") -> None:
        self.settings = settings
        self.pbx = pbx
        self._agent_rx = [re.compile(rx) for rx in settings.agent_channels]
        self._agent_contexts = frozenset(settings.agent_contexts)
        self._inbound = frozenset(settings.inbound_contexts)
        self._c2c_context = settings.click_to_call_context
        cid = settings.call_id_variable
        self._vars = frozenset({RECORDING_VARIABLE, cid, "_" + cid, "__" + cid})
        self._max_open = max(1, settings.max_open_calls)
        self._calls: dict[str, _Call] = {}
        self._chans: dict[str, _Channel] = {}
        self._ended: dict[str, None] = {}
        # calls ended with estimates: Linkedid -> (state, last record sent); Uniqueid -> Linkedid
        self._amendable: dict[str, tuple[_Call, dict[str, object]]] = {}
        self._amend_uids: dict[str, str] = {}
        self._ext_cache: dict[str, str | None] = {}
        self._spill: list[DomainEvent] = []  # calls evicted while handling one frame
        # ended calls no longer needed: a channel points at its call and the call at its
        # channels, so each is unlinked once the frame that ended it is fully handled, and
        # refcounting frees it (a cycle would wait for a full collection of the heap)
        self._released: list[_Call] = []
        self._now = 0.0
        # counters for metrics and replay warnings
        self.orphan_hangups = 0
        self.late_events = 0
        self.evicted = 0
        self.errors = 0
        self._dispatch: dict[str, Callable[[AmiFrame, float], list[DomainEvent] | None]] = {
            "Newchannel": self._on_newchannel,
            "NewCallerid": self._on_newcallerid,
            "Rename": self._on_rename,
            "Hangup": self._on_hangup,
            "DialBegin": self._on_dial_begin,
            "AgentCalled": self._on_dial_begin,
            "DialEnd": self._on_dial_end,
            "AgentConnect": self._on_agent_connect,
            "QueueCallerJoin": self._on_queue_join,
            "QueueCallerLeave": self._on_queue_leave,
            "QueueCallerAbandon": self._on_queue_abandon,
            "BlindTransfer": self._on_blind_transfer,
            "AttendedTransfer": self._on_attended_transfer,
            "VarSet": self._on_varset,
            "Cdr": self._on_cdr,
        }
        assert set(self._dispatch) == TRACKED_EVENTS | {"VarSet"}

    # ------------------------------------------------------------------ public API

    @property
    def open_calls(self) -> int:
        return len(self._calls)

    def feed(self, frame: AmiFrame, received_at: float | None = None) -> list[DomainEvent]:
        """Apply one AMI frame; returns the domain events it caused (often none)."""
        handler = self._dispatch.get(frame.get("Event"))  # type: ignore[arg-type]
        if handler is None:
            return []
        ts = frame.get("Timestamp")
        at = self._now if received_at is None else received_at
        if ts:
            try:
                stamped = float(ts)
            except ValueError:
                stamped = math.nan
            if math.isfinite(stamped):
                at = stamped
        self._now = at
        try:
            out = handler(frame, at)
        except Exception:  # a tracker bug must cost one frame, never the link
            self.errors += 1
            if self.errors <= 10:
                log.exception("call tracker failed on a %s event", frame.get("Event"))
            out = None
        if self._released:
            self._release()
        if self._spill:
            spilled, self._spill = self._spill, []
            return spilled + (out or [])
        return out if out is not None else []

    def resync(self, channels: Iterable[AmiFrame], at: float) -> list[DomainEvent]:
        """Merge a CoreShowChannels snapshot taken at ``at`` (after a (re)connect).

        Calls in the snapshot continue without duplication (new ones are joined in progress);
        channels missing from it hung up while the link was down; calls left with no channel
        are ended as reconstructed records."""
        out: list[DomainEvent] = []
        present: set[str] = set()
        touched: dict[str, _Call] = {}
        snapshot: list[tuple[_Channel, str]] = []
        bridged: dict[str, float] = {}  # Uniqueid: seconds in its bridge (Asterisk 23+)
        for f in channels:
            try:
                uid = f.get("Uniqueid")
                if not uid:
                    continue
                present.add(uid)
                if f.get("BridgedDuration"):
                    bridged[uid] = _hms(f["BridgedDuration"])
                ch = self._chans.get(uid)
                if ch is None:
                    lid = f.get("Linkedid") or f.get("LinkedID") or uid
                    known = lid in self._calls
                    self._ended.pop(lid, None)
                    created = at - _hms(f.get("Duration", ""))
                    ch = self._add_channel(
                        uid,
                        lid,
                        f.get("Channel", ""),
                        f.get("Context", ""),
                        f.get("Extension") or f.get("Exten", ""),
                        f.get("CallerIDNum"),
                        f.get("CallerIDName"),
                        created,
                        announced=False,
                    )
                    if ch is None:
                        continue
                    if not known:
                        ch.call.warn("joined in progress from the channel list read on connect")
                touched[ch.call.linkedid] = ch.call
                snapshot.append((ch, f.get("ChannelStateDesc", "")))
                if f.get("Application") == "Queue" and ch.call.answered_at is None:
                    # waiting in a queue (its QueueCallerJoin may have been lost)
                    queue = f.get("ApplicationData", "").split(",", 1)[0]
                    if queue and ch.call.queue is None:
                        ch.call.queue = queue
                        ch.call.in_queue = True
                        if ch.call.queue_joined is None:
                            ch.call.queue_joined = at
            except Exception:
                self.errors += 1
                log.exception("call tracker could not merge a snapshot channel")
        # what the snapshot says about calls we did not see ring or answer
        for ch, state in snapshot:
            call = ch.call
            if ch.gone:
                continue
            if ch.ext is None:
                # the far end of an agent's outbound call is up: that call was answered
                if state == "Up" and call.answered_at is None:
                    view = self._view(call)
                    if view.direction is not Direction.INBOUND and ch.uid != call.linkedid:
                        call.warn("answered while the link was down: answer time estimated")
                        self._answer(call, view.caller, at, out)
                continue
            if state == "Ringing" and call.answered_at is None and ch.uid not in call.legs:
                kind = _SELF if ch.uid == call.linkedid else _AGENT
                call.legs[ch.uid] = _Leg(ch.ext, kind, ch.born)
                call.rang.setdefault(ch.ext, None)
                if call.ring_start is None:
                    call.ring_start = ch.born
            elif state == "Up" and call.answered_at is None:
                view = self._view(call)
                if view.direction is Direction.INBOUND or ch.ext != view.caller:
                    call.warn("answered while the link was down: answer time estimated")
                    call.rang.setdefault(ch.ext, None)
                    # an agent leg is born when it starts ringing; its bridge time (when the
                    # PBX says it) dates the answer; a Cdr at the end can still correct both
                    if call.ring_start is None:
                        call.ring_start = ch.born
                    call.answer_estimated = True
                    self._answer(call, ch.ext, at - bridged.get(ch.uid, 0.0), out)
                else:  # the calling agent picked up the gateway's Originate
                    call.agent_answered = True
        for call in touched.values():
            out.extend(self._ring_update(call, at))
        # channels and calls that ended while the link was down
        for call in list(self._calls.values()):
            missing = [c for c in call.channels.values() if not c.gone and c.uid not in present]
            if not missing:
                continue
            if len(missing) >= call.live:
                out.append(
                    self._end(call, at, reconstructed="ended while the link to the PBX was down")
                )
                continue
            for c in missing:
                c.gone = True
                call.live -= 1
                leg = call.legs.get(c.uid)
                if leg is not None:
                    leg.ringing = False
            out.extend(self._ring_update(call, at))
        if self._spill:  # calls evicted to make room for the snapshot's new ones
            out[:0] = self._spill
            self._spill = []
        self._release()
        return out

    def close_all(self, at: float | None = None, reason: str = "stream ended") -> list[CallEnded]:
        """End every open call as reconstructed (a capture cut short, a shutdown)."""
        when = self._now if at is None else at
        ended = [self._end(c, when, reconstructed=reason) for c in list(self._calls.values())]
        self._release()
        return ended

    def _release(self) -> None:
        """Unlink the calls ended for good (not kept for a late Cdr) from their channels."""
        for call in self._released:
            call.channels.clear()
        self._released.clear()

    # ------------------------------------------------------------------ channels and calls

    def _ext_of(self, name: str) -> str | None:
        """The agent extension a channel name (or queue Interface) stands for, if any."""
        # cache by the name without its per-channel suffix ("PJSIP/101-0000000b" and
        # "PJSIP/101-0000000c" are the same phone); the NUL keeps "PJSIP/101" itself apart
        key = name
        if name.startswith("Local/"):
            trimmed = name[:-2] if name[-2:-1] == ";" else name
            base, dash, _ = trimmed.rpartition("-")
            if dash and "@" in base:
                key = base + "\x00"
        else:
            base, dash, _ = name.rpartition("-")
            if dash:
                key = base + "\x00"
        try:
            return self._ext_cache[key]
        except KeyError:
            pass
        ext: str | None = None
        for rx in self._agent_rx:
            m = rx.match(name)
            if m is not None:
                ext = m.groupdict().get("ext")
                break
        if ext is None and key.startswith("Local/") and self._agent_contexts:
            exten, at_sign, ctx = key.rstrip("\x00")[6:].partition("@")
            ctx = ctx.split("/", 1)[0]
            if at_sign and exten and ctx in self._agent_contexts:
                ext = exten
        if len(self._ext_cache) >= _EXT_CACHE_MAX:
            self._ext_cache.clear()
        self._ext_cache[key] = ext
        return ext

    def _member_ext(self, interface: str) -> str | None:
        """The extension of a queue member's Interface: ``PJSIP/102`` is the phone whose
        channels are ``PJSIP/102-<n>``, ``Local/102@agents/n`` a Local agent."""
        ext = self._ext_of(interface)
        if ext is None and interface and not interface.startswith("Local/"):
            ext = self._ext_of(interface + "-00000000")
        return ext

    def _add_channel(
        self,
        uid: str,
        lid: str,
        name: str,
        context: str,
        exten: str,
        cid_num: str | None,
        cid_name: str | None,
        at: float,
        announced: bool,
    ) -> _Channel | None:
        call = self._calls.get(lid)
        if call is None:
            if lid in self._ended:
                self.late_events += 1
                return None
            call = self._open_call(lid, at)
            call.partial = not announced or uid != lid
            if call.partial:
                call.warn(_PARTIAL)
        elif call.partial and at < call.started_at:
            call.started_at = at
        half = 0
        if name.startswith("Local/") and name[-2:] in (";1", ";2"):
            half = 1 if name[-1] == "1" else 2
        did = None
        if half != 1 and context in self._inbound and exten not in ("", "s"):
            did = exten
        ch = _Channel(
            uid,
            name,
            call,
            self._ext_of(name) if name else None,
            half,
            context,
            exten,
            _cid(cid_num),
            _cid(cid_name),
            did,
            at,
        )
        call.channels[uid] = ch
        call.live += 1
        call.last_at = at
        self._chans[uid] = ch
        return ch

    def _open_call(self, lid: str, at: float) -> _Call:
        while len(self._calls) >= self._max_open:
            oldest = next(iter(self._calls.values()))
            self.evicted += 1
            self._spill.append(
                self._end(
                    oldest,
                    oldest.last_at,
                    reconstructed=f"closed without a Hangup: more than {self._max_open} "
                    "calls were open (tracking.max_open_calls)",
                )
            )
        call = _Call(lid, at, at)
        self._calls[lid] = call
        return call

    def _chan_from(self, f: AmiFrame, at: float, prefix: str) -> _Channel | None:
        """The channel an event names (``prefix`` ``""`` or ``"Dest"``), created from the
        event's own channel headers when its Newchannel was never seen."""
        uid = f.get(prefix + "Uniqueid")
        if not uid:
            return None
        ch = self._chans.get(uid)
        if ch is not None:
            return ch
        lid = f.get(prefix + "Linkedid") or f.get(prefix + "LinkedID") or uid
        return self._add_channel(
            uid,
            lid,
            f.get(prefix + "Channel", ""),
            f.get(prefix + "Context", ""),
            f.get(prefix + "Exten", ""),
            f.get(prefix + "CallerIDNum"),
            f.get(prefix + "CallerIDName"),
            at,
            announced=False,
        )

    def _move(self, ch: _Channel, call: _Call, at: float) -> list[DomainEvent]:
        """A channel joined another call (its Linkedid changed, an attended transfer)."""
        old = ch.call
        if old is call:
            return []
        del old.channels[ch.uid]
        call.channels[ch.uid] = ch
        ch.call = call
        if not ch.gone:
            old.live -= 1
            call.live += 1
            if old.live <= 0:
                return [self._end(old, at)]
        return []

    def _sibling(self, call: _Call, ch: _Channel) -> _Channel | None:
        want = ch.name[:-1] + ("2" if ch.half == 1 else "1")
        for other in call.channels.values():
            if other.name == want:
                return other
        return None

    # ------------------------------------------------------------------ event handlers

    def _on_newchannel(self, f: AmiFrame, at: float) -> list[DomainEvent] | None:
        uid = f.get("Uniqueid")
        if not uid:
            return None
        ch = self._chans.get(uid)
        if ch is not None:  # an earlier event already created it: only fill in the blanks
            if ch.cid_num is None:
                ch.cid_num = _cid(f.get("CallerIDNum"))
            call = ch.call
            if uid == call.linkedid and call.partial:  # the start came late, not missing
                call.partial = False
                call.started_at = at
                if _PARTIAL in call.warnings:
                    call.warnings.remove(_PARTIAL)
            return None
        self._add_channel(
            uid,
            f.get("Linkedid") or uid,
            f.get("Channel", ""),
            f.get("Context", ""),
            f.get("Exten", ""),
            f.get("CallerIDNum"),
            f.get("CallerIDName"),
            at,
            announced=True,
        )
        return None

    def _on_newcallerid(self, f: AmiFrame, at: float) -> list[DomainEvent] | None:
        ch = self._chans.get(f.get("Uniqueid", ""))
        if ch is not None:
            num = _cid(f.get("CallerIDNum"))
            if num is not None:
                ch.cid_num = num
                call = ch.call
                # the gateway's Originate shows the customer's number on the agent's phone:
                # the number a click-to-call dials, known even if it never does
                first = call.c2c_number is None and ch.uid == call.linkedid
                if first and ch.ext is not None and num != ch.ext:
                    call.c2c_number = num
            name = _cid(f.get("CallerIDName"))
            if name is not None:
                ch.cid_name = name
        return None

    def _on_rename(self, f: AmiFrame, at: float) -> list[DomainEvent] | None:
        ch = self._chans.get(f.get("Uniqueid", ""))
        new = f.get("Newname")
        if ch is not None and new:
            ch.name = new
            if ch.ext is None:
                ch.ext = self._ext_of(new)
        return None

    def _on_hangup(self, f: AmiFrame, at: float) -> list[DomainEvent] | None:
        ch = self._chans.get(f.get("Uniqueid", ""))
        if ch is None:
            self.orphan_hangups += 1
            return None
        if ch.gone:
            return None
        call = ch.call
        ch.gone = True
        ch.cause = f.get("Cause") or None
        call.last_cause = ch.cause
        call.live -= 1
        call.last_at = at
        if call.live <= 0:
            return [self._end(call, at)]
        leg = call.legs.get(ch.uid)
        if leg is not None and leg.ringing:  # hung up without a DialEnd
            leg.ringing = False
            return self._ring_update(call, at)
        return None

    def _on_dial_begin(self, f: AmiFrame, at: float) -> list[DomainEvent] | None:
        call = self._open_leg(f, at)
        return None if call is None else self._ring_update(call, at)

    def _open_leg(self, f: AmiFrame, at: float) -> _Call | None:
        """Start the dial leg a DialBegin / AgentCalled (or an orphan DialEnd) describes;
        returns its call, or None when the leg means nothing to the call (a duplicate, the
        Originate of a non-agent channel)."""
        src = self._chan_from(f, at, "") if "Uniqueid" in f else None
        dest = self._chan_from(f, at, "Dest")
        if dest is None:
            return None
        call = dest.call
        if src is not None and src.call is not call:  # the dialer's call wins
            self._spill.extend(self._move(dest, src.call, at))
            call = src.call
        if dest.uid in call.legs:  # AgentCalled then DialBegin for the same member
            return None
        ext = dest.ext
        if ext is None and f.get("Event") == "AgentCalled":
            ext = self._member_ext(f.get("Interface", ""))
        if src is None:  # an Originate: its first channel is dialed with no caller
            if ext is None:
                return None
            kind = _SELF if dest.uid == call.linkedid else _AGENT
        elif ext is not None:
            kind = _AGENT
            if src.ext is not None and call.dialed is None:
                call.dialed = _dialed(f)
        elif src.ext is not None:
            kind = _FAR
            if call.dialed is None:
                call.dialed = _dialed(f)
            if f.get("Context") == self._c2c_context:
                call.c2c_context = True
        else:
            origin = call.channels.get(call.linkedid)
            if origin is not None and origin.ext is not None:
                return None  # an inner hop of an agent's own call (a Local channel's Dial)
            ext = _guess_ext(dest.name) or _guess_ext(f.get("Interface", ""))
            if ext is None:
                return None
            kind = _AGENT
            call.warn(
                f"{dest.name!r} is not a configured agent phone; guessed extension {ext} "
                "(see tracking.agent_channels / tracking.agent_contexts)"
            )
        if src is not None and src.did is None and src.half != 1:
            context = f.get("Context", "")
            exten = f.get("Exten", "")
            if context in self._inbound and exten not in ("", "s"):
                src.did = exten
            if src.cid_num is None:
                src.cid_num = _cid(f.get("CallerIDNum"))
        call.legs[dest.uid] = _Leg(ext, kind, at, src.uid if src is not None else None)
        call.last_at = at
        if call.ring_start is None:
            call.ring_start = at
        call.offer_end = None
        if ext is not None and ext not in call.rang:
            call.rang[ext] = None
        return call

    def _on_dial_end(self, f: AmiFrame, at: float) -> list[DomainEvent] | None:
        dest = self._chans.get(f.get("DestUniqueid", ""))
        if dest is None:
            return None
        call = dest.call
        leg = call.legs.get(dest.uid)
        if leg is None:  # its DialBegin was lost (link down): the DialEnd says the same
            opened = self._open_leg(f, at)
            if opened is None:
                return None
            call = opened
            leg = call.legs[dest.uid]
        if leg.status is not None:
            return None
        status = f.get("DialStatus", "") or "UNKNOWN"
        leg.status = status
        leg.ringing = False
        call.last_at = at
        out: list[DomainEvent] = []
        if status == "ANSWER":
            self._leg_answered(call, leg, at, out)
        out.extend(self._ring_update(call, at))
        return out

    def _leg_answered(self, call: _Call, leg: _Leg, at: float, out: list[DomainEvent]) -> None:
        if leg.kind == _SELF:
            call.agent_answered = True
        elif leg.kind == _FAR:
            origin = call.channels.get(call.linkedid)
            self._answer(call, origin.ext if origin is not None else None, at, out)
        else:
            if call.answered_at is None:
                call.answer_ring_start = leg.began
            self._answer(call, leg.ext, at, out)
        # the answerer stops ringing without a CallRinging of its own: CallAnswered says it
        call.last_ringing = self._ringing(call)

    def _on_agent_connect(self, f: AmiFrame, at: float) -> list[DomainEvent] | None:
        dest = self._chans.get(f.get("DestUniqueid", ""))
        call = dest.call if dest is not None else None
        if call is None:
            ch = self._chans.get(f.get("Uniqueid", ""))
            if ch is None:
                return None
            call = ch.call
        out: list[DomainEvent] = []
        leg = call.legs.get(dest.uid) if dest is not None else None
        if leg is not None:
            if leg.status is None:
                leg.status = "ANSWER"
                leg.ringing = False
                self._leg_answered(call, leg, at, out)
                out.extend(self._ring_update(call, at))
            return out
        ext = (dest.ext if dest is not None else None) or self._member_ext(f.get("Interface", ""))
        if ext is not None:
            call.rang.setdefault(ext, None)
            self._answer(call, ext, at, out)
        return out

    def _on_queue_join(self, f: AmiFrame, at: float) -> list[DomainEvent] | None:
        ch = self._chan_from(f, at, "")
        if ch is None:
            return None
        call = ch.call
        call.queue = f.get("Queue") or call.queue
        call.in_queue = True
        if call.queue_joined is None:
            call.queue_joined = at
        return None

    def _on_queue_leave(self, f: AmiFrame, at: float) -> list[DomainEvent] | None:
        ch = self._chans.get(f.get("Uniqueid", ""))
        if ch is not None:
            ch.call.in_queue = False
            if ch.call.queue_left is None:
                ch.call.queue_left = at
        return None

    def _on_queue_abandon(self, f: AmiFrame, at: float) -> list[DomainEvent] | None:
        ch = self._chans.get(f.get("Uniqueid", ""))
        if ch is not None:
            ch.call.queue_abandoned = True
            ch.call.in_queue = False
            if ch.call.queue_left is None:
                ch.call.queue_left = at
        return None

    def _on_blind_transfer(self, f: AmiFrame, at: float) -> list[DomainEvent] | None:
        if f.get("Result", "Success") != "Success":
            return None
        call = self._call_of(f, ("Transferee", "Transferer"))
        if call is None:
            return None
        transfer = Transfer(
            "blind", self._ext_named(f, "Transferer"), f.get("Extension") or None, at
        )
        call.transfers.append(transfer)
        return [CallTransferred(self.pbx, call.linkedid, transfer, at)]

    def _on_attended_transfer(self, f: AmiFrame, at: float) -> list[DomainEvent] | None:
        if f.get("Result", "Success") != "Success":
            return None
        call = self._call_of(f, ("OrigTransferer", "Transferee"))
        if call is None:
            return None
        target = self._chans.get(f.get("TransferTargetUniqueid", ""))
        to_ext = self._target_ext(f, target)
        transfer = Transfer("attended", self._ext_named(f, "OrigTransferer"), to_ext, at)
        call.transfers.append(transfer)
        out: list[DomainEvent] = [CallTransferred(self.pbx, call.linkedid, transfer, at)]
        # the target answered the consultation call and now talks to the transferee
        if target is not None and target.call is not call:
            sibling = self._sibling(target.call, target) if target.half else None
            out.extend(self._move(target, call, at))
            if sibling is not None:
                out.extend(self._move(sibling, call, at))
        if to_ext is not None:
            call.rang.setdefault(to_ext, None)
            self._answer(call, to_ext, at, out)
        return out

    def _on_varset(self, f: AmiFrame, at: float) -> list[DomainEvent] | None:
        var = f.get("Variable")
        if var not in self._vars:
            return None
        ch = self._chans.get(f.get("Uniqueid", ""))
        if ch is None:
            return None
        value = f.get("Value", "")
        if not value:
            return None
        if len(value) > _MAX_VALUE:
            ch.call.warn(f"ignored a {var} value of {len(value)} characters")
            return None
        if var == RECORDING_VARIABLE:
            ch.call.recordings[value] = None
        else:
            ch.call.call_id = value
        return None

    def _on_cdr(self, f: AmiFrame, at: float) -> list[DomainEvent] | None:
        uid = f.get("UniqueID") or f.get("Uniqueid", "")
        ch = self._chans.get(uid)
        if ch is None:
            return self._amend(uid, f)  # the Cdr often follows the last Hangup
        self._take_cdr(ch.call, f, ch.ext is not None)
        return None

    def _take_cdr(self, call: _Call, f: AmiFrame, agent: bool) -> None:
        user = f.get("UserField", "")
        if user and len(user) <= _MAX_VALUE:
            for part in user.split(";"):
                part = part.strip()
                if part.lower().endswith(_AUDIO):
                    call.recordings[part] = None
        if len(call.cdrs) < _MAX_CDRS:
            call.cdrs.append(
                (
                    f.get("Disposition", ""),
                    _int(f.get("Duration")),
                    _int(f.get("BillableSeconds")),
                    agent,
                )
            )

    # ------------------------------------------------------------------ helpers

    def _call_of(self, f: AmiFrame, roles: tuple[str, ...]) -> _Call | None:
        for role in roles:
            ch = self._chans.get(f.get(role + "Uniqueid", ""))
            if ch is not None:
                return ch.call
            call = self._calls.get(f.get(role + "Linkedid", ""))
            if call is not None:
                return call
        return None

    def _target_ext(self, f: AmiFrame, target: _Channel | None) -> str | None:
        """The agent who took the consultation call of an attended transfer.

        The target channel is often not the phone: an AMI Atxfer dials through
        ``Local/<ext>@<ctx>`` (its ;1 half is the target) and that Local channel's ;2 half
        dials the agent's phone, so the agent is the one whose leg from it answered."""
        direct = self._ext_named(f, "TransferTarget")
        if direct is not None or target is None:
            return direct
        hops = {target.uid}
        if target.half:
            sibling = self._sibling(target.call, target)
            if sibling is not None:
                if sibling.ext is not None:
                    return sibling.ext
                hops.add(sibling.uid)
        answered = [
            leg.ext
            for leg in target.call.legs.values()
            if leg.src in hops and leg.status == "ANSWER" and leg.ext is not None
        ]
        if answered:
            return answered[-1]
        return _guess_ext(target.name)

    def _ext_named(self, f: AmiFrame, role: str) -> str | None:
        ch = self._chans.get(f.get(role + "Uniqueid", ""))
        if ch is not None and ch.ext is not None:
            return ch.ext
        name = f.get(role + "Channel", "")
        return self._ext_of(name) if name else None

    def _answer(self, call: _Call, ext: str | None, at: float, out: list[DomainEvent]) -> None:
        key = ext or ""
        if key in call.answered:
            if call.answer_estimated and ext == call.answered_by:
                call.answered_at = at  # the answer itself arrived after the estimate
                call.answer_estimated = False
            return
        call.answered[key] = None
        if call.answered_at is None:
            call.answered_at = at
            call.answered_by = ext
        view = self._view(call)
        out.append(
            CallAnswered(
                self.pbx,
                call.linkedid,
                ext,
                view.direction,
                view.caller,
                view.did,
                view.dialed,
                call.queue,
                call.call_id is not None,
                call.call_id,
                at,
            )
        )

    def _ringing(self, call: _Call) -> tuple[str, ...]:
        exts: dict[str, None] = {}
        for leg in call.legs.values():
            if leg.ringing and leg.ext is not None:
                exts[leg.ext] = None
        return tuple(exts)

    def _offers_changed(self, call: _Call, at: float) -> None:
        if any(leg.ringing for leg in call.legs.values()):
            call.offer_end = None
        elif call.offer_end is None:
            call.offer_end = at

    def _ring_update(self, call: _Call, at: float) -> list[DomainEvent]:
        self._offers_changed(call, at)
        ringing = self._ringing(call)
        if ringing == call.last_ringing:
            return []
        call.last_ringing = ringing
        view = self._view(call)
        return [
            CallRinging(
                self.pbx,
                call.linkedid,
                ringing,
                view.direction,
                view.caller,
                view.caller_name,
                view.did,
                view.dialed,
                call.queue,
                call.call_id is not None,
                call.call_id,
                at,
            )
        ]

    def _view(self, call: _Call) -> _View:
        origin = call.channels.get(call.linkedid)
        if origin is None:
            origin = next(iter(call.channels.values()), None)
        if origin is None:
            return _View(Direction.INBOUND, None, None, None, None, None)
        if origin.ext is not None:
            kinds = {leg.kind for leg in call.legs.values()}
            if call.call_id is not None or call.c2c_context or _FAR in kinds:
                direction = Direction.OUTBOUND
            elif _AGENT in kinds:
                direction = Direction.INTERNAL
            elif _SELF in kinds:
                direction = Direction.OUTBOUND
            else:
                direction = Direction.INTERNAL
            dialed = call.dialed
            if dialed is None and call.call_id is not None:
                dialed = call.c2c_number  # a click-to-call that never reached the customer
            return _View(direction, origin, origin.ext, origin.cid_name, None, dialed)
        trunk = origin
        if origin.half == 1:
            sibling = self._sibling(call, origin)
            if sibling is not None:
                trunk = sibling
        caller = trunk.cid_num or origin.cid_num
        name = trunk.cid_name or origin.cid_name
        return _View(Direction.INBOUND, trunk, caller, name, trunk.did, None)

    def _outcome(self, call: _Call, view: _View) -> Outcome:
        if call.answered_at is not None:
            return Outcome.TRANSFERRED if call.transfers else Outcome.ANSWERED
        legs = call.legs.values()
        if view.direction is Direction.OUTBOUND:
            if any(leg.kind == _SELF for leg in legs) and not call.agent_answered:
                return Outcome.FAILED  # the agent's own phone never picked up
            far = {leg.status for leg in legs if leg.kind == _FAR}
            if far & {"NOANSWER", "CANCEL"} or any(leg.ringing for leg in legs):
                return Outcome.NOANSWER
            if "BUSY" in far:
                return Outcome.BUSY
            if _disposition(call) is not None:
                return _disposition(call)  # type: ignore[return-value]
            return Outcome.FAILED
        if call.queue is not None:
            if call.queue_abandoned or call.in_queue:
                return Outcome.ABANDONED
            if not any(leg.kind == _AGENT for leg in legs) and not call.rang:
                return Outcome.ABANDONED
            return Outcome.NOANSWER
        # a leg that vanished without a DialEnd says nothing about the outcome
        statuses = {leg.status for leg in legs if leg.kind != _FAR and leg.status is not None}
        if "CANCEL" in statuses or any(leg.ringing for leg in legs):
            return Outcome.ABANDONED  # the caller hung up while it rang
        if "NOANSWER" in statuses:
            return Outcome.NOANSWER
        if "BUSY" in statuses:
            return Outcome.BUSY
        if statuses:
            return Outcome.FAILED
        return _disposition(call) or Outcome.NOANSWER

    def _end(self, call: _Call, at: float, reconstructed: str | None = None) -> CallEnded:
        """Release a call's state and build its final record."""
        for uid in call.channels:
            if self._chans.get(uid) is not None and self._chans[uid].call is call:
                del self._chans[uid]
        self._calls.pop(call.linkedid, None)
        if len(self._ended) >= _ENDED_MEMORY:
            for key in list(self._ended)[: _ENDED_MEMORY // 2]:
                del self._ended[key]
        self._ended[call.linkedid] = None
        call.ended_at = max(at, call.started_at)
        call.reconstructed = reconstructed
        if reconstructed is not None:
            call.warn(reconstructed)
        record = self._record(call)
        if record.reconstructed:
            # part of it happened out of sight: a Cdr still to come may correct the record
            while len(self._amendable) >= _AMEND_MEMORY:
                old = self._amendable.pop(next(iter(self._amendable)))
                for uid in old[0].channels:
                    self._amend_uids.pop(uid, None)
                self._released.append(old[0])
            self._amendable[call.linkedid] = (call, record.to_json())
            for uid in call.channels:
                self._amend_uids[uid] = call.linkedid
        else:
            self._released.append(call)
        return CallEnded(record)

    def _record(self, call: _Call) -> CallRecord:
        """The record of an ended call from what is known now (rebuilt when a late Cdr adds
        evidence, so it changes no state but warnings)."""
        view = self._view(call)
        started = call.started_at
        ended = call.ended_at if call.ended_at is not None else started
        answered = call.answered_at
        if call.cdrs and (call.reconstructed is not None or call.partial or call.answer_estimated):
            # the Cdr is the PBX's own account of the call, better than our estimates
            longest = max(dur for _, dur, _, _ in call.cdrs)
            # an agent phone's Cdr bills the talk; the trunk's may include IVR and queue time
            answers = [(agent, bill) for disp, _, bill, agent in call.cdrs if disp == "ANSWERED"]
            billed = max(answers, default=(False, 0))[1]
            if call.reconstructed is not None and longest and started + longest < ended:
                ended = started + longest  # it ended while the link was down
            elif call.partial and longest and ended - longest < started:
                started = ended - longest  # its start was not seen
            if billed and (answered is None or call.answer_estimated):
                answered = max(started, ended - billed)
        # an agent phone's own Cdr: it existed for Duration, of which it talked BillableSeconds
        agent_cdr = max(
            ((bill, dur) for disp, dur, bill, agent in call.cdrs if agent and disp == "ANSWERED"),
            default=None,
        )
        ring_unseen = call.ring_start is None or (
            answered is not None and call.ring_start >= answered  # dated at the resync
        )
        if ring_unseen and agent_cdr is not None:
            ring = float(max(0, agent_cdr[1] - agent_cdr[0]))
        elif call.ring_start is None:
            ring = 0.0
        elif answered is not None:
            first = call.answer_ring_start
            ring = answered - (call.ring_start if first is None else first)
        elif call.offer_end is not None:
            ring = call.offer_end - call.ring_start
        else:
            ring = ended - call.ring_start
        queue_wait: float | None = None
        if call.queue_joined is not None:
            wait_end = call.queue_left
            if answered is not None and (wait_end is None or answered < wait_end):
                wait_end = answered
            if wait_end is None:
                wait_end = ended
            queue_wait = round(max(0.0, wait_end - call.queue_joined), 3)
        talk = max(0.0, ended - answered) if answered is not None else 0.0
        outcome = self._outcome(call, view)
        if view.direction is Direction.INBOUND:
            trunk = view.anchor
            if trunk is not None and trunk.did is None and trunk.ext is None:
                call.warn(
                    f"call starts on {trunk.name!r} in context {trunk.context!r}, which is not "
                    "in tracking.inbound_contexts; treated as inbound"
                )
            if not call.rang and call.queue is None:
                call.warn(
                    "no agent phone rang (if one did, check tracking.agent_channels and "
                    "tracking.agent_contexts)"
                )
        anchor = view.anchor
        cause = anchor.cause if anchor is not None and anchor.cause else call.last_cause
        return CallRecord(
            linkedid=call.linkedid,
            pbx=self.pbx,
            direction=view.direction,
            outcome=outcome,
            started_at=started,
            ended_at=ended,
            click_to_call=call.call_id is not None,
            call_id=call.call_id,
            caller=view.caller,
            caller_name=view.caller_name,
            did=view.did,
            dialed=view.dialed,
            queue=call.queue,
            agents_rang=list(call.rang),
            agents_answered=[e for e in call.answered if e],
            answered_by=call.answered_by,
            transfers=list(call.transfers),
            answered_at=answered,
            ring_seconds=round(max(0.0, ring), 3),
            queue_wait_seconds=queue_wait,
            talk_seconds=round(talk, 3),
            total_seconds=round(ended - started, 3),
            hangup_cause=cause,
            recordings=list(call.recordings),
            reconstructed=call.reconstructed is not None or call.partial,
            warnings=list(call.warnings),
        )

    def _amend(self, uid: str, f: AmiFrame) -> list[DomainEvent] | None:
        """A Cdr for a call already ended with estimates: correct its record if it changed."""
        lid = self._amend_uids.get(uid)
        if lid is None:
            return None
        call, before = self._amendable[lid]
        ch = call.channels.get(uid)
        self._take_cdr(call, f, ch is not None and ch.ext is not None)
        record = self._record(call)
        after = record.to_json()
        if after == before:
            return None
        self._amendable[lid] = (call, after)
        return [CallCorrected(record)]


def _cid(value: str | None) -> str | None:
    if not value or value == "<unknown>":
        return None
    return value


def _dialed(f: AmiFrame) -> str | None:
    """What the calling channel dialed: its own extension while it runs Dial()."""
    exten = f.get("Exten", "")
    if exten and exten != "s":
        return exten
    dest = f.get("DestExten", "")
    if dest and dest != "s":
        return dest
    return f.get("DialString") or None


def _guess_ext(name: str) -> str | None:
    """Best effort for a dialplan the settings do not describe: ``Local/101@x``, ``SIP/101-1``."""
    if not name:
        return None
    _, slash, rest = name.partition("/")
    if not slash:
        return None
    for stop in "@-/;":
        rest = rest.split(stop, 1)[0]
    return rest if rest.isdigit() and 2 <= len(rest) <= 6 else None


def _disposition(call: _Call) -> Outcome | None:
    for disp, _, _, _ in reversed(call.cdrs):
        if disp == "BUSY":
            return Outcome.BUSY
        if disp == "NO ANSWER":
            return Outcome.NOANSWER
        if disp == "FAILED":
            return Outcome.FAILED
    return None


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def _hms(value: str) -> float:
    """``Duration`` of CoreShowChannel: ``HH:MM:SS`` (or plain seconds)."""
    try:
        parts = [int(p) for p in value.split(":")]
    except ValueError:
        return 0.0
    seconds = 0
    for p in parts:
        seconds = seconds * 60 + p
    return float(max(0, seconds))
