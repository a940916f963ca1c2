"""RedisSignInGuard: the panel's sign-in limits shared by every instance of a cluster.

The same rule as :class:`gateway.panel.ratelimit.SignInGuard` (per name and address, per name,
per address, with "known" pairs exempt from the last two), counted in Redis so an attacker
behind a load balancer does not get the allowance once per instance. Keys:
``<prefix>:signin:{pair,name,addr}:<key>`` (a hash ``count``/``last``, expiring ``cap``
seconds after the last failure, as the local guard forgets it) and
``<prefix>:signin:known:<name>|<address>`` (expiring after ``trust_days``).

Redis unreachable: the instance's own in-memory guard decides (every failure is counted there
too), so sign-ins stay limited, per instance, during an outage.
"""

from __future__ import annotations

import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.panel.ratelimit import Backoff, SignInGuard

log = logging.getLogger("gateway.cluster.signin")

_REDIS_FAILURES = (RedisError, OSError, TimeoutError)


def _wait(limit: Backoff, count: int, last: float, now: float) -> float:
    """:meth:`Backoff.wait` for a key with ``count`` failures, the last at ``last``."""
    if count < limit.free or now - last >= limit.cap:
        return 0.0
    delay = min(limit.first * 2.0 ** (count - limit.free), limit.cap)
    return max(0.0, last + delay - now)


class RedisSignInGuard:
    """:class:`SignInGuard`'s rule over Redis; ``local`` decides while Redis is away."""

    def __init__(self, redis: Redis, local: SignInGuard, *, prefix: str = "centralita") -> None:
        self.redis = redis
        self.local = local
        self.prefix = f"{prefix}:signin:"
        self.error: str | None = None

    def _keys(self, name: str, address: str) -> tuple[str, str, str, str]:
        p = self.prefix
        pair = f"{name}|{address}"
        return f"{p}pair:{pair}", f"{p}name:{name}", f"{p}addr:{address}", f"{p}known:{pair}"

    async def wait(self, name: str, address: str, now: float) -> float:
        """Seconds before ``name`` may try to sign in from ``address`` (0: now)."""
        pair, by_name, by_addr, known = self._keys(name, address)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in (pair, by_name, by_addr):
                    pipe.hmget(key, ["count", "last"])
                pipe.exists(known)
                answers = await pipe.execute()
        except _REDIS_FAILURES as e:
            self._failed(e)
            return self.local.wait(name, address, now)
        self._ok()
        limits = (self.local.pair, self.local.name, self.local.address)
        waits = [
            _wait(limit, int(count or 0), float(last or 0), now)
            for limit, (count, last) in zip(limits, answers[:3], strict=True)
        ]
        if answers[3]:  # a known pair: only its own limit applies
            return waits[0]
        return max(waits)

    async def failed(self, name: str, address: str, now: float) -> None:
        self.local.failed(name, address, now)
        keys = self._keys(name, address)[:3]
        limits = (self.local.pair, self.local.name, self.local.address)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                for key, limit in zip(keys, limits, strict=True):
                    pipe.hincrby(key, "count", 1)
                    pipe.hset(key, "last", repr(now))
                    pipe.expire(key, max(1, round(limit.cap)))
                await pipe.execute()
        except _REDIS_FAILURES as e:
            self._failed(e)
            return
        self._ok()

    async def succeeded(self, name: str, address: str, now: float) -> None:
        self.local.succeeded(name, address, now)
        pair, by_name, _by_addr, known = self._keys(name, address)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                # the address keeps its count: signing in as oneself must not reset a spray
                pipe.delete(pair, by_name)
                pipe.set(known, repr(now), ex=max(1, round(self.local.trust_seconds)))
                await pipe.execute()
        except _REDIS_FAILURES as e:
            self._failed(e)
            return
        self._ok()

    def _failed(self, e: BaseException) -> None:
        if self.error is None:
            log.error("sign-in limits: Redis failed (%s); this instance's own count applies", e)
        self.error = f"{type(e).__name__}: {e}"

    def _ok(self) -> None:
        if self.error is not None:
            log.warning("sign-in limits: Redis answers again; limits shared again")
            self.error = None
