"""Outgoing webhooks: lead and call events POSTed as signed JSON to other systems (``webhooks:``).

Each configured target names the events it wants (``lead.created``, ``lead.status_changed``,
``lead.unsubscribed``, ``lead.converted``, ``call.ended``) and receives only those. An event
becomes one JSON document::

    {"id": "<event id>", "type": "lead.status_changed", "at": <epoch seconds>, "data": {...}}

POSTed with ``Idempotency-Key: <event id>`` and ``X-Centralita-Event: <type>``; with a
``secret``, also ``X-Centralita-Timestamp`` (unix seconds) and ``X-Centralita-Signature:
sha256=<hex>``, the HMAC-SHA256 of the exact body bytes (as ``connectors/generic_http.py``
signs call records, so one receiver checks both the same way).

Delivery goes through the write-back outbox (``gateway/writeback/outbox.py``): every event is
written to ``crm_outbox`` under the target's queue name ``webhook:<name>`` before any attempt,
delivered oldest first and retried with capped exponential backoff; a target that is down holds
its own queue only; one that keeps refusing an event (HTTP 4xx other than 401/403/408/429) gets
it parked after a few attempts (``/api/v1/outbox/retry`` re-drives parked rows). Rows left by a
previous run are delivered after a restart, each with its first event id, so a receiver that
honours ``Idempotency-Key`` sees each event once.

The bus handlers only build the document and queue it in memory; a writer task stores it
(``flush`` waits for that), a burst at a time: what has queued up meanwhile (a campaign step
changing thousands of statuses) is stored in one transaction per :data:`STORE_BATCH` events,
not one commit per event. ``lead.created`` carries every lead one write created (one for the
API or the panel, up to 500 per document for a CSV import), so an import of 10,000 leads is 20
POSTs, not 10,000. ``close`` stores whatever is still queued before it returns, so a
clean stop loses nothing; a crash can lose the events of the last few milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from connectors.base import ConnectorHealth, RecordRejected
from connectors.generic_http import sign
from connectors.transport import HttpTransport
from gateway.bus import Bus
from gateway.calls.events import CallEnded
from gateway.campaigns.settings import WebhookEvent, WebhookSettings
from gateway.errors import ConnectorError
from gateway.lookup.card import CallerCard
from gateway.store.db import Database
from gateway.store.events import (
    LeadConverted,
    LeadsCreated,
    LeadStatusChanged,
    LeadUnsubscribed,
)
from gateway.writeback.outbox import Backoff, Outbox, OutboxStats

log = logging.getLogger("gateway.webhooks")

QUEUE_PREFIX = "webhook:"  # crm_outbox.connector of a target: never a CRM connector's name
USER_AGENT = "Centralita-Webhooks/1"
STORE_BATCH = 1000  # events stored per transaction when many wait


def _event_data(
    e: LeadsCreated | LeadStatusChanged | LeadUnsubscribed | LeadConverted,
) -> dict[str, Any]:
    return dataclasses.asdict(e)  # the lead events' fields are the documented payload


def _call_ended(e: CallEnded) -> dict[str, Any]:
    record = e.record.to_json()
    record["id"] = e.record.log_id
    return record


class WebhookTarget:
    """One receiver, shaped like a CRM connector so the outbox can deliver to it."""

    def __init__(self, settings: WebhookSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.name = QUEUE_PREFIX + settings.name
        self._clock = clock
        self._http = HttpTransport(settings.url)
        self._last_success: float | None = None
        self._last_error: str | None = None
        self._last_error_at: float | None = None

    def wants(self, event_type: str) -> bool:
        return event_type in self.settings.events

    async def start(self) -> None:
        await self._http.start()

    async def close(self) -> None:
        await self._http.close()

    async def lookup(self, e164: str, raw: str) -> CallerCard | None:
        return None  # a webhook only receives

    def body_and_headers(self, document: dict[str, object]) -> tuple[bytes, dict[str, str]]:
        """The exact bytes POSTed and the headers that go with them (signed when a secret
        is set)."""
        body = msgspec.json.encode(document)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Idempotency-Key": str(document.get("id", "")),
            "X-Centralita-Event": str(document.get("type", "")),
        }
        if self.settings.secret:
            headers["X-Centralita-Timestamp"] = str(int(self._clock()))
            headers["X-Centralita-Signature"] = sign(self.settings.secret, body)
        return body, headers

    async def log_call(self, record: dict[str, object]) -> None:
        """POST one stored event document (the outbox calls this; the name is its protocol's)."""
        body, headers = self.body_and_headers(record)
        try:
            status, _ = await self._http.request(
                "POST", self.settings.url, timeout=self.settings.timeout, data=body,
                headers=headers,
            )  # fmt: skip
            if status == 409 or 200 <= status < 300:  # 409: the receiver has it already
                self._last_success = self._clock()
                return
            if 400 <= status < 500 and status not in (401, 403, 408, 429):
                raise RecordRejected(f"{self._http.host}: event refused, HTTP {status}")
            raise ConnectorError(f"{self._http.host}: HTTP {status}")
        except ConnectorError as e:
            self._last_error, self._last_error_at = str(e), self._clock()
            raise

    def health(self) -> ConnectorHealth:
        return ConnectorHealth(self.name, self._last_success, self._last_error, self._last_error_at)


class Webhooks:
    """Subscribes to the lead and call events on the bus and delivers them to the targets."""

    def __init__(
        self,
        db: Database,
        bus: Bus,
        settings: Sequence[WebhookSettings],
        clock: Callable[[], float] = time.time,
        *,
        backoff: Backoff | None = None,
        poll_interval: float = 30.0,
    ) -> None:
        self._clock = clock
        self.targets = [WebhookTarget(s, clock) for s in settings]
        self._outboxes = {
            t.name: Outbox(
                db.conn,
                [t],
                clock,
                backoff=backoff,
                poll_interval=poll_interval,
                transaction=db.transaction,  # the store's connection: take its write lock
                exclusive=db.exclusive,  # one gateway at a time delivers each target's queue
            )
            for t in self.targets
        }
        self._queue: asyncio.Queue[dict[str, object]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._unsubscribe: list[Callable[[], None]] = []
        wanted = {e for t in self.targets for e in t.settings.events}
        handlers: list[tuple[type[Any], WebhookEvent, Callable[[Any], dict[str, Any]]]] = [
            (LeadsCreated, "lead.created", _event_data),
            (LeadStatusChanged, "lead.status_changed", _event_data),
            (LeadUnsubscribed, "lead.unsubscribed", _event_data),
            (LeadConverted, "lead.converted", _event_data),
            (CallEnded, "call.ended", _call_ended),
        ]
        for event_type, name, build in handlers:
            if name in wanted:  # nobody wants it: not even a subscription
                self._unsubscribe.append(bus.subscribe(event_type, self._handler(name, build)))

    def _handler(
        self, name: WebhookEvent, build: Callable[[Any], dict[str, Any]]
    ) -> Callable[[Any], None]:
        def on_event(event: Any) -> None:
            data = build(event)
            self._queue.put_nowait(
                {"id": uuid.uuid4().hex, "type": name, "at": self._clock(), "data": data}
            )

        return on_event

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the targets' HTTP sessions, the writer and one delivery worker per target
        (events stored by an earlier run go first)."""
        if self._writer is not None:
            return
        for t in self.targets:
            await t.start()
        for outbox in self._outboxes.values():
            await outbox.start()
        self._writer = asyncio.create_task(self._write(), name="webhooks-writer")

    async def close(self) -> None:
        """Store every event still in memory, then stop delivering (a POST in flight gets a
        few seconds to finish and be marked)."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        await self.flush()
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        for outbox in self._outboxes.values():
            await outbox.close()
        for t in self.targets:
            with contextlib.suppress(Exception):
                await t.close()

    async def flush(self) -> None:
        """Wait until every event published so far is stored (not yet delivered)."""
        if self._writer is None:  # not started: store them here
            while not self._queue.empty():
                await self._store_waiting([])
            return
        await self._queue.join()

    async def _write(self) -> None:
        while True:
            await self._store_waiting([await self._queue.get()])

    async def _store_waiting(self, documents: list[dict[str, object]]) -> None:
        """Store ``documents`` (taken from the queue) and whatever else waits there, up to
        :data:`STORE_BATCH`, in one transaction per target."""
        while len(documents) < STORE_BATCH and not self._queue.empty():
            documents.append(self._queue.get_nowait())
        try:
            await self._store(documents)
        except Exception:
            # the documents stay in the log line, for an operator to replay
            log.exception("webhooks: could not store events %r", documents)
        finally:
            for _ in documents:
                self._queue.task_done()

    async def _store(self, documents: Sequence[dict[str, object]]) -> None:
        for t in self.targets:
            wanted = [d for d in documents if t.wants(str(d["type"]))]
            if wanted:
                await self._outboxes[t.name].enqueue_many(wanted)

    # -- delivery and figures ---------------------------------------------------------------

    def kick(self) -> None:
        """Wake the workers now (the clock moved)."""
        for outbox in self._outboxes.values():
            outbox.kick()

    async def deliver_due(self) -> int:
        """Deliver every target's due events now; returns how many were delivered (what the
        workers do, for callers that move the clock themselves)."""
        delivered = 0
        for name, outbox in self._outboxes.items():
            delivered += await outbox.deliver_due(name)
        return delivered

    async def stats(self) -> list[OutboxStats]:
        out: list[OutboxStats] = []
        for outbox in self._outboxes.values():
            out += await outbox.stats()
        return out
