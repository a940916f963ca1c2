"""Time for the simulated PBX: the wall clock for the demo, a manual clock for tests.

The PBX never reads the wall clock itself: it asks its ``SimClock`` for ``now()`` (the epoch
seconds stamped into events) and schedules emissions with ``call_at``. With ``ManualClock``
a test moves time by hand and every event due fires deterministically, with no sleeps.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol

DEFAULT_EPOCH = 1795346324.0  # the captures' first second; manual clocks start here


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class SimClock(Protocol):
    """Epoch time plus scheduling: the only notion of time the simulated PBX has."""

    def now(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle: ...


class RealClock:
    """Wall-clock time; callbacks run on the running asyncio loop at their epoch time."""

    def now(self) -> float:
        return time.time()

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        loop = asyncio.get_running_loop()
        return loop.call_later(max(0.0, when - time.time()), callback)


class _ManualHandle:
    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """Time that moves only when told to: ``advance(s)`` runs every callback due, in order."""

    def __init__(self, start: float = DEFAULT_EPOCH) -> None:
        self._now = start
        self._heap: list[tuple[float, int, _ManualHandle, Callable[[], None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        handle = _ManualHandle()
        heapq.heappush(self._heap, (when, next(self._seq), handle, callback))
        return handle

    def advance(self, seconds: float) -> int:
        """Move time forward by ``seconds``; return how many callbacks ran."""
        target = self._now + max(0.0, seconds)
        ran = 0
        while self._heap and self._heap[0][0] <= target:
            when, _, handle, callback = heapq.heappop(self._heap)
            if handle.cancelled:
                continue
            self._now = max(self._now, when)
            callback()
            ran += 1
        self._now = target
        return ran

    def pending(self) -> int:
        return sum(1 for *_, h, _cb in self._heap if not h.cancelled)
