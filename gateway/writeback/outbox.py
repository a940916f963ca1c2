"""Persistent outbox of call records for the CRM connectors.

Theory of operation: ``enqueue(record)`` inserts one row per connector into ``crm_outbox``
(migration 0004) and commits before returning, so a call accepted here survives a crash. One
worker task per connector delivers that connector's rows oldest first. A row is marked delivered
(and committed) right after its CRM accepted it; the gap between the CRM's answer and that
commit is covered by the connectors, whose ``log_call`` finds an earlier write of the same
record id before creating a new one.

The rule for failures (``docs/connectors/outbox.md``) tells an outage from a refusal:
- *outage* (connection refused, timeout, HTTP 5xx, login refused: any ``ConnectorError`` that is
  not ``CrmRefused``): the whole queue of that CRM waits, in order, with capped exponential
  backoff; other CRMs keep going.
- *refusal* (the CRM answered, but with an error: ``CrmRefused``, ``RecordRejected``; or a
  connector bug on this record): only that record waits for its own retry; after
  ``reject_limit`` attempts it is parked with its last error, and the records behind it are
  delivered meanwhile. Parked rows stay in the table: ``parked()`` lists them, ``retry_parked``
  re-drives them (CLI ``centralita outbox``, API ``/api/v1/outbox``).

Times come from the injected clock (epoch seconds); the workers only use it to decide what is
due, so tests drive ``deliver_due`` with a fake clock and never sleep.

Sharing the store's connection: pass ``transaction=db.transaction`` so every outbox write runs
under the store's write lock. Without it, a write issued while another task holds a
``BEGIN ... COMMIT`` open on the same connection would join that transaction (and vanish with
its rollback). A connection of its own needs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import aiosqlite

from connectors.base import CrmConnector, CrmRefused, RecordRejected
from gateway.errors import ConnectorError

log = logging.getLogger("gateway.writeback")

ELSEWHERE_RETRY = 1.0  # seconds: how soon to look again at a queue another gateway delivers


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retry number ``attempts`` (1-based): initial * factor**(n-1), capped."""

    initial: float = 5.0
    maximum: float = 900.0
    factor: float = 2.0

    def delay(self, attempts: int) -> float:
        return min(self.maximum, self.initial * self.factor ** max(0, attempts - 1))


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """Per-connector queue figures, for ``/health`` and ``/metrics``."""

    connector: str
    pending: int
    delivered: int
    parked: int
    oldest_pending_at: float | None
    last_error: str | None
    held_until: float | None = None  # an outage holds the whole queue until then


@dataclass(frozen=True, slots=True)
class ParkedRecord:
    """A call record a CRM kept refusing, waiting for an operator to re-drive it."""

    id: int
    connector: str
    record_id: str
    attempts: int
    created_at: float
    parked_at: float
    last_error: str | None


class Outbox:
    """Queues finished calls for each CRM connector and delivers them in order, once."""

    def __init__(
        self,
        conn: aiosqlite.Connection,
        connectors: Iterable[CrmConnector],
        clock: Callable[[], float] = time.time,
        *,
        backoff: Backoff | None = None,
        reject_limit: int = 3,
        call_timeout: float = 120.0,
        poll_interval: float = 30.0,
        hold: float = 0.0,
        transaction: Callable[[], AbstractAsyncContextManager[aiosqlite.Connection]] | None = None,
        exclusive: Callable[[str], AbstractAsyncContextManager[bool]] | None = None,
    ) -> None:
        self._db = conn
        # the store's transaction() when the connection is shared: our writes then take its
        # write lock instead of committing (or joining) a transaction another task has open
        self._transaction = transaction
        self._own_writes = asyncio.Lock()  # without ``transaction``: see _write
        # the store's exclusive(): with several gateways on one store (PostgreSQL), one at a
        # time delivers a connector's queue, so its calls still reach the CRM in order
        self._exclusive = exclusive
        self._connectors: dict[str, CrmConnector] = {c.name: c for c in connectors}
        self._clock = clock
        self._backoff = backoff or Backoff()
        self._reject_limit = max(1, reject_limit)
        self._call_timeout = call_timeout
        self._poll = poll_interval  # longest nap, so a stepped clock is noticed soon
        self._hold = hold  # a new call waits this long before its first delivery (wrap-up)
        self._locks = {name: asyncio.Lock() for name in self._connectors}
        self._wake = {name: asyncio.Event() for name in self._connectors}
        self._held_until: dict[str, float] = {}  # outage: nothing of that CRM before then
        self._elsewhere_until: dict[str, float] = {}  # another gateway delivers: ask again then
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    @property
    def connector_names(self) -> list[str]:
        return list(self._connectors)

    # -- queueing -------------------------------------------------------------------------

    async def enqueue(self, record: Mapping[str, object]) -> int:
        """Queue a finished call for every connector; returns how many rows were new.

        A record already queued (same id) is ignored, so calling this twice is harmless."""
        return await self.enqueue_many([record])

    async def enqueue_many(self, records: Sequence[Mapping[str, object]]) -> int:
        """Queue several records, in order, in one commit (a burst of webhook events);
        otherwise as :meth:`enqueue`."""
        for record in records:
            rid = record.get("id")
            if rid is None or str(rid) == "":
                raise ValueError("call record has no 'id'; it cannot be queued for CRMs")
        if not self._connectors or not records:
            return 0
        now = self._clock()
        rows = []
        for record in records:
            payload = json.dumps(dict(record), default=str, ensure_ascii=False)
            rows += [
                (name, str(record["id"]), payload, now, now + self._hold)
                for name in self._connectors
            ]
        added = await self._write(
            "INSERT OR IGNORE INTO crm_outbox"
            " (connector, record_id, payload, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?)",
            rows,
        )
        self.kick()
        return added

    async def refresh(self, record: Mapping[str, object]) -> int:
        """Replace the queued copy of a call not yet delivered (notes or disposition added
        after hang-up); returns how many connectors will get the new version."""
        rid = record.get("id")
        if rid is None or str(rid) == "":
            raise ValueError("call record has no 'id'")
        payload = json.dumps(dict(record), default=str, ensure_ascii=False)
        return await self._write(
            "UPDATE crm_outbox SET payload = ? WHERE record_id = ? AND delivered_at IS NULL",
            [(payload, str(rid))],
        )

    def kick(self) -> None:
        """Wake every worker now (new rows, or the clock moved)."""
        for ev in self._wake.values():
            ev.set()

    # -- delivery -------------------------------------------------------------------------

    async def deliver_due(self, name: str) -> int:
        """Deliver ``name``'s due rows oldest first, until an outage or none is due.

        Returns how many were delivered. Never runs twice at once for one connector."""
        async with self._locks[name]:
            if self._exclusive is None:
                return await self._deliver(name)
            async with self._exclusive(f"crm_outbox:{name}") as mine:
                if mine:
                    return await self._deliver(name)
            # another gateway is delivering this queue: look again shortly
            self._elsewhere_until[name] = self._clock() + ELSEWHERE_RETRY
            return 0

    async def _deliver(self, name: str) -> int:
        """deliver_due's loop, with the connector's lock (and the store's claim) held."""
        connector = self._connectors[name]
        delivered = 0
        while not self._closing:
            now = self._clock()
            if self._held_until.get(name, 0.0) > now:
                return delivered
            async with self._db.execute(
                "SELECT id, record_id, payload, attempts FROM crm_outbox"
                " WHERE connector = ? AND delivered_at IS NULL AND parked_at IS NULL"
                " AND next_attempt_at <= ? ORDER BY id LIMIT 1",
                (name, now),
            ) as cur:
                row = await cur.fetchone()
            if row is None:
                return delivered
            row_id, rid, payload, attempts = row
            attempts += 1
            try:
                try:
                    record = json.loads(payload)
                except ValueError as e:  # damaged row: no retry can read it
                    raise RecordRejected(f"stored call record is not JSON: {e}") from e
                async with asyncio.timeout(self._call_timeout):
                    await connector.log_call(record)
            except asyncio.CancelledError:
                raise
            except (CrmRefused, ConnectorError, TimeoutError) as e:
                if not isinstance(e, CrmRefused):  # an outage: the whole queue waits
                    delay = await self._retry_later(name, row_id, rid, attempts, e)
                    self._held_until[name] = self._clock() + delay
                    return delivered
                await self._refused(name, row_id, rid, attempts, e)
                continue
            except Exception as e:  # a connector bug on this record: as a refusal
                log.exception("crm %s: unexpected error delivering call %r", name, rid)
                await self._refused(name, row_id, rid, attempts, e)
                continue
            self._held_until.pop(name, None)
            await self._update(
                "UPDATE crm_outbox SET attempts = ?, delivered_at = ?, last_error = NULL"
                " WHERE id = ?",
                (attempts, self._clock(), row_id),
            )
            delivered += 1
            log.info("crm %s: call %r written after %d attempt(s)", name, rid, attempts)
        return delivered

    async def _refused(
        self, name: str, row_id: int, rid: str, attempts: int, err: BaseException
    ) -> None:
        """The CRM refused this record: retry it alone later, or park it at the limit."""
        self._held_until.pop(name, None)  # it answered, so it is up
        if attempts < self._reject_limit:
            await self._retry_later(name, row_id, rid, attempts, err)
            return
        text = str(err) or type(err).__name__
        log.error(
            "crm %s refused call %r %d times; parked (re-drive with 'centralita outbox retry'): %s",
            name,
            rid,
            attempts,
            text,
        )
        await self._update(
            "UPDATE crm_outbox SET attempts = ?, parked_at = ?, last_error = ? WHERE id = ?",
            (attempts, self._clock(), text[:500], row_id),
        )

    async def _retry_later(
        self, name: str, row_id: int, rid: str, attempts: int, err: BaseException
    ) -> float:
        delay = self._backoff.delay(attempts)
        text = str(err) or type(err).__name__
        log.warning(
            "crm %s: call %r not written (attempt %d): %s; retry in %.0f s",
            name,
            rid,
            attempts,
            text,
            delay,
        )
        await self._update(
            "UPDATE crm_outbox SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE id = ?",
            (attempts, self._clock() + delay, text[:500], row_id),
        )
        return delay

    async def _update(self, sql: str, args: tuple[object, ...]) -> None:
        await self._write(sql, [args])

    async def _write(self, sql: str, rows: Sequence[tuple[object, ...]]) -> int:
        """Run one statement per row and commit them together; returns rows changed."""
        if self._transaction is not None:
            async with self._transaction() as conn:
                cur = await conn.executemany(sql, rows)
                return max(cur.rowcount, 0)
        # the connection is this outbox's own: its workers (one per CRM) take turns, each
        # statement committed and its cursor closed before the next (two workers interleaving
        # on one sqlite3 connection failed now and then with "bad parameter or other API
        # misuse" under load)
        async with self._own_writes:
            async with self._db.executemany(sql, rows) as cur:
                changed = max(cur.rowcount, 0)
            await self._db.commit()
        return changed

    async def next_due_in(self, name: str) -> float | None:
        """Seconds until one of ``name``'s rows is due (0 if now), or None if nothing waits."""
        async with self._db.execute(
            "SELECT MIN(next_attempt_at) FROM crm_outbox WHERE connector = ?"
            " AND delivered_at IS NULL AND parked_at IS NULL",
            (name,),
        ) as cur:
            row = await cur.fetchone()
        if row is None or row[0] is None:
            return None
        due = max(
            float(row[0]),
            self._held_until.get(name, 0.0),
            self._elsewhere_until.get(name, 0.0),
        )
        return max(0.0, due - self._clock())

    # -- workers --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start one delivery task per connector; rows left from a previous run go first."""
        if self._tasks:
            return
        for name in self._connectors:
            self._tasks.append(asyncio.create_task(self._worker(name), name=f"outbox:{name}"))

    async def close(self, grace: float = 5.0) -> None:
        """Stop the workers; a write in flight gets ``grace`` seconds to finish and be marked,
        so a call the CRM just accepted is not sent again after a restart."""
        self._closing = True
        tasks, self._tasks = self._tasks, []
        self.kick()
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace)
            for t in late:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
        self._closing = False

    async def _worker(self, name: str) -> None:
        wake = self._wake[name]
        while not self._closing:
            wake.clear()
            try:
                await self.deliver_due(name)
                due = await self.next_due_in(name)
            except asyncio.CancelledError:
                raise
            except Exception:  # the store failed: keep the task alive, try again later
                log.exception("crm %s: outbox store error", name)
                due = self._poll
            nap = self._poll if due is None else min(due, self._poll)
            if nap <= 0 or self._closing:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), nap)

    # -- inspection -----------------------------------------------------------------------

    async def stats(self) -> list[OutboxStats]:
        out = []
        for name in self._connectors:
            async with self._db.execute(
                "SELECT"
                " SUM(delivered_at IS NULL AND parked_at IS NULL),"
                " SUM(delivered_at IS NOT NULL), SUM(parked_at IS NOT NULL),"
                " MIN(CASE WHEN delivered_at IS NULL AND parked_at IS NULL THEN created_at END)"
                " FROM crm_outbox WHERE connector = ?",
                (name,),
            ) as cur:
                pending, delivered, parked, oldest = await cur.fetchone() or (0, 0, 0, None)
            async with self._db.execute(
                "SELECT last_error FROM crm_outbox WHERE connector = ? AND last_error IS NOT NULL"
                " AND delivered_at IS NULL ORDER BY id LIMIT 1",
                (name,),
            ) as cur:
                err = await cur.fetchone()
            held = self._held_until.get(name)
            out.append(
                OutboxStats(
                    name,
                    pending or 0,
                    delivered or 0,
                    parked or 0,
                    oldest,
                    err[0] if err else None,
                    held if held and held > self._clock() else None,
                )
            )
        return out

    async def parked(self, name: str | None = None, limit: int = 100) -> list[ParkedRecord]:
        """Parked rows, oldest first (of one connector, or all)."""
        sql = (
            "SELECT id, connector, record_id, attempts, created_at, parked_at, last_error"
            " FROM crm_outbox WHERE parked_at IS NOT NULL"
        )
        args: tuple[object, ...] = ()
        if name is not None:
            sql += " AND connector = ?"
            args = (name,)
        async with self._db.execute(sql + " ORDER BY id LIMIT ?", (*args, limit)) as cur:
            return [ParkedRecord(*r) for r in await cur.fetchall()]

    async def retry_parked(self, name: str | None = None, ids: Sequence[int] = ()) -> int:
        """Put parked rows back in the queue (after fixing the CRM side): those of ``name``
        (every connector when None), only ``ids`` when given. Returns how many."""
        sql = (
            "UPDATE crm_outbox SET parked_at = NULL, attempts = 0, last_error = NULL,"
            " next_attempt_at = ? WHERE parked_at IS NOT NULL"
        )
        args: list[object] = [self._clock()]
        if name is not None:
            sql += " AND connector = ?"
            args.append(name)
        if ids:
            sql += f" AND id IN ({', '.join('?' * len(ids))})"
            args.extend(ids)
        changed = await self._write(sql, [tuple(args)])
        self.kick()
        return changed
