"""What the cluster's Redis users share: their clients, and one subscriber loop that survives
Redis going away (gateway/cluster/fanout.py for pop-ups, gateway/cluster/board.py for the
board's seats).

The loop subscribes, lets its owner catch up on what it may have missed (``resume``), then
hands every message over until it fails, or until its owner says Redis failed elsewhere
(``healthy`` turns false: a publish that failed must make it subscribe again, because that is
how an instance finds Redis back and catches up). Every failure is reported to the owner,
which logs it once per outage; it then waits ``period`` and subscribes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from gateway.cluster.settings import ClusterSettings, mask_url

# what a Redis round trip may raise when Redis is away, slow or refusing
REDIS_FAILURES = (RedisError, OSError, TimeoutError)
CLOSE_SECONDS = 2.0  # how long a stop waits for a loop (or a pubsub close) to end


def client(settings: ClusterSettings, *, read_timeout: bool = True) -> Redis:
    """A client without retries of its own (the loops retry, so their deadlines stay
    predictable), timing out after ``renew_seconds``; a subscriber (``read_timeout=False``)
    waits for messages as long as there are none."""
    timeout = settings.renew_seconds
    return Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_timeout=timeout if read_timeout else None,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


def describe(e: BaseException) -> str:
    """A failure as one log/``/health`` phrase: ``ConnectionError: ...``."""
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def failed(
    log: logging.Logger,
    error: str | None,
    e: BaseException,
    *,
    who: str,
    settings: ClusterSettings,
    meanwhile: str,
) -> str:
    """The error a Redis user keeps after ``e`` (shown in ``/health``), logged once per outage
    ("not started" is no outage yet): ``<who>: Redis at <url> failed: <why>; <meanwhile>``."""
    why = describe(e)
    if error is None or error == "not started":
        log.error(
            "%s: Redis at %s failed: %s; %s", who, mask_url(settings.redis_url), why, meanwhile
        )
    return why


async def subscribe_forever(
    redis: Redis,
    channel: str,
    *,
    resume: Callable[[], Awaitable[None]],
    on_message: Callable[[str], None],
    healthy: Callable[[], bool],
    failed: Callable[[BaseException], None],
    ready: asyncio.Event,
    period: float,
    log: logging.Logger,
) -> None:
    """Subscribe to ``channel`` and deliver its messages, again and again (see the module)."""
    while True:
        pubsub = redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(channel)
            await resume()
            ready.set()
            while healthy():
                msg = await pubsub.get_message(timeout=period)
                if msg is not None and msg.get("type") == "message":
                    on_message(msg["data"])
        except asyncio.CancelledError:
            raise
        except REDIS_FAILURES as e:
            failed(e)
        except Exception:
            log.exception("the subscriber of %s failed; subscribing again", channel)
        finally:
            with contextlib.suppress(Exception):
                # bounded: the close of a connection that went away mid-read may never return
                async with asyncio.timeout(CLOSE_SECONDS):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
        ready.set()  # the first failure counts as ready too: the caller must not wait on
        await asyncio.sleep(period)


async def stop(tasks: Iterable[asyncio.Task[None]], clients: Iterable[Redis], what: str) -> None:
    """Cancel the loops and close the clients; waits at most ``CLOSE_SECONDS`` for the loops
    (a stop must not hang on a Redis connection that went away mid-read)."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    if tasks:
        _, stuck = await asyncio.wait(tasks, timeout=CLOSE_SECONDS)
        if stuck:
            logging.getLogger("gateway.cluster").warning(
                "%s: %d task(s) did not stop within %gs", what, len(stuck), CLOSE_SECONDS
            )
    for redis in clients:
        with contextlib.suppress(*REDIS_FAILURES):
            await redis.aclose()
