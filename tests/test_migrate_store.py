"""``centralita migrate-store --from <sqlite> --to <postgresql url>`` copies every table into
an empty PostgreSQL database, keeps ids and the links between rows, and refuses a database that
already holds data and a store a gateway is running on."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.__main__ import main
from gateway.campaigns.store import CampaignStore
from gateway.store.db import Database, InstanceLock
from gateway.store.models import PersonType
from gateway.store.repositories import PersonRepository
from gateway.writeback.outbox import Outbox
from tests.postgres_fixtures import PostgresServer
from tests.test_campaign_store import T0, definition


class NoCrm:
    name = "crm"


async def fill(path: Path) -> dict[str, int]:
    """A small store touching most tables, including the follow-up <-> step-run cycle."""
    db = await Database.open(path, clock=lambda: T0)
    try:
        people = PersonRepository(db)
        ana = (
            await people.create(
                PersonType.LEAD,
                {
                    "first_name": "Ana",
                    "last_name": "Núñez",
                    "phone": "+34 911 23 45 67",
                    "email": "Ana@Example.es",
                },
            )
        ).person
        store = CampaignStore(db)
        c = await store.create(definition(), "user:sup", T0)
        c = await store.set_status(c.id, "running", T0)
        await store.enroll(c, [ana.id], T0, T0, {})
        (member,) = await store.members(c.id)
        run = await store.claim_run(member, 0, "call", T0, "2025-06-15", "task_created")
        async with db.transaction() as conn:
            cur = await conn.execute(
                "INSERT INTO follow_ups (person_id, due_at, title, created_at, campaign_run_id)"
                " VALUES (?, ?, ?, ?, ?)",
                (ana.id, T0 + 3600, "Llamar a Ana", T0, run),
            )
            await conn.execute(
                "UPDATE campaign_step_runs SET follow_up_id = ? WHERE id = ?", (cur.lastrowid, run)
            )
        box = Outbox(db.conn, [NoCrm()], transaction=db.transaction)  # type: ignore[list-item]
        await box.enqueue({"id": "pbx:1", "caller": "+34911234567"})
        return {"person": ana.id, "run": run or 0, "campaign": c.id}
    finally:
        await db.close()


def test_copies_every_table_keeping_ids_and_links(
    tmp_path: Path, postgres_server: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "store.db"
    ids = asyncio.run(fill(source))
    url = asyncio.run(postgres_server.empty_database())
    assert main(["migrate-store", "--from", str(source), "--to", url]) == 0
    out = capsys.readouterr().out
    assert "people: 1 rows" in out and "crm_outbox: 1 rows" in out
    assert "follow_ups: 1 rows" in out and "campaign_step_runs: 1 rows" in out

    async def check() -> None:
        db = await Database.open_postgres(url, clock=lambda: T0)
        try:
            person = await PersonRepository(db).get(ids["person"])
            assert person is not None
            assert (person.first_name, person.last_name) == ("Ana", "Núñez")
            assert [p.e164 for p in person.phones] == ["+34911234567"]
            run = await CampaignStore(db).run(ids["run"])
            assert run is not None and run.follow_up_id is not None
            rows = await db.conn.execute_fetchall(
                "SELECT campaign_run_id FROM follow_ups WHERE id = ?", (run.follow_up_id,)
            )
            assert [r[0] for r in rows] == [ids["run"]]
            # new rows take ids after the copied ones
            other = await PersonRepository(db).create(PersonType.CONTACT, {"first_name": "Bruno"})
            assert other.created and other.person.id > ids["person"]
        finally:
            await db.close()

    asyncio.run(check())
    # a second copy would mix two stores: refused, and what is there stays
    assert main(["migrate-store", "--from", str(source), "--to", url]) == 1
    assert "already holds data" in capsys.readouterr().err


def test_refuses_a_store_a_gateway_is_running_on(
    tmp_path: Path, postgres_server: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "store.db"
    asyncio.run(fill(source))
    url = asyncio.run(postgres_server.empty_database())
    lock = InstanceLock.acquire(source)
    try:
        assert main(["migrate-store", "--from", str(source), "--to", url]) == 1
    finally:
        lock.release()
    assert "in use by another gateway" in capsys.readouterr().err
