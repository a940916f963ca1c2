"""The owner loop: each PBX's AMI link runs only in the instance that holds its lease.

A standby asks every ``renew_seconds`` whether the lease is free (and again just as a lease it
saw running out expires) and, when it takes it, starts the link; the link's connect path reads
the live calls (CoreShowChannels) and the tracker joins them in progress, so a call that was
live at the takeover is logged once, by its new owner, when it ends. The holder renews every
``renew_seconds`` and stops its link at once:

- when the lease was lost (another instance holds it: this one was too slow to renew);
- when no renewal has succeeded for ``lease_seconds`` less half a second (at most
  ``renew_seconds``; Redis unreachable): Redis frees the lease ``lease_seconds`` after the last
  renewal this instance sent, so the link is down before any other instance can take the PBX;
- when the link itself has not been logged in for ``link_grace_seconds`` (this instance cannot
  reach the PBX): it then releases the lease so an instance that can reach it takes over, and
  waits ``lease_seconds`` before competing again.

On each of these the tracker's open calls are forgotten, never logged: they belong to the next
owner now, who finds them on the PBX. Redis errors never end the loop: they are logged once
per outage, shown in ``/health``, and the loop keeps trying.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.ami.events import LinkStatus
from gateway.ami.link import AmiLink
from gateway.cluster.channel import client
from gateway.cluster.lease import Holder, LeaseState, PbxLease
from gateway.cluster.settings import ClusterSettings, mask_url

log = logging.getLogger("gateway.cluster")

T = TypeVar("T")
# what a Redis round trip may raise when Redis is away, slow or refusing
_REDIS_FAILURES = (RedisError, OSError, TimeoutError)
STOP_MARGIN_SECONDS = 0.5  # an owner stops reading this long before its lease can expire


@dataclass(frozen=True, slots=True)
class OwnerHealth:
    """What ``/health`` says about one PBX's lease, as this instance last saw it."""

    pbx: str
    owner: str | None  # the holding instance's name; None: free, or not known
    this_instance_owns: bool
    lease_until: float | None  # epoch seconds (the gateway's clock) the lease runs to
    token: int | None  # the holder's fencing token
    redis_error: str | None  # the last Redis failure, while it lasts
    takeovers: int  # how often this instance took the PBX


class LinkOwner:
    """Runs one PBX's AmiLink only while this instance holds that PBX's lease."""

    def __init__(
        self,
        lease: PbxLease,
        link: AmiLink,
        settings: ClusterSettings,
        *,
        on_lost: Callable[[], None],
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lease = lease
        self.link = link
        self.settings = settings
        self.on_lost = on_lost  # forget the tracker's open calls: the next owner has them
        self.clock = clock
        self.monotonic = monotonic
        self.owns = False
        self.holder: Holder | None = None
        self.lease_until: float | None = None
        self.redis_error: str | None = None
        self.takeovers = 0
        self._renewed_at = 0.0  # monotonic: when the last successful acquire/renew was SENT
        self._down_since: float | None = None  # monotonic: since when the owned link is down
        self._quiet_until = 0.0  # monotonic: no acquiring before (after giving the PBX away)
        self._known_until = 0.0  # monotonic: the holder seen last is known until then
        self._seen_other = False  # another instance was seen holding this PBX
        self._reading = False  # what the link reads may reach the bus (see _lease_valid)
        self._task: asyncio.Task[None] | None = None
        link.lease_check = self._lease_valid

    @property
    def pbx(self) -> str:
        return self.lease.pbx

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"pbx-lease-{self.pbx}")

    async def close(self, *, release: bool = True) -> None:
        """Stop competing; stop the link if held. ``release=False`` leaves the lease to expire
        as a crash would (another instance then waits out ``lease_seconds``)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.owns:
            why = "this instance is stopping" + ("" if release else " (lease left to expire)")
            await self._give_up(why, release=release, logoff=release, level=logging.INFO)

    def health(self) -> OwnerHealth:
        # a holder seen is only known until the end of the lease it had then
        holder = self.holder if self._known_until > self.monotonic() else None
        until = self.lease_until
        return OwnerHealth(
            pbx=self.pbx,
            owner=holder.instance if holder else None,
            this_instance_owns=self.owns,
            lease_until=None if holder is None or until is None else round(until, 3),
            token=holder.token if holder else None,
            redis_error=self.redis_error,
            takeovers=self.takeovers,
        )

    # -- the loop ----------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                await (self._hold() if self.owns else self._compete())
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the loop die: the PBX would have no owner here
                log.exception("pbx=%s lease loop failed; going on", self.pbx)
            await asyncio.sleep(self._wait())

    def _wait(self) -> float:
        renew = self.settings.renew_seconds
        if self.owns:  # wake up in time to stop the link before the lease can run out
            return max(0.0, min(renew, self._deadline() - self.monotonic()))
        # a standby that saw the lease about to run out asks again just after it does, not up
        # to renew_seconds later: a dead holder's PBX is taken within lease_seconds
        left = self._known_until - self.monotonic()
        return left + 0.005 if 0 < left < renew else renew

    def _deadline(self) -> float:
        # Redis frees the lease no sooner than lease_seconds after the renewal was sent, and
        # every read past this point is dropped (``_lease_valid``): the margin only covers
        # clocks and timers. Not a whole renew_seconds: a loop busy for ~3 s (5,000 tabs
        # reconnecting at once) lost its PBX with the 2.75 s that left by default
        s = self.settings
        return self._renewed_at + s.lease_seconds - min(s.renew_seconds, STOP_MARGIN_SECONDS)

    def _lease_valid(self) -> bool:
        """Read by the link on every read: a process frozen past its deadline (a long pause,
        a suspended VM) must not log what it reads on waking; the loop stops the link next."""
        return self._reading and self.monotonic() < self._deadline()

    async def _compete(self) -> None:
        sent = self.monotonic()
        if sent < self._quiet_until:
            return
        state = await self._redis(self.lease.acquire(), self.settings.renew_seconds)
        if state is None:
            return
        self._observe(state)
        if not state.held:
            return
        self.owns = self._reading = True
        self.takeovers += 1
        self._renewed_at = sent
        self._down_since = sent  # counts towards the grace until the link is logged in
        token = state.holder.token if state.holder else None
        # taking a PBX over from another instance is news; the first start of a cluster is not
        level = logging.WARNING if self._seen_other else logging.INFO
        log.log(
            level, "pbx=%s this instance (%s) owns the AMI link now, token=%s; connecting",
            self.pbx, self.lease.instance, token,
        )  # fmt: skip
        self.link.start()

    async def _hold(self) -> None:
        sent = self.monotonic()
        deadline = self._deadline()
        if sent >= deadline:
            await self._overdue()
            return
        # an answer that comes after the deadline is worth nothing: the link must be down then
        timeout = min(self.settings.renew_seconds, deadline - sent)
        state = await self._redis(self.lease.renew(), timeout)
        if state is None:
            if self.monotonic() >= deadline:
                await self._overdue()
            return
        self._observe(state)
        if not state.held:
            who = state.holder.instance if state.holder else "nobody (it expired)"
            await self._give_up(f"lease lost; held by {who}", release=False)
            return
        self._renewed_at = sent
        now = self.monotonic()
        if self.link.status is LinkStatus.READY:
            self._down_since = None
        elif self._down_since is None:
            self._down_since = now
        elif now - self._down_since >= self.settings.link_grace_seconds:
            await self._give_up(
                f"PBX not reachable from here for {now - self._down_since:.0f}s "
                f"({self.link.last_error or self.link.status.value}); another instance may "
                "take it",
                release=True,
            )
            self._quiet_until = self.monotonic() + self.settings.lease_seconds

    async def _overdue(self) -> None:
        redis = f" (Redis: {self.redis_error})" if self.redis_error else ""
        await self._give_up(
            f"lease not renewed for {self.monotonic() - self._renewed_at:.1f}s{redis}; "
            "it expires on its own",
            release=False,
        )

    async def _give_up(
        self, why: str, *, release: bool, logoff: bool = False, level: int = logging.WARNING
    ) -> None:
        # nothing read from here on reaches the bus, except on a planned stop: the lease is
        # still this instance's until released below, and the PBX answers the Logoff
        self._reading = logoff
        await self.link.stop(logoff=logoff)
        self._reading = self.owns = False
        self._down_since = None
        self._known_until = 0.0  # who holds the lease now is not known here until asked again
        self.on_lost()
        log.log(level, "pbx=%s this instance (%s) stopped its AMI link: %s", self.pbx,
                self.lease.instance, why)  # fmt: skip
        if release:
            await self._redis(self.lease.release(), self.settings.renew_seconds)
        else:
            self.lease.token = None  # whatever Redis holds now, it is not renewed from here

    async def _redis(self, call: Coroutine[Any, Any, T], timeout: float) -> T | None:
        """One round trip with a deadline; None when Redis failed (logged once per outage)."""
        try:
            result = await asyncio.wait_for(call, max(0.01, timeout))
        except _REDIS_FAILURES as e:
            why = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            if self.redis_error is None:
                log.error(
                    "pbx=%s Redis at %s failed: %s; retrying every %gs",
                    self.pbx, mask_url(self.settings.redis_url), why, self.settings.renew_seconds,
                )  # fmt: skip
            self.redis_error = why
            return None
        if self.redis_error is not None:
            log.warning("pbx=%s Redis answers again", self.pbx)
            self.redis_error = None
        return result

    def _observe(self, state: LeaseState) -> None:
        before = self.holder.instance if self.holder else None
        self.holder = state.holder
        ttl = 0.0 if state.holder is None else state.holder.ttl
        self.lease_until = None if state.holder is None else self.clock() + ttl
        self._known_until = self.monotonic() + ttl
        after = state.holder.instance if state.holder else None
        if not state.held and after is not None:
            self._seen_other = True
        if after != before and not state.held:
            log.info("pbx=%s lease holder: %s", self.pbx, after or "nobody")


class Cluster:
    """This instance's part in a cluster: a Redis client and one LinkOwner per PBX."""

    def __init__(
        self,
        settings: ClusterSettings,
        links: Mapping[str, AmiLink],
        on_lost: Callable[[str], None],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.instance = settings.name
        # no retries inside the client: the loop retries, and its deadlines stay predictable
        self.redis: Redis = client(settings)
        self.owners = {
            name: LinkOwner(
                PbxLease(
                    self.redis,
                    name,
                    self.instance,
                    lease_seconds=settings.lease_seconds,
                    prefix=settings.key_prefix,
                ),
                link,
                settings,
                on_lost=functools.partial(on_lost, name),
                clock=clock,
            )
            for name, link in links.items()
        }

    def start(self) -> None:
        log.info(
            "cluster instance=%s redis=%s lease=%gs renew=%gs pbx=%s",
            self.instance, mask_url(self.settings.redis_url), self.settings.lease_seconds,
            self.settings.renew_seconds, ",".join(self.owners) or "-",
        )  # fmt: skip
        for owner in self.owners.values():
            owner.start()

    async def close(self, *, release: bool = True) -> None:
        """Stop every link this instance holds and (``release``) hand the leases back, so
        another instance takes over within ``renew_seconds`` instead of ``lease_seconds``."""
        for owner in self.owners.values():
            await owner.close(release=release)
        with contextlib.suppress(*_REDIS_FAILURES):
            await self.redis.aclose()

    def owns(self, pbx: str) -> bool:
        owner = self.owners.get(pbx)
        return owner is not None and owner.owns

    def health(self) -> dict[str, OwnerHealth]:
        return {name: owner.health() for name, owner in self.owners.items()}

    def summary(self) -> dict[str, Any]:
        """This instance in /health: its name, its Redis (password masked) and whether the
        last round trip of every PBX's loop reached it."""
        errors = sorted({o.redis_error for o in self.owners.values() if o.redis_error})
        return {
            "instance": self.instance,
            "redis": mask_url(self.settings.redis_url),
            "redis_ok": not errors,
            "redis_error": errors[0] if errors else None,
            "lease_seconds": self.settings.lease_seconds,
            "renew_seconds": self.settings.renew_seconds,
        }
