"""A campaign call task that allows a window falls due at the lead's best hour to call, inside
the lead's business hours (gateway/campaigns/scheduler.py with gateway/intel/besthour.py): a
real gateway on a real SQLite file, the best hours computed by the intel service from real
call-log rows. Hours are Madrid's (the panel's zone); business hours 09:00-19:00 on weekdays in
each lead's own zone.

    Elena (Madrid)   answered at 17:00 on Monday and Tuesday: best hour 17:00
    Lupe (Mexico)    answered at 10:00 Madrid twice, at 18:00 once of two: own rate 3/4, so
                     10:00 (2 + 1.5) / 4 = 0.875 and 18:00 (1 + 1.5) / 4 = 0.625; but 10:00 in
                     Madrid is 03:00 in Mexico City, closed: 18:00 (11:00 there) it is
    Nadia            never called: no best hour, due at once
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.app import Gateway
from gateway.campaigns.model import CallTask, CampaignIn, Step
from gateway.campaigns.settings import CampaignSettings
from gateway.campaigns.store import CampaignStore
from gateway.config import GatewayConfig, StoreSettings
from gateway.intel.service import IntelService
from gateway.store.calllog import CallLog
from gateway.store.models import PersonType
from gateway.store.repositories import PersonRepository

MADRID = ZoneInfo("Europe/Madrid")
MEXICO = ZoneInfo("America/Mexico_City")
DAY = 86400.0


def madrid(day: int, hour: int, minute: int = 0) -> float:
    return datetime(2025, 3, day, hour, minute, tzinfo=MADRID).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    cfg = GatewayConfig(
        store=StoreSettings(path=str(tmp_path / "store.db")),
        campaigns=CampaignSettings(tick_seconds=3600),  # the test ticks
    )
    gw = Gateway(cfg, clock=Clock(madrid(7, 7)))  # Friday 7 March 2025, 07:00
    await gw.start()
    yield gw
    await gw.stop()


async def _lead(gw: Gateway, name: str, number: str, country: str) -> int:
    assert gw.db is not None
    data = {"first_name": name, "status": "new", "country": country, "phones": [number]}
    return (await PersonRepository(gw.db).create(PersonType.LEAD, data)).person.id


async def _due_of_tasks(gw: Gateway) -> dict[int, float]:
    assert gw.db is not None
    rows = await gw.db.conn.execute_fetchall("SELECT person_id, due_at FROM follow_ups")
    return {int(r[0]): float(r[1]) for r in rows}


async def test_call_tasks_fall_due_at_the_best_open_hour(gateway: Gateway) -> None:
    gw, clock = gateway, gateway.clock
    assert gw.db is not None and gw.campaigns is not None and isinstance(clock, Clock)
    elena = await _lead(gw, "Elena", "+34 600 000 001", "ES")
    lupe = await _lead(gw, "Lupe", "+52 55 1234 5678", "MX")
    nadia = await _lead(gw, "Nadia", "+34 600 000 003", "ES")
    log = CallLog(gw.db)
    plan = [("+34600000001", 3, 17, True), ("+34600000001", 4, 17, True)]
    plan += [("+525512345678", 3, 10, True), ("+525512345678", 4, 10, True)]
    plan += [("+525512345678", 5, 18, True), ("+525512345678", 6, 18, False)]
    for n, (number, day, hour, answered) in enumerate(plan):
        start = madrid(day, hour, 10)
        assert await log.save({
            "id": f"c:{n}", "pbx": "c", "linkedid": str(n), "direction": "outbound",
            "caller": "101", "dialed": number, "started_at": start, "ended_at": start + 60,
            "outcome": "answered" if answered else "noanswer",
            "answered_at": start + 5 if answered else None,
        })  # fmt: skip
    await IntelService(gw.db, tz=MADRID, clock=clock).recompute_many([elena, lupe, nadia])

    steps: list[Step] = [CallTask(title="Llamar", best_hour_within_days=2, expire_days=3)]
    store = CampaignStore(gw.db)
    c = await store.create(CampaignIn(name="Mejor hora", steps=steps), "sofia", clock.now)
    await store.set_status(c.id, "running", clock.now)

    clock.now = madrid(7, 9)  # Friday 09:00: Madrid opens (Mexico City: 02:00, closed)
    await gw.campaigns.tick()
    due = await _due_of_tasks(gw)
    assert due == {elena: madrid(7, 17), nadia: madrid(7, 9)}
    clock.now = madrid(7, 16)  # 09:00 in Mexico City: Lupe's turn
    await gw.campaigns.tick()
    due = await _due_of_tasks(gw)
    assert due[lupe] == madrid(7, 18)
    assert datetime.fromtimestamp(due[lupe], MEXICO).hour == 11
    # each task expires its expire_days after it falls due, not after it was made
    members: Any = await gw.db.conn.execute_fetchall(
        "SELECT person_id, due_at FROM campaign_members"
    )
    expiry = {int(r[0]): float(r[1]) for r in members}
    assert expiry[elena] == madrid(7, 17) + 3 * DAY
    assert expiry[nadia] == madrid(7, 9) + 3 * DAY
