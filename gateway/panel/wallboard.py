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

Asterisk's own ``Completed``/``Abandoned`` in QueueParams count since its last reset, not since
midnight, so they are not mixed in. What a restarted gateway did not see comes from the call log
instead (:meth:`Wallboard.count_logged`, fed by ``wallboard_feed`` at start): every call is
counted once per queue by its ``Linkedid``, whichever of the log and the live events sees it
first, and an ``AgentComplete`` of a call answered out of sight (before the restart) counts its
answer then, so a call in progress across a restart is counted once.

Agent (member) states: ``available``, ``ringing``, ``on_call``, ``after_call_work``,
``paused`` (with its reason) and ``signed_out`` (device unavailable), each with ``since``, the
moment the member entered it (for a member first seen in a QueueMember/QueueMemberStatus frame,
its ``LastPause``/``LastCall``/``LoginTime``). Members are keyed by extension (``PJSIP/101``,
``Local/101@agents/n`` and ``SIP/101`` are all ``101``), which is how panel users are found.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
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

DAY = 86400.0
_ANSWERED_OUTCOMES = frozenset({"answered", "transferred"})  # of the call log's records

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


def _float(raw: Any) -> float | None:
    if raw is None or isinstance(raw, bool):
        return None
    try:
        value = float(raw if isinstance(raw, int | float) else str(raw) or "")
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None


def _call_key(f: Mapping[str, str]) -> str:
    """The call a queue event is about, as the call log names it (its ``Linkedid``)."""
    return f.get("Linkedid") or f.get("Uniqueid") or ""


def day_bounds(at: float, tz: ZoneInfo) -> tuple[float, float]:
    """The epoch seconds where the calendar day of ``at`` in ``tz`` starts and ends (a day of
    23 or 25 hours when the clocks change)."""
    day = datetime.fromtimestamp(at, UTC).astimezone(tz).date()
    start = datetime(day.year, day.month, day.day, tzinfo=tz)
    return start.timestamp(), (start + timedelta(days=1)).timestamp()  # wall-clock midnight


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
    # what each call counted today, by Linkedid (the call log and the live events count a call
    # once; its record, when it ends, has the last word): seconds held, held, handled
    answers: dict[str, float] = field(default_factory=dict)
    abandons: dict[str, float] = field(default_factory=dict)
    handles: dict[str, float] = field(default_factory=dict)
    connected: dict[str, float] = field(default_factory=dict)  # answered, not completed: -> at
    # completions read from the log before their member (and its Wrapuptime) was known
    wrapup_pending: dict[str, int] = field(default_factory=dict)  # extension -> calls

    def reset_day(self, at: float) -> None:
        self.answered = self.answered_in_sl = self.abandoned = self.abandoned_short = 0
        self.completed = 0
        self.hold_total = self.handle_total = 0.0
        self.answers.clear()
        self.abandons.clear()
        self.handles.clear()
        self.wrapup_pending.clear()
        # a call answered before midnight still ends today without counting a second answer;
        # one whose end was never seen (link down) is forgotten after a day
        for key in [k for k, t in self.connected.items() if at - t > DAY]:
            del self.connected[key]


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
        self._bounds = (0.0, 0.0)  # where self.day starts and ends, epoch seconds

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
        if self._bounds[0] <= at < self._bounds[1]:
            return  # the same day (every event: no date arithmetic)
        today = datetime.fromtimestamp(at, UTC).astimezone(self.tz).date()
        if self.day is not None and today > self.day:
            for q in self.queue.values():
                q.reset_day(at)
        if self.day is None or today > self.day:
            self.day = today
            self._bounds = day_bounds(at, self.tz)

    def _today(self, at: float) -> bool:
        return self._bounds[0] <= at < self._bounds[1]

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
            if queue and queue in self.queue:  # the log's calls it took before it was known
                q = self.queue[queue]
                q.handle_total += q.wrapup_pending.pop(m.extension, 0) * m.wrapup
        m.calls_taken = _int(f.get("CallsTaken"), m.calls_taken)
        first_seen = not m.since
        self._set_state(m, at)
        if first_seen:  # its state began before we looked
            m.since = _began(f, m.state, at)
        return m

    # -- the events --------------------------------------------------------------------------

    def _caller_join(self, f: Mapping[str, str], at: float) -> None:
        self._queue(f.get("Queue", "")).waiting[f.get("Uniqueid", "")] = at

    def _caller_leave(self, f: Mapping[str, str], at: float) -> None:
        self._queue(f.get("Queue", "")).waiting.pop(f.get("Uniqueid", ""), None)

    # Each count takes the call's key ("" when the frame names no call: counted, never
    # matched); ``replace``: the call's record corrects what the live events counted.

    def _count_abandon(self, q: QueueFigures, key: str, held: float, replace: bool = False) -> None:
        old = q.abandons.get(key) if key else None
        if old is not None:
            if not replace:
                return
            q.abandoned -= 1
            q.abandoned_short -= old < self.short_abandon_seconds
        if key:
            q.abandons[key] = held
        q.abandoned += 1
        q.abandoned_short += held < self.short_abandon_seconds

    def _count_answer(self, q: QueueFigures, key: str, held: float, replace: bool = False) -> None:
        held = max(held, 0.0)
        old = q.answers.get(key) if key else None
        if old is not None:
            if not replace:
                return
            q.answered -= 1
            q.hold_total -= old
            q.answered_in_sl -= old <= self.service_level_seconds
        if key:
            q.answers[key] = held
        q.answered += 1
        q.hold_total += held
        q.answered_in_sl += held <= self.service_level_seconds

    def _count_completion(
        self, q: QueueFigures, key: str, handle: float, replace: bool = False
    ) -> None:
        old = q.handles.get(key) if key else None
        if old is not None:
            if not replace:
                return
            q.completed -= 1
            q.handle_total -= old
        if key:
            q.handles[key] = handle
        q.completed += 1
        q.handle_total += handle

    def _caller_abandon(self, f: Mapping[str, str], at: float) -> None:
        q = self._queue(f.get("Queue", ""))
        joined = q.waiting.pop(f.get("Uniqueid", ""), None)
        held = _float(f.get("HoldTime"))
        if held is None:
            held = at - joined if joined is not None else 0.0
        self._count_abandon(q, _call_key(f), held)

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
        key = _call_key(f)
        if key:
            q.connected[key] = at
        self._count_answer(q, key, _float(f.get("HoldTime")) or 0.0)
        m = self._member(f.get("Interface", ""), f.get("MemberName", ""))
        # ringall: the other members stop ringing through their own device-state events
        m.ringing = 0
        m.connected += 1
        self._set_state(m, at)

    def _agent_complete(self, f: Mapping[str, str], at: float) -> None:
        q = self._queue(f.get("Queue", ""))
        m = self._member(f.get("Interface", ""), f.get("MemberName", ""))
        talk = max(_float(f.get("TalkTime")) or 0.0, 0.0)
        key = _call_key(f)
        if key and q.connected.pop(key, None) is None and key not in q.answers:
            # answered out of our sight (before the gateway restarted, or while the link was
            # down): its answer counts now, once; AgentComplete carries its HoldTime too
            self._count_answer(q, key, _float(f.get("HoldTime")) or 0.0)
        self._count_completion(q, key, talk + m.wrapup)
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

    # -- the call log ------------------------------------------------------------------------

    def count_logged(self, record: Mapping[str, Any], now: float) -> bool:
        """Count a finished queue call of the call log (a ``CallLog`` row or a tracker record)
        into today's figures at ``now``, unless the live events counted it already; each part
        on the day it happened: the answer at ``answered_at``, the abandon and the completion
        at ``ended_at``. Returns whether a figure changed."""
        name, key = str(record.get("queue") or ""), str(record.get("linkedid") or "")
        if not name or not key:
            return False
        self._roll(now)
        started = _float(record.get("started_at"))
        answered_at, ended = _float(record.get("answered_at")), _float(record.get("ended_at"))
        wait = _float(record.get("queue_wait_seconds"))
        outcome = record.get("outcome")
        before = _figures(self.queue.get(name))
        if outcome == "abandoned":
            at = ended if ended is not None else started
            if at is not None and self._today(at):
                if wait is None:
                    wait = at - started if started is not None else 0.0
                self._count_abandon(self._queue(name), key, wait, replace=True)
        elif outcome in _ANSWERED_OUTCOMES and answered_at is not None:
            if self._today(answered_at):
                if wait is None:
                    wait = answered_at - started if started is not None else 0.0
                self._count_answer(self._queue(name), key, wait, replace=True)
            talk = max(_float(record.get("talk_seconds")) or 0.0, 0.0)
            at = ended if ended is not None else answered_at + talk
            if self._today(at):
                q = self._queue(name)
                ext = str(record.get("answered_by") or "")
                m = self.member.get(ext)
                if m is None and ext and key not in q.handles:
                    q.wrapup_pending[ext] = q.wrapup_pending.get(ext, 0) + 1
                self._count_completion(q, key, talk + (m.wrapup if m else 0.0), replace=True)
        return _figures(self.queue.get(name)) != before

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


def _began(f: Mapping[str, str], state: str, at: float) -> float:
    """When a member first seen at ``at`` entered ``state``, as far as its QueueMember frame
    tells (``LastPause``, ``LastCall``, ``LoginTime``: epoch seconds, 0 for never); else ``at``."""
    marks = {
        k: v for k in ("LastPause", "LastCall", "LoginTime") if 0 < (v := _int(f.get(k))) <= at
    }
    if state == PAUSED:
        return marks.get("LastPause", at)
    if state == AVAILABLE:
        return max(marks.values(), default=at)
    return at


def _figures(q: QueueFigures | None) -> tuple[float, ...]:
    if q is None:
        return ()
    return (q.answered, q.answered_in_sl, q.abandoned, q.abandoned_short, q.hold_total,
            q.completed, q.handle_total)  # fmt: skip


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
