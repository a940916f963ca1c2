"""The caller directory on a real SQLite store: full pass, incremental pulls, deletions,
resumption after a crash, and lookups through the chain by any spelling typed in the CRM."""

from __future__ import annotations

import json
import logging

import pytest

from connectors.base import DirectoryPage, DirectoryRecord
from connectors.settings import DirectorySettings
from gateway.directory import DirectoryStore, DirectorySync
from gateway.errors import ConnectorError
from gateway.lookup.card import PersonKind
from gateway.lookup.chain import LookupChain
from gateway.lookup.settings import LookupSettings
from gateway.store.cards import StoreCardSource
from gateway.store.db import Database
from tests.postgres_fixtures import open_store

# the tests taking store_location run on both engines (the others use the db fixture below)
STORE_ENGINES = ("sqlite", "postgresql")

POLICY = DirectorySettings(page_size=10, interval_s=60, full_every_s=3600)


class Book:
    """An in-memory CRM phone book with the pull contract of ``DirectorySource``: ordered by
    (modified, id), cursor exclusive, deletions not reported (swept by full passes)."""

    def __init__(self, name: str = "crm") -> None:
        self.name = name
        self.rows: dict[str, tuple[int, DirectoryRecord]] = {}
        self.tick = 0
        self.fail_after: int | None = None  # pages served before an outage
        self.pulls = 0

    def directory_modules(self) -> list[str]:
        return ["Contacts"]

    def put(self, rid: str, name: str, *phones: str, kind: PersonKind = PersonKind.CONTACT) -> None:
        self.tick += 1
        rec = DirectoryRecord("Contacts", rid, kind, name, phones=phones, owner="ana")
        self.rows[rid] = (self.tick, rec)

    async def pull(self, module: str, cursor: str, limit: int) -> DirectoryPage:
        if self.fail_after is not None and self.pulls >= self.fail_after:
            raise ConnectorError("crm.example: connection refused")
        self.pulls += 1
        after = tuple(json.loads(cursor)) if cursor else (0, "")
        ordered = sorted((m, rid) for rid, (m, _) in self.rows.items())
        page = [k for k in ordered if k > after][:limit]
        records = [self.rows[rid][1] for _, rid in page]
        return DirectoryPage(records, json.dumps(page[-1]) if page else cursor, len(page) == limit)


class Clock:
    now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def db(tmp_path):
    d = await Database.open(tmp_path / "store.db")
    yield d
    await d.close()


def seeded() -> Book:
    book = Book()
    # as CRM users type them (the recorded SuiteCRM and vTiger seed data)
    book.put("ana", "Ana García", "+34 911 234 567")
    book.put("bob", "Bob Martín", "0034911234568")
    book.put("carla", "Carla Ruiz", "911234569")
    book.put("dan", "Dan Jones", "+1 (212) 555-0100")
    book.put("fax", "Fax Only", "+34 (91) 123-4572", kind=PersonKind.LEAD)
    book.put("junk", "No Number", "call reception", "")
    for i in range(25):  # more than two pages
        book.put(f"p{i:02d}", f"Person {i}", f"+34 600 000 {i:03d}")
    return book


async def test_full_pass_finds_every_typed_spelling_through_the_chain(db, caplog):
    book, clock = seeded(), Clock()
    store = DirectoryStore(db, "ES", ["crm"])
    sync = DirectorySync(store, [(book, POLICY)], clock)
    caplog.set_level(logging.INFO, "gateway.directory")
    (report,) = await sync.sync_source(book, POLICY)
    assert report.full and report.stored == 31 and report.pages == 4
    assert report.unparsable == 1  # "call reception": logged, not indexed
    assert "'call reception' is not a phone number" in caplog.text
    assert "full sync done: 31 records" in caplog.text
    chain = LookupChain(StoreCardSource(db), [], LookupSettings(), directory=store)
    for raw, name in [
        ("+34911234567", "Ana García"),
        ("911234568", "Bob Martín"),
        ("0034 911 234 569", "Carla Ruiz"),
        ("+12125550100", "Dan Jones"),
        ("911234572", "Fax Only"),
    ]:
        card = await chain.lookup(raw)
        assert (card.display_name, card.source, card.owner) == (name, "crm", "ana"), raw
    card = await chain.lookup("911234572")
    assert card.kind is PersonKind.LEAD and card.person_id == "fax"
    assert card.extra["module"] == "Contacts"
    assert not (await chain.lookup("+34911234599")).known
    (health,) = await sync.health()
    assert health["records"] == 31 and health["numbers"] == 30
    assert health["lag_seconds"] == 0 and health["last_error"] is None


async def test_the_write_backs_finder_reads_the_directory_on_either_engine(
    store_location: str,
) -> None:
    d = await open_store(store_location)
    try:
        book, clock = seeded(), Clock()
        store = DirectoryStore(d, "ES", ["crm"])
        await DirectorySync(store, [(book, POLICY)], clock).sync_source(book, POLICY)
        find = store.finder("crm")  # what a connector's write-back asks before a live query
        card = await find("0034 911 234 569")
        assert card is not None and (card.display_name, card.owner) == ("Carla Ruiz", "ana")
        assert await store.finder("another-crm")("+34911234569") is None
        assert await find("call reception") is None
    finally:
        await d.close()


async def test_incremental_pull_takes_only_changes_and_updates_the_card(db):
    book, clock = seeded(), Clock()
    store = DirectoryStore(db, "ES", ["crm"])
    sync = DirectorySync(store, [(book, POLICY)], clock)
    await sync.sync_source(book, POLICY)
    chain = LookupChain(StoreCardSource(db), [], LookupSettings(), directory=store)
    assert (await chain.lookup("+34911234567")).display_name == "Ana García"  # now cached
    book.put("ana", "Ana García-Ruiz", "+34 699 111 222")  # renamed, new number
    book.put("eva", "Eva López", "+34911234570")
    clock.now += 60
    (report,) = await sync.sync_source(book, POLICY)
    assert not report.full and report.stored == 2 and report.pages == 1
    assert (await chain.lookup("+34699111222")).display_name == "Ana García-Ruiz"
    assert not (await chain.lookup("+34911234567")).known  # the old number left the cache too
    assert (await chain.lookup("+34911234570")).display_name == "Eva López"


async def test_full_pass_sweeps_records_deleted_in_the_crm(db):
    book, clock = seeded(), Clock()
    store = DirectoryStore(db, "ES", ["crm"])
    sync = DirectorySync(store, [(book, POLICY)], clock)
    await sync.sync_source(book, POLICY)
    del book.rows["dan"]
    clock.now += 60
    (inc,) = await sync.sync_source(book, POLICY)
    assert not inc.full and store.find("+12125550100") is not None  # cannot know yet
    clock.now += POLICY.full_every_s
    (full,) = await sync.sync_source(book, POLICY)
    assert full.full and full.swept == 1
    assert store.find("+12125550100") is None
    assert store.find("+34911234567") is not None


async def test_crm_reported_deletions_leave_at_once(db):
    book, clock = seeded(), Clock()
    store = DirectoryStore(db, "ES", ["crm"])
    sync = DirectorySync(store, [(book, POLICY)], clock)
    await sync.sync_source(book, POLICY)
    book.tick += 1
    gone = DirectoryRecord("Contacts", "bob", PersonKind.CONTACT, "Bob", deleted=True)
    book.rows["bob"] = (book.tick, gone)
    (report,) = await sync.sync_source(book, POLICY)
    assert report.deleted == 1 and store.find("+34911234568") is None


async def test_a_crash_mid_pass_resumes_after_the_last_page_kept(db, tmp_path):
    book, clock = seeded(), Clock()
    book.fail_after = 2  # the CRM goes away after two pages of the first full pass
    store = DirectoryStore(db, "ES", ["crm"])
    sync = DirectorySync(store, [(book, POLICY)], clock)
    with pytest.raises(ConnectorError):
        await sync.sync_source(book, POLICY)
    (h,) = await sync.health()
    assert h["records"] == 20 and h["full_pass_running"] and "connection refused" in h["last_error"]
    assert store.find("+34911234567") is not None  # what was pulled is already useful
    # a new process on the same file (the gateway restarted) carries on where it stopped
    await db.close()
    db2 = await Database.open(tmp_path / "store.db")
    try:
        book.fail_after, book.pulls = None, 0
        store2 = DirectoryStore(db2, "ES", ["crm"])
        (report,) = await DirectorySync(store2, [(book, POLICY)], clock).sync_source(book, POLICY)
        assert report.full and report.stored == 11 and report.swept == 0
        assert book.pulls == 2  # pages 3 and 4 only
        (h,) = await DirectorySync(store2, [], clock).health()
        assert h["records"] == 31 and not h["full_pass_running"] and h["last_error"] is None
    finally:
        await db2.close()


async def test_local_contact_wins_and_first_configured_crm_wins(db):
    from gateway.store.models import PersonType
    from gateway.store.repositories import PersonRepository

    first, second = Book("first"), Book("second")
    first.put("f1", "Fiona First", "+34 911 234 567")
    second.put("s1", "Sam Second", "911234567")
    second.put("s2", "Sid Second", "+34 911 234 568")
    store = DirectoryStore(db, "ES", ["first", "second"])
    sync = DirectorySync(store, [(second, POLICY), (first, POLICY)], Clock())
    for book in (first, second):
        await sync.sync_source(book, POLICY)
    chain = LookupChain(StoreCardSource(db), [], LookupSettings(), directory=store)
    assert (await chain.lookup("+34911234567")).display_name == "Fiona First"
    await PersonRepository(db, "ES").create(
        PersonType.CONTACT, {"first_name": "Sid", "last_name": "Local", "phones": ["911234568"]}
    )
    card = await chain.lookup("+34911234568")
    assert (card.display_name, card.source) == ("Sid Local", "store")


async def test_a_pull_that_does_not_advance_is_stopped_not_looped(db):
    class Stuck(Book):
        async def pull(self, module: str, cursor: str, limit: int) -> DirectoryPage:
            self.pulls += 1
            return DirectoryPage([], cursor, True)

    book = Stuck()
    sync = DirectorySync(DirectoryStore(db, "ES", ["crm"]), [(book, POLICY)], Clock())
    with pytest.raises(ConnectorError, match="did not advance"):
        await sync.sync_source(book, POLICY)
    assert book.pulls == 1
