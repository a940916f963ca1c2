"""LookupInvalidation: a card edited through one instance drops out of every instance's cache.

Each instance's lookup chain keeps its own cache of caller cards (gateway/lookup/cache.py), and
the store tells it which numbers a commit changed (``Database.watch_numbers``). With several
instances on one PostgreSQL store, a contact edited through instance A would stay stale in
instance B's cache until its TTL (``lookup.cache_ttl``, 300 s) ran out. With a ``cluster:``
section and a shared store this module carries those invalidations through Redis
(docs/scale-out.md):

* After each commit the changed numbers are queued; one flusher task PUBLISHes everything
  queued since its last round trip on ``<prefix>:lookup`` (at most ``CHUNK`` numbers a message),
  as ``{"from": <instance>, "numbers": [...]}``.
* Every instance is subscribed and drops those numbers from its cache (its own messages it
  skips: its cache heard of them straight from the store).
* Redis pub/sub keeps nothing for a subscriber that is away, so an instance that lost its
  subscription may have missed invalidations: when it subscribes again it clears its whole
  cache (the first subscription too, which costs nothing on an empty cache).
* What this instance could not publish (Redis away, or unreachable from here only) stays
  queued and goes out once Redis answers; more than ``max_pending`` numbers become one
  ``{"all": true}`` message, which makes every instance clear its cache.
* Redis away: one log line, ``/health`` shows it; the other instances' edits reach this
  instance's pop-ups after ``cache_ttl`` at worst until it answers again.

What comes from the channel is parsed defensively: a message that is not what this module
writes is logged once and counted, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

import msgspec

from gateway.cluster import channel
from gateway.cluster.channel import REDIS_FAILURES
from gateway.cluster.settings import ClusterSettings
from gateway.store.db import Database

log = logging.getLogger("gateway.cluster.invalidation")

CHUNK = 500  # numbers per message (~10 KB)
MAX_PENDING = 10_000  # numbers queued while Redis is away, before "clear everything" instead
MAX_NUMBER = 32  # an E.164 number has at most 16 characters; anything longer is not ours


class CardCacheOwner(Protocol):
    """What this module needs of the lookup chain (gateway/lookup/chain.py)."""

    def invalidate(self, e164: str) -> None: ...

    def clear(self) -> None: ...


class _Message(msgspec.Struct, forbid_unknown_fields=True):
    sender: str = msgspec.field(name="from")
    numbers: list[str] = []
    all: bool = False


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(_Message).decode


class LookupInvalidation:
    """This instance's card changes published to the cluster, and the others' applied here."""

    def __init__(
        self,
        settings: ClusterSettings,
        cache: CardCacheOwner,
        *,
        retry_seconds: float | None = None,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.settings = settings
        self.cache = cache
        self.instance = settings.name
        self.channel = f"{settings.key_prefix}:lookup"
        self.period = retry_seconds if retry_seconds is not None else settings.renew_seconds
        self.max_pending = max_pending
        self.redis = channel.client(settings)
        self._sub_redis = channel.client(settings, read_timeout=False)
        self.error: str | None = "not started"
        self.published = 0  # numbers sent to the other instances
        self.received = 0  # numbers dropped from this cache on another instance's word
        self.clears = 0  # whole-cache clears: (re)subscribed, or told to by an "all"
        self.skipped = 0  # messages on the channel that were not ours to read
        self._pending: set[str] = set()
        self._pending_all = False  # too much was queued: tell everyone to clear everything
        self._wake = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle ---------------------------------------------------------------------------

    def watch(self, db: Database) -> None:
        """Publish every number whose card a commit on ``db`` changed."""
        db.watch_numbers(self.changed)

    async def start(self) -> None:
        """Subscribe and start publishing; never fails (Redis may be away)."""
        self._tasks = [
            asyncio.create_task(self._listen(), name="lookup-invalidation-listen"),
            asyncio.create_task(self._flush_loop(), name="lookup-invalidation-flush"),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), self.settings.renew_seconds * 2)

    async def close(self) -> None:
        """Stop, sending what is still queued if Redis answers within ``CLOSE_SECONDS`` (else
        it is dropped: the other instances' TTL covers it)."""
        await channel.stop(self._tasks, (), "lookup invalidation")
        self._tasks = []
        if self.error is None:
            with contextlib.suppress(*REDIS_FAILURES):
                async with asyncio.timeout(channel.CLOSE_SECONDS):
                    await self._flush()
        await channel.stop((), (self.redis, self._sub_redis), "lookup invalidation")

    def health(self) -> dict[str, Any]:
        return {
            "redis_ok": self.error is None,
            "redis_error": self.error,
            "published": self.published,
            "received": self.received,
            "clears": self.clears,
            "pending": len(self._pending) + (1 if self._pending_all else 0),
            "skipped": self.skipped,
        }

    # -- publishing --------------------------------------------------------------------------

    def changed(self, e164: str) -> None:
        """The card of ``e164`` changed here (after the commit): tell the other instances."""
        if not self._pending_all:
            self._pending.add(e164)
            if len(self._pending) > self.max_pending:
                self._pending_all = True
                self._pending.clear()
        self._wake.set()

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            # Redis away: keep everything until the subscriber finds it back (it wakes us)
            if self.error is not None:
                continue
            try:
                await self._flush()
            except asyncio.CancelledError:
                raise
            except REDIS_FAILURES as e:
                self._failed(e)
            except Exception:
                log.exception("lookup invalidation: a publish failed; kept for the next one")

    async def _flush(self) -> None:
        while self._pending_all or self._pending:
            if self._pending_all:
                everything = _encode({"from": self.instance, "all": True})
                await self.redis.publish(self.channel, everything)
                self._pending_all = False
                self._pending.clear()  # covered by the clear
                continue
            chunk = [self._pending.pop() for _ in range(min(CHUNK, len(self._pending)))]
            message = _encode({"from": self.instance, "numbers": chunk})
            try:
                await self.redis.publish(self.channel, message)
            except BaseException:
                self._requeue(chunk)
                raise
            self.published += len(chunk)

    def _requeue(self, numbers: list[str]) -> None:
        for number in numbers:
            self.changed(number)

    # -- receiving ---------------------------------------------------------------------------

    async def _listen(self) -> None:
        # a publish that failed ends the subscription too (``healthy``): subscribing again is
        # how this instance finds Redis back, and then it clears its cache and publishes
        await channel.subscribe_forever(
            self._sub_redis,
            self.channel,
            resume=self._resume,
            on_message=self._on_message,
            healthy=lambda: self.error is None,
            failed=self._failed,
            ready=self._subscribed,
            period=self.period,
            log=log,
        )

    async def _resume(self) -> None:
        """Subscribed (again): whatever was published meanwhile was lost to this instance, so
        every card it holds may be stale."""
        self.cache.clear()
        self.clears += 1
        if self.error is not None and self.error != "not started":
            log.warning(
                "lookup invalidation instance=%s: Redis answers again; cache cleared, "
                "invalidations shared again",
                self.instance,
            )
        self.error = None
        self._wake.set()

    def _on_message(self, data: str) -> None:
        try:
            message = _decode(data)
        except (msgspec.DecodeError, TypeError):
            self._skip(data)
            return
        if message.sender == self.instance:
            return
        if message.all:
            self.cache.clear()
            self.clears += 1
            return
        for number in message.numbers:
            if len(number) > MAX_NUMBER:
                self._skip(number)
                continue
            self.cache.invalidate(number)
            self.received += 1

    def _skip(self, what: str) -> None:
        if not self.skipped:  # once: a stranger on the channel would otherwise flood the log
            log.warning(
                "lookup invalidation instance=%s: skipped %r on %s: not a message of ours",
                self.instance, what[:80], self.channel,
            )  # fmt: skip
        self.skipped += 1

    def _failed(self, e: BaseException) -> None:
        self.error = channel.failed(
            log, self.error, e, who=f"lookup invalidation instance={self.instance}",
            settings=self.settings, meanwhile="cards edited on other instances may show here "
            f"for up to lookup.cache_ttl until it answers (retrying every {self.period:g}s)",
        )  # fmt: skip


def for_gateway(
    cluster: ClusterSettings | None, db: Database, cache: CardCacheOwner
) -> LookupInvalidation | None:
    """The gateway's wiring: invalidations shared when instances share a store (a
    ``cluster:`` section on PostgreSQL); None otherwise (alone, or each instance on a SQLite
    file of its own, whose cache its own store keeps right). Call ``start()`` and ``close()``."""
    if cluster is None or db.engine == "sqlite":
        return None
    sharing = LookupInvalidation(cluster, cache)
    sharing.watch(db)
    return sharing
