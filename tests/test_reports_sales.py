"""Sales reports and the best hour to call, from six hand-checked leads (Madrid, March 2025,
UTC+1; every right answer below was worked out by hand).

    L1 web_form      created 3 Mar 10:00, answered call 10:30 (1,800 s), deal won 1,000 EUR
    L2 api (Mexico)  created 4 Mar 00:30 Madrid (3 Mar 17:30 in Mexico City: counted on the 4th),
                     outbound no answer 01:00, answered 09:00 (30,600 s); qualified, deal 500 USD
    L3 inbound_call  created 3 Mar 12:00 during the inbound call 11:58-12:05 (0 s); contacted
    L4 import        created 4 Mar 15:00, never called; new
    L5 web_form      created 3 Mar 09:00, answered call 09:10 (600 s), deal lost 200 EUR,
                     lost (no_budget) 4 Mar 10:00
    L6 web_form      created 1 Mar (outside the range), lost (competitor) 3 Mar 12:00
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.panel.settings import PanelSettings
from gateway.reports import sales
from gateway.reports.model import ReportQuery
from gateway.store.calllog import CallLog
from gateway.store.db import Database

MADRID = ZoneInfo("Europe/Madrid")
SETTINGS = PanelSettings(timezone="Europe/Madrid")
MAR1, MAR3, MAR4 = date(2025, 3, 1), date(2025, 3, 3), date(2025, 3, 4)


def at(d: date, hh: int, mm: int = 0) -> float:
    return datetime(d.year, d.month, d.day, hh, mm, tzinfo=MADRID).timestamp()


LEADS = [
    # id, source, status, created, lost reason, lost at, country
    (1, "web_form", "won", at(MAR3, 10), "", None, "ES"),
    (2, "api", "qualified", at(MAR4, 0, 30), "", None, "MX"),
    (3, "inbound_call", "contacted", at(MAR3, 12), "", None, "ES"),
    (4, "import", "new", at(MAR4, 15), "", None, "ES"),
    (5, "web_form", "lost", at(MAR3, 9), "no_budget", at(MAR4, 10), "ES"),
    (6, "web_form", "lost", at(MAR1, 9), "competitor", at(MAR3, 12), "ES"),
]
DEALS = [  # person, stage, amount, currency, created
    (1, "won", 1000.0, "EUR", at(MAR3, 11)),
    (2, "proposal", 500.0, "USD", at(MAR4, 10)),
    (5, "lost", 200.0, "EUR", at(MAR3, 9, 30)),
    (6, "won", 999.0, "EUR", at(MAR1, 10)),  # outside the range
]


def number(person: int) -> str:
    return f"+3460000100{person}" if person != 2 else "+525512345678"


def call(
    n: int, person: int, start: float, *, direction: str, answered: bool, end: float
) -> dict[str, Any]:
    outside = number(person)
    return {
        "id": f"s:{n}", "pbx": "s", "linkedid": str(n), "direction": direction,
        "outcome": "answered" if answered else "noanswer",
        "caller": outside if direction == "inbound" else "101",
        "dialed": outside if direction == "outbound" else None,
        "did": "+34910000001" if direction == "inbound" else None,
        "started_at": start, "answered_at": start + 5 if answered else None, "ended_at": end,
        "talk_seconds": end - start - 5 if answered else 0.0,
    }  # fmt: skip


CALLS = [
    call(1, 1, at(MAR3, 10, 30), direction="outbound", answered=True, end=at(MAR3, 10, 40)),
    call(2, 2, at(MAR4, 1), direction="outbound", answered=False, end=at(MAR4, 1, 1)),
    call(3, 2, at(MAR4, 9), direction="outbound", answered=True, end=at(MAR4, 9, 10)),
    call(4, 3, at(MAR3, 11, 58), direction="inbound", answered=True, end=at(MAR3, 12, 5)),
    call(5, 5, at(MAR3, 9, 10), direction="outbound", answered=True, end=at(MAR3, 9, 20)),
]


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    d = await Database.open(tmp_path / "sales.db", clock=lambda: at(MAR4, 18))
    async with d.transaction() as conn:
        for pid, source, status, created, reason, lost_at, country in LEADS:
            await conn.execute(
                "INSERT INTO people (id, kind, first_name, status, source, lost_reason, lost_at,"
                " country, created_at, updated_at) VALUES (?, 'lead', ?, ?, ?, ?, ?, ?, ?, ?)",
                (pid, f"L{pid}", status, source, reason, lost_at, country, created, created),
            )
            await conn.execute(
                "INSERT INTO phones (person_id, raw, e164) VALUES (?, ?, ?)",
                (pid, number(pid), number(pid)),
            )
        for person, stage, amount, currency, created in DEALS:
            await conn.execute(
                "INSERT INTO deals (person_id, title, stage, amount, currency, created_at,"
                " updated_at) VALUES (?, 'Deal', ?, ?, ?, ?, ?)",
                (person, stage, amount, currency, created, created),
            )
    log = CallLog(d)
    for c in CALLS:
        assert await log.save(c)
    yield d
    await d.close()


def q(**kw: Any) -> ReportQuery:
    return ReportQuery(**({"start": MAR3, "end": MAR4} | kw))


async def test_leads_over_time_on_the_panels_days(db: Database) -> None:
    doc = await sales.leads_over_time(db, q(), SETTINGS)
    assert doc["period"] == "day" and doc["total"] == 5
    assert [(r["period"], r["source"], r["status"], r["count"]) for r in doc["rows"]] == [
        ("2025-03-03", "inbound_call", "contacted", 1),
        ("2025-03-03", "web_form", "lost", 1),
        ("2025-03-03", "web_form", "won", 1),
        ("2025-03-04", "api", "qualified", 1),  # the Mexican lead: the 4th in Madrid
        ("2025-03-04", "import", "new", 1),
    ]
    year = await sales.leads_over_time(
        db, q(start=date(2025, 1, 1), end=date(2025, 3, 31)), SETTINGS
    )
    assert year["period"] == "week"
    assert {r["period"] for r in year["rows"]} == {"2025-W09", "2025-W10"}  # 1 Mar: week 9
    assert year["total"] == 6


async def test_time_to_first_contact(db: Database) -> None:
    doc = await sales.time_to_first_contact(db, q(), SETTINGS)
    # 0 (L3, during its call), 600 (L5), 1,800 (L1), 30,600 (L2); L4 never contacted
    assert (doc["leads"], doc["contacted"]) == (5, 4)
    assert doc["median_s"] == 1200.0 and doc["p90_s"] == 30600.0


async def test_funnel(db: Database) -> None:
    doc = await sales.funnel(db, q(), SETTINGS)
    assert [(s["key"], s["count"], s["rate"], s["rate_of_leads"]) for s in doc["stages"]] == [
        ("lead", 5, None, 1.0),
        ("contacted", 4, 0.8, 0.8),  # all but L4
        ("qualified", 3, 0.75, 0.6),  # L1 won, L2 qualified, L5 got as far as a deal
        ("won", 1, 0.3333, 0.2),
    ]


async def test_funnel_of_a_campaigns_members(db: Database) -> None:
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO campaigns (id, name, definition, created_at, updated_at)"
            " VALUES (7, 'Revive', '{}', 0, 0)"
        )
        for pid in (1, 4):
            await conn.execute(
                "INSERT INTO campaign_members (campaign_id, person_id, entered_at, due_at)"
                " VALUES (7, ?, 0, 0)",
                (pid,),
            )
    doc = await sales.funnel(db, q(campaign_id=7), SETTINGS)
    assert [s["count"] for s in doc["stages"]] == [2, 1, 1, 1]
    pipeline = await sales.pipeline(db, q(campaign_id=7), SETTINGS)
    assert pipeline["won"] == 1 and pipeline["lost"] == 0


async def test_pipeline(db: Database) -> None:
    doc = await sales.pipeline(db, q(), SETTINGS)
    assert [(r["stage"], r["deals"], r["amount"]) for r in doc["rows"]] == [
        ("qualification", 0, {}),
        ("proposal", 1, {"USD": 500.0}),
        ("negotiation", 0, {}),
        ("won", 1, {"EUR": 1000.0}),
        ("lost", 1, {"EUR": 200.0}),
    ]
    assert (doc["won"], doc["lost"], doc["win_rate"]) == (1, 1, 0.5)


async def test_lost_by_reason(db: Database) -> None:
    doc = await sales.lost_by_reason(db, q(), SETTINGS)
    # L6 was created before the range but lost within it
    assert [(r["reason"], r["count"]) for r in doc["rows"]] == [("competitor", 1), ("no_budget", 1)]
    assert doc["total"] == 2


async def test_best_hour_leans_on_the_overall_rate_when_data_is_thin(db: Database) -> None:
    doc = await sales.best_hour(db, 2, SETTINGS)
    # outbound calls in the last year: 3 of 4 answered -> a prior of 10 calls at 0.75
    assert doc["prior_rate"] == 0.75 and doc["attempts"] == 2
    cells = {(c["weekday"], c["hour"]): c for c in doc["cells"]}
    assert len(cells) == 168
    assert cells[(1, 9)]["rate"] == round((1 + 7.5) / 11, 4)  # Tuesday 09:00, answered
    assert cells[(1, 1)]["rate"] == round(7.5 / 11, 4)  # Tuesday 01:00, no answer
    assert cells[(0, 9)]["rate"] == 0.75 and cells[(0, 9)]["attempts"] == 0
    assert [(c["weekday"], c["hour"]) for c in doc["best"]] == [(1, 9), (1, 1)]
    segment = await sales.best_hour(db, [1, 5], SETTINGS)
    assert segment["attempts"] == 2 and {(c["weekday"], c["hour"]) for c in segment["best"]} == {
        (0, 10), (0, 9),
    }  # fmt: skip
    nobody = await sales.best_hour(db, [], SETTINGS)
    assert nobody["attempts"] == 0 and nobody["best"] == []
