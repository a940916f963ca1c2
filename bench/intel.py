"""Best-hour and metrics benchmark: leads with a year of outbound calls each.

    python bench/intel.py                    # 100,000 leads, 5 calls each, a temporary store
    python bench/intel.py --leads 20000      # a quicker look

Prints: everybody's answer profile (the cohort's, measured at start and nightly), one lead's
best hour (``GET /api/v1/leads/{id}/best-hour``), a segment's (``POST
/api/v1/segments/best-hour``), the worklist's first page (ordered by score, then best hour now),
and the start-up catch-up of every lead's metrics: the whole of it, and its longest write
transaction (other writers wait for the store's write lock that long; lookups do not).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.campaigns.model import Segment
from gateway.campaigns.segment import segment_where
from gateway.intel import service as intel_service
from gateway.intel.metrics import Metric
from gateway.intel.service import IntelService
from gateway.panel.settings import PanelSettings
from gateway.reports import sales
from gateway.store.db import Database
from gateway.store.scoring import ScoringSettings
from gateway.store.scoring_service import ScoringService

TZ = ZoneInfo("Europe/Madrid")
DAY = 86400.0
# answer rate by local hour: mornings and late afternoons answer more
ANSWER = {h: 0.2 + 0.5 * (h in (10, 11, 17, 18)) + 0.2 * (h in (12, 16)) for h in range(24)}


def build(path: Path, leads: int, calls_each: int, now: float) -> None:
    asyncio.run(_migrate(path))
    rng = random.Random(14)
    con = sqlite3.connect(path)
    with con:
        con.executemany(
            "INSERT INTO people (id, kind, first_name, status, source, score, created_at,"
            " updated_at) VALUES (?, 'lead', ?, 'new', ?, ?, ?, ?)",
            (
                (i, f"L{i}", rng.choice(["web_form", "import", "api"]),
                 rng.randint(0, 20) / 2, now - 400 * DAY, now - 400 * DAY)
                for i in range(1, leads + 1)
            ),
        )  # fmt: skip
        con.executemany(
            "INSERT INTO phones (person_id, raw, e164) VALUES (?, ?, ?)",
            ((i, f"+346{i:08d}", f"+346{i:08d}") for i in range(1, leads + 1)),
        )

        def rows() -> object:
            n = 0
            for i in range(1, leads + 1):
                for _ in range(calls_each):
                    n += 1
                    hour = rng.choice(range(9, 20))  # local (Madrid: UTC+1, +2 in summer)
                    midnight = now - rng.randint(1, 364) * DAY
                    midnight -= midnight % DAY
                    start = midnight + (hour - 1) * 3600 + rng.randint(0, 3599)
                    ok = rng.random() < ANSWER[hour]
                    yield (f"b:{n}", str(n), "b", "outbound", "101", f"+346{i:08d}",
                           "answered" if ok else "noanswer", start, start + 60, i,
                           f"+346{i:08d}", start)  # fmt: skip

        con.executemany(
            "INSERT INTO calls (id, linkedid, pbx, direction, caller, dialed, outcome,"
            " started_at, ended_at, person_id, other_e164, saved_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            rows(),  # type: ignore[arg-type]
        )
    con.close()


async def _migrate(path: Path) -> None:
    db = await Database.open(path)
    await db.close()


async def measure(path: Path, now: float) -> None:
    db = await Database.open(path, clock=lambda: now)
    settings = PanelSettings(timezone="Europe/Madrid")
    try:
        t = time.perf_counter()
        profile = await sales.answer_profile(db, TZ, None, now=now)
        print(f"everybody's profile ({profile.overall.attempts:,} calls)"
              f"   {(time.perf_counter() - t) * 1000:8.0f} ms")  # fmt: skip
        best = []
        for pid in (1, 777, 4242):
            t = time.perf_counter()
            await sales.best_hour(db, pid, settings, now=now, everybody=profile)
            best.append(time.perf_counter() - t)
        print(f"one lead's best hour                  {min(best) * 1000:8.1f} ms")
        where = segment_where(Segment(sources=["web_form"]), TZ)
        t = time.perf_counter()
        doc = await sales.best_hour(db, where, settings, now=now, everybody=profile)
        print(f"a segment's best hour ({doc['attempts']:,} calls)"
              f"  {(time.perf_counter() - t) * 1000:8.0f} ms")  # fmt: skip

        intel = IntelService(db, tz=TZ, clock=lambda: now)
        await intel.refresh_cohort()
        intel.cohort_measured.set()
        longest = 0.0
        original = intel._store

        async def timed(metrics: dict[int, list[Metric]]) -> None:
            nonlocal longest
            t0 = time.perf_counter()
            await original(metrics)
            longest = max(longest, time.perf_counter() - t0)

        intel._store = timed  # type: ignore[method-assign]
        t = time.perf_counter()
        n = await intel.catch_up()
        took = time.perf_counter() - t
        print(f"start-up catch-up of {n:,} leads        {took:8.1f} s"
              f" ({n / took:,.0f}/s; longest write transaction, {intel_service.CATCH_UP_BATCH}"
              " people:"
              f" {longest * 1000:.0f} ms)")  # fmt: skip

        scoring = ScoringService(db, ScoringSettings(), clock=lambda: now, tz=TZ)
        runs = []
        for _ in range(3):
            t = time.perf_counter()
            await scoring.worklist(limit=50)
            runs.append(time.perf_counter() - t)
        print(f"worklist, first page of 50            {min(runs) * 1000:8.1f} ms")
    finally:
        await db.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--leads", type=int, default=100_000)
    ap.add_argument("--calls", type=int, default=5, help="outbound calls per lead")
    args = ap.parse_args()
    now = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "intel.db"
        t = time.perf_counter()
        build(path, args.leads, args.calls, now)
        print(f"built {args.leads:,} leads, {args.leads * args.calls:,} calls"
              f" in {time.perf_counter() - t:.0f} s")  # fmt: skip
        asyncio.run(measure(path, now))


if __name__ == "__main__":
    main()
