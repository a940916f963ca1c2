"""Call-center reports: offered, answered, missed, service level, handle time, call-backs...

Every figure is read from the facts tables of migration 0014 (``call_facts``, and
``call_agent_facts`` when the report is about agents), which triggers on ``calls`` keep up to
date. Definitions, the same as the wallboard's (``gateway/panel/wallboard.py``) where both
count a thing:

* a call counts in the day and hour it **started** (was offered), in ``panel.timezone``; so a
  call offered at 23:59 and answered at 00:01 is in the first day (the wallboard counts its
  answer on the second, when it happens);
* ``offered``: inbound calls; ``answered``: answered (or answered then transferred);
  ``missed``: the others; ``abandoned``: the caller hung up while it rang or waited, and
  ``short_abandoned`` when that took less than ``panel.short_abandon_seconds``;
* the wait of a call is its queue wait, else start -> answer (answered) or start -> end
  (abandoned); ``service_level``: answered within ``panel.service_level_seconds`` (wait <=
  threshold) over offered minus short abandons; ``asa``: mean wait of the answered;
* ``aht``: mean handle time of the answered inbound calls: talk + after-call work, where
  after-call work is from the end of the call to the first save of its wrap-up, capped by
  ``panel.after_call_seconds`` (the pause the panel puts the agent in), and the whole cap when
  no wrap-up was saved; ``aht_p90``: its 90th percentile (nearest rank, to the second);
* ``ring_no_answer``: a phone rang and did not take the call; ``callbacks``: missed calls
  whose number was called (outbound) within :data:`CALLBACK_WINDOW` seconds after;
* ``click_to_call``: click-to-call attempts, ``..._connected``: those the customer answered.

With an ``agent`` (filter or grouping) the figures are that agent's: the calls that rang it,
answered = the ones it took.

Most reports read the rollups of migration 0016 instead of the facts: the sums of every UTC
hour (and day) per dimension (:func:`_plan` says when a query's filters and grouping fit
one), a per-bin count of handle times that finds the 90th percentile with a look at one bin's
calls, and the call-backs found as calls are saved. They give the numbers the facts give
(the sums of seconds are added in another order, which can move only the last bit of a
double, far below the tenth of a second shown), but only for the thresholds they were built
with (``report_rollup_settings``; after a change :func:`refresh_rollups` rebuilds them in the
background) and only in zones whose offsets are whole hours; any other query reads the facts
as before (``rollups=False`` forces it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from gateway.panel.settings import PanelSettings
from gateway.reports.model import (
    CountRow,
    DispositionReport,
    HeatCell,
    HeatmapReport,
    ReportQuery,
    SummaryReport,
    SummaryRow,
)
from gateway.store.db import Database, SqlParam

log = logging.getLogger("gateway.reports")

# a call to the number later than this is not a call-back (also in migration 0016's triggers)
CALLBACK_WINDOW = 7 * 86400.0
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


# -- time ----------------------------------------------------------------------------------


def local_bounds(q: ReportQuery, tz: ZoneInfo) -> tuple[float, float]:
    """Epoch seconds of the local midnight starting ``q.start`` and ending ``q.end``."""
    first = datetime(q.start.year, q.start.month, q.start.day, tzinfo=tz)
    after = q.end + timedelta(days=1)
    last = datetime(after.year, after.month, after.day, tzinfo=tz)
    return first.timestamp(), last.timestamp()


def _offset(at: float, tz: ZoneInfo) -> int:
    off = datetime.fromtimestamp(at, UTC).astimezone(tz).utcoffset()
    return int(off.total_seconds()) if off is not None else 0


def _offset_changes(
    since: float, until: float, tz: ZoneInfo
) -> tuple[int, list[tuple[float, int]]]:
    """The zone's UTC offset at ``since`` and each change before ``until``: (from this instant,
    offset), found day by day, then to the second by bisection."""
    changes: list[tuple[float, int]] = []
    current = first = _offset(since, tz)
    t = since
    while t < until:
        nxt = min(t + 86400.0, until)
        off = _offset(nxt, tz)
        if off != current:
            lo, hi = t, nxt  # offset(lo) == current, offset(hi) != current
            while hi - lo > 1:
                mid = math.floor((lo + hi) / 2)
                lo, hi = (mid, hi) if _offset(mid, tz) == current else (lo, mid)
            changes.append((hi, off))
            current = off
        t = nxt
    return first, changes


def offset_sql(since: float, until: float, tz: ZoneInfo, column: str = "started_at") -> str:
    """An SQL expression of ``column`` (epoch seconds) giving the zone's UTC offset then, exact
    across the clock changes between ``since`` and ``until``, so local day, hour and weekday
    are computed in the query."""
    first, changes = _offset_changes(since, until, tz)
    if not changes:
        return str(first)
    cases = [f"WHEN {column} < {changes[0][0]!r} THEN {first}"]
    for i, (at, _) in enumerate(changes[1:], start=1):
        cases.append(f"WHEN {column} < {at!r} THEN {changes[i - 1][1]}")
    return f"(CASE {' '.join(cases)} ELSE {changes[-1][1]} END)"


def whole_hours(since: float, until: float, tz: ZoneInfo) -> bool:
    """True when every local hour between ``since`` and ``until`` is one UTC hour: the range
    starts and ends on UTC hours and the offsets, and the instants they change, are whole
    hours (not so in India, Nepal, Newfoundland, or anywhere before standard time)."""
    if since % 3600 or until % 3600:
        return False
    first, changes = _offset_changes(since, until, tz)
    return first % 3600 == 0 and all(at % 3600 == 0 and off % 3600 == 0 for at, off in changes)


def _key_sql(group_by: str, off: str, column: str = "started_at", prefix: str = "") -> str:
    local = f"({column} + {off})"
    if group_by == "day":
        return f"CAST({local} / 86400 AS INTEGER)"
    if group_by == "hour":
        return f"(CAST({local} / 3600 AS INTEGER) % 24)"
    if group_by == "weekday":  # 1970-01-01 was a Thursday: Monday = 0
        return f"((CAST({local} / 86400 AS INTEGER) + 3) % 7)"
    if group_by == "campaign":
        return f"{prefix}campaign_id"
    return prefix + group_by  # queue, agent, did, disposition: columns of both facts tables


# -- the query's WHERE ---------------------------------------------------------------------


def _source(q: ReportQuery, by_agent: bool = False) -> str:
    return "call_agent_facts" if q.agent is not None or by_agent else "call_facts"


def _where(
    q: ReportQuery, since: float, until: float, prefix: str = ""
) -> tuple[str, list[SqlParam]]:
    where = [f"{prefix}started_at >= ?", f"{prefix}started_at < ?"]
    args: list[SqlParam] = [since, until]
    for column, value in (
        ("queue", q.queue),
        ("agent", q.agent),
        ("did", q.did),
        ("campaign_id", q.campaign_id),
    ):
        if value is not None:
            where.append(f"{prefix}{column} = ?")
            args.append(value)
    return " AND ".join(where), args


def _handle_sql(cap: float) -> str:
    """Talk plus after-call work (see the module's docstring) of one row."""
    if cap <= 0:
        return "talk"
    return (
        f"(talk + CASE WHEN wrapped_at IS NULL OR ended_at IS NULL THEN {cap!r}"
        f" WHEN wrapped_at < ended_at THEN 0.0"
        f" WHEN wrapped_at - ended_at > {cap!r} THEN {cap!r}"
        f" ELSE wrapped_at - ended_at END)"
    )


# -- labels --------------------------------------------------------------------------------


async def _labels(
    db: Database, group_by: str, keys: Iterable[Any], settings: PanelSettings
) -> dict[Any, str]:
    keys = [k for k in keys if k is not None]
    if group_by == "day":
        return {k: _day(k).isoformat() for k in keys}
    if group_by in ("hour", "weekday"):
        return {k: str(k) for k in keys}
    if group_by == "disposition":
        names = {d.id: d.label for d in settings.dispositions}
        return {k: names.get(k, k) for k in keys}
    if group_by == "campaign":
        ids = [int(k) for k in keys]
        if not ids:
            return {}
        rows = await db.conn.execute_fetchall(
            f"SELECT id, name FROM campaigns WHERE id IN ({','.join('?' * len(ids))})", ids
        )
        campaigns: dict[int, str] = {r["id"]: r["name"] for r in rows}
        return {k: campaigns.get(int(k), str(k)) for k in keys}
    if group_by == "agent":
        return await agent_names(db, [str(k) for k in keys])
    return {k: str(k) for k in keys}


async def agent_names(db: Database, extensions: list[str]) -> dict[str, str]:
    """Each extension's panel user (display name) when exactly one user has it, else itself."""
    owners: dict[str, list[str]] = defaultdict(list)
    for u in await db.conn.execute_fetchall("SELECT username, display_name, extensions FROM users"):
        try:
            exts = [str(e) for e in json.loads(u["extensions"] or "[]")]
        except ValueError:
            exts = []
        for e in exts:
            owners[e].append(u["display_name"] or u["username"])
    return {e: owners[e][0] if len(owners.get(e, ())) == 1 else e for e in extensions}


def _day(n: int) -> date:
    return date.fromordinal(_EPOCH_ORDINAL + int(n))


def _key_text(group_by: str, k: Any) -> str:
    if k is None:
        return ""
    return _day(k).isoformat() if group_by == "day" else str(k)


# -- call summary --------------------------------------------------------------------------


def _aggregates(sl: float, short: float, cap: float) -> str:
    handle = _handle_sql(cap)
    return f"""
        sum(dir = 0) AS offered,
        sum(dir = 0 AND took = 1) AS answered,
        sum(dir = 0 AND answered = 0) AS missed,
        sum(dir = 0 AND abandoned = 1) AS abandoned,
        sum(dir = 0 AND abandoned = 1 AND wait < {short!r}) AS short_abandoned,
        sum(dir = 0 AND took = 1 AND wait <= {sl!r}) AS in_sl,
        total(CASE WHEN dir = 0 AND took = 1 THEN wait END) AS wait_sum,
        count(CASE WHEN dir = 0 AND took = 1 THEN wait END) AS wait_n,
        total(CASE WHEN dir = 0 AND took = 1 THEN {handle} END) AS handle_sum,
        total(CASE WHEN dir = 0 THEN rna END) AS rna,
        total(CASE WHEN took = 1 OR dir = 1 THEN transfers END) AS transfers,
        sum(dir = 1 AND ctc = 1) AS ctc,
        sum(dir = 1 AND ctc = 1 AND answered = 1) AS ctc_connected,
        sum(dir = 1) AS outbound,
        sum(dir = 1 AND answered = 1) AS outbound_answered"""


def _row(key: str, label: str, r: Any, p90: float | None, cb: list[float]) -> SummaryRow:
    offered, answered = int(r["offered"] or 0), int(r["answered"] or 0)
    short = int(r["short_abandoned"] or 0)
    counted = offered - short
    return SummaryRow(
        key=key,
        label=label,
        offered=offered,
        answered=answered,
        missed=int(r["missed"] or 0),
        abandoned=int(r["abandoned"] or 0),
        short_abandoned=short,
        answer_rate=_ratio(answered, offered),
        service_level=_ratio(int(r["in_sl"] or 0), counted),
        asa=_round(r["wait_sum"] / r["wait_n"]) if r["wait_n"] else None,
        aht=_round(r["handle_sum"] / answered) if answered else None,
        aht_p90=_round(p90) if p90 is not None else None,
        ring_no_answer=int(r["rna"] or 0),
        transfers=int(r["transfers"] or 0),
        callbacks=len(cb),
        callback_median_s=_round(statistics.median(cb)) if cb else None,
        click_to_call=int(r["ctc"] or 0),
        click_to_call_connected=int(r["ctc_connected"] or 0),
        outbound=int(r["outbound"] or 0),
        outbound_answered=int(r["outbound_answered"] or 0),
    )


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b > 0 else None


def _round(v: float | None) -> float | None:
    return None if v is None else round(float(v), 1)


async def _p90(
    db: Database, src: str, where: str, args: list[SqlParam], key: str, cap: float
) -> tuple[dict[Any, float], float | None]:
    """The 90th percentile (nearest rank, to the second) of the answered inbound calls'
    handle time, per group and overall: SQLite counts the calls per whole second (half the
    time of sorting them all), the rank is found here."""
    handle = _handle_sql(cap)
    rows = await db.conn.execute_fetchall(
        f"SELECT {key} AS k, CAST({handle} + 0.5 AS INTEGER) AS s, count(*) AS n"
        f" FROM {src} WHERE {where} AND dir = 0 AND took = 1 GROUP BY k, s",
        args,
    )
    per_key: dict[Any, dict[int, int]] = defaultdict(dict)
    whole: dict[int, int] = defaultdict(int)
    for r in rows:
        per_key[r["k"]][r["s"]] = r["n"]
        whole[r["s"]] += r["n"]
    by_key = {k: _nearest_rank(h, 0.9) for k, h in per_key.items()}
    return by_key, _nearest_rank(whole, 0.9) if whole else None


def _nearest_rank(histogram: dict[int, int], share: float) -> float:
    """The smallest value with at least ``share`` of the counted values at or below it."""
    rank = math.ceil(share * sum(histogram.values()) - 1e-9)
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return float(value)
    return float(max(histogram))


async def _callbacks(
    db: Database, src: str, where: str, args: list[SqlParam], key: str
) -> tuple[dict[Any, list[float]], list[float]]:
    """Seconds from each missed inbound call to the first outbound call to its number."""
    sql = f"""
        SELECT k, d FROM (
            SELECT {key} AS k,
                   (SELECT min(o.started_at) FROM calls o
                     WHERE o.direction = 'outbound' AND o.other_e164 = f.number
                       AND o.started_at > f.started_at
                       AND o.started_at <= f.started_at + {CALLBACK_WINDOW!r})
                   - f.started_at AS d
            FROM {src} f WHERE {where} AND dir = 0 AND answered = 0 AND number IS NOT NULL) AS cb
        WHERE d IS NOT NULL"""
    by_key: dict[Any, list[float]] = defaultdict(list)
    overall: list[float] = []
    for r in await db.conn.execute_fetchall(sql, args):
        by_key[r["k"]].append(r["d"])
        overall.append(r["d"])
    return by_key, overall


def _settings_tz(settings: PanelSettings) -> ZoneInfo:
    return ZoneInfo(settings.timezone)


# -- rollups (migration 0016) --------------------------------------------------------------

# lower edges of the handle-time bins after the first ([0, 15) is bin 0, 14400 s and more
# the last): the same as migration 0016's report_handle_source
HANDLE_BIN_EDGES: tuple[int, ...] = (
    15, 30, 45, 60, 90, 120, 150, 180, 210, 240, 300, 360, 420, 480, 600, 720, 900, 1200, 1800,
    2700, 3600, 7200, 14400,
)  # fmt: skip
_BINS = tuple(f"h{i}" for i in range(len(HANDLE_BIN_EDGES) + 1))
# the figures of _aggregates, each a column of the rollup tables
_FIGURES = (
    "offered", "answered", "missed", "abandoned", "short_abandoned", "in_sl", "wait_sum",
    "wait_n", "handle_sum", "rna", "transfers", "ctc", "ctc_connected", "outbound",
    "outbound_answered",
)  # fmt: skip
# every summed column of the rollup tables after their key
ROLLUP_COLUMNS: tuple[str, ...] = ("calls", "answered_any", *_FIGURES, *_BINS)
_TIME = ("day", "hour", "weekday")
_KINDS = ("queue", "did", "campaign", "disposition")  # report_hours' dimensions ('' aside)
_FACT_COLUMN = {
    "queue": "queue",
    "did": "did",
    "campaign": "campaign_id",
    "disposition": "disposition",
}


@dataclass(frozen=True, slots=True)
class _Plan:
    """Where one report reads its sums in the rollups, and its percentiles' calls.

    ``level`` is ``report`` (report_hours, report_days: one ``kind`` of dimension) or
    ``report_agent`` (per agent, and queue by the hour); rows matching ``where`` count;
    ``dims`` names a grouping's column in them, and ``handle_dims`` in the handle table
    (``h``), which ``handle_where`` narrows the same way."""

    level: str
    where: list[str]
    args: list[SqlParam]
    dims: Mapping[str, str]
    handle_where: list[str]
    handle_args: list[SqlParam]
    handle_dims: Mapping[str, str]
    daily: bool = True  # the daily table has the filters and groupings (not queue per agent)

    @property
    def handles(self) -> str:
        return f"{self.level}_handles h"


def _call_plan(q: ReportQuery, group_by: str) -> _Plan | None:
    """report_hours answers no filter, or one of queue, DID and campaign with a grouping by
    time or by that same dimension."""
    filters: list[tuple[str, SqlParam]] = [
        (kind, value)
        for kind, value in (("queue", q.queue), ("did", q.did), ("campaign", q.campaign_id))
        if value is not None
    ]
    if len(filters) > 1 or (filters and group_by not in (*_TIME, filters[0][0])):
        return None
    if not filters and group_by not in (*_TIME, *_KINDS):
        return None
    kind = filters[0][0] if filters else ("" if group_by in _TIME else group_by)
    where, args = ["kind = ?"], list[SqlParam]([kind])
    handle_where, handle_args = [], list[SqlParam]()
    if filters:
        where.append("value = ?")
        args.append(filters[0][1])
        handle_where.append(f"h.{_FACT_COLUMN[kind]} = ?")
        handle_args.append(filters[0][1])
    return _Plan(
        level="report",
        where=where,
        args=args,
        # no campaign: NULL; a campaign's id an integer on both engines
        dims={kind: "CAST(nullif(value, '') AS INTEGER)" if kind == "campaign" else "value"},
        handle_where=handle_where,
        handle_args=handle_args,
        handle_dims={g: f"h.{c}" for g, c in _FACT_COLUMN.items()},
    )


def _agent_plan(q: ReportQuery, group_by: str) -> _Plan | None:
    """report_agent_hours answers the agent and queue filters, grouped by time, agent or
    queue."""
    if q.did is not None or q.campaign_id is not None:
        return None
    if group_by not in (*_TIME, "agent", "queue"):
        return None
    where: list[str] = []
    args: list[SqlParam] = []
    for column, value in (("agent", q.agent), ("queue", q.queue)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    return _Plan(
        level="report_agent",
        where=where,
        args=args,
        dims={"agent": "agent", "queue": "queue"},
        handle_where=[f"h.{w}" for w in where],
        handle_args=list(args),
        handle_dims={"agent": "h.agent", "queue": "h.queue"},
        daily=q.queue is None and group_by != "queue",
    )


async def _plan(
    db: Database,
    q: ReportQuery,
    group_by: str,
    agent_level: bool,
    settings: PanelSettings,
    since: float,
    until: float,
) -> _Plan | None:
    """The rollups' plan for this query, or None when only the facts can answer it exactly:
    other thresholds than the rollups were built with (or not yet rebuilt this far back),
    a zone whose local hours are not UTC hours, a range before 2 January 1970 (hour buckets
    of negative times round the other way), or filters the rollups do not keep together."""
    plan = _agent_plan(q, group_by) if agent_level else _call_plan(q, group_by)
    if plan is None or since < 86400 or not whole_hours(since, until, _settings_tz(settings)):
        return None
    row = await _rollup_settings(db.conn)
    if tuple(row)[:3] != _thresholds(settings):
        return None
    rebuilt_from = row["rebuilt_from"]
    return plan if rebuilt_from is None or since >= rebuilt_from else None


def _thresholds(settings: PanelSettings) -> tuple[float, float, float]:
    return (
        float(settings.service_level_seconds),
        float(settings.short_abandon_seconds),
        float(settings.after_call_seconds),
    )


def _rollup_rows(
    plan: _Plan,
    since: float,
    until: float,
    key: str,
    columns: Sequence[str] = (*_FIGURES, *_BINS),
    *,
    days: bool,
) -> tuple[str, list[SqlParam]]:
    """A FROM of the plan's rollup rows for ``since``..``until`` (whole hours), each ``key``
    (as ``k``) and ``columns``: the hourly rows, or with ``days`` the daily rows of the UTC
    days inside the range and the hourly rows of its ends (``key`` must then be a column of
    both)."""
    first, last = int(since) // 3600, int(until) // 3600
    parts: list[tuple[str, str, int, int]] = []
    day_first, day_last = -(-first // 24), last // 24
    if days and day_first < day_last:
        parts += [("hour", "hours", first, day_first * 24), ("day", "days", day_first, day_last)]
        parts.append(("hour", "hours", day_last * 24, last))
    else:
        parts.append(("hour", "hours", first, last))
    selects, args = [], list[SqlParam]()
    for unit, table, lo, hi in parts:
        if lo < hi:
            where = " AND ".join([f"{unit} >= ?", f"{unit} < ?", *plan.where])
            selects.append(
                f"SELECT {key} AS k, {', '.join(columns)} FROM {plan.level}_{table} WHERE {where}"
            )
            args += [lo, hi, *plan.args]
    return f"({' UNION ALL '.join(selects)}) AS rows", args


def _plan_key(plan: _Plan, group_by: str, off: str) -> str:
    if group_by in _TIME:
        return _key_sql(group_by, off, "(hour * 3600)")
    return plan.dims[group_by]


def _handle_key(plan: _Plan, group_by: str, off: str) -> str:
    if group_by in _TIME:
        return _key_sql(group_by, off, "h.started_at")
    return plan.handle_dims[group_by]


async def _rolled_up(
    db: Database, plan: _Plan, group_by: str, off: str, since: float, until: float
) -> list[dict[str, Any]]:
    """The figures per group (``k``) and its handle-time bins, summed from the rollup."""
    key = _plan_key(plan, group_by, off)
    source, args = _rollup_rows(plan, since, until, key, days=plan.daily and group_by not in _TIME)
    sums = ", ".join(f"{'total' if c.endswith('_sum') else 'sum'}({c}) AS {c}" for c in
                     (*_FIGURES, *_BINS))  # fmt: skip
    rows = await db.conn.execute_fetchall(
        f"SELECT k, {sums} FROM {source} GROUP BY k ORDER BY k", args
    )
    return [dict(r) for r in rows]


async def _p90_rolled(
    db: Database,
    plan: _Plan,
    grouped: Sequence[Mapping[str, Any]],
    key: str,
    since: float,
    until: float,
    *,
    overall: bool = True,
) -> tuple[dict[Any, float], float | None]:
    """:func:`_p90` from the rollup: each group's bin counts say which bin holds the rank and
    how far into it; then only the calls of that group in that bin are counted per second.
    ``overall=False`` skips the percentile of all the groups together."""
    hists = {r["k"]: [int(r[b] or 0) for b in _BINS] for r in grouped}
    whole = [sum(h[i] for h in hists.values()) for i in range(len(_BINS))]
    targets = {k: t for k, h in hists.items() if (t := _rank_bin(h, 0.9)) is not None}
    total = _rank_bin(whole, 0.9) if overall else None
    if not targets:
        return {}, None
    # the overall rank's bin entire; each group's own bin for that group only
    wanted = [f"h.bin = {total[0]}"] if total else []
    pairs = [(b, k) for k, (b, _) in targets.items() if total is None or b != total[0]]
    args: list[SqlParam] = []
    keyed = [(b, k) for b, k in pairs if k is not None]
    if keyed:
        # one IN list of "bin|key" texts, which both engines read alike and look up in a
        # tree: an OR of pairs is tested one pair at a time (a year by day: 365 a row)
        wanted.append(f"(h.bin || '|' || {key}) IN ({','.join(['?'] * len(keyed))})")
        args += [f"{b}|{k}" for b, k in keyed]
    wanted += [f"(h.bin = {b} AND {key} IS NULL)" for b, k in pairs if k is None]
    bins = sorted({b for b, _ in pairs} | ({total[0]} if total else set()))
    where = [f"h.bin IN ({','.join(map(str, bins))})", "h.started_at >= ?", "h.started_at < ?"]
    where += plan.handle_where
    rows = await db.conn.execute_fetchall(
        f"SELECT h.bin AS b, {key} AS k, h.hs AS s, count(*) AS n FROM {plan.handles}"
        f" WHERE {' AND '.join(where)} AND ({' OR '.join(wanted)}) GROUP BY b, k, s",
        [since, until, *plan.handle_args, *args],
    )
    per_key: dict[tuple[int, Any], dict[int, int]] = defaultdict(dict)
    per_bin: dict[int, int] = defaultdict(int)
    for r in rows:
        per_key[r["b"], r["k"]][r["s"]] = r["n"]
        if total and r["b"] == total[0]:
            per_bin[r["s"]] += r["n"]
    by_key = {k: _rank_in(per_key.get((b, k), {}), left, b) for k, (b, left) in targets.items()}
    return by_key, _rank_in(per_bin, total[1], total[0]) if total else None


def _rank_bin(counts: Sequence[int], share: float) -> tuple[int, int] | None:
    """The bin holding :func:`_nearest_rank`'s rank, and the rank within that bin."""
    rank = math.ceil(share * sum(counts) - 1e-9)
    seen = 0
    for b, n in enumerate(counts):
        if n and seen + n >= rank:
            return b, rank - seen
        seen += n
    return None


def _rank_in(histogram: Mapping[int, int], rank: int, b: int) -> float:
    """The value of the ``rank``-th call (1-based, ascending) among one bin's."""
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return float(value)
    # only while a call was deleted between the two reads: its bin's last (or first) second
    return float(max(histogram)) if histogram else float(([0, *HANDLE_BIN_EDGES])[b])


async def _callbacks_rolled(
    db: Database, src: str, where: str, args: list[SqlParam], key: str
) -> tuple[dict[Any, list[float]], list[float]]:
    """:func:`_callbacks` from report_callbacks, which the triggers keep (any thresholds):
    alone, which has the call's dimensions, or with the agents of each call. ``where`` and
    ``key`` name the call (or agent) ``f``."""
    if src == "call_facts":
        sql = f"SELECT {key} AS k, f.d AS d FROM report_callbacks f WHERE {where}"
    else:
        sql = (
            f"SELECT {key} AS k, cb.d AS d FROM report_callbacks cb"
            f" JOIN {src} f ON f.started_at = cb.started_at AND f.id = cb.id WHERE {where}"
        )
    rows = await db.conn.execute_fetchall(sql, args)
    by_key: dict[Any, list[float]] = defaultdict(list)
    overall: list[float] = []
    for r in rows:
        by_key[r["k"]].append(r["d"])
        overall.append(r["d"])
    return by_key, overall


def rebuild_statements() -> list[str]:
    """Migration 0016's backfill (but the call-backs, which need no rebuild) for the calls of
    ``:a`` <= started_at < ``:b`` (whole hours, not before 1970), after removing what the
    rollups held for them; the days they touch are summed again from their hours.
    :func:`rebuild_rollups` runs them, and the bench on its bulk-loaded store."""
    cols = ", ".join(ROLLUP_COLUMNS)
    facts = ", ".join(f"total(r.{c})" for c in ROLLUP_COLUMNS)
    sums = ", ".join(f"total({c})" for c in ROLLUP_COLUMNS)
    value = (
        "CASE k.kind WHEN 'queue' THEN r.queue WHEN 'did' THEN r.did"
        " WHEN 'campaign' THEN ifnull(r.campaign_id, '')"
        " WHEN 'disposition' THEN r.disposition ELSE '' END"
    )
    calls = "started_at >= :a AND started_at < :b"
    hours = "hour >= CAST(:a AS INTEGER) / 3600 AND hour < CAST(:b AS INTEGER) / 3600"
    days = "day >= CAST(:a AS INTEGER) / 86400 AND day < (CAST(:b AS INTEGER) + 86399) / 86400"
    kinds = "kind IN (SELECT kind FROM report_kinds)"
    return [
        f"DELETE FROM report_handles WHERE (bin, started_at, id) IN"
        f" (SELECT bin, started_at, id FROM report_handles WHERE {calls})",
        f"INSERT INTO report_handles SELECT * FROM report_handle_source WHERE {calls}",
        f"DELETE FROM report_agent_handles WHERE (bin, started_at, id, agent) IN"
        f" (SELECT bin, started_at, id, agent FROM report_agent_handles WHERE {calls})",
        f"INSERT INTO report_agent_handles SELECT * FROM report_agent_handle_source WHERE {calls}",
        f"DELETE FROM report_hours WHERE {kinds} AND {hours}",
        f"INSERT INTO report_hours (kind, hour, value, {cols})"
        f" SELECT k.kind, r.hour, {value}, {facts}"
        f" FROM report_call_rows r CROSS JOIN report_kinds k WHERE r.{calls} GROUP BY 1, 2, 3",
        f"DELETE FROM report_agent_hours WHERE {hours}",
        f"INSERT INTO report_agent_hours (hour, agent, queue, {cols})"
        f" SELECT r.hour, r.agent, r.queue, {facts}"
        f" FROM report_agent_rows r WHERE r.{calls} GROUP BY 1, 2, 3",
        # a day's row sums its hours, those outside the range included
        f"DELETE FROM report_days WHERE {kinds} AND {days}",
        f"INSERT INTO report_days (kind, day, value, {cols})"
        f" SELECT kind, hour / 24, value, {sums} FROM report_hours"
        f" WHERE {kinds} AND hour >= CAST(:a AS INTEGER) / 86400 * 24"
        f" AND hour < (CAST(:b AS INTEGER) + 86399) / 86400 * 24 GROUP BY 1, 2, 3",
        f"DELETE FROM report_agent_days WHERE {days}",
        f"INSERT INTO report_agent_days (day, agent, {cols})"
        f" SELECT hour / 24, agent, {sums} FROM report_agent_hours"
        f" WHERE hour >= CAST(:a AS INTEGER) / 86400 * 24"
        f" AND hour < (CAST(:b AS INTEGER) + 86399) / 86400 * 24 GROUP BY 1, 2",
    ]


async def rebuild_rollups(conn: Any, since: float, until: float) -> None:
    """Sum the rollups again for the calls started from ``since`` to ``until`` (epoch
    seconds, whole hours) with the thresholds in report_rollup_settings, inside the caller's
    transaction (``conn``: an aiosqlite connection). The days they touch are summed again
    from their hours, all of which should be right by then: :func:`refresh_rollups` goes a
    whole UTC day at a time."""
    bounds = {"a": max(since, 0.0), "b": until}
    for sql in rebuild_statements():
        await conn.execute(sql, bounds)


async def _rollup_settings(conn: Any) -> Any:
    rows = await conn.execute_fetchall(
        "SELECT service_level, short_abandon, after_call, rebuilt_from FROM report_rollup_settings"
    )
    return next(iter(rows))


async def refresh_rollups(db: Database, settings: PanelSettings) -> int:
    """Bring the rollups to the thresholds of ``settings``; return the days of calls rebuilt
    (0: they were right). A UTC day of calls at a time, newest first, each in its own short
    transaction so calls are logged meanwhile, and resumed where it stopped after a restart;
    reports read the facts for the days not rebuilt yet."""
    async with db.transaction() as conn:
        row = await _rollup_settings(conn)
        if tuple(row)[:3] != _thresholds(settings):
            newest = list(await conn.execute_fetchall("SELECT max(started_at) FROM call_facts"))
            top = newest[0][0]
            start = (math.floor(top / 3600) + 1) * 3600.0 if top is not None else None
            await conn.execute(
                "UPDATE report_rollup_settings SET service_level = ?, short_abandon = ?,"
                " after_call = ?, rebuilt_from = ?",
                (*_thresholds(settings), start),
            )
            log.info("report rollups: thresholds changed, rebuilding them")
    days = 0
    while True:
        async with db.transaction() as conn:
            until = (await _rollup_settings(conn))["rebuilt_from"]
            if until is None:
                break
            oldest = list(await conn.execute_fetchall("SELECT min(started_at) FROM call_facts"))
            low = max(math.floor((oldest[0][0] or 0.0) / 3600) * 3600.0, 0.0)
            since = max((math.ceil(until / 86400) - 1) * 86400.0, low)  # that day's midnight
            if since < until:
                await rebuild_rollups(conn, since, until)
                days += 1
            await conn.execute(
                "UPDATE report_rollup_settings SET rebuilt_from = ?",
                (None if since <= low else since,),
            )
        await asyncio.sleep(0)  # let the writes waiting for the store go first
    if days:
        log.info("report rollups: rebuilt %d days of calls", days)
    return days


async def keep_rollups(db: Database | None, settings: PanelSettings) -> None:
    """The gateway's background task: :func:`refresh_rollups` once at start (stopped with
    the gateway: it resumes at the next start), logging a failure instead of raising it;
    meanwhile, and after a failure, reports read the facts."""
    if db is None:
        return
    try:
        await refresh_rollups(db, settings)
    except Exception:
        log.exception("report rollups: rebuilding them failed; reports read the call facts")


# -- the reports ---------------------------------------------------------------------------


async def call_summary(
    db: Database,
    q: ReportQuery,
    settings: PanelSettings,
    *,
    by_agent: bool = False,
    rollups: bool = True,
) -> dict[str, Any]:
    """Every figure of the module's docstring per ``q.group_by`` group, and the totals.
    ``rollups=False`` reads the facts only (what the rollups are checked against)."""
    q.check()
    tz = _settings_tz(settings)
    since, until = local_bounds(q, tz)
    group_by = "agent" if by_agent else q.group_by
    agent_level = by_agent or group_by == "agent" or q.agent is not None
    src = _source(q, agent_level)
    # an agent row per phone that rang: the call-level totals are not their sum
    totals_of_calls = src == "call_agent_facts" and q.agent is None
    where, args = _where(q, since, until)
    off = offset_sql(since, until, tz)
    key = _key_sql(group_by, off)
    plan = await _plan(db, q, group_by, agent_level, settings, since, until) if rollups else None
    grouped: list[dict[str, Any]]
    if plan is not None:
        hour_off = offset_sql(since, until, tz, "(hour * 3600)")
        grouped = await _rolled_up(db, plan, group_by, hour_off, since, until)
        handle_off = offset_sql(since, until, tz, "h.started_at")
        handle_key = _handle_key(plan, group_by, handle_off)
        p90s, p90_all = await _p90_rolled(
            db, plan, grouped, handle_key, since, until, overall=not totals_of_calls
        )
    else:
        sl, short = settings.service_level_seconds, settings.short_abandon_seconds
        cap = settings.after_call_seconds
        aggregates = _aggregates(sl, short, cap)
        grouped = [
            dict(r)
            for r in await db.conn.execute_fetchall(
                f"SELECT {key} AS k, {aggregates} FROM {src} WHERE {where} GROUP BY k ORDER BY k",
                args,
            )
        ]
        p90s, p90_all = await _p90(db, src, where, args, key, cap)
    if rollups:
        f_where, f_args = _where(q, since, until, "f.")
        f_key = _key_sql(group_by, offset_sql(since, until, tz, "f.started_at"), "f.started_at",
                         "f.")  # fmt: skip
        cbs, cb_all = await _callbacks_rolled(db, src, f_where, f_args, f_key)
    else:
        cbs, cb_all = await _callbacks(db, src, where, args, key)
    # the totals are the groups' sums (one scan, not two)
    total: dict[str, float] = defaultdict(float)
    for r in grouped:
        for name in _FIGURES:
            total[name] += r[name] or 0
    labels = await _labels(db, group_by, [r["k"] for r in grouped], settings)
    rows = [
        _row(_key_text(group_by, r["k"]), labels.get(r["k"], ""), r, p90s.get(r["k"]),
             cbs.get(r["k"], []))
        for r in grouped
    ]  # fmt: skip
    if group_by == "agent":  # without a user's agent row: most offered first
        rows.sort(key=lambda row: (-row.offered, -row.outbound, row.key))
    totals = _row("", "", total, p90_all, cb_all)
    if totals_of_calls:
        whole = await call_summary(
            db, msgspec.structs.replace(q, group_by="queue"), settings, rollups=rollups
        )
        totals = msgspec.convert(whole["totals"], SummaryRow)
    report = SummaryReport(query=q, timezone=settings.timezone, rows=rows, totals=totals)
    return msgspec.to_builtins(report)  # type: ignore[no-any-return]


async def agents(
    db: Database, q: ReportQuery, settings: PanelSettings, *, rollups: bool = True
) -> dict[str, Any]:
    """The call summary per agent phone (extension), ring-no-answer included."""
    return await call_summary(db, q, settings, by_agent=True, rollups=rollups)


async def missed_heatmap(
    db: Database, q: ReportQuery, settings: PanelSettings, *, rollups: bool = True
) -> dict[str, Any]:
    """Missed and offered inbound calls per weekday x hour (local), all 168 cells."""
    q.check()
    tz = _settings_tz(settings)
    since, until = local_bounds(q, tz)
    agent_level = q.agent is not None
    plan = await _plan(db, q, "hour", agent_level, settings, since, until) if rollups else None
    if plan is not None:
        off = offset_sql(since, until, tz, "(hour * 3600)")
        weekday, hour = (_key_sql(g, off, "(hour * 3600)") for g in ("weekday", "hour"))
        source, args = _rollup_rows(
            plan, since, until, f"{weekday} * 24 + {hour}", ("missed", "offered"), days=False
        )
        sql = (
            "SELECT k / 24 AS wd, k % 24 AS h, sum(missed) AS missed, sum(offered) AS offered"
            f" FROM {source} GROUP BY k"
        )
    else:
        where, args = _where(q, since, until)
        off = offset_sql(since, until, tz)
        sql = (
            f"SELECT {_key_sql('weekday', off)} AS wd, {_key_sql('hour', off)} AS h,"
            " sum(answered = 0) AS missed, count(*) AS offered"
            f" FROM {_source(q)} WHERE {where} AND dir = 0 GROUP BY wd, h"
        )
    found = {(r["wd"], r["h"]): r for r in await db.conn.execute_fetchall(sql, args)}
    cells = []
    for wd in range(7):
        for h in range(24):
            r = found.get((wd, h))
            cells.append(
                HeatCell(
                    weekday=wd,
                    hour=h,
                    missed=int(r["missed"]) if r else 0,
                    offered=int(r["offered"]) if r else 0,
                )
            )
    report = HeatmapReport(query=q, timezone=settings.timezone, cells=cells)
    return msgspec.to_builtins(report)  # type: ignore[no-any-return]


async def dispositions(
    db: Database, q: ReportQuery, settings: PanelSettings, *, rollups: bool = True
) -> dict[str, Any]:
    """How the answered calls (and any call given one) were dispositioned; key ``""``: the
    answered calls nobody wrapped up with a disposition."""
    q.check()
    tz = _settings_tz(settings)
    since, until = local_bounds(q, tz)
    unfiltered = (q.queue, q.agent, q.did, q.campaign_id) == (None, None, None, None)
    plan = (
        await _plan(db, q, "disposition", False, settings, since, until)
        if rollups and unfiltered
        else None
    )
    if plan is not None:
        source, args = _rollup_rows(
            plan, since, until, "value", ("calls", "answered_any"), days=True
        )
        # a disposition counts every call given it; "" the answered ones only
        sql = (
            "SELECT k, sum(CASE WHEN k != '' THEN calls ELSE answered_any END) AS n"
            f" FROM {source} GROUP BY k"
            " HAVING sum(CASE WHEN k != '' THEN calls ELSE answered_any END) > 0"
        )
    else:
        where, args = _where(q, since, until)
        took = "took" if q.agent is not None else "answered"
        sql = (
            f"SELECT disposition AS k, count(*) AS n FROM {_source(q)}"
            f" WHERE {where} AND ({took} = 1 OR disposition != '') GROUP BY k"
        )
    rows = list(await db.conn.execute_fetchall(sql, args))
    labels = await _labels(db, "disposition", [r["k"] for r in rows], settings)
    out = [CountRow(key=r["k"], label=labels.get(r["k"], r["k"]), count=int(r["n"])) for r in rows]
    out.sort(key=lambda c: (c.key == "", -c.count, c.key))
    report = DispositionReport(query=q, rows=out, total=sum(c.count for c in out))
    return msgspec.to_builtins(report)  # type: ignore[no-any-return]
