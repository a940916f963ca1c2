"""The small interface every external CRM connector implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
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
