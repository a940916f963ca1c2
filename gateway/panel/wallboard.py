"""The supervisors' wallboard: queue figures and agent states computed from the queue events.

Pure (no I/O, no asyncio, no clock): :meth:`Wallboard.feed` takes one AMI frame and the time it
happened, :meth:`Wallboard.resync` the ``QueueParams``/``QueueMember``/``QueueEntry`` frames read
at every (re)connect, and :meth:`Wallboard.queues` / :meth:`Wallboard.members` answer what the
wall shows at a given moment. ``gateway/panel/wallboard_feed.py`` wires it to the bus.

Figures per queue, "today" being the calendar day in ``panel.timezone``:

* ``waiting`` and ``longest_wait`` (seconds) from QueueCallerJoin / QueueCallerLeave /
  QueueCallerAbandon (and QueueEntry's ``Wait`` after a reconnect);
* ``answered`` (AgentConnect) and ``abandoned`` (QueueCallerAbandon) today; an abandon after
  less than ``short_abandon_seconds`` is counted apart (``abandoned_short``): the caller hung up
  before anyone could have answered, so it is left out of the service level;
* ``service_level``: % of the calls that reached an answer or a real abandon which were answered
  within ``service_level_seconds`` (AgentConnect's ``HoldTime``), ``None`` before the first;
* ``average_speed_of_answer``: mean ``HoldTime`` of the answered calls;
* ``average_handle_time``: mean ``TalkTime`` of the completed calls (AgentComplete) plus the
  member's after-call work (its ``Wrapuptime``) when the queue gives one.

Counters start with the gateway: Asterisk's own ``Completed``/``Abandoned`` in QueueParams count
since its last reset, not since midnight, so they are not mixed in.

Agent (member) states: ``available``, ``ringing``, ``on_call``, ``after_call_work``,
``paused`` (with its reason) and ``signed_out`` (device unavailable), each with ``since``, the
moment the member entered it. Members are keyed by extension (``PJSIP/101``,
``Local/101@agents/n`` and ``SIP/101`` are all ``101``), which is how panel users are found.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

AVAILABLE = "available"
RINGING = "ringing"
ON_CALL = "on_call"
AFTER_CALL_WORK = "after_call_work"
PAUSED = "paused"
SIGNED_OUT = "signed_out"

# Asterisk device states as QueueMember/QueueMemberStatus report them (Status:)
_RINGING_STATES = frozenset({6, 7})  # ringing, ringing while in use
_RINGING_IN_USE = 7
_ON_CALL_STATES = frozenset({2, 3, 8})  # in use, busy, on hold
_GONE_STATES = frozenset({4, 5})  # invalid, unavailable

_IFACE = re.compile(r"^(?:[A-Za-z0-9_]+/)?([^@/\-]+)")


def extension_of(interface: str) -> str:
    """``PJSIP/101`` → ``101``; ``Local/101@agents/n`` → ``101``; ``SIP/101-0000a`` → ``101``."""
    m = _IFACE.match(interface.strip())
    return m.group(1) if m else interface


def _int(raw: str | None, default: int = 0) -> int:
    try:
        return int(float(raw or ""))
    except ValueError:
        return default


def _float(raw: str | None) -> float | None:
    try:
        value = float(raw or "")
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None


@dataclass(slots=True)
class QueueFigures:
    """One queue's counters for the current day and its callers waiting now."""

    name: str
    waiting: dict[str, float] = field(default_factory=dict)  # uniqueid -> joined at
    answered: int = 0
    answered_in_sl: int = 0
    abandoned: int = 0
    abandoned_short: int = 0
    hold_total: float = 0.0  # of the answered calls
    completed: int = 0
    handle_total: float = 0.0  # talk + after-call work of the completed calls

    def reset_day(self) -> None:
        self.answered = self.answered_in_sl = self.abandoned = self.abandoned_short = 0
        self.completed = 0
        self.hold_total = self.handle_total = 0.0


@dataclass(slots=True)
class Member:
    """One agent phone as the queues see it (one per extension, whatever the queues)."""

    extension: str
    interface: str
    name: str = ""  # MemberName: what the PBX calls it
    queues: set[str] = field(default_factory=set)
    device: int = 1  # Asterisk device state
    paused: dict[str, str] = field(default_factory=dict)  # queue -> reason, while paused there
    wrapup: float = 0.0  # after-call work the queue gives the member (Wrapuptime)
    connected: int = 0  # queue calls connected to it now (AgentConnect not yet completed)
    ringing: int = 0  # queue calls ringing it now (AgentCalled not yet answered or given up)
    acw_until: float = 0.0
    calls_taken: int = 0
    state: str = AVAILABLE
    since: float = 0.0

    def current(self, now: float) -> tuple[str, float]:
        """The state at ``now`` and since when (after-call work ends on its own)."""
        if self.state == AFTER_CALL_WORK and now >= self.acw_until:
            return AVAILABLE, self.acw_until
        return self.state, self.since

    def pause_reason(self) -> str:
        return next(iter(self.paused.values()), "") if self.paused else ""


class Wallboard:
    """Queue figures and member states, fed one AMI frame at a time."""

    def __init__(
        self,
        *,
        service_level_seconds: float = 20.0,
        short_abandon_seconds: float = 5.0,
        timezone: str = "Europe/Madrid",
    ) -> None:
        self.service_level_seconds = service_level_seconds
        self.short_abandon_seconds = short_abandon_seconds
        self.tz = ZoneInfo(timezone)
        self.queue: dict[str, QueueFigures] = {}
        self.member: dict[str, Member] = {}  # extension -> member
        self.day: date | None = None

    # -- input -------------------------------------------------------------------------------

    def feed(self, frame: Mapping[str, str], at: float) -> bool:
        """Apply one event; ``at`` is when it happened (its ``Timestamp``, else when it
        arrived). Returns whether anything the wall shows changed."""
        event = frame.get("Event", "")
        handler = _HANDLERS.get(event)
        if handler is None:
            return False
        self._roll(at)
        handler(self, frame, at)
        return True

    def resync(self, frames: Iterable[Mapping[str, str]], at: float) -> None:
        """Rebuild the waiting callers and the members from a QueueStatus answer; today's
        counters are kept (they are ours, not the PBX's)."""
        self._roll(at)
        seen_members: set[str] = set()
        for q in self.queue.values():
            q.waiting.clear()
        for f in frames:
            event = f.get("Event", "")
            name = f.get("Queue", "")
            if not name:
                continue
            q = self._queue(name)
            if event == "QueueEntry":
                wait = _float(f.get("Wait")) or 0.0
                key = f.get("Uniqueid") or f.get("Channel") or f"pos-{f.get('Position')}"
                q.waiting[key] = at - max(wait, 0.0)
            elif event == "QueueMember":
                iface = f.get("Location") or f.get("Interface") or f.get("StateInterface", "")
                if not iface:
                    continue
                m = self._apply_member(f, iface, f.get("Name") or f.get("MemberName", ""), at)
                if m.extension not in seen_members:
                    m.queues = set()
                    seen_members.add(m.extension)
                m.queues.add(name)
        for ext in [e for e in self.member if e not in seen_members]:
            del self.member[ext]

    def _roll(self, at: float) -> None:
        today = datetime.fromtimestamp(at, UTC).astimezone(self.tz).date()
        if self.day is not None and today > self.day:
            for q in self.queue.values():
                q.reset_day()
        if self.day is None or today > self.day:
            self.day = today

    def _queue(self, name: str) -> QueueFigures:
        q = self.queue.get(name)
        if q is None:
            q = self.queue[name] = QueueFigures(name)
        return q

    def _member(self, interface: str, name: str = "") -> Member:
        ext = extension_of(interface)
        m = self.member.get(ext)
        if m is None:
            m = self.member[ext] = Member(ext, interface)
        m.interface = interface or m.interface
        m.name = name or m.name
        return m

    def _set_state(self, m: Member, at: float) -> None:
        if m.paused:
            state = PAUSED
        elif m.connected > 0 or m.device in _ON_CALL_STATES or m.device == _RINGING_IN_USE:
            state = ON_CALL  # a second call ringing an agent on a call: still on a call
        elif m.ringing > 0 or m.device in _RINGING_STATES:
            state = RINGING
        elif m.device in _GONE_STATES:
            state = SIGNED_OUT
        elif m.acw_until > at:
            state = AFTER_CALL_WORK
        else:
            state = AVAILABLE
        current, _ = m.current(at)
        if state != current:
            m.state, m.since = state, at
        elif state != m.state:  # after-call work ran out: since is when it did
            m.state, m.since = state, m.acw_until

    def _apply_member(self, f: Mapping[str, str], iface: str, name: str, at: float) -> Member:
        m = self._member(iface, name)
        queue = f.get("Queue", "")
        if queue:
            m.queues.add(queue)
            if f.get("Paused") == "1":
                m.paused[queue] = f.get("PausedReason", "")
            elif "Paused" in f:
                m.paused.pop(queue, None)
        if "Status" in f:
            m.device = _int(f.get("Status"), 1)
            if m.device not in _RINGING_STATES:
                m.ringing = 0
            if m.device not in _ON_CALL_STATES and f.get("InCall", "0") == "0":
                m.connected = 0
        if "Wrapuptime" in f:
            m.wrapup = max(_float(f.get("Wrapuptime")) or 0.0, 0.0)
        m.calls_taken = _int(f.get("CallsTaken"), m.calls_taken)
        self._set_state(m, at)
        return m

    # -- the events --------------------------------------------------------------------------

    def _caller_join(self, f: Mapping[str, str], at: float) -> None:
        self._queue(f.get("Queue", "")).waiting[f.get("Uniqueid", "")] = at

    def _caller_leave(self, f: Mapping[str, str], at: float) -> None:
        self._queue(f.get("Queue", "")).waiting.pop(f.get("Uniqueid", ""), None)

    def _caller_abandon(self, f: Mapping[str, str], at: float) -> None:
        q = self._queue(f.get("Queue", ""))
        joined = q.waiting.pop(f.get("Uniqueid", ""), None)
        held = _float(f.get("HoldTime"))
        if held is None:
            held = at - joined if joined is not None else 0.0
        q.abandoned += 1
        if held < self.short_abandon_seconds:
            q.abandoned_short += 1

    def _agent_called(self, f: Mapping[str, str], at: float) -> None:
        m = self._member(f.get("Interface", ""), f.get("MemberName", ""))
        m.ringing += 1
        self._set_state(m, at)

    def _agent_ring_no_answer(self, f: Mapping[str, str], at: float) -> None:
        m = self._member(f.get("Interface", ""), f.get("MemberName", ""))
        m.ringing = max(m.ringing - 1, 0)
        self._set_state(m, at)

    def _agent_connect(self, f: Mapping[str, str], at: float) -> None:
        q = self._queue(f.get("Queue", ""))
        q.waiting.pop(f.get("Uniqueid", ""), None)
        held = max(_float(f.get("HoldTime")) or 0.0, 0.0)
        q.answered += 1
        q.hold_total += held
        if held <= self.service_level_seconds:
            q.answered_in_sl += 1
        m = self._member(f.get("Interface", ""), f.get("MemberName", ""))
        # ringall: the other members stop ringing through their own device-state events
        m.ringing = 0
        m.connected += 1
        self._set_state(m, at)

    def _agent_complete(self, f: Mapping[str, str], at: float) -> None:
        q = self._queue(f.get("Queue", ""))
        m = self._member(f.get("Interface", ""), f.get("MemberName", ""))
        talk = max(_float(f.get("TalkTime")) or 0.0, 0.0)
        q.completed += 1
        q.handle_total += talk + m.wrapup
        m.connected = max(m.connected - 1, 0)
        m.calls_taken += 1
        if m.wrapup > 0:
            m.acw_until = at + m.wrapup
        if m.device in _ON_CALL_STATES:  # the hangup's device state may come a moment later
            m.device = 1
        self._set_state(m, at)

    def _member_status(self, f: Mapping[str, str], at: float) -> None:
        iface = f.get("Interface") or f.get("Location") or f.get("StateInterface", "")
        if iface:
            self._apply_member(f, iface, f.get("MemberName") or f.get("Name", ""), at)

    def _member_removed(self, f: Mapping[str, str], at: float) -> None:
        ext = extension_of(f.get("Interface") or f.get("Location", ""))
        m = self.member.get(ext)
        if m is None:
            return
        queue = f.get("Queue", "")
        m.queues.discard(queue)
        m.paused.pop(queue, None)
        if not m.queues:
            del self.member[ext]
        else:
            self._set_state(m, at)

    # -- output ------------------------------------------------------------------------------

    def queues(self, now: float) -> list[dict[str, Any]]:
        """Every queue's figures at ``now``, by name."""
        self._roll(now)
        out = []
        for q in sorted(self.queue.values(), key=lambda q: q.name):
            counted = q.answered + q.abandoned - q.abandoned_short
            members = [m for m in self.member.values() if q.name in m.queues]
            states = [m.current(now)[0] for m in members]
            out.append(
                {
                    "queue": q.name,
                    "waiting": len(q.waiting),
                    "longest_wait": round(
                        max((now - t for t in q.waiting.values()), default=0.0), 1
                    ),
                    "longest_wait_since": min(q.waiting.values(), default=None),
                    "answered": q.answered,
                    "answered_in_sl": q.answered_in_sl,
                    "abandoned": q.abandoned,
                    "abandoned_short": q.abandoned_short,
                    "service_level": round(100.0 * q.answered_in_sl / counted, 1)
                    if counted
                    else None,
                    "service_level_seconds": self.service_level_seconds,
                    "average_speed_of_answer": round(q.hold_total / q.answered, 1)
                    if q.answered
                    else None,
                    "average_handle_time": round(q.handle_total / q.completed, 1)
                    if q.completed
                    else None,
                    "members": len(members),
                    "available": states.count(AVAILABLE),
                    "on_call": states.count(ON_CALL),
                    "paused": states.count(PAUSED),
                }
            )
        return out

    def members(self, now: float) -> dict[str, dict[str, Any]]:
        """Every member by extension: its state at ``now`` and since when."""
        out: dict[str, dict[str, Any]] = {}
        for ext, m in sorted(self.member.items()):
            state, since = m.current(now)
            out[ext] = {
                "extension": ext,
                "interface": m.interface,
                "member_name": m.name,
                "queues": sorted(m.queues),
                "state": state,
                "since": since,
                "reason": m.pause_reason() if state == PAUSED else "",
                "calls_taken": m.calls_taken,
            }
        return out


_HANDLERS = {
    "QueueCallerJoin": Wallboard._caller_join,
    "QueueCallerLeave": Wallboard._caller_leave,
    "QueueCallerAbandon": Wallboard._caller_abandon,
    "AgentCalled": Wallboard._agent_called,
    "AgentRingNoAnswer": Wallboard._agent_ring_no_answer,
    "AgentConnect": Wallboard._agent_connect,
    "AgentComplete": Wallboard._agent_complete,
    "AgentDump": Wallboard._agent_ring_no_answer,
    "QueueMemberStatus": Wallboard._member_status,
    "QueueMemberAdded": Wallboard._member_status,
    "QueueMemberPause": Wallboard._member_status,
    "QueueMemberPaused": Wallboard._member_status,
    "QueueMemberPenalty": Wallboard._member_status,
    "QueueMemberRinginuse": Wallboard._member_status,
    "QueueMemberRemoved": Wallboard._member_removed,
}

EVENTS = frozenset(_HANDLERS)  # what the feed passes on; the rest of the stream is not read


def event_time(frame: Mapping[str, str], received_at: float) -> float:
    """When an event happened: its ``Timestamp`` header, else when it arrived."""
    ts = _float(frame.get("Timestamp"))
    return ts if ts is not None else received_at


def check_timezone(name: str) -> None:
    """Raise ValueError naming the key when ``panel.timezone`` is not a known IANA zone."""
    try:
        ZoneInfo(name)
    except (ValueError, OSError, KeyError):  # ZoneInfoNotFoundError is a KeyError
        raise ValueError(f"timezone: unknown time zone {name!r} (e.g. Europe/Madrid)") from None
