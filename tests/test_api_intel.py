"""Deals and customer metrics over real HTTP on a real SQLite file: a deal posted for a person
found by e-mail recomputes their metrics, a CSV import reports its bad rows and updates by
external_id, the metrics answer in either language, and the caller lookup carries the card's
few metrics."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web

from gateway.api import setup_api
from gateway.bus import Bus
from gateway.config import GatewayConfig, config_from_dict
from gateway.intel.api import INTEL, setup_intel
from gateway.intel.metrics import METRICS
from gateway.lookup.chain import LookupChain
from gateway.store.calllog import CallLog
from gateway.store.cards import StoreCardSource
from gateway.store.db import Database
from gateway.store.events import WrapUpSaved
from tests.postgres_fixtures import open_store

STORE_ENGINES = ("sqlite", "postgresql")

ADMIN = {"Authorization": "Bearer admin-secret-token"}
READER = {"Authorization": "Bearer reader-secret-token"}
DAY = 86400.0
NOW = 1_780_000_000.0  # 2026-05-28


class Host:
    def __init__(self, db: Database, cfg: GatewayConfig) -> None:
        self.db: Database | None = db
        self.cfg = cfg
        self.bus = Bus()
        self.clock = lambda: NOW


@pytest.fixture
async def client(store_location: str, aiohttp_client: Any) -> Any:  # the store outlives the app
    cfg = config_from_dict(
        {
            "lookup": {"default_region": "ES"},
            "api": {
                "tokens": [
                    {"name": "admin", "token": "admin-secret-token"},
                    {"name": "panel", "token": "reader-secret-token", "scopes": ["crm:read"]},
                ]
            },
        }
    )
    db = await open_store(store_location)
    app = web.Application()
    setup_api(app, db=db, lookup=LookupChain(StoreCardSource(db), [], cfg.lookup), config=cfg)
    setup_intel(app, Host(db, cfg))

    async def close_db(_: web.Application) -> None:
        await db.close()

    app.on_cleanup.append(close_db)
    return await aiohttp_client(app)


async def _contact(client: Any) -> int:
    r = await client.post(
        "/api/v1/contacts",
        json={
            "first_name": "Lucía",
            "last_name": "Gómez",
            "company": "Acme",
            "country": "ES",
            "phones": ["612 345 678"],
            "emails": ["lucia@example.com"],
        },
        headers=ADMIN,
    )
    assert r.status == 201, await r.text()
    return int((await r.json())["id"])


async def test_a_deal_recomputes_the_metrics_and_the_card_shows_them(client: Any) -> None:
    pid = await _contact(client)
    # before any purchase the metrics say so
    r = await client.get(f"/api/v1/people/{pid}/metrics", headers=READER)
    assert r.status == 200, await r.text()
    doc = await r.json()
    assert [m["name"] for m in doc["metrics"]] == list(METRICS)
    recency = doc["metrics"][0]
    assert (recency["value"], recency["reason"], recency["text"]) == (
        None,
        "no_purchases",
        "No purchases yet.",
    )

    for days, ident in ((70, "shop:1"), (40, "shop:2")):
        r = await client.post(
            "/api/v1/deals",
            json={
                "email": "LUCIA@example.com",
                "title": "Order",
                "amount": 120.5,
                "product": "Coffee",
                "closed_at": NOW - days * DAY,
                "external_id": ident,
            },
            headers=ADMIN,
        )
        assert r.status == 201, await r.text()
        deal = await r.json()
        assert (deal["person_id"], deal["status"], deal["outcome"]) == (pid, "won", "created")
    # the same external id again: an update, not a third deal
    r = await client.post(
        "/api/v1/deals",
        json={
            "person_id": pid,
            "amount": 130.5,
            "closed_at": "2026-04-18",
            "external_id": "shop:2",
        },
        headers=ADMIN,
    )
    assert r.status == 200 and (await r.json())["outcome"] == "updated"

    r = await client.get(f"/api/v1/people/{pid}/metrics?lang=es", headers=READER)
    metrics = {m["name"]: m for m in (await r.json())["metrics"]}
    assert metrics["frequency"]["value"] == 2
    assert metrics["monetary"]["value"] == 251.0
    assert metrics["clv_historic"]["text"] == "Todo lo comprado hasta hoy: 251\xa0€."

    r = await client.get("/api/v1/lookup?number=612345678", headers=ADMIN)
    card = await r.json()
    assert [i["name"] for i in card["insight"]] == [
        "rfm_segment",
        "clv_historic",
        "churn_30",
        "data_quality",
        "next_best",
    ]
    assert card["insight"][1]["value"] == 251.0

    r = await client.get(f"/api/v1/deals?person_id={pid}", headers=READER)
    page = await r.json()
    assert [d["amount"] for d in page["items"]] == [130.5, 120.5]  # newest first


async def test_csv_import_keeps_good_rows_and_reports_bad_ones(client: Any) -> None:
    pid = await _contact(client)
    csv_text = (
        "external_id,phone,title,stage,amount,currency,closed_at\n"
        "crm:1,612345678,First,won,100,EUR,2026-01-10\n"
        "crm:2,699999999,Nobody's,won,50,EUR,2026-02-10\n"
        "crm:3,612345678,Bad stage,sold,10,EUR,2026-03-10\n"
        "crm:4,612345678,Open one,proposal,900,EUR,\n"
    )
    r = await client.post(
        "/api/v1/deals/import",
        data=csv_text.encode(),
        headers={**ADMIN, "Content-Type": "text/csv"},
    )
    assert r.status == 200, await r.text()
    report = await r.json()
    assert (report["created"], report["updated"]) == (2, 0)
    assert [(e["line"], e["field"]) for e in report["errors"]] == [(3, "phone"), (4, "stage")]
    r = await client.get(f"/api/v1/deals?person_id={pid}&status=open", headers=READER)
    assert [d["title"] for d in (await r.json())["items"]] == ["Open one"]
    service = client.app[INTEL]
    stored, _ = await service.stored(pid)
    assert {m.name: m for m in stored}["frequency"].value == 1


async def test_metrics_of_nobody_is_404_and_readers_cannot_write(client: Any) -> None:
    r = await client.get("/api/v1/people/999/metrics", headers=READER)
    assert r.status == 404
    r = await client.post("/api/v1/deals", json={"person_id": 1}, headers=READER)
    assert r.status == 403
    r = await client.post("/api/v1/deals", json={"title": "x"}, headers=ADMIN)
    assert r.status == 422
    assert (await r.json())["error"]["details"]["field"] == "person_id"


async def test_a_won_deal_posted_again_keeps_the_day_it_was_won(client: Any) -> None:
    """As a CRM's deals do: an update without ``closed_at`` does not move the sale to today
    (that would move its customer's recency and frequency metrics)."""
    pid = await _contact(client)
    won = NOW - 30 * DAY
    body = {"person_id": pid, "title": "Order", "amount": 10, "external_id": "shop:9"}
    r = await client.post("/api/v1/deals", json=body | {"closed_at": won}, headers=ADMIN)
    assert r.status == 201 and (await r.json())["closed_at"] == won
    r = await client.post("/api/v1/deals", json=body | {"amount": 12}, headers=ADMIN)
    deal = await r.json()
    assert r.status == 200 and (deal["amount"], deal["closed_at"]) == (12, won)


async def test_an_empty_external_id_is_refused_not_a_second_deal_or_a_crash(client: Any) -> None:
    pid = await _contact(client)
    for _ in range(2):  # twice: an empty id once went in, and the second post hit the index
        r = await client.post(
            "/api/v1/deals",
            json={"person_id": pid, "title": "Order", "amount": 10, "external_id": ""},
            headers=ADMIN,
        )
        assert r.status in (400, 422), await r.text()
        assert "external_id" in await r.text()
    r = await client.get(f"/api/v1/deals?person_id={pid}", headers=READER)
    assert (await r.json())["items"] == []


# -- the best hour to call ------------------------------------------------------------------------
# Outbound calls, Madrid: the lead answered on the 27th and 26th at 10:00 and not on the 25th at
# 16:00; a contact answered at 16:00 on the 27th, 26th and 25th and not on the 24th. Everybody:
# 5 of 7 (the prior 5/7); hour 10: (2 + 10 x 5/7) / 12 = 0.7619; hour 16 (3 answered of 5):
# (3 + 10 x 5/7) / 15 = 0.6762. The lead's 10:00: (2 + 2 x 0.7619) / 4 = 0.881.


def _madrid(day: int, hour: int) -> float:
    return datetime(2026, 5, day, hour, tzinfo=ZoneInfo("Europe/Madrid")).timestamp()


async def _calls(client: Any) -> tuple[int, int]:
    r = await client.post(
        "/api/v1/leads", json={"first_name": "Pilar", "phones": ["600 111 222"]}, headers=ADMIN
    )
    assert r.status == 201, await r.text()
    lead = int((await r.json())["id"])
    contact = await _contact(client)  # 612 345 678
    log = CallLog(client.app[INTEL].db)
    plan = [("+34600111222", 27, 10, True), ("+34600111222", 26, 10, True)]
    plan += [("+34600111222", 25, 16, False)]
    plan += [("+34612345678", d, 16, d != 24) for d in (27, 26, 25, 24)]
    for n, (number, day, hour, answered) in enumerate(plan):
        start = _madrid(day, hour)
        assert await log.save({
            "id": f"t:{n}", "pbx": "t", "linkedid": str(n), "direction": "outbound",
            "caller": "101", "dialed": number, "started_at": start, "ended_at": start + 60,
            "outcome": "answered" if answered else "noanswer",
            "answered_at": start + 5 if answered else None,
        })  # fmt: skip
    await client.app[INTEL].refresh_cohort()  # as at start and nightly
    return lead, contact


async def test_a_leads_best_hour_leans_on_everybodys(client: Any) -> None:
    lead, contact = await _calls(client)
    r = await client.get(f"/api/v1/leads/{lead}/best-hour", headers=READER)
    assert r.status == 200, await r.text()
    doc = await r.json()
    assert doc["timezone"] == "Europe/Madrid" and doc["scope"] == "lead"
    assert doc["prior"] == {"kind": "everybody", "rate": 0.7143, "weight": 2.0, "attempts": 7}
    assert (doc["attempts"], doc["answered"]) == (3, 2)
    assert doc["best_hour"] == {"hour": 10, "attempts": 2, "answered": 2, "rate": 0.881}
    assert doc["hours"][16]["rate"] == round(2 * (3 + 50 / 7) / 15 / 3, 4)  # 0.4508
    # the metric the card, the worklist and campaigns read says the same hour
    metrics = {m.name: m for m in await client.app[INTEL].recompute(lead)}
    assert (metrics["best_hour"].label, metrics["best_hour"].params["percent"]) == ("10:00", 88)
    r = await client.get(f"/api/v1/leads/{contact}/best-hour", headers=READER)
    assert r.status == 404  # a contact is no lead
    r = await client.get("/api/v1/leads/999/best-hour", headers=READER)
    assert r.status == 404


async def test_a_segments_best_hour(client: Any) -> None:
    await _calls(client)
    r = await client.post("/api/v1/segments/best-hour", json={"kinds": ["contact"]}, headers=ADMIN)
    assert r.status == 200, await r.text()
    doc = await r.json()
    assert doc["scope"] == "segment" and doc["prior"]["kind"] == "overall"
    assert (doc["attempts"], doc["answered"]) == (4, 3)
    # the contact's 16:00, pulled toward 5/7 by 10 calls: (3 + 50/7) / 14
    assert doc["best_hour"] == {"hour": 16, "attempts": 4, "answered": 3, "rate": 0.7245}
    assert doc["best"][0]["hour"] == 16
    r = await client.post(
        "/api/v1/segments/best-hour", json={"score_min": 8, "score_max": 2}, headers=ADMIN
    )
    assert r.status == 422 and (await r.json())["error"]["details"]["field"] == "score_min"
    r = await client.post("/api/v1/segments/best-hour", json={}, headers=READER)
    assert r.status == 403  # campaigns:read


async def test_start_up_does_not_wait_for_the_missing_metrics(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    db = await Database.open(tmp_path / "many.db")
    async with db.transaction() as conn:
        await conn.executemany(
            "INSERT INTO people (kind, first_name, created_at, updated_at)"
            " VALUES ('lead', ?, 0, 0)",
            [(f"L{i}",) for i in range(600)],
        )
    cfg = config_from_dict({"lookup": {"default_region": "ES"}})
    host = Host(db, cfg)
    app = web.Application()
    setup_intel(app, host)
    app.on_cleanup.append(lambda _: db.close())
    await aiohttp_client(app)  # started: the catch-up runs in the background
    service = app[INTEL]
    assert not service.caught_up.is_set()
    # an event is applied while the catch-up goes on (the last person, the catch-up's last)
    host.bus.publish(WrapUpSaved("sim:1", "ana", NOW, 600, "interested", "answered"))
    await service.settled()
    assert [r[0] for r in await db.conn.execute_fetchall(
        "SELECT person_id FROM person_metrics WHERE metric = 'card' AND person_id = 600"
    )] == [600]  # fmt: skip
    assert not service.caught_up.is_set()
    await asyncio.wait_for(service.caught_up.wait(), 60)
    rows = await db.conn.execute_fetchall(
        "SELECT count(*) FROM person_metrics WHERE metric = 'card'"
    )
    assert next(iter(rows))[0] == 600
