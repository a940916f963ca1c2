"""The call log: every finished call stored once, searchable, and attached to its person.

A record's ``id`` is ``<pbx>:<linkedid>``; the tracker may report the same end twice (after a
resync), so :meth:`CallLog.save` is idempotent on it. The call becomes a ``call`` activity of the
contact or lead whose number is the caller's (inbound) or the dialed one (outbound).
"""

from __future__ import annotations

import base64
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.calls.model import Direction, Outcome
from gateway.errors import InvalidNumber
from gateway.lookup.numbers import normalize
from gateway.store.db import Database, SqlParam
from gateway.store.repositories import MAX_PAGE, numbers_of_people

log = logging.getLogger("gateway.store")

_TEXT = (
    "linkedid",
    "pbx",
    "direction",
    "caller",
    "caller_name",
    "did",
    "dialed",
    "queue",
    "answered_by",
    "outcome",
    "hangup_cause",
    "notes",
    "disposition",
)
_DIRECTIONS = tuple(d.value for d in Direction)
_OUTCOMES = tuple(o.value for o in Outcome)
_TIMES = (
    "answered_at",
    "ended_at",
    "ring_seconds",
    "queue_wait_seconds",
    "talk_seconds",
    "total_seconds",
)
_LISTS = ("agents_rang", "agents_answered", "transfers", "recordings", "warnings")
# the columns are NOT NULL TEXT (schema version 3); an absent value is stored as "" and read
# back as the tracker's null, so a record reads the same from the log as from ``replay``
_NULLABLE_TEXT = (
    "caller",
    "caller_name",
    "did",
    "dialed",
    "queue",
    "answered_by",
    "hangup_cause",
    "notes",
    "disposition",
)


class CallRecordError(ValueError):
    """A call record misses what the log needs (its id, a start time)."""


@dataclass(frozen=True, slots=True)
class CallPage:
    items: list[dict[str, Any]]
    next_cursor: str | None  # pass back as ``cursor`` for the next page in the same order


class CallLog:
    """Stores finished call records; reads them back for the API and the panel."""

    def __init__(self, db: Database, default_region: str = "ES") -> None:
        self.db = db
        self.default_region = default_region

    async def save(self, record: Mapping[str, Any]) -> bool:
        """Store a finished call; False when a call with this id is already stored.

        The id is ``record["id"]``, or ``"<pbx>:<linkedid>"`` when the record has none."""
        row = self._row(record)
        direction = row["direction"]
        row["caller_e164"] = self._e164(row["caller"])
        row["other_e164"] = self._e164(row["dialed"] if direction == "outbound" else row["did"])
        match_number = row["caller_e164"] if direction == "inbound" else None
        if direction == "outbound":
            match_number = row["other_e164"]
        async with self.db.transaction() as conn:
            if match_number:
                rows = list(
                    await conn.execute_fetchall(
                        "SELECT min(person_id) FROM phones"
                        " WHERE e164 = ? AND person_id IS NOT NULL",
                        (match_number,),
                    )
                )
                row["person_id"] = rows[0][0] if rows else None
            names = list(row)
            cur = await conn.execute(
                f"INSERT OR IGNORE INTO calls ({','.join(names)})"
                f" VALUES ({','.join('?' * len(names))})",
                [row[n] for n in names],
            )
            if not cur.rowcount:
                return False
            agents = set(json.loads(row["agents_rang"])) | set(json.loads(row["agents_answered"]))
            if row["answered_by"]:
                agents.add(row["answered_by"])
            await conn.executemany(
                "INSERT OR IGNORE INTO call_agents (call_id, ext) VALUES (?, ?)",
                [(row["id"], str(ext)) for ext in agents],
            )
            if row["person_id"] is not None:
                await conn.execute(
                    "INSERT OR IGNORE INTO activities (person_id, kind, at, summary, call_id)"
                    " VALUES (?, 'call', ?, ?, ?)",
                    (row["person_id"], row["started_at"], _summary(row), row["id"]),
                )
                self.db.numbers_changed(await numbers_of_people(conn, [row["person_id"]]))
        return True

    async def correct(self, record: Mapping[str, Any]) -> bool:
        """Replace what the tracker said of a stored call with a corrected record (a Cdr
        arrived after the Hangup); True when the row changed. The agent's notes and
        disposition stay; a call not stored yet is saved."""
        row = self._row(record)
        keep = {"id", "notes", "disposition", "person_id", "saved_at"}
        names = [n for n in row if n not in keep]
        async with self.db.transaction() as conn:
            found = list(
                await conn.execute_fetchall(
                    f"SELECT {','.join(names)} FROM calls WHERE id = ?", (row["id"],)
                )
            )
            if found and all(found[0][i] == row[n] for i, n in enumerate(names)):
                return False
            if found:
                await conn.execute(
                    f"UPDATE calls SET {','.join(n + ' = ?' for n in names)} WHERE id = ?",
                    [*(row[n] for n in names), row["id"]],
                )
                return True
        return await self.save(record)

    def _e164(self, number: str) -> str | None:
        if not number:
            return None
        try:
            return normalize(number, self.default_region).e164
        except InvalidNumber:
            return None  # an extension or junk: kept as text, never matched to a person

    def _row(self, record: Mapping[str, Any]) -> dict[str, Any]:
        call_id = record.get("id")
        if call_id is None and record.get("pbx") and record.get("linkedid"):
            call_id = f"{record['pbx']}:{record['linkedid']}"
        if not isinstance(call_id, str) or not call_id or len(call_id) > 200:
            raise CallRecordError(f"call record needs an 'id' text, got {call_id!r}"[:200])
        row: dict[str, Any] = {"id": call_id}
        for f in _TEXT:
            v = record.get(f)
            row[f] = "" if v is None else str(v)[:2000]
        started = _number(record.get("started_at"))
        if started is None:
            started = _number(record.get("ended_at"))
        if started is None:
            raise CallRecordError(f"call record {call_id!r} has no started_at")
        row["started_at"] = started
        for f in _TIMES:
            row[f] = _number(record.get(f))
        for f in _LISTS:
            v = record.get(f)
            row[f] = json.dumps(list(v) if isinstance(v, list | tuple) else [], default=str)
        row["click_to_call"] = int(bool(record.get("click_to_call")))
        row["reconstructed"] = int(bool(record.get("reconstructed")))
        cid = record.get("call_id")
        row["call_id"] = None if cid is None else str(cid)[:200]
        row["person_id"] = None
        row["saved_at"] = self.db.clock()
        return row

    async def get(self, call_id: str, participant: str | None = None) -> dict[str, Any] | None:
        """One call; with ``participant``, only if that panel user took part in it."""
        sql, args = "SELECT * FROM calls WHERE id = ?", [call_id]
        if participant is not None:
            sql += " AND id IN (SELECT call_id FROM call_users WHERE username = ?)"
            args.append(participant)
        rows = list(await self.db.conn.execute_fetchall(sql, args))
        return _record(rows[0]) if rows else None

    async def annotate(
        self, call_id: str, *, notes: str | None = None, disposition: str | None = None
    ) -> bool:
        """Set the agent's notes/disposition after the call; False when the call is unknown."""
        sets = {k: v for k, v in (("notes", notes), ("disposition", disposition)) if v is not None}
        if not sets:
            return await self.get(call_id) is not None
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                f"UPDATE calls SET {', '.join(f'{k} = ?' for k in sets)} WHERE id = ?",
                [*sets.values(), call_id],
            )
            return bool(cur.rowcount)

    async def list(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        extension: str | None = None,
        outcome: str | None = None,
        number: str | None = None,
        direction: str | None = None,
        person_id: int | None = None,
        participant: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        oldest_first: bool = False,
    ) -> CallPage:
        """Newest first (``oldest_first`` for the other way). ``number`` matches caller, DID
        or dialed (as stored or normalized); ``extension`` matches any extension that rang or
        answered; ``since``/``until`` bound ``started_at`` (``until`` exclusive)."""
        limit = max(1, min(int(limit), MAX_PAGE))
        where = ["1 = 1"]
        args: list[SqlParam] = []
        if since is not None:
            where.append("c.started_at >= ?")
            args.append(since)
        if until is not None:
            where.append("c.started_at < ?")
            args.append(until)
        if outcome:
            where.append("c.outcome = ?")
            args.append(outcome)
        if direction:
            where.append("c.direction = ?")
            args.append(direction)
        if person_id is not None:
            where.append("c.person_id = ?")
            args.append(person_id)
        if extension:
            where.append("c.id IN (SELECT call_id FROM call_agents WHERE ext = ?)")
            args.append(extension)
        if participant is not None:  # a panel user who rang, answered or originated it
            where.append("c.id IN (SELECT call_id FROM call_users WHERE username = ?)")
            args.append(participant)
        if number:
            e164 = self._e164(number)
            clause = "c.caller = ? OR c.did = ? OR c.dialed = ?"
            args += [number, number, number]
            if e164:
                clause += " OR c.caller_e164 = ? OR c.other_e164 = ?"
                args += [e164, e164]
            where.append(f"({clause})")
        op, order = (">", "ASC") if oldest_first else ("<", "DESC")
        if cursor:
            started, last_id = decode_cursor(cursor, oldest_first)
            where.append(f"(c.started_at {op} ? OR (c.started_at = ? AND c.id {op} ?))")
            args += [started, started, last_id]
        rows = list(
            await self.db.conn.execute_fetchall(
                f"SELECT c.* FROM calls c WHERE {' AND '.join(where)}"
                f" ORDER BY c.started_at {order}, c.id {order} LIMIT ?",
                [*args, limit + 1],
            )
        )
        items = [_record(r) for r in rows[:limit]]
        nxt = None
        if len(rows) > limit:
            last = items[-1]
            nxt = encode_cursor(last["started_at"], last["id"], oldest_first)
        return CallPage(items, nxt)


def encode_cursor(started_at: float, call_id: str, oldest_first: bool = False) -> str:
    raw = json.dumps([started_at, call_id, "asc" if oldest_first else "desc"]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, oldest_first: bool = False) -> tuple[float, str]:
    """Raises CallRecordError for a cursor we did not make, or made for the other order."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        started, call_id, order = json.loads(raw)
        if isinstance(started, bool) or not isinstance(started, int | float):
            raise TypeError
        if not isinstance(call_id, str) or order != ("asc" if oldest_first else "desc"):
            raise TypeError
        if not math.isfinite(started):
            raise TypeError
    except (ValueError, TypeError, RecursionError) as e:
        raise CallRecordError("not a cursor this API returned for this order") from e
    return float(started), call_id


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _record(r: Any) -> dict[str, Any]:
    """A stored row as the tracker's record (``CallRecord.to_json()``) plus the log's own
    fields (``id``, ``caller_e164``, ``notes``, ``disposition``, ``person_id``)."""
    # sqlite3.Row iterates over values, so the column names need keys()
    d = {k: r[k] for k in r.keys() if k not in ("other_e164", "saved_at")}  # noqa: SIM118
    for f in _LISTS:
        d[f] = json.loads(d[f])
    for f in _NULLABLE_TEXT:
        d[f] = d[f] or None
    # the tracker always knows both; a record saved by hand without them reads as null
    d["direction"] = d["direction"] if d["direction"] in _DIRECTIONS else None
    d["outcome"] = d["outcome"] if d["outcome"] in _OUTCOMES else None
    d["click_to_call"] = bool(d["click_to_call"])
    d["reconstructed"] = bool(d["reconstructed"])
    return d


def _summary(row: Mapping[str, Any]) -> str:
    parts = [f"{row['direction'] or 'call'} call, {row['outcome'] or 'unknown outcome'}"]
    if row["answered_by"]:
        parts.append(f"answered by {row['answered_by']}")
    if row["talk_seconds"]:
        parts.append(f"talk {row['talk_seconds']:.0f} s")
    return ", ".join(parts)
