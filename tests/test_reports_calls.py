"""Call-center reports from a small hand-checked call log: every figure's right answer is
written here, worked out by hand from the nine calls below (Madrid, March 2025: UTC+1).

    day 1 (Monday 3 March)                      day 2 (Tuesday 4 March)
    c1 10:00 sales   101 took, wait 10, talk 100, wrap-up 10 s after   -> handle 110
    c2 10:05 sales   101 rang, 102 took, wait 30, talk 200, no wrap-up -> handle 200+30
    c3 11:00 sales   abandoned after 3 s (short)
    c4 11:30 sales   101 rang, abandoned after 40 s; called back at 12:00 (1,800 s)
    c5 12:00 out     101 click-to-call to c4's number, answered (the call-back)
    c6 12:30 out     101 click-to-call, failed (the agent's phone never answered)
    c7 23:59:50 support 102 took at 00:00:10 (next day!), wait 20, talk 120, wrap-up 60 s
                     after -> after-call work capped at 30 -> handle 150
    c8 09:00 support 103 rang, nobody answered (queue timeout after 60 s)
    c9 09:10 support 103 took (wait 6), transferred to 104, talk 300, wrap-up 5 s after -> 305
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import msgspec
import pytest

from gateway.panel.settings import PanelSettings
from gateway.reports import calls
from gateway.reports.model import ReportQuery
from gateway.store.calllog import CallLog
from gateway.store.db import Database
from tests.postgres_fixtures import open_store

STORE_ENGINES = ("sqlite", "postgresql")

MADRID = ZoneInfo("Europe/Madrid")
SETTINGS = PanelSettings(
    service_level_seconds=20, short_abandon_seconds=5, after_call_seconds=30,
    timezone="Europe/Madrid",
)  # fmt: skip
DAY1, DAY2 = date(2025, 3, 3), date(2025, 3, 4)


def at(d: date, hh: int, mm: int, ss: int = 0) -> float:
    return datetime(d.year, d.month, d.day, hh, mm, ss, tzinfo=MADRID).timestamp()


def inbound(
    n: int, start: float, queue: str, *, outcome: str, wait: float, talk: float = 0.0,
    rang: list[str] | None = None, took: list[str] | None = None, caller: str | None = None,
    did: str = "+34910000001", disposition: str = "", transfers: int = 0,
) -> dict[str, Any]:  # fmt: skip
    answered = outcome in ("answered", "transferred")
    answered_at = start + wait if answered else None
    ended = (answered_at + talk) if answered_at is not None else start + wait
    took = took or []
    return {
        "id": f"t:c{n}", "pbx": "t", "linkedid": f"c{n}", "direction": "inbound",
        "outcome": outcome, "caller": caller or f"+3460000000{n}", "did": did, "queue": queue,
        "agents_rang": rang or [], "agents_answered": took,
        "answered_by": took[0] if took else None,
        "transfers": [{"kind": "blind", "from": "103", "to": "104"}] * transfers,
        "started_at": start, "answered_at": answered_at, "ended_at": ended,
        "queue_wait_seconds": wait, "talk_seconds": talk, "disposition": disposition,
    }  # fmt: skip


def outbound(
    n: int, start: float, *, agent: str, number: str, outcome: str, talk: float = 0.0,
    disposition: str = "",
) -> dict[str, Any]:  # fmt: skip
    answered_at = start + 8 if outcome == "answered" else None
    return {
        "id": f"t:c{n}", "pbx": "t", "linkedid": f"c{n}", "direction": "outbound",
        "click_to_call": True, "outcome": outcome, "caller": agent, "dialed": number,
        "agents_rang": [agent], "started_at": start, "answered_at": answered_at,
        "ended_at": (answered_at or start + 20) + talk, "talk_seconds": talk,
        "disposition": disposition,
    }  # fmt: skip


CALLS = [
    inbound(1, at(DAY1, 10, 0), "sales", outcome="answered", wait=10, talk=100, rang=["101"],
            took=["101"], disposition="interested"),
    inbound(2, at(DAY1, 10, 5), "sales", outcome="answered", wait=30, talk=200,
            rang=["101", "102"], took=["102"]),
    inbound(3, at(DAY1, 11, 0), "sales", outcome="abandoned", wait=3),
    inbound(4, at(DAY1, 11, 30), "sales", outcome="abandoned", wait=40, rang=["101"]),
    outbound(5, at(DAY1, 12, 0), agent="101", number="+34600000004", outcome="answered",
             talk=60, disposition="call_back"),
    outbound(6, at(DAY1, 12, 30), agent="101", number="+34600000099", outcome="failed"),
    inbound(7, at(DAY1, 23, 59, 50), "support", outcome="answered", wait=20, talk=120,
            rang=["102"], took=["102"], did="+34910000002", disposition="resolved"),
    inbound(8, at(DAY2, 9, 0), "support", outcome="noanswer", wait=60, rang=["103"]),
    inbound(9, at(DAY2, 9, 10), "support", outcome="transferred", wait=6, talk=300,
            rang=["103"], took=["103", "104"], disposition="resolved", transfers=1),
]  # fmt: skip
# when each wrap-up was saved, seconds after its call ended (c2: never)
WRAPPED = {"t:c1": 10.0, "t:c7": 60.0, "t:c9": 5.0}


@pytest.fixture
async def db(store_location: str) -> AsyncIterator[Database]:
    d = await open_store(store_location, clock=lambda: at(DAY2, 12, 0))
    log = CallLog(d)
    async with d.transaction() as conn:  # the wrap-ups' times, as the trigger would keep them
        for c in CALLS:
            if c["id"] in WRAPPED:
                await conn.execute(
                    "INSERT INTO call_wrapups (call_id, at) VALUES (?, ?)",
                    (c["id"], c["ended_at"] + WRAPPED[c["id"]]),
                )
    for c in CALLS:
        assert await log.save(c)
    yield d
    await d.close()


def q(**kw: Any) -> ReportQuery:
    return ReportQuery(**({"start": DAY1, "end": DAY2} | kw))


def figures(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in ("key", "label")}


DAY1_ROW = {
    "offered": 5, "answered": 3, "missed": 2, "abandoned": 2, "short_abandoned": 1,
    "answer_rate": 0.6, "service_level": 0.5, "asa": 20.0, "aht": 163.3, "aht_p90": 230.0,
    "ring_no_answer": 2, "transfers": 0, "callbacks": 1, "callback_median_s": 1800.0,
    "click_to_call": 2, "click_to_call_connected": 1, "outbound": 2, "outbound_answered": 1,
}  # fmt: skip
DAY2_ROW = {
    "offered": 2, "answered": 1, "missed": 1, "abandoned": 0, "short_abandoned": 0,
    "answer_rate": 0.5, "service_level": 0.5, "asa": 6.0, "aht": 305.0, "aht_p90": 305.0,
    "ring_no_answer": 1, "transfers": 1, "callbacks": 0, "callback_median_s": None,
    "click_to_call": 0, "click_to_call_connected": 0, "outbound": 0, "outbound_answered": 0,
}  # fmt: skip
TOTALS = {
    "offered": 7, "answered": 4, "missed": 3, "abandoned": 2, "short_abandoned": 1,
    "answer_rate": 0.5714, "service_level": 0.5, "asa": 16.5, "aht": 198.8, "aht_p90": 305.0,
    "ring_no_answer": 3, "transfers": 1, "callbacks": 1, "callback_median_s": 1800.0,
    "click_to_call": 2, "click_to_call_connected": 1, "outbound": 2, "outbound_answered": 1,
}  # fmt: skip


async def test_summary_by_day_counts_each_call_on_the_day_it_started(db: Database) -> None:
    doc = await calls.call_summary(db, q(), SETTINGS)
    assert [(r["key"], r["label"]) for r in doc["rows"]] == [
        ("2025-03-03", "2025-03-03"),
        ("2025-03-04", "2025-03-04"),
    ]
    # c7 began at 23:59:50 and was answered after midnight: it is day 1's (offered then)
    assert figures(doc["rows"][0]) == DAY1_ROW
    assert figures(doc["rows"][1]) == DAY2_ROW
    assert figures(doc["totals"]) == TOTALS
    assert doc["timezone"] == "Europe/Madrid" and doc["query"]["start"] == "2025-03-03"


async def test_one_day_alone_and_a_day_without_calls(db: Database) -> None:
    doc = await calls.call_summary(db, q(start=DAY2, end=DAY2), SETTINGS)
    assert figures(doc["totals"]) == DAY2_ROW
    empty = await calls.call_summary(db, q(start=date(2025, 3, 5), end=date(2025, 3, 5)), SETTINGS)
    assert empty["rows"] == []
    assert empty["totals"]["offered"] == 0 and empty["totals"]["answer_rate"] is None
    assert empty["totals"]["service_level"] is None and empty["totals"]["aht"] is None


async def test_by_queue_by_did_and_a_queue_filter(db: Database) -> None:
    by_queue = await calls.call_summary(db, q(group_by="queue"), SETTINGS)
    rows = {r["key"]: r for r in by_queue["rows"]}
    assert set(rows) == {"", "sales", "support"}  # "": the outbound calls, in no queue
    assert rows["sales"]["offered"] == 4 and rows["sales"]["answered"] == 2
    assert rows["sales"]["service_level"] == round(1 / 3, 4)  # c1 of c1, c2, c4 (c3 short)
    assert rows["support"]["offered"] == 3 and rows["support"]["missed"] == 1
    assert rows["support"]["aht"] == 227.5  # (150 + 305) / 2
    assert rows[""]["click_to_call"] == 2 and rows[""]["offered"] == 0
    support = await calls.call_summary(db, q(queue="support", group_by="hour"), SETTINGS)
    assert [(r["key"], r["offered"], r["answered"]) for r in support["rows"]] == [
        ("9", 2, 1),
        ("23", 1, 1),
    ]
    by_did = await calls.call_summary(db, q(group_by="did"), SETTINGS)
    assert {r["key"]: r["offered"] for r in by_did["rows"]} == {
        "": 0, "+34910000001": 6, "+34910000002": 1,
    }  # fmt: skip


async def test_weekday_and_disposition_groups(db: Database) -> None:
    by_weekday = await calls.call_summary(db, q(group_by="weekday"), SETTINGS)
    assert [(r["key"], r["offered"]) for r in by_weekday["rows"]] == [("0", 5), ("1", 2)]
    by_disposition = await calls.call_summary(db, q(group_by="disposition"), SETTINGS)
    rows = {r["key"]: r for r in by_disposition["rows"]}
    assert rows["resolved"]["label"] == "Resolved" and rows["resolved"]["answered"] == 2
    assert rows["interested"]["answered"] == 1 and rows[""]["offered"] == 4  # c2, c3, c4, c8
    assert rows["call_back"]["outbound_answered"] == 1


async def test_agents_each_from_their_own_side(db: Database) -> None:
    await db.conn.execute(
        "INSERT INTO users (username, password_hash, role, extensions, display_name,"
        " created_at, updated_at) VALUES ('ana', 'x', 'agent', '[\"101\"]', 'Ana García', 0, 0)"
    )
    doc = await calls.agents(db, q(), SETTINGS)
    rows = {r["key"]: r for r in doc["rows"]}
    assert [r["key"] for r in doc["rows"]] == ["101", "102", "103", "104"]
    ana = rows["101"]
    assert ana["label"] == "Ana García" and rows["102"]["label"] == "102"
    # rang for c1 (took it), c2 (102 took it), c4 (abandoned); placed c5 and c6
    assert (ana["offered"], ana["answered"], ana["missed"], ana["ring_no_answer"]) == (3, 1, 1, 2)
    assert ana["answer_rate"] == 0.3333 and ana["service_level"] == 0.3333
    assert (ana["asa"], ana["aht"], ana["callbacks"]) == (10.0, 110.0, 1)
    assert (ana["click_to_call"], ana["click_to_call_connected"]) == (2, 1)
    assert (rows["102"]["offered"], rows["102"]["answered"], rows["102"]["aht"]) == (2, 2, 190.0)
    assert rows["102"]["service_level"] == 0.5 and rows["102"]["asa"] == 25.0
    assert (rows["103"]["ring_no_answer"], rows["103"]["transfers"]) == (1, 1)
    assert (rows["104"]["answered"], rows["104"]["aht"]) == (1, 305.0)  # the transfer's target
    assert figures(doc["totals"]) == TOTALS  # the calls once each, not the sum of the rows
    grouped = await calls.call_summary(db, q(group_by="agent"), SETTINGS)
    assert grouped["rows"] == doc["rows"] and grouped["totals"] == doc["totals"]
    one = await calls.call_summary(db, q(agent="101"), SETTINGS)
    assert figures(one["totals"]) == figures(ana)


async def test_missed_heatmap(db: Database) -> None:
    doc = await calls.missed_heatmap(db, q(), SETTINGS)
    assert len(doc["cells"]) == 168
    busy = {
        (c["weekday"], c["hour"]): (c["missed"], c["offered"]) for c in doc["cells"] if c["offered"]
    }
    assert busy == {(0, 10): (0, 2), (0, 11): (2, 2), (0, 23): (0, 1), (1, 9): (1, 2)}


async def test_dispositions(db: Database) -> None:
    doc = await calls.dispositions(db, q(), SETTINGS)
    assert [(r["key"], r["label"], r["count"]) for r in doc["rows"]] == [
        ("resolved", "Resolved", 2),
        ("call_back", "Call back", 1),
        ("interested", "Interested", 1),
        ("", "", 1),  # c2: answered, no disposition
    ]
    assert doc["total"] == 5


async def test_after_call_work_off_and_other_thresholds(db: Database) -> None:
    talk_only = msgspec.structs.replace(
        SETTINGS, after_call_seconds=0, service_level_seconds=30, short_abandon_seconds=2
    )
    doc = await calls.call_summary(db, q(), talk_only)
    t = doc["totals"]
    assert t["aht"] == 180.0  # (100 + 200 + 120 + 300) / 4
    assert t["short_abandoned"] == 0 and t["service_level"] == round(4 / 7, 4)


async def test_facts_follow_corrections_wrapups_and_deletes(db: Database) -> None:
    log = CallLog(db)
    before = time.time()
    assert await log.annotate("t:c2", disposition="resolved")
    rows = list(await db.conn.execute_fetchall("SELECT * FROM call_facts WHERE id = 't:c2'"))
    assert rows[0]["disposition"] == "resolved"
    assert before - 1 <= rows[0]["wrapped_at"] <= time.time() + 1  # saved just now
    fixed = inbound(3, at(DAY1, 11, 0), "sales", outcome="abandoned", wait=9)
    assert await log.correct(fixed)  # the Cdr said 9 s: no longer a short abandon
    doc = await calls.call_summary(db, q(start=DAY1, end=DAY1), SETTINGS)
    assert doc["totals"]["short_abandoned"] == 0 and doc["totals"]["service_level"] == 0.4
    async with db.transaction() as conn:
        await conn.execute("DELETE FROM calls WHERE id = 't:c1'")
    doc = await calls.call_summary(db, q(start=DAY1, end=DAY1), SETTINGS)
    assert doc["totals"]["offered"] == 4
    agents = list(
        await db.conn.execute_fetchall("SELECT * FROM call_agent_facts WHERE id = 't:c1'")
    )
    assert agents == []


async def test_days_follow_the_clock_change(store_location: str) -> None:
    # Sunday 30 March 2025 Madrid goes from UTC+1 to UTC+2 at 02:00 local
    d = await open_store(store_location)
    try:
        log = CallLog(d)
        sunday, monday = date(2025, 3, 30), date(2025, 3, 31)
        for n, start in enumerate((at(sunday, 0, 30), at(sunday, 23, 30), at(monday, 0, 30))):
            await log.save(inbound(n, start, "sales", outcome="answered", wait=5, talk=60,
                                   took=["101"]))  # fmt: skip
        by_day = await calls.call_summary(d, q(start=sunday, end=monday), SETTINGS)
        assert [(r["key"], r["offered"]) for r in by_day["rows"]] == [
            ("2025-03-30", 2),
            ("2025-03-31", 1),
        ]
        by_hour = await calls.call_summary(
            d, q(start=sunday, end=monday, group_by="hour"), SETTINGS
        )
        assert [(r["key"], r["offered"]) for r in by_hour["rows"]] == [("0", 2), ("23", 1)]
    finally:
        await d.close()


async def test_a_range_backwards_or_too_long_is_refused(db: Database) -> None:
    with pytest.raises(ValueError, match="end"):
        await calls.call_summary(db, q(start=DAY2, end=DAY1), SETTINGS)
    with pytest.raises(ValueError, match="400 days"):
        await calls.call_summary(db, q(start=date(2024, 1, 1), end=DAY2), SETTINGS)


# -- the API -----------------------------------------------------------------------------


@pytest.fixture
async def world(aiohttp_server: Any, tmp_path: Path) -> AsyncIterator[Any]:
    from gateway.app import Gateway, create_app
    from gateway.campaigns.settings import CampaignSettings
    from gateway.panel.routes import PANEL
    from tests.test_panel_support import FAST_HASHER, PASSWORD, USERS, PanelWorld, make_config

    cfg = msgspec.structs.replace(
        make_config(tmp_path, panel=SETTINGS), campaigns=CampaignSettings(enabled=False)
    )
    gw = Gateway(cfg, clock=lambda: at(DAY2, 12, 0))
    app = await create_app(cfg, gw)
    panel = app[PANEL]
    panel.users.hasher = FAST_HASHER
    for username, role, ext, name in USERS:
        await panel.users.add(username, PASSWORD, role, [ext], name)
    assert gw.db is not None
    for c in CALLS:
        await CallLog(gw.db).save(c)
    w = PanelWorld(gw, panel, await aiohttp_server(app))
    yield w
    await w.close()


async def test_the_api_answers_supervisors_not_agents(world: Any) -> None:
    from gateway.api.openapi import build_document
    from tests.test_api_openapi import check_response, closed

    doc = closed(build_document())
    # the route answers one of the report shapes (oneOf): check this one's
    ok = doc["paths"]["/api/v1/reports/{name}"]["get"]["responses"]["200"]
    shapes = ok["content"]["application/json"]["schema"]["oneOf"]
    assert {"$ref": "#/components/schemas/SummaryReport"} in shapes
    ok["content"]["application/json"]["schema"] = {"$ref": "#/components/schemas/SummaryReport"}
    sofia = await world.sign_in("sofia")
    url = world.url("/api/v1/reports/calls?start=2025-03-03&end=2025-03-04&group_by=day")
    async with sofia.get(url) as r:
        assert r.status == 200, await r.text()
        body = await r.json()
    check_response(doc, "GET", "/api/v1/reports/{name}", 200, body)
    # no wrap-up saved here: every answered call gets the whole 30 s of after-call work
    assert body["totals"]["offered"] == 7 and body["rows"][0]["aht"] == 170.0
    async with sofia.get(world.url("/api/v1/reports/heatmap?start=2025-03-03&end=2025-03-04")) as r:
        assert r.status == 200 and len((await r.json())["cells"]) == 168
    async with sofia.get(world.url("/api/v1/reports/calls?start=2025-03-04&end=2025-03-03")) as r:
        assert r.status == 400
        assert (await r.json())["error"]["details"]["field"] == "end"
    async with sofia.get(
        world.url("/api/v1/reports/calls?start=2025-03-03&end=2025-03-04&group_by=month")
    ) as r:
        assert r.status == 400
    async with sofia.get(world.url("/api/v1/reports/nothing?start=2025-03-03&end=2025-03-04")) as r:
        assert r.status == 404
    ana = await world.sign_in("ana")
    async with ana.get(url) as r:
        assert r.status == 403
    async with aiohttp.ClientSession() as anonymous, anonymous.get(url) as r:
        assert r.status == 401


async def test_the_hand_checked_answers_hold_from_the_facts_alone(db: Database) -> None:
    # the tests above read the rollups (migration 0016) where they can: the facts give the same
    doc = await calls.call_summary(db, q(), SETTINGS, rollups=False)
    assert figures(doc["rows"][0]) == DAY1_ROW and figures(doc["rows"][1]) == DAY2_ROW
    assert figures(doc["totals"]) == TOTALS
    for fn, query in (
        (calls.call_summary, q(group_by="queue")),
        (calls.call_summary, q(group_by="hour", queue="support")),
        (calls.agents, q()),
        (calls.missed_heatmap, q()),
        (calls.dispositions, q()),
    ):
        assert await fn(db, query, SETTINGS) == await fn(db, query, SETTINGS, rollups=False)
