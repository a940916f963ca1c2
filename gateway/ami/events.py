"""What the AMI link publishes on the bus: raw events, link state, and resync snapshots."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from gateway.ami.frames import AmiFrame


@dataclass(frozen=True, slots=True)
class AmiEvent:
    """One AMI event as received. ``received_at`` is the link's wall clock (epoch seconds),
    used by the tracker only when the PBX does not send ``Timestamp`` headers."""

    pbx: str
    frame: AmiFrame
    received_at: float


class LinkStatus(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"  # TCP up, not logged in yet
    READY = "ready"  # logged in and subscribed to events
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class LinkStateChanged:
    pbx: str
    status: LinkStatus
    at: float
    detail: str = ""


@dataclass(frozen=True, slots=True)
class PbxRestarted:
    """Asterisk itself went away or came back (``Shutdown`` / a new ``FullyBooted``)."""

    pbx: str
    at: float
    reason: str


@dataclass(frozen=True, slots=True)
class ResyncSnapshot:
    """The live picture read after every (re)connect: one ``CoreShowChannel`` frame per
    channel, and the ``QueueParams``/``QueueMember``/``QueueEntry`` frames when queues are on.
    Components rebuild their state from it; events that follow continue from it."""

    pbx: str
    at: float
    channels: list[AmiFrame] = field(default_factory=list)
    queues: list[AmiFrame] = field(default_factory=list)
    reconnect: bool = False
