"""Deals pulled from each CRM into the store, so the customer metrics (``gateway/intel/``) count
what people bought there: SuiteCRM opportunities, vTiger potentials, Odoo sale orders.

The pull is the caller directory's (``gateway/directory/sync.py``): a full pass at first, then
what changed by modification time, a page and its cursor per transaction, a full pass again
every ``full_every_s`` to notice deletions the CRM cannot report. What is particular to deals:

- **Whose deal.** A deal counts for a person of the store (``people``), found from the CRM
  records it is linked to (``DealParty``: its contact, its company): by one of their e-mail
  addresses first (one person's own), then by their numbers (the caller directory's copy of
  that record, else the numbers as the CRM sent them). A company found among the store's
  accounts makes it the account's deal as well (every person of the account sees it).
- **Nobody here.** A deal whose customer the store does not know is given to nobody: it is
  counted (``waiting`` in the report and ``/health``), logged, and kept aside with its data;
  after a sync it is tried again if a person, number or address was added meanwhile, so it
  is attached once the customer is added, with no CRM request.
- **Once.** A deal is written under ``external_id`` ``<connector>:<module>:<id>``: pulling it
  again updates it (or leaves it alone when nothing changed), never doubles it.
- **Metrics follow.** After each page, the people whose purchases changed (before and after:
  a deal moved to someone else changes both) are published as ``DealsChanged``; the metrics
  service recomputes them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import aiosqlite
import msgspec

from connectors.base import DealParty, DealRecord, DealSource
from connectors.settings import DealSettings, DirectorySettings
from gateway.directory.store import DirectoryStore
from gateway.errors import ConnectorError
from gateway.lookup.card import PersonKind
from gateway.store.deals import (
    ExternalDeal,
    Owners,
    delete_deals,
    people_of,
    stored_external,
    write_external,
)
from gateway.store.events import DealsChanged

log = logging.getLogger("gateway.directory.deals")

STATE_PREFIX = "deals:"  # a deal module's row in crm_directory_state: "deals:Opportunities"
RETRY_BATCH = 500  # waiting deals tried again per transaction


def state_module(module: str) -> str:
    """The module name a deal module's pull position is kept under."""
    return STATE_PREFIX + module


@dataclass(frozen=True, slots=True)
class DealReport:
    """What one sync of one deal module did (also the log line's figures)."""

    connector: str
    module: str
    full: bool
    pages: int
    stored: int  # deals written or found unchanged, each attached to someone here
    waiting: int  # deals whose customer is unknown here, after this sync
    attached: int  # waiting deals attached by this sync (their customer was added)
    removed: int  # deals the CRM reported deleted (or took away from anyone known here)
    swept: int  # deals a full pass no longer saw
    people: int  # people whose purchases changed
    seconds: float


@dataclass(frozen=True, slots=True)
class _Applied:
    stored: int
    removed: int
    waiting: tuple[DealRecord, ...]
    people: frozenset[int]


@dataclass(frozen=True, slots=True)
class _Found:
    """What the store says about the customers of a page of deals (a few queries a page)."""

    numbers: dict[DealParty, list[str]]  # the directory's numbers of it, then the CRM's, E.164
    by_email: dict[str, int]  # lower-case address -> person
    by_number: dict[str, tuple[int | None, int | None]]  # E.164 -> (person, account)
    owners: dict[int, str | None]  # person -> owner agent


class DealStore:
    """Writes pulled deals into the store: each one's customer found, written once, its pull
    position kept with it (in the caller directory's state table). A page costs a handful of
    statements plus one per deal that changed: each is a hop to the store's thread."""

    def __init__(self, directory: DirectoryStore, tz: ZoneInfo) -> None:
        self.directory = directory
        self.db = directory.db
        self.tz = tz
        # (connector, module) -> the store's fingerprint when its waiting deals were last tried
        self._tried: dict[tuple[str, str], tuple[object, ...]] = {}

    # -- whose deal ---------------------------------------------------------------------------

    async def _find(
        self, conn: aiosqlite.Connection, connector: str, records: Sequence[DealRecord]
    ) -> _Found:
        parties = [p for r in records for p in r.parties]
        keys = sorted({(p.module, p.record_id) for p in parties})
        directory: dict[tuple[str, str], list[str]] = {}
        if keys:
            # CROSS JOIN keeps the page's keys as the outer loop: left to itself, SQLite
            # walks all of the connector's rows and looks each up in the page's list
            rows = await conn.execute_fetchall(
                "SELECT json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]'), p.e164"
                " FROM json_each(?) j CROSS JOIN crm_directory_phones p WHERE p.connector = ?"
                " AND p.module = json_extract(j.value, '$[0]')"
                " AND p.record_id = json_extract(j.value, '$[1]') ORDER BY 1, 2, 3",
                (json.dumps(keys), connector),
            )
            for module, rid, e164 in rows:
                directory.setdefault((str(module), str(rid)), []).append(str(e164))
        emails = sorted({e for p in parties for e in _emails(p)})
        of_party = {p: directory.get((p.module, p.record_id), []) + self._typed(p) for p in parties}
        numbers = {n for ns in of_party.values() for n in ns}
        by_email: dict[str, int] = {}
        if emails:
            rows = await conn.execute_fetchall(
                "SELECT e.email_lower, min(e.person_id) FROM json_each(?) j"
                " JOIN emails e ON e.email_lower = j.value GROUP BY e.email_lower",
                (json.dumps(emails),),
            )
            by_email = {str(a): int(pid) for a, pid in rows}
        by_number: dict[str, tuple[int | None, int | None]] = {}
        if numbers:
            rows = await conn.execute_fetchall(
                "SELECT ph.e164, min(ph.person_id), min(ph.account_id) FROM json_each(?) j"
                " JOIN phones ph ON ph.e164 = j.value GROUP BY ph.e164",
                (json.dumps(sorted(numbers)),),
            )
            by_number = {str(n): (pid, aid) for n, pid, aid in rows}
        found = _Found(of_party, by_email, by_number, {})
        people = {p for r in records for p in [self._customer(found, r)[0]] if p is not None}
        if people:
            rows = await conn.execute_fetchall(
                "SELECT p.id, p.owner FROM json_each(?) j"
                " JOIN people p ON p.id = CAST(j.value AS BIGINT)",
                (json.dumps(sorted(people)),),
            )
            found.owners.update({int(pid): owner for pid, owner in rows})
        return found

    def _typed(self, party: DealParty) -> list[str]:
        """The party's numbers as the CRM sent them, in E.164 (those that are numbers)."""
        return [n for n in (self.directory.e164_of(raw) for raw in party.phones) if n]

    def _customer(self, found: _Found, rec: DealRecord) -> tuple[int | None, int | None]:
        """(person id, account id) of the store the deal belongs to; (None, None): nobody.
        A person by an e-mail address first (one person's own), then by the numbers of the
        CRM record (the directory's copy, then as the CRM sent them); a company by its
        numbers, among the store's accounts."""
        person: int | None = None
        account: int | None = None
        for party in rec.parties:
            numbers = found.numbers.get(party, [])
            if party.kind is PersonKind.ACCOUNT:
                if account is None:
                    account = next(
                        (a for n in numbers if (a := found.by_number.get(n, (None, None))[1])),
                        None,
                    )
            elif person is None:
                person = next(
                    (found.by_email[e] for e in _emails(party) if e in found.by_email), None
                )
                if person is None:
                    person = next(
                        (p for n in numbers if (p := found.by_number.get(n, (None, None))[0])),
                        None,
                    )
        return person, account

    # -- writing ------------------------------------------------------------------------------

    def _closed_at(self, rec: DealRecord) -> float | None:
        if rec.closed_at is not None:
            return rec.closed_at
        if rec.closed_on is None:
            return None
        d = rec.closed_on
        return datetime(d.year, d.month, d.day, tzinfo=self.tz).timestamp()

    async def _apply(
        self,
        conn: aiosqlite.Connection,
        connector: str,
        module: str,
        items: Sequence[tuple[DealRecord, int]],
        *,
        currency: str,
        now: float,
        retry: bool = False,
    ) -> _Applied:
        """Write (deal, pass that saw it) pairs inside the caller's transaction. A deal whose
        customer is unknown is set aside (``waiting``); when ``retry``, it is left as it is."""
        keys = [(connector, module, rec.record_id) for rec, _ in items]
        rows = await conn.execute_fetchall(  # CROSS JOIN: the page's ids outside (see _find)
            "SELECT c.record_id, c.deal_id FROM json_each(?) j CROSS JOIN crm_deals c"
            " WHERE c.connector = ? AND c.module = ? AND c.record_id = j.value",
            (json.dumps([k[2] for k in keys]), connector, module),
        )
        old_deal = {str(rid): deal for rid, deal in rows}
        live = [(rec, seen) for rec, seen in items if not rec.deleted]
        found = await self._find(conn, connector, [rec for rec, _ in live])
        external = {rec.record_id: f"{connector}:{module}:{rec.record_id}" for rec, _ in live}
        stored_rows = await stored_external(conn, external.values())
        owners: set[Owners] = set()
        dropped: list[int] = []  # deals no longer anyone's here (deleted, or customer unknown)
        gone: list[tuple[str, str, str]] = []
        kept: list[tuple[object, ...]] = []
        stored = removed = 0
        waiting: list[DealRecord] = []
        for rec, seen in items:
            key = (connector, module, rec.record_id)
            customer = next((p.name for p in rec.parties if p.name), "")
            if rec.deleted:
                if rec.record_id in old_deal:
                    gone.append(key)
                    removed += 1
                    if old_deal[rec.record_id] is not None:
                        dropped.append(int(old_deal[rec.record_id]))
                continue
            person, account = self._customer(found, rec)
            if person is None and account is None:
                waiting.append(rec)
                if retry:
                    continue
                if old_deal.get(rec.record_id) is not None:
                    dropped.append(int(old_deal[rec.record_id]))
                    removed += 1  # it was someone's here, and is nobody's now
                kept.append((*key, None, customer, _encode(rec), seen, now))
                continue
            deal_id, changed = await write_external(
                conn,
                ExternalDeal(
                    external_id=external[rec.record_id],
                    person_id=person,
                    account_id=account,
                    title=rec.title,
                    stage=rec.stage,
                    amount=rec.amount,
                    currency=rec.currency or currency,
                    product=rec.product,
                    lost_reason=rec.lost_reason,
                    owner=rec.owner or (found.owners.get(person) if person else None),
                    created_at=rec.created_at,
                    closed_at=self._closed_at(rec),
                ),
                by=f"crm:{connector}",
                now=now,
                old=stored_rows.get(external[rec.record_id]),
            )
            owners |= changed
            stored += 1
            kept.append((*key, deal_id, customer, None, seen, now))
        if dropped:
            owners |= await delete_deals(conn, dropped)
        if gone:
            await conn.executemany(
                "DELETE FROM crm_deals WHERE connector = ? AND module = ? AND record_id = ?", gone
            )
        await conn.executemany(
            "INSERT OR REPLACE INTO crm_deals (connector, module, record_id, deal_id, customer,"
            " waiting, seen_pass, synced_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            kept,
        )
        people = await people_of(conn, owners)
        self._publish(connector, people, now)
        return _Applied(stored, removed, tuple(waiting), frozenset(people))

    def _publish(self, connector: str, people: Iterable[int], now: float) -> None:
        ids = tuple(sorted(set(people)))
        if ids:
            self.db.publish(DealsChanged(ids, now, f"crm:{connector}"))

    async def apply_page(
        self,
        connector: str,
        module: str,
        records: Iterable[DealRecord],
        *,
        currency: str,
        seen_pass: int,
        cursor: str,
        full_pass: bool,
        now: float,
    ) -> _Applied:
        """Store one pulled page and the cursor after it, in one transaction."""
        items = [(_in_module(rec, module), seen_pass) for rec in records]
        async with self.db.transaction() as conn:
            applied = await self._apply(conn, connector, module, items, currency=currency, now=now)
            column = "pass_cursor" if full_pass else "cursor"
            await conn.execute(
                f"UPDATE crm_directory_state SET {column} = ? WHERE connector = ? AND module = ?",
                (cursor, connector, state_module(module)),
            )
        return applied

    async def _fingerprint(self, connector: str) -> tuple[object, ...]:
        """What a waiting deal's customer could be found by: it changes when a person, a
        number, an e-mail address or this CRM's directory does."""
        rows = await self.db.conn.execute_fetchall(
            "SELECT (SELECT max(id) FROM phones), (SELECT max(id) FROM emails),"
            " (SELECT max(synced_at) FROM crm_directory WHERE connector = ?)",
            (connector,),
        )
        return tuple(next(iter(rows)))

    async def retry_waiting(
        self, connector: str, module: str, *, currency: str, now: float
    ) -> tuple[int, set[int]]:
        """Try again the deals whose customer was unknown: (how many are attached now,
        people touched). Nothing is asked of the CRM, and nothing is tried while no number,
        address or directory record was added since the last try (a CRM may hold many deals
        of customers this store never has; a full pass tries each of them anyway)."""
        key = (connector, module)
        fingerprint = await self._fingerprint(connector)
        if self._tried.get(key) == fingerprint:
            return 0, set()
        attached = 0
        people: set[int] = set()
        after = ""
        while True:
            rows = list(
                await self.db.conn.execute_fetchall(
                    "SELECT record_id, waiting, seen_pass FROM crm_deals WHERE connector = ?"
                    " AND module = ? AND waiting IS NOT NULL AND record_id > ?"
                    " ORDER BY record_id LIMIT ?",
                    (connector, module, after, RETRY_BATCH),
                )
            )
            if not rows:
                break
            after = str(rows[-1][0])
            items = [
                (rec, int(seen))
                for _, text, seen in rows
                if (rec := _decode(str(text))) is not None
            ]
            async with self.db.transaction() as conn:
                applied = await self._apply(
                    conn, connector, module, items, currency=currency, now=now, retry=True
                )
            attached += applied.stored
            people |= applied.people
        self._tried[key] = fingerprint
        return attached, people

    async def finish_pass(
        self, connector: str, module: str, pass_no: int, cursor: str, now: float
    ) -> tuple[int, set[int]]:
        """End a full pass: remove the deals it did not see (deleted in the CRM), carry on
        incrementally from where it ended. (How many were swept, people touched.)"""
        where = "connector = ? AND module = ? AND seen_pass < ?"
        args = (connector, module, pass_no)
        async with self.db.transaction() as conn:
            rows = await conn.execute_fetchall(f"SELECT deal_id FROM crm_deals WHERE {where}", args)
            owners = await delete_deals(conn, [int(r[0]) for r in rows if r[0] is not None])
            cur = await conn.execute(f"DELETE FROM crm_deals WHERE {where}", args)
            swept = max(cur.rowcount, 0)
            await conn.execute(
                "UPDATE crm_directory_state SET pass_cursor = NULL, cursor = ?,"
                " last_full_at = ?, last_sync_at = ?, last_error = NULL"
                " WHERE connector = ? AND module = ?",
                (cursor, now, now, connector, state_module(module)),
            )
            people = await people_of(conn, owners)
            self._publish(connector, people, now)
        return swept, people

    async def waiting(self, connector: str, module: str) -> int:
        rows = await self.db.conn.execute_fetchall(
            "SELECT count(*) FROM crm_deals WHERE connector = ? AND module = ?"
            " AND waiting IS NOT NULL",
            (connector, module),
        )
        return int(next(iter(rows))[0])


class DealPuller:
    """Brings one CRM's deal modules up to date (the directory's rules, ``sync.py``)."""

    def __init__(self, store: DealStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    async def sync_module(
        self,
        source: DealSource,
        module: str,
        policy: DirectorySettings,
        settings: DealSettings,
        *,
        full: bool = False,
    ) -> DealReport:
        """Pull what changed (or everything, on a full pass); raises ConnectorError when the
        CRM fails mid-way (what was stored so far stays; the next run resumes after it)."""
        name = source.name
        key = state_module(module)
        directory = self.store.directory
        started = time.monotonic()
        state = await directory.state(name, key)
        now = self.clock()
        due = state.last_full_at is None or now - state.last_full_at >= policy.full_every_s
        is_full = full or due or state.pass_cursor is not None
        if is_full and state.pass_cursor is None:
            pass_no = await directory.begin_pass(name, key, now)
            cursor = ""
            log.info("deals %s %s: full pass %d started", name, module, pass_no)
        elif is_full:
            pass_no, cursor = state.pass_no, state.pass_cursor or ""
            log.info("deals %s %s: full pass %d resumed after a stop", name, module, pass_no)
        else:
            pass_no, cursor = state.pass_no, state.cursor
        pages = stored = removed = unknown = 0
        examples: list[str] = []
        people: set[int] = set()
        try:
            while True:
                page = await source.pull_deals(module, cursor, policy.page_size)
                applied = await self.store.apply_page(
                    name,
                    module,
                    page.records,
                    currency=settings.currency,
                    seen_pass=pass_no,
                    cursor=page.cursor,
                    full_pass=is_full,
                    now=self.clock(),
                )
                pages += 1
                stored += applied.stored
                removed += applied.removed
                people |= applied.people
                unknown += len(applied.waiting)
                examples += [_described(r) for r in applied.waiting[: 3 - len(examples)]]
                if page.cursor == cursor and page.more:
                    raise ConnectorError(f"{name}: deal pull of {module} did not advance; stopped")
                cursor = page.cursor
                if not page.more:
                    break
        except (ConnectorError, TimeoutError) as e:
            await directory.failed(name, key, str(e) or type(e).__name__, self.clock())
            raise
        swept = 0
        if is_full:
            swept, gone = await self.store.finish_pass(name, module, pass_no, cursor, self.clock())
            people |= gone
        else:
            await directory.caught_up(name, key, self.clock())
        if unknown:
            log.warning(
                "deals %s %s: %d deal(s) of customers unknown here, kept aside until they are"
                " added (e.g. %s)",
                name,
                module,
                unknown,
                "; ".join(examples),
            )
        attached, touched = await self.store.retry_waiting(
            name, module, currency=settings.currency, now=self.clock()
        )
        people |= touched
        report = DealReport(
            connector=name,
            module=module,
            full=is_full,
            pages=pages,
            stored=stored,
            waiting=await self.store.waiting(name, module),
            attached=attached,
            removed=removed,
            swept=swept,
            people=len(people),
            seconds=time.monotonic() - started,
        )
        if stored or removed or swept or attached or is_full:
            log.info(
                "deals %s %s: %s sync done: %d deals, %d waiting for their customer"
                " (%d attached now), %d removed, %d swept; metrics of %d people to recompute"
                " in %.1f s",
                name,
                module,
                "full" if is_full else "incremental",
                stored,
                report.waiting,
                attached,
                removed,
                swept,
                len(people),
                report.seconds,
            )
        return report

    async def sync_source(
        self,
        source: DealSource,
        settings: DealSettings,
        policy: DirectorySettings,
        *,
        full: bool = False,
    ) -> list[DealReport]:
        """Every deal module of one CRM; a failed module does not stop the others."""
        reports: list[DealReport] = []
        failures: list[str] = []
        for module in source.deal_modules():
            try:
                reports.append(await self.sync_module(source, module, policy, settings, full=full))
            except (ConnectorError, TimeoutError) as e:
                failures.append(f"{module}: {e}")
                log.warning("deals %s %s: sync failed: %s", source.name, module, e)
        if failures and not reports:
            raise ConnectorError("; ".join(failures))
        return reports


def _in_module(rec: DealRecord, module: str) -> DealRecord:
    """Every deal of a module's pull is kept under that module, whatever the record says."""
    return rec if rec.module == module else dataclasses.replace(rec, module=module)


def _emails(party: DealParty) -> list[str]:
    return sorted({e.strip().lower() for e in party.emails if "@" in e})


def _described(rec: DealRecord) -> str:
    who = next((p.name for p in rec.parties if p.name), "") or "no customer linked"
    return f"{rec.record_id} {rec.title!r} of {who!r}"


def _encode(rec: DealRecord) -> str:
    return msgspec.json.encode(rec).decode()


def _decode(text: str) -> DealRecord | None:
    try:
        return msgspec.json.decode(text, type=DealRecord)
    except msgspec.ValidationError:
        log.warning("deals: a waiting deal could not be read back; it waits for the next pass")
        return None
