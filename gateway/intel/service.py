"""Keeps ``person_metrics`` current: gathers a person's facts from the store, computes their
metrics (:mod:`gateway.intel.metrics`) and writes them, on events, at start and nightly.

When: a call ends (``CallEnded``: the call record on the bus counts even before the call log
writes its row a moment later, as lead scoring does), a wrap-up is saved (its disposition),
a lead's status changes or it is converted (``gateway/store/events.py``), a deal is written
(the deals API calls :meth:`IntelService.recompute` itself), and every night at
``NIGHTLY_HOUR`` in the panel's zone, when the cohort (purchase rhythm, everybody's answers by
hour) is measured again and everyone is recomputed (time alone moves recency and churn risk).
At start, :meth:`IntelService.catch_up` recomputes in the background, batch by batch, whoever
has no metrics yet, lacks one (a newer version added it) or was last computed before the last
nightly run (the gateway was down then); start-up does not wait for it, and events keep being
applied between its batches. A caller card shows the new figures at once: a change of what the
card shows tells the lookup cache (``Database.numbers_changed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from itertools import pairwise
from statistics import mean, median
from typing import Any
from zoneinfo import ZoneInfo

from gateway.bus import Bus
from gateway.calls.events import CallEnded
from gateway.calls.model import CallRecord
from gateway.intel.metrics import (
    CARD_METRICS,
    CARD_ROW,
    DAY,
    METRICS,
    CallFact,
    Cohort,
    DealFact,
    EmailFact,
    Facts,
    Metric,
    PhoneFact,
    Profile,
    TouchFact,
    compute,
)
from gateway.reports.sales import answer_profile
from gateway.store.db import Database
from gateway.store.events import DealsChanged, LeadConverted, LeadStatusChanged, WrapUpSaved
from gateway.store.repositories import PersonRepository

log = logging.getLogger("gateway.intel")

NIGHTLY_HOUR = 3  # local time of the nightly recomputation
BATCH = 200  # people per write transaction when recomputing everyone
SCAN = 2000  # people whose metrics the start-up catch-up checks per query
# people per write transaction of the start-up catch-up: ~1 ms each, and the call log waits
# for the write lock meanwhile (bench/intel.py: 200 people held it 191 ms)
CATCH_UP_BATCH = 50
CALLS_READ = 500  # a person's newest calls the metrics look at
QUEUE_LIMIT = 10_000


class IntelService:
    """Computes and stores each person's metrics; reads them back for the API."""

    def __init__(
        self,
        db: Database,
        *,
        tz: ZoneInfo,
        default_region: str = "ES",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.tz = tz
        self.default_region = default_region
        self.clock = clock
        self.cohort = Cohort()
        self.recomputed = 0
        self._queue: asyncio.Queue[int | CallRecord] = asyncio.Queue()
        self.cohort_measured = asyncio.Event()  # the worker measured the cohort at start
        self.caught_up = asyncio.Event()  # the start-up catch-up is over

    # -- events ----------------------------------------------------------------------------------

    def subscribe(self, bus: Bus) -> Callable[[], None]:
        """Recompute on the events that change a person's metrics; returns the unsubscriber."""
        offs = [
            bus.subscribe(CallEnded, lambda e: self._put(e.record)),
            bus.subscribe(WrapUpSaved, lambda e: self._put(e.person_id)),
            bus.subscribe(LeadStatusChanged, lambda e: self._put(e.person_id)),
            bus.subscribe(LeadConverted, lambda e: self._put(e.person_id)),
            bus.subscribe(DealsChanged, lambda e: self._put_all(e.person_ids)),
        ]

        def off() -> None:
            for f in offs:
                f()

        return off

    def _put(self, item: int | CallRecord | None) -> None:
        if item is None:
            return
        if self._queue.qsize() >= QUEUE_LIMIT:
            log.warning("intel: queue full, dropped an update (the nightly run catches up)")
            return
        self._queue.put_nowait(item)

    def _put_all(self, items: Iterable[int]) -> None:
        for item in items:
            self._put(item)

    async def settled(self) -> None:
        """Wait until every event handed to the service has been applied."""
        await self._queue.join()

    async def run(self) -> None:
        """The worker: the cohort once at start, then each person an event names."""
        try:
            await self.refresh_cohort()
        except Exception:
            log.exception("intel: measuring the cohort at start failed")
        self.cohort_measured.set()
        while True:
            item = await self._queue.get()
            try:
                if isinstance(item, CallRecord):
                    pid = await self.person_of_call(item)
                    if pid is not None:
                        await self.recompute(pid, extra_call=_call_fact(item))
                else:
                    await self.recompute(item)
            except Exception:
                log.exception("intel: recomputing after %r failed", item)
            finally:
                self._queue.task_done()

    async def nightly(self) -> None:
        """Recompute everyone every night at NIGHTLY_HOUR (local time)."""
        while True:
            await asyncio.sleep(max(1.0, self.next_nightly(self.clock()) - self.clock()))
            try:
                await self.refresh_cohort()
                n = await self.recompute_all()
                log.info("intel: nightly recomputation of %d person(s)", n)
            except Exception:
                log.exception("intel: nightly recomputation failed")

    async def catch_up(self, *, batch: int = CATCH_UP_BATCH) -> int:
        """Recompute whoever :meth:`stale` finds, ``batch`` people per transaction, letting
        events and lookups through between batches; how many were recomputed. Waits for the
        worker's cohort (run it beside :meth:`run`)."""
        await self.cohort_measured.wait()
        after, done = 0, 0
        try:
            while True:
                ids = [
                    int(r[0])
                    for r in await self.db.conn.execute_fetchall(
                        "SELECT id FROM people WHERE id > ? ORDER BY id LIMIT ?", (after, SCAN)
                    )
                ]
                if not ids:
                    break
                todo = await self.stale(ids, self.clock())
                for i in range(0, len(todo), batch):
                    done += await self.recompute_many(todo[i : i + batch])
                    await asyncio.sleep(0)
                after = ids[-1]
                await asyncio.sleep(0)
        finally:
            self.caught_up.set()
        if done:
            log.info("intel: computed the missing or stale metrics of %d person(s)", done)
        return done

    async def stale(self, ids: list[int], now: float) -> list[int]:
        """Of ``ids`` (ascending), those with no metrics, a metric missing, or metrics computed
        before the last nightly run before ``now``."""
        if not ids:
            return []
        since = self.last_nightly(now)
        rows = await self.db.conn.execute_fetchall(
            "SELECT person_id, count(*), min(computed_at) FROM person_metrics"
            " WHERE person_id BETWEEN ? AND ? GROUP BY person_id",
            (ids[0], ids[-1]),
        )
        fresh = {pid for pid, n, at in rows if n >= len(METRICS) + 1 and at >= since}
        return [pid for pid in ids if pid not in fresh]

    def last_nightly(self, now: float) -> float:
        """The last nightly run's time at or before ``now``."""
        return self.next_nightly(self.next_nightly(now) - 36 * 3600.0)

    def next_nightly(self, now: float) -> float:
        local = datetime.fromtimestamp(now, self.tz)
        run = local.replace(hour=NIGHTLY_HOUR, minute=0, second=0, microsecond=0)
        if run <= local:
            run = (run + timedelta(days=1)).replace(hour=NIGHTLY_HOUR)
        return run.timestamp()

    # -- facts -----------------------------------------------------------------------------------

    async def person_of_call(self, record: CallRecord) -> int | None:
        """The person a call was with, by the call log's rule (caller in, dialed out; the
        oldest person with the number)."""
        number = record.customer_number
        if not number:
            return None
        return await PersonRepository(self.db, self.default_region).id_by_number(number)

    async def facts(self, person_id: int) -> Facts | None:
        """What the metrics read about one person; None when there is no such person."""
        c = self.db.conn
        people = await c.execute_fetchall(
            "SELECT p.kind, p.first_name, p.last_name, coalesce(nullif(a.name, ''), p.company),"
            " p.country, p.owner, p.status, p.lost_reason, p.lost_at, p.do_not_call,"
            " p.email_opt_out FROM people p LEFT JOIN accounts a ON a.id = p.account_id"
            " WHERE p.id = ?",
            (person_id,),
        )
        row = next(iter(people), None)
        if row is None:
            return None
        phones = await c.execute_fetchall(
            "SELECT e164, do_not_call FROM phones WHERE person_id = ?", (person_id,)
        )
        emails = await c.execute_fetchall(
            "SELECT email, bounced_at IS NOT NULL, opted_out FROM emails WHERE person_id = ?",
            (person_id,),
        )
        profile = Profile(
            kind=row[0],
            first_name=row[1],
            last_name=row[2],
            company=row[3] or "",
            country=row[4],
            owner=row[5],
            status=row[6],
            lost_reason=row[7],
            lost_at=row[8],
            do_not_call=bool(row[9]),
            email_opt_out=bool(row[10]),
            phones=tuple(PhoneFact(e, bool(d)) for e, d in phones),
            emails=tuple(EmailFact(e, bool(b), bool(o)) for e, b, o in emails),
        )
        # the person's deals and their account's (a company's purchase is its contacts' too)
        deals = await c.execute_fetchall(
            "SELECT stage, amount, currency, created_at, closed_at, product, title, updated_at"
            " FROM deals WHERE person_id = ? OR account_id ="
            " (SELECT account_id FROM people WHERE id = ?)",
            (person_id, person_id),
        )
        calls = await c.execute_fetchall(
            "SELECT id, started_at, direction, outcome, disposition FROM calls"
            " WHERE person_id = ? ORDER BY started_at DESC LIMIT ?",
            (person_id, CALLS_READ),
        )
        # the newest note or e-mail is all the last-activity score needs
        activities = await c.execute_fetchall(
            "SELECT kind, at FROM activities WHERE person_id = ? AND kind != 'call'"
            " ORDER BY at DESC LIMIT 1",
            (person_id,),
        )
        follow_ups = await c.execute_fetchall(
            "SELECT due_at FROM follow_ups WHERE person_id = ? AND done = 0", (person_id,)
        )
        touches = await c.execute_fetchall(
            "SELECT r.kind, r.status, r.at, r.opened_at, r.replied_at, r.call_outcome,"
            " r.disposition FROM campaign_step_runs r"
            " JOIN campaign_members m ON m.id = r.member_id"
            " WHERE m.person_id = ? AND r.kind IN ('email', 'call')",
            (person_id,),
        )
        return Facts(
            profile=profile,
            deals=tuple(DealFact(*d) for d in deals),
            calls=tuple(CallFact(str(i), s, d, o, disp) for i, s, d, o, disp in calls),
            activities=tuple((k, a) for k, a in activities),
            follow_ups=tuple(d for (d,) in follow_ups),
            touches=tuple(TouchFact(*t) for t in touches),
        )

    async def refresh_cohort(self) -> Cohort:
        """The median, over customers with two purchases or more, of their mean gap; and
        everybody's answers to outbound calls per weekday and hour over the last year."""
        rows = await self.db.conn.execute_fetchall(
            "SELECT person_id, coalesce(closed_at, created_at) FROM deals"
            " WHERE stage = 'won' AND person_id IS NOT NULL ORDER BY person_id, 2"
        )
        per: dict[int, list[float]] = {}
        for pid, at in rows:
            per.setdefault(pid, []).append(at)
        gaps = [mean(b - a for a, b in pairwise(ats)) / DAY for ats in per.values() if len(ats) > 1]
        gaps = [g for g in gaps if g > 0]
        answers = await answer_profile(self.db, self.tz, None, now=self.clock())
        self.cohort = Cohort(median(gaps) if gaps else None, len(per), answers)
        return self.cohort

    # -- writing ---------------------------------------------------------------------------------

    async def recompute(
        self, person_id: int, *, extra_call: CallFact | None = None
    ) -> list[Metric] | None:
        """Compute and store one person's metrics; None when there is no such person.
        ``extra_call``: a call that ended and may not be in the call log yet."""
        facts = await self.facts(person_id)
        if facts is None:
            return None
        if extra_call is not None and all(c.id != extra_call.id for c in facts.calls):
            facts = Facts(
                facts.profile,
                facts.deals,
                (extra_call, *facts.calls),
                facts.activities,
                facts.follow_ups,
                facts.touches,
            )
        metrics = compute(facts, self.clock(), self.tz, self.cohort)
        await self._store({person_id: metrics})
        return metrics

    async def recompute_many(self, person_ids: Iterable[int]) -> int:
        """Recompute these people (a batch's writes in one transaction); how many exist."""
        now = self.clock()
        done: dict[int, list[Metric]] = {}
        for pid in person_ids:
            facts = await self.facts(pid)
            if facts is not None:
                done[pid] = compute(facts, now, self.tz, self.cohort)
        await self._store(done)
        return len(done)

    async def recompute_all(self) -> int:
        """Everyone, in batches (each batch one write transaction)."""
        after, n = 0, 0
        while True:
            rows = await self.db.conn.execute_fetchall(
                "SELECT id FROM people WHERE id > ? ORDER BY id LIMIT ?", (after, BATCH)
            )
            ids = [int(r[0]) for r in rows]
            if not ids:
                return n
            n += await self.recompute_many(ids)
            after = ids[-1]
            await asyncio.sleep(0)  # let calls and lookups through between batches

    async def _store(self, metrics: dict[int, list[Metric]]) -> None:
        if not metrics:
            return
        now = self.clock()
        changed_cards: list[int] = []
        async with self.db.transaction() as conn:
            for pid, ms in metrics.items():
                rows = [
                    (pid, m.name, m.value, m.label, m.reason, json.dumps(m.params), now) for m in ms
                ]
                # what the pop-up shows, in one row the card reads with one key lookup and one
                # JSON parse (five rows cost the lookup ~15 µs more in bench/lookup.py)
                card = json.dumps(
                    [
                        [m.name, m.value, m.label, m.reason, m.params]
                        for m in ms
                        if m.name in CARD_METRICS
                    ]
                )
                old = await conn.execute_fetchall(
                    "SELECT params FROM person_metrics WHERE person_id = ? AND metric = ?",
                    (pid, CARD_ROW),
                )
                if [r[0] for r in old] != [card]:
                    changed_cards.append(pid)
                rows.append((pid, CARD_ROW, None, None, CARD_ROW, card, now))
                await conn.executemany(
                    "INSERT OR REPLACE INTO person_metrics"
                    " (person_id, metric, value, label, reason, params, computed_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
            if changed_cards:
                numbers = await conn.execute_fetchall(
                    "SELECT e164 FROM phones"
                    f" WHERE person_id IN ({','.join('?' * len(changed_cards))})",
                    changed_cards,
                )
                self.db.numbers_changed(n for (n,) in numbers)  # the cached cards go stale
        self.recomputed += len(metrics)

    # -- reading ---------------------------------------------------------------------------------

    async def stored(self, person_id: int) -> tuple[list[Metric], float | None]:
        """The person's stored metrics in :data:`METRICS` order and when they were computed."""
        rows = await self.db.conn.execute_fetchall(
            "SELECT metric, value, label, reason, params, computed_at FROM person_metrics"
            " WHERE person_id = ? AND metric != ?",
            (person_id, CARD_ROW),
        )
        order = {name: i for i, name in enumerate(METRICS)}
        found = sorted(rows, key=lambda r: order.get(r[0], len(order)))
        at = max((r[5] for r in found), default=None)
        return [Metric(r[0], r[1], r[2], r[3], _params(r[4])) for r in found], at


def _params(text: str) -> dict[str, Any]:
    with contextlib.suppress(ValueError):
        value = json.loads(text)
        if isinstance(value, dict):
            return value
    return {}


def _call_fact(record: CallRecord) -> CallFact:
    return CallFact(
        record.log_id,
        record.started_at,
        record.direction.value,
        record.outcome.value,
    )
