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
from tests.postgres_fixtures import open_store
from tests.test_panel_support import open_world

STORE_ENGINES = ("sqlite", "postgresql")

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
async def db(store_location: str) -> AsyncIterator[Database]:
    d = await open_store(store_location, clock=lambda: at(MAR4, 18))
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


# -- the filters ---------------------------------------------------------------------------


async def _owners_and_queues(db: Database) -> None:
    """ana (extension 101) owns L1 and L3 and the won deal; L4 called in through the
    ``ventas`` queue (its first inbound call); L3's first inbound call had no queue, its second
    went to ``ventas``."""
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO users (username, role, password_hash, extensions, created_at,"
            " updated_at) VALUES ('ana', 'agent', 'x', '[\"101\"]', 0, 0)"
        )
        await conn.execute("UPDATE people SET owner = 'ana' WHERE id IN (1, 3)")
        await conn.execute("UPDATE deals SET owner = 'ana' WHERE person_id = 1")
    log = CallLog(db)
    for n, person, start, answered in ((6, 4, at(MAR4, 16), False), (7, 3, at(MAR4, 17), True)):
        c = call(n, person, start, direction="inbound", answered=answered, end=start + 300)
        assert await log.save(c | {"queue": "ventas", "did": "+34910000002"})


async def test_agent_means_the_owner_of_the_lead_or_deal(db: Database) -> None:
    await _owners_and_queues(db)
    for agent in ("101", "ana"):  # the extension (as the call reports) or the user's name
        funnel = await sales.funnel(db, q(agent=agent), SETTINGS)
        assert [s["count"] for s in funnel["stages"]] == [2, 2, 1, 1], agent  # L1 won, L3
        pipeline = await sales.pipeline(db, q(agent=agent), SETTINGS)
        assert (pipeline["won"], pipeline["lost"]) == (1, 0)
    leads = await sales.leads_over_time(db, q(agent="102"), SETTINGS)
    assert leads["total"] == 0  # nobody has 102


async def test_queue_and_did_mean_where_the_lead_first_called_in(db: Database) -> None:
    await _owners_and_queues(db)
    ventas = await sales.leads_over_time(db, q(queue="ventas"), SETTINGS)
    # L4's first inbound call went to ventas; L3's second did, but its first did not
    assert [(r["source"], r["count"]) for r in ventas["rows"]] == [("import", 1)]
    by_did = await sales.funnel(db, q(did="+34910000001"), SETTINGS)
    assert [s["count"] for s in by_did["stages"]] == [1, 1, 0, 0]  # L3 only
    lost = await sales.lost_by_reason(db, q(did="+34910000001"), SETTINGS)
    assert lost["total"] == 0
    pipeline = await sales.pipeline(db, q(did="+34910000001"), SETTINGS)
    assert sum(r["deals"] for r in pipeline["rows"]) == 0  # L3 has no deal
    assert (await sales.pipeline(db, q(queue="ventas"), SETTINGS))["rows"][1]["deals"] == 0


async def test_a_grouping_the_sales_reports_cannot_honour_is_refused(db: Database) -> None:
    with pytest.raises(ValueError, match=r"^group_by: "):
        await sales.funnel(db, q(group_by="queue"), SETTINGS)
    with pytest.raises(ValueError, match=r"^group_by: "):
        sales.check_query(q(group_by="hour"))
    sales.check_query(q())  # the default is fine


# -- best hour -----------------------------------------------------------------------------
# The outbound calls of the last year: Mon 09:10 (L5, answered), Mon 10:30 (L1, answered),
# Tue 01:00 (L2, no answer), Tue 09:00 (L2, answered): 3 of 4, a prior of 10 calls at 0.75.
# Everybody's slots: each tried one once, (1 + 7.5) / 11 = 0.7727 when answered, 7.5 / 11 =
# 0.6818 when not; hour 09: (2 + 7.5) / 12 = 0.7917.


async def test_best_hour_of_a_lead_leans_on_everybodys(db: Database) -> None:
    doc = await sales.best_hour(db, 2, SETTINGS)
    assert doc["scope"] == "lead" and doc["prior_rate"] == 0.75
    assert doc["prior"] == {"kind": "everybody", "rate": 0.75, "weight": 2.0, "attempts": 4}
    assert (doc["attempts"], doc["answered"]) == (2, 1)
    cells = {(c["weekday"], c["hour"]): c for c in doc["cells"]}
    assert len(cells) == 168 and len(doc["hours"]) == 24
    # Tuesday 09:00, answered: (1 + 2 x 0.7727) / (1 + 2)
    assert cells[(1, 9)]["rate"] == round((1 + 2 * 8.5 / 11) / 3, 4) == 0.8485
    # Tuesday 01:00, not answered: (0 + 2 x 0.6818) / 3
    assert cells[(1, 1)]["rate"] == round(2 * 7.5 / 11 / 3, 4) == 0.4545
    # Monday 09:00: the lead was never called then, everybody was: everybody's rate
    assert cells[(0, 9)]["rate"] == 0.7727 and cells[(0, 9)]["attempts"] == 0
    assert cells[(3, 12)]["rate"] == 0.75  # nobody ever: the overall rate
    assert [(c["weekday"], c["hour"]) for c in doc["best"]] == [(1, 9), (0, 9), (0, 10)]
    # 09:00 over the week: (1 + 2 x 0.7917) / 3
    assert doc["best_hour"] == {"hour": 9, "attempts": 1, "answered": 1, "rate": 0.8611}


async def test_best_hour_of_a_segment_and_of_everybody(db: Database) -> None:
    segment = await sales.best_hour(db, [1, 5], SETTINGS)
    assert segment["scope"] == "segment" and segment["prior"]["kind"] == "overall"
    assert segment["prior"]["weight"] == 10.0 and segment["attempts"] == 2
    # Mon 09:00 (L5) and Mon 10:00 (L1), answered: (1 + 7.5) / 11 each; a tie goes earlier
    assert [(c["weekday"], c["hour"], c["rate"]) for c in segment["best"]] == [
        (0, 9, 0.7727),
        (0, 10, 0.7727),
    ]
    assert segment["best_hour"]["hour"] == 9
    # the same group as a WHERE over people (a campaign's segment)
    where = await sales.best_hour(db, ("p.source = ?", ["web_form"]), SETTINGS)
    assert {(c["weekday"], c["hour"]) for c in where["best"]} == {(0, 9), (0, 10)}
    everybody = await sales.best_hour(db, None, SETTINGS)
    assert (everybody["scope"], everybody["attempts"], everybody["answered"]) == (
        "everybody",
        4,
        3,
    )
    assert everybody["best_hour"] == {"hour": 9, "attempts": 2, "answered": 2, "rate": 0.7917}
    nobody = await sales.best_hour(db, [], SETTINGS)
    assert nobody["attempts"] == 0 and nobody["best"] == [] and nobody["best_hour"] is None


async def test_the_api_names_the_grouping_a_sales_report_refuses(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    gen = open_world(aiohttp_server, tmp_path)
    world = await gen.__anext__()
    try:
        s = await world.sign_in("sofia")
        base = "start=2025-03-03&end=2025-03-04"
        for path in ("/api/v1/reports/funnel", "/api/v1/reports/leads.xlsx"):
            async with s.get(world.url(f"{path}?{base}&group_by=queue")) as r:
                assert r.status == 400, await r.text()
                assert (await r.json())["error"]["details"]["field"] == "group_by"
        # the filters a sales report reads are taken: the funnel of a queue's leads
        async with s.get(world.url(f"/api/v1/reports/funnel?{base}&queue=ventas")) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["stages"][0]["count"] == 0
    finally:
        await gen.aclose()
