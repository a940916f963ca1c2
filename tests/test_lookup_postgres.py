"""The caller lookup on PostgreSQL (a real server, tests/postgres_fixtures.py): the card is one
statement on the lookup's own connection, planned once and kept, and a kept plan outlives a
schema change made by another instance (a newer version migrating the shared store)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.lookup.chain import LookupChain
from gateway.store.cards import StoreCardSource
from gateway.store.db import Database
from tests.postgres_fixtures import PostgresServer
from tests.test_lookup import LAB, add_lab_contact, settings


@pytest.fixture
async def pg(postgres_server: PostgresServer) -> AsyncIterator[Database]:
    url = await postgres_server.fresh_database()
    db = await Database.open_postgres(url)
    yield db
    await db.close()
    await postgres_server.drop(url)


async def test_a_card_is_one_statement_planned_once_on_the_lookup_connection(
    pg: Database,
) -> None:
    await add_lab_contact(pg)
    chain = LookupChain(StoreCardSource(pg), [], settings(cache_ttl=0, negative_ttl=0))
    for _ in range(8):
        assert (await chain.lookup(LAB)).display_name == "Lucía Martín"
    assert not (await chain.lookup("612000111")).known
    # what the lookup's session keeps: one statement for every card, run 9 times, and after
    # PostgreSQL's first five custom plans its generic one, without planning again
    kept = await pg.lookup_conn.execute_fetchall(
        "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
        " WHERE statement LIKE 'WITH hit AS%'"
    )
    assert len(kept) == 1
    _statement, generic, custom = kept[0]
    assert generic + custom == 9 and generic >= 1


async def test_a_kept_plan_outlives_another_instance_changing_the_schema(pg: Database) -> None:
    pid = await add_lab_contact(pg)
    read = "SELECT * FROM people WHERE id = ?"
    before = await pg.lookup_conn.execute_fetchall(read, (pid,))
    async with pg.transaction() as conn:  # as a newer version's migration would
        await conn.execute("ALTER TABLE people ADD COLUMN nickname TEXT DEFAULT 'Lu'")
    after = await pg.lookup_conn.execute_fetchall(read, (pid,))
    assert len(after[0]) == len(before[0]) + 1 and after[0]["nickname"] == "Lu"
    card = await LookupChain(StoreCardSource(pg), [], settings()).lookup(LAB)
    assert card.display_name == "Lucía Martín"
