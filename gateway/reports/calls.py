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
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
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

CALLBACK_WINDOW = 7 * 86400.0  # a call to the number later than this is not a call-back
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


def offset_sql(since: float, until: float, tz: ZoneInfo, column: str = "started_at") -> str:
    """An SQL expression of ``column`` (epoch seconds) giving the zone's UTC offset then, exact
    across the clock changes between ``since`` and ``until`` (found day by day, then to the
    second by bisection), so local day, hour and weekday are computed in the query."""
    changes: list[tuple[float, int]] = []  # (from this instant, offset)
    current = _offset(since, tz)
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
    first = _offset(since, tz)
    if not changes:
        return str(first)
    cases = [f"WHEN {column} < {changes[0][0]!r} THEN {first}"]
    for i, (at, _) in enumerate(changes[1:], start=1):
        cases.append(f"WHEN {column} < {at!r} THEN {changes[i - 1][1]}")
    return f"(CASE {' '.join(cases)} ELSE {changes[-1][1]} END)"


def _key_sql(group_by: str, off: str, column: str = "started_at") -> str:
    local = f"({column} + {off})"
    if group_by == "day":
        return f"CAST({local} / 86400 AS INTEGER)"
    if group_by == "hour":
        return f"(CAST({local} / 3600 AS INTEGER) % 24)"
    if group_by == "weekday":  # 1970-01-01 was a Thursday: Monday = 0
        return f"((CAST({local} / 86400 AS INTEGER) + 3) % 7)"
    if group_by == "campaign":
        return "campaign_id"
    return group_by  # queue, agent, did, disposition: columns of both facts tables


# -- the query's WHERE ---------------------------------------------------------------------


def _source(q: ReportQuery, by_agent: bool = False) -> str:
    return "call_agent_facts" if q.agent is not None or by_agent else "call_facts"


def _where(q: ReportQuery, since: float, until: float) -> tuple[str, list[SqlParam]]:
    where = ["started_at >= ?", "started_at < ?"]
    args: list[SqlParam] = [since, until]
    for column, value in (
        ("queue", q.queue),
        ("agent", q.agent),
        ("did", q.did),
        ("campaign_id", q.campaign_id),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    return " AND ".join(where), args


def _handle_sql(cap: float) -> str:
    """Talk plus after-call work (see the module's docstring) of one row."""
    if cap <= 0:
        return "talk"
    return (
        f"(talk + CASE WHEN wrapped_at IS NULL OR ended_at IS NULL THEN {cap!r}"
        f" ELSE min(max(wrapped_at - ended_at, 0.0), {cap!r}) END)"
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
        names = {r["id"]: r["name"] for r in rows}
        return {k: names.get(k, str(k)) for k in keys}
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
        sum(dir = 0 AND took) AS answered,
        sum(dir = 0 AND NOT answered) AS missed,
        sum(dir = 0 AND abandoned) AS abandoned,
        sum(dir = 0 AND abandoned AND wait < {short!r}) AS short_abandoned,
        sum(dir = 0 AND took AND wait <= {sl!r}) AS in_sl,
        total(CASE WHEN dir = 0 AND took THEN wait END) AS wait_sum,
        count(CASE WHEN dir = 0 AND took THEN wait END) AS wait_n,
        total(CASE WHEN dir = 0 AND took THEN {handle} END) AS handle_sum,
        total(CASE WHEN dir = 0 THEN rna END) AS rna,
        total(CASE WHEN took OR dir = 1 THEN transfers END) AS transfers,
        sum(dir = 1 AND ctc) AS ctc,
        sum(dir = 1 AND ctc AND answered) AS ctc_connected,
        sum(dir = 1) AS outbound,
        sum(dir = 1 AND answered) AS outbound_answered"""


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
        f" FROM {src} WHERE {where} AND dir = 0 AND took GROUP BY k, s",
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
            FROM {src} f WHERE {where} AND dir = 0 AND NOT answered AND number IS NOT NULL)
        WHERE d IS NOT NULL"""
    by_key: dict[Any, list[float]] = defaultdict(list)
    overall: list[float] = []
    for r in await db.conn.execute_fetchall(sql, args):
        by_key[r["k"]].append(r["d"])
        overall.append(r["d"])
    return by_key, overall


def _settings_tz(settings: PanelSettings) -> ZoneInfo:
    return ZoneInfo(settings.timezone)


async def call_summary(
    db: Database, q: ReportQuery, settings: PanelSettings, *, by_agent: bool = False
) -> dict[str, Any]:
    """Every figure of the module's docstring per ``q.group_by`` group, and the totals."""
    q.check()
    tz = _settings_tz(settings)
    since, until = local_bounds(q, tz)
    group_by = "agent" if by_agent else q.group_by
    src = _source(q, by_agent or group_by == "agent")
    where, args = _where(q, since, until)
    key = _key_sql(group_by, offset_sql(since, until, tz))
    sl, short = settings.service_level_seconds, settings.short_abandon_seconds
    cap = settings.after_call_seconds
    aggregates = _aggregates(sl, short, cap)
    grouped = list(
        await db.conn.execute_fetchall(
            f"SELECT {key} AS k, {aggregates} FROM {src} WHERE {where} GROUP BY k ORDER BY k",
            args,
        )
    )
    # the totals are the groups' sums (one scan, not two)
    total: dict[str, float] = defaultdict(float)
    for r in grouped:
        for name in r.keys():  # noqa: SIM118 (sqlite3.Row iterates over values)
            if name != "k":
                total[name] += r[name] or 0
    p90s, p90_all = await _p90(db, src, where, args, key, cap)
    cbs, cb_all = await _callbacks(db, src, where, args, key)
    labels = await _labels(db, group_by, [r["k"] for r in grouped], settings)
    rows = [
        _row(_key_text(group_by, r["k"]), labels.get(r["k"], ""), r, p90s.get(r["k"]),
             cbs.get(r["k"], []))
        for r in grouped
    ]  # fmt: skip
    if group_by == "agent":  # without a user's agent row: most offered first
        rows.sort(key=lambda row: (-row.offered, -row.outbound, row.key))
    totals = _row("", "", total, p90_all, cb_all)
    if src == "call_agent_facts" and q.agent is None:
        # an agent row per phone that rang: the call-level totals are not their sum
        whole = await call_summary(db, msgspec.structs.replace(q, group_by="queue"), settings)
        totals = msgspec.convert(whole["totals"], SummaryRow)
    report = SummaryReport(query=q, timezone=settings.timezone, rows=rows, totals=totals)
    return msgspec.to_builtins(report)  # type: ignore[no-any-return]


async def agents(db: Database, q: ReportQuery, settings: PanelSettings) -> dict[str, Any]:
    """The call summary per agent phone (extension), ring-no-answer included."""
    return await call_summary(db, q, settings, by_agent=True)


async def missed_heatmap(db: Database, q: ReportQuery, settings: PanelSettings) -> dict[str, Any]:
    """Missed and offered inbound calls per weekday x hour (local), all 168 cells."""
    q.check()
    tz = _settings_tz(settings)
    since, until = local_bounds(q, tz)
    where, args = _where(q, since, until)
    off = offset_sql(since, until, tz)
    rows = await db.conn.execute_fetchall(
        f"SELECT {_key_sql('weekday', off)} AS wd, {_key_sql('hour', off)} AS h,"
        " sum(NOT answered) AS missed, count(*) AS offered"
        f" FROM {_source(q)} WHERE {where} AND dir = 0 GROUP BY wd, h",
        args,
    )
    found = {(r["wd"], r["h"]): r for r in rows}
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


async def dispositions(db: Database, q: ReportQuery, settings: PanelSettings) -> dict[str, Any]:
    """How the answered calls (and any call given one) were dispositioned; key ``""``: the
    answered calls nobody wrapped up with a disposition."""
    q.check()
    tz = _settings_tz(settings)
    since, until = local_bounds(q, tz)
    where, args = _where(q, since, until)
    took = "took" if q.agent is not None else "answered"
    rows = list(
        await db.conn.execute_fetchall(
            f"SELECT disposition AS k, count(*) AS n FROM {_source(q)}"
            f" WHERE {where} AND ({took} OR disposition != '') GROUP BY k",
            args,
        )
    )
    labels = await _labels(db, "disposition", [r["k"] for r in rows], settings)
    out = [CountRow(key=r["k"], label=labels.get(r["k"], r["k"]), count=int(r["n"])) for r in rows]
    out.sort(key=lambda c: (c.key == "", -c.count, c.key))
    report = DispositionReport(query=q, rows=out, total=sum(c.count for c in out))
    return msgspec.to_builtins(report)  # type: ignore[no-any-return]
