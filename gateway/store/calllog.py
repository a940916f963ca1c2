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
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import phonenumbers

from gateway.calls.model import Direction, Outcome
from gateway.errors import InvalidNumber
from gateway.lookup.numbers import display_format, normalize, to_ascii_digits
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
_NULLABLE_TEXT = tuple(
    f
    for f in _TEXT
    if f not in ("linkedid", "pbx", "direction", "outcome")  # always given
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
            clause, more = number_filter(number, self.default_region)
            where.append(clause)
            args += more
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


async def queue_calls(db: Database, since: float, until: float) -> list[dict[str, Any]]:
    """The finished queue calls that started in ``[since, until)``, oldest first, with the
    fields the wallboard counts: a restarted gateway refills today's queue figures from them
    (``gateway/panel/wallboard_feed.py``)."""
    rows = await db.conn.execute_fetchall(
        "SELECT pbx, linkedid, queue, outcome, started_at, answered_at, ended_at,"
        " queue_wait_seconds, talk_seconds, answered_by FROM calls"
        " WHERE started_at >= ? AND started_at < ? AND queue != ''"
        " ORDER BY started_at, id",
        (since, until),
    )
    return [{k: r[k] for k in r.keys()} for r in rows]  # noqa: SIM118


MIN_SUFFIX_DIGITS = 3  # "0132": the end of a number is how people remember it


def number_filter(raw: str, default_region: str) -> tuple[str, list[SqlParam]]:
    """A WHERE clause (on ``calls c``) finding the calls of a number however it was typed.

    The outside party (caller, DID or dialed) matches when it is the same number in E.164
    (``+1 (415) 555-0132``, ``0014155550132``), when its E.164 or raw form ends with the typed
    digits (``4155550132`` typed without the country code, ``0132`` as a partial search), when
    the caller or dialed number starts with them (as the PBX gave it, or after the country
    code of the default region: ``600111`` finds ``+34600111222``), or when the
    raw text is identical (``anonymous``). Input without a digit matches only raw.
    """
    text = to_ascii_digits(str(raw))[:64].strip()
    clauses = ["c.caller = ?", "c.did = ?", "c.dialed = ?"]
    args: list[SqlParam] = [text, text, text]
    digits = re.sub(r"\D", "", text)[:20]
    if digits:
        try:
            e164: str | None = normalize(text, default_region).e164
        except InvalidNumber:
            e164 = None
        if e164:
            clauses += ["c.caller_e164 = ?", "c.other_e164 = ?"]
            args += [e164, e164]
        international = text.startswith("+") or digits.startswith("00")
        if len(digits) >= MIN_SUFFIX_DIGITS and not international:
            # digits only: no LIKE wildcard can come from the input. The end of any form of
            # the number, or the start of the caller/dialed number as the PBX gave it; not
            # digits in the middle (every number "containing" 0132 is noise, not a match)
            ends, starts = "%" + digits, digits + "%"
            for column in ("c.caller_e164", "c.other_e164", "c.caller", "c.dialed", "c.did"):
                clauses.append(f"{column} LIKE ?")
                args.append(ends)
            clauses += ["c.caller LIKE ?", "c.dialed LIKE ?"]
            args += [starts, starts]
            cc = phonenumbers.country_code_for_region((default_region or "").upper())
            if cc and not digits.startswith("0"):  # the start of a number of our own country
                national = f"+{cc}{digits}%"
                clauses.append(
                    "(c.caller_e164 LIKE ? OR (c.direction = 'outbound' AND c.other_e164 LIKE ?))"
                )
                args += [national, national]
    return f"({' OR '.join(clauses)})", args


async def display_fields(
    db: Database, rows: list[Any], default_region: str
) -> list[dict[str, Any]]:
    """What a person reads in a history row, for each stored call row (same order):
    ``number_e164`` and ``number_display`` of the outside party, ``contact_name`` (the store's
    person, else the CRM directory's card, else the caller ID name) and ``agent_names``
    (display names of the panel users on the call; ``answered_by_name`` for the extension
    that answered)."""
    out: list[dict[str, Any]] = [{} for _ in rows]
    person_ids = {r["person_id"] for r in rows if r["person_id"] is not None}
    people: dict[int, str] = {}
    if person_ids:
        marks = ",".join("?" * len(person_ids))
        for p in await db.conn.execute_fetchall(
            f"SELECT id, first_name, last_name FROM people WHERE id IN ({marks})",
            list(person_ids),
        ):
            people[p["id"]] = f"{p['first_name']} {p['last_name']}".strip()
    e164s = [_outside_e164(r) for r in rows]
    wanted = {e for e in e164s if e}
    directory: dict[str, str] = {}
    if wanted:
        marks = ",".join("?" * len(wanted))
        for found in await db.conn.execute_fetchall(
            "SELECT p.e164, min(d.display_name) AS name FROM crm_directory_phones p"
            " JOIN crm_directory d USING (connector, module, record_id)"
            f" WHERE p.e164 IN ({marks}) AND d.display_name != '' GROUP BY p.e164",
            list(wanted),
        ):
            directory[found["e164"]] = found["name"]
    users: dict[str, tuple[str, list[str]]] = {}
    for u in await db.conn.execute_fetchall("SELECT username, display_name, extensions FROM users"):
        try:
            exts = [str(e) for e in json.loads(u["extensions"] or "[]")]
        except ValueError:
            exts = []
        users[u["username"]] = (u["display_name"] or u["username"], exts)
    for i, r in enumerate(rows):
        e164 = e164s[i]
        d = out[i]
        d["number_e164"] = e164
        d["number_display"] = display_format(e164, default_region) if e164 else None
        d["contact_name"] = (
            people.get(r["person_id"]) or directory.get(e164 or "") or r["caller_name"] or None
        )
        names = [n for n in (r["users"] or "").split(",") if n] if "users" in r.keys() else []  # noqa: SIM118
        if not names:  # nobody was signed in on those phones: their usual owners
            rang = r["agents_rang"] if "agents_rang" in r.keys() else "[]"  # noqa: SIM118
            try:
                exts = [str(e) for e in json.loads(rang or "[]")]
            except ValueError:
                exts = []
            names = [n for e in exts for n, (_, own) in users.items() if e in own]
        d["agent_names"] = [users[n][0] if n in users else n for n in dict.fromkeys(names)]
        answered = r["answered_by"] or ""
        takers = [n for n in names if n in users and answered in users[n][1]]
        if not takers:
            takers = [n for n, (_, exts) in users.items() if answered and answered in exts]
        d["answered_by_name"] = users[takers[0]][0] if len(takers) == 1 else None
    return out


def _outside_e164(r: Any) -> str | None:
    if r["direction"] == "outbound":
        return r["other_e164"] or None
    return r["caller_e164"] or None


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
