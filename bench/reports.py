"""Reports benchmark: 5,000,000 calls over a year, every report for one month and for the year.

    python bench/reports.py                      # 5,000,000 calls, a temporary store
    python bench/reports.py --calls 500000       # a quicker look
    python bench/reports.py --store /tmp/r.db    # keep the store (reused when it exists)
    python bench/reports.py --store /tmp/r.db --check   # and each report from the facts alone

Writes the calls straight into a temporary SQLite store (the call log's own columns, then the
report facts of migration 0014 and the rollups of migration 0016 built the way their triggers
build them, a statement each), with a realistic spread: a year ending yesterday, busier on
weekdays and office hours, 20 queues of 10 to 30 agents out of 200, 40 DIDs, a quarter
outbound (click-to-call and dialed), missed calls some of whose numbers are called back. Then
prints each report's time for the last full month and for the whole year (best of
``--repeat`` runs), against the goal: every report for a month under 500 ms. A store built
before migration 0016 is migrated when opened (its rollups summed: minutes for 5,000,000
calls). ``--check`` also computes each report from the facts alone (``rollups=False``: the
way before the rollups, and slow) and says whether the two answers are the same.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.panel.settings import PanelSettings
from gateway.reports import calls as call_reports
from gateway.reports import sales as sales_reports
from gateway.reports.model import ReportQuery
from gateway.store.db import Database

TZ = ZoneInfo("Europe/Madrid")
QUEUES = [f"q{n:02d}" for n in range(20)]
AGENTS = [str(100 + n) for n in range(200)]
DIDS = [f"+3491{n:07d}" for n in range(40)]
# relative weight of each local hour (office hours busy, nights almost empty)
HOURS = [1, 1, 1, 1, 1, 2, 5, 20, 60, 90, 100, 100, 90, 70, 80, 95, 90, 70, 45, 25, 12, 6, 3, 2]
WEEKDAYS = [100, 95, 95, 90, 85, 30, 12]
GOAL_MS = 500.0

COLUMNS = (
    "id", "linkedid", "pbx", "direction", "click_to_call", "caller", "did", "dialed", "queue",
    "agents_rang", "agents_answered", "answered_by", "transfers", "outcome", "started_at",
    "answered_at", "ended_at", "ring_seconds", "queue_wait_seconds", "talk_seconds",
    "total_seconds", "disposition", "caller_e164", "other_e164", "saved_at",
)  # fmt: skip
DISPOSITIONS = ["interested", "call_back", "not_interested", "wrong_number", "resolved", ""]


def _queue_agents(rng: random.Random) -> dict[str, list[str]]:
    return {q: rng.sample(AGENTS, rng.randint(10, 30)) for q in QUEUES}


def _day_weights(days: list[date]) -> list[float]:
    # a little seasonality: quieter August and Christmas
    out: list[float] = []
    for d in days:
        w = float(WEEKDAYS[d.weekday()])
        if d.month == 8 or (d.month == 12 and d.day > 22):
            w *= 0.6
        out.append(w)
    return out


def generate(n: int, first: date, last: date, seed: int = 14) -> Iterator[tuple[Any, ...]]:
    """``n`` call rows spread over the local days ``first``..``last``."""
    rng = random.Random(seed)
    members = _queue_agents(rng)
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    day_picks = rng.choices(days, weights=_day_weights(days), k=n)
    hour_picks = rng.choices(range(24), weights=HOURS, k=n)
    customers = 400_000
    for i in range(n):
        d, h = day_picks[i], hour_picks[i]
        started = datetime(d.year, d.month, d.day, h, tzinfo=TZ).timestamp() + rng.random() * 3600
        customer = f"+346{rng.randrange(customers):08d}"
        ctc = 0
        queue = did = dialed = answered_by = ""
        rang: list[str] = []
        took: list[str] = []
        transfers: list[dict[str, Any]] = []
        wait = answered_at = None
        talk = 0.0
        disposition = ""
        if rng.random() < 0.75:
            direction, caller, did = "inbound", customer, rng.choice(DIDS)
            queue = rng.choice(QUEUES)
            r = rng.random()
            rang = rng.sample(members[queue], rng.choice((1, 1, 2, 3)))
            if r < 0.82:
                outcome = "answered"
                wait = rng.expovariate(1 / 18)
                answered_by = rang[-1]
                took = [answered_by]
                if rng.random() < 0.06:
                    outcome = "transferred"
                    to = rng.choice(AGENTS)
                    took.append(to)
                    transfers = [{"kind": "blind", "from": answered_by, "to": to}]
                answered_at = started + wait
                talk = rng.lognormvariate(5.0, 0.8)
                disposition = rng.choice(DISPOSITIONS)
            elif r < 0.92:
                outcome = "abandoned"
                wait = rng.expovariate(1 / 40)
            elif r < 0.98:
                outcome, wait = "noanswer", 60.0
            else:
                outcome, wait, rang = "busy", 0.0, []
            ended = (answered_at or started + (wait or 0.0)) + talk
            caller_e164, other_e164 = customer, did
        else:
            direction, caller, dialed = "outbound", rng.choice(AGENTS), customer
            ctc = int(rng.random() < 0.4)
            r = rng.random()
            rang = [caller] if ctc else []
            if r < 0.55:
                outcome = "answered"
                answered_at = started + rng.uniform(3, 25)
                talk = rng.lognormvariate(4.6, 0.9)
                disposition = rng.choice(DISPOSITIONS)
            else:
                outcome = rng.choice(("noanswer", "noanswer", "noanswer", "busy", "failed"))
            ended = (answered_at or started + rng.uniform(5, 40)) + talk
            caller_e164, other_e164 = None, customer
        yield (
            f"bench:{i}", str(i), "bench", direction, ctc, caller, did, dialed, queue,
            json.dumps(rang), json.dumps(took), answered_by, json.dumps(transfers), outcome,
            started, answered_at, ended, 0.0, wait, talk, ended - started, disposition,
            caller_e164, other_e164, ended,
        )  # fmt: skip


def _sales_rows(
    rng: random.Random, since: float, until: float, n: int
) -> Iterator[tuple[Any, ...]]:
    statuses = ["new", "contacted", "qualified", "nurturing", "won", "lost"]
    sources = ["web_form", "inbound_call", "import", "api"]
    reasons = ["no_budget", "competitor", "no_answer", "timing", ""]
    for i in range(n):
        at = rng.uniform(since, until)
        status = rng.choices(statuses, weights=[20, 25, 15, 10, 12, 18])[0]
        yield (
            i + 1, "lead", f"Lead{i}", "Bench", status, rng.choice(sources),
            rng.choice(reasons) if status == "lost" else "", at, at + rng.uniform(0, 86400 * 30),
        )  # fmt: skip


def build(path: Path, n: int, first: date, last: date) -> None:
    """Migrate a new store, then load ``n`` calls and some leads and deals without triggers."""
    asyncio.run(_migrate(path))
    since = datetime(first.year, first.month, first.day, tzinfo=TZ).timestamp()
    until = datetime(last.year, last.month, last.day, tzinfo=TZ).timestamp() + 86400
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("PRAGMA synchronous = OFF")
    triggers = con.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
        " AND tbl_name IN ('calls', 'call_facts', 'call_agent_facts')"
    ).fetchall()
    started = time.perf_counter()
    con.execute("BEGIN")
    for name, _ in triggers:  # the bulk load builds facts and rollups a statement each below
        con.execute(f"DROP TRIGGER {name}")
    marks = ",".join("?" * len(COLUMNS))
    sql = f"INSERT INTO calls ({','.join(COLUMNS)}) VALUES ({marks})"
    batch: list[tuple[Any, ...]] = []
    for row in generate(n, first, last):
        batch.append(row)
        if len(batch) == 50_000:
            con.executemany(sql, batch)
            batch.clear()
    con.executemany(sql, batch)
    loaded = time.perf_counter()
    con.execute("INSERT INTO call_facts SELECT * FROM call_facts_source")
    con.execute("INSERT OR IGNORE INTO call_agent_facts SELECT * FROM call_agent_facts_source")
    facts = time.perf_counter()
    con.execute("INSERT INTO report_callbacks SELECT * FROM report_callback_source")
    for sql in call_reports.rebuild_statements():
        con.execute(sql, {"a": 0.0, "b": until + 86400})
    for _, create in triggers:
        con.execute(create)
    rng = random.Random(15)
    con.executemany(
        "INSERT INTO people (id, kind, first_name, last_name, status, source, lost_reason,"
        " created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
        list(_sales_rows(rng, since, until, 100_000)),
    )
    stages = ["qualification", "proposal", "negotiation", "won", "lost"]
    con.executemany(
        "INSERT INTO deals (person_id, title, stage, amount, currency, created_at, updated_at)"
        " VALUES (?, 'Deal', ?, ?, 'EUR', ?, ?)",
        [
            (
                rng.randint(1, 100_000),
                rng.choice(stages),
                round(rng.uniform(100, 20000), 2),
                (t := rng.uniform(since, until)),
                t + rng.uniform(0, 86400 * 60),
            )
            for _ in range(20_000)
        ],
    )
    con.execute("COMMIT")
    con.execute("ANALYZE")
    con.close()
    print(
        f"built {n:,} calls: load {loaded - started:.0f} s, facts {facts - loaded:.0f} s,"
        f" rollups {time.perf_counter() - facts:.0f} s"
    )


async def _migrate(path: Path) -> None:
    db = await Database.open(path)
    await db.close()


Report = Callable[[Database, ReportQuery, PanelSettings], Awaitable[dict[str, Any]]]


def reports() -> list[tuple[str, Report, str]]:
    summary = call_reports.call_summary
    return [
        ("call_summary by day", summary, "day"),
        ("call_summary by hour", summary, "hour"),
        ("call_summary by queue", summary, "queue"),
        ("call_summary by did", summary, "did"),
        ("call_summary by disposition", summary, "disposition"),
        ("agents", call_reports.agents, "day"),
        ("missed_heatmap", call_reports.missed_heatmap, "day"),
        ("dispositions", call_reports.dispositions, "day"),
        ("leads_over_time", sales_reports.leads_over_time, "day"),
        ("time_to_first_contact", sales_reports.time_to_first_contact, "day"),
        ("funnel", sales_reports.funnel, "day"),
        ("pipeline", sales_reports.pipeline, "day"),
        ("lost_by_reason", sales_reports.lost_by_reason, "day"),
    ]


async def _best(
    fn: Report, db: Database, q: ReportQuery, settings: PanelSettings, repeat: int, **kw: Any
) -> tuple[float, dict[str, Any]]:
    """The fastest of ``repeat`` runs in ms, and the report."""
    best, doc = float("inf"), {}
    for _ in range(repeat):
        t0 = time.perf_counter()
        doc = await fn(db, q, settings, **kw)
        best = min(best, (time.perf_counter() - t0) * 1000)
    return best, doc


async def measure(
    path: Path, month: tuple[date, date], year: tuple[date, date], repeat: int, check: bool
) -> bool:
    t0 = time.perf_counter()
    db = await Database.open(path)
    if time.perf_counter() - t0 > 1:
        print(f"opened and migrated the store in {time.perf_counter() - t0:.0f} s")
    settings = PanelSettings()
    ok = True
    head = f"{'report':34} {'month ms':>9} {'year ms':>9}"
    print(head + (f" {'facts: month':>12} {'year':>7}  same" if check else ""))
    try:
        cases: list[tuple[str, Report, dict[str, Any]]] = [
            (name, fn, {"group_by": g}) for name, fn, g in reports()
        ]
        cases.append(("call_summary queue=q03 by day", call_reports.call_summary,
                      {"group_by": "day", "queue": "q03"}))  # fmt: skip
        cases.append(("call_summary agent=150 by day", call_reports.call_summary,
                      {"group_by": "day", "agent": "150"}))  # fmt: skip
        cases.append(("agents queue=q03", call_reports.agents, {"queue": "q03"}))
        rolled_up = (call_reports.call_summary, call_reports.agents,
                     call_reports.missed_heatmap, call_reports.dispositions)  # fmt: skip
        for name, fn, extra in cases:
            times, docs = [], []
            for start, end in (month, year):
                ms, doc = await _best(fn, db, ReportQuery(start=start, end=end, **extra),
                                      settings, repeat)  # fmt: skip
                times.append(ms)
                docs.append(doc)
            flag = "" if times[0] < GOAL_MS else "  over the goal"
            ok = ok and times[0] < GOAL_MS
            line = f"{name:34} {times[0]:9.0f} {times[1]:9.0f}"
            if check and fn in rolled_up:  # once each: the facts take seconds
                same = True
                for (start, end), doc in zip((month, year), docs, strict=True):
                    q = ReportQuery(start=start, end=end, **extra)
                    ms, facts = await _best(fn, db, q, settings, 1, rollups=False)
                    line += f" {ms:{12 if start == month[0] else 7}.0f}"
                    same = same and facts == doc
                line += "  same" if same else "  DIFFERENT"
                ok = ok and same
            print(line + flag)
        t0 = time.perf_counter()
        await sales_reports.best_hour(db, None, settings)
        print(f"{'best_hour (all outbound)':34} {'':>9} {(time.perf_counter() - t0) * 1000:9.0f}")
    finally:
        await db.close()
    return ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=5_000_000)
    ap.add_argument("--store", type=Path, help="keep the store here (reused when it exists)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--check", action="store_true", help="compare with the facts alone")
    args = ap.parse_args()
    today = datetime.now(TZ).date()
    last = today - timedelta(days=1)
    first = last - timedelta(days=364)
    month_end = today.replace(day=1) - timedelta(days=1)
    month = (month_end.replace(day=1), month_end)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.store or Path(tmp) / "reports.db"
        if not path.exists():
            build(path, args.calls, first, last)
        print(f"store {path} ({path.stat().st_size / 1e9:.2f} GB); month {month[0]}..{month[1]},"
              f" year {first}..{last}")  # fmt: skip
        ok = asyncio.run(measure(path, month, (first, last), args.repeat, args.check))
    print("every month report under 500 ms" if ok else "some month report is over 500 ms"
          + (" (or differs from the facts)" if args.check else ""))  # fmt: skip


if __name__ == "__main__":
    main()
