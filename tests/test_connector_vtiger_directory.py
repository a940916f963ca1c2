"""vTiger as a caller directory source: every record pulled once, in (modifiedtime, id) order,
resumable from any cursor, also through a bulk import of records sharing one modifiedtime."""

from __future__ import annotations

import re
from typing import Any

import pytest

from connectors.base import DirectoryRecord, DirectorySource
from gateway.lookup.card import PersonKind
from tests.fakes import connector_harness as harness
from tests.fakes.vtiger import Vtiger, crmid
from tests.test_connector_vtiger_recorded import make


@pytest.fixture
def crm() -> Vtiger:
    return Vtiger.lab()


conn = harness.connector_fixture(make)


async def pull_all(
    conn: Any, module: str, limit: int, cursor: str = ""
) -> tuple[list[DirectoryRecord], str, int]:
    """Every page until ``more`` is False: records, the last cursor, pages taken."""
    records: list[DirectoryRecord] = []
    for pages in range(1, 10_000):
        page = await conn.pull(module, cursor, limit)
        assert len(page.records) <= limit
        assert page.more == (len(page.records) == limit)
        records += page.records
        cursor = page.cursor
        if not page.more:
            return records, cursor, pages
    raise AssertionError("pull never finished")


async def test_is_a_directory_source_of_its_modules(conn):
    assert isinstance(conn, DirectorySource)
    assert list(conn.directory_modules()) == ["Contacts", "Leads", "Accounts"]


async def test_contacts_pulled_once_each_with_what_the_card_shows(conn, crm):
    records, _, pages = await pull_all(conn, "Contacts", 2)
    assert [r.record_id for r in records] == ["12x4", "12x5", "12x6", "12x7", "12x8", "12x9"]
    assert pages == 4  # 2 + 2 + 2, then an empty page
    by_id = {r.record_id: r for r in records}
    ana, zoe, ramon = by_id["12x4"], by_id["12x8"], by_id["12x9"]
    assert (ana.kind, ana.display_name, ana.company, ana.account_id) == (
        PersonKind.CONTACT, "Ana García", "Acme Iberia", "11x2"
    )  # fmt: skip
    assert ana.owner == "201" and ana.phones == ("+34 911 234 567",)
    assert ana.external_url is not None and ana.external_url.endswith(
        "/index.php?module=Contacts&view=Detail&record=4"
    )
    # raw values, not decoded or re-encoded: vTiger answers them raw
    assert (zoe.display_name, zoe.company) == ("Zoë Ñúñez-O'Hara", "O'Brien & Sons <Ltd>")
    assert zoe.phones == ("+34911234571",) and ramon.phones == ("911234573",)
    assert by_id["12x7"].phones == ("+1 (212) 555-0100",)
    assert not any(r.deleted for r in records)


async def test_account_names_are_resolved_once_per_page(conn, crm):
    for i in range(30):
        acc = crm.add("Accounts", accountname=f"Org {i}")
        crm.add(
            "Contacts", firstname="P", lastname=str(i), account_id=acc, phone=f"+3460000{i:04d}"
        )
    crm.queries.clear()
    records, _, pages = await pull_all(conn, "Contacts", 50)
    assert len(records) == 36
    assert sum("from Accounts" in q for q in crm.queries) <= pages
    assert {r.company for r in records if r.display_name.startswith("P ")} == {
        f"Org {i}" for i in range(30)
    }


async def test_leads_and_accounts(conn):
    leads, _, _ = await pull_all(conn, "Leads", 10)
    eva, fax = leads
    assert (eva.kind, eva.display_name, eva.company, eva.lead_status, eva.phones) == (
        PersonKind.LEAD, "Eva López", "Lopez SL", "Hot", ("+34911234570",)
    )  # fmt: skip
    assert (fax.lead_status, fax.phones, fax.account_id) == (None, ("+34 (91) 123-4572",), None)
    accounts, _, _ = await pull_all(conn, "Accounts", 10)
    acme, obrien = accounts
    assert (obrien.display_name, obrien.company, obrien.account_id) == (
        "O'Brien & Sons <Ltd>", "O'Brien & Sons <Ltd>", "11x3"
    )  # fmt: skip
    assert obrien.phones == ("0034913000222", "913000223") and acme.kind is PersonKind.ACCOUNT


async def test_lookup_card_is_the_pulled_record_card(conn):
    records, _, _ = await pull_all(conn, "Contacts", 100)
    ana = next(r for r in records if r.record_id == "12x4")
    assert await conn.lookup("+34911234567", "") == ana.card("+34911234567", "tiger")


def bulk_import(crm: Vtiger, n: int, at: str) -> list[str]:
    return [
        crm.add("Contacts", firstname="Bulk", lastname=str(i), mobile=f"6{i:08d}", modifiedtime=at)
        for i in range(n)
    ]


async def test_bulk_import_sharing_one_modifiedtime_neither_skips_nor_loops(conn, crm):
    bulk = bulk_import(crm, 1050, "2026-01-01 09:00:00")
    later = bulk_import(crm, 30, "2026-01-01 09:00:01")
    records, cursor, pages = await pull_all(conn, "Contacts", 200)
    ids = [r.record_id for r in records]
    assert len(ids) == len(set(ids)) == 6 + 1050 + 30
    assert ids[-1080:] == bulk + later  # (modifiedtime, id) order
    assert pages == 6  # 5 full pages of 200, then 86
    again = await conn.pull("Contacts", cursor, 200)  # nothing new: an empty page
    assert (again.records, again.cursor, again.more) == ([], cursor, False)


async def test_a_page_is_larger_than_vtigers_100_rows_per_query(conn, crm):
    bulk_import(crm, 450, "2026-01-01 09:00:00")
    page = await conn.pull("Contacts", "", 200)
    assert len(page.records) == 200 and page.more
    asked = [int(n) for q in crm.queries for n in re.findall(r"limit (\d+);", q)]
    assert asked and max(asked) <= 100  # vTiger answers at most 100 rows per query


async def test_changes_while_pulling_are_taken_and_nothing_is_skipped(conn, crm):
    bulk = bulk_import(crm, 500, "2026-01-01 09:00:00")
    first = await conn.pull("Contacts", "", 200)
    taken = {r.record_id for r in first.records}
    crm.now = 1_800_000_000.0  # later: edits move records to a new modifiedtime
    edited_taken, edited_not_yet = bulk[10], bulk[400]
    crm.update(edited_taken, lastname="Edited")
    crm.update(edited_not_yet, lastname="Edited too")
    new = crm.add("Contacts", firstname="New", lastname="One")
    rest, _, _ = await pull_all(conn, "Contacts", 200, first.cursor)
    ids = [r.record_id for r in rest]
    assert set(bulk) | {"12x4", new} <= taken | set(ids)  # nothing skipped
    assert len(ids) == len(set(ids))
    assert ids[-3:] == [edited_taken, edited_not_yet, new]  # the edits come again, last
    assert rest[-3].display_name == "Bulk Edited"


async def test_pull_order_is_modifiedtime_then_record_number(conn, crm):
    a = crm.add(
        "Contacts", id="12x900", firstname="A", lastname="A", modifiedtime="2026-01-02 00:00:00"
    )
    b = crm.add(
        "Contacts", id="12x1000", firstname="B", lastname="B", modifiedtime="2026-01-02 00:00:00"
    )
    c = crm.add(
        "Contacts", id="12x2000", firstname="C", lastname="C", modifiedtime="2026-01-01 00:00:00"
    )
    records, _, _ = await pull_all(conn, "Contacts", 1)
    ids = [r.record_id for r in records][-3:]
    assert ids == [c, a, b]  # 900 before 1000: by number, not as text
    assert sorted(ids, key=crmid) != ids  # (the order is not the ids' alone)


@pytest.mark.parametrize("cursor", ["x' or 1=1 --", "2026-01-01 00:00:00", "yesterday|12x5",
                                    "2026-01-01 00:00:00|12x5' or id like '%"])  # fmt: skip
async def test_bad_cursors_and_modules_are_refused_before_any_query(conn, crm, cursor):
    with pytest.raises(ValueError, match="cursor"):
        await conn.pull("Contacts", cursor, 10)
    with pytest.raises(ValueError, match="module"):
        await conn.pull("Events", "", 10)
    assert crm.queries == []
