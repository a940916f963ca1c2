"""Lead scoring at the edges: gathers a lead's facts from SQLite, stores its score, serves the
scoring API and the worklist, and rescores a lead when a call with it ends.

The model itself is :mod:`gateway.store.scoring` (pure). The global score is written to
``people.score``, what lookups show, the worklist orders by and campaigns segment on (left
alone while the model knows nothing of the lead); the parts are recomputed on demand. A
finished call is scored from the call record on the bus, not from the call log row, because
the call log writes it a moment later in its own task.

Routes (JSON, under the API's token/session auth):

* ``GET  /api/v1/leads/{id}/score`` (crm:read): the global score, every part, the manual inputs;
* ``PUT  /api/v1/leads/{id}/score-inputs`` (crm:write): set manual values, 0-10, null clears;
* ``POST /api/v1/leads/{id}/form-fills`` (crm:write): a web form the lead filled in;
* ``GET  /api/v1/worklist?owner=`` (crm:read): who to call next, best score first; among
  equal scores the leads whose best hour to call (the ``best_hour`` metric of
  ``gateway/intel/``) is the current hour come first, each item showing that hour and the
  customer metrics a caller acts on (RFM segment, churn risk, value, next best action). The
  list can keep only some RFM segments, a churn risk from a floor and some next best actions
  (a campaign segment's conditions, so both mean the same), and put the highest churn risk or
  value first, as a revival of customers drifting away would.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import msgspec
from aiohttp import web

from gateway.calls.events import CallEnded
from gateway.calls.model import CallRecord, Outcome
from gateway.campaigns.model import RfmSegment
from gateway.intel.metrics import Metric
from gateway.intel.wording import reason_text
from gateway.store.db import Database, SqlParam
from gateway.store.models import FollowUpTask, Person
from gateway.store.repositories import MAX_PAGE, PersonRepository, numbers_of_people
from gateway.store.scoring import DAY, LeadFacts, Score, ScoringSettings, score
from gateway.store.validation import finite, timestamp

if TYPE_CHECKING:
    pass

log = logging.getLogger("gateway.scoring")

ACTIVE_STATUSES = ("new", "contacted", "nurturing")  # on the worklist even without a task
_ANSWERED = (Outcome.ANSWERED.value, Outcome.TRANSFERRED.value)
RESCORE_BATCH = 500
QUEUE_LIMIT = 10_000
# the customer metrics each worklist item carries (gateway/intel/metrics.py names)
ITEM_METRICS = ("rfm_segment", "churn_30", "clv_historic", "next_best")
# sort -> the metric whose value orders the list first (highest first, unknown last)
SORT_METRIC = {"-churn_risk": "churn_30", "-value": "clv_historic"}


@dataclass(frozen=True, slots=True)
class BestHourHint:
    """When to call the lead: ``hour`` (0-23, the panel's zone), the estimated answer rate,
    whether it is the current hour, and whether it comes from the lead's own calls or, never
    called yet, from everybody's (``everyone``)."""

    hour: int
    percent: int | None
    now: bool
    source: str  # own | everyone

    def to_dict(self) -> dict[str, Any]:
        return {
            "hour": self.hour,
            "label": f"{self.hour:02d}:00",
            "percent": self.percent,
            "now": self.now,
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class WorklistItem:
    """One lead to call: who, their score and their next open follow-up (if any);
    ``campaign``: the name of the campaign that made that follow-up (a call task);
    ``best_hour``: when they answer most (None: no metric yet, or nobody was ever called);
    ``metrics``: the :data:`ITEM_METRICS` as stored (None: not computed yet)."""

    person: Person
    next_follow_up: FollowUpTask | None
    open_follow_ups: int
    campaign: str | None = None
    best_hour: BestHourHint | None = None
    metrics: dict[str, Metric] | None = None

    def to_dict(self, lang: str = "en") -> dict[str, Any]:
        """The item as the API answers it, each metric's reason worded in ``lang``."""
        metrics = None
        if self.metrics is not None:
            metrics = {
                name: {
                    "name": m.name,
                    "value": m.value,
                    "label": m.label,
                    "reason": m.reason,
                    "params": m.params,
                    "text": reason_text(m, lang),
                }
                for name, m in self.metrics.items()
            }
        return {
            "person": self.person.to_dict(),
            "score": self.person.score,
            "next_follow_up": self.next_follow_up.to_dict() if self.next_follow_up else None,
            "open_follow_ups": self.open_follow_ups,
            "campaign": self.campaign,
            "best_hour": self.best_hour.to_dict() if self.best_hour else None,
            "metrics": metrics,
        }


class ScoringService:
    """Scores leads from what the store knows and keeps ``people.score`` current."""

    def __init__(
        self,
        db: Database,
        settings: ScoringSettings,
        *,
        default_region: str = "ES",
        clock: Callable[[], float] | None = None,
        tz: ZoneInfo | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.default_region = default_region
        self.clock = clock or db.clock
        # the zone of the best-hour metric (the intel service's: panel.timezone)
        self.tz = tz or ZoneInfo("UTC")
        self.people = PersonRepository(db, default_region)
        self._calls: asyncio.Queue[CallRecord] = asyncio.Queue()
        self.rescored = 0

    # -- facts and scores --------------------------------------------------------------------

    async def facts(self, person_id: int, extra_call: CallRecord | None = None) -> LeadFacts | None:
        """The lead's facts now; ``extra_call`` is a just-ended call the log may not hold yet."""
        facts = (await self.facts_of([person_id])).get(person_id)
        if facts is None or extra_call is None:
            return facts
        answered = dict(zip(facts.answered_call_ids, facts.answered_call_times, strict=True))
        last_contact = facts.last_contact_at
        if extra_call.outcome.value in _ANSWERED:
            answered[extra_call.log_id] = extra_call.started_at
        if last_contact is None or extra_call.started_at > last_contact:
            last_contact = extra_call.started_at
        return LeadFacts(
            now=facts.now,
            source=facts.source,
            manual=facts.manual,
            answered_call_ids=tuple(answered),
            answered_call_times=tuple(answered.values()),
            form_fill_times=facts.form_fill_times,
            last_contact_at=last_contact,
        )

    async def facts_of(self, person_ids: list[int]) -> dict[int, LeadFacts]:
        """The facts of many leads in a few queries (ids that are not leads are left out)."""
        conn = self.db.conn
        marks = ",".join("?" * len(person_ids))
        sources = {
            r[0]: r[1]
            for r in await conn.execute_fetchall(
                f"SELECT id, source FROM people WHERE id IN ({marks}) AND kind = 'lead'",
                person_ids,
            )
        }
        if not sources:
            return {}
        ids = list(sources)
        marks = ",".join("?" * len(ids))
        now = self.clock()
        since = now - max(p.window_days for p in self.settings.parameters) * DAY
        manual: dict[int, dict[str, float]] = {pid: {} for pid in ids}
        for r in await conn.execute_fetchall(
            f"SELECT person_id, parameter, value FROM score_inputs WHERE person_id IN ({marks})",
            ids,
        ):
            manual[r[0]][r[1]] = float(r[2])
        calls: dict[int, dict[str, float]] = {pid: {} for pid in ids}
        for r in await conn.execute_fetchall(
            f"SELECT person_id, id, started_at FROM calls WHERE person_id IN ({marks})"
            f" AND started_at >= ? AND outcome IN ({','.join('?' * len(_ANSWERED))})",
            (*ids, since, *_ANSWERED),
        ):
            calls[r[0]][r[1]] = float(r[2])
        fills: dict[int, list[float]] = {pid: [] for pid in ids}
        for r in await conn.execute_fetchall(
            f"SELECT person_id, at FROM form_fills WHERE person_id IN ({marks}) AND at >= ?",
            (*ids, since),
        ):
            fills[r[0]].append(float(r[1]))
        last = {
            r[0]: r[1]
            for r in await conn.execute_fetchall(
                f"SELECT person_id, max(at) FROM activities WHERE person_id IN ({marks})"
                " GROUP BY person_id",
                ids,
            )
        }
        return {
            pid: LeadFacts(
                now=now,
                source=sources[pid],
                manual=manual[pid],
                answered_call_ids=tuple(calls[pid]),
                answered_call_times=tuple(calls[pid].values()),
                form_fill_times=tuple(fills[pid]),
                last_contact_at=last.get(pid),
            )
            for pid in ids
        }

    async def score_of(self, person_id: int) -> Score | None:
        """The lead's score as of now (not stored); None when there is no such lead."""
        facts = await self.facts(person_id)
        return None if facts is None else score(facts, self.settings)

    async def recompute(self, person_id: int, extra_call: CallRecord | None = None) -> Score | None:
        """Score the lead and store the global score; None when there is no such lead."""
        facts = await self.facts(person_id, extra_call)
        if facts is None:
            return None
        result = score(facts, self.settings)
        await self._store({person_id: result.global_score})
        return result

    async def _store(self, scores: dict[int, float | None]) -> None:
        # a lead the model knows nothing about keeps the score it has (imported from another
        # CRM, set by hand): "no data" must not wipe it
        known = {pid: v for pid, v in scores.items() if v is not None}
        if not known:
            return
        async with self.db.transaction() as conn:
            changed = []
            for pid, value in known.items():
                cur = await conn.execute(
                    # (not "IS NOT ?": PostgreSQL reads IS NOT only before NULL/TRUE/FALSE)
                    "UPDATE people SET score = ? WHERE id = ? AND (score IS NULL OR score <> ?)",
                    (value, pid, value),
                )
                if cur.rowcount:
                    changed.append(pid)
            if changed:  # the caller card shows the score: cached cards must go
                self.db.numbers_changed(await numbers_of_people(conn, changed))

    async def rescore_all(self) -> int:
        """Rescore every lead (scores that depend on time drift; settings may have changed)."""
        last_id, done = 0, 0
        while True:
            ids = [
                r[0]
                for r in await self.db.conn.execute_fetchall(
                    "SELECT id FROM people WHERE kind = 'lead' AND id > ? ORDER BY id LIMIT ?",
                    (last_id, RESCORE_BATCH),
                )
            ]
            if not ids:
                return done
            scores = {
                pid: score(facts, self.settings).global_score
                for pid, facts in (await self.facts_of(ids)).items()
            }
            await self._store(scores)
            done += len(scores)
            last_id = ids[-1]

    # -- inputs ------------------------------------------------------------------------------

    async def inputs(self, person_id: int) -> dict[str, dict[str, Any]]:
        rows = await self.db.conn.execute_fetchall(
            "SELECT parameter, value, set_by, set_at FROM score_inputs WHERE person_id = ?"
            " ORDER BY parameter",
            (person_id,),
        )
        return {r[0]: {"value": r[1], "set_by": r[2], "set_at": r[3]} for r in rows}

    async def set_inputs(
        self, person_id: int, values: dict[str, float | None], set_by: str | None
    ) -> Score | None:
        """Store validated manual values (None clears one) and rescore; None: no such lead."""
        if await self.people.get(person_id) is None:
            return None
        # whoever calls: never NaN or Infinity stored (the API checks the 0-10 scale first)
        values = {n: None if v is None else finite(v, n) for n, v in values.items()}
        now = self.clock()
        async with self.db.transaction() as conn:
            for name, value in values.items():
                if value is None:
                    await conn.execute(
                        "DELETE FROM score_inputs WHERE person_id = ? AND parameter = ?",
                        (person_id, name),
                    )
                else:
                    await conn.execute(
                        "INSERT INTO score_inputs (person_id, parameter, value, set_by, set_at)"
                        " VALUES (?,?,?,?,?) ON CONFLICT (person_id, parameter) DO UPDATE"
                        " SET value = excluded.value, set_by = excluded.set_by,"
                        " set_at = excluded.set_at",
                        (person_id, name, value, set_by, now),
                    )
            return await self.recompute(person_id)  # same task: a savepoint inside this one

    async def add_form_fill(self, person_id: int, form: str, at: float | None = None) -> bool:
        """Record a web form the lead submitted and rescore; False when there is no such lead."""
        async with self.db.transaction() as conn:
            rows = list(
                await conn.execute_fetchall(
                    "SELECT 1 FROM people WHERE id = ? AND kind = 'lead'", (person_id,)
                )
            )
            if not rows:
                return False
            await conn.execute(
                "INSERT INTO form_fills (person_id, form, at) VALUES (?,?,?)",
                (person_id, form, self.clock() if at is None else timestamp(at, "at")),
            )
            await self.recompute(person_id)
        return True

    # -- calls -------------------------------------------------------------------------------

    def on_call_ended(self, event: CallEnded) -> None:
        """Bus handler (sync, quick): the lead is rescored in the worker task."""
        if self._calls.qsize() >= QUEUE_LIMIT:
            log.warning("scoring queue full, dropped call %s", event.linkedid)
            return
        self._calls.put_nowait(event.record)

    async def lead_of_call(self, record: CallRecord) -> int | None:
        """The lead a call was with, by the same rule as the call log (caller in, dialed out)."""
        number = record.customer_number
        if not number:
            return None
        # the oldest owner of the number is who the call log attaches the call to
        person = await self.people.find_by_number(number, self.default_region)
        return person.id if person is not None and person.kind == "lead" else None

    async def run(self) -> None:
        """The worker: rescore every lead once, then each lead whose call ends."""
        try:
            n = await self.rescore_all()
            log.info("scoring: rescored %d lead(s) at start", n)
        except Exception:
            log.exception("scoring: rescoring at start failed")
        while True:
            record = await self._calls.get()
            try:
                pid = await self.lead_of_call(record)
                if pid is not None:
                    await self.recompute(pid, extra_call=record)
                    self.rescored += 1
            except Exception:
                log.exception("scoring: rescoring after call %s failed", record.linkedid)
            finally:
                self._calls.task_done()

    async def settled(self) -> None:
        """Wait until every ended call handed to the service has been scored."""
        await self._calls.join()

    # -- worklist ----------------------------------------------------------------------------

    async def worklist(
        self,
        *,
        owner: str | None = None,
        limit: int = 50,
        offset: int = 0,
        rfm_segments: Sequence[RfmSegment] = (),
        churn_risk_min: float | None = None,
        next_best: Sequence[str] = (),
        sort: str = "-score",
    ) -> tuple[list[WorklistItem], int | None]:
        """Leads with open follow-ups or an active status (new, contacted, nurturing), best
        score first; among equal scores those whose best hour is now, then the earliest due
        follow-up; leads without a score come last.
        ``owner`` keeps the leads they own and those with an open follow-up assigned to them,
        or to nobody yet but to a pool of agents they are in (a campaign's pool call task:
        every agent of the pool sees it until one of them takes it).
        ``rfm_segments``, ``churn_risk_min`` (0-1, within 30 days) and ``next_best`` keep the
        leads whose stored metrics match (one without metrics matches none); ``sort``
        ``-churn_risk`` or ``-value`` puts the highest churn risk or historic value first,
        unknown last, ties in the order above."""
        limit, offset = max(1, min(limit, MAX_PAGE)), max(0, offset)
        hour = datetime.fromtimestamp(self.clock(), self.tz).hour
        where = [
            "p.kind = 'lead'",
            f"(o.person_id IS NOT NULL OR p.status IN ({','.join('?' * len(ACTIVE_STATUSES))}))",
        ]
        args: list[SqlParam] = list(ACTIVE_STATUSES)
        if owner is not None:
            where.append(
                "(p.owner = ? OR EXISTS (SELECT 1 FROM follow_ups f WHERE f.person_id = p.id"
                " AND f.done = 0 AND (f.owner = ? OR (f.owner IS NULL AND f.pool != ''"
                " AND EXISTS (SELECT 1 FROM json_each(f.pool) WHERE value = ?)))))"
            )
            args += [owner, owner, owner]
        # a campaign segment's rfm_segments and churn_risk_min (gateway/campaigns/segment.py),
        # read through the narrow indexes of migration 0021
        if rfm_segments:
            where.append(
                "EXISTS (SELECT 1 FROM person_metrics m INDEXED BY person_metrics_rfm_segment"
                " WHERE m.person_id = p.id AND m.metric = 'rfm_segment'"
                f" AND m.label IN ({','.join('?' * len(rfm_segments))}))"
            )
            args += list(rfm_segments)
        if churn_risk_min is not None:
            where.append(
                "EXISTS (SELECT 1 FROM person_metrics m INDEXED BY person_metrics_churn_30"
                " WHERE m.person_id = p.id AND m.metric = 'churn_30' AND m.value >= ?)"
            )
            args.append(churn_risk_min)
        if next_best:
            where.append(
                "EXISTS (SELECT 1 FROM person_metrics m INDEXED BY person_metrics_next_best"
                " WHERE m.person_id = p.id AND m.metric = 'next_best'"
                f" AND m.label IN ({','.join('?' * len(next_best))}))"
            )
            args += list(next_best)
        metric = SORT_METRIC.get(sort)
        first, join = "", ""
        if metric is not None:  # a name of the table above, never the caller's text
            join = (
                f" LEFT JOIN person_metrics sm INDEXED BY person_metrics_{metric}"
                f" ON sm.person_id = p.id AND sm.metric = '{metric}'"
            )
            # unknown last whatever the engine's default place for NULL
            first = "sm.value IS NULL, sm.value DESC, "
        rows = list(
            await self.db.conn.execute_fetchall(
                "WITH o AS (SELECT person_id, min(due_at) AS next_due, count(*) AS n"
                " FROM follow_ups WHERE done = 0 GROUP BY person_id)"
                " SELECT p.*, o.n AS open_n, bh.value AS best_hour"
                " FROM people p LEFT JOIN o ON o.person_id = p.id"
                # every listed lead's best hour, from the narrow index (migration 0018): the
                # wide metric rows cost 4x as much on a long list
                " LEFT JOIN person_metrics bh INDEXED BY person_metrics_best_hour"
                " ON bh.person_id = p.id AND bh.metric = 'best_hour'"
                f"{join} WHERE {' AND '.join(where)}"
                f" ORDER BY {first}p.score IS NULL, p.score DESC,"
                " CASE WHEN bh.value = ? THEN 1 ELSE 0 END DESC,"
                " o.next_due IS NULL, o.next_due, p.id"
                " LIMIT ? OFFSET ?",
                [*args, hour, limit + 1, offset],
            )
        )
        more = len(rows) > limit
        rows = rows[:limit]
        people = await self.people.hydrate(self.db.conn, rows)
        counts = {r["id"]: r["open_n"] or 0 for r in rows}
        nxt = await self._next_tasks(counts)
        hints = await self._best_hours(rows, hour)
        metrics = await self._item_metrics([r["id"] for r in rows])
        items = []
        for p in people:
            task, campaign = nxt.get(p.id, (None, None))
            items.append(
                WorklistItem(p, task, counts[p.id], campaign, hints[p.id], metrics.get(p.id))
            )
        return items, offset + limit if more else None

    async def _item_metrics(self, ids: list[int]) -> dict[int, dict[str, Metric]]:
        """The page's leads' :data:`ITEM_METRICS`; a lead lacking one of them is left out."""
        if not ids:
            return {}
        found: dict[int, dict[str, Metric]] = {}
        for r in await self.db.conn.execute_fetchall(
            "SELECT person_id, metric, value, label, reason, params FROM person_metrics"
            f" WHERE person_id IN ({','.join('?' * len(ids))})"
            f" AND metric IN ({','.join('?' * len(ITEM_METRICS))})",
            [*ids, *ITEM_METRICS],
        ):
            try:
                params = _decode_params(r["params"])
            except (msgspec.DecodeError, msgspec.ValidationError):
                params = {}
            found.setdefault(r["person_id"], {})[r["metric"]] = Metric(
                r["metric"], r["value"], r["label"], r["reason"], params
            )
        return {
            pid: {name: ms[name] for name in ITEM_METRICS}
            for pid, ms in found.items()
            if len(ms) == len(ITEM_METRICS)
        }

    async def _best_hours(self, rows: list[Any], hour: int) -> dict[int, BestHourHint | None]:
        """The page's leads' best hours (the ``best_hour`` metric), and whether it is now."""
        ids = [r["id"] for r in rows if r["best_hour"] is not None]
        found: dict[int, BestHourHint | None] = dict.fromkeys((r["id"] for r in rows), None)
        if not ids:
            return found
        for r in await self.db.conn.execute_fetchall(
            "SELECT person_id, value, reason, params"
            " FROM person_metrics WHERE metric = 'best_hour' AND person_id IN"
            f" ({','.join('?' * len(ids))})",
            ids,
        ):
            best = int(r["value"])
            percent = _percent(r["params"])
            found[r["person_id"]] = BestHourHint(
                hour=best,
                percent=int(percent) if isinstance(percent, int | float) else None,
                now=best == hour,
                source="everyone" if r["reason"] == "best_hour.everyone" else "own",
            )
        return found

    async def _next_tasks(
        self, counts: dict[int, int]
    ) -> dict[int, tuple[FollowUpTask, str | None]]:
        """Each lead's next open follow-up and the campaign that made it (None: by hand)."""
        ids = [pid for pid, n in counts.items() if n]
        if not ids:
            return {}
        out: dict[int, tuple[FollowUpTask, str | None]] = {}
        for r in await self.db.conn.execute_fetchall(
            "SELECT f.*, c.name AS campaign_name FROM follow_ups f"
            " LEFT JOIN campaign_step_runs r ON r.id = f.campaign_run_id"
            " LEFT JOIN campaigns c ON c.id = r.campaign_id"
            f" WHERE f.done = 0 AND f.person_id IN ({','.join('?' * len(ids))})"
            " ORDER BY f.due_at, f.id",
            ids,
        ):
            if r["person_id"] not in out:
                task = FollowUpTask(
                    r["id"], r["person_id"], r["due_at"], r["title"], r["owner"], False, None
                )
                out[r["person_id"]] = (task, r["campaign_name"])
        return out


_decode_params = msgspec.json.Decoder(dict[str, Any]).decode


def _percent(params: str | None) -> object:
    """The ``percent`` of a best-hour metric's parameters (read here rather than with the
    store's JSON functions, which give text on PostgreSQL); None if unreadable."""
    try:
        return _decode_params(params or "{}").get("percent")
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


# -- HTTP --------------------------------------------------------------------------------------

SCORING: web.AppKey[ScoringService] = web.AppKey("scoring", ScoringService)
