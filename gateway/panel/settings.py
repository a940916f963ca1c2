"""Panel settings (the ``panel:`` section of the config): dispositions, limits, sessions."""

from __future__ import annotations

from typing import Annotated

import msgspec

from gateway.panel.qualification import Question, check_questions, default_questions
from gateway.panel.wallboard import check_timezone

# a dialplan context name the gateway puts into Originate/Redirect/BlindTransfer actions
Context = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,80}$")]


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
    # after-call work: seconds an agent stays paused in the queues after an answered call to
    # write the wrap-up (saving it ends them early); 0 turns it off
    after_call_seconds: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 30.0
    # contexts of dialplan/centralita.conf used by the call controls and by listen/whisper/barge
    transfer_context: Context = "centralita-transfer"
    hold_context: Context = "centralita-hold"
    spy_context: Context = "centralita-spy"
    # the wallboard (gateway/panel/wallboard.py): answered within this many seconds counts
    # for the service level; abandons quicker than short_abandon_seconds are left out of it;
    # "today" is the calendar day in this time zone
    service_level_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 20.0
    short_abandon_seconds: Annotated[float, msgspec.Meta(ge=0, le=600)] = 5.0
    timezone: str = "Europe/Madrid"
    # the questions that qualify a lead on the call (gateway/panel/qualification.py)
    qualification: list[Question] = msgspec.field(default_factory=default_questions)

    def __post_init__(self) -> None:
        check_timezone(self.timezone)  # "timezone: unknown time zone 'Europe/Madird'"
        check_questions(self.qualification)
