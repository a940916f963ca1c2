"""Faults every stand-in CRM can inject: outages, 500s, hangs, and a log of what it received."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Faults:
    """Switches a test flips while the stand-in runs."""

    down: bool = False  # every request gets HTTP 500 (the CRM is down)
    fail_next: int = 0  # the next N requests get HTTP 500
    hang: bool = False  # requests never get an answer (until the server stops)
    latency: float = 0.0  # seconds added before every answer (benchmarks, budget tests)
    requests: list[str] = field(default_factory=list)  # one entry per request: method/operation
    received: int = 0  # every request that reached the server, answered or not

    def middleware(self) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
        @web.middleware
        async def inject(request: web.Request, handler: Handler) -> web.StreamResponse:
            self.received += 1
            if self.hang:
                await asyncio.Event().wait()  # cancelled when the test server shuts down
            if self.latency > 0:
                await asyncio.sleep(self.latency)
            if self.down:
                return web.Response(status=500, text="Internal Server Error")
            if self.fail_next > 0:
                self.fail_next -= 1
                return web.Response(status=500, text="Internal Server Error")
            return await handler(request)

        return inject
