"""The worklist and the best hour to call (gateway/store/scoring_service.py): each lead shows
its hour, and among leads with the same score those whose best hour is now come first. On a
real SQLite file, with the best hours the intel service computes from real call-log rows."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from gateway.api.schemas import Worklist
from gateway.intel.service import IntelService
from gateway.store.calllog import CallLog
from gateway.store.db import Database
from gateway.store.scoring import ScoringSettings
from gateway.store.scoring_service import ScoringService
from tests.test_panel_support import API_TOKEN, PanelWorld, open_world

MADRID = ZoneInfo("Europe/Madrid")


def madrid(day: int, hour: int, minute: int = 0) -> float:
    return datetime(2025, 3, day, hour, minute, tzinfo=MADRID).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# name, score, the hours their answered outbound calls started at (none: no best hour)
LEADS: list[tuple[str, float | None, list[int]]] = [
    ("Ana", 7.0, [10, 10]),
    ("Bea", 7.0, [16, 16]),
    ("Cruz", 7.0, []),
    ("Dani", 8.0, [16, 16]),
    ("Eloy", None, [16]),
]


async def _world(db: Database, clock: Clock) -> dict[str, int]:
    ids: dict[str, int] = {}
    log = CallLog(db)
    n = 0
    for i, (name, score, hours) in enumerate(LEADS):
        number = f"+3460000{i:04d}"
        async with db.transaction() as conn:
            cur = await conn.execute(
                "INSERT INTO people (kind, first_name, status, score, created_at, updated_at)"
                " VALUES ('lead', ?, 'new', ?, 0, 0)",
                (name, score),
            )
            pid = int(cur.lastrowid or 0)
            await conn.execute(
                "INSERT INTO phones (person_id, raw, e164) VALUES (?, ?, ?)", (pid, number, number)
            )
        ids[name] = pid
        for day, hour in enumerate(hours, start=3):
            n += 1
            start = madrid(day, hour, 15)
            assert await log.save({
                "id": f"w:{n}", "pbx": "w", "linkedid": str(n), "direction": "outbound",
                "caller": "101", "dialed": number, "outcome": "answered",
                "started_at": start, "answered_at": start + 5, "ended_at": start + 65,
            })  # fmt: skip
    intel = IntelService(db, tz=MADRID, clock=clock)
    await intel.recompute_many(ids.values())
    return ids


async def test_among_equal_scores_the_leads_whose_best_hour_is_now_come_first(
    db: Database,
) -> None:
    clock = Clock(madrid(10, 16, 20))  # Monday 16:20
    ids = await _world(db, clock)
    service = ScoringService(db, ScoringSettings(), clock=clock, tz=MADRID)
    names = {v: k for k, v in ids.items()}

    async def order() -> list[str]:
        items, _ = await service.worklist()
        return [names[i.person.id] for i in items]

    # 8 first; among the 7s Bea answers at 16:00, now; Ana (10:00) and Cruz (no hour) by id
    assert await order() == ["Dani", "Bea", "Ana", "Cruz", "Eloy"]
    clock.now = madrid(11, 10, 5)  # Tuesday 10:05: Ana's hour
    assert await order() == ["Dani", "Ana", "Bea", "Cruz", "Eloy"]
    clock.now = madrid(11, 13, 0)  # nobody's hour: the order of before
    assert await order() == ["Dani", "Ana", "Bea", "Cruz", "Eloy"]

    clock.now = madrid(11, 16, 59)
    items, _ = await service.worklist()
    doc = msgspec.convert({"items": [i.to_dict() for i in items], "next_cursor": None}, Worklist)
    hints = {names[i.person.id]: i.best_hour for i in doc.items}
    assert hints["Cruz"] is None  # never called, and nobody else's calls measured
    bea = hints["Bea"]
    assert bea is not None
    assert (bea.hour, bea.label, bea.now, bea.source) == (16, "16:00", True, "own")
    # own rate 2/2, two calls' worth of prior at it: 100 %
    assert bea.percent == 100
    ana = hints["Ana"]
    assert ana is not None and (ana.label, ana.now) == ("10:00", False)


async def test_the_worklist_route_shows_the_best_hour(aiohttp_server: Any, tmp_path: Path) -> None:
    gen = open_world(aiohttp_server, tmp_path)
    world: PanelWorld = await gen.__anext__()
    try:
        db = world.gw.db
        assert db is not None
        ids = await _world(db, Clock(madrid(10, 12)))
        s = await world.browser()
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        async with s.get(world.url("/api/v1/worklist"), headers=headers) as r:
            assert r.status == 200, await r.text()
            doc = await r.json()
        by_id = {i["person"]["id"]: i for i in doc["items"]}
        assert by_id[ids["Bea"]]["best_hour"]["label"] == "16:00"
        assert by_id[ids["Bea"]]["best_hour"]["source"] == "own"
        assert by_id[ids["Cruz"]]["best_hour"] is None
    finally:
        await gen.aclose()
