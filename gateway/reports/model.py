"""What a report is asked (:class:`ReportQuery`) and what it answers, as msgspec structs.

The API, its OpenAPI document, the charts and the exports all read these shapes. Every report
function returns ``msgspec.to_builtins`` of one of the ``*Report`` structs below (a dict).
Rates are fractions (0-1) and durations seconds; ``None`` where there is nothing to divide.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

import msgspec

GroupBy = Literal["day", "hour", "weekday", "queue", "agent", "did", "campaign", "disposition"]
GROUP_BY: tuple[str, ...] = GroupBy.__args__  # type: ignore[attr-defined]

# a year and a bit: a range longer than this is refused (the store keeps years of calls)
MAX_DAYS = 400

Filter = Annotated[str, msgspec.Meta(min_length=1, max_length=80)]


class ReportQuery(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """One report's range and filters: ``start``..``end`` are calendar days (both included)
    in ``panel.timezone``; each filter given narrows the calls (or leads) counted."""

    start: date
    end: date
    queue: Filter | None = None
    agent: Filter | None = None  # an extension
    did: Filter | None = None
    campaign_id: Annotated[int, msgspec.Meta(ge=1)] | None = None
    group_by: GroupBy = "day"

    def check(self) -> None:
        """Raise ValueError naming the field when the range is backwards or too long."""
        if self.end < self.start:
            raise ValueError("end: must be on or after start")
        if (self.end - self.start).days + 1 > MAX_DAYS:
            raise ValueError(f"end: a report covers at most {MAX_DAYS} days")


class SummaryRow(msgspec.Struct, kw_only=True):
    """The call figures of one group (a day, an hour, a queue, an agent...) or the total."""

    key: str  # the group's value as the query names it: "2025-03-01", "14", "sales", "101"
    label: str  # what a person reads ("Saturday" is the chart's job: here "5")
    offered: int = 0  # inbound calls
    answered: int = 0
    missed: int = 0  # offered - answered (abandoned, no answer, busy, failed)
    abandoned: int = 0  # the caller hung up while it rang or waited
    short_abandoned: int = 0  # ... within panel.short_abandon_seconds (left out of the SL)
    answer_rate: float | None = None  # answered / offered
    # answered within panel.service_level_seconds / (offered - short_abandoned)
    service_level: float | None = None
    asa: float | None = None  # average speed of answer: mean queue wait of the answered
    aht: float | None = None  # average handle time: talk + after-call work of the answered
    aht_p90: float | None = None
    ring_no_answer: int = 0  # an agent's phone rang and another (or nobody) took the call
    transfers: int = 0
    callbacks: int = 0  # missed calls whose number was called back later
    callback_median_s: float | None = None  # missed -> the call back started
    click_to_call: int = 0  # click-to-call attempts (outbound)
    click_to_call_connected: int = 0  # ... that the customer answered
    outbound: int = 0  # every outbound call (click-to-call or dialed)
    outbound_answered: int = 0


class SummaryReport(msgspec.Struct, kw_only=True):
    query: ReportQuery
    timezone: str
    rows: list[SummaryRow]
    totals: SummaryRow


class HeatCell(msgspec.Struct, kw_only=True):
    weekday: int  # 0 = Monday
    hour: int  # 0-23, local time
    missed: int
    offered: int


class HeatmapReport(msgspec.Struct, kw_only=True):
    query: ReportQuery
    timezone: str
    cells: list[HeatCell]  # all 168, Monday 00 first


class CountRow(msgspec.Struct, kw_only=True):
    key: str
    label: str
    count: int


class DispositionReport(msgspec.Struct, kw_only=True):
    query: ReportQuery
    rows: list[CountRow]  # most used first; "" is the answered calls nobody wrapped up
    total: int


# -- sales ---------------------------------------------------------------------------------


class LeadsRow(msgspec.Struct, kw_only=True):
    period: str  # "2025-03-01" (day) or "2025-W09" (week), local time
    source: str  # web_form, inbound_call, import, api, "" (unknown)
    status: str  # the lead's status now
    count: int


class LeadsOverTimeReport(msgspec.Struct, kw_only=True):
    query: ReportQuery
    timezone: str
    period: Literal["day", "week"]
    rows: list[LeadsRow]
    total: int


class FirstContactReport(msgspec.Struct, kw_only=True):
    """Created -> first answered call with the lead (or first call made to it when none)."""

    query: ReportQuery
    leads: int  # leads created in the range
    contacted: int  # ... with a first contact
    median_s: float | None
    p90_s: float | None


class FunnelStage(msgspec.Struct, kw_only=True):
    key: Literal["lead", "contacted", "qualified", "won"]
    count: int
    rate: float | None  # of the stage before (the first: None)
    rate_of_leads: float | None


class FunnelReport(msgspec.Struct, kw_only=True):
    query: ReportQuery
    stages: list[FunnelStage]


class PipelineRow(msgspec.Struct, kw_only=True):
    stage: str
    deals: int
    amount: dict[str, float]  # currency -> sum


class PipelineReport(msgspec.Struct, kw_only=True):
    query: ReportQuery
    rows: list[PipelineRow]
    won: int
    lost: int
    win_rate: float | None  # won / (won + lost), of the deals created in the range


class LostRow(msgspec.Struct, kw_only=True):
    reason: str  # "" = no reason given
    count: int


class LostReport(msgspec.Struct, kw_only=True):
    query: ReportQuery
    rows: list[LostRow]
    total: int


# -- best hour -----------------------------------------------------------------------------


class HourCell(msgspec.Struct, kw_only=True):
    """One local weekday x hour: outbound calls made and answered (by the lead or the
    group), and the estimated answer rate."""

    weekday: int  # 0 = Monday
    hour: int
    attempts: int
    answered: int
    rate: float  # posterior mean: (answered + w x prior) / (attempts + w), a Beta prior


class HourRate(msgspec.Struct, kw_only=True):
    """One hour of the day, every weekday together."""

    hour: int
    attempts: int
    answered: int
    rate: float


class BestHourPrior(msgspec.Struct, kw_only=True):
    """What each rate starts from before the calls counted: ``overall`` (a group): the overall
    outbound answer rate; ``everybody`` (one lead): everybody's rate for that weekday and hour
    (or hour), itself pulled toward the overall rate. ``weight``: how many calls it is worth."""

    kind: Literal["overall", "everybody"]
    rate: float | None  # the overall outbound answer rate of the year (None: nobody called)
    weight: float
    attempts: int  # everybody's outbound calls in the year, behind ``rate``


class BestHourReport(msgspec.Struct, kw_only=True):
    """When to call a lead, a segment or anybody: the last year's outbound calls per local
    weekday x hour (``cells``, Monday 00 first) and per hour (``hours``), in ``timezone``."""

    timezone: str
    scope: Literal["lead", "segment", "everybody"]
    prior_rate: float | None  # the overall outbound answer rate (= prior.rate)
    prior: BestHourPrior
    attempts: int  # the lead's or group's outbound calls
    answered: int
    cells: list[HourCell]  # all 168
    hours: list[HourRate]  # all 24
    best: list[HourCell]  # the top 3 slots anybody of the scope (a lead: or anybody) was called
    best_hour: HourRate | None  # the hour to call (None: nobody was ever called)
