"""The PBX link lease against a real Redis (Debian's redis-server on loopback): one holder at a
time, only the holder renews or releases, an expired lease passes on, and every acquisition
gets a larger fencing token."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import Redis

from gateway.cluster.lease import PbxLease
from tests.redis_fixtures import RedisServer, redis_server  # noqa: F401

LEASE = 0.3  # seconds: short, so expiry is seen quickly


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:  # noqa: F811
    client = Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


def lease(redis: Redis, instance: str, seconds: float = LEASE) -> PbxLease:
    return PbxLease(redis, "main", instance, lease_seconds=seconds, prefix="test")


async def eventually(what: str, check: Callable[[], Awaitable[bool]], within: float = 5) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_of_two_instances_asking_at_once_exactly_one_holds_the_pbx(redis: Redis) -> None:
    a, b = lease(redis, "gw-a", 30), lease(redis, "gw-b", 30)
    got = await asyncio.gather(a.acquire(), b.acquire())
    assert sorted(s.held for s in got) == [False, True]
    winner, loser = (a, b) if got[0].held else (b, a)
    won = got[0] if got[0].held else got[1]
    lost = got[1] if got[0].held else got[0]
    # both answers name the same holder, with its token; the loser holds no token
    assert won.holder is not None and lost.holder is not None
    assert won.holder.instance == lost.holder.instance == winner.instance
    assert won.holder.token == lost.holder.token == winner.token
    assert loser.token is None
    holder = await winner.holder()
    assert holder is not None and holder.instance == winner.instance
    assert 29 < holder.ttl <= 30
    assert not (await loser.acquire()).held  # asking again changes nothing


async def test_only_the_holder_renews(redis: Redis) -> None:
    a, b = lease(redis, "gw-a"), lease(redis, "gw-b")
    assert (await a.acquire()).held
    refused = await b.renew()  # never acquired
    assert not refused.held and refused.holder is not None
    assert refused.holder.instance == "gw-a"
    # a renewing holder keeps the PBX well past one term: the other never gets it
    deadline = time.monotonic() + 4 * LEASE
    while time.monotonic() < deadline:
        assert (await a.renew()).held
        assert not (await b.acquire()).held
        await asyncio.sleep(LEASE / 4)


async def test_an_expired_lease_passes_on_and_its_old_holder_cannot_renew_it(
    redis: Redis,
) -> None:
    a, b = lease(redis, "gw-a"), lease(redis, "gw-b")
    first = await a.acquire()
    assert first.held and first.holder is not None
    assert not (await b.acquire()).held
    # a stops renewing, as a crashed or frozen instance would: b gets it once it expires
    await eventually("the lease to expire and pass to gw-b", lambda: _held(b.acquire()))
    assert b.token is not None and b.token > first.holder.token  # fencing: tokens grow
    late = await a.renew()  # a wakes up: its lease is gone, and b's is left alone
    assert not late.held and late.holder is not None and late.holder.instance == "gw-b"
    assert a.token is None
    holder = await b.holder()
    assert holder is not None and holder.instance == "gw-b" and holder.token == b.token


async def test_the_same_instance_name_cannot_renew_a_lease_it_lost(redis: Redis) -> None:
    """Two processes configured with one name (a mistake) still never share the PBX: a lease
    is renewed by the acquisition that made it, not by whoever has the same name."""
    old, new = lease(redis, "gw-a"), lease(redis, "gw-a")
    assert (await old.acquire()).held
    await eventually("the lease to expire and pass on", lambda: _held(new.acquire()))
    assert not (await old.renew()).held
    assert (await new.renew()).held


async def test_release_by_a_non_holder_does_nothing_and_by_the_holder_frees_at_once(
    redis: Redis,
) -> None:
    a, b = lease(redis, "gw-a", 30), lease(redis, "gw-b", 30)
    assert (await a.acquire()).held
    assert await b.release() is False
    holder = await a.holder()
    assert holder is not None and holder.instance == "gw-a"
    assert await a.release() is True
    assert await a.holder() is None
    assert (await b.acquire()).held  # no waiting out the term after a release
    assert await a.release() is False  # a released already: b's lease stays
    holder = await b.holder()
    assert holder is not None and holder.instance == "gw-b"


async def _held(call: Awaitable[object]) -> bool:
    state = await call
    return bool(getattr(state, "held", False))
