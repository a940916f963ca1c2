"""The small interface every external CRM connector implements."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Protocol, runtime_checkable

from gateway.errors import ConnectorError
from gateway.lookup.card import CallerCard, PersonKind


@dataclass(frozen=True, slots=True)
class ConnectorHealth:
    name: str
    last_success: float | None = None  # epoch seconds
    last_error: str | None = None
    last_error_at: float | None = None


class CrmRefused(ConnectorError):
    """The CRM answered, but with an error (a fault, ``success: false``): it is up, so this is
    not an outage. The outbox retries such a record a bounded number of times and then parks
    it, while the calls behind it go on (``docs/connectors/outbox.md``)."""


class RecordRejected(CrmRefused):
    """The CRM (or the connector) refused this call record itself: retrying cannot help, so
    the outbox parks it instead of holding back the calls behind it."""


class SessionExpired(ConnectorError):
    """The CRM says our session or token is no longer valid; the connector logs in again."""


@runtime_checkable
class CrmConnector(Protocol):
    """A CRM the lookup chain asks for caller cards and the call log writes calls back to.

    ``lookup`` receives the E.164 number (and the raw one as received) and returns a card or
    ``None``; it may be cancelled when the lookup budget runs out. ``log_call`` receives the
    finished call record as a JSON-able dict and must be idempotent on ``record["id"]``.
    """

    name: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def lookup(self, e164: str, raw: str) -> CallerCard | None: ...

    async def log_call(self, record: dict[str, object]) -> None: ...

    def health(self) -> ConnectorHealth: ...


@dataclass(frozen=True, slots=True)
class DirectoryRecord:
    """One CRM record as the caller directory keeps it: who it is, and each phone field's
    text exactly as typed in the CRM (the directory normalises them, keeping the raw text)."""

    module: str  # the CRM's module or model: "Contacts", "Leads", "Accounts", "res.partner"...
    record_id: str
    kind: PersonKind
    display_name: str  # as shown in the CRM: HTML entities already decoded
    company: str = ""
    account_id: str | None = None
    owner: str | None = None  # the gateway agent the CRM owner maps to (``users:``), or None
    lead_status: str | None = None
    external_url: str | None = None  # the record in the CRM's own UI
    phones: tuple[str, ...] = ()  # non-empty phone fields, raw
    deleted: bool = False  # the CRM reports the record as deleted (or archived)
    extra: dict[str, str] = field(default_factory=dict)

    def card(self, number: str, source: str) -> CallerCard:
        """The caller card this record gives for ``number`` (E.164)."""
        return CallerCard(
            number=number,
            kind=self.kind,
            display_name=self.display_name,
            company=self.company,
            person_id=self.record_id,
            account_id=self.account_id,
            owner=self.owner,
            lead_status=self.lead_status,
            source=source,
            external_url=self.external_url,
            extra={"module": self.module, **self.extra},
        )


@dataclass(frozen=True, slots=True)
class DirectoryPage:
    """One pull: records changed after the cursor, oldest change first, and where the next
    pull resumes. ``more`` is True while further changes are waiting right now."""

    records: Sequence[DirectoryRecord]
    cursor: str
    more: bool


@runtime_checkable
class DirectorySource(Protocol):
    """A connector that can hand its CRM's phone book to the caller directory.

    ``pull(module, cursor, limit)`` returns up to ``limit`` records of ``module`` changed
    after ``cursor`` ("" = from the very beginning), ordered by (modification time, id), and a
    new opaque cursor. Resuming from any returned cursor must neither skip a record nor loop
    forever, even when thousands of records share one modification time (a bulk import).
    A CRM that reports deletions returns those records with ``deleted=True``; the others are
    swept by the periodic full pass (records not seen in a pass from "")."""

    name: str

    def directory_modules(self) -> Sequence[str]: ...

    async def pull(self, module: str, cursor: str, limit: int) -> DirectoryPage: ...


# -- deals ----------------------------------------------------------------------------------------

#: the store's pipeline (``gateway.store.deals.STAGES``): a connector maps its CRM's stages here
DEAL_STAGES = ("qualification", "proposal", "negotiation", "won", "lost")


@dataclass(frozen=True, slots=True)
class DealParty:
    """A CRM record a deal belongs to (its contact, its company), with what the CRM says of how
    to reach it: the gateway finds the matching person of its own store by this record's numbers
    in the caller directory, else by these e-mail addresses or phone numbers (raw, as typed)."""

    module: str  # "Contacts", "Accounts", "res.partner"...
    record_id: str
    kind: PersonKind
    name: str = ""  # as shown in the CRM (entities decoded): for the log of unknown customers
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DealRecord:
    """One deal (opportunity, potential, sale order) as the store keeps it.

    ``stage`` is one of :data:`DEAL_STAGES`; ``closed_at`` (epoch, UTC) when the CRM keeps the
    exact time, else ``closed_on`` (a calendar day, read in the panel's zone). ``currency`` ""
    means the CRM's own currency (the connector's ``deals.currency``). ``parties``: the most
    specific first (the contact before the company)."""

    module: str
    record_id: str
    title: str
    stage: str
    amount: float | None = None
    currency: str = ""
    closed_on: date | None = None
    closed_at: float | None = None
    created_at: float | None = None
    product: str = ""
    lost_reason: str = ""
    owner: str | None = None  # the gateway agent the CRM owner maps to (``users:``)
    parties: tuple[DealParty, ...] = ()
    deleted: bool = False  # the CRM reports it deleted: the deal goes from the store at once


@dataclass(frozen=True, slots=True)
class DealPage:
    """One pull of deals; the same contract as :class:`DirectoryPage`."""

    records: Sequence[DealRecord]
    cursor: str
    more: bool


@runtime_checkable
class DealSource(Protocol):
    """A connector that can hand its CRM's deals to the store (``gateway/directory/deals.py``).

    ``pull_deals`` keeps the contract of :meth:`DirectorySource.pull`: up to ``limit`` deals
    of ``module`` changed after ``cursor`` ("" = from the beginning) in (modification time,
    id) order, and a cursor to resume after them; deletions the CRM cannot report are swept
    by the periodic full pass."""

    name: str

    def deal_modules(self) -> Sequence[str]: ...

    async def pull_deals(self, module: str, cursor: str, limit: int) -> DealPage: ...


# the stock sales stages of SugarCRM/SuiteCRM and vTiger (same list; vTiger writes "or" for "/")
_PIPELINE = {
    "prospecting": "qualification",
    "qualification": "qualification",
    "needs analysis": "qualification",
    "value proposition": "proposal",
    "id. decision makers": "proposal",
    "perception analysis": "proposal",
    "proposal/price quote": "proposal",
    "proposal or price quote": "proposal",
    "negotiation/review": "negotiation",
    "negotiation or review": "negotiation",
    "closed won": "won",
    "closed lost": "lost",
}


def pipeline_stage(sales_stage: str) -> str:
    """The store's stage for a CRM's ``sales_stage``; a stage an administrator added is
    placed by its words ("Closed Won - paid" is won), else it counts as open (qualification)."""
    text = " ".join(sales_stage.lower().split())
    if text in _PIPELINE:
        return _PIPELINE[text]
    words = set(re.findall(r"[a-z]+", text))
    if "won" in words:
        return "won"
    if "lost" in words:
        return "lost"
    if "negotiat" in text:
        return "negotiation"
    if "proposal" in text or "quote" in text:
        return "proposal"
    return "qualification"


def deal_amount(text: object) -> float | None:
    """An amount as a CRM answers it ("1500.00000000", 1500, "" or false): None when it is
    none, negative or absurd (the store keeps 0 to 10^12)."""
    if isinstance(text, bool) or text is None:
        return None
    try:
        value = float(str(text).strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and 0 <= value <= 1e12 else None
