"""RedisFanout: pop-ups and presence reach the instance that holds each agent's websocket.

With a ``cluster:`` section the panel's :class:`~gateway.push.hub.AgentHub` publishes through
here instead of delivering itself (docs/scale-out.md):

* ``publish()`` never awaits: it queues the message and wakes one flusher task, which sends
  everything queued since its last round trip as ONE script call. The script numbers each
  message per agent (``INCR <prefix>:push:seq:<agent>``), keeps it in the agent's replay buffer
  (a list capped at the hub's ``buffer_size``, expiring ``replay_ttl`` s after the last
  message) and PUBLISHes the whole batch on one cluster channel, ``<prefix>:push``.
* Every instance (the publisher too) is subscribed to that channel and hands each message to
  its hub (:meth:`AgentHub.deliver`), which queues it on the tabs it holds of that agent. Every
  instance sees every number, so ``last_seq`` stays right on all of them.
* The epoch is one value in Redis (``<prefix>:push:epoch``): a tab may reconnect to any
  instance with ``since=`` and get exactly what it missed from the shared buffer. Should Redis
  come back without its data, the first instance to notice draws a new epoch; every batch
  carries it, so every instance sends its tabs a ``hello`` with it and they reload.
* Redis unreachable: one clear log line, ``/health`` shows it, and messages are delivered
  unnumbered to this instance's tabs (those on other instances miss them); a retry every
  ``retry_seconds``. Once Redis answers again, the tabs held here catch up from the shared
  buffer (or get a ``refresh`` when their gap is not kept).

``replay=False`` messages (the wallboard) are published unnumbered and never buffered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Iterable
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from gateway.cluster import channel
from gateway.cluster.settings import ClusterSettings
from gateway.push.hub import AgentHub, Snapshot
from gateway.push.messages import REFRESH, Encoded, control

log = logging.getLogger("gateway.cluster.fanout")

_REDIS_FAILURES = (RedisError, OSError, TimeoutError)
POOL_SIZE = 8  # connections for publishing and catch-up reads (the subscriber has its own)
_FIELD, _RECORD = "\x1f", "\x1e"  # never in JSON text (control characters are escaped)

# ARGV: prefix, epoch, channel, buffer size, ttl, then per publish() call:
# replay (1/0), tail, number of agents, agents... Answers {1, records} or {0, epoch in Redis}.
_PUBLISH = """
local prefix, channel = ARGV[1], ARGV[3]
local epoch = redis.call('GET', prefix .. 'epoch')
if epoch ~= ARGV[2] then return {0, epoch or ''} end
local size, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local out = {epoch}
local i = 6
while i <= #ARGV do
  local replay, tail, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  for j = i + 3, i + 2 + n do
    local agent = ARGV[j]
    if replay == '1' then
      local seq = redis.call('INCR', prefix .. 'seq:' .. agent)
      local text = '{"seq":' .. seq .. ',' .. tail
      local buf = prefix .. 'buf:' .. agent
      redis.call('RPUSH', buf, text)
      redis.call('LTRIM', buf, -size, -1)
      redis.call('EXPIRE', buf, ttl)
      out[#out + 1] = agent .. '\\31' .. seq .. '\\31' .. text
    else
      out[#out + 1] = agent .. '\\31' .. '0\\31{' .. tail
    end
  end
  i = i + 3 + n
end
redis.call('PUBLISH', channel, table.concat(out, '\\30'))
return {1, #out - 1}
"""
# ARGV: prefix, agent, since. Answers {epoch, seq, kept (1/0), messages after since}.
_SNAPSHOT = """
local prefix, agent, since = ARGV[1], ARGV[2], tonumber(ARGV[3])
local epoch = redis.call('GET', prefix .. 'epoch') or ''
local seq = tonumber(redis.call('GET', prefix .. 'seq:' .. agent) or '0')
if since >= seq then return {epoch, seq, 1, {}} end
local buf = prefix .. 'buf:' .. agent
local oldest = seq - redis.call('LLEN', buf) + 1
if since + 1 < oldest then return {epoch, seq, 0, {}} end
return {epoch, seq, 1, redis.call('LRANGE', buf, since + 1 - oldest, -1)}
"""


class RedisFanout:
    """The hub's :class:`~gateway.push.hub.Fanout` over one Redis shared by the cluster."""

    def __init__(
        self,
        settings: ClusterSettings,
        *,
        buffer_size: int = 256,
        replay_ttl: float = 86400.0,
        retry_seconds: float = 1.0,
    ) -> None:
        self.settings = settings
        self.buffer_size = buffer_size
        self.replay_ttl = max(1, round(replay_ttl))
        self.retry_seconds = retry_seconds
        self.prefix = f"{settings.key_prefix}:push:"
        self.channel = f"{settings.key_prefix}:push"
        timeout = settings.renew_seconds
        # a few connections, waited for when all are busy: thousands of tabs reconnecting
        # together (a restarted instance) must queue their catch-up reads, not open a
        # connection each or fail (each command still has its socket timeout)
        pool = BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=POOL_SIZE,
            timeout=None,
            decode_responses=True,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self.redis: Redis = Redis.from_pool(pool)  # closes the pool with the client
        # the subscriber waits for messages as long as there are none: no read timeout
        self._sub_redis: Redis = channel.client(settings, read_timeout=False)
        self._publish = self.redis.register_script(_PUBLISH)
        self._snapshot = self.redis.register_script(_SNAPSHOT)
        self.hub: AgentHub | None = None
        self.error: str | None = "not started"
        self.published = 0  # messages numbered/sent through Redis
        self.delivered_locally = 0  # messages delivered here only, while Redis was away
        self.batches = 0
        self._queue: list[tuple[bool, str, list[str]]] = []
        self._wake = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def bind(self, hub: AgentHub) -> None:
        self.hub = hub

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Read the cluster's epoch and numbers, subscribe; never fails (Redis may be away)."""
        self._tasks = [
            asyncio.create_task(self._listen(), name="push-fanout-listen"),
            asyncio.create_task(self._flush_loop(), name="push-fanout-flush"),
        ]
        # the first subscription (or the first failure) before the panel serves anything
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), self.settings.renew_seconds * 2)

    async def close(self) -> None:
        # bounded: a stop must not hang on a Redis connection that went away mid-read
        await channel.stop(self._tasks, (self.redis, self._sub_redis), "push fanout")
        self._tasks = []

    def health(self) -> dict[str, Any]:
        return {
            "redis_ok": self.error is None,
            "redis_error": self.error,
            "published": self.published,
            "delivered_locally": self.delivered_locally,
            "batches": self.batches,
        }

    # -- publishing --------------------------------------------------------------------------

    def publish(self, agents: Iterable[str], message: Encoded, replay: bool) -> None:
        agents = list(agents)
        if not agents:
            return
        if self.error is not None:  # Redis away: this instance's tabs at least
            self._deliver_here(agents, message.tail)
            return
        self._queue.append((replay, message.tail, agents))
        self._wake.set()

    def _deliver_here(self, agents: list[str], tail: str) -> None:
        hub = self.hub
        if hub is None:
            return
        text = "{" + tail
        for agent in agents:
            hub.deliver(agent, 0, text)
        self.delivered_locally += len(agents)

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._queue:
                continue
            batch, self._queue = self._queue, []
            try:
                await self._flush(batch)
            except asyncio.CancelledError:
                raise
            except _REDIS_FAILURES as e:
                self._failed(e)
                for _replay, tail, agents in batch:
                    self._deliver_here(agents, tail)
            except Exception:
                log.exception("push fanout: a batch failed; delivered here only")
                for _replay, tail, agents in batch:
                    self._deliver_here(agents, tail)

    async def _flush(self, batch: list[tuple[bool, str, list[str]]]) -> None:
        hub = self.hub
        assert hub is not None
        args: list[Any] = [
            self.prefix, hub.epoch, self.channel, self.buffer_size, self.replay_ttl,
        ]  # fmt: skip
        count = 0
        for replay, tail, agents in batch:
            args.extend(("1" if replay else "0", tail, len(agents)))
            args.extend(agents)
            count += len(agents)
        for _attempt in range(2):
            done, value = await self._publish(args=args)
            if int(done):
                self.published += count
                self.batches += 1
                return
            # Redis has another epoch (or none: it lost its data): take it, then number again
            epoch = await self._epoch()
            if epoch != hub.epoch:
                hub.new_epoch(epoch)
            args[1] = epoch
        raise RedisError(f"epoch changed twice while publishing (last seen {value!r})")

    async def _epoch(self) -> str:
        key = self.prefix + "epoch"
        await self.redis.set(key, secrets.token_hex(6), nx=True)
        return str(await self.redis.get(key))

    # -- receiving ---------------------------------------------------------------------------

    async def _listen(self) -> None:
        # a publish that failed meanwhile ends the subscription too (``healthy``): subscribing
        # again is how this instance finds Redis back and catches its tabs up
        await channel.subscribe_forever(
            self._sub_redis,
            self.channel,
            resume=self._resume,
            on_message=self._on_batch,
            healthy=lambda: self.error is None,
            failed=self._failed,
            ready=self._subscribed,
            period=self.retry_seconds,
            log=log,
        )

    def _on_batch(self, data: str) -> None:
        hub = self.hub
        if hub is None:
            return
        records = data.split(_RECORD)
        epoch = records[0]
        if epoch != hub.epoch:
            hub.new_epoch(epoch)
        for record in records[1:]:
            agent, seq, text = record.split(_FIELD, 2)
            hub.deliver(agent, int(seq), text)

    async def _resume(self) -> None:
        """Subscribed (again): take the cluster's epoch and numbers; tabs held here catch up
        on what they missed while this instance could not hear Redis."""
        hub = self.hub
        assert hub is not None
        epoch = await self._epoch()
        if epoch != hub.epoch:
            if self.error == "not started":
                hub.epoch = epoch  # no tab yet: nothing to reload
            else:
                hub.new_epoch(epoch)
        for agent, seen in hub.agents_with_tabs():
            snap = await self.snapshot(agent, seen, quiet=False)
            if snap is None or snap.missed is None:
                text = control(REFRESH, snap.seq if snap else seen, {"reason": "too far behind"})
                hub.deliver(agent, 0, text)
                continue
            for text in snap.missed:
                hub.deliver(agent, _seq_of(text), text)
        await self._load_numbers(hub)
        if self.error is not None:
            if self.error != "not started":
                log.warning(
                    "push fanout instance=%s: Redis answers again; pop-ups go through it",
                    self.settings.name,
                )
            self.error = None
            self._wake.set()

    async def _load_numbers(self, hub: AgentHub) -> None:
        """Every agent's last number, so ``last_seq`` is right on an instance just started."""
        keys: list[str] = []
        async for key in self.redis.scan_iter(match=self.prefix + "seq:*", count=1000):
            keys.append(key)
        start = len(self.prefix) + len("seq:")
        for i in range(0, len(keys), 1000):
            chunk = keys[i : i + 1000]
            for key, value in zip(chunk, await self.redis.mget(chunk), strict=True):
                if value is not None:
                    hub.known_seq(key[start:], int(value))

    async def snapshot(self, agent: str, since: int, *, quiet: bool = True) -> Snapshot | None:
        """The agent's number and what came after ``since`` (None: Redis away)."""
        try:
            epoch, seq, kept, missed = await self._snapshot(args=[self.prefix, agent, since])
        except _REDIS_FAILURES as e:
            if not quiet:
                raise
            self._failed(e)
            return None
        return Snapshot(str(epoch), int(seq), list(missed) if int(kept) else None)

    def _failed(self, e: BaseException) -> None:
        self.error = channel.failed(
            log, self.error, e, who=f"push fanout instance={self.settings.name}",
            settings=self.settings, meanwhile="pop-ups reach this instance's tabs only until "
            f"it answers (retrying every {self.retry_seconds:g}s)",
        )  # fmt: skip


def _seq_of(text: str) -> int:
    # '{"seq":N,...' as the publish script writes it
    return int(text[7 : text.index(",", 7)])
