"""The finished call as every connector reads it: one typed view over the call log's dict.

The call log hands connectors a JSON-able dict (it travels through the outbox as JSON). This
module reads it once, tolerantly (times as epoch seconds or ISO 8601), so each connector only
maps typed fields onto its CRM's call shape. A record that cannot be read is rejected for good
(``RecordRejected``): retrying would not make it readable.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urljoin

from connectors.base import RecordRejected

_SAFE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def _time(value: object, key: str) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise RecordRejected(f"call record {key}: expected a time, found {value!r}")
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value), UTC)
    if isinstance(value, str):
        try:
            t = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise RecordRejected(f"call record {key}: expected ISO 8601, found {value!r}") from None
        return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    raise RecordRejected(f"call record {key}: expected a time, found {type(value).__name__}")


def _seconds(value: object) -> int:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return round(value)
    return 0


def _text(value: object) -> str:
    return "" if value is None else str(value)


@dataclass(frozen=True, slots=True)
class FinishedCall:
    """What a CRM needs of one finished call."""

    id: str
    direction: str  # inbound | outbound | internal
    customer: str  # the outside party's number (caller inbound, dialed outbound)
    caller_name: str  # untrusted: caller ID name as the PBX gave it
    answered: bool  # "Held" in CRM terms
    outcome: str
    started_at: datetime  # UTC
    talk_seconds: int
    total_seconds: int
    agent: str  # who answered (or placed) the call; "" when nobody
    queue: str
    did: str
    notes: str
    disposition: str
    recording_url: str  # absolute URL on the gateway, or ""

    @classmethod
    def from_record(cls, record: dict[str, object], public_url: str = "") -> FinishedCall:
        rid = _text(record.get("id"))
        if not rid:
            raise RecordRejected("call record has no id")
        direction = _text(record.get("direction")).lower() or "inbound"
        caller, dialed = _text(record.get("caller")), _text(record.get("dialed"))
        customer = dialed if direction == "outbound" else caller
        started = (
            _time(record.get("started_at"), "started_at")
            or _time(record.get("answered_at"), "answered_at")
            or _time(record.get("ended_at"), "ended_at")
        )
        if started is None:
            raise RecordRejected(f"call record {rid!r} has no start time")
        outcome = _text(record.get("outcome")).lower()
        answered = bool(record.get("answered_at")) or outcome in ("answered", "transferred")
        agent = _text(record.get("answered_by"))
        rang = record.get("agents_rang")
        if not agent and direction == "outbound":  # the agent who dialed
            agent = _text(rang[0]) if isinstance(rang, list) and rang else caller
        rec_url = _text(record.get("recording_url"))
        if rec_url and public_url:
            rec_url = urljoin(public_url.rstrip("/") + "/", rec_url)
        return cls(
            id=rid,
            direction=direction,
            customer=customer,
            caller_name=_text(record.get("caller_name")),
            answered=answered,
            outcome=outcome or ("answered" if answered else "noanswer"),
            started_at=started,
            talk_seconds=_seconds(record.get("talk_seconds")),
            total_seconds=_seconds(record.get("total_seconds")),
            agent=agent,
            queue=_text(record.get("queue")),
            did=_text(record.get("did")),
            notes=_text(record.get("notes")),
            disposition=_text(record.get("disposition")),
            recording_url=rec_url,
        )

    @property
    def is_customer_call(self) -> bool:
        """Internal (agent to agent) calls have no customer and are not written to CRMs."""
        return self.direction != "internal" and bool(self.customer)

    @property
    def marker(self) -> str:
        """A tag written into the CRM record so a retried write finds the first one.

        Only ``[A-Za-z0-9_.:-]`` so it can sit inside a query literal unescaped; other ids
        are hashed."""
        safe = (
            self.id
            if _SAFE_ID.fullmatch(self.id)
            else hashlib.sha256(self.id.encode()).hexdigest()[:32]
        )
        return f"centralita-call:{safe}"

    @property
    def duration_seconds(self) -> int:
        """Talk time for a held call, 0 for a missed one (what CRMs show as duration)."""
        return self.talk_seconds if self.answered else 0

    @property
    def subject(self) -> str:
        word = {"inbound": "Inbound", "outbound": "Outbound"}.get(self.direction, "Internal")
        state = "call" if self.answered else f"call ({self.outcome or 'missed'})"
        who = f" {self.caller_name}" if self.caller_name and self.direction == "inbound" else ""
        return f"{word} {state}{who} {self.customer}".strip()[:250]

    def description(self) -> str:
        """Plain-text body: everything the agent and the supervisor need, one item a line."""
        lines = [
            f"Direction: {self.direction}",
            f"Number: {self.customer}",
            f"Outcome: {self.outcome}",
            f"Start (UTC): {self.started_at:%Y-%m-%d %H:%M:%S}",
            f"Talk time: {self.talk_seconds} s",
        ]
        optional = (
            ("Caller ID name", self.caller_name),
            ("DID", self.did),
            ("Queue", self.queue),
            ("Agent", self.agent),
            ("Disposition", self.disposition),
            ("Recording", self.recording_url),
        )
        lines += [f"{label}: {value}" for label, value in optional if value]
        if self.notes:
            lines += ["", self.notes]
        lines += ["", self.marker]
        return "\n".join(lines)


def split_duration(seconds: int) -> tuple[int, int]:
    """(hours, minutes) as SugarCRM and vTiger store durations; a started minute counts."""
    minutes = (seconds + 59) // 60
    return minutes // 60, minutes % 60
