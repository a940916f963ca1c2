"""A small TTL cache of caller cards: hits live ``ttl`` seconds, misses a shorter ``negative_ttl``.

The clock is injected so tests move time by hand. Size is bounded: the least recently used
entry goes first (an OrderedDict keeps that order for free).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from gateway.lookup.card import CallerCard


@dataclass(frozen=True, slots=True)
class CacheStats:
    hits: int
    misses: int
    size: int


class CardCache:
    """E.164 -> CallerCard with per-entry expiry; unknown cards count as negative entries."""

    def __init__(
        self,
        *,
        ttl: float,
        negative_ttl: float,
        max_size: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.max_size = max(1, max_size)
        self.clock = clock
        self._entries: OrderedDict[str, tuple[float, CallerCard]] = OrderedDict()
        self.generation = 0  # bumped on every invalidation; see LookupChain
        self.hits = 0
        self.misses = 0

    def get(self, e164: str) -> CallerCard | None:
        entry = self._entries.get(e164)
        if entry is None:
            self.misses += 1
            return None
        expires, card = entry
        if self.clock() >= expires:
            del self._entries[e164]
            self.misses += 1
            return None
        self._entries.move_to_end(e164)
        self.hits += 1
        return card

    def put(self, e164: str, card: CallerCard) -> None:
        ttl = self.ttl if card.known else self.negative_ttl
        if ttl <= 0:
            return
        self._entries[e164] = (self.clock() + ttl, card)
        self._entries.move_to_end(e164)
        while len(self._entries) > self.max_size:
            self._entries.popitem(last=False)

    def invalidate(self, e164: str) -> None:
        self.generation += 1
        self._entries.pop(e164, None)

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()

    def stats(self) -> CacheStats:
        return CacheStats(self.hits, self.misses, len(self._entries))

    def __len__(self) -> int:
        return len(self._entries)
