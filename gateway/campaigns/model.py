"""What a campaign is: a segment (which leads), a sequence of steps (what to do with each).

These structs are the one definition of a campaign: the API decodes request bodies with them,
the OpenAPI document is derived from them, the store keeps them as JSON, the panel edits them
and the scheduler runs them. Validation that types alone cannot express is in
:func:`check_campaign` (branch targets, template syntax is checked by the mail module).
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Literal

import msgspec

from gateway.store.models import LeadSource, LeadStatus


class CampaignStatus(StrEnum):
    DRAFT = "draft"  # being written; nobody enters
    RUNNING = "running"  # leads enter and steps run
    PAUSED = "paused"  # members hold where they are; nobody enters
    ENDED = "ended"  # for good: members left with reason "ended"


class LeaveReason(StrEnum):
    """Why a member left a campaign (campaign_members.left_reason)."""

    COMPLETED = "completed"  # ran every step, or a stop step
    CONVERTED = "converted"  # the lead was won
    REPLIED = "replied"  # answered an e-mail
    UNSUBSCRIBED = "unsubscribed"  # the link, one-click, or an agent on their behalf
    DO_NOT_CALL = "do_not_call"  # asked not to be contacted at all
    NO_LONGER_MATCHES = "no_longer_matches"  # left the segment (e.g. status changed by hand)
    ENDED = "ended"  # the campaign was ended
    REMOVED = "removed"  # taken out by a supervisor
    UNREACHABLE = "unreachable"  # no address or number the step could use


class RunStatus(StrEnum):
    """What one step did for one member (campaign_step_runs.status)."""

    SENDING = "sending"  # claimed; the SMTP conversation is under way
    SENT = "sent"  # e-mail accepted by the SMTP server
    FAILED = "failed"  # e-mail not sent (4xx or no server); not retried by this step
    BOUNCED = "bounced"  # the server refused the address (5xx): the address is marked
    UNKNOWN = "unknown"  # 'sending' found after a crash: maybe sent, never sent again
    SKIPPED = "skipped"  # nothing to do: no address, opted out, do-not-call
    TASK_CREATED = "task_created"  # call task in a worklist, waiting for the call
    CALLED = "called"  # call task done: call_outcome / disposition set
    EXPIRED = "expired"  # call task not done in time
    DONE = "done"  # wait, branch, set, stop


# -- the segment ---------------------------------------------------------------------------

Score = Annotated[float, msgspec.Meta(ge=0, le=10)]
Country = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{2}$")]
Tag = Annotated[str, msgspec.Meta(min_length=1, max_length=60)]

# why deals are lost, as the product's source material names them; lost_reason stays free
# text (imports and CRMs bring others) and a segment may name any value
LOST_REASONS = ("not_ready", "no_budget", "competitor", "no_rapport", "contact_left")


RfmSegment = Literal[
    "champions",
    "loyal",
    "new_customer",
    "promising",
    "needs_attention",
    "at_risk",
    "about_to_sleep",
    "hibernating",
    "prospect",
]


class Segment(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """A saved filter over people. Empty lists and None mean "any"; all given conditions must
    hold. Dates are calendar days in the gateway's time zone (panel.timezone), inclusive."""

    kinds: list[Literal["lead", "contact"]] = msgspec.field(default_factory=lambda: ["lead"])
    statuses: list[LeadStatus] = msgspec.field(default_factory=list)
    lost_reasons: list[str] = msgspec.field(default_factory=list)
    lost_from: date | None = None  # lost on or after
    lost_to: date | None = None  # lost on or before
    score_min: Score | None = None
    score_max: Score | None = None
    sources: list[LeadSource] = msgspec.field(default_factory=list)
    owners: list[str] = msgspec.field(default_factory=list)  # "" in the list: nobody's
    last_activity_before: date | None = None  # no activity since (or never any)
    last_activity_after: date | None = None  # some activity on or after
    tags: list[Tag] = msgspec.field(default_factory=list)  # has every one of these
    countries: list[Country] = msgspec.field(default_factory=list)
    # qualification answers (panel.qualification): question id -> accepted choice ids
    answers: dict[str, list[str]] = msgspec.field(default_factory=dict)
    # customer metrics (gateway/intel/): RFM segment in the list; churn risk within 30 days
    rfm_segments: list[RfmSegment] = msgspec.field(default_factory=list)
    churn_risk_min: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None


# -- the steps -----------------------------------------------------------------------------

Language = Annotated[str, msgspec.Meta(pattern=r"^[a-z]{2}$")]


class _Step(
    msgspec.Struct, tag_field="kind", forbid_unknown_fields=True, kw_only=True, frozen=True
):
    """A step of the sequence; its ``kind`` (the tag) says which."""


class EmailTemplate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """One language's version of an e-mail: Jinja2 with the lead's fields (autoescaped HTML);
    the plain-text part is rendered from ``text`` or, when empty, derived from the HTML."""

    subject: Annotated[str, msgspec.Meta(min_length=1, max_length=300)]
    html: Annotated[str, msgspec.Meta(min_length=1, max_length=200_000)]
    text: str = ""


class SendEmail(_Step, tag="email", frozen=True):
    """Send an e-mail in the lead's language (falling back to the campaign's)."""

    templates: dict[Language, EmailTemplate]


class CallTask(_Step, tag="call", frozen=True):
    """Put a call task in a worklist and wait (up to ``expire_days``) for the call."""

    title: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    # owner: the lead's owner (the pool when nobody owns it); pool: the agent with the
    # fewest open campaign tasks among ``pool``; different_agent: from the pool, not the
    # agent of the member's last call
    assign: Literal["owner", "pool", "different_agent"] = "owner"
    pool: list[str] = msgspec.field(default_factory=list)
    expire_days: Annotated[float, msgspec.Meta(gt=0, le=90)] = 7.0
    # 0: the task is due at once; N: due at the lead's best hour to call (the best_hour
    # metric, gateway/intel/besthour.py) within the next N days, in business hours; it
    # expires ``expire_days`` after that
    best_hour_within_days: Annotated[float, msgspec.Meta(ge=0, le=14)] = 0.0


class Wait(_Step, tag="wait", frozen=True):
    """Wait this long; the next step then runs at the next business hour."""

    days: Annotated[float, msgspec.Meta(ge=0, le=365)] = 0.0
    hours: Annotated[float, msgspec.Meta(ge=0, le=24 * 365)] = 0.0


class WaitUntil(_Step, tag="wait_until", frozen=True):
    """Wait until the next ``weekday`` (0 = Monday; None = any day) at ``hour`` in the lead's
    time zone."""

    weekday: Annotated[int, msgspec.Meta(ge=0, le=6)] | None = None
    hour: Annotated[int, msgspec.Meta(ge=0, le=23)] = 10
    minute: Annotated[int, msgspec.Meta(ge=0, le=59)] = 0


ConditionKind = Literal[
    "opened",  # the last e-mail was opened
    "replied",  # the last e-mail was answered
    "answered_call",  # the last call task's call was answered
    "disposition",  # the last call task's disposition is one of ``values``
    "score_at_least",  # the lead's score >= ``value``
    "status",  # the lead's status is one of ``values``
]


class Condition(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    kind: ConditionKind
    value: float | None = None
    values: list[str] = msgspec.field(default_factory=list)


class Branch(_Step, tag="branch", frozen=True):
    """Go to step ``then`` when the condition holds, else to ``otherwise``. Targets are step
    indexes after this one (no loops: each step runs at most once per member) or "stop";
    None means the next step."""

    condition: Condition
    then: int | Literal["stop"] | None = None
    otherwise: int | Literal["stop"] | None = None


class SetFields(_Step, tag="set", frozen=True):
    """Change the lead: status, owner, manual scoring inputs (0-10), tags to add."""

    status: LeadStatus | None = None
    owner: str | None = None
    score_inputs: dict[str, Score] = msgspec.field(default_factory=dict)
    add_tags: list[Tag] = msgspec.field(default_factory=list)


class Stop(_Step, tag="stop", frozen=True):
    """Leave the campaign (completed)."""


Step = SendEmail | CallTask | Wait | WaitUntil | Branch | SetFields | Stop


# -- the campaign --------------------------------------------------------------------------


class CampaignIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """A campaign as written by a supervisor (API body, panel form, stored definition)."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=120)]
    description: Annotated[str, msgspec.Meta(max_length=2000)] = ""
    segment: Segment = msgspec.field(default_factory=Segment)
    steps: Annotated[list[Step], msgspec.Meta(min_length=1, max_length=50)]
    # None: a lead enters once; N: a lead who left may enter again N days after leaving
    reentry_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] | None = None
    daily_email_cap: Annotated[int, msgspec.Meta(ge=1)] | None = None
    daily_call_cap: Annotated[int, msgspec.Meta(ge=1)] | None = None
    language: Language = "es"  # for leads whose language is unknown
    # the time zone for leads whose zone is unknown (no country, no number); None: the
    # gateway's (campaigns.default_timezone)
    timezone: str | None = None


class CheckError(ValueError):
    """A campaign that types accept but that cannot run: ``path`` names the field."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def check_campaign(c: CampaignIn) -> None:
    """Refuse what would fail at run time: branches going backwards or past the end, an
    e-mail step without the campaign's language, an unknown time zone."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    n = len(c.steps)
    for i, step in enumerate(c.steps):
        if isinstance(step, Branch):
            for name in ("then", "otherwise"):
                target = getattr(step, name)
                if isinstance(target, int) and not (i < target < n):
                    raise CheckError(
                        f"steps[{i}].{name}",
                        f"must be a later step (index {i + 1} to {n - 1}) or 'stop'",
                    )
            cond = step.condition
            if cond.kind == "score_at_least" and cond.value is None:
                raise CheckError(f"steps[{i}].condition.value", "a score is required")
            if cond.kind in ("disposition", "status") and not cond.values:
                raise CheckError(f"steps[{i}].condition.values", "name at least one value")
        if isinstance(step, SendEmail) and c.language not in step.templates:
            raise CheckError(
                f"steps[{i}].templates",
                f"needs a version in the campaign's language {c.language!r}",
            )
        if isinstance(step, CallTask) and step.assign != "owner" and not step.pool:
            raise CheckError(f"steps[{i}].pool", f"assign={step.assign!r} needs a pool of agents")
    if c.timezone is not None:
        try:
            ZoneInfo(c.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise CheckError("timezone", f"unknown time zone {c.timezone!r}") from None
    seg = c.segment
    if seg.score_min is not None and seg.score_max is not None and seg.score_min > seg.score_max:
        raise CheckError("segment.score_min", "must not be above score_max")
    if seg.lost_from and seg.lost_to and seg.lost_from > seg.lost_to:
        raise CheckError("segment.lost_from", "must not be after lost_to")


def step_kind(step: Step) -> str:
    """The step's tag ("email", "call", ...), as stored in campaign_step_runs.kind."""
    return str(type(step).__struct_config__.tag)
