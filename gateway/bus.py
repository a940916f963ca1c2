"""In-process typed pub/sub: the one place components meet instead of calling each other.

Handlers are synchronous and must be quick (they run inside the AMI read path). A component
with slow work subscribes with ``queue()`` and drains an ``asyncio.Queue`` in its own task.
A handler that raises is logged and unsubscribed from nothing: the next event still reaches it
and every other handler, so one bug never stalls call tracking.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger("gateway.bus")

E = TypeVar("E")
Handler = Callable[[Any], None]


class Bus:
    """Dispatches each published object to the handlers subscribed to its exact type."""

    def __init__(self) -> None:
        self._handlers: dict[type, list[Handler]] = defaultdict(list)
        self.errors = 0

    def subscribe(self, event_type: type[E], handler: Callable[[E], None]) -> Callable[[], None]:
        """Call ``handler(event)`` for every published ``event_type``; returns an unsubscriber."""
        self._handlers[event_type].append(handler)

        def unsubscribe() -> None:
            handlers = self._handlers.get(event_type, [])
            if handler in handlers:
                handlers.remove(handler)

        return unsubscribe

    def queue(self, *event_types: type, maxsize: int = 10000) -> asyncio.Queue[Any]:
        """An asyncio queue fed with every event of these types; full queues drop the oldest."""
        q: asyncio.Queue[Any] = asyncio.Queue(maxsize)

        def put(event: Any) -> None:
            if q.full():
                q.get_nowait()
                log.warning("bus queue full, dropped oldest event for %s", event_types)
            q.put_nowait(event)

        for t in event_types:
            self.subscribe(t, put)
        return q

    def publish(self, event: object) -> None:
        handlers = self._handlers.get(type(event))
        if not handlers:
            return
        for handler in handlers:
            try:
                handler(event)
            except Exception:
                self.errors += 1
                log.exception("bus handler %r failed on %s", handler, type(event).__name__)
