"""Sliding-window limits on attempts per key (sign-ins per user+address, originations per agent).

Pure: the caller passes the time, so tests drive it without sleeping.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable


class SlidingWindowLimiter:
    """At most ``limit`` events per ``window`` seconds for each key; forgets idle keys."""

    def __init__(self, limit: int, window: float, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._events: dict[Hashable, deque[float]] = {}

    def _live(self, key: Hashable, now: float) -> deque[float]:
        events = self._events.get(key)
        if events is None:
            if len(self._events) >= self.max_keys:
                self._prune(now)
            events = self._events[key] = deque()
        while events and events[0] <= now - self.window:
            events.popleft()
        return events

    def retry_after(self, key: Hashable, now: float) -> float:
        """Seconds until ``key`` may try again (0 when it may now)."""
        events = self._live(key, now)
        if len(events) < self.limit:
            return 0.0
        return max(0.0, events[0] + self.window - now)

    def hit(self, key: Hashable, now: float) -> None:
        self._live(key, now).append(now)

    def take(self, key: Hashable, now: float) -> float:
        """Count an attempt if allowed: 0 when it was, else the seconds to wait (not counted)."""
        wait = self.retry_after(key, now)
        if wait == 0:
            self._events[key].append(now)
        return wait

    def reset(self, key: Hashable) -> None:
        self._events.pop(key, None)

    def _prune(self, now: float) -> None:
        for key in [k for k, ev in self._events.items() if not ev or ev[-1] <= now - self.window]:
            del self._events[key]
