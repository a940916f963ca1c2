"""Stand-in for an in-house system behind the generic HTTP connector.

It is the other side of the contract the connector documents in docs/connectors/generic_http.md:
``GET /api/lookup?number=<e164>`` answers ``{"data": {...}}`` or 404; ``POST /api/calls``
takes the call record JSON, checks ``X-Centralita-Signature`` (HMAC-SHA256 of the raw body)
when it has a secret, and keeps one copy per ``Idempotency-Key``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.faults import Faults


@dataclass
class GenericCrm:
    secret: str = ""
    token: str = "s3cret-token"
    people: dict[str, dict[str, Any]] = field(default_factory=dict)  # e164 -> person
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)  # idempotency key -> record
    posts: int = 0  # every accepted POST, duplicates included
    posts_by_key: dict[str, int] = field(default_factory=dict)  # idempotency key -> POSTs
    bad_signatures: int = 0
    faults: Faults = field(default_factory=Faults)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)  # set on every new call

    async def wait_for_calls(self, n: int) -> None:
        """Return once ``n`` distinct calls have been stored."""
        while len(self.calls) < n:
            self.arrived.clear()
            await self.arrived.wait()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.faults.middleware()])
        app.router.add_get("/api/lookup", self.lookup)
        app.router.add_post("/api/calls", self.log_call)
        return app

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    async def lookup(self, request: web.Request) -> web.Response:
        self.faults.requests.append("lookup")
        if not self._authorized(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        # like PHP's $_GET, the last of repeated parameters wins: a smuggled one would show
        numbers = request.query.getall("number", [""])
        person = self.people.get(numbers[-1])
        if person is None:
            return web.json_response({"error": "not found"}, status=404)
        return web.json_response({"data": person})

    async def log_call(self, request: web.Request) -> web.Response:
        self.faults.requests.append("log_call")
        if not self._authorized(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        body = await request.read()
        if self.secret:
            want = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
            got = request.headers.get("X-Centralita-Signature", "")
            if (
                not hmac.compare_digest(want, got)
                or "X-Centralita-Timestamp" not in request.headers
            ):
                self.bad_signatures += 1
                return web.json_response({"error": "bad signature"}, status=401)
        try:
            record = json.loads(body)
        except ValueError:
            return web.json_response({"error": "not JSON"}, status=400)
        if not isinstance(record, dict) or "id" not in record:
            return web.json_response({"error": "missing id"}, status=422)
        self.posts += 1
        key = request.headers.get("Idempotency-Key", str(record["id"]))
        self.posts_by_key[key] = self.posts_by_key.get(key, 0) + 1
        if key in self.calls:
            return web.json_response({"status": "duplicate"}, status=200)
        self.calls[key] = record
        self.arrived.set()
        return web.json_response({"status": "created"}, status=201)
