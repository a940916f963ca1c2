"""Domain events the tracker emits as calls happen; the bus carries them to push, log and CRMs.

They are small frozen values so one object can be handed to every subscriber safely.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.calls.model import CallRecord, Direction, Transfer


@dataclass(frozen=True, slots=True)
class CallRinging:
    """The set of extensions ringing for a call changed. ``ringing`` is the whole set NOW,
    in the order they started ringing (empty: nobody rings any more, dismiss the pop-up).
    Sent before anyone answers, and again for a transfer target."""

    pbx: str
    linkedid: str
    ringing: tuple[str, ...]
    direction: Direction
    caller: str | None
    caller_name: str | None
    did: str | None
    dialed: str | None
    queue: str | None
    click_to_call: bool
    call_id: str | None
    at: float

    @property
    def number(self) -> str | None:
        """The outside party's number, the one to look up (caller in, dialed out)."""
        return self.dialed if self.direction is Direction.OUTBOUND else self.caller


@dataclass(frozen=True, slots=True)
class CallAnswered:
    """An agent took the call (sent once per agent: a transfer target sends its own).
    For an outbound call ``by`` is the calling agent and it fires when the far end answers."""

    pbx: str
    linkedid: str
    by: str | None
    direction: Direction
    caller: str | None
    did: str | None
    dialed: str | None
    queue: str | None
    click_to_call: bool
    call_id: str | None
    at: float


@dataclass(frozen=True, slots=True)
class CallTransferred:
    pbx: str
    linkedid: str
    transfer: Transfer
    at: float


@dataclass(frozen=True, slots=True)
class _RecordEvent:
    """An event carrying a whole call record. Not a subscription type: the bus dispatches by
    exact type, so CallEnded and CallCorrected subscribers stay apart."""

    record: CallRecord

    @property
    def pbx(self) -> str:
        return self.record.pbx

    @property
    def linkedid(self) -> str:
        return self.record.linkedid


@dataclass(frozen=True, slots=True)
class CallEnded(_RecordEvent):
    """The call is over and its record is final (written once to the call log)."""


@dataclass(frozen=True, slots=True)
class CallCorrected(_RecordEvent):
    """A call already ended (and logged) with estimates got better evidence afterwards, a
    Cdr after its last Hangup: ``record`` replaces the one CallEnded carried, same id."""


DomainEvent = CallRinging | CallAnswered | CallTransferred | CallEnded | CallCorrected
