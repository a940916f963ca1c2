"""Domain events of the CRM side, published on the bus (gateway/bus.py) after the change is
committed: campaigns move members on with them, webhooks send them out."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LeadStatusChanged:
    person_id: int
    old: str | None
    new: str | None
    at: float
    actor: str  # user:ana, token:crm, system, campaign:3
    lost_reason: str = ""


@dataclass(frozen=True, slots=True)
class LeadCreated:
    """A lead came into being (API, panel, CSV import) with its first status; a row that a
    dedupe folds into an existing person creates nothing."""

    person_id: int
    status: str
    source: str
    at: float
    actor: str  # user:ana, token:crm, system
    lost_reason: str = ""


@dataclass(frozen=True, slots=True)
class LeadsCreated:
    """The leads one write created: one for the API or the panel, a batch (up to 500) of a
    CSV import. One event per write, so that an import of thousands of leads is stored and
    sent in a few documents, not as thousands of events. The webhook ``lead.created`` (its
    ``data`` is this, ``{"leads": [...]}``). Creating a lead is not a status change:
    campaigns and metrics do not listen."""

    leads: tuple[LeadCreated, ...]


@dataclass(frozen=True, slots=True)
class LeadConverted:
    """A qualified lead became a contact (B2C) or an account + contact (B2B), maybe a deal."""

    person_id: int
    at: float
    actor: str
    account_id: int | None = None
    deal_id: int | None = None


@dataclass(frozen=True, slots=True)
class LeadUnsubscribed:
    """An address left the mailings (link, one-click POST, agent, API)."""

    person_id: int | None
    email: str
    at: float
    method: str  # page | one_click | agent | api
    campaign_id: int | None = None


@dataclass(frozen=True, slots=True)
class WrapUpSaved:
    """An agent saved the notes and disposition of a call (the after-call wrap-up)."""

    call_id: str
    agent: str
    at: float
    person_id: int | None
    disposition: str
    outcome: str  # the call's outcome: answered, no-answer, busy, ...


@dataclass(frozen=True, slots=True)
class DealsChanged:
    """Deals were written or removed outside the deals API (a CRM pull): whose purchases."""

    person_ids: tuple[int, ...]
    at: float
    source: str  # crm:suite
