"""Sign-in limits shared by the instances of a cluster (a real redis-server): failures counted
on one instance hold on the other; Redis away, each instance's own count applies."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from gateway.cluster.signin import RedisSignInGuard
from gateway.panel.ratelimit import SignInGuard
from tests.redis_fixtures import RedisServer, redis_server  # noqa: F401


@pytest.fixture
async def guards(
    redis_server: RedisServer,  # noqa: F811
) -> AsyncIterator[tuple[RedisSignInGuard, RedisSignInGuard]]:
    clients = [Redis.from_url(redis_server.url, decode_responses=True) for _ in range(2)]
    a, b = (RedisSignInGuard(c, SignInGuard(3, 100.0)) for c in clients)
    yield a, b
    for c in clients:
        await c.aclose()


async def test_failures_on_one_instance_limit_the_other(
    guards: tuple[RedisSignInGuard, RedisSignInGuard],
) -> None:
    a, b = guards
    now = 1000.0
    for _ in range(3):  # three free failures, on A
        assert await b.wait("ana", "10.0.0.9", now) == 0
        await a.failed("ana", "10.0.0.9", now)
    wait = await b.wait("ana", "10.0.0.9", now)
    assert wait == pytest.approx(10.0)  # window/10 after the last failure, asked on B
    assert await b.wait("ana", "10.0.0.9", now + 10) == 0
    await b.failed("ana", "10.0.0.9", now + 10)  # the 4th failure doubles the wait
    assert await a.wait("ana", "10.0.0.9", now + 10) == pytest.approx(20.0)
    # another address: the per-name limit (6 free) is not reached yet
    assert await a.wait("ana", "10.0.0.7", now + 10) == 0
    # a success on B clears the pair and the name for both, and makes the pair known
    await b.succeeded("ana", "10.0.0.9", now + 11)
    assert await a.wait("ana", "10.0.0.9", now + 11) == 0


async def test_redis_away_each_instance_counts_on_its_own(
    guards: tuple[RedisSignInGuard, RedisSignInGuard],
    redis_server: RedisServer,  # noqa: F811
) -> None:
    a, b = guards
    redis_server.stop()
    for _ in range(3):
        await a.failed("bruno", "10.0.0.8", 50.0)
    assert a.error is not None
    assert await a.wait("bruno", "10.0.0.8", 50.0) > 0  # A's own count
    assert await b.wait("bruno", "10.0.0.8", 50.0) == 0  # B has seen nothing
    redis_server.start()
    assert await a.wait("bruno", "10.0.0.8", 50.0) == 0  # shared again (Redis lost them)
    assert a.error is None
