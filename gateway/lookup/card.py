"""The caller card: everything an agent sees about a number while the phone rings."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import msgspec


class PersonKind(StrEnum):
    CONTACT = "contact"
    LEAD = "lead"
    ACCOUNT = "account"
    UNKNOWN = "unknown"


_decode = msgspec.json.Decoder().decode  # on the lookup's path: faster than json.loads


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What the call log says of a call activity, for a reader to word in their language
    (the activity's ``summary`` is the log's English line, kept for CRMs and the API)."""

    direction: str
    outcome: str
    answered_by: str | None
    talk_seconds: float | None

    @classmethod
    def from_json(cls, raw: str | None) -> CallFacts | None:
        """From the store's ``[direction, outcome, answered_by, talk_seconds]`` (NULL when
        the activity has no call in the log)."""
        if not raw:
            return None
        direction, outcome, answered_by, talk = _decode(raw)
        return cls(direction or "", outcome or "", answered_by or None, talk)


@dataclass(frozen=True, slots=True)
class Interaction:
    """One past activity (call, note, email) shown on the card, newest first."""

    kind: str
    at: float  # epoch seconds
    summary: str
    call: CallFacts | None = None  # a call activity whose call is in the log


@dataclass(frozen=True, slots=True)
class FollowUp:
    id: str
    due_at: float  # epoch seconds
    title: str


@dataclass(frozen=True, slots=True)
class Insight:
    """One customer metric on the card (gateway/intel/metrics.py): the number and/or the
    category, and why (``reason`` is a stable code the panel words in the agent's language)."""

    name: str  # rfm_segment, clv_historic, churn_30, data_quality, next_best
    value: float | None
    label: str | None
    reason: str
    params: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallerCard:
    """The answer of a lookup. ``source`` is ``store`` or a connector name; an unknown number
    still gets a card with its normalized form, country and line type."""

    number: str  # E.164 when it parsed, else the digits as received
    kind: PersonKind = PersonKind.UNKNOWN
    display_name: str = ""
    company: str = ""
    person_id: str | None = None
    account_id: str | None = None
    owner: str | None = None  # owner agent's username
    lead_status: str | None = None
    lead_score: float | None = None
    country: str | None = None  # ISO region, e.g. "ES"
    line_type: str | None = None  # mobile, fixed_line, toll_free...
    interactions: tuple[Interaction, ...] = ()
    follow_ups: tuple[FollowUp, ...] = ()
    source: str = "store"
    external_url: str | None = None  # the record in the external CRM
    extra: dict[str, str] = field(default_factory=dict)
    insight: tuple[Insight, ...] = ()  # precomputed customer metrics (store cards only)

    @property
    def known(self) -> bool:
        return self.kind is not PersonKind.UNKNOWN
