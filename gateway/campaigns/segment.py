"""A campaign's segment as SQL over ``people p``: who matches, how many, how many can be mailed
or called, and how many per lost reason.

Each condition is an indexed lookup per person (person_tags' key, activities (person_id, at),
calls (person_id, started_at), qualification_answers' key), so counting 100,000 leads is one
pass over ``people``. Date bounds are calendar days in the given zone, inclusive.
"""

from __future__ import annotations

import json
from datetime import timedelta
from zoneinfo import ZoneInfo

import aiosqlite
import msgspec

from gateway.campaigns.calendar import day_start
from gateway.campaigns.model import Segment
from gateway.store.db import Database, SqlParam

# a person the campaign may e-mail / call: the one suppression truth (opt-outs, bounces,
# do-not-call on the person and on each address or number), as click-to-call and imports read it
EMAILABLE_SQL = (
    "(p.email_opt_out = 0 AND EXISTS (SELECT 1 FROM emails e WHERE e.person_id = p.id"
    " AND e.opted_out = 0 AND e.bounced_at IS NULL))"
)
CALLABLE_SQL = (
    "(p.do_not_call = 0 AND EXISTS (SELECT 1 FROM phones ph WHERE ph.person_id = p.id"
    " AND ph.do_not_call = 0))"
)


class SegmentCount(msgspec.Struct, frozen=True, kw_only=True):
    """How many people a segment holds now; ``by_lost_reason`` counts the lost ones by reason."""

    total: int
    emailable: int
    callable: int
    by_lost_reason: dict[str, int] = msgspec.field(default_factory=dict)


def _in(column: str, values: list[str], params: list[SqlParam]) -> str:
    params.extend(values)
    return f"{column} IN ({','.join('?' * len(values))})"


def segment_where(segment: Segment, tz: ZoneInfo) -> tuple[str, list[SqlParam]]:
    """The segment as a WHERE expression over ``people p`` and its parameters ("1" for an
    empty segment)."""
    clauses: list[str] = []
    params: list[SqlParam] = []
    if segment.kinds:
        clauses.append(_in("p.kind", list(segment.kinds), params))
    if segment.statuses:
        clauses.append(_in("p.status", [str(s) for s in segment.statuses], params))
    if segment.lost_reasons or segment.lost_from or segment.lost_to:
        # a lost reason or lost date means a lost lead (a revived one keeps its old reason)
        clauses.append("p.status = 'lost'")
    if segment.lost_reasons:
        clauses.append(_in("p.lost_reason", list(segment.lost_reasons), params))
    if segment.lost_from is not None:
        clauses.append("p.lost_at >= ?")
        params.append(day_start(segment.lost_from, tz))
    if segment.lost_to is not None:
        clauses.append("p.lost_at < ?")
        params.append(day_start(segment.lost_to + timedelta(days=1), tz))
    if segment.score_min is not None:
        clauses.append("p.score >= ?")
        params.append(segment.score_min)
    if segment.score_max is not None:
        clauses.append("p.score <= ?")
        params.append(segment.score_max)
    if segment.sources:
        clauses.append(_in("p.source", [str(s) for s in segment.sources], params))
    if segment.owners:
        named = [o for o in segment.owners if o]
        parts = [_in("p.owner", named, params)] if named else []
        if len(named) < len(segment.owners):  # "" stands for nobody's
            parts.append("p.owner IS NULL OR p.owner = ''")
        clauses.append("(" + " OR ".join(parts) + ")")
    if segment.last_activity_before is not None:
        # the latest activity or call is on or before that day: nothing at or after the next
        bound = day_start(segment.last_activity_before + timedelta(days=1), tz)
        clauses.append(
            "NOT EXISTS (SELECT 1 FROM activities a WHERE a.person_id = p.id AND a.at >= ?)"
            " AND NOT EXISTS (SELECT 1 FROM calls c WHERE c.person_id = p.id"
            " AND c.started_at >= ?)"
        )
        params.extend((bound, bound))
    if segment.last_activity_after is not None:
        bound = day_start(segment.last_activity_after, tz)
        clauses.append(
            "(EXISTS (SELECT 1 FROM activities a WHERE a.person_id = p.id AND a.at >= ?)"
            " OR EXISTS (SELECT 1 FROM calls c WHERE c.person_id = p.id AND c.started_at >= ?))"
        )
        params.extend((bound, bound))
    for tag in dict.fromkeys(segment.tags):
        clauses.append(
            "EXISTS (SELECT 1 FROM person_tags t WHERE t.person_id = p.id AND t.tag = ?)"
        )
        params.append(tag)
    if segment.countries:
        clauses.append(_in("p.country", list(segment.countries), params))
    for question, choices in segment.answers.items():
        if not choices:
            continue
        # answers are stored as JSON (a choice id is a JSON string): compare the JSON text,
        # in both spellings a writer may have used for non-ASCII ids
        encoded = list(
            dict.fromkeys(
                v for c in choices for v in (json.dumps(c, ensure_ascii=False), json.dumps(c))
            )
        )
        params.append(question)
        clauses.append(
            "EXISTS (SELECT 1 FROM qualification_answers q WHERE q.person_id = p.id"
            " AND q.question = ? AND " + _in("q.value", encoded, params) + ")"
        )
    if segment.rfm_segments:
        clauses.append(
            "EXISTS (SELECT 1 FROM person_metrics m WHERE m.person_id = p.id"
            " AND m.metric = 'rfm_segment' AND "
            + _in("m.label", list(segment.rfm_segments), params)
            + ")"
        )
    if segment.churn_risk_min is not None:
        clauses.append(
            "EXISTS (SELECT 1 FROM person_metrics m WHERE m.person_id = p.id"
            " AND m.metric = 'churn_30' AND m.value >= ?)"
        )
        params.append(segment.churn_risk_min)
    return (" AND ".join(clauses) or "1"), params


def _conn(db: Database | aiosqlite.Connection) -> aiosqlite.Connection:
    return db.conn if isinstance(db, Database) else db


async def count_segment(
    db: Database | aiosqlite.Connection, segment: Segment, tz: ZoneInfo
) -> SegmentCount:
    """Count who the segment holds now, who of them can be e-mailed and who called."""
    where, params = segment_where(segment, tz)
    rows = await _conn(db).execute_fetchall(
        "SELECT CASE WHEN p.status = 'lost' THEN p.lost_reason END, count(*),"
        f" sum({EMAILABLE_SQL}), sum({CALLABLE_SQL})"
        f" FROM people p WHERE {where} GROUP BY 1",
        params,
    )
    total = emailable = reachable = 0
    by_reason: dict[str, int] = {}
    for reason, n, mails, calls in rows:
        total += n
        emailable += mails or 0
        reachable += calls or 0
        if reason is not None:
            by_reason[reason] = n
    return SegmentCount(
        total=total, emailable=emailable, callable=reachable, by_lost_reason=by_reason
    )


async def matching_ids(
    conn: Database | aiosqlite.Connection,
    segment: Segment,
    tz: ZoneInfo,
    *,
    after_id: int = 0,
    limit: int = 1000,
) -> list[int]:
    """Ids of the people the segment holds, ascending, after ``after_id`` (a cursor)."""
    where, params = segment_where(segment, tz)
    rows = await _conn(conn).execute_fetchall(
        f"SELECT p.id FROM people p WHERE p.id > ? AND {where} ORDER BY p.id LIMIT ?",
        [after_id, *params, limit],
    )
    return [int(r[0]) for r in rows]
