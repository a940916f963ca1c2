"""What a finished call is: the record the tracker hands to the call log, CRMs and ``replay``."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Direction(StrEnum):
    INBOUND = "inbound"  # someone outside called in (a trunk leg in an inbound context)
    OUTBOUND = "outbound"  # an agent (or the gateway for an agent) called an outside number
    INTERNAL = "internal"  # an agent called another agent


class Outcome(StrEnum):
    ANSWERED = "answered"
    NOANSWER = "noanswer"  # rang until the dialplan gave up
    BUSY = "busy"
    ABANDONED = "abandoned"  # the caller hung up while it rang or waited in a queue
    FAILED = "failed"  # could not be placed (click-to-call whose agent leg never answered)
    TRANSFERRED = "transferred"  # answered, then transferred (the ground truth's word for it)


@dataclass(frozen=True, slots=True)
class Transfer:
    """One transfer of an answered call: ``kind`` is ``blind`` or ``attended``."""

    kind: str
    from_ext: str | None
    to_ext: str | None
    at: float

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "from": self.from_ext, "to": self.to_ext}


@dataclass(slots=True)
class CallRecord:
    """Everything known about one call (one Asterisk Linkedid) once it has ended.

    Times are epoch seconds taken from the PBX's event timestamps. ``reconstructed`` is set
    when part of the call happened out of sight (link down, eviction, capture cut) and some
    fields are estimates; ``warnings`` says which and why.
    """

    linkedid: str
    pbx: str
    direction: Direction
    outcome: Outcome
    started_at: float
    ended_at: float
    click_to_call: bool = False
    call_id: str | None = None  # the gateway's own id when the gateway originated the call
    caller: str | None = None  # inbound: the outside number; outbound/internal: the agent
    caller_name: str | None = None
    did: str | None = None  # inbound: the number the caller dialed
    dialed: str | None = None  # outbound/internal: the number the agent dialed
    queue: str | None = None
    agents_rang: list[str] = field(default_factory=list)  # in the order they first rang
    agents_answered: list[str] = field(default_factory=list)  # in the order they answered
    answered_by: str | None = None  # the first agent who took the call
    transfers: list[Transfer] = field(default_factory=list)
    answered_at: float | None = None
    # the answering agent's phone ringing until the answer (unanswered: first ring to the
    # end of ringing); click-to-call: the agent's ring plus the customer's
    ring_seconds: float = 0.0
    # queue calls: joining the queue until the answer or the caller left (speed of answer)
    queue_wait_seconds: float | None = None
    talk_seconds: float = 0.0
    total_seconds: float = 0.0
    hangup_cause: str | None = None
    recordings: list[str] = field(default_factory=list)
    reconstructed: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def customer_number(self) -> str:
        """The other party's number as the PBX gave it: the caller of an inbound call, the
        number dialed out; "" for internal calls (the call log attaches calls by it)."""
        if self.direction is Direction.INBOUND:
            return self.caller or ""
        if self.direction is Direction.OUTBOUND:
            return self.dialed or ""
        return ""

    @property
    def log_id(self) -> str:
        """The call's id in the call log, the CRMs and webhooks: ``<pbx>:<linkedid>``."""
        return f"{self.pbx}:{self.linkedid}"

    def to_json(self) -> dict[str, Any]:
        """The record under the field names ``centralita replay`` and the API print."""
        return {
            "linkedid": self.linkedid,
            "pbx": self.pbx,
            "direction": self.direction.value,
            "click_to_call": self.click_to_call,
            "call_id": self.call_id,
            "caller": self.caller,
            "caller_name": self.caller_name,
            "did": self.did,
            "dialed": self.dialed,
            "queue": self.queue,
            "agents_rang": list(self.agents_rang),
            "agents_answered": list(self.agents_answered),
            "answered_by": self.answered_by,
            "transfers": [t.to_json() for t in self.transfers],
            "outcome": self.outcome.value,
            "started_at": self.started_at,
            "answered_at": self.answered_at,
            "ended_at": self.ended_at,
            "ring_seconds": self.ring_seconds,
            "queue_wait_seconds": self.queue_wait_seconds,
            "talk_seconds": self.talk_seconds,
            "total_seconds": self.total_seconds,
            "hangup_cause": self.hangup_cause,
            "recordings": list(self.recordings),
            "reconstructed": self.reconstructed,
            "warnings": list(self.warnings),
        }
