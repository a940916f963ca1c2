"""Panel settings (the ``panel:`` section of the config): dispositions, limits, sessions."""

from __future__ import annotations

import msgspec


class Disposition(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    id: str  # stored in the call log
    label: str  # shown to the agent


DEFAULT_DISPOSITIONS = [
    Disposition(id="interested", label="Interested"),
    Disposition(id="call_back", label="Call back"),
    Disposition(id="not_interested", label="Not interested"),
    Disposition(id="wrong_number", label="Wrong number"),
    Disposition(id="resolved", label="Resolved"),
]


class PanelSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    dispositions: list[Disposition] = msgspec.field(
        default_factory=lambda: list(DEFAULT_DISPOSITIONS)
    )
    session_hours: float = 12.0  # one shift; then sign in again
    login_attempts: int = 5  # failed sign-ins per user name and address ...
    login_window: float = 300.0  # ... within this many seconds
    originate_limit: int = 6  # click-to-calls per agent ...
    originate_window: float = 60.0  # ... within this many seconds
    allowed_origins: list[str] = msgspec.field(default_factory=list)  # behind a proxy
    buffer_size: int = 256  # messages kept per agent for a reconnecting tab
    max_pending: int = 512  # unsent messages before a slow tab is disconnected
    followup_check_seconds: float = 30.0
