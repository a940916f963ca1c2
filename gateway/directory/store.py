"""The caller directory's tables: CRM records and their numbers, by E.164, in the store file.

Writes go through the store's write connection, one transaction per pulled page together with
the cursor it ends at, so a crash resumes exactly after the last page kept. The lookup reads
through the store's synchronous reader (``gateway/store/db.py`` says why), one indexed query.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from connectors.base import DirectoryRecord
from gateway.errors import InvalidNumber
from gateway.lookup.card import CallerCard, PersonKind
from gateway.lookup.numbers import normalize
from gateway.store.db import Database, NumberListener

# when one number is in several CRM records: people before companies, contacts before leads
_KIND_RANK = {"contact": 0, "lead": 1, "account": 2}


@dataclass(frozen=True, slots=True)
class SyncState:
    """Where one (connector, module) pull stands; what ``/health`` shows of it."""

    connector: str
    module: str
    cursor: str = ""
    pass_no: int = 0
    pass_cursor: str | None = None  # a full pass is under way (resumes here after a crash)
    pass_started: float | None = None
    last_full_at: float | None = None
    last_sync_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    records: int = 0  # a deal module's: its deals (attached or waiting)
    numbers: int = 0
    waiting: int = 0  # a deal module's deals whose customer is not known here


@dataclass(frozen=True, slots=True)
class PageResult:
    """What applying one page did."""

    stored: int  # records written (new or changed)
    deleted: int  # records the CRM reported deleted, removed here
    numbers: int  # numbers indexed
    unparsable: tuple[str, ...]  # phone texts that are no phone number (logged, not stored)


class DirectoryStore:
    """Reads and writes the directory tables of one store."""

    def __init__(
        self,
        db: Database,
        default_region: str,
        connector_order: Sequence[str] = (),
    ) -> None:
        self.db = db
        self.region = default_region
        # a number in two CRMs: the one listed first in the config wins, as in live lookups
        self._rank = {name: i for i, name in enumerate(connector_order)}

    def watch(self, listener: NumberListener) -> None:
        self.db.watch_numbers(listener)

    # -- lookup (hot path) ----------------------------------------------------------------

    def find(
        self, e164: str, connector: str | None = None
    ) -> CallerCard | Awaitable[CallerCard | None] | None:
        """The card of the CRM record holding ``e164`` (in ``connector`` only, if given): at
        once on SQLite, as an awaitable on PostgreSQL (as the store's own cards)."""
        if self.db.engine != "sqlite":
            return self._find_async(e164, connector)
        return self._best(e164, connector, self.db.reader.execute(_FIND, (e164,)).fetchall())

    async def _find_async(self, e164: str, connector: str | None) -> CallerCard | None:
        return self._best(
            e164, connector, list(await self.db.lookup_conn.execute_fetchall(_FIND, (e164,)))
        )

    def _best(self, e164: str, connector: str | None, rows: list[Any]) -> CallerCard | None:
        if connector is not None:
            rows = [r for r in rows if r[0] == connector]
        if not rows:
            return None
        best = min(
            rows,
            key=lambda r: (self._rank.get(r[0], len(self._rank)), _KIND_RANK.get(r[3], 3), r[2]),
        )
        name, module, rid, kind, display, company, account, owner, status, url, extra = best
        record = DirectoryRecord(
            module=module,
            record_id=rid,
            kind=PersonKind(kind),
            display_name=display,
            company=company,
            account_id=account,
            owner=owner,
            lead_status=status,
            external_url=url,
            extra=_extra(extra),
        )
        return record.card(e164, name)

    def finder(self, connector: str) -> Callable[[str], Awaitable[CallerCard | None]]:
        """``await find(raw)`` for one connector, with any spelling of the number (the
        write-backs'), on either engine."""

        async def find(raw: str) -> CallerCard | None:
            try:
                e164 = normalize(raw, self.region).e164
            except InvalidNumber:
                return None
            found = self.find(e164, connector)
            return await found if isinstance(found, Awaitable) else found

        return find

    # -- pulls ----------------------------------------------------------------------------

    def e164_of(self, raw: str) -> str | None:
        try:
            return normalize(raw, self.region).e164
        except InvalidNumber:
            return None

    async def apply_page(
        self,
        connector: str,
        module: str,
        records: Iterable[DirectoryRecord],
        *,
        seen_pass: int,
        cursor: str,
        full_pass: bool,
        now: float,
    ) -> PageResult:
        """Store one pulled page and the cursor after it, in one transaction."""
        live: list[tuple[object, ...]] = []
        phones: list[tuple[str, str, str, str, str]] = []
        gone: list[tuple[str, str, str]] = []
        keys: list[tuple[str, str, str]] = []
        unparsable: list[str] = []
        for rec in records:
            key = (connector, rec.module or module, rec.record_id)
            keys.append(key)
            if rec.deleted:
                gone.append(key)
                continue
            live.append(
                (
                    *key,
                    rec.kind.value,
                    rec.display_name,
                    rec.company,
                    rec.account_id,
                    rec.owner,
                    rec.lead_status,
                    rec.external_url,
                    json.dumps(rec.extra, ensure_ascii=False),
                    seen_pass,
                    now,
                )
            )
            seen: set[str] = set()
            for raw in rec.phones:
                if not raw.strip():
                    continue
                e164 = self.e164_of(raw)
                if e164 is None:
                    unparsable.append(raw)
                elif e164 not in seen:
                    seen.add(e164)
                    phones.append((*key, e164, raw))
        touched = {p[3] for p in phones}
        # a handful of statements per page, not per record: each is a hop to the store's thread
        async with self.db.transaction() as conn:
            async with conn.execute(
                "SELECT p.e164 FROM json_each(?) j JOIN crm_directory_phones p"
                " ON p.connector = json_extract(j.value, '$[0]')"
                " AND p.module = json_extract(j.value, '$[1]')"
                " AND p.record_id = json_extract(j.value, '$[2]')",
                (json.dumps(keys),),
            ) as cur:
                touched.update(r[0] for r in await cur.fetchall())
            await conn.executemany(
                "DELETE FROM crm_directory_phones"
                " WHERE connector = ? AND module = ? AND record_id = ?",
                keys,
            )
            deleted = 0
            if gone:
                cur = await conn.executemany(
                    "DELETE FROM crm_directory WHERE connector = ? AND module = ?"
                    " AND record_id = ?",
                    gone,
                )
                deleted = max(cur.rowcount, 0)
            await conn.executemany(
                "INSERT OR REPLACE INTO crm_directory (connector, module, record_id, kind,"
                " display_name, company, account_id, owner, lead_status, external_url,"
                " extra, seen_pass, synced_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                live,
            )
            await conn.executemany(
                "INSERT INTO crm_directory_phones (connector, module, record_id, e164, raw)"
                " VALUES (?, ?, ?, ?, ?)",
                phones,
            )
            column = "pass_cursor" if full_pass else "cursor"
            await conn.execute(
                f"UPDATE crm_directory_state SET {column} = ? WHERE connector = ? AND module = ?",
                (cursor, connector, module),
            )
            self.db.numbers_changed(touched)
        return PageResult(len(live), deleted, len(phones), tuple(unparsable))

    async def state(self, connector: str, module: str) -> SyncState:
        """The saved state (created empty on first use)."""
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT OR IGNORE INTO crm_directory_state (connector, module) VALUES (?, ?)",
                (connector, module),
            )
        async with self.db.conn.execute(
            _STATE + " WHERE s.connector = ? AND s.module = ?",
            (
                connector,
                module,
            ),
        ) as cur:
            row = await cur.fetchone()
        assert row is not None
        return SyncState(*row)

    async def states(self) -> list[SyncState]:
        async with self.db.conn.execute(_STATE + " ORDER BY s.connector, s.module") as cur:
            return [SyncState(*r) for r in await cur.fetchall()]

    async def begin_pass(self, connector: str, module: str, now: float) -> int:
        """Start a full pass; returns its number."""
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE crm_directory_state SET pass_no = pass_no + 1, pass_cursor = '',"
                " pass_started = ? WHERE connector = ? AND module = ?",
                (now, connector, module),
            )
        return (await self.state(connector, module)).pass_no

    async def finish_pass(
        self, connector: str, module: str, pass_no: int, cursor: str, now: float
    ) -> int:
        """End a full pass: forget the records it did not see (deleted in the CRM), carry on
        incrementally from where it ended. Returns how many records were swept."""
        async with self.db.transaction() as conn:
            where = "connector = ? AND module = ? AND seen_pass < ?"
            args = (connector, module, pass_no)
            async with conn.execute(
                "SELECT DISTINCT p.e164 FROM crm_directory_phones p JOIN crm_directory d"
                " USING (connector, module, record_id)"
                " WHERE d.connector = ? AND d.module = ? AND d.seen_pass < ?",
                args,
            ) as cur:
                gone_numbers = {r[0] for r in await cur.fetchall()}
            await conn.execute(
                "DELETE FROM crm_directory_phones WHERE (connector, module, record_id) IN"
                f" (SELECT connector, module, record_id FROM crm_directory WHERE {where})",
                args,
            )
            cur = await conn.execute(f"DELETE FROM crm_directory WHERE {where}", args)
            swept = max(cur.rowcount, 0)
            await conn.execute(
                "UPDATE crm_directory_state SET pass_cursor = NULL, cursor = ?,"
                " last_full_at = ?, last_sync_at = ?, last_error = NULL"
                " WHERE connector = ? AND module = ?",
                (cursor, now, now, connector, module),
            )
            self.db.numbers_changed(gone_numbers)
        return swept

    async def caught_up(self, connector: str, module: str, now: float) -> None:
        await self._set(connector, module, "last_sync_at = ?, last_error = NULL", (now,))

    async def failed(self, connector: str, module: str, error: str, now: float) -> None:
        await self._set(connector, module, "last_error = ?, last_error_at = ?", (error[:500], now))

    async def _set(
        self, connector: str, module: str, assignments: str, args: tuple[object, ...]
    ) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                f"UPDATE crm_directory_state SET {assignments} WHERE connector = ? AND module = ?",
                (*args, connector, module),
            )


def _extra(text: str) -> dict[str, str]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


_FIND = """
SELECT d.connector, d.module, d.record_id, d.kind, d.display_name, d.company, d.account_id,
       d.owner, d.lead_status, d.external_url, d.extra
FROM crm_directory_phones p
JOIN crm_directory d USING (connector, module, record_id)
WHERE p.e164 = ?
LIMIT 50
"""

_STATE = """
SELECT s.connector, s.module, s.cursor, s.pass_no, s.pass_cursor, s.pass_started,
       s.last_full_at, s.last_sync_at, s.last_error, s.last_error_at,
       (SELECT COUNT(*) FROM crm_directory d
        WHERE d.connector = s.connector AND d.module = s.module)
       + (SELECT COUNT(*) FROM crm_deals x
          WHERE x.connector = s.connector AND x.module = substr(s.module, 7)
            AND s.module LIKE 'deals:%'),
       (SELECT COUNT(*) FROM crm_directory_phones p
        WHERE p.connector = s.connector AND p.module = s.module),
       (SELECT COUNT(*) FROM crm_deals x
        WHERE x.connector = s.connector AND x.module = substr(s.module, 7)
          AND s.module LIKE 'deals:%' AND x.waiting IS NOT NULL)
FROM crm_directory_state s
"""
