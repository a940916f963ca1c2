"""Several gateways on one PostgreSQL store: work that any of them could do is done once.

The CRM outbox (and the webhooks, which deliver through it) lets one gateway at a time deliver
a connector's queue, so each call reaches the CRM once and in order; a campaign step is claimed
by the (member, step) key, so two schedulers never both send it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import cast

import pytest

from connectors.base import ConnectorHealth, DirectoryPage
from gateway.bus import Bus
from gateway.campaigns.replies import PollReport, ReplyWatcher
from gateway.campaigns.scheduler import SENDS_LOCK, CampaignScheduler, MailSender
from gateway.campaigns.settings import CampaignSettings, ReplySettings
from gateway.campaigns.store import CampaignStore
from gateway.directory import DirectoryStore, DirectorySync
from gateway.store.db import MIGRATIONS_DIR, Database, discover_migrations
from gateway.store.postgres import PG_MIGRATIONS_DIR
from gateway.writeback.outbox import Outbox
from tests.postgres_fixtures import PostgresServer
from tests.test_campaign_store import T0, lead, running
from tests.test_directory import POLICY, Book


class RecordingCrm:
    """One CRM that both gateways write to; it notes which gateway wrote which call."""

    def __init__(self) -> None:
        self.accepted: list[tuple[str, str]] = []  # (gateway, call id)


class GatewayConnector:
    """The connector as one gateway holds it (same name on every gateway)."""

    name = "crm"

    def __init__(self, crm: RecordingCrm, gateway: str) -> None:
        self.crm = crm
        self.gateway = gateway

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def lookup(self, e164: str, raw: str) -> None:
        return None

    def health(self) -> ConnectorHealth:
        return ConnectorHealth(self.name)

    async def log_call(self, record: dict[str, object]) -> None:
        await asyncio.sleep(0.005)  # a CRM round trip: the other gateway runs meanwhile
        self.crm.accepted.append((self.gateway, str(record["id"])))


@pytest.fixture
async def two_gateways(
    postgres_server: PostgresServer,
) -> AsyncIterator[tuple[Database, Database]]:
    url = await postgres_server.fresh_database()
    a = await Database.open_postgres(url, clock=lambda: T0)
    b = await Database.open_postgres(url, clock=lambda: T0)
    yield a, b
    await a.close()
    await b.close()
    await postgres_server.drop(url)


def outbox(db: Database, crm: RecordingCrm, gateway: str) -> Outbox:
    return Outbox(
        db.conn,
        [GatewayConnector(crm, gateway)],
        transaction=db.transaction,
        exclusive=db.exclusive,
    )


def call(n: int) -> dict[str, object]:
    return {"id": f"pbx:{n}", "caller": "+34911234567", "started_at": 1_700_000_000.0 + n}


async def test_two_gateways_deliver_each_call_once_and_in_order(
    two_gateways: tuple[Database, Database],
) -> None:
    a, b = two_gateways
    crm = RecordingCrm()
    box_a, box_b = outbox(a, crm, "a"), outbox(b, crm, "b")
    calls = [call(n) for n in range(20)]
    assert await box_a.enqueue_many(calls) == 20
    assert await box_b.enqueue_many(calls) == 0  # already queued: one row per call
    # both gateways try the queue at once: one delivers all of it, the other waits its turn
    delivered = await asyncio.gather(box_a.deliver_due("crm"), box_b.deliver_due("crm"))
    assert sorted(delivered) == [0, 20]
    assert [rid for _, rid in crm.accepted] == [f"pbx:{n}" for n in range(20)]
    assert len({gw for gw, _ in crm.accepted}) == 1
    # the queue is free again once that pass ends: the other gateway delivers what comes next
    idle = "b" if delivered[0] else "a"
    box_idle = box_b if idle == "b" else box_a
    await box_a.enqueue(call(20))
    assert await box_idle.deliver_due("crm") == 1
    assert crm.accepted[-1] == (idle, "pbx:20")
    assert await box_a.deliver_due("crm") == 0 and await box_b.deliver_due("crm") == 0


async def test_two_schedulers_claim_each_campaign_step_once(
    two_gateways: tuple[Database, Database],
) -> None:
    a, b = two_gateways
    store_a, store_b = CampaignStore(a), CampaignStore(b)
    c = await running(store_a)
    people = [await lead(a) for _ in range(30)]
    assert await store_a.enroll(c, people, T0, T0, {}) == 30
    members = await store_b.members(c.id)
    assert len(members) == 30
    # both see the same member due and claim its first step at the same moment
    first = members[0]
    runs = await asyncio.gather(
        store_a.claim_run(first, 0, "email", T0, "2025-06-15", "sending"),
        store_b.claim_run(first, 0, "email", T0, "2025-06-15", "sending"),
    )
    assert sorted(r is None for r in runs) == [False, True]
    # a batch of e-mail steps, overlapping between the two: every step has one owner
    claims = [(m.id, c.id, 0, "2025-06-15") for m in members[1:]]
    got_a, got_b = await asyncio.gather(
        store_a.claim_emails(claims[:20], T0), store_b.claim_emails(claims[10:], T0)
    )
    assert not set(got_a) & set(got_b)
    assert set(got_a) | set(got_b) == {(m.id, 0) for m in members[1:]}


async def test_a_starting_scheduler_leaves_a_live_gateways_send_alone(
    two_gateways: tuple[Database, Database],
) -> None:
    a, b = two_gateways
    store_a = CampaignStore(a)
    c = await running(store_a)
    assert await store_a.enroll(c, [await lead(a)], T0, T0, {}) == 1
    (member,) = await store_a.members(c.id)
    mailer = cast(MailSender, None)  # recovery sends nothing
    b_scheduler = CampaignScheduler(
        b, Bus(), mailer, CampaignSettings(), lambda: T0, "http://b.example", "Europe/Madrid"
    )

    async def status() -> str:
        rows = await b.conn.execute_fetchall("SELECT status FROM campaign_step_runs")
        return str(rows[0][0])

    async with a.exclusive(SENDS_LOCK) as mine:  # gateway A is in its tick, sending
        assert mine
        assert await store_a.claim_run(member, 0, "email", T0, "2025-06-15", "sending")
        assert await b_scheduler.recover() == 0  # B starts meanwhile: A's send is left alone
        report = await b_scheduler.tick()  # ... and B does not tick while A does
        assert (report.visited, report.enrolled) == (0, 0)
        assert await status() == "sending"
    # A went away mid-send (its lock with it): the next gateway to hold the lock recovers it
    assert await b_scheduler.recover() == 1
    assert await status() == "unknown"


def test_every_migration_has_its_postgresql_twin() -> None:
    """Both engines share the numbering: version N means the same tables on either."""
    sqlite = [(m.version, m.name) for m in discover_migrations(MIGRATIONS_DIR)]
    postgres = [(m.version, m.name) for m in discover_migrations(PG_MIGRATIONS_DIR)]
    assert postgres == sqlite


class SlowBook(Book):
    """A phone book whose pages take a while, noting how many pulls run at once."""

    def __init__(self) -> None:
        super().__init__()
        self.running = self.most = 0

    async def pull(self, module: str, cursor: str, limit: int) -> DirectoryPage:
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await asyncio.sleep(0.01)  # a CRM round trip: the other gateway runs meanwhile
            return await super().pull(module, cursor, limit)
        finally:
            self.running -= 1


async def test_two_gateways_pull_a_crm_directory_one_at_a_time(
    two_gateways: tuple[Database, Database],
) -> None:
    """Two passes of one module at once would sweep each other's records as deleted."""
    book = SlowBook()
    for n in range(40):
        book.put(f"r{n}", f"Person {n}", f"+3491100{n:04d}")
    syncs = [
        DirectorySync(DirectoryStore(db, "ES", [book.name]), [(book, POLICY)], clock=lambda: T0)
        for db in two_gateways
    ]
    for sync in syncs:
        sync.start()
    a, _ = two_gateways
    try:
        for _ in range(500):  # 10 s at most
            if any(st.last_full_at for st in await DirectoryStore(a, "ES", [book.name]).states()):
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("no full pass of the directory within 10 s")
        await asyncio.sleep(0.2)  # the other gateway's round: it must have found the lock held
    finally:
        for sync in syncs:
            await sync.close()
    assert book.most == 1
    assert book.pulls == 5  # one full pass of 40 records in pages of 10 (the last one empty)


async def test_two_gateways_read_the_reply_mailbox_one_at_a_time(
    two_gateways: tuple[Database, Database],
) -> None:
    a, b = two_gateways
    async with a.exclusive("campaigns:replies") as mine:  # gateway A is reading it
        assert mine
        settings = ReplySettings(
            host="127.0.0.1", port=1, security="none", username="replies", password="pw"
        )
        watcher = ReplyWatcher(b, settings, clock=lambda: T0)
        report = await watcher.poll()  # B does not connect at all (no IMAP server here)
        assert report == PollReport()
        assert watcher.health()["status"] != "error"


async def test_an_instance_reads_on_after_another_migrated_the_schema_under_it(
    two_gateways: tuple[Database, Database],
) -> None:
    """An upgrade one instance at a time: the first of the new version migrates the shared
    schema (a column more) while the others still run. Their statements prepared before
    (``SELECT *`` included) read on, in a transaction or not, instead of failing until a
    restart."""
    a, b = two_gateways
    await a.conn.execute(
        "INSERT INTO people (kind, first_name, created_at, updated_at)"
        " VALUES ('lead', 'Lucía', 0, 0)"
    )
    read = "SELECT * FROM people WHERE first_name = ?"
    read_in_tx = "SELECT * FROM people WHERE first_name = ? AND kind = 'lead'"
    before = list(await b.conn.execute_fetchall(read, ("Lucía",)))
    async with b.transaction() as conn:
        assert len(list(await conn.execute_fetchall(read_in_tx, ("Lucía",)))) == 1
    await a.conn.execute("ALTER TABLE people ADD COLUMN nickname TEXT")  # what 00NN adds

    after = list(await b.conn.execute_fetchall(read, ("Lucía",)))
    assert [r["first_name"] for r in after] == ["Lucía"]
    assert len(list(after[0].keys())) == len(list(before[0].keys())) + 1
    async with b.transaction() as conn:  # the stale statement first met in a transaction
        rows = list(await conn.execute_fetchall(read_in_tx, ("Lucía",)))
        await conn.execute("UPDATE people SET score = 1 WHERE first_name = ?", ("Lucía",))
    assert [r["first_name"] for r in rows] == ["Lucía"]
    assert [r["score"] for r in await a.conn.execute_fetchall(read, ("Lucía",))] == [1]
