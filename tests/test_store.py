"""The embedded store on a real SQLite file: migrations, dedupe, repositories, demo seed."""

from __future__ import annotations

import asyncio
import random
import shutil
import sqlite3
from pathlib import Path

import pytest

from gateway.lookup.card import CallFacts
from gateway.store.db import MIGRATIONS_DIR, Database, StoreError, discover_migrations
from gateway.store.deals import delete_deals, people_of
from gateway.store.models import PersonType
from gateway.store.repositories import (
    AccountRepository,
    ActivityRepository,
    FollowUpRepository,
    PersonRepository,
)
from gateway.store.seed import LAB_CALLER, seed_demo
from gateway.store.validation import FieldError
from tests.postgres_fixtures import open_store

NEWEST = discover_migrations()[-1].version


class Clock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


STORE_ENGINES = ("sqlite", "postgresql")


@pytest.fixture
async def db(store_location: str):
    d = await open_store(store_location, clock=Clock())
    yield d
    await d.close()


def tables(path: Path) -> set[str]:
    con = sqlite3.connect(path)
    try:
        return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        con.close()


# -- migrations ---------------------------------------------------------------------------


async def test_open_creates_folder_file_and_full_schema(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "crm.db"
    db = await Database.open(path)
    try:
        assert db.version == NEWEST
        assert (await db.conn.execute_fetchall("PRAGMA journal_mode"))[0][0] == "wal"
        assert (await db.conn.execute_fetchall("PRAGMA foreign_keys"))[0][0] == 1
    finally:
        await db.close()
    assert {"people", "phones", "activities", "follow_ups", "calls"} <= tables(path)


async def test_older_file_is_upgraded_in_place_keeping_data(tmp_path: Path) -> None:
    path = tmp_path / "crm.db"
    old = await Database.open(path, upto=1)
    assert old.version == 1
    await old.conn.execute(
        "INSERT INTO people (kind, first_name, created_at, updated_at) VALUES ('contact','Ana',1,1)"
    )
    await old.conn.execute(
        "INSERT INTO phones (person_id, raw, e164) VALUES (1, '911 23 45 67', '+34911234567')"
    )
    await old.close()
    assert "activities" not in tables(path)

    db = await Database.open(path)
    try:
        assert db.version == NEWEST
        person = await PersonRepository(db).find_by_number("+34911234567")
        assert person is not None
        assert (person.first_name, person.country, person.do_not_call) == ("Ana", "", False)
        # the version-2 tables work on the upgraded file
        assert await ActivityRepository(db).add(person.id, "note", "after upgrade") is not None
    finally:
        await db.close()


async def test_newer_file_is_refused_naming_both_versions(tmp_path: Path) -> None:
    path = tmp_path / "crm.db"
    await (await Database.open(path)).close()
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version = {NEWEST + 7}")
    con.commit()
    con.close()
    with pytest.raises(StoreError) as e:
        await Database.open(path)
    assert f"schema version {NEWEST + 7}" in str(e.value)
    assert f"version {NEWEST} that this Centralita knows" in str(e.value)


async def test_failed_migration_leaves_previous_version_intact(tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    shutil.copy(MIGRATIONS_DIR / "0001_crm_core.sql", migrations)
    (migrations / "0002_broken.sql").write_text(
        "CREATE TABLE half_done (a INTEGER);\nINSERT INTO no_such_table VALUES (1);\n"
    )
    path = tmp_path / "crm.db"
    with pytest.raises(StoreError, match=r"0002_broken\.sql failed"):
        await Database.open(path, migrations_dir=migrations)
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 1
    con.close()
    assert "half_done" not in tables(path)
    assert "people" in tables(path)


async def test_two_migrations_with_one_number_are_refused(tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "0001_a.sql").write_text("CREATE TABLE a (x);")
    (migrations / "0001_b.sql").write_text("CREATE TABLE b (x);")
    (migrations / "README.txt").write_text("not a migration")
    with pytest.raises(StoreError, match="share number 0001"):
        await Database.open(tmp_path / "crm.db", migrations_dir=migrations)


# -- dedupe -------------------------------------------------------------------------------


async def test_same_number_in_another_format_updates_instead_of_duplicating(db: Database) -> None:
    people = PersonRepository(db, "ES")
    first = await people.create(
        PersonType.CONTACT, {"first_name": "Ana", "phones": ["+34 911 23 45 67"]}
    )
    again = await people.create(
        PersonType.CONTACT,
        {"first_name": "Ana María", "last_name": "López", "phones": ["0034911234567", "612345678"]},
    )
    assert (first.outcome, again.outcome) == ("created", "updated")
    assert again.person.id == first.person.id
    # existing fields kept, empty ones filled, the new number added, the known one not repeated
    assert (again.person.first_name, again.person.last_name) == ("Ana", "López")
    assert [p.e164 for p in again.person.phones] == ["+34911234567", "+34612345678"]
    assert (await people.list()).items == [again.person]


async def test_same_email_any_case_matches_and_a_lead_updates_the_contact(db: Database) -> None:
    people = PersonRepository(db)
    contact = await people.create(PersonType.CONTACT, {"name": "Bo Li", "email": "Bo@Example.com"})
    lead = await people.create(
        PersonType.LEAD,
        {"name": "B. Li", "company": "Kestrel", "email": "bo@example.COM", "status": "won"},
    )
    assert lead.outcome == "updated"
    assert lead.person.id == contact.person.id
    assert (lead.person.kind, lead.person.status, lead.person.company) == (
        "contact",
        None,
        "Kestrel",
    )
    assert len(lead.person.emails) == 1


async def test_do_not_call_only_switches_on_through_dedupe(db: Database) -> None:
    people = PersonRepository(db)
    await people.create(PersonType.LEAD, {"name": "Eva", "phone": "612345678", "do_not_call": True})
    again = await people.create(
        PersonType.LEAD, {"name": "Eva", "phone": "612 345 678", "do_not_call": False}
    )
    assert again.outcome == "updated"
    assert again.person.do_not_call is True


async def test_different_people_stay_apart(db: Database) -> None:
    people = PersonRepository(db)
    a = await people.create(PersonType.CONTACT, {"name": "Ana", "phone": "612345678"})
    b = await people.create(PersonType.CONTACT, {"name": "Ana", "phone": "612345679"})
    assert (a.created, b.created) == (True, True)


# -- repositories -------------------------------------------------------------------------


async def test_validation_errors_name_the_field(db: Database) -> None:
    people = PersonRepository(db)
    cases = [
        ({"name": "X", "phones": ["+34 911", "abc"]}, "phones[0].number"),
        ({"name": "X", "phones": [{"number": "612345678", "type": "fax"}]}, "phones[0].type"),
        ({"name": "X", "emails": ["not-an-email"]}, "emails[0].email"),
        ({"name": "X", "status": "won"}, "status"),  # contacts have no status
        ({"name": "X", "favourite_colour": "blue"}, "favourite_colour"),
        ({"name": 42}, "name"),
        ({}, "name"),
        ({"name": "X", "account_id": 999}, "account_id"),
    ]
    for data, field in cases:
        with pytest.raises(FieldError) as e:
            await people.create(PersonType.CONTACT, data)
        assert e.value.field == field, data
    with pytest.raises(FieldError) as e:
        await people.create(PersonType.LEAD, {"name": "X", "status": "lost"})
    assert e.value.field == "lost_reason"
    with pytest.raises(FieldError) as e:
        await people.create(PersonType.LEAD, {"name": "X", "score": 11})
    assert e.value.field == "score"
    assert (await people.list()).items == []


async def test_lead_lifecycle_and_filters(db: Database) -> None:
    people = PersonRepository(db)
    lead = (await people.create(PersonType.LEAD, {"name": "Lia Ruiz", "owner": "ana"})).person
    assert (lead.status, lead.source) == ("new", "api")
    updated = await people.update(lead.id, {"status": "lost", "lost_reason": "price"})
    assert updated is not None
    assert (updated.status, updated.lost_reason) == ("lost", "price")
    await people.create(PersonType.LEAD, {"name": "Max", "owner": "bruno"}, source="web_form")
    await people.create(PersonType.CONTACT, {"name": "Carmen", "owner": "ana"})
    names = [p.first_name for p in (await people.list(kind=PersonType.LEAD, owner="ana")).items]
    assert names == ["Lia"]
    assert [p.first_name for p in (await people.list(source="web_form")).items] == ["Max"]
    assert [p.first_name for p in (await people.list(status="lost")).items] == ["Lia"]
    with pytest.raises(FieldError, match="status"):
        await people.update(lead.id, {"status": "sold"})


async def test_text_search_covers_name_company_email_and_number(db: Database) -> None:
    people = PersonRepository(db)
    await people.create(
        PersonType.CONTACT,
        {
            "name": "Ana Pérez",
            "company": "Northwind",
            "email": "ana@nw.example",
            "phone": "+34 911 23 45 67",
        },
    )
    await people.create(PersonType.CONTACT, {"name": "Zoe 100%_Real", "phone": "612000000"})
    for q in ("pérez", "NORTHWIND", "nw.example", "911 23 45 67", "+34911234567", "1234"):
        assert [p.first_name for p in (await people.list(q=q)).items] == ["Ana"], q
    # LIKE wildcards in the query are literal
    assert [p.first_name for p in (await people.list(q="100%_")).items] == ["Zoe"]
    assert (await people.list(q="a%")).items == []


async def test_pagination(db: Database) -> None:
    people = PersonRepository(db)
    for i in range(5):
        await people.create(PersonType.CONTACT, {"name": f"P{i}"})
    first = await people.list(limit=2)
    second = await people.list(limit=2, offset=first.next_offset or 0)
    last = await people.list(limit=2, offset=second.next_offset or 0)
    seen = [p.first_name for page in (first, second, last) for p in page.items]
    assert seen == ["P4", "P3", "P2", "P1", "P0"]
    assert last.next_offset is None


async def test_update_refuses_a_number_that_belongs_to_someone_else(db: Database) -> None:
    people = PersonRepository(db)
    await people.create(PersonType.CONTACT, {"name": "A", "phone": "612345678"})
    b = (await people.create(PersonType.CONTACT, {"name": "B", "phone": "699999999"})).person
    with pytest.raises(FieldError) as e:
        await people.update(b.id, {"phones": ["699999999", "+34 612 345 678"]})
    assert e.value.field == "phones[1].number"
    after = await people.get(b.id)
    assert after is not None
    assert [p.e164 for p in after.phones] == ["+34699999999"]  # nothing half-done


async def test_writes_report_changed_numbers_after_commit(db: Database) -> None:
    changed: list[str] = []
    db.watch_numbers(changed.append)
    people = PersonRepository(db)
    p = (await people.create(PersonType.CONTACT, {"name": "A", "phone": "612345678"})).person
    assert changed == ["+34612345678"]
    changed.clear()
    await people.update(p.id, {"phones": ["699000000"]})
    assert sorted(changed) == ["+34612345678", "+34699000000"]
    changed.clear()
    await ActivityRepository(db).add(p.id, "note", "hi")
    await FollowUpRepository(db).add(p.id, 1.0, "call back")
    assert changed == ["+34699000000", "+34699000000"]
    changed.clear()
    await people.delete(p.id)
    assert changed == ["+34699000000"]


async def test_rolled_back_write_reports_nothing(db: Database) -> None:
    changed: list[str] = []
    db.watch_numbers(changed.append)
    people = PersonRepository(db)
    with pytest.raises(RuntimeError):
        async with db.transaction():
            await people.create(PersonType.CONTACT, {"name": "A", "phone": "612345678"})
            raise RuntimeError("boom")
    assert changed == []
    assert (await people.list()).items == []


async def test_another_tasks_failing_statement_leaves_an_open_transaction_whole(
    db: Database,
) -> None:
    # on PostgreSQL a failed statement aborts its whole transaction (SQLite: that statement
    # only); a read from another task on the shared connection must not take a write with it
    go = asyncio.Event()

    async def other_task() -> None:
        await go.wait()
        with pytest.raises(Exception, match="no_such_column"):
            await db.conn.execute_fetchall("SELECT no_such_column FROM accounts")

    other = asyncio.create_task(other_task())  # e.g. an API request, outside the transaction
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO accounts (name, created_at, updated_at) VALUES ('Acme', 1, 1)"
        )
        go.set()
        await other
        await conn.execute(
            "INSERT INTO accounts (name, created_at, updated_at) VALUES ('Beta', 1, 1)"
        )
    rows = await db.conn.execute_fetchall("SELECT name FROM accounts ORDER BY name")
    assert [r[0] for r in rows] == ["Acme", "Beta"]


async def test_a_writer_cancelled_mid_statement_rolls_back_and_the_store_goes_on(
    db: Database,
) -> None:
    slow = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000)"
        " SELECT count(*) FROM n"
    )
    inside = asyncio.Event()

    async def writer() -> None:
        async with db.transaction() as conn:
            await conn.execute(
                "INSERT INTO accounts (name, created_at, updated_at) VALUES ('Gone', 1, 1)"
            )
            inside.set()
            await conn.execute_fetchall(slow)

    task = asyncio.create_task(writer())
    await inside.wait()
    await asyncio.sleep(0.05)  # the slow statement is running
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with db.transaction() as conn:  # the connection takes the next transaction
        await conn.execute(
            "INSERT INTO accounts (name, created_at, updated_at) VALUES ('Kept', 1, 1)"
        )
    rows = await db.conn.execute_fetchall("SELECT name FROM accounts ORDER BY name")
    assert [r[0] for r in rows] == ["Kept"]


async def test_accounts_crud_and_people_linked(db: Database) -> None:
    accounts = AccountRepository(db)
    people = PersonRepository(db)
    acc = await accounts.create({"name": "Acme", "phones": ["+34 910 00 00 00"]})
    p = await people.create(PersonType.CONTACT, {"name": "Eve", "account_id": acc.id})
    assert p.person.account_id == acc.id
    renamed = await accounts.update(acc.id, {"name": "Acme Iberia"})
    assert renamed is not None and renamed.name == "Acme Iberia"
    assert [a.name for a in (await accounts.list(q="iberia")).items] == ["Acme Iberia"]
    with pytest.raises(FieldError) as e:
        await accounts.create({"domain": "x.example"})
    assert e.value.field == "name"
    assert await accounts.delete(acc.id)
    orphan = await people.get(p.person.id)
    assert orphan is not None and orphan.account_id is None  # the person stays
    assert await accounts.get(acc.id) is None


async def test_follow_ups_open_and_done(db: Database) -> None:
    people = PersonRepository(db)
    tasks = FollowUpRepository(db)
    pid = (await people.create(PersonType.LEAD, {"name": "Leo"})).person.id
    late = await tasks.add(pid, 100.0, "call back", "ana")
    await tasks.add(pid, 200.0, "send quote", "bruno")
    assert [t.title for t in await tasks.open_due(owner="ana")] == ["call back"]
    assert await tasks.complete(late.id)
    assert not await tasks.complete(late.id)
    assert [t.title for t in await tasks.open_for(pid)] == ["send quote"]


# -- demo seed ----------------------------------------------------------------------------


async def test_seed_is_deterministic_and_knows_the_lab_caller(tmp_path: Path) -> None:
    dumps = []
    for name in ("a.db", "b.db"):
        db = await Database.open(tmp_path / name, clock=Clock())
        try:
            summary = await seed_demo(db, 60, rng=random.Random(3), now=1_700_000_000.0)
            lab = await PersonRepository(db).find_by_number(LAB_CALLER)
            assert lab is not None and lab.display_name == "Lucía Martín"
            # past calls are calls in the log: on their person's timeline with what the log
            # says of them (the panel words it in the reader's language), in an agent's history
            timeline = await ActivityRepository(db).for_person(int(lab.id))
            assert [a.call for a in timeline if a.kind == "call"] == [
                CallFacts("inbound", "answered", "101", 95.0)
            ]
            unattributed = await db.conn.execute_fetchall(
                "SELECT count(*) FROM calls WHERE id NOT IN (SELECT call_id FROM call_users)"
                " OR person_id IS NULL"  # a number as typed abroad (0151...) found nobody
            )
            assert next(iter(unattributed))[0] == 0
            rows = await db.conn.execute_fetchall(
                "SELECT p.first_name, p.last_name, p.status, p.owner, ph.raw, ph.e164"
                " FROM people p JOIN phones ph ON ph.person_id = p.id ORDER BY ph.id"
            )
            dumps.append([tuple(r) for r in rows])
        finally:
            await db.close()
    assert dumps[0] == dumps[1]
    assert summary.contacts + summary.leads + summary.merged == 60
    assert summary.leads > 0 and summary.follow_ups > 0 and summary.activities > 0
    raws = [r[4] for r in dumps[0]]
    assert any(r.startswith("0044") for r in raws)  # typed as people type them
    assert any(r.startswith("(") for r in raws)
    assert {r[3] for r in dumps[0]} <= {"ana", "bruno", "carla"}


async def test_deleting_deals_names_whose_purchases_they_were(db: Database) -> None:
    """A deal of an account counts for every person of that account, one of a person for
    that person: deleting deals says whose customer figures to compute again."""
    acc = await AccountRepository(db).create({"name": "Ibérica Logística"})
    people = PersonRepository(db, "ES")
    ana = (
        await people.create(PersonType.CONTACT, {"first_name": "Ana", "account_id": acc.id})
    ).person
    bo = (await people.create(PersonType.CONTACT, {"first_name": "Bo"})).person
    ids: list[int] = []
    async with db.transaction() as conn:
        for person, account in ((None, acc.id), (bo.id, None)):
            cur = await conn.execute(
                "INSERT INTO deals (person_id, account_id, title, stage, created_at, updated_at)"
                " VALUES (?, ?, 'Licencia', 'won', ?, ?)",
                (person, account, 1_700_000_000.0, 1_700_000_000.0),
            )
            assert cur.lastrowid is not None
            ids.append(cur.lastrowid)
    async with db.transaction() as conn:
        owners = await delete_deals(conn, ids)
        assert owners == {(None, acc.id), (bo.id, None)}
        assert await people_of(conn, owners) == {ana.id, bo.id}
    rows = await db.conn.execute_fetchall("SELECT count(*) FROM deals")
    assert [r[0] for r in rows] == [0]
