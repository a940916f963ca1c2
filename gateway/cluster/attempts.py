"""SharedAttempts: the click-to-call attempts of a cluster, kept in Redis.

The instance that owns a PBX places and follows each click-to-call on it
(gateway/panel/clicktocall.py); this module keeps a copy of every attempt where any instance
reads it, so that ``GET /api/v1/originate/{id}`` answers wherever it lands, and so that the
next owner of the PBX carries on with the attempts of an owner that died:

* ``<prefix>:c2c:<call id>``, a hash: ``owner`` (the instance following it), ``agent``,
  ``pbx``, ``attempt`` (the JSON the API answers) and ``final`` (1 once it ended or failed).
  It expires a day after its last change.
* ``<prefix>:c2c:open:<pbx>``, a sorted set of the attempts of that PBX still going on
  (scored by when they began, on Redis's clock): what a new owner looks at.

One rule keeps a click-to-call from being dialed twice: the owner writes the record with
``create`` (only if there is none) *before* it sends the Originate, and a requester that got no
answer in time writes it with ``fence`` (only if there is none) before telling its user that
nothing was dialed. Whichever comes first wins; the other sees the record there. After a
takeover only the instance named ``owner`` writes the attempt: the one that adopted it
(``take_over``), not a late previous owner.

Redis failures are logged once per outage and answered with ``None`` (not known) where a
caller must decide what to do, never raised: the panel must not need Redis's exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from gateway.cluster.channel import REDIS_FAILURES, describe
from gateway.cluster.settings import ClusterSettings, mask_url

log = logging.getLogger("gateway.cluster.attempts")

TTL_MS = 24 * 3600 * 1000  # a record outlives any call, and a CRM's polling of it
_MAX_TEXT = 4000  # an attempt's JSON longer than this is not one we wrote

# KEYS[1] record, KEYS[2] open set; ARGV owner, agent, pbx, attempt, ttl ms, call id
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'agent', ARGV[2], 'pbx', ARGV[3],
           'attempt', ARGV[4], 'final', '0')
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], tonumber(redis.call('TIME')[1]), ARGV[6])
return 1
"""
# KEYS[1] record; ARGV ttl ms
_FENCE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'abandoned', '1')
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""
# KEYS[1] record, KEYS[2] open set; ARGV owner, attempt, final (1/0), ttl ms, call id
_UPDATE = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'attempt', ARGV[2], 'final', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if ARGV[3] == '1' then redis.call('ZREM', KEYS[2], ARGV[5]) end
return 1
"""
# KEYS[1] record, KEYS[2] open set; ARGV the new owner, call id. Answers the record as it
# was ({owner, agent, attempt}), or nil when there is nothing to carry on with.
_TAKE_OVER = """
local r = redis.call('HMGET', KEYS[1], 'owner', 'agent', 'attempt', 'final')
if not r[1] or r[4] == '1' then
  redis.call('ZREM', KEYS[2], ARGV[2])
  return false
end
redis.call('HSET', KEYS[1], 'owner', ARGV[1])
return {r[1], r[2], r[3]}
"""


@dataclass(frozen=True, slots=True)
class SharedRecord:
    """An attempt as Redis has it: who follows it, whose it is, and its last state."""

    owner: str
    agent: str
    attempt: dict[str, Any]


class SharedAttempts:
    """Click-to-call attempts in Redis; written by the PBX's owner, read by any instance."""

    def __init__(self, redis: Redis, settings: ClusterSettings) -> None:
        self.redis = redis
        self.settings = settings
        self.instance = settings.name
        self.prefix = f"{settings.key_prefix}:c2c:"
        self._create = redis.register_script(_CREATE)
        self._fence = redis.register_script(_FENCE)
        self._update = redis.register_script(_UPDATE)
        self._take_over = redis.register_script(_TAKE_OVER)
        # (call id, pbx, attempt JSON, final): written in order by one task
        self._queue: asyncio.Queue[tuple[str, str, str, bool]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self.error: str | None = None

    def _keys(self, call_id: str, pbx: str) -> list[str]:
        return [self.prefix + call_id, f"{self.prefix}open:{pbx}"]

    async def create(
        self, call_id: str, agent: str, pbx: str, attempt: dict[str, Any]
    ) -> bool | None:
        """Record a new attempt followed by this instance, before its Originate leaves: False
        when a record exists (its requester gave up on it), None when Redis failed."""
        args: list[str | int] = [self.instance, agent, pbx, json.dumps(attempt), TTL_MS, call_id]
        try:
            created = await self._create(keys=self._keys(call_id, pbx), args=args)
        except REDIS_FAILURES as e:
            self._failed(e)
            return None
        self._ok()
        return bool(created)

    async def fence(self, call_id: str) -> bool | None:
        """For a requester that got no answer: True when no owner had recorded the attempt
        (and now none will: nothing was dialed), False when one had, None when not known."""
        try:
            fenced = await self._fence(keys=[self.prefix + call_id], args=[TTL_MS])
        except REDIS_FAILURES as e:
            self._failed(e)
            return None
        self._ok()
        return bool(fenced)

    def update(self, call_id: str, pbx: str, attempt: dict[str, Any], *, final: bool) -> None:
        """The attempt's new state, written soon (in order) if this instance still follows it."""
        self._queue.put_nowait((call_id, pbx, json.dumps(attempt), final))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="c2c-share")

    async def _write(self) -> None:
        while True:
            call_id, pbx, attempt, final = await self._queue.get()
            try:
                args = [self.instance, attempt, "1" if final else "0", TTL_MS, call_id]
                await self._update(keys=self._keys(call_id, pbx), args=args)
                self._ok()
            except REDIS_FAILURES as e:  # the copy in Redis stays behind; the owner goes on
                self._failed(e)
            finally:
                self._queue.task_done()

    async def read(self, call_id: str) -> SharedRecord | None:
        """The attempt as last written, None when Redis has none (or failed)."""
        try:
            owner, agent, attempt, abandoned = await self.redis.hmget(
                self.prefix + call_id, ["owner", "agent", "attempt", "abandoned"]
            )
        except REDIS_FAILURES as e:
            self._failed(e)
            return None
        self._ok()
        if abandoned:
            return None
        return _record(owner, agent, attempt)

    async def open_ids(self, pbx: str) -> list[str]:
        """The attempts on ``pbx`` still going on, oldest first (those older than a record's
        lifetime are forgotten)."""
        key = f"{self.prefix}open:{pbx}"
        try:
            now = (await self.redis.time())[0]
            await self.redis.zremrangebyscore(key, "-inf", now - TTL_MS // 1000)
            ids = await self.redis.zrange(key, 0, 999)
        except REDIS_FAILURES as e:
            self._failed(e)
            return []
        self._ok()
        return [str(i) for i in ids]

    async def take_over(self, call_id: str, pbx: str) -> SharedRecord | None:
        """Follow the attempt from here on: the record as it was (``owner`` the instance that
        followed it), None when it ended, is not ours to read, or Redis failed."""
        try:
            got = await self._take_over(
                keys=self._keys(call_id, pbx), args=[self.instance, call_id]
            )
        except REDIS_FAILURES as e:
            self._failed(e)
            return None
        self._ok()
        if not got:
            return None
        return _record(*got)

    async def close(self) -> None:
        """Write what is queued (bounded: Redis may be away), then stop."""
        if self._writer is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), self.settings.renew_seconds * 2)
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
        self._writer = None

    def _failed(self, e: BaseException) -> None:
        if self.error is None:
            log.error(
                "click-to-call share instance=%s: Redis at %s failed: %s; other instances do "
                "not see this instance's attempts until it answers",
                self.instance, mask_url(self.settings.redis_url), describe(e),
            )  # fmt: skip
        self.error = describe(e)

    def _ok(self) -> None:
        if self.error is not None:
            log.warning("click-to-call share instance=%s: Redis answers again", self.instance)
            self.error = None


def _record(owner: Any, agent: Any, attempt: Any) -> SharedRecord | None:
    """A record as ``create`` writes it; None (logged) when it is anything else."""
    doc: Any = None
    if isinstance(attempt, str) and len(attempt) <= _MAX_TEXT:
        with contextlib.suppress(ValueError):
            doc = json.loads(attempt)
    if not (isinstance(owner, str) and isinstance(agent, str) and isinstance(doc, dict)):
        log.warning("click-to-call share: skipped a record that is not ours")
        return None
    return SharedRecord(owner, agent, doc)
