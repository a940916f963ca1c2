"""The small interface every external CRM connector implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from gateway.errors import ConnectorError
from gateway.lookup.card import CallerCard


@dataclass(frozen=True, slots=True)
class ConnectorHealth:
    name: str
    last_success: float | None = None  # epoch seconds
    last_error: str | None = None
    last_error_at: float | None = None


class RecordRejected(ConnectorError):
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
