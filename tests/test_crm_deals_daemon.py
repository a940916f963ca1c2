"""The assembled gateway with SuiteCRM, vTiger and Odoo stand-ins whose connectors have
``deals: {enabled: true}``: what a user sees through ``/api/v1`` and ``/health``.

At start each CRM's deals are pulled after its phone book; a deal won in each CRM is a purchase
of the person of the store it belongs to (listed in ``GET /api/v1/deals``), the person's metrics
(``GET /api/v1/people/{id}/metrics`` and the caller card) count it, and an edit in the CRM
reaches the metrics at the next pull, through the bus, without doubling the deal.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest

from connectors.settings import DealSettings, OdooSettings, SuiteCrmSettings, VtigerSettings
from gateway.app import Gateway, create_app
from gateway.intel.api import INTEL
from gateway.sim.pbx import SimulatedPbx
from tests.fakes import sugarcrm as suite_lab
from tests.fakes.odoo import Odoo
from tests.fakes.sugarcrm import SugarCrm
from tests.fakes.vtiger import Vtiger
from tests.test_app import TOKEN, _config

AUTH = {"Authorization": f"Bearer {TOKEN}"}
# CRMs close deals on a day, read in the panel's zone (the config's default: Europe/Madrid)
TODAY = datetime.now(ZoneInfo("Europe/Madrid")).date()


def days_ago(n: int) -> str:
    return (TODAY - timedelta(days=n)).isoformat()


@pytest.fixture
async def daemon(tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any, sim: SimulatedPbx):
    suite, vtiger, odoo = SugarCrm.lab(), Vtiger.lab(), Odoo()
    suite_won = suite.add(
        "Opportunities",
        name="Ana's order",
        amount="1500.000000",
        currency_id="-99",
        date_closed=days_ago(20),
        sales_stage="Closed Won",
    )
    suite.link(suite_won, "contacts", suite_lab.ANA)
    vtiger.add(
        "Potentials",
        potentialname="Support plan",
        amount="300.00000000",
        closingdate=days_ago(5),
        sales_stage="Closed Won",
        contact_id="12x4",  # Ana García, typed "+34 911 234 567" there too
    )
    lucia = odoo.add("res.partner", name="Lucía Gómez", email="lucia@example.com")
    odoo.add(
        "sale.order",
        name="S00042",
        partner_id=[lucia, "Lucía Gómez"],
        amount_total=250.0,
        date_order=datetime.now(UTC).replace(tzinfo=None, microsecond=0) - timedelta(days=3),
        state="sale",
    )
    servers = [await aiohttp_server(c.app()) for c in (suite, vtiger, odoo)]
    urls = [f"http://127.0.0.1:{s.port}" for s in servers]
    on = DealSettings(enabled=True)
    connectors = [
        SuiteCrmSettings(
            name="suite", url=urls[0], username=suite.username, password=suite.password, deals=on
        ),
        VtigerSettings(
            name="vtiger",
            url=urls[1],
            username=vtiger.username,
            access_key=vtiger.access_key,
            modules=["Contacts"],
            deals=on,
        ),
        OdooSettings(
            name="odoo",
            url=urls[2],
            database=odoo.database,
            username=odoo.login,
            password=odoo.password,
            models=["res.partner"],
            deals=on,
        ),
    ]
    cfg = msgspec.structs.replace(_config(tmp_path, sim.port), connectors=connectors)
    gw = Gateway(cfg)
    client = await aiohttp_client(await create_app(cfg, gw))
    return gw, client, suite


Rows = dict[tuple[str, str], dict[str, Any]]


async def _deals_synced(client: Any, until: Any = lambda rows: True) -> Rows:
    """/health's deal rows once each CRM's deals have been pulled and ``until(rows)``."""
    for _ in range(500):
        rows = (await (await client.get("/health")).json())["directories"]
        deals = {(d["connector"], d["module"]): d for d in rows if d["module"].startswith("deals:")}
        if len(deals) == 3 and all(d["last_sync_at"] for d in deals.values()) and until(deals):
            return deals
        await asyncio.sleep(0.02)
    raise AssertionError(f"the deals were never pulled: {rows}")


async def _person(client: Any, **body: Any) -> int:
    r = await client.post("/api/v1/contacts", json=body, headers=AUTH)
    assert r.status == 201, await r.text()
    return int((await r.json())["id"])


async def _metrics(client: Any, pid: int) -> dict[str, dict[str, Any]]:
    await client.app[INTEL].settled()
    r = await client.get(f"/api/v1/people/{pid}/metrics?lang=es", headers=AUTH)
    assert r.status == 200, await r.text()
    return {m["name"]: m for m in (await r.json())["metrics"]}


async def test_a_deal_won_in_each_crm_is_a_purchase_a_user_sees(daemon):
    gw, client, suite = daemon
    # the people the store knows; a pull that ran before they were added left their deals
    # waiting aside, and the next one attaches them
    ana = await _person(client, first_name="Ana", last_name="García", phones=["911 234 567"])
    lucia = await _person(
        client, first_name="Lucía", last_name="Gómez", emails=["lucia@example.com"]
    )
    gw.directory_sync.kick()
    deals = await _deals_synced(client, lambda rows: not any(d["waiting"] for d in rows.values()))
    assert {k: (d["records"], d["waiting"]) for k, d in deals.items()} == {
        ("suite", "deals:Opportunities"): (1, 0),
        ("vtiger", "deals:Potentials"): (1, 0),
        ("odoo", "deals:sale.order"): (1, 0),
    }

    r = await client.get(f"/api/v1/deals?person_id={ana}&status=won", headers=AUTH)
    items = (await r.json())["items"]
    assert sorted((d["title"], d["amount"], d["currency"]) for d in items) == [
        ("Ana's order", 1500.0, "EUR"),
        ("Support plan", 300.0, "EUR"),
    ]
    assert sorted(d["external_id"].split(":")[0] for d in items) == ["suite", "vtiger"]
    m = await _metrics(client, ana)
    assert (m["frequency"]["value"], m["monetary"]["value"], m["recency"]["value"]) == (
        2,
        1800.0,
        5,
    )
    assert m["clv_historic"]["text"] == "Todo lo comprado hasta hoy: 1800\xa0€."
    card = await (await client.get("/api/v1/lookup?number=911234567", headers=AUTH)).json()
    insight = {i["name"]: i for i in card["insight"]}
    assert insight["clv_historic"]["value"] == 1800.0

    odoo_deal = (await (await client.get(f"/api/v1/deals?person_id={lucia}", headers=AUTH)).json())[
        "items"
    ]
    assert [(d["title"], d["status"], d["amount"]) for d in odoo_deal] == [("S00042", "won", 250.0)]
    assert (await _metrics(client, lucia))["monetary"]["value"] == 250.0

    # the order is corrected in SuiteCRM: the next pull updates it, the metrics follow
    (opportunity,) = suite.tables["Opportunities"]
    suite.update("Opportunities", opportunity["id"], amount="1700.000000")
    before = (await _deals_synced(client))[("suite", "deals:Opportunities")]["last_sync_at"]
    gw.directory_sync.kick("suite")
    for _ in range(500):
        synced = (await _deals_synced(client))[("suite", "deals:Opportunities")]
        if synced["last_sync_at"] != before:
            break
        await asyncio.sleep(0.02)
    m = await _metrics(client, ana)
    assert (m["frequency"]["value"], m["monetary"]["value"]) == (2, 2000.0)
    r = await client.get(f"/api/v1/deals?person_id={ana}", headers=AUTH)
    assert len((await r.json())["items"]) == 2  # updated, never doubled
