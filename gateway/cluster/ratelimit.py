"""SharedRateLimit: a sliding-window limit counted in Redis for every instance at once.

The panel limits how many click-to-calls one agent (or one API client) places in a window
(``panel.originate_limit`` per ``panel.originate_window``). Behind a load balancer each
instance's own count would let an agent place that many calls per instance; here every
instance counts in one sorted set per key, ``<prefix>:rate:<name>:<key>``, scored by Redis's
clock (one clock for all instances), expiring a window after its last entry.

Redis unreachable: the instance's own :class:`~gateway.panel.ratelimit.SlidingWindowLimiter`
decides (it counts every call placed here, Redis or not), so the limit holds per instance
during an outage.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable

from redis.asyncio import Redis

from gateway.cluster.channel import REDIS_FAILURES, describe
from gateway.panel.ratelimit import SlidingWindowLimiter

log = logging.getLogger("gateway.cluster.ratelimit")

# KEYS[1] the key's set; ARGV limit, window ms, a unique member. Answers 0 (counted) or the
# milliseconds until the oldest entry leaves the window (not counted).
_TAKE = """
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if #oldest == 0 then return window end
  return math.max(1, tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return 0
"""


class SharedRateLimit:
    """``local``'s limit (``limit`` per ``window`` seconds per key), counted in Redis."""

    def __init__(
        self,
        redis: Redis,
        local: SlidingWindowLimiter,
        clock: Callable[[], float],
        *,
        prefix: str,
        name: str,
    ) -> None:
        self.redis = redis
        self.local = local
        self.clock = clock
        self.prefix = f"{prefix}:rate:{name}:"
        self._take = redis.register_script(_TAKE)
        self.error: str | None = None

    async def take(self, key: str) -> float:
        """Count an attempt if allowed: 0 when it was, else the seconds to wait."""
        limit, window_ms = self.local.limit, max(1, round(self.local.window * 1000))
        try:
            wait_ms = await self._take(
                keys=[self.prefix + key], args=[limit, window_ms, secrets.token_hex(8)]
            )
        except REDIS_FAILURES as e:
            if self.error is None:
                log.error("rate limit %s: Redis failed (%s); this instance's own count applies",
                          self.prefix, describe(e))  # fmt: skip
            self.error = describe(e)
            return self.local.take(key, self.clock())
        if self.error is not None:
            log.warning("rate limit %s: Redis answers again; counted for the cluster", self.prefix)
            self.error = None
        if int(wait_ms) == 0:
            self.local.hit(key, self.clock())  # what an outage falls back on
            return 0.0
        return int(wait_ms) / 1000
