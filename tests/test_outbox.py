"""The CRM outbox on a real SQLite file, delivering to real stand-in CRMs over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiosqlite
import pytest

from connectors.generic_http import GenericHttpConnector
from connectors.settings import GenericHttpSettings
from gateway.writeback.outbox import Backoff, Outbox
from tests.fakes.generic_http import GenericCrm
from tests.test_connector_generic_http import record

MIGRATION = Path(__file__).parent.parent / "gateway/store/migrations/0004_crm_outbox.sql"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


async def open_db(path: Path) -> aiosqlite.Connection:
    db = await aiosqlite.connect(path)
    await db.executescript(MIGRATION.read_text())
    await db.commit()
    return db


async def crm_connector(aiohttp_server, crm: GenericCrm, name: str) -> GenericHttpConnector:
    server = await aiohttp_server(crm.app())
    conn = GenericHttpConnector(
        GenericHttpSettings(
            name=name,
            log_url=str(server.make_url("/api/calls")),
            headers={"Authorization": f"Bearer {crm.token}"},
            write_timeout_ms=500,
        )
    )
    await conn.start()
    return conn


@pytest.fixture
async def db(tmp_path):
    conn = await open_db(tmp_path / "gw.db")
    yield conn
    await conn.close()  # an open aiosqlite thread would keep the interpreter from exiting


@pytest.fixture
async def two_crms(aiohttp_server):
    a, b = GenericCrm(), GenericCrm()
    ca = await crm_connector(aiohttp_server, a, "crm-a")
    cb = await crm_connector(aiohttp_server, b, "crm-b")
    yield a, b, ca, cb
    await ca.close()
    await cb.close()


async def test_outage_then_recovery_delivers_in_order_exactly_once(db, two_crms):
    a, b, ca, cb = two_crms
    clock = Clock()
    box = Outbox(db, [ca, cb], clock, backoff=Backoff(initial=10, maximum=40))
    a.faults.down = True
    for i in range(1, 4):
        assert await box.enqueue(record(f"c{i}")) == 2
    assert await box.enqueue(record("c1")) == 0  # the same call again is not queued twice

    assert await box.deliver_due("crm-a") == 0  # down: nothing written, head waits
    assert await box.deliver_due("crm-b") == 3  # the other CRM is not held back
    assert list(b.calls) == ["c1", "c2", "c3"]
    assert await box.next_due_in("crm-a") == 10
    stats = {s.connector: s for s in await box.stats()}
    assert stats["crm-a"].pending == 3 and "HTTP 500" in (stats["crm-a"].last_error or "")
    assert stats["crm-b"].pending == 0 and stats["crm-b"].delivered == 3

    assert await box.deliver_due("crm-a") == 0  # not due yet: no request at all
    clock.now += 10
    assert await box.deliver_due("crm-a") == 0  # still down
    assert await box.next_due_in("crm-a") == 20  # backoff doubled
    clock.now += 20
    a.faults.down = False
    assert await box.deliver_due("crm-a") == 3
    assert list(a.calls) == ["c1", "c2", "c3"] and a.posts == 3
    assert await box.deliver_due("crm-a") == 0 and a.posts == 3  # never written twice


async def test_backoff_is_capped():
    b = Backoff(initial=5, maximum=60)
    assert [b.delay(n) for n in (1, 2, 3, 4, 5, 20)] == [5, 10, 20, 40, 60, 60]


async def test_restart_resumes_pending_rows(tmp_path, two_crms):
    a, b, ca, cb = two_crms
    clock = Clock()
    db = await open_db(tmp_path / "gw.db")
    try:
        box = Outbox(db, [ca, cb], clock)
        a.faults.down = b.faults.down = True
        await box.enqueue(record("c1"))
        await box.enqueue(record("c2"))
        await box.deliver_due("crm-a")
    finally:
        await db.close()  # the gateway stops with two calls unwritten

    a.faults.down = b.faults.down = False
    db = await open_db(tmp_path / "gw.db")  # re-running the migration is harmless
    try:
        clock.now += 3600
        box = Outbox(db, [ca, cb], clock)
        await box.start()
        try:
            async with asyncio.timeout(5):
                await a.wait_for_calls(2)
                await b.wait_for_calls(2)
        finally:
            await box.close()
        assert list(a.calls) == ["c1", "c2"] == list(b.calls)
        assert a.posts == 2 and b.posts == 2
        assert [s.pending for s in await box.stats()] == [0, 0]
    finally:
        await db.close()


async def test_running_outbox_delivers_new_calls_promptly(db, two_crms):
    a, b, ca, cb = two_crms
    box = Outbox(db, [ca, cb], poll_interval=30)
    await box.start()
    try:
        await box.enqueue(record("live-1", caller_name="'; DROP TABLE crm_outbox; --"))
        async with asyncio.timeout(5):  # woken by enqueue, not by the 30 s poll
            await a.wait_for_calls(1)
            await b.wait_for_calls(1)
    finally:
        await box.close()
    assert a.calls["live-1"]["caller_name"] == "'; DROP TABLE crm_outbox; --"
    assert [s.delivered for s in await box.stats()] == [1, 1]


async def test_refused_record_is_parked_and_does_not_block_the_queue(db, two_crms):
    a, _, ca, _ = two_crms
    clock = Clock()
    box = Outbox(db, [ca], clock, backoff=Backoff(initial=1, maximum=1), reject_limit=2)
    await box.enqueue(record("bad", started_at=None, answered_at=None, ended_at=None))
    await box.enqueue(record("good"))
    assert await box.deliver_due("crm-a") == 1  # "bad" refused, retried later; "good" goes on
    assert list(a.calls) == ["good"]
    assert (await box.stats())[0].pending == 1
    clock.now += 1
    assert await box.deliver_due("crm-a") == 0  # second refusal parks it
    (st,) = await box.stats()
    assert (st.pending, st.delivered, st.parked) == (0, 1, 1)
    assert await box.retry_parked("crm-a") == 1
    assert (await box.stats())[0].pending == 1


async def test_record_without_id_is_refused_at_the_door(db, two_crms):
    *_, ca, cb = two_crms
    box = Outbox(db, [ca, cb])
    with pytest.raises(ValueError, match="no 'id'"):
        await box.enqueue({"caller": "+34612345678"})


async def test_notes_added_during_wrap_up_reach_the_crm(db, two_crms):
    a, _, ca, cb = two_crms
    clock = Clock()
    box = Outbox(db, [ca, cb], clock, hold=30)
    await box.enqueue(record("c1", notes="", disposition=""))
    assert await box.deliver_due("crm-a") == 0  # held for the agent's wrap-up
    assert await box.refresh(record("c1", notes="call back Monday", disposition="callback")) == 2
    clock.now += 30
    assert await box.deliver_due("crm-a") == 1 and await box.deliver_due("crm-b") == 1
    assert a.calls["c1"]["notes"] == "call back Monday"
    assert await box.refresh(record("c1", notes="too late")) == 0  # delivered: left alone


async def test_shares_the_store_connection_without_joining_its_transactions(tmp_path, two_crms):
    from gateway.store.db import Database  # the real store: its migrator applies 0004 too

    a, _, ca, cb = two_crms
    db = await Database.open(tmp_path / "store.db")
    try:
        box = Outbox(db.conn, [ca, cb], transaction=db.transaction)
        inside, release = asyncio.Event(), asyncio.Event()

        async def store_write_that_fails() -> None:
            with contextlib.suppress(RuntimeError):
                async with db.transaction() as conn:
                    await conn.execute(
                        "INSERT INTO crm_outbox (connector, record_id, payload, created_at,"
                        " next_attempt_at) VALUES ('crm-a', 'ghost', '{}', 0, 0)"
                    )
                    inside.set()
                    await release.wait()
                    raise RuntimeError("the store rolls back")

        task = asyncio.create_task(store_write_that_fails())
        await inside.wait()
        queued = asyncio.create_task(box.enqueue(record("c1")))
        await asyncio.sleep(0)  # enqueue is now waiting for the store's write lock
        release.set()
        await task
        assert await queued == 2  # neither rolled back with the store nor committing its work
        async with db.conn.execute("SELECT record_id FROM crm_outbox ORDER BY id") as cur:
            assert [r[0] for r in await cur.fetchall()] == ["c1", "c1"]
        assert await box.deliver_due("crm-a") == 1 and list(a.calls) == ["c1"]
    finally:
        await db.close()
