"""Segments over a real store: each condition picks the right people, dates are whole days in
the given zone, the count splits who can be e-mailed or called, and ids page by cursor."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gateway.campaigns.model import Segment
from gateway.campaigns.segment import count_segment, matching_ids
from gateway.store.db import Database

MADRID = ZoneInfo("Europe/Madrid")
UTC = ZoneInfo("UTC")
NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC).timestamp()


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    d = await Database.open(tmp_path / "crm.db", clock=lambda: NOW)
    yield d
    await d.close()


async def person(
    db: Database,
    *,
    kind: str = "lead",
    status: str | None = "new",
    lost_reason: str = "",
    lost_at: float | None = None,
    score: float | None = None,
    source: str | None = "web_form",
    owner: str | None = None,
    country: str = "",
    emails: Sequence[str] = (),
    phones: Sequence[str] = (),
    tags: Sequence[str] = (),
    email_opt_out: bool = False,
    do_not_call: bool = False,
) -> int:
    async with db.transaction() as conn:
        cur = await conn.execute(
            "INSERT INTO people (kind, first_name, status, lost_reason, lost_at, score, source,"
            " owner, country, email_opt_out, do_not_call, created_at, updated_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                kind,
                "P",
                status if kind == "lead" else None,
                lost_reason,
                lost_at,
                score,
                source if kind == "lead" else None,
                owner,
                country,
                int(email_opt_out),
                int(do_not_call),
                NOW,
                NOW,
            ),
        )
        pid = cur.lastrowid
        assert pid is not None
        for e in emails:
            await conn.execute(
                "INSERT INTO emails (person_id, email, email_lower) VALUES (?,?,?)",
                (pid, e, e.lower()),
            )
        for n in phones:
            await conn.execute(
                "INSERT INTO phones (person_id, raw, e164) VALUES (?,?,?)", (pid, n, n)
            )
        for t in tags:
            await conn.execute("INSERT INTO person_tags (person_id, tag) VALUES (?,?)", (pid, t))
    return pid


async def run_sql(db: Database, sql: str, params: Sequence[object]) -> None:
    async with db.transaction() as conn:
        await conn.execute(sql, params)


async def ids(db: Database, segment: Segment, tz: ZoneInfo = MADRID) -> list[int]:
    return await matching_ids(db.conn, segment, tz)


def madrid(y: int, m: int, d: int, h: int = 12, mi: int = 0) -> float:
    return datetime(y, m, d, h, mi, tzinfo=MADRID).timestamp()


async def test_empty_segment_is_every_lead_but_no_contact(db: Database) -> None:
    a = await person(db)
    b = await person(db, status="lost")
    await person(db, kind="contact")
    assert await ids(db, Segment()) == [a, b]
    both = await ids(db, Segment(kinds=["lead", "contact"]))
    assert len(both) == 3


async def test_status_source_owner_country_and_score(db: Database) -> None:
    a = await person(db, status="new", source="web_form", owner="ana", country="ES", score=7.5)
    b = await person(db, status="contacted", source="import", owner=None, country="MX", score=3)
    c = await person(db, status="qualified", source="api", owner="", country="ES", score=None)
    d = await person(db, status="new", source="inbound_call", owner="luis", country="US", score=9)
    assert await ids(db, Segment(statuses=["new"])) == [a, d]
    assert await ids(db, Segment(sources=["import", "api"])) == [b, c]
    assert await ids(db, Segment(owners=["ana"])) == [a]
    # "" stands for nobody's: a NULL owner and an empty one
    assert await ids(db, Segment(owners=["", "luis"])) == [b, c, d]
    assert await ids(db, Segment(countries=["ES"])) == [a, c]
    # a score range leaves out the unscored and holds both ends
    assert await ids(db, Segment(score_min=3, score_max=7.5)) == [a, b]
    assert await ids(db, Segment(score_min=8)) == [d]
    assert await ids(db, Segment(statuses=["new"], countries=["US"], score_min=8)) == [d]


async def test_lost_reason_and_lost_dates_are_whole_days_in_the_zone(db: Database) -> None:
    early = await person(
        db, status="lost", lost_reason="no_budget", lost_at=madrid(2025, 3, 1, 0, 5)
    )
    late = await person(
        db, status="lost", lost_reason="competitor", lost_at=madrid(2025, 3, 10, 23, 30)
    )
    # 00:30 on the 11th in Madrid is still the 10th in UTC
    edge = await person(
        db, status="lost", lost_reason="no_budget", lost_at=madrid(2025, 3, 11, 0, 30)
    )
    # a revived lead keeps its old reason but is no longer lost
    await person(db, status="contacted", lost_reason="no_budget", lost_at=madrid(2025, 3, 5))
    march = Segment(lost_from=date(2025, 3, 1), lost_to=date(2025, 3, 10))
    assert await ids(db, march, MADRID) == [early, late]
    assert await ids(db, march, UTC) == [late, edge]  # 00:05 Madrid on the 1st is Feb in UTC
    assert await ids(db, Segment(lost_reasons=["no_budget"])) == [early, edge]
    assert await ids(
        db, Segment(lost_reasons=["no_budget", "competitor"], lost_to=date(2025, 3, 10))
    ) == [
        early,
        late,
    ]


async def test_last_activity_counts_activities_and_calls(db: Database) -> None:
    quiet = await person(db)  # never any activity
    noted = await person(db)
    called = await person(db)
    both_old = await person(db)
    await run_sql(
        db,
        "INSERT INTO activities (person_id, kind, at) VALUES (?, 'note', ?)",
        (noted, madrid(2025, 5, 21, 0, 30)),
    )
    await run_sql(
        db,
        "INSERT INTO calls (id, started_at, person_id, saved_at) VALUES ('pbx:1', ?, ?, ?)",
        (madrid(2025, 5, 28, 10), called, NOW),
    )
    await run_sql(
        db,
        "INSERT INTO activities (person_id, kind, at) VALUES (?, 'call', ?)",
        (both_old, madrid(2025, 1, 2)),
    )
    await run_sql(
        db,
        "INSERT INTO calls (id, started_at, person_id, saved_at) VALUES ('pbx:2', ?, ?, ?)",
        (madrid(2025, 2, 2), both_old, NOW),
    )
    # "before" a day: the latest of activities and calls is on or before it, or none at all
    assert await ids(db, Segment(last_activity_before=date(2025, 5, 21))) == [
        quiet,
        noted,
        both_old,
    ]
    assert await ids(db, Segment(last_activity_before=date(2025, 5, 20))) == [quiet, both_old]
    assert await ids(db, Segment(last_activity_before=date(2025, 1, 31))) == [quiet]
    # "after" a day: something on or after it
    assert await ids(db, Segment(last_activity_after=date(2025, 5, 21))) == [noted, called]
    assert await ids(db, Segment(last_activity_after=date(2025, 5, 22))) == [called]
    assert await ids(db, Segment(last_activity_after=date(2025, 2, 1))) == [
        noted,
        called,
        both_old,
    ]
    # 00:30 Madrid on 21 May is 22:30 UTC on the 20th: the day depends on the zone
    assert await ids(db, Segment(last_activity_after=date(2025, 5, 21)), UTC) == [called]
    assert await ids(db, Segment(last_activity_before=date(2025, 5, 20)), UTC) == [
        quiet,
        noted,
        both_old,
    ]


async def test_tags_must_all_be_there(db: Database) -> None:
    a = await person(db, tags=["vip", "fair-2025"])
    b = await person(db, tags=["vip"])
    await person(db, tags=["fair-2025"])
    assert await ids(db, Segment(tags=["vip"])) == [a, b]
    assert await ids(db, Segment(tags=["vip", "fair-2025"])) == [a]
    assert await ids(db, Segment(tags=["nope"])) == []


async def test_qualification_answers_match_the_stored_json(db: Database) -> None:
    a = await person(db)
    b = await person(db)
    c = await person(db)
    d = await person(db)
    for pid, question, value in (
        (a, "budget", "high"),
        (b, "budget", "low"),
        (c, "budget", "año"),  # non-ASCII id, stored as the panel stores it
        (d, "budget", 5),  # a number is not the choice "5"
        (a, "timing", "now"),
    ):
        await run_sql(
            db,
            "INSERT INTO qualification_answers (person_id, question, value, set_at)"
            " VALUES (?,?,?,?)",
            (pid, question, json.dumps(value, ensure_ascii=False), NOW),
        )
    assert await ids(db, Segment(answers={"budget": ["high", "año"]})) == [a, c]
    assert await ids(db, Segment(answers={"budget": ["5"]})) == []
    assert await ids(db, Segment(answers={"budget": ["high", "low"], "timing": ["now"]})) == [a]
    # a partial match of the JSON text is no match
    assert await ids(db, Segment(answers={"budget": ["hig"]})) == []


async def test_count_splits_emailable_callable_and_lost_reasons(db: Database) -> None:
    await person(
        db, status="lost", lost_reason="no_budget", emails=["a@x.es"], phones=["+34911000001"]
    )
    opted = await person(db, status="lost", lost_reason="no_budget", emails=["b@x.es"])
    await run_sql(db, "UPDATE emails SET opted_out = 1 WHERE person_id = ?", (opted,))
    bounced = await person(db, status="lost", lost_reason="competitor", emails=["c@x.es"])
    await run_sql(db, "UPDATE emails SET bounced_at = ? WHERE person_id = ?", (NOW, bounced))
    await person(db, status="lost", lost_reason="competitor", emails=["d@x.es"], email_opt_out=True)
    await person(db, status="new", emails=["e@x.es", "e2@x.es"], phones=["+34911000002"])
    dnc_number = await person(db, status="new", phones=["+34911000003"])
    await run_sql(db, "UPDATE phones SET do_not_call = 1 WHERE person_id = ?", (dnc_number,))
    await person(db, status="new", phones=["+34911000004"], do_not_call=True)
    await person(db, status="new")  # nothing to reach them by

    everyone = await count_segment(db, Segment(), MADRID)
    assert everyone.total == 8
    assert everyone.emailable == 2  # a@ and e@; opted-out, bounced and opted-out person not
    assert everyone.callable == 2  # +34911000001 and +...02
    assert everyone.by_lost_reason == {"no_budget": 2, "competitor": 2}

    lost = await count_segment(db.conn, Segment(statuses=["lost"]), MADRID)
    assert (lost.total, lost.emailable, lost.callable) == (4, 1, 1)
    none = await count_segment(db, Segment(tags=["none"]), MADRID)
    assert (none.total, none.emailable, none.callable, none.by_lost_reason) == (0, 0, 0, {})


async def test_matching_ids_pages_by_cursor(db: Database) -> None:
    made = [await person(db, status="new" if i % 3 else "lost") for i in range(25)]
    new = [p for i, p in enumerate(made) if i % 3]
    seen: list[int] = []
    after = 0
    while True:
        page = await matching_ids(
            db.conn, Segment(statuses=["new"]), MADRID, after_id=after, limit=4
        )
        if not page:
            break
        assert len(page) <= 4
        seen.extend(page)
        after = page[-1]
    assert seen == new
