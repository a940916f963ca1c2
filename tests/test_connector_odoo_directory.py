"""Odoo as a caller-directory source: pulling partners and leads page by page."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connectors.base import DirectoryRecord, DirectorySource
from connectors.odoo import OdooConnector
from connectors.settings import OdooSettings
from gateway.errors import ConnectorError
from gateway.lookup.card import PersonKind
from tests.fakes import connector_harness as harness
from tests.fakes.odoo import Odoo
from tests.test_connector_odoo import make, seed

conn = harness.connector_fixture(make)
LATER = datetime(2024, 5, 2, 8, 5, 0)  # a user saves, minutes after the data was pulled


async def make_at(aiohttp_server, crm: Odoo, now: datetime) -> OdooConnector:
    """A connector whose clock reads ``now`` (UTC, like Odoo's write_date)."""
    server = await aiohttp_server(crm.app())
    kw = harness.settings_for(server, name="odoo", username=crm.login, password=crm.password)
    settings = OdooSettings(**{**kw, "database": crm.database})
    stamp = now.replace(tzinfo=UTC).timestamp()
    return OdooConnector(settings, public_url=harness.PUBLIC_URL, clock=lambda: stamp)


@pytest.fixture
def crm() -> Odoo:
    return seed(Odoo())


async def pull_all(
    conn: OdooConnector, module: str, limit: int, cursor: str = ""
) -> tuple[list[DirectoryRecord], str, int]:
    """Every record from ``cursor`` on, the cursor after them, and the pages it took."""
    records: list[DirectoryRecord] = []
    pages = 0
    while True:
        page = await conn.pull(module, cursor, limit)
        pages += 1
        assert len(page.records) <= limit
        assert page.cursor != cursor or not page.more, "a page that does not advance"
        assert pages < 10_000, "pulling loops"
        records += page.records
        cursor = page.cursor
        if not page.more:
            return records, cursor, pages


async def test_pull_gives_every_field_the_directory_needs(conn, crm):
    assert isinstance(conn, DirectorySource)
    assert list(conn.directory_modules()) == ["res.partner", "crm.lead"]
    partners, _, _ = await pull_all(conn, "res.partner", 200)
    by_name = {r.display_name: r for r in partners}
    ana, acme, bob = by_name["Ana García"], by_name["Acme SL"], by_name["Bob Smith"]
    assert (ana.kind, ana.company, ana.record_id, ana.owner) == (
        PersonKind.CONTACT,
        "Acme SL",
        "11",
        "201",
    )
    assert ana.account_id == acme.record_id and ana.phones == ("612 34 56 78",)
    assert acme.kind is PersonKind.ACCOUNT and acme.account_id == acme.record_id
    assert bob.phones == ("+1 212-555-0100",) and bob.owner is None
    assert ana.external_url and ana.external_url.endswith(
        "/web#id=11&model=res.partner&view_type=form"
    )
    (lead,) = (await pull_all(conn, "crm.lead", 200))[0]
    assert (lead.kind, lead.display_name, lead.company, lead.lead_status, lead.phones) == (
        PersonKind.LEAD,
        "Luis Pérez",
        "Pérez SA",
        "Qualified",
        ("0034612345679",),
    )
    # the live lookup builds its card from the same record
    card = await conn.lookup("+34612345678", "")
    assert card == ana.card("+34612345678", conn.name)


async def test_archived_partner_is_deleted_lost_lead_stays_known(conn, crm):
    _, cursor, _ = await pull_all(conn, "res.partner", 200)
    _, lead_cursor, _ = await pull_all(conn, "crm.lead", 200)
    crm.clock = lambda: LATER
    crm.edit("res.partner", 11, active=False)
    crm.edit("crm.lead", 21, active=False, probability=0.0)  # "Mark as lost" archives it
    (gone,), _, _ = await pull_all(conn, "res.partner", 200, cursor)
    assert (gone.record_id, gone.deleted) == ("11", True)
    (lost,), _, _ = await pull_all(conn, "crm.lead", 200, lead_cursor)
    assert (lost.record_id, lost.deleted, lost.lead_status) == ("21", False, "Lost")
    assert lost.display_name == "Luis Pérez" and lost.phones == ("0034612345679",)
    assert await conn.lookup("+34612345678", "") is None  # archived: gone from Odoo's search


@pytest.mark.parametrize("phone_validation", [True, False])
@pytest.mark.parametrize("limit", [1, 7, 200])
async def test_resuming_neither_skips_nor_repeats(aiohttp_server, phone_validation, limit):
    crm = Odoo(has_phone_validation=phone_validation)
    # a bulk import: 450 records written in one transaction share one write_date exactly
    for i in range(450):
        crm.add(
            "res.partner",
            name=f"Import {i}",
            phone=f"+34 600 000 {i:03d}",
            write_date="2024-05-02 07:59:59.250000",
        )
    # then users at work: ~2,700 saves a second, each at its own microsecond
    for i in range(300):
        crm.add("res.partner", name=f"Typed {i}", mobile=f"61{i:07d}")
    async with harness.started(await make(aiohttp_server, crm)) as conn:
        records, cursor, pages = await pull_all(conn, "res.partner", limit)
        ids = [r.record_id for r in records]
        assert sorted(ids, key=int) == sorted(str(r["id"]) for r in crm.rows["res.partner"])
        assert len(ids) == len(set(ids)) == 750
        assert pages <= 750 // limit + 4
        searches = crm.faults.requests.count("object.execute_kw") - 1  # minus fields_get
        assert searches <= 3 * pages
        # nothing changed: an incremental pull finds nothing and keeps its place
        page = await conn.pull("res.partner", cursor, limit)
        assert (list(page.records), page.cursor, page.more) == ([], cursor, False)
        # later, a save and a new record
        crm.clock = lambda: LATER
        crm.edit("res.partner", 105, phone="+34 699 000 001")
        new = crm.add("res.partner", name="Newcomer", phone="911 000 111")
        changed, _, _ = await pull_all(conn, "res.partner", limit, cursor)
        assert [r.record_id for r in changed] == ["105", str(new)]
        assert changed[0].phones == ("+34 699 000 001",)


async def test_a_save_between_pages_skips_nothing(aiohttp_server):
    crm = Odoo()
    for i in range(60):
        crm.add("res.partner", name=f"P{i}", phone=f"+34 600 000 {i:03d}")
    async with harness.started(await make(aiohttp_server, crm)) as conn:
        page = await conn.pull("res.partner", "", 20)
        first = {r.record_id for r in page.records}
        crm.clock = lambda: LATER
        crm.edit("res.partner", 150, name="P50 renamed")  # not pulled yet: moves to the end
        crm.edit("res.partner", 100, name="P0 renamed")  # pulled already: comes again
        rest, _, _ = await pull_all(conn, "res.partner", 20, page.cursor)
    seen = first | {r.record_id for r in rest}
    assert seen == {str(r["id"]) for r in crm.rows["res.partner"]}
    names = {r.record_id: r.display_name for r in rest}
    assert (names["150"], names["100"]) == ("P50 renamed", "P0 renamed")


async def test_hostile_cursor_or_module_is_refused(conn, crm):
    for bad in (harness.HOSTILE, "2024-05-02 08:00:00|1' OR 1=1 --", "%", "\x00", "_|_"):
        with pytest.raises(ConnectorError, match="not understood"):
            await conn.pull("res.partner", bad, 50)
    with pytest.raises(ConnectorError, match="not among"):
        await conn.pull("res.users", "", 50)
    assert "1=1" not in repr(crm.domains)
    records, _, _ = await pull_all(conn, "res.partner", 50)
    assert len(records) == 3


async def test_a_save_in_the_second_just_pulled_is_not_lost(aiohttp_server):
    crm = Odoo()
    for i in range(30):
        crm.add("res.partner", name=f"P{i}", phone=f"+34 600 000 {i:03d}")
    async with harness.started(await make_at(aiohttp_server, crm, LATER)) as conn:
        crm.clock = lambda: LATER.replace(second=0, microsecond=0)
        crm.add("res.partner", id=900, name="Late", phone="+34 600 000 900")
        _, cursor, _ = await pull_all(conn, "res.partner", 10)
        # same second, an older record saved after the pull ended (ids below the last one)
        crm.clock = lambda: LATER.replace(microsecond=800_000)
        crm.edit("res.partner", 100, name="P0 renamed")
        changed, _, _ = await pull_all(conn, "res.partner", 10, cursor)
    assert "100" in {r.record_id for r in changed}
