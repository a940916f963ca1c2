"""A standby's witness of a PBX: its own AMI session and tracker, acting on nothing.

When the owner of a PBX dies, a few seconds pass before another instance holds the lease and
reads the PBX (``lease_seconds``, then connecting). A call that ends in that gap ended on no
owner's link: the new owner's resync finds only the calls still live. So while an instance
stands by for a PBX, a witness follows the PBX's calls on a session of its own (events only:
it sends no action but the login and the resync's lists) and keeps the calls that ended in
the last ``KEEP_SECONDS``. The instance that takes the PBX over logs those: the shared store's
call log keeps each call id once, so a call the old owner logged is not logged again, and one
it never saw end is. It needs a store the instances share (``store.url``); with a SQLite
store per instance the calls would be logged in two stores.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from gateway.ami.events import AmiEvent, ResyncSnapshot
from gateway.ami.frames import EventFilter
from gateway.ami.link import AmiLink
from gateway.bus import Bus
from gateway.calls.events import CallEnded
from gateway.calls.model import CallRecord
from gateway.calls.settings import TrackingSettings
from gateway.calls.tracker import CallTracker
from gateway.config import PbxSettings

log = logging.getLogger("gateway.cluster")

KEEP_SECONDS = 120.0  # far longer than any takeover gap (lease, then connecting)
KEEP_CALLS = 20_000  # and never more than this many (a very busy PBX in two minutes)


@dataclass(frozen=True, slots=True)
class WitnessHealth:
    """What ``/health`` shows of a PBX's witness on this instance."""

    watching: bool
    logged_in: bool
    ended_kept: int
    handed_over: int  # calls handed to this instance's call log at its takeovers


class Witness:
    """Follows one PBX's calls while this instance stands by; ``take_ended()`` at takeover."""

    def __init__(
        self,
        pbx: PbxSettings,
        tracking: TrackingSettings,
        *,
        event_filter: EventFilter | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.pbx = pbx.name
        self.tracking = tracking
        self.clock = clock
        self.bus = Bus()  # its own: nothing it sees reaches the gateway's bus
        # no QueueStatus at connect: the witness counts nothing for the wallboard
        self.link = AmiLink(
            msgspec.structs.replace(pbx, queues=False, record_to=None),
            self.bus,
            event_filter=event_filter,
            clock=clock,
        )
        self.tracker = CallTracker(tracking, pbx=pbx.name)
        self._ended: collections.deque[tuple[float, CallRecord]] = collections.deque(
            maxlen=KEEP_CALLS
        )
        self.watching = False
        self.handed_over = 0
        self._pending: asyncio.Task[None] | None = None
        self.bus.subscribe(AmiEvent, self._on_event)
        self.bus.subscribe(ResyncSnapshot, self._on_resync)

    def start(self) -> None:
        """Watch (again) from now, with a fresh tracker: its resync joins the live calls."""
        if self.watching:
            return
        self.watching = True
        self.tracker = CallTracker(self.tracking, pbx=self.pbx)
        self._switch(self.link.start)

    def hand_over(self) -> list[CallRecord]:
        """This instance reads the PBX itself now: the calls that ended lately (``take_ended``),
        and the witness stops watching."""
        calls = self.take_ended()
        self.watching = False
        self._switch(None)
        return calls

    async def stop(self) -> None:
        self.watching = False
        if self._pending is not None:
            await self._pending
        await self.link.stop()

    def _switch(self, then: Callable[[], None] | None) -> None:
        # the link stops before it starts again, in the order asked, off the caller's path
        # (a lease callback or the bus, which cannot wait)
        previous = self._pending

        async def run() -> None:
            if previous is not None:
                await previous
            await self.link.stop()
            if then is not None and self.watching:
                then()

        self._pending = asyncio.create_task(run(), name=f"witness-{self.pbx}")

    def take_ended(self) -> list[CallRecord]:
        """The calls that ended in the last KEEP_SECONDS, oldest first; they are handed over
        (the instance's call log keeps each once) and forgotten here."""
        self._forget_old()
        calls = [record for _, record in self._ended]
        self._ended.clear()
        self.handed_over += len(calls)
        if calls:
            log.info(
                "pbx=%s witness: %d call(s) that ended lately handed over", self.pbx, len(calls)
            )
        return calls

    def health(self) -> WitnessHealth:
        self._forget_old()
        return WitnessHealth(
            watching=self.watching,
            logged_in=self.watching and self.link.health().logged_in,
            ended_kept=len(self._ended),
            handed_over=self.handed_over,
        )

    # -- what the session reads ----------------------------------------------------------------

    def _on_event(self, event: AmiEvent) -> None:
        for domain_event in self.tracker.feed(event.frame, event.received_at):
            if isinstance(domain_event, CallEnded):
                self._on_ended(domain_event)

    def _on_resync(self, snap: ResyncSnapshot) -> None:
        for domain_event in self.tracker.resync(snap.channels, snap.at):
            if isinstance(domain_event, CallEnded):
                self._on_ended(domain_event)

    def _on_ended(self, event: CallEnded) -> None:
        self._ended.append((self.clock(), event.record))
        self._forget_old()

    def _forget_old(self) -> None:
        horizon = self.clock() - KEEP_SECONDS
        while self._ended and self._ended[0][0] < horizon:
            self._ended.popleft()
