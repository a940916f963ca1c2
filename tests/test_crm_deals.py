"""Deals pulled from SuiteCRM, vTiger and Odoo stand-ins (real HTTP) into a real SQLite store,
through the caller directory's sync, and what the customer metrics then say.

Each CRM: a won deal becomes a purchase of the right person of the store (found through the
CRM record's numbers in the directory, or by e-mail), in the right currency, closed on the
CRM's day; an open and a lost deal are kept as such; a deal of a customer unknown here waits,
counted and logged, and is attached once that person is added; a change updates the deal and
never doubles it; a deletion removes it (at once where the CRM reports it, else at the next
full pass); and every change moves the person's metrics through the bus, as a user sees them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from connectors.base import DealSource, pipeline_stage
from connectors.odoo import OdooConnector
from connectors.settings import (
    DealSettings,
    DirectorySettings,
    OdooSettings,
    SuiteCrmSettings,
    VtigerSettings,
)
from connectors.sugarcrm import SugarCrmConnector
from connectors.vtiger import VtigerConnector
from gateway.bus import Bus
from gateway.config import config_from_dict
from gateway.directory import DirectoryStore, DirectorySync
from gateway.directory.deals import DealReport
from gateway.errors import ConfigError
from gateway.intel.service import IntelService
from gateway.store.db import Database
from gateway.store.deals import ExternalDeal, stored_external, write_external
from gateway.store.events import DealsChanged
from gateway.store.models import PersonType
from gateway.store.repositories import AccountRepository, PersonRepository
from tests.fakes import connector_harness as harness
from tests.fakes import sugarcrm as suite_lab
from tests.fakes.odoo import Odoo
from tests.fakes.sugarcrm import SugarCrm
from tests.fakes.vtiger import Vtiger
from tests.postgres_fixtures import open_store

STORE_ENGINES = ("sqlite", "postgresql")

TZ = ZoneInfo("Europe/Madrid")
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC).timestamp()
POLICY = DirectorySettings(page_size=10, interval_s=60, full_every_s=3600)
DAY = 86400.0


def madrid_midnight(y: int, m: int, d: int) -> float:
    return datetime(y, m, d, tzinfo=TZ).timestamp()


class World:
    """The store, its bus and the metrics service, as the gateway wires them."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.bus = Bus()
        db.event_sink = self.bus.publish
        self.intel = IntelService(db, tz=TZ, clock=lambda: NOW)
        self.intel.subscribe(self.bus)
        self.directory = DirectoryStore(db, "ES")
        self.people = PersonRepository(db, "ES")
        self.events: list[DealsChanged] = []
        self.bus.subscribe(DealsChanged, self.events.append)
        self.clock = NOW

    async def person(self, first: str, last: str, **data: Any) -> int:
        result = await self.people.create(
            PersonType.CONTACT, {"first_name": first, "last_name": last, **data}
        )
        return result.person.id

    async def sync(self, conn: Any, *, full: bool = False) -> list[DealReport]:
        """The directory, then the deals, as the daemon's task does; then the metrics."""
        sync = DirectorySync(
            self.directory,
            [(conn, POLICY)],
            lambda: self.clock,
            deals=[(conn, conn.settings.deals, POLICY)],
            tz=TZ,
        )
        await sync.sync_source(conn, POLICY, full=full)
        reports = await sync.sync_deals(conn, conn.settings.deals, POLICY, full=full)
        await self.intel.settled()
        return reports

    async def deals(self, person_id: int) -> list[tuple[Any, ...]]:
        rows = await self.db.conn.execute_fetchall(
            "SELECT title, stage, amount, currency, product, lost_reason, closed_at FROM deals"
            " WHERE person_id = ? ORDER BY title",
            (person_id,),
        )
        return [tuple(r) for r in rows]

    async def metrics(self, person_id: int) -> dict[str, Any]:
        stored, _ = await self.intel.stored(person_id)
        return {m.name: m for m in stored}

    async def health(self, connector: str, module: str) -> dict[str, object]:
        sync = DirectorySync(self.directory, [])
        return next(
            h
            for h in await sync.health()
            if h["connector"] == connector and h["module"] == f"deals:{module}"
        )


@pytest.fixture
async def world(store_location: str) -> AsyncIterator[World]:
    db = await open_store(store_location, clock=lambda: NOW)
    w = World(db)
    worker = asyncio.create_task(w.intel.run())
    try:
        yield w
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        await db.close()


# -- SuiteCRM 7.14.6 -----------------------------------------------------------------------------


def suite_deals(crm: SugarCrm) -> dict[str, str]:
    """The lab with opportunities: ids by a short name."""
    crm.update("Contacts", suite_lab.BOB, email1="Bob.Martin@example.com")
    crm.add("Currencies", id="cur-usd", name="US Dollars", symbol="$", iso4217="USD")
    ids = {
        "ana_order": crm.add(
            "Opportunities",
            name="Ana's order",  # SuiteCRM answers it as Ana&#039;s order
            amount="1500.000000",
            amount_usdollar="1650.000000",
            currency_id="-99",
            date_closed="2026-11-02",
            sales_stage="Closed Won",
            date_entered="2026-10-01 09:00:00",
        ),
        "ana_renewal": crm.add(
            "Opportunities",
            name="Renewal",
            amount="900.000000",
            currency_id="-99",
            date_closed="2026-12-20",
            sales_stage="Negotiation/Review",
        ),
        "bob_licence": crm.add(
            "Opportunities",
            name="Licence",
            amount="200.000000",
            amount_usdollar="180.000000",
            currency_id="cur-usd",
            date_closed="2026-11-20",
            sales_stage="Closed Won",
        ),
        "dan_deal": crm.add(
            "Opportunities",
            name="Dan's deal",
            amount="700.000000",
            currency_id="-99",
            date_closed="2026-11-10",
            sales_stage="Closed Won",
        ),
        "acme_lost": crm.add(
            "Opportunities",
            name="Acme tender",
            amount="5000.000000",
            currency_id="-99",
            date_closed="2026-09-15",
            sales_stage="Closed Lost",
        ),
    }
    crm.link(ids["ana_order"], "contacts", suite_lab.ANA)
    crm.link(ids["ana_order"], "accounts", suite_lab.ACME)
    crm.link(ids["ana_renewal"], "contacts", suite_lab.ANA)
    crm.link(ids["bob_licence"], "contacts", suite_lab.BOB)
    crm.link(ids["dan_deal"], "contacts", suite_lab.DAN)
    crm.link(ids["acme_lost"], "accounts", suite_lab.ACME)
    return ids


async def suite_conn(aiohttp_server: Any, crm: SugarCrm) -> SugarCrmConnector:
    server = await aiohttp_server(crm.app())
    kw = harness.settings_for(server, name="suite", username=crm.username, password=crm.password)
    settings = SuiteCrmSettings(
        **kw, deals=DealSettings(enabled=True), users={"201": suite_lab.SALLY}
    )
    return SugarCrmConnector(settings, public_url=harness.PUBLIC_URL)


async def test_suitecrm_won_opportunity_is_the_right_persons_purchase(
    world: World, aiohttp_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    crm = SugarCrm.lab()
    suite_deals(crm)
    # the store's own people, typed their own way: Ana by her number, Bob by e-mail only
    ana = await world.person("Ana", "García", phones=["911 23 45 67"])
    bob = await world.person("Bob", "Martín", emails=["bob.martin@example.com"])
    acme = (
        await AccountRepository(world.db, "ES").create({"name": "Acme", "phones": ["912000111"]})
    ).id
    async with harness.started(await suite_conn(aiohttp_server, crm)) as conn:
        assert isinstance(conn, DealSource) and list(conn.deal_modules()) == ["Opportunities"]
        with caplog.at_level(logging.WARNING, "gateway.directory.deals"):
            (report,) = await world.sync(conn)

    assert (report.full, report.stored, report.waiting) == (True, 4, 1)
    assert "Dan's deal" in caplog.text and "Dan Jones" in caplog.text  # logged, not invented
    assert await world.deals(ana) == [
        ("Ana's order", "won", 1500.0, "EUR", "", "", madrid_midnight(2026, 11, 2)),
        ("Renewal", "negotiation", 900.0, "EUR", "", "", None),
    ]
    # a currency of its own: read from Currencies, the amount kept as typed
    assert await world.deals(bob) == [
        ("Licence", "won", 200.0, "USD", "", "", madrid_midnight(2026, 11, 20))
    ]
    rows = await world.db.conn.execute_fetchall(
        "SELECT title, stage, person_id FROM deals WHERE account_id = ? ORDER BY title", (acme,)
    )
    assert [tuple(r) for r in rows] == [("Acme tender", "lost", None), ("Ana's order", "won", ana)]

    m = await world.metrics(ana)
    assert (m["frequency"].value, m["monetary"].value, m["monetary"].label) == (1, 1500.0, "EUR")
    assert m["recency"].value == 28  # 2 November (Madrid) to 30 November
    assert (await world.metrics(bob))["monetary"].label == "USD"
    health = await world.health("suite", "Opportunities")
    assert (health["records"], health["waiting"], health["last_error"]) == (5, 1, None)


async def test_suitecrm_changes_update_deletions_remove_and_waiting_deals_attach(
    world: World, aiohttp_server: Any
) -> None:
    crm = SugarCrm.lab()
    ids = suite_deals(crm)
    ana = await world.person("Ana", "García", phones=["+34911234567"])
    bob = await world.person("Bob", "Martín", emails=["bob.martin@example.com"])
    async with harness.started(await suite_conn(aiohttp_server, crm)) as conn:
        await world.sync(conn)
        assert (await world.metrics(bob))["frequency"].value == 1

        # Dan is added here: his deal waiting aside is attached with no change in the CRM
        dan = await world.person("Dan", "Jones", phones=["+1 212 555 0100"])
        world.events.clear()
        (report,) = await world.sync(conn)
        # (Acme's tender still waits: no company of the store has Acme's number)
        assert (report.full, report.stored, report.attached, report.waiting) == (False, 0, 1, 1)
        assert [d[:3] for d in await world.deals(dan)] == [("Dan's deal", "won", 700.0)]
        assert (await world.metrics(dan))["monetary"].value == 700.0
        assert [e.person_ids for e in world.events] == [(dan,)]

        # an edit in the CRM updates the deal: never a second one, the metrics follow
        crm.update("Opportunities", ids["ana_order"], amount="1800.000000")
        crm.delete("Opportunities", ids["bob_licence"])  # SuiteCRM reports it: gone at once
        (report,) = await world.sync(conn)
        assert (report.stored, report.removed) == (1, 1)
        assert [d[:3] for d in await world.deals(ana)] == [
            ("Ana's order", "won", 1800.0),
            ("Renewal", "negotiation", 900.0),
        ]
        assert (await world.metrics(ana))["monetary"].value == 1800.0
        assert await world.deals(bob) == []
        bob_now = await world.metrics(bob)
        assert (bob_now["frequency"].value, bob_now["monetary"].reason) == (0, "no_purchases")

        # a full pass again changes nothing and tells nobody
        world.events.clear()
        (report,) = await world.sync(conn, full=True)
        assert (report.full, report.stored, report.swept, report.people) == (True, 3, 0, 0)
        assert world.events == []
    count = await world.db.conn.execute_fetchall("SELECT count(*) FROM deals")
    assert next(iter(count))[0] == 3  # Ana's two and Dan's


async def test_suitecrm_unreadable_currency_counts_in_the_system_currency(
    world: World, aiohttp_server: Any
) -> None:
    crm = SugarCrm.lab()
    suite_deals(crm)
    crm.tables["Currencies"].clear()  # an id the API user cannot read back
    bob = await world.person("Bob", "Martín", emails=["bob.martin@example.com"])
    async with harness.started(await suite_conn(aiohttp_server, crm)) as conn:
        await world.sync(conn)
    # amount_usdollar: what SuiteCRM keeps of every amount in the system currency
    assert [d[:4] for d in await world.deals(bob)] == [("Licence", "won", 180.0, "EUR")]


# -- vTiger 8.0.0 --------------------------------------------------------------------------------


def vtiger_deals(crm: Vtiger) -> dict[str, str]:
    crm.update("12x5", email="bob.martin@example.com")
    ids = {
        "ana_order": crm.add(
            "Potentials",
            potentialname="Ana's order",
            amount="1500.00000000",
            closingdate="2026-11-02",
            sales_stage="Closed Won",
            contact_id="12x4",
            related_to="11x2",
        ),
        "ana_quote": crm.add(
            "Potentials",
            potentialname="Quote",
            amount="400.00000000",
            closingdate="2026-12-15",
            sales_stage="Proposal or Price Quote",
            contact_id="12x4",
        ),
        "bob_order": crm.add(
            "Potentials",
            potentialname="Bob's order",
            amount="300.00000000",
            closingdate="2026-11-25",
            sales_stage="Closed Won",
            contact_id="12x5",
        ),
        "ramon_lost": crm.add(
            "Potentials",
            potentialname="Lost to a competitor",
            amount="800.00000000",
            closingdate="2026-10-01",
            sales_stage="Closed Lost",
            contact_id="12x9",
        ),
    }
    return ids


async def vtiger_conn(aiohttp_server: Any, crm: Vtiger) -> VtigerConnector:
    server = await aiohttp_server(crm.app())
    kw = harness.settings_for(
        server, name="tiger", username=crm.username, access_key=crm.access_key
    )
    settings = VtigerSettings(**kw, deals=DealSettings(enabled=True, currency="USD"))
    return VtigerConnector(settings, public_url=harness.PUBLIC_URL)


async def test_vtiger_potentials_become_purchases_and_a_full_pass_sweeps_deletions(
    world: World, aiohttp_server: Any
) -> None:
    crm = Vtiger.lab()
    ids = vtiger_deals(crm)
    ana = await world.person("Ana", "García", phones=["+34911234567"])
    bob = await world.person("Bob", "Martín", emails=["BOB.MARTIN@example.com"])
    ramon = await world.person("Ramón", "Assistant", phones=["911 234 573"])
    async with harness.started(await vtiger_conn(aiohttp_server, crm)) as conn:
        assert list(conn.deal_modules()) == ["Potentials"]
        (report,) = await world.sync(conn)
        assert (report.stored, report.waiting) == (4, 0)
        # the base currency of vTiger's amounts is the connector's deals.currency
        assert await world.deals(ana) == [
            ("Ana's order", "won", 1500.0, "USD", "", "", madrid_midnight(2026, 11, 2)),
            ("Quote", "proposal", 400.0, "USD", "", "", None),
        ]
        assert [d[:3] for d in await world.deals(bob)] == [("Bob's order", "won", 300.0)]
        assert [d[:2] for d in await world.deals(ramon)] == [("Lost to a competitor", "lost")]
        m = await world.metrics(ana)
        assert (m["monetary"].value, m["monetary"].label, m["frequency"].value) == (
            1500.0,
            "USD",
            1,
        )

        # vTiger never answers a deleted record: an incremental pull cannot see it go...
        crm.delete(ids["bob_order"])
        crm.now += 60
        crm.update(ids["ana_quote"], sales_stage="Closed Won", amount="450.00000000")
        (report,) = await world.sync(conn)
        assert (report.full, report.stored, report.swept) == (False, 1, 0)
        assert len(await world.deals(bob)) == 1
        assert (await world.metrics(ana))["frequency"].value == 2
        # ...the next full pass does
        (report,) = await world.sync(conn, full=True)
        assert (report.full, report.swept) == (True, 1)
    assert await world.deals(bob) == []
    assert (await world.metrics(bob))["frequency"].value == 0
    assert (await world.metrics(ana))["monetary"].value == 1950.0


# -- Odoo 17 -------------------------------------------------------------------------------------


def odoo_world() -> tuple[Odoo, dict[str, int]]:
    crm = Odoo()
    acme = crm.add("res.partner", name="Acme SL", is_company=True, phone="+34 910 00 00 00")
    ana = crm.add(
        "res.partner",
        name="Ana García",
        parent_id=[acme, "Acme SL"],
        email="ana@example.com",
        mobile="612 34 56 78",
    )
    stranger = crm.add("res.partner", name="Stranger", email="who@example.com")
    ids = {
        "won": crm.add(
            "sale.order",
            name="S00001",
            partner_id=[ana, "Ana García"],
            amount_total=1200.0,
            currency_id=[1, "EUR"],
            date_order=datetime(2026, 11, 2, 10, 0),
            state="sale",
        ),
        "quote": crm.add(
            "sale.order",
            name="S00002",
            partner_id=[ana, "Ana García"],
            amount_total=99.0,
            state="sent",
            date_order=datetime(2026, 11, 20, 9, 0),
        ),
        "cancelled": crm.add(
            "sale.order",
            name="S00003",
            partner_id=[ana, "Ana García"],
            amount_total=500.0,
            state="cancel",
            date_order=datetime(2026, 10, 5, 9, 0),
        ),
        "stranger": crm.add(
            "sale.order",
            name="S00004",
            partner_id=[stranger, "Stranger"],
            amount_total=10.0,
            state="sale",
            date_order=datetime(2026, 11, 1, 9, 0),
        ),
    }
    for product, subtotal in (("[DESK] Standing desk", 1000.0), ("Chair", 200.0)):
        crm.add(
            "sale.order.line",
            order_id=[ids["won"], "S00001"],
            product_id=[len(product), product],
            price_subtotal=subtotal,
        )
    return crm, ids


async def odoo_conn(aiohttp_server: Any, crm: Odoo, **deals: Any) -> OdooConnector:
    server = await aiohttp_server(crm.app())
    kw = harness.settings_for(server, name="odoo", username=crm.login, password=crm.password)
    settings = OdooSettings(
        **kw,
        database=crm.database,
        deals=DealSettings(enabled=True, **deals),
        models=["res.partner"],
    )
    return OdooConnector(settings, public_url=harness.PUBLIC_URL)


async def test_odoo_sale_orders_become_purchases_with_their_product(
    world: World, aiohttp_server: Any
) -> None:
    crm, ids = odoo_world()
    ana = await world.person("Ana", "García", emails=["ana@example.com"])
    async with harness.started(await odoo_conn(aiohttp_server, crm)) as conn:
        assert list(conn.deal_modules()) == ["sale.order"]
        (report,) = await world.sync(conn)
        assert (report.stored, report.waiting) == (3, 1)  # the stranger's order waits
        assert await world.deals(ana) == [
            # Odoo keeps the confirmation time itself: 10:00 UTC, not a day
            ("S00001", "won", 1200.0, "EUR", "[DESK] Standing desk", "",
             datetime(2026, 11, 2, 10, tzinfo=UTC).timestamp()),
            ("S00002", "proposal", 99.0, "EUR", "", "", None),
            ("S00003", "lost", 500.0, "EUR", "", "", datetime(2026, 10, 5, 9, tzinfo=UTC).timestamp()),
        ]  # fmt: skip
        m = await world.metrics(ana)
        assert (m["monetary"].value, m["recency"].params["product"]) == (
            1200.0,
            "[DESK] Standing desk",
        )
        crm.unlink("sale.order", ids["won"])  # deleted in Odoo: only a full pass can tell
        (report,) = await world.sync(conn, full=True)
        assert report.swept == 1
    assert [d[0] for d in await world.deals(ana)] == ["S00002", "S00003"]
    assert (await world.metrics(ana))["frequency"].value == 0


async def test_odoo_opportunities_won_and_lost_with_the_reason(
    world: World, aiohttp_server: Any
) -> None:
    crm = Odoo()
    crm.add(
        "crm.lead",
        type="opportunity",
        name="Website redesign",
        contact_name="Lucía Gómez",
        email_from="lucia@example.com",
        expected_revenue=5000.0,
        probability=100.0,
        stage_id=[4, "Won"],
        date_closed=datetime(2026, 11, 3, 15, 30),
    )
    crm.add(
        "crm.lead",
        type="opportunity",
        name="Hosting",
        contact_name="Lucía Gómez",
        email_from="lucia@example.com",
        expected_revenue=800.0,
        probability=0.0,
        active=False,
        lost_reason_id=[2, "Too expensive"],
        date_closed=datetime(2026, 10, 1, 8, 0),
    )
    crm.add("crm.lead", type="lead", name="Just a lead", email_from="lucia@example.com")
    lucia = await world.person("Lucía", "Gómez", emails=["lucia@example.com"])
    async with harness.started(await odoo_conn(aiohttp_server, crm, modules=["crm.lead"])) as conn:
        (report,) = await world.sync(conn)
    assert report.stored == 2  # the plain lead is no deal
    deals = await world.deals(lucia)
    assert [d[:6] for d in deals] == [
        ("Hosting", "lost", 800.0, "EUR", "", "Too expensive"),
        ("Website redesign", "won", 5000.0, "EUR", "", ""),
    ]
    assert (await world.metrics(lucia))["monetary"].value == 5000.0


def test_stages_of_the_crms_pipelines() -> None:
    assert [
        pipeline_stage(s)
        for s in (
            "Prospecting",
            "Proposal/Price Quote",
            "Proposal or Price Quote",
            "Negotiation or Review",
            "Closed Won",
            "Closed Lost",
            "Closed Won - invoiced",  # a stage an administrator added
            "Lost: no budget",
        )
    ] == [
        "qualification",
        "proposal",
        "proposal",
        "negotiation",
        "won",
        "lost",
        "won",
        "lost",
    ]


def test_deals_are_off_unless_enabled_and_bad_settings_name_the_key() -> None:
    def connector(**extra: Any) -> dict[str, Any]:
        return {
            "type": "vtiger",
            "name": "tiger",
            "url": "https://crm.example.com",
            "username": "centralita",
            "access_key": "k",
            **extra,
        }

    (tiger,) = config_from_dict({"connectors": [connector()]}).connectors
    assert tiger.deals.enabled is False
    for extra, message in (
        ({"deals": {"enabled": True, "modules": ["Opportunities"]}}, "deals.modules"),
        ({"deals": {"enabled": True, "currency": "euro"}}, "deals.currency"),
        ({"deals": {"enabled": True, "every": 5}}, "every"),
    ):
        with pytest.raises(ConfigError, match=message):
            config_from_dict({"connectors": [connector(**extra)]})
    generic = {
        "type": "generic_http",
        "name": "web",
        "log_url": "https://crm.example.com/calls",
        "deals": {"enabled": True},
    }
    with pytest.raises(ConfigError, match="cannot read deals"):
        config_from_dict({"connectors": [generic]})


async def test_a_deal_written_again_is_one_deal_and_moves_tell_both_people(world: World) -> None:
    ana = await world.person("Ana", "García", phones=["+34911234567"])
    bob = await world.person("Bob", "Martín", phones=["+34911234568"])
    deal = ExternalDeal("crm:Opportunities:1", ana, None, "Order", "won", 100.0, "EUR")
    async with world.db.transaction() as conn:
        first, owners = await write_external(conn, deal, by="crm:crm", now=NOW, old=None)
    assert owners == {(ana, None)}
    # no closing date from the CRM: the time it was first seen closed, kept afterwards
    for later, moved in ((NOW + DAY, deal), (NOW + 2 * DAY, replace(deal, person_id=bob))):
        async with world.db.transaction() as conn:
            old = (await stored_external(conn, [deal.external_id]))[deal.external_id]
            again, owners = await write_external(conn, moved, by="crm:crm", now=later, old=old)
        assert again == first
        assert owners == ({(ana, None), (bob, None)} if moved.person_id == bob else set())
    rows = await world.db.conn.execute_fetchall("SELECT person_id, closed_at FROM deals")
    assert [tuple(r) for r in rows] == [(bob, NOW)]
