"""Sales reports (leads, first contact, funnel, pipeline, lost reasons) and the best hour to call.

Leads are the store's ``people`` of kind ``lead``, counted on the local day (``panel.timezone``)
they were **created**, whatever the lead's own zone. What the query's filters mean here (a
sales report is about leads and deals, not calls, so each filter is read as the leads it picks):

* ``campaign_id``: the leads that were members of that campaign;
* ``agent`` (an extension, as in the call reports, or a user name): the leads **owned** by the
  panel user with that extension (among their default extensions) or that name; the pipeline
  counts the deals that user owns;
* ``queue`` / ``did``: the leads whose **first inbound call** came through that queue / to
  that number: where the lead came from, as call tracking credits a lead to the number an
  advert showed (a lead who never called in is in no queue and no DID);
* ``group_by``: the sales reports have rows of their own (leads: per day, or per ISO week for
  ranges over two months); any value but the default ``day`` is refused, naming it.

Definitions:

* first contact: the first answered call with the lead (either way) that had not ended before
  the lead was created; a lead created during a call was contacted at once (0 s);
* funnel, of the leads created in the range: ``contacted`` (an answered call, or a status past
  ``new`` other than ``lost``), ``qualified`` (status ``qualified`` or ``won``, or a deal),
  ``won`` (status ``won`` or a won deal); each stage includes the ones after it;
* pipeline: deals created in the range by stage, amounts per currency, win rate = won / (won +
  lost);
* lost by reason: leads lost (``lost_at``) in the range by ``lost_reason``;
* best hour: outbound calls' answer rate per local weekday x hour and per hour over the last
  365 days, smoothed as :mod:`gateway.intel.besthour` says (a group toward the overall rate,
  one lead toward everybody's rate for each slot and hour).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from datetime import UTC, date, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

import msgspec

from gateway.intel.besthour import (
    HISTORY_DAYS,
    PERSON_WEIGHT,
    PRIOR_WEIGHT,
    UNKNOWN_RATE,
    AnswerProfile,
    Tally,
    by_hour,
    person_hours,
)
from gateway.intel.besthour import best_hour as besthour_of
from gateway.panel.settings import PanelSettings
from gateway.reports.calls import _key_sql, local_bounds, offset_sql, whole_hours
from gateway.reports.model import (
    BestHourPrior,
    BestHourReport,
    FirstContactReport,
    FunnelReport,
    FunnelStage,
    HourCell,
    HourRate,
    LeadsOverTimeReport,
    LeadsRow,
    LostReport,
    LostRow,
    PipelineReport,
    PipelineRow,
    ReportQuery,
)
from gateway.store.db import Database, SqlParam
from gateway.store.deals import STAGES

WEEKLY_AFTER_DAYS = 62  # leads over time: per day up to two months, then per ISO week
_ANSWERED = "('answered', 'transferred')"
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def check_query(q: ReportQuery) -> None:
    """``q.check()``, and refuse (ValueError naming the field) what the sales reports cannot
    honour."""
    q.check()
    if q.group_by != "day":
        raise ValueError(
            "group_by: the sales reports are not grouped (leads are per day, or per ISO week"
            " over two months); leave group_by out"
        )


def _first_inbound(column: str, person: str) -> str:
    return (
        f"(SELECT c.{column} FROM calls c WHERE c.person_id = {person}"
        " AND c.direction = 'inbound' ORDER BY c.started_at LIMIT 1)"
    )


def _owned_by(owner: str) -> str:
    """``owner`` (a column of user names) is the user named, or a user with the extension."""
    return (
        f"({owner} = ? OR {owner} IN (SELECT u.username FROM users u"
        " WHERE EXISTS (SELECT 1 FROM json_each(CASE WHEN json_valid(u.extensions)"
        " THEN u.extensions ELSE '[]' END) e WHERE CAST(e.value AS TEXT) = ?)))"
    )


def _filters(q: ReportQuery, person: str, owner: str | None = None) -> tuple[str, list[SqlParam]]:
    """The query's filters as `` AND ...`` over the lead column ``person`` (see the module's
    docstring); ``owner``: the column the agent filter reads (default: the lead's owner).
    Both named with their table: inside the filters' subqueries a bare ``id`` or
    ``person_id`` would be the ``calls`` row's."""
    sql = ""
    args: list[SqlParam] = []
    if q.campaign_id is not None:
        sql += f" AND {person} IN (SELECT person_id FROM campaign_members WHERE campaign_id = ?)"
        args.append(q.campaign_id)
    if q.agent is not None:
        if owner is None:
            sql += f" AND {person} IN (SELECT o.id FROM people o WHERE {_owned_by('o.owner')})"
        else:
            sql += f" AND {_owned_by(owner)}"
        args += [q.agent, q.agent]
    for column, value in (("queue", q.queue), ("did", q.did)):
        if value is not None:
            sql += f" AND {_first_inbound(column, person)} = ?"
            args.append(value)
    return sql, args


def _percentile(values: list[float], share: float) -> float | None:
    """Nearest rank: the smallest value with ``share`` of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-int(share * 100) * len(ordered) // 100))
    return ordered[rank - 1]


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b > 0 else None


async def leads_over_time(db: Database, q: ReportQuery, settings: PanelSettings) -> dict[str, Any]:
    """New leads per local day (ISO week for ranges over two months) by source and status."""
    check_query(q)
    tz = ZoneInfo(settings.timezone)
    since, until = local_bounds(q, tz)
    extra, more = _filters(q, "people.id")
    day = _key_sql("day", offset_sql(since, until, tz, "created_at"), "created_at")
    rows = await db.conn.execute_fetchall(
        f"SELECT {day} AS d, coalesce(source, '') AS source, coalesce(status, '') AS status,"
        " count(*) AS n FROM people WHERE kind = 'lead' AND created_at >= ? AND created_at < ?"
        f"{extra} GROUP BY d, source, status",
        [since, until, *more],
    )
    period: Literal["day", "week"] = (
        "week" if (q.end - q.start).days + 1 > WEEKLY_AFTER_DAYS else "day"
    )
    counts: dict[tuple[str, str, str], int] = defaultdict(int)
    for r in rows:
        d = date.fromordinal(_EPOCH_ORDINAL + int(r["d"]))
        if period == "week":
            year, week, _ = d.isocalendar()
            key = f"{year}-W{week:02d}"
        else:
            key = d.isoformat()
        counts[(key, r["source"], r["status"])] += int(r["n"])
    out = [
        LeadsRow(period=k[0], source=k[1], status=k[2], count=n) for k, n in sorted(counts.items())
    ]
    report = LeadsOverTimeReport(
        query=q, timezone=settings.timezone, period=period, rows=out,
        total=sum(r.count for r in out),
    )  # fmt: skip
    return msgspec.to_builtins(report)  # type: ignore[no-any-return]


async def _first_contacts(
    db: Database, q: ReportQuery, settings: PanelSettings
) -> list[tuple[int, str, float | None, int]]:
    """(lead id, status, seconds to first contact or None, has a deal (0/1: won 2))."""
    since, until = local_bounds(q, ZoneInfo(settings.timezone))
    extra, more = _filters(q, "p.id")
    rows = await db.conn.execute_fetchall(
        "SELECT p.id, coalesce(p.status, '') AS status,"
        " (SELECT max(min(c.started_at) - p.created_at, 0) FROM calls c"
        "   WHERE c.person_id = p.id AND c.outcome IN " + _ANSWERED + ""
        "     AND coalesce(c.ended_at, c.started_at) >= p.created_at) AS delay,"
        " (SELECT max(CASE WHEN d.stage = 'won' THEN 2 ELSE 1 END) FROM deals d"
        "   WHERE d.person_id = p.id) AS deal"
        " FROM people p WHERE p.kind = 'lead' AND p.created_at >= ? AND p.created_at < ?" + extra,
        [since, until, *more],
    )
    return [(r["id"], r["status"], r["delay"], int(r["deal"] or 0)) for r in rows]


async def time_to_first_contact(
    db: Database, q: ReportQuery, settings: PanelSettings
) -> dict[str, Any]:
    """Median and 90th percentile of created -> first answered call, of the range's leads."""
    check_query(q)
    leads = await _first_contacts(db, q, settings)
    delays = [float(d) for _, _, d, _ in leads if d is not None]
    median = round(statistics.median(delays), 1) if delays else None
    p90 = _percentile(delays, 0.9)
    report = FirstContactReport(
        query=q, leads=len(leads), contacted=len(delays), median_s=median,
        p90_s=round(p90, 1) if p90 is not None else None,
    )  # fmt: skip
    return msgspec.to_builtins(report)  # type: ignore[no-any-return]


async def funnel(db: Database, q: ReportQuery, settings: PanelSettings) -> dict[str, Any]:
    """Lead -> contacted -> qualified -> won, of the leads created in the range."""
    check_query(q)
    counts = {"lead": 0, "contacted": 0, "qualified": 0, "won": 0}
    for _, status, delay, deal in await _first_contacts(db, q, settings):
        won = status == "won" or deal == 2
        qualified = won or status == "qualified" or deal > 0
        contacted = qualified or delay is not None or status in ("contacted", "nurturing")
        counts["lead"] += 1
        counts["contacted"] += contacted
        counts["qualified"] += qualified
        counts["won"] += won
    stages: list[FunnelStage] = []
    before: int | None = None
    for key in ("lead", "contacted", "qualified", "won"):
        n = counts[key]
        stages.append(
            FunnelStage(
                key=key,
                count=n,
                rate=_ratio(n, before) if before is not None else None,
                rate_of_leads=_ratio(n, counts["lead"]),
            )
        )
        before = n
    return msgspec.to_builtins(FunnelReport(query=q, stages=stages))  # type: ignore[no-any-return]


async def pipeline(db: Database, q: ReportQuery, settings: PanelSettings) -> dict[str, Any]:
    """Deals created in the range by stage (every stage listed), amounts per currency."""
    check_query(q)
    since, until = local_bounds(q, ZoneInfo(settings.timezone))
    extra, more = _filters(q, "deals.person_id", owner="deals.owner")
    rows = await db.conn.execute_fetchall(
        "SELECT stage, currency, count(*) AS n, total(amount) AS amount FROM deals"
        f" WHERE created_at >= ? AND created_at < ?{extra} GROUP BY stage, currency",
        [since, until, *more],
    )
    by_stage: dict[str, PipelineRow] = {s: PipelineRow(stage=s, deals=0, amount={}) for s in STAGES}
    for r in rows:
        row = by_stage.setdefault(r["stage"], PipelineRow(stage=r["stage"], deals=0, amount={}))
        row.deals += int(r["n"])
        row.amount[r["currency"]] = round(row.amount.get(r["currency"], 0.0) + r["amount"], 2)
    won, lost = by_stage["won"].deals, by_stage["lost"].deals
    report = PipelineReport(
        query=q, rows=list(by_stage.values()), won=won, lost=lost,
        win_rate=_ratio(won, won + lost),
    )  # fmt: skip
    return msgspec.to_builtins(report)  # type: ignore[no-any-return]


async def lost_by_reason(db: Database, q: ReportQuery, settings: PanelSettings) -> dict[str, Any]:
    """Leads lost in the range, most common reason first (``""``: no reason given)."""
    check_query(q)
    since, until = local_bounds(q, ZoneInfo(settings.timezone))
    extra, more = _filters(q, "people.id")
    rows = await db.conn.execute_fetchall(
        "SELECT lost_reason AS reason, count(*) AS n FROM people"
        " WHERE kind = 'lead' AND status = 'lost' AND lost_at >= ? AND lost_at < ?"
        f"{extra} GROUP BY lost_reason",
        [since, until, *more],
    )
    out = sorted(
        (LostRow(reason=r["reason"], count=int(r["n"])) for r in rows),
        key=lambda r: (r.reason == "", -r.count, r.reason),
    )
    report = LostReport(query=q, rows=out, total=sum(r.count for r in out))
    return msgspec.to_builtins(report)  # type: ignore[no-any-return]


_SLOTS = [(d, h) for d in range(7) for h in range(24)]  # Monday 00:00 first

# a group of people as a WHERE over ``people p`` and its parameters (a segment's: segment_where)
PeopleWhere = tuple[str, list[SqlParam]]


async def answer_profile(
    db: Database,
    tz: ZoneInfo,
    who: int | PeopleWhere | None = None,
    *,
    now: float | None = None,
    rollups: bool = True,
) -> AnswerProfile:
    """Outbound calls made and answered per local weekday x hour in ``tz`` over the
    :data:`~gateway.intel.besthour.HISTORY_DAYS` before ``now``: of one person (an id), of a
    group (a WHERE over ``people p``) or of everybody (None). Everybody's is read from the
    hourly report rollups where they can answer (``rollups=False``: from the facts)."""
    now = db.clock() if now is None else now
    since = now - HISTORY_DAYS * 86400.0
    if who is None:
        if rollups:
            rolled = await _everybody_rolled(db, tz, since, now)
            if rolled is not None:
                return rolled
        return await _everybody_facts(db, tz, since, now)
    off = offset_sql(since, now, tz)
    wd, hr = _key_sql("weekday", off), _key_sql("hour", off)
    args: list[SqlParam] = [since, now]
    if isinstance(who, int):
        person = "person_id = ?"
        args.append(who)
    else:
        person = f"person_id IN (SELECT p.id FROM people p WHERE {who[0]})"
        args += who[1]
    sql = (
        f"SELECT {wd} AS wd, {hr} AS h, count(*) AS n, sum(outcome IN {_ANSWERED}) AS a"
        " FROM calls WHERE direction = 'outbound' AND started_at >= ? AND started_at < ?"
        f" AND {person} GROUP BY wd, h"
    )
    return _profile(await db.conn.execute_fetchall(sql, args))


def _profile(rows: Any) -> AnswerProfile:
    return AnswerProfile(
        {(int(r["wd"]), int(r["h"])): Tally(int(r["n"]), int(r["a"] or 0)) for r in rows}
    )


async def _everybody_facts(db: Database, tz: ZoneInfo, since: float, until: float) -> AnswerProfile:
    """Everybody's outbound calls from the narrow facts table (every call of the range)."""
    off = offset_sql(since, until, tz)
    wd, hr = _key_sql("weekday", off), _key_sql("hour", off)
    rows = await db.conn.execute_fetchall(
        f"SELECT {wd} AS wd, {hr} AS h, count(*) AS n, sum(answered) AS a FROM call_facts"
        " WHERE dir = 1 AND started_at >= ? AND started_at < ? GROUP BY wd, h",
        (since, until),
    )
    return _profile(rows)


async def _everybody_rolled(
    db: Database, tz: ZoneInfo, since: float, until: float
) -> AnswerProfile | None:
    """Everybody's outbound calls: the whole UTC hours of the range from ``report_hours``
    (migration 0016: a year is 8,760 rows to sum, where the facts are every call of it, 2 s
    at 5,000,000 calls), the part-hours at its ends from the facts. None where a local hour
    is not one UTC hour (half-hour zones): then the facts answer it all."""
    first, last = math.ceil(since / 3600), math.floor(until / 3600)
    if last <= first or not whole_hours(first * 3600.0, last * 3600.0, tz):
        return None
    column = "hour * 3600"
    off = offset_sql(first * 3600.0, last * 3600.0, tz, column=column)
    wd, hr = _key_sql("weekday", off, column), _key_sql("hour", off, column)
    rows = await db.conn.execute_fetchall(
        f"SELECT {wd} AS wd, {hr} AS h, total(outbound) AS n, total(outbound_answered) AS a"
        " FROM report_hours WHERE kind = '' AND hour >= ? AND hour < ? GROUP BY wd, h",
        (first, last),
    )
    cells = dict(_profile(rows).cells)
    for edge in (
        await _everybody_facts(db, tz, since, first * 3600.0),
        await _everybody_facts(db, tz, last * 3600.0, until),
    ):
        for slot, tally in edge.cells.items():
            cells[slot] = cells.get(slot, Tally()) + tally
    return AnswerProfile({slot: t for slot, t in cells.items() if t.attempts})


def _ids(ids: list[int]) -> PeopleWhere:
    if not ids:
        return "1 = 0", []
    return f"p.id IN ({','.join('?' * len(ids))})", list(ids)


async def best_hour(
    db: Database,
    who: int | list[int] | PeopleWhere | None,
    settings: PanelSettings,
    *,
    now: float | None = None,
    everybody: AnswerProfile | None = None,
) -> dict[str, Any]:
    """When outbound calls to ``who`` (a lead's id; a group: ids or a WHERE over ``people
    p``; None: everybody) were answered most over the last year before ``now``, per local
    weekday x hour and per hour. ``everybody``: everybody's profile when the caller has it
    (the intel service measures it nightly), else it is counted here."""
    tz = ZoneInfo(settings.timezone)
    now = db.clock() if now is None else now
    if everybody is None:
        everybody = await answer_profile(db, tz, None, now=now)
    scope: Literal["lead", "segment", "everybody"]
    if who is None:
        scope, own = "everybody", everybody
    elif isinstance(who, int):
        scope, own = "lead", await answer_profile(db, tz, who, now=now)
    else:
        where = _ids(who) if isinstance(who, list) else who
        scope, own = "segment", await answer_profile(db, tz, where, now=now)
    overall = everybody.overall_rate
    base = overall if overall is not None else UNKNOWN_RATE
    anybody = everybody.overall.attempts > 0
    mine = own.overall
    hour_tallies = by_hour(own.cells)
    if scope == "lead":
        # a lead leans on everybody's rate for each slot and hour (never called: those are
        # its rates); nobody else ever called: on its own overall rate
        fallback = mine.answered / mine.attempts if mine.attempts else UNKNOWN_RATE
        priors = {s: everybody.slot_rate(s) if anybody else fallback for s in _SLOTS}
        person = person_hours(own.cells, everybody)
        hour_rates = list(person.rates)
        weight = PERSON_WEIGHT
        tried_cells = {k for k, t in everybody.cells.items() if t.attempts} | set(own.cells)
        tried_hours = [
            a or b for a, b in zip(everybody.tried_hours(), own.tried_hours(), strict=True)
        ]
    else:
        priors = dict.fromkeys(_SLOTS, base)
        weight = PRIOR_WEIGHT
        hour_rates = [t.rate(base, weight) for t in hour_tallies]
        tried_cells = {k for k, t in own.cells.items() if t.attempts}
        tried_hours = own.tried_hours()
    cells = []
    for d, h in _SLOTS:
        t = own.cells.get((d, h), Tally())
        rate = round(t.rate(priors[(d, h)], weight), 4)
        cells.append(
            HourCell(weekday=d, hour=h, attempts=t.attempts, answered=t.answered, rate=rate)
        )
    hours = [
        HourRate(hour=h, attempts=t.attempts, answered=t.answered, rate=round(hour_rates[h], 4))
        for h, t in enumerate(hour_tallies)
    ]
    ranked = [c for c in cells if (c.weekday, c.hour) in tried_cells]
    best = sorted(ranked, key=lambda c: (-c.rate, -c.attempts, c.weekday, c.hour))[:3]
    top = besthour_of(hour_rates, [t.attempts for t in hour_tallies], tried_hours)
    prior = BestHourPrior(
        kind="everybody" if scope == "lead" else "overall",
        rate=round(overall, 4) if overall is not None else None,
        weight=weight,
        attempts=everybody.overall.attempts,
    )
    report = BestHourReport(
        timezone=settings.timezone, scope=scope, prior_rate=prior.rate, prior=prior,
        attempts=mine.attempts, answered=mine.answered, cells=cells, hours=hours, best=best,
        best_hour=hours[top] if top is not None else None,
    )  # fmt: skip
    return msgspec.to_builtins(report)  # type: ignore[no-any-return]


def local_day(at: float, tz: ZoneInfo) -> date:
    """The calendar day of ``at`` in ``tz`` (tests and callers bucketing one instant)."""
    return datetime.fromtimestamp(at, UTC).astimezone(tz).date()
