"""The lookup chain: from a ringing number to a caller card within a time budget.

Order: normalize, cache, the embedded store (synchronous on SQLite, sub-millisecond; a round
trip on PostgreSQL), the caller directory synchronised from the CRMs (``gateway/directory/``:
same store, same speed), then the external CRM connectors live, *concurrently*, with whatever
remains of ``settings.budget_ms``. A connector that fails is logged and skipped; one that is
still running when the budget ends is cancelled and logged. Among the connectors that answered,
the one listed first in the config wins; the chain stops waiting as soon as no connector listed
before the best answer is still running. Every input gets a card: unknown numbers a card with
their E.164 form, country and line type; input that is not a number a card that says why
(``extra["invalid"]``) and is never cached.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from connectors.base import CrmConnector
from gateway.errors import ConnectorError, InvalidNumber
from gateway.lookup.cache import CardCache
from gateway.lookup.card import CallerCard
from gateway.lookup.numbers import NormalizedNumber, is_extension, normalize
from gateway.lookup.settings import LookupSettings

log = logging.getLogger("gateway.lookup")


class StoreSource(Protocol):
    """The embedded store as the chain sees it (``gateway.store.cards.StoreCardSource``)."""

    def find(self, e164: str) -> CallerCard | Awaitable[CallerCard | None] | None:
        """The card at once (SQLite: the synchronous reader, on the loop), or an awaitable
        one (PostgreSQL: a round trip to the server)."""
        ...

    def watch(self, listener: Callable[[str], None]) -> None: ...


class LookupChain:
    """Caller lookup for the pop-up, the API and the FastAGI caller-name service."""

    def __init__(
        self,
        store_source: StoreSource | None,
        connectors: Sequence[CrmConnector],
        settings: LookupSettings,
        clock: Callable[[], float] = time.monotonic,
        *,
        directory: StoreSource | None = None,
    ) -> None:
        self.store = store_source
        self.directory = directory
        self.connectors = list(connectors)
        self.settings = settings
        self.clock = clock
        self.cache = CardCache(
            ttl=settings.cache_ttl,
            negative_ttl=settings.negative_ttl,
            max_size=settings.cache_size,
            clock=clock,
        )
        # parsing costs ~30 µs, more than the store query: remember it per raw string (pure,
        # so never stale; failures are not remembered and parse again)
        self._normalize = functools.lru_cache(maxsize=max(1, settings.cache_size))(self._parse)
        for source in (store_source, directory):
            if source is not None:
                source.watch(self.invalidate)

    def _parse(self, raw: str) -> NormalizedNumber:
        return normalize(raw, self.settings.default_region)

    def invalidate(self, e164: str) -> None:
        """Forget the cached card of a number (the store calls this after changing it, and
        gateway/cluster/invalidation.py when another instance changed it)."""
        self.cache.invalidate(e164)

    def clear(self) -> None:
        """Forget every cached card (an instance that may have missed another's changes)."""
        self.cache.clear()

    async def lookup(self, raw: object) -> CallerCard:
        """The caller card for ``raw`` as the PBX or a client sent it; never raises."""
        if not isinstance(raw, str):
            return CallerCard(number="", extra={"invalid": "expected a number as text"})
        if is_extension(raw):
            ext = raw.strip()
            return CallerCard(number=ext, line_type="extension", extra={"extension": ext})
        try:
            num = self._normalize(raw)
        except InvalidNumber as e:
            digits = "".join(ch for ch in raw if ch.isdigit() or ch == "+")[:32]
            return CallerCard(number=digits, extra={"invalid": str(e)})
        cached = self.cache.get(num.e164)
        if cached is not None:
            return cached
        # the budget is real time (the loop's clock); the injected clock only ages the cache
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.budget_ms / 1000
        generation = self.cache.generation
        card = await self._from_store("store", self.store, num) or await self._from_store(
            "directory", self.directory, num
        )
        if card is None and self.connectors:
            card = await self._from_connectors(num, raw, deadline)
        if card is None:
            card = CallerCard(number=num.e164, country=num.region, line_type=num.line_type)
        # a store write during a connector wait would make this card stale: do not keep it
        if self.cache.generation == generation:
            self.cache.put(num.e164, card)
        return card

    @staticmethod
    async def _from_store(
        what: str, source: StoreSource | None, num: NormalizedNumber
    ) -> CallerCard | None:
        if source is None:
            return None
        try:
            found = source.find(num.e164)
            card = await found if inspect.isawaitable(found) else found
        except Exception:  # a broken store must not stop the pop-up; connectors may still know
            log.exception("lookup: %s failed for %s", what, num.e164)
            return None
        if card is None:
            return None
        return dataclasses.replace(
            card,
            number=num.e164,
            country=card.country or num.region,
            line_type=card.line_type or num.line_type,
        )

    async def _from_connectors(
        self, num: NormalizedNumber, raw: str, deadline: float
    ) -> CallerCard | None:
        loop = asyncio.get_running_loop()
        if deadline <= loop.time():
            log.warning("lookup: no budget left for connectors for %s", num.e164)
            return None
        tasks = {
            asyncio.ensure_future(self._ask(c, num.e164, raw)): i
            for i, c in enumerate(self.connectors)
        }
        pending = set(tasks)
        best: tuple[int, CallerCard] | None = None
        try:
            while pending:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                done, pending = await asyncio.wait(
                    pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    break
                for t in done:
                    card = t.result()
                    if card is not None and (best is None or tasks[t] < best[0]):
                        best = (tasks[t], card)
                if best is not None and all(tasks[t] > best[0] for t in pending):
                    break  # nobody still running outranks the best answer
        finally:
            for t in pending:
                idx = tasks[t]
                if best is None or idx < best[0]:
                    log.warning(
                        "lookup: connector %s gave no answer for %s within %d ms; cut off",
                        self.connectors[idx].name,
                        num.e164,
                        self.settings.budget_ms,
                    )
                t.cancel()
        if best is None:
            return None
        idx, card = best
        name = self.connectors[idx].name
        return dataclasses.replace(
            card,
            number=num.e164,
            source=card.source if card.source not in ("", "store") else name,
            country=card.country or num.region,
            line_type=card.line_type or num.line_type,
        )

    @staticmethod
    async def _ask(connector: CrmConnector, e164: str, raw: str) -> CallerCard | None:
        try:
            card = await connector.lookup(e164, raw)
        except ConnectorError as e:
            log.warning("lookup: connector %s failed for %s: %s", connector.name, e164, e)
            return None
        except Exception:  # a buggy connector is logged with its traceback, never fatal
            log.exception("lookup: connector %s crashed for %s", connector.name, e164)
            return None
        if card is not None and not isinstance(card, CallerCard):
            log.warning("lookup: connector %s returned %s, not a card", connector.name, type(card))
            return None
        return card
