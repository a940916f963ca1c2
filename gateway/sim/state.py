"""What the simulated PBX knows is live, rebuilt from the events it emits (pure, no I/O).

CoreShowChannels, Status, QueueStatus and Getvar answer from this mirror, so they always
agree with the event stream a client has seen: a channel exists from its Newchannel to its
Hangup, carries the snapshot headers of its latest event, its bridge, its variables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

SNAPSHOT_KEYS = (
    "Channel",
    "ChannelState",
    "ChannelStateDesc",
    "CallerIDNum",
    "CallerIDName",
    "ConnectedLineNum",
    "ConnectedLineName",
    "Language",
    "AccountCode",
    "Context",
    "Exten",
    "Priority",
    "Uniqueid",
    "Linkedid",
)


@dataclass(slots=True)
class Phone:
    """How an agent phone answers: ``answer`` True (after ``ring`` s), "busy" or "noanswer"."""

    ring: float = 2.0
    answer: bool | str = True


@dataclass(slots=True)
class QueueMember:
    """A static queue member, with the counters QueueStatus reports."""

    extension: str
    name: str
    paused: bool = False
    paused_reason: str = ""
    calls_taken: int = 0
    last_call: int = 0
    last_pause: int = 0


@dataclass(slots=True)
class SimQueue:
    """A queue (ringall): members in order, callers waiting, and its statistics."""

    name: str
    members: list[QueueMember]
    completed: int = 0
    abandoned: int = 0


@dataclass(slots=True)
class LiveChannel:
    """A channel as the event stream described it: snapshot headers, bridge, variables."""

    headers: dict[str, str]
    created: float
    linkedid: str
    application: str = ""
    data: str = ""
    bridge: str = ""
    variables: dict[str, str] = field(default_factory=dict)


def default_queues() -> dict[str, SimQueue]:
    """The lab's queue: ``sales``, ringall over agents 101 and 102."""
    members = [QueueMember("101", "Agent 101"), QueueMember("102", "Agent 102")]
    return {"sales": SimQueue("sales", members)}


@dataclass(slots=True)
class LiveState:
    """Live channels, queue callers and queue statistics, kept from the emitted events."""

    channels: dict[str, LiveChannel] = field(default_factory=dict)
    queues: dict[str, SimQueue] = field(default_factory=default_queues)
    queue_entries: dict[str, list[str]] = field(default_factory=dict)  # queue -> channels

    def reset(self) -> None:
        """Asterisk restarted: every channel and waiting caller is gone."""
        self.channels.clear()
        self.queue_entries.clear()

    def track(self, h: Mapping[str, str], now: float) -> None:
        """Apply one emitted event (``now``: the PBX clock when it went out)."""
        ev = h.get("Event", "")
        name = h.get("Channel", "")
        if ev == "Newchannel":
            self.channels[name] = LiveChannel(
                {k: h.get(k, "") for k in SNAPSHOT_KEYS}, now, h["Linkedid"]
            )
            return
        ch = self.channels.get(name)
        if ev.startswith("Queue") and "Queue" in h and name:
            waiting = self.queue_entries.setdefault(h["Queue"], [])
            queue = self.queues.get(h["Queue"])
            if ev == "QueueCallerJoin" and name not in waiting:
                waiting.append(name)
            elif ev in ("QueueCallerLeave", "QueueCallerAbandon") and name in waiting:
                waiting.remove(name)
                if ev == "QueueCallerAbandon" and queue:
                    queue.abandoned += 1
        if ev == "AgentComplete" and h.get("Queue") in self.queues:
            queue = self.queues[h["Queue"]]
            queue.completed += 1
            for m in queue.members:
                if h.get("MemberName") == m.name:
                    m.calls_taken += 1
                    m.last_call = int(now)
        if ch is None:
            return
        if ev == "Hangup":
            del self.channels[name]
            return
        if "Uniqueid" in h and h.get("Uniqueid") == ch.headers["Uniqueid"]:
            for k in SNAPSHOT_KEYS:
                if k in h:
                    ch.headers[k] = h[k]
        if ev == "Newexten":
            ch.application, ch.data = h.get("Application", ""), h.get("AppData", "")
        elif ev == "BridgeEnter":
            ch.bridge = h.get("BridgeUniqueid", "")
        elif ev == "BridgeLeave":
            ch.bridge = ""
        elif ev == "VarSet":
            ch.variables[h.get("Variable", "")] = h.get("Value", "")
