"""The SuiteCRM connector as a caller directory source: paged pulls by (date_modified, id)."""

from __future__ import annotations

import pytest

from connectors.base import DirectoryRecord, DirectorySource
from connectors.sugarcrm import SugarCrmConnector
from gateway.errors import ConnectorError
from gateway.lookup.card import PersonKind
from tests.fakes import connector_harness as harness
from tests.fakes import sugarcrm as lab_ids
from tests.fakes.sugarcrm import SugarCrm
from tests.test_connector_sugarcrm_lab import make


@pytest.fixture
def crm() -> SugarCrm:
    return SugarCrm.lab()


conn = harness.connector_fixture(make)


async def pull_all(
    conn: SugarCrmConnector, module: str, limit: int, cursor: str = ""
) -> tuple[list[DirectoryRecord], list[str]]:
    """Every record after ``cursor``, page by page, and the cursor after each page."""
    records: list[DirectoryRecord] = []
    cursors = [cursor]
    for _ in range(10_000):
        page = await conn.pull(module, cursor, limit)
        assert len(page.records) <= limit
        records += page.records
        cursor = page.cursor
        cursors.append(cursor)
        if not page.more:
            return records, cursors
    raise AssertionError("the pull never ended")


async def test_is_a_directory_source(conn):
    assert isinstance(conn, DirectorySource)
    assert list(conn.directory_modules()) == ["Contacts", "Leads", "Accounts"]


async def test_full_pull_of_the_lab(conn, crm):
    contacts, _ = await pull_all(conn, "Contacts", 2)
    by_id = {r.record_id: r for r in contacts}
    assert len(contacts) == len(by_id) == 6  # the deleted one too
    assert by_id[lab_ids.DELETED_PERSON].deleted is True
    assert not any(r.deleted for r in contacts if r.record_id != lab_ids.DELETED_PERSON)
    zoe = by_id[lab_ids.ZOE]
    assert (zoe.display_name, zoe.company) == ("Zoë Ñúñez-O'Hara", "O'Brien & Sons ")
    assert (zoe.kind, zoe.account_id, zoe.phones) == (
        PersonKind.CONTACT,
        lab_ids.OBRIEN,
        ("+34911234571",),
    )
    ana = by_id[lab_ids.ANA]
    assert (ana.owner, ana.company, ana.phones) == ("201", "Acme Iberia", ("+34 911 234 567",))
    assert by_id[lab_ids.DAN].phones == ("+1 (212) 555-0100",)  # raw, as typed
    assert ana.external_url is not None and ana.external_url.endswith(f"record={lab_ids.ANA}")

    leads, _ = await pull_all(conn, "Leads", 200)
    eva = next(r for r in leads if r.record_id == lab_ids.EVA)
    assert (eva.kind, eva.lead_status, eva.company, eva.owner) == (
        PersonKind.LEAD,
        "New",
        "Lopez SL",
        "201",
    )
    accounts, _ = await pull_all(conn, "Accounts", 200)
    obrien = next(r for r in accounts if r.record_id == lab_ids.OBRIEN)
    assert obrien.phones == ("0034913000222", "913000223")
    assert (obrien.display_name, obrien.account_id) == ("O'Brien & Sons ", lab_ids.OBRIEN)
    # ordered by the server, bare field names (a table-qualified one would be dropped)
    assert set(crm.order_bys) == {"date_modified ASC, id ASC"}


async def test_live_lookup_card_is_the_pulled_records_card(conn):
    contacts, _ = await pull_all(conn, "Contacts", 200)
    for e164, rid in [("+34911234571", lab_ids.ZOE), ("+12125550100", lab_ids.DAN)]:
        record = next(r for r in contacts if r.record_id == rid)
        assert await conn.lookup(e164, "") == record.card(e164, "suite")


async def test_changes_and_deletions_come_after_the_cursor(conn, crm):
    _, cursors = await pull_all(conn, "Contacts", 200)
    last = cursors[-1]
    page = await conn.pull("Contacts", last, 200)
    assert (page.records, page.cursor, page.more) == ([], last, False)  # nothing new

    row = crm.row("Contacts", lab_ids.BOB)
    assert row is not None
    row.update(last_name="Martín-Gil", date_modified="2026-12-01 09:00:00")
    crm.touch("Contacts")
    crm.delete("Contacts", lab_ids.CARLA)
    page = await conn.pull("Contacts", last, 200)
    assert [(r.record_id, r.display_name, r.deleted) for r in page.records] == [
        (lab_ids.CARLA, "Carla Ruiz", True),  # deleted now, earlier than Bob's change
        (lab_ids.BOB, "Bob Martín-Gil", False),
    ]
    assert page.cursor == f"2026-12-01 09:00:00|{lab_ids.BOB}" and not page.more


def bulk(crm: SugarCrm, n: int, stamps: int) -> list[str]:
    """``n`` contacts over ``stamps`` date_modified values (a bulk import), in pull order."""
    rows = [
        {
            "id": f"{i * 7919 % n:08x}-bulk",  # ids not in insertion order
            "first_name": "Bulk",
            "last_name": str(i),
            "phone_mobile": f"+34 6{i:08d}",
            "date_modified": f"2025-01-0{1 + i % stamps} 00:00:00",
        }
        for i in range(n)
    ]
    crm.tables["Contacts"].clear()
    crm.add_many("Contacts", rows)
    return [r["id"] for r in sorted(rows, key=lambda r: (r["date_modified"], r["id"]))]


@pytest.mark.parametrize("index_pages", [True, False])
async def test_thousands_sharing_one_time_neither_skip_nor_loop(conn, crm, index_pages):
    # index_pages=False makes the stand-in run the cursor's WHERE through its validator and
    # row-by-row evaluation: the shape is accepted, and the index gives the same answers
    crm.index_pages = index_pages
    expected = bulk(crm, 2_500, 2)
    records, cursors = await pull_all(conn, "Contacts", 200)
    assert [r.record_id for r in records] == expected
    assert len(cursors) == 2 + 2_500 // 200  # 12 full pages, one part page
    # resuming from any cursor returns exactly the rest
    for k in (1, 5, len(cursors) - 2):
        rest, _ = await pull_all(conn, "Contacts", 200, cursors[k])
        assert [r.record_id for r in rest] == expected[k * 200 :]


async def test_a_full_last_page_ends_with_an_empty_one(conn, crm):
    expected = bulk(crm, 400, 1)
    first = await conn.pull("Contacts", "", 200)
    second = await conn.pull("Contacts", first.cursor, 200)
    third = await conn.pull("Contacts", second.cursor, 200)
    assert first.more and second.more and not third.more and third.records == []
    assert [r.record_id for r in [*first.records, *second.records]] == expected


async def test_a_cursor_it_did_not_make_is_refused(conn, crm):
    for cursor in ("yesterday", "2025-01-01 00:00:00' OR 1=1|x", "2025-01-01|x"):
        with pytest.raises(ConnectorError, match="cursor"):
            await conn.pull("Contacts", cursor, 10)
    with pytest.raises(ConnectorError, match="module"):
        await conn.pull("Calls", "", 10)
    assert crm.queries == []
