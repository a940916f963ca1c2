"""The report rollups of migration 0016 against the facts they sum.

Every report is computed twice over the same store, from the rollups (the default) and from
the facts alone (``rollups=False``, the computation of tests/test_reports_calls.py's
hand-checked answers), and the two must be equal, field for field, while calls are saved,
wrapped up, corrected and deleted, across midnight and both clock changes of a year; and
what the triggers keep, call by call, must be what summing everything afresh gives. Times
and durations here are multiples of 1/64 s, so every sum is exact in floating point in
whatever order it is added, and any difference is a mistake; the 5,000,000-call bench
(``bench/reports.py --check``) compares the reports on arbitrary times.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest

from gateway.panel.settings import PanelSettings
from gateway.reports import calls, sales
from gateway.reports.model import ReportQuery
from gateway.store.calllog import CallLog
from gateway.store.db import Database

STORE_ENGINES = ("sqlite", "postgresql")

MADRID = ZoneInfo("Europe/Madrid")
# the migration's thresholds: the rollups answer these without a rebuild
SETTINGS = PanelSettings(
    service_level_seconds=20, short_abandon_seconds=5, after_call_seconds=30,
    timezone="Europe/Madrid",
)  # fmt: skip
FIRST, LAST = date(2025, 3, 27), date(2025, 4, 2)  # Madrid goes to UTC+2 on Sunday 30 March
QUEUES = ["sales", "support", ""]  # "": straight to a phone, no queue
DIDS = ["+34910000001", "+34910000002", "+34910000003"]
AGENTS = ["101", "102", "103", "104", "105"]
DISPOSITIONS = ["interested", "call_back", "resolved", ""]
CUSTOMERS = [f"+346000001{n:02d}" for n in range(30)]
TABLES = (
    "report_hours", "report_days", "report_agent_hours", "report_agent_days",
    "report_handles", "report_agent_handles", "report_callbacks",
)  # fmt: skip

Report = Callable[..., Awaitable[dict[str, Any]]]


def tick(rng: random.Random, lo: float, hi: float) -> float:
    """A random time between lo and hi, to 1/64 s (exact in binary: sums carry no rounding)."""
    return round(rng.uniform(lo, hi) * 64) / 64


def local(d: date, hh: int = 0, mm: int = 0, ss: float = 0.0, tz: ZoneInfo = MADRID) -> float:
    return datetime(d.year, d.month, d.day, hh, mm, tzinfo=tz).timestamp() + ss


def make_call(
    rng: random.Random, n: int, start: float, missed: list[tuple[float, str]]
) -> dict[str, Any]:
    """One call as the tracker logs it: inbound through a queue (or straight to a phone), or
    an agent's outbound call, now and then to the number of a missed call (a call-back)."""
    if rng.random() < 0.3:
        number = rng.choice(missed)[1] if missed and rng.random() < 0.6 else rng.choice(CUSTOMERS)
        answered = rng.random() < 0.6
        answered_at = start + tick(rng, 2, 20) if answered else None
        talk = tick(rng, 5, 600) if answered else 0.0
        agent = rng.choice(AGENTS)
        return {
            "id": f"t:o{n}", "pbx": "t", "linkedid": f"o{n}", "direction": "outbound",
            "click_to_call": rng.random() < 0.5, "caller": agent, "dialed": number,
            "agents_rang": [agent], "outcome": "answered" if answered else
            rng.choice(["noanswer", "busy", "failed"]), "started_at": start,
            "answered_at": answered_at, "ended_at": (answered_at or start + 15) + talk,
            "talk_seconds": talk, "disposition": rng.choice(DISPOSITIONS) if answered else "",
        }  # fmt: skip
    caller = rng.choice(CUSTOMERS)
    rang = rng.sample(AGENTS, rng.choice([0, 1, 1, 2, 3]))
    outcome = rng.choice(["answered"] * 6 + ["transferred", "abandoned", "abandoned", "noanswer"])
    if outcome in ("answered", "transferred") and not rang:
        rang = [rng.choice(AGENTS)]
    wait = tick(rng, 0, 70) if outcome != "noanswer" else 60.0
    if rng.random() < 0.15:  # on a threshold: 5 s short abandon, 20 s service level
        wait = rng.choice([5.0, 20.0, 5 - 1 / 64, 20 + 1 / 64])
    took: list[str] = []
    if outcome in ("answered", "transferred"):
        took = [rang[-1]]
        if outcome == "transferred":
            took.append(rng.choice([a for a in AGENTS if a != rang[-1]]))
    answered_at = start + wait if took else None
    # talk from a few seconds to hours: the handle time falls in every bin of the rollups
    talk = tick(rng, 0, rng.choice([30, 300, 900, 20000])) if took else 0.0
    ended = (answered_at + talk) if answered_at is not None else start + wait
    if not took:
        missed.append((start, caller))
    return {
        "id": f"t:i{n}", "pbx": "t", "linkedid": f"i{n}", "direction": "inbound",
        "caller": caller, "did": rng.choice(DIDS), "queue": rng.choice(QUEUES),
        "agents_rang": rang, "agents_answered": took, "answered_by": took[0] if took else None,
        "transfers": [{"kind": "blind", "from": took[0], "to": took[1]}] if len(took) > 1 else [],
        "outcome": outcome, "started_at": start, "answered_at": answered_at, "ended_at": ended,
        # the queue's own wait, or none (then the wait is start -> answer or end)
        "queue_wait_seconds": wait if rng.random() < 0.7 else None, "talk_seconds": talk,
        "disposition": rng.choice(DISPOSITIONS) if took or rng.random() < 0.1 else "",
    }  # fmt: skip


def traffic(seed: int, first: date, last: date, n: int) -> list[dict[str, Any]]:
    """``n`` calls over the local days ``first``..``last``, and a few on the edges of days
    and of the clock changes, in start order."""
    rng = random.Random(seed)
    lo, hi = local(first), local(last + timedelta(days=1))
    edges = []
    d = first
    while d <= last:  # a call just before and just after each midnight
        edges += [local(d) - 1 / 64, local(d)]
        d += timedelta(days=1)
    starts = sorted([tick(rng, lo, hi) for _ in range(n)] + [e for e in edges if lo <= e < hi])
    missed: list[tuple[float, str]] = []
    return [make_call(rng, i, s, missed) for i, s in enumerate(starts)]


async def save_all(db: Database, records: list[dict[str, Any]], seed: int = 1) -> None:
    """Save the calls, some wrapped up a moment after they ended (after-call work shorter or
    longer than the 30 s cap), the rest never; a few callers are leads in campaigns."""
    rng = random.Random(seed)
    async with db.transaction() as conn:
        for i, number in enumerate(CUSTOMERS[:12]):
            await conn.execute(
                "INSERT INTO people (id, kind, created_at, updated_at) VALUES (?, 'lead', 0, 0)",
                (i + 1,),
            )
            await conn.execute(
                "INSERT INTO phones (person_id, raw, e164) VALUES (?, ?, ?)",
                (i + 1, number, number),
            )
        for c in (1, 2):
            await conn.execute(
                "INSERT INTO campaigns (id, name, definition, created_at, updated_at)"
                " VALUES (?, ?, '{}', 0, 0)",
                (c, f"Campaign {c}"),
            )
        for person in range(1, 13):  # in a campaign for part of the range, or all of it
            entered = local(FIRST) + 86400 * (person % 3)
            left = entered + 86400 * 3 if person % 2 else None
            await conn.execute(
                "INSERT INTO campaign_members (campaign_id, person_id, entered_at, due_at,"
                " state, left_at) VALUES (?, ?, ?, 0, ?, ?)",
                (1 + person % 2, person, entered, "left" if left else "active", left),
            )
        for c in records:
            if c["ended_at"] is not None and rng.random() < 0.5:
                await conn.execute(
                    "INSERT INTO call_wrapups (call_id, at) VALUES (?, ?)",
                    (c["id"], c["ended_at"] + tick(rng, 0, 60)),
                )
    log = CallLog(db)
    for c in records:
        assert await log.save(c)


def queries(first: date, last: date) -> list[tuple[Report, ReportQuery]]:
    """Each report, grouped every way, unfiltered and with each filter."""
    out: list[tuple[Report, ReportQuery]] = []

    def add(fn: Report, **kw: Any) -> None:
        out.append((fn, ReportQuery(**({"start": first, "end": last} | kw))))

    for g in ("day", "hour", "weekday", "queue", "agent", "did", "campaign", "disposition"):
        add(calls.call_summary, group_by=g)
    for g in ("day", "hour", "queue", "did", "agent"):
        add(calls.call_summary, group_by=g, queue="sales")
        add(calls.call_summary, group_by=g, agent="102")
    add(calls.call_summary, group_by="queue", queue="")  # the calls in no queue
    add(calls.call_summary, group_by="did", did=DIDS[1])
    add(calls.call_summary, group_by="weekday", did=DIDS[0])
    add(calls.call_summary, group_by="campaign", campaign_id=1)
    add(calls.call_summary, group_by="day", campaign_id=2)
    add(calls.call_summary, group_by="hour", agent="101", queue="support")
    add(calls.call_summary, group_by="day", did=DIDS[0], queue="sales")  # facts: two filters
    add(calls.agents)
    add(calls.agents, queue="support")
    add(calls.missed_heatmap)
    add(calls.missed_heatmap, queue="support")
    add(calls.missed_heatmap, agent="103")
    add(calls.dispositions)
    add(calls.dispositions, queue="sales")
    add(calls.dispositions, agent="104")
    return out


async def same_as_facts(db: Database, settings: PanelSettings, first: date, last: date) -> int:
    """Assert every report of :func:`queries` is the same from the rollups and from the
    facts; return how many read the rollups (they change when the rollups are made wrong)."""
    fast = []
    for fn, q in queries(first, last):
        fast.append(await fn(db, q, settings))
        assert fast[-1] == await fn(db, q, settings, rollups=False), (fn.__name__, q)
    await skew(db, 1000)
    try:
        return sum([await fn(db, q, settings) != doc
                    for (fn, q), doc in zip(queries(first, last), fast, strict=True)])  # fmt: skip
    finally:
        await skew(db, -1000)


async def skew(db: Database, n: int) -> None:
    """Make every rollup row count ``n`` calls more (or fewer)."""
    async with db.transaction() as conn:
        for table in ("report_hours", "report_days", "report_agent_hours", "report_agent_days"):
            await conn.execute(
                f"UPDATE {table} SET offered = offered + ?, calls = calls + ?,"
                " answered_any = answered_any + ?",
                (n, n, n),
            )


async def snapshot(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for table in TABLES:
        rows = await db.conn.execute_fetchall(f"SELECT * FROM {table}")
        out[table] = sorted((tuple(r) for r in rows), key=repr)
    return out


async def rebuilt_from_scratch(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """What the rollups hold when summed again from the facts (as a rebuild does)."""
    async with db.transaction() as conn:
        for table in TABLES:
            await conn.execute(f"DELETE FROM {table} WHERE 1 = 1")
        await conn.execute("INSERT INTO report_callbacks SELECT * FROM report_callback_source")
        await calls.rebuild_rollups(conn, 0, 4e9)
    return await snapshot(db)


async def test_every_report_is_the_same_from_the_rollups(db: Database) -> None:
    await save_all(db, traffic(7, FIRST, LAST, 500))
    rolled = await same_as_facts(db, SETTINGS, FIRST, LAST)
    assert rolled == len(queries(FIRST, LAST)) - 5  # two filters, did by queue, two dispositions
    # a day alone, and a range starting after the clock change
    assert await same_as_facts(db, SETTINGS, date(2025, 3, 30), date(2025, 3, 30)) > 20
    assert await same_as_facts(db, SETTINGS, date(2025, 3, 31), LAST) > 20
    # what the triggers kept, call by call, is what summing everything again gives
    assert await snapshot(db) == await rebuilt_from_scratch(db)


async def test_rollups_follow_wrapups_corrections_callbacks_and_deletes(db: Database) -> None:
    records = traffic(11, FIRST, LAST, 300)
    await save_all(db, records)
    log = CallLog(db)
    rng = random.Random(3)
    answered = [c for c in records if c["direction"] == "inbound" and c["agents_answered"]]
    missed = [c for c in records if c["direction"] == "inbound" and not c["agents_answered"]]
    before = await calls.call_summary(db, ReportQuery(start=FIRST, end=LAST), SETTINGS)
    # wrap-ups saved later: a disposition and the end of after-call work (handle time moves)
    async with db.transaction() as conn:
        for c in answered[:40]:
            await conn.execute(
                "INSERT OR REPLACE INTO call_wrapups (call_id, at) VALUES (?, ?)",
                (c["id"], c["ended_at"] + 1 + rng.randrange(25)),
            )
    for c in answered[:40]:
        assert await log.annotate(c["id"], notes="called about the bill", disposition="resolved")
    # corrections: a Cdr says a missed call was answered, and an answer was a short abandon
    fixed = dict(missed[0]) | {
        "outcome": "answered", "agents_answered": ["105"], "answered_by": "105",
        "answered_at": missed[0]["started_at"] + 4, "talk_seconds": 90.0,
    }  # fmt: skip
    assert await log.correct(fixed)
    short = dict(answered[50]) | {
        "outcome": "abandoned", "agents_answered": [], "answered_by": None,
        "answered_at": None, "queue_wait_seconds": 2.5, "talk_seconds": 0.0,
    }  # fmt: skip
    assert await log.correct(short)
    # a call-back made a day later, to a missed caller with no call-back so far
    called = {r["id"] for r in await db.conn.execute_fetchall("SELECT id FROM report_callbacks")}
    calledback = next(c for c in missed[1:] if c["id"] not in called)
    back = {
        "id": "t:back", "pbx": "t", "linkedid": "back", "direction": "outbound",
        "click_to_call": True, "caller": "101", "dialed": calledback["caller"],
        "agents_rang": ["101"], "outcome": "answered",
        "started_at": calledback["started_at"] + 86400 + 0.5,
        "answered_at": calledback["started_at"] + 86410, "talk_seconds": 30.0,
        "ended_at": calledback["started_at"] + 86440,
    }  # fmt: skip
    assert await log.save(back)
    rows = await db.conn.execute_fetchall(
        "SELECT d FROM report_callbacks WHERE id = ?", (calledback["id"],)
    )
    assert [r["d"] for r in rows] == [86400.5]
    await same_as_facts(db, SETTINGS, FIRST, LAST)
    after = await calls.call_summary(db, ReportQuery(start=FIRST, end=LAST), SETTINGS)
    assert after["totals"]["aht"] != before["totals"]["aht"]  # the wrap-ups counted
    assert after["totals"]["answered"] == before["totals"]["answered"]  # one in, one out
    assert after["totals"]["callbacks"] >= before["totals"]["callbacks"]
    # deletes: the call-back (its missed call is no longer called back), and a dozen calls
    async with db.transaction() as conn:
        await conn.execute("DELETE FROM calls WHERE id = 't:back'")
        for c in rng.sample(records, 12):
            await conn.execute("DELETE FROM calls WHERE id = ?", (c["id"],))
    assert not await db.conn.execute_fetchall(
        "SELECT d FROM report_callbacks WHERE id = ?", (calledback["id"],)
    )
    await same_as_facts(db, SETTINGS, FIRST, LAST)
    assert await snapshot(db) == await rebuilt_from_scratch(db)
    # ... and nothing is left of calls deleted altogether
    async with db.transaction() as conn:
        await conn.execute("DELETE FROM calls WHERE 1 = 1")
    assert all(not rows for rows in (await snapshot(db)).values())


@pytest.mark.parametrize(
    ("zone", "first", "rolled"),
    [
        ("Europe/Madrid", date(2025, 10, 24), True),  # back to UTC+1 on Sunday 26 October
        ("America/New_York", date(2025, 3, 7), True),  # to UTC-4 on Sunday 9 March
        ("UTC", date(2025, 3, 27), True),
        ("Asia/Kolkata", date(2025, 3, 27), False),  # UTC+5:30: local hours are not UTC's
        ("Australia/Lord_Howe", date(2025, 4, 3), False),  # +11 to +10:30 on 6 April
    ],
)
async def test_midnights_and_clock_changes_in_any_zone(
    db: Database, zone: str, first: date, rolled: bool
) -> None:
    tz = ZoneInfo(zone)
    last = first + timedelta(days=4)
    settings = msgspec.structs.replace(SETTINGS, timezone=zone)
    rng = random.Random(5)
    records = []
    missed: list[tuple[float, str]] = []
    d = first
    while d <= last:  # every local hour, and both sides of each local midnight
        for h in range(24):
            records.append(
                make_call(rng, len(records), local(d, h, 0, tick(rng, 0, 3599), tz), missed)
            )
        for start in (local(d, tz=tz) - 1 / 64, local(d, tz=tz)):
            records.append(make_call(rng, len(records), start, missed))
        d += timedelta(days=1)
    if zone == "Europe/Madrid":  # 02:30 the second time (UTC+1)
        records.append(
            make_call(rng, len(records), local(date(2025, 10, 26), 2, 30, 3600, tz), missed)
        )
    await save_all(db, records)
    n = await same_as_facts(db, settings, first, last)
    assert (n > 0) == rolled
    by_hour = await calls.call_summary(db, ReportQuery(start=first, end=last, group_by="hour"),
                                       settings)  # fmt: skip
    if zone == "Europe/Madrid":  # 02:00-03:00 happened twice on the 26th: 5 days, 6 calls
        assert {r["key"]: r["offered"] + r["outbound"] for r in by_hour["rows"]}["2"] == 6
    by_day = await calls.call_summary(db, ReportQuery(start=first, end=last), settings)
    assert [r["key"] for r in by_day["rows"]] == [
        (first + timedelta(days=i)).isoformat() for i in range(5)
    ]


async def test_other_thresholds_read_the_facts_until_rebuilt(db: Database) -> None:
    await save_all(db, traffic(13, FIRST, LAST, 300))
    strict = msgspec.structs.replace(
        SETTINGS, service_level_seconds=12.5, short_abandon_seconds=3, after_call_seconds=45
    )
    q = ReportQuery(start=FIRST, end=LAST)
    since, until = calls.local_bounds(q, MADRID)
    assert await calls._plan(db, q, "day", False, strict, since, until) is None
    stale = await calls.call_summary(db, q, strict)
    assert stale == await calls.call_summary(db, q, strict, rollups=False)
    assert stale["totals"] != (await calls.call_summary(db, q, SETTINGS))["totals"]
    # the rebuild: a UTC day at a time, the newest first
    days = await calls.refresh_rollups(db, strict)
    assert days == 8  # 27 March (from 23:00 UTC the 26th) to 2 April (ends 22:00 UTC)
    assert await calls.refresh_rollups(db, strict) == 0
    assert await same_as_facts(db, strict, FIRST, LAST) > 20
    assert await calls.call_summary(db, q, strict) == stale
    # a rebuild cut short (the gateway stopped): reports reach the rebuilt days only...
    async with db.transaction() as conn:
        await conn.execute("UPDATE report_rollup_settings SET after_call = 30.0")
    await calls.refresh_rollups(db, SETTINGS)
    async with db.transaction() as conn:
        await conn.execute("UPDATE report_hours SET handle_sum = -1 WHERE hour < ?",
                           (int(local(date(2025, 3, 31))) // 3600,))  # fmt: skip
        await conn.execute(
            "UPDATE report_rollup_settings SET rebuilt_from = ?", (local(date(2025, 3, 31)),)
        )
    early = ReportQuery(start=FIRST, end=date(2025, 3, 31))
    assert await calls.call_summary(db, early, SETTINGS) == await calls.call_summary(
        db, early, SETTINGS, rollups=False
    )
    # ... and the next start finishes it: 30 March (to 22:00 UTC) back to 26 March
    assert await calls.refresh_rollups(db, SETTINGS) == 5
    assert await same_as_facts(db, SETTINGS, FIRST, LAST) > 20


async def test_the_migration_sums_a_store_that_already_has_calls(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = await Database.open(path, upto=15)
    try:
        await save_all(old, traffic(17, FIRST, LAST, 300))
    finally:
        await old.close()
    db = await Database.open(path)
    try:
        assert db.version >= 16
        assert await same_as_facts(db, SETTINGS, FIRST, LAST) > 20
        assert await snapshot(db) == await rebuilt_from_scratch(db)
    finally:
        await db.close()


async def test_percentile_at_the_edges_of_the_bins(db: Database) -> None:
    # handle times (talk + 30 s of after-call work: nobody wraps up) on and around each edge
    log = CallLog(db)
    start = local(FIRST, 10)
    n = 0
    for edge in calls.HANDLE_BIN_EDGES:
        for talk in (edge - 30.5, edge - 30.5 - 1 / 64, edge - 31, edge - 30):
            if talk < 0:
                continue
            n += 1
            await log.save({
                "id": f"t:{n}", "pbx": "t", "linkedid": str(n), "direction": "inbound",
                "caller": "+34600000001", "queue": "sales", "agents_rang": ["101"],
                "agents_answered": ["101"], "answered_by": "101", "outcome": "answered",
                "started_at": start + n, "answered_at": start + n + 1,
                "ended_at": start + n + 1 + talk, "talk_seconds": talk,
            })  # fmt: skip
    for first in range(0, n, 7):  # the 90th percentile moves down across the edges
        async with db.transaction() as conn:
            await conn.execute("DELETE FROM calls WHERE id = ?", (f"t:{first + 1}",))
        await same_as_facts(db, SETTINGS, FIRST, FIRST)


async def test_the_gateway_rebuilds_them_for_its_thresholds(tmp_path: Path) -> None:
    from gateway.app import Gateway
    from gateway.campaigns.settings import CampaignSettings
    from tests.test_panel_support import make_config

    strict = msgspec.structs.replace(SETTINGS, service_level_seconds=10, after_call_seconds=0)
    cfg = msgspec.structs.replace(
        make_config(tmp_path, panel=strict), campaigns=CampaignSettings(enabled=False)
    )
    db = await Database.open(cfg.store.path)
    try:
        await save_all(db, traffic(19, FIRST, LAST, 200))
    finally:
        await db.close()
    gw = Gateway(cfg)
    await gw.start()
    try:
        assert gw._rollups is not None and gw.db is not None
        await gw._rollups  # in the background, from the start
        rows = await gw.db.conn.execute_fetchall("SELECT * FROM report_rollup_settings")
        assert [tuple(r)[1:] for r in rows] == [(10.0, 5.0, 0.0, None)]
        assert await same_as_facts(gw.db, strict, FIRST, LAST) > 20
    finally:
        await gw.stop()


async def test_a_fact_updated_in_place(db: Database) -> None:
    # 0014 updates a fact in place for a wrap-up (besides writing it again with the call),
    # and SQLite promises no order among triggers: an update alone must be followed too
    records = traffic(23, FIRST, LAST, 200)
    await save_all(db, records)
    async with db.transaction() as conn:
        await conn.execute(
            "UPDATE call_facts SET wrapped_at = ended_at + 7, disposition = 'resolved'"
            " WHERE took = 1 AND id IN (SELECT id FROM call_facts ORDER BY id LIMIT 40)"
        )
        await conn.execute("UPDATE call_agent_facts SET wrapped_at = ended_at + 7 WHERE took = 1")
    assert await same_as_facts(db, SETTINGS, FIRST, LAST) > 20
    assert await snapshot(db) == await rebuilt_from_scratch(db)


async def test_a_range_through_half_hour_offsets(db: Database) -> None:
    # Lord Howe Island is UTC+11 in summer and +10:30 in winter: a range from summer to
    # summer starts and ends on UTC hours, but its winter hours are not UTC hours
    zone = ZoneInfo("Australia/Lord_Howe")
    settings = msgspec.structs.replace(SETTINGS, timezone="Australia/Lord_Howe")
    first, last = date(2025, 3, 30), date(2025, 10, 6)
    rng = random.Random(29)
    records: list[dict[str, Any]] = []
    missed: list[tuple[float, str]] = []
    d = first
    while d <= last:
        for h, m in ((0, 10), (0, 40), (13, 20), (23, 50)):
            records.append(make_call(rng, len(records), local(d, h, m, 0, zone), missed))
        d += timedelta(days=7)
    await save_all(db, records)
    assert await same_as_facts(db, settings, first, last) == 0
    by_hour = await calls.call_summary(
        db, ReportQuery(start=first, end=last, group_by="hour"), settings
    )
    assert {r["key"] for r in by_hour["rows"]} == {"0", "13", "23"}


async def test_percentile_of_the_calls_in_no_campaign(db: Database) -> None:
    # long calls in campaigns, short ones outside: the group of no campaign (keyed NULL)
    # has its percentile in another bin than all the calls together
    start = local(FIRST + timedelta(days=2), 12)
    records = []
    for n, caller in enumerate(CUSTOMERS):
        talk = 5000.0 + n if n < 12 else 60.0 + n  # the first 12 callers are in campaigns
        records.append({
            "id": f"t:{n}", "pbx": "t", "linkedid": str(n), "direction": "inbound",
            "caller": caller, "queue": "sales", "agents_rang": ["101"],
            "agents_answered": ["101"], "answered_by": "101", "outcome": "answered",
            "started_at": start + n * 60, "answered_at": start + n * 60 + 3,
            "ended_at": start + n * 60 + 3 + talk, "talk_seconds": talk,
        })  # fmt: skip
    await save_all(db, records)
    q = ReportQuery(start=FIRST, end=LAST, group_by="campaign")
    doc = await calls.call_summary(db, q, SETTINGS)
    assert doc == await calls.call_summary(db, q, SETTINGS, rollups=False)
    p90 = {r["key"]: r["aht_p90"] for r in doc["rows"]}
    assert p90[""] is not None and p90[""] < 200 < doc["totals"]["aht_p90"]


async def test_everybodys_answer_profile_is_the_same_from_the_rollups(db: Database) -> None:
    """The prior of every best hour (a year of everybody's outbound calls per local weekday x
    hour) sums the hourly rollups, the part-hour at the end from the facts; a zone whose hours
    are not UTC hours reads the facts alone. Same answer either way."""
    await save_all(db, traffic(11, FIRST, LAST, 600))
    now = local(date(2025, 3, 31), 10, 30)  # inside an hour, after the clock change
    for zone in ("Europe/Madrid", "America/New_York", "Asia/Kolkata"):
        tz = ZoneInfo(zone)
        rolled = await sales.answer_profile(db, tz, None, now=now)
        facts = await sales.answer_profile(db, tz, None, now=now, rollups=False)
        assert rolled == facts, zone
        assert sum(t.attempts for t in facts.cells.values()) > 50
        assert sum(t.answered for t in facts.cells.values()) > 20
    # and the rollups are what answered: one more outbound call in each of their hours shows
    async with db.transaction() as conn:
        await conn.execute(
            "UPDATE report_hours SET outbound = outbound + 1 WHERE kind = '' AND outbound > 0"
        )
    madrid = await sales.answer_profile(db, MADRID, None, now=now)
    assert madrid != await sales.answer_profile(db, MADRID, None, now=now, rollups=False)
    kolkata = ZoneInfo("Asia/Kolkata")
    assert await sales.answer_profile(db, kolkata, None, now=now) == await sales.answer_profile(
        db, kolkata, None, now=now, rollups=False
    )
