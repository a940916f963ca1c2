"""The lookup cache across instances: two gateways' lookup chains on one PostgreSQL store, each
with its LookupInvalidation on one Redis (Debian's servers, started for the test). A card
edited through one instance is never shown stale by the other; an instance that lost Redis
clears its cache when it hears it again; what an instance could not publish goes out once
Redis answers; a stranger on the channel is skipped."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from gateway.app import Gateway, create_app
from gateway.cluster.invalidation import LookupInvalidation, for_gateway
from gateway.cluster.settings import ClusterSettings
from gateway.lookup.card import PersonKind
from gateway.lookup.chain import LookupChain
from gateway.sim.pbx import SimulatedPbx
from gateway.store.cards import StoreCardSource
from gateway.store.db import Database
from gateway.store.models import PersonType
from gateway.store.repositories import ActivityRepository, PersonRepository
from tests.postgres_fixtures import PostgresServer
from tests.redis_fixtures import RedisServer, redis_server  # noqa: F401
from tests.test_cluster_failover import config
from tests.test_lookup import LAB, add_lab_contact, settings

OTHER = "+34612000111"


class Relay:
    """A TCP relay to Redis that the test can cut (every connection through it dropped, new
    ones refused) and mend: one instance losing Redis while the others keep it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cut_off = False
        self.server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}/0"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_off:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        self._pipes.update((writer, up_writer))

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self._pipes.difference_update((writer, up_writer))

    def cut(self) -> None:
        self.cut_off = True
        for pipe in list(self._pipes):
            pipe.close()

    def mend(self) -> None:
        self.cut_off = False

    async def close(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


class Instance:
    """One gateway's lookup: its own store connections, chain and invalidation sharing."""

    def __init__(
        self, db: Database, chain: LookupChain, sharing: LookupInvalidation, relay: Relay | None
    ) -> None:
        self.db, self.chain, self.sharing = db, chain, sharing
        self._relay = relay

    @property
    def relay(self) -> Relay:
        assert self._relay is not None, "made without relayed=True"
        return self._relay

    async def name_of(self, number: str) -> str:
        return (await self.chain.lookup(number)).display_name


@pytest.fixture
async def store_url(postgres_server: PostgresServer) -> AsyncIterator[str]:
    url = await postgres_server.fresh_database()
    yield url
    await postgres_server.drop(url)


@pytest.fixture
async def instances(
    store_url: str,
    redis_server: RedisServer,  # noqa: F811
) -> AsyncIterator[Callable[..., Any]]:
    made: list[Instance] = []
    relays: list[Relay] = []

    async def make(name: str, *, relayed: bool = False, max_pending: int = 10_000) -> Instance:
        url = redis_server.url
        relay = None
        if relayed:
            relay = Relay(redis_server.port)
            relays.append(relay)
            url = await relay.start()
        cluster = ClusterSettings(redis_url=url, instance=name, lease_seconds=3, renew_seconds=0.5)
        db = await Database.open_postgres(store_url)
        chain = LookupChain(StoreCardSource(db), [], settings())
        sharing = LookupInvalidation(cluster, chain, retry_seconds=0.1, max_pending=max_pending)
        sharing.watch(db)
        await sharing.start()
        made.append(Instance(db, chain, sharing, relay))
        return made[-1]

    yield make
    for inst in made:
        await inst.sharing.close()
        await inst.db.close()
    for relay in relays:
        await relay.close()


async def until(what: str, condition: Callable[[], Any], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {within}s waiting for {what}"
        await asyncio.sleep(0.01)


async def test_an_edit_through_one_instance_is_never_shown_stale_by_the_other(
    instances: Callable[..., Any],
) -> None:
    a: Instance = await instances("gw-a")
    b: Instance = await instances("gw-b")
    assert (await b.chain.lookup(LAB)).kind is PersonKind.UNKNOWN  # B caches "unknown"
    pid = await add_lab_contact(a.db)  # ...then the contact is created through A
    await until("B to drop the number", lambda: b.sharing.received >= 1)
    assert await b.name_of(LAB) == "Lucía Martín"

    await PersonRepository(a.db).update(pid, {"first_name": "Lucia"})
    await until("B to drop the edited card", lambda: b.sharing.received >= 2)
    assert await b.name_of(LAB) == "Lucia Martín"
    await ActivityRepository(a.db).add(pid, "note", "called back")
    await until("B to drop it again", lambda: b.sharing.received >= 3)
    assert [i.summary for i in (await b.chain.lookup(LAB)).interactions] == ["called back"]

    # the number moves to another phone: the old one is nobody's on B, the new one Lucia's
    await PersonRepository(a.db).update(pid, {"phones": ["612000111"]})
    await until("B to drop both numbers", lambda: b.sharing.received >= 5)
    assert (await b.chain.lookup(LAB)).kind is PersonKind.UNKNOWN
    assert await b.name_of(OTHER) == "Lucia Martín"

    # and the other way round, B's edit reaches A's cache
    assert await a.name_of(OTHER) == "Lucia Martín"
    await PersonRepository(b.db).update(pid, {"first_name": "Lucy"})
    await until("A to drop the card", lambda: a.sharing.received >= 1)
    assert await a.name_of(OTHER) == "Lucy Martín"
    assert a.sharing.health()["redis_ok"] and b.sharing.health()["published"] == 1


async def test_an_instance_that_lost_redis_clears_its_cache_when_it_hears_it_again(
    instances: Callable[..., Any],
    store_url: str,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    a: Instance = await instances("gw-a")
    b: Instance = await instances("gw-b")
    pid = await add_lab_contact(a.db)
    await until("B to hear of the new contact", lambda: b.sharing.received == 1)
    assert await b.name_of(LAB) == "Lucía Martín"
    clears = b.sharing.clears
    redis_server.stop()
    await until("B to see Redis gone", lambda: not b.sharing.health()["redis_ok"])
    # an edit nobody could tell B about (made while Redis is away; or by a command)
    command = await Database.open_postgres(store_url)
    try:
        await PersonRepository(command).update(pid, {"first_name": "Lucia"})
    finally:
        await command.close()
    assert await b.name_of(LAB) == "Lucía Martín"  # stale for now: B cannot know
    redis_server.start()
    await until("B to hear Redis again", lambda: b.sharing.health()["redis_ok"])
    assert b.sharing.clears == clears + 1
    assert await b.name_of(LAB) == "Lucia Martín"
    await until("A to hear Redis again", lambda: a.sharing.health()["redis_ok"])


async def test_what_an_instance_could_not_publish_goes_out_once_redis_answers(
    instances: Callable[..., Any],
) -> None:
    a: Instance = await instances("gw-a", relayed=True)
    b: Instance = await instances("gw-b")  # keeps Redis all along: it never clears by itself
    pid = await add_lab_contact(a.db)
    await until("B to hear of the new contact", lambda: b.sharing.received == 1)
    assert await b.name_of(LAB) == "Lucía Martín"
    a.relay.cut()
    await PersonRepository(a.db).update(pid, {"first_name": "Lucia"})
    await until("A to see Redis gone", lambda: not a.sharing.health()["redis_ok"])
    assert a.sharing.health()["pending"] == 1
    assert await b.name_of(LAB) == "Lucía Martín"  # B has not heard yet
    clears = b.sharing.clears
    a.relay.mend()
    await until("B to hear of the edit", lambda: b.sharing.received == 2)
    assert await b.name_of(LAB) == "Lucia Martín"
    assert b.sharing.clears == clears and a.sharing.health()["pending"] == 0


async def test_too_much_to_publish_later_makes_every_instance_clear_its_cache(
    instances: Callable[..., Any],
    store_url: str,
) -> None:
    a: Instance = await instances("gw-a", relayed=True, max_pending=3)
    b: Instance = await instances("gw-b")
    pid = await add_lab_contact(a.db)
    await until("B to hear of the new contact", lambda: b.sharing.received == 1)
    assert await b.name_of(LAB) == "Lucía Martín"
    a.relay.cut()
    await until("A to see Redis gone", lambda: not a.sharing.health()["redis_ok"])
    # four other numbers edited through A: more than it keeps, so it will say "everything"
    await PersonRepository(a.db).create(
        PersonType.CONTACT, {"first_name": "Ana", "phones": ["612000001", "612000002", "612000003"]}
    )
    await PersonRepository(a.db).create(
        PersonType.CONTACT, {"first_name": "Eva", "phones": ["612000004"]}
    )
    # and Lucía's card changed where nobody could publish it
    command = await Database.open_postgres(store_url)
    try:
        await PersonRepository(command).update(pid, {"first_name": "Lucia"})
    finally:
        await command.close()
    assert await b.name_of(LAB) == "Lucía Martín"
    clears = b.sharing.clears
    a.relay.mend()
    await until("B to clear its cache", lambda: b.sharing.clears > clears)
    assert await b.name_of(LAB) == "Lucia Martín"
    assert b.sharing.received == 1  # no number by number: one "clear everything"


async def test_a_stranger_on_the_channel_is_skipped(
    instances: Callable[..., Any],
    redis_server: RedisServer,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    b: Instance = await instances("gw-b")
    pid = await add_lab_contact(b.db)
    assert await b.name_of(LAB) == "Lucía Martín"
    await PersonRepository(b.db).update(pid, {"first_name": "Lucia"})  # B's own: at once
    assert await b.name_of(LAB) == "Lucia Martín"
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    try:
        for junk in (
            "not json",
            '{"from": "gw-x", "numbers": [1, 2]}',
            '{"from": "gw-x", "numbers": ["' + "9" * 40 + '"]}',
            '{"from": "gw-x", "numbers": [], "extra": 1}',
            "[]",
        ):
            await redis.publish(b.sharing.channel, junk)
        await redis.publish(b.sharing.channel, '{"from": "gw-x", "numbers": ["' + LAB + '"]}')
    finally:
        await redis.aclose()
    await until("B to take the good message", lambda: b.sharing.received == 1)
    assert b.sharing.health()["skipped"] == 5 and b.sharing.health()["redis_ok"]
    assert caplog.text.count("not a message of ours") == 1


async def test_only_instances_sharing_a_store_share_invalidations(
    tmp_path: Path,
    store_url: str,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    cluster = ClusterSettings(redis_url=redis_server.url, instance="gw-a")
    sqlite = await Database.open(tmp_path / "store.db")
    pg = await Database.open_postgres(store_url)
    try:
        chain = LookupChain(StoreCardSource(pg), [], settings())
        assert for_gateway(None, pg, chain) is None  # alone
        assert for_gateway(cluster, sqlite, chain) is None  # a file of its own per instance
        sharing = for_gateway(cluster, pg, chain)
        assert sharing is not None
        await add_lab_contact(pg)  # the store's change hook reaches it
        assert sharing.health()["pending"] == 1
        await sharing.close()
    finally:
        await pg.close()
        await sqlite.close()


async def test_gateways_of_a_cluster_on_one_store_share_their_invalidations(
    tmp_path: Path,
    sim: SimulatedPbx,
    store_url: str,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    clients: list[TestClient] = []
    gateways: list[Gateway] = []
    try:
        for name in ("gw-a", "gw-b"):
            cfg = config(tmp_path, name, sim.port, redis_server.url)
            cfg = msgspec.structs.replace(
                cfg, store=msgspec.structs.replace(cfg.store, url=store_url)
            )
            gw = Gateway(cfg, clock=sim.clock.now)
            client = TestClient(TestServer(await create_app(cfg, gw)))
            await client.start_server()
            clients.append(client)
            gateways.append(gw)
        a, b = gateways
        assert a.db is not None and b.lookup is not None and b.lookup_sharing is not None
        assert (await b.lookup.lookup(LAB)).kind is PersonKind.UNKNOWN
        await add_lab_contact(a.db)
        await until("B to hear of the new contact", lambda: b.lookup_sharing.received >= 1)
        assert (await b.lookup.lookup(LAB)).display_name == "Lucía Martín"
        resp = await clients[1].get("/health")
        shown = (await resp.json())["cluster"]["lookup_cache"]
        assert shown["redis_ok"] and shown["received"] >= 1 and shown["clears"] == 1
    finally:
        for client in reversed(clients):
            async with asyncio.timeout(15):
                await client.close()
