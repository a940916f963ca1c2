"""PbxLease: who may hold one PBX's AMI link, as a lease in Redis.

The lease is one key, ``<prefix>:pbx:<name>:lease``, whose value names its holder as
``<instance>|<token>`` and which Redis expires on its own. Taking it is ``SET NX PX`` in spirit
(a Lua script, so the fencing token can be drawn in the same step); renewing and releasing
are scripts that act only when the value is exactly the caller's, so an instance never extends
or deletes a lease that has passed to another, not even one under its own name.

The token comes from ``INCR <prefix>:pbx:<name>:fence``: every acquisition gets a larger one,
so a record stamped with it tells which ownership produced it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

# KEYS[1] lease, KEYS[2] fence counter; ARGV[1] instance, ARGV[2] lease in ms.
# Each answers {held (0/1), holder value or false, ms left}.
_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder then
  return {0, holder, redis.call('PTTL', KEYS[1])}
end
local value = ARGV[1] .. '|' .. redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return {1, value, tonumber(ARGV[2])}
"""
# ARGV[1] the exact value this holder wrote, ARGV[2] lease in ms
_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, holder, tonumber(ARGV[2])}
end
return {0, holder, redis.call('PTTL', KEYS[1])}
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
_READ = """
return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}
"""


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a lease: the instance's name, its fencing token, seconds left."""

    instance: str
    token: int
    ttl: float

    @property
    def value(self) -> str:
        return f"{self.instance}|{self.token}"


@dataclass(frozen=True, slots=True)
class LeaseState:
    """The answer to one acquire or renew: whether the caller holds it now, and who does."""

    held: bool
    holder: Holder | None


class PbxLease:
    """The lease on one PBX's AMI link, seen from one instance."""

    def __init__(
        self,
        redis: Redis,
        pbx: str,
        instance: str,
        *,
        lease_seconds: float,
        prefix: str = "centralita",
    ) -> None:
        self.pbx = pbx
        self.instance = instance
        self.lease_ms = max(1, round(lease_seconds * 1000))
        self.keys = [f"{prefix}:pbx:{pbx}:lease", f"{prefix}:pbx:{pbx}:fence"]
        self.token: int | None = None  # while held: the token of this acquisition
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._read = redis.register_script(_READ)

    @property
    def _mine(self) -> str:
        return f"{self.instance}|{self.token}"

    async def acquire(self) -> LeaseState:
        """Take the lease if nobody holds it; the state says who holds it either way."""
        state = _state(await self._acquire(keys=self.keys, args=[self.instance, self.lease_ms]))
        if state.held and state.holder is not None:
            self.token = state.holder.token
        return state

    async def renew(self) -> LeaseState:
        """Extend the lease to a full term if it is still this acquisition's; otherwise it is
        lost (expired, or taken by another) and ``held`` is False."""
        if self.token is None:
            return LeaseState(False, await self.holder())
        state = _state(await self._renew(keys=self.keys, args=[self._mine, self.lease_ms]))
        if not state.held:
            self.token = None
        return state

    async def release(self) -> bool:
        """Give the lease up now (another instance may take it at once); False when it was
        not this acquisition's any more, and then nothing is touched."""
        if self.token is None:
            return False
        mine, self.token = self._mine, None
        return bool(await self._release(keys=self.keys[:1], args=[mine]))

    async def holder(self) -> Holder | None:
        """Who holds the lease now (None: nobody)."""
        value, ttl = await self._read(keys=self.keys[:1])
        return _holder(value, ttl)


def _state(answer: Any) -> LeaseState:
    held, value, ttl = answer
    return LeaseState(bool(held), _holder(value, ttl))


def _holder(value: Any, ttl: Any) -> Holder | None:
    if not value:  # Lua's false arrives as None
        return None
    text = value.decode() if isinstance(value, bytes) else str(value)
    instance, sep, token = text.rpartition("|")
    if not (sep and instance and token.isdigit()):  # a value this code did not write
        instance, token = text, "0"
    # PTTL -1: no expiry (set by hand); it still counts as held
    return Holder(instance, int(token), max(0.0, int(ttl) / 1000))
