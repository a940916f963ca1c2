"""Worklist benchmark: the first page of ``GET /api/v1/worklist`` in each order and with each
metric filter, on leads whose customer metrics are stored (as the intel service leaves them).

    python bench/worklist.py                 # 100,000 leads, a temporary store
    python bench/worklist.py --leads 20000   # a quicker look

The metrics rows are written directly with a plausible spread (a fifth of the leads bought,
half of those at risk...), since what is measured is the worklist's query, not the metrics'
computation (bench/intel.py measures that).
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
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.intel.metrics import METRICS, rfm_segment
from gateway.store.db import Database
from gateway.store.scoring import ScoringSettings
from gateway.store.scoring_service import ScoringService

TZ = ZoneInfo("Europe/Madrid")
DAY = 86400.0
ACTIONS = ("call_back", "send_offer", "revive_lost_deal", "update_data", "no_action")


def build(path: Path, leads: int, now: float) -> None:
    asyncio.run(_migrate(path))
    rng = random.Random(14)
    con = sqlite3.connect(path)
    with con:
        con.executemany(
            "INSERT INTO people (id, kind, first_name, status, source, score, owner, created_at,"
            " updated_at) VALUES (?, 'lead', ?, ?, 'import', ?, ?, ?, ?)",
            (
                (i, f"L{i}", rng.choice(["new", "contacted", "nurturing", "lost", "won"]),
                 rng.randint(0, 20) / 2, rng.choice(["ana", "bruno", "carla"]),
                 now - 400 * DAY, now - 400 * DAY)
                for i in range(1, leads + 1)
            ),
        )  # fmt: skip

        def rows() -> Any:
            for i in range(1, leads + 1):
                bought = rng.random() < 0.2
                values: dict[str, tuple[float | None, str | None]] = {
                    name: (None, None) for name in METRICS
                }
                if bought:
                    r, f, m = rng.randint(1, 5), rng.randint(1, 5), rng.randint(1, 5)
                    risk = round(rng.random(), 2)
                    values["rfm_segment"] = (r * 100 + f * 10 + m, rfm_segment(r, f))
                    values["churn_30"] = (risk, "high" if risk >= 0.6 else "low")
                    values["clv_historic"] = (rng.randint(50, 20000), "EUR")
                else:
                    values["rfm_segment"] = (None, "prospect")
                values["best_hour"] = (rng.randint(9, 19), None)
                values["next_best"] = (None, rng.choice(ACTIONS))
                for name, (value, label) in values.items():
                    yield (i, name, value, label, "bench", json.dumps({"percent": 50}), now)

        con.executemany(
            "INSERT INTO person_metrics (person_id, metric, value, label, reason, params,"
            " computed_at) VALUES (?,?,?,?,?,?,?)",
            rows(),
        )
    con.close()


async def _migrate(path: Path) -> None:
    db = await Database.open(path)
    await db.close()


AT_RISK = ["at_risk", "about_to_sleep", "hibernating"]
CASES: list[tuple[str, dict[str, Any]]] = [
    ("-score (the default)", {}),
    ("-churn_risk", {"sort": "-churn_risk"}),
    ("-value", {"sort": "-value"}),
    ("rfm_segments=at_risk,about_to_sleep,hibernating", {"rfm_segments": AT_RISK}),
    ("churn_risk_min=0.6, -churn_risk", {"churn_risk_min": 0.6, "sort": "-churn_risk"}),
    ("next_best=revive_lost_deal", {"next_best": ["revive_lost_deal"]}),
    (
        "owner=ana, rfm_segments=at_risk, -value",
        {"owner": "ana", "rfm_segments": ["at_risk"], "sort": "-value"},
    ),
]


async def measure(path: Path, now: float) -> None:
    db = await Database.open(path, clock=lambda: now)
    try:
        scoring = ScoringService(db, ScoringSettings(), clock=lambda: now, tz=TZ)
        for label, kwargs in CASES:
            runs = []
            for _ in range(3):
                t = time.perf_counter()
                items, _ = await scoring.worklist(limit=50, **kwargs)
                runs.append(time.perf_counter() - t)
            print(f"{label:<50} {len(items):3d} items {min(runs) * 1000:8.1f} ms")
    finally:
        await db.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--leads", type=int, default=100_000)
    args = ap.parse_args()
    now = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "worklist.db"
        t = time.perf_counter()
        build(path, args.leads, now)
        print(f"built {args.leads:,} leads with metrics in {time.perf_counter() - t:.0f} s")
        asyncio.run(measure(path, now))


if __name__ == "__main__":
    main()
