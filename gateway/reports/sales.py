"""Sales reports (leads, first contact, funnel, pipeline, lost reasons) and the best hour to call.

Leads are the store's ``people`` of kind ``lead``, counted on the local day (``panel.timezone``)
they were **created**, whatever the lead's own zone. Of the query's filters the sales reports
honour ``campaign_id`` (the leads that were members of that campaign); queue, DID and agent are
about calls and are ignored here. Definitions:

* first contact: the first answered call with the lead (either way) that had not ended before
  the lead was created; a lead created during a call was contacted at once (0 s);
* funnel, of the leads created in the range: ``contacted`` (an answered call, or a status past
  ``new`` other than ``lost``), ``qualified`` (status ``qualified`` or ``won``, or a deal),
  ``won`` (status ``won`` or a won deal); each stage includes the ones after it;
* pipeline: deals created in the range by stage, amounts per currency, win rate = won / (won +
  lost);
* lost by reason: leads lost (``lost_at``) in the range by ``lost_reason``;
* best hour: outbound calls' answer rate per local weekday x hour, a Beta prior of
  :data:`PRIOR_WEIGHT` calls at the overall outbound answer rate (last 365 days) pulling the
  cells with few calls toward it.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import UTC, date, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

import msgspec

from gateway.panel.settings import PanelSettings
from gateway.reports.calls import _key_sql, local_bounds, offset_sql
from gateway.reports.model import (
    BestHourReport,
    FirstContactReport,
    FunnelReport,
    FunnelStage,
    HourCell,
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

PRIOR_WEIGHT = 10.0  # calls' worth of belief in the overall rate
WEEKLY_AFTER_DAYS = 62  # leads over time: per day up to two months, then per ISO week
_ANSWERED = "('answered', 'transferred')"
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def _campaign(q: ReportQuery, person: str) -> tuple[str, list[SqlParam]]:
    if q.campaign_id is None:
        return "", []
    return (
        f" AND {person} IN (SELECT person_id FROM campaign_members WHERE campaign_id = ?)",
        [q.campaign_id],
    )


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
    q.check()
    tz = ZoneInfo(settings.timezone)
    since, until = local_bounds(q, tz)
    extra, more = _campaign(q, "id")
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
    extra, more = _campaign(q, "p.id")
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
    q.check()
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
    q.check()
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
    q.check()
    since, until = local_bounds(q, ZoneInfo(settings.timezone))
    extra, more = _campaign(q, "person_id")
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
    q.check()
    since, until = local_bounds(q, ZoneInfo(settings.timezone))
    extra, more = _campaign(q, "id")
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


async def best_hour(
    db: Database,
    who: int | list[int] | None,
    settings: PanelSettings,
    *,
    now: float | None = None,
) -> dict[str, Any]:
    """The weekdays x hours when outbound calls to ``who`` (a person id, a segment's ids, or
    None: everybody) were answered most, over the last 365 days before ``now``."""
    tz = ZoneInfo(settings.timezone)
    now = db.clock() if now is None else now
    since = now - 365 * 86400.0
    (prior_row,) = list(
        await db.conn.execute_fetchall(
            "SELECT count(*) AS n, sum(answered) AS a FROM call_facts"
            " WHERE started_at >= ? AND started_at < ? AND dir = 1",
            (since, now),
        )
    )
    prior = prior_row["a"] / prior_row["n"] if prior_row["n"] else None
    off = offset_sql(since, now, tz)
    wd, hr = _key_sql("weekday", off), _key_sql("hour", off)
    where = "direction = 'outbound' AND started_at >= ? AND started_at < ?"
    args: list[SqlParam] = [since, now]
    if isinstance(who, int):
        where += " AND person_id = ?"
        args.append(who)
    elif who is not None:
        ids = [int(i) for i in who] or [-1]
        where += f" AND person_id IN ({','.join('?' * len(ids))})"
        args += ids
    if who is None:  # everybody: the narrow facts table answers the same
        sql = (
            f"SELECT {wd} AS wd, {hr} AS h, count(*) AS n, sum(answered) AS a FROM call_facts"
            " WHERE dir = 1 AND started_at >= ? AND started_at < ? GROUP BY wd, h"
        )
    else:
        sql = (
            f"SELECT {wd} AS wd, {hr} AS h, count(*) AS n,"
            f" sum(outcome IN {_ANSWERED}) AS a FROM calls WHERE {where} GROUP BY wd, h"
        )
    found = {(r["wd"], r["h"]): r for r in await db.conn.execute_fetchall(sql, args)}
    p = prior if prior is not None else 0.5
    a, b = PRIOR_WEIGHT * p, PRIOR_WEIGHT * (1 - p)
    cells = []
    for d in range(7):
        for h in range(24):
            r = found.get((d, h))
            n, ans = (int(r["n"]), int(r["a"] or 0)) if r else (0, 0)
            rate = (ans + a) / (n + a + b)
            cells.append(HourCell(weekday=d, hour=h, attempts=n, answered=ans, rate=round(rate, 4)))
    tried = [c for c in cells if c.attempts]
    best = sorted(tried, key=lambda c: (-c.rate, -c.attempts, c.weekday, c.hour))[:3]
    report = BestHourReport(
        timezone=settings.timezone, prior_rate=round(prior, 4) if prior is not None else None,
        attempts=sum(c.attempts for c in cells), cells=cells, best=best,
    )  # fmt: skip
    return msgspec.to_builtins(report)  # type: ignore[no-any-return]


def local_day(at: float, tz: ZoneInfo) -> date:
    """The calendar day of ``at`` in ``tz`` (tests and callers bucketing one instant)."""
    return datetime.fromtimestamp(at, UTC).astimezone(tz).date()
