"""Reading and writing the CRM records: people (contacts and leads), accounts, activities and
follow-up tasks.

Dedupe rule (creation and import of a person)
---------------------------------------------
A new person *matches* an existing one when one of its phone numbers, normalized to E.164,
or one of its e-mail addresses, compared lower-cased, is already stored for a person (of either
kind: a lead whose number is a known contact's updates that contact). Account switchboard
numbers never match people. When several people match, the oldest (lowest id) wins. A match is
updated instead of duplicated:

* text fields and owner, account, country, score that are empty on the existing person are
  filled from the input; fields it already has are kept (the older record is trusted);
* new phone numbers and e-mails are added; ones it has are left alone;
* do-not-call and e-mail opt-out only ever switch on (whoever says "do not call" wins);
* kind, lead status and source never change through a dedupe.

:meth:`PersonRepository.create` returns a :class:`WriteResult` whose ``outcome`` says which
happened (``created`` or ``updated``). Updates through :meth:`PersonRepository.update` that would
give a person a number another person already has are refused instead.

Do-not-call, opt-out and owner changes go through :func:`gateway.access.check_changes` with
the principal of the request being served (none: the gateway itself, e.g. the CLI), which may
refuse them (403 ``protected_field``); the ones made are written to ``audit_log``.

Every write reports the E.164 numbers whose caller card changed to
:meth:`Database.numbers_changed`, which the lookup cache listens to.

Lead events: an update that changes a lead's status publishes
:class:`gateway.store.events.LeadStatusChanged` through :meth:`Database.publish` (delivered
after the commit; campaigns and webhooks listen), naming who did it (``actor``, else the
request's principal, else ``system``). Status ``lost`` stamps ``people.lost_at``. Creating a
person (API, panel, import) is not a status change; creating a lead publishes
:class:`~gateway.store.events.LeadsCreated` instead (one event per write: an import's batch of
leads is one event; only webhooks listen). A dedupe merge never changes the status.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import aiosqlite

from gateway import access
from gateway.access import Change, Principal, Snapshot
from gateway.errors import InvalidNumber
from gateway.lookup.card import CallFacts
from gateway.lookup.numbers import normalize
from gateway.store.cards import call_facts
from gateway.store.db import Database, SqlParam
from gateway.store.events import LeadCreated, LeadsCreated, LeadStatusChanged
from gateway.store.models import (
    Account,
    Activity,
    ActivityKind,
    Email,
    FollowUpTask,
    Page,
    Person,
    PersonType,
    Phone,
    WriteResult,
)
from gateway.store.validation import (
    EmailIn,
    FieldError,
    PersonIn,
    PhoneIn,
    account_input,
    person_input,
    text,
    timestamp,
)
from gateway.store.validation import tags as tags_input

MAX_PAGE = 500
BULK_BATCH = 500  # rows per round of bulk_create; keeps IN (...) lists small
_BOOL_COLUMNS = ("do_not_call", "email_opt_out")


def _placeholders(n: int) -> str:
    return ",".join("?" * n)


def like_pattern(q: str) -> str:
    """``q`` as a LIKE pattern matching it anywhere, with its own % and _ taken literally."""
    return "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def clamp_page(limit: int, offset: int) -> tuple[int, int]:
    return max(1, min(int(limit), MAX_PAGE)), max(0, int(offset))


async def numbers_of_people(conn: aiosqlite.Connection, ids: Iterable[int]) -> list[str]:
    ids = list(ids)
    if not ids:
        return []
    rows = await conn.execute_fetchall(
        f"SELECT e164 FROM phones WHERE person_id IN ({_placeholders(len(ids))})", ids
    )
    return [r[0] for r in rows]


class PersonRepository:
    """Contacts and leads: one table, told apart by ``kind``."""

    def __init__(self, db: Database, default_region: str = "ES") -> None:
        self.db = db
        self.default_region = default_region

    # -- create (with dedupe) ---------------------------------------------------------------

    async def create(
        self, kind: PersonType, data: Mapping[str, Any], *, source: str = "api"
    ) -> WriteResult:
        """Validate and create, or update the person it duplicates (see the module rule)."""
        inp = person_input(data, kind, partial=False, default_region=self.default_region)
        return await self.create_validated(kind, inp, source=source)

    async def create_validated(
        self, kind: PersonType, inp: PersonIn, *, source: str = "api"
    ) -> WriteResult:
        async with self.db.transaction() as conn:
            person_id, outcome = await self.write_validated(conn, kind, inp, source=source)
            person = await self._load(conn, person_id)
            assert person is not None
        return WriteResult(person, outcome)

    async def write_validated(
        self, conn: aiosqlite.Connection, kind: PersonType, inp: PersonIn, *, source: str
    ) -> tuple[int, str]:
        """The dedupe write without reading the person back, for bulk imports; call inside
        ``db.transaction()``. A FieldError is raised before anything is written."""
        await self._check_account(conn, inp.columns.get("account_id"))
        match = await self._match(conn, inp.phones or [], inp.emails or [])
        now = self.db.clock()
        if match is None:
            person_id = await self._insert(conn, kind, inp, source, now)
            self.db.numbers_changed(p.e164 for p in inp.phones or [])
            if kind is PersonType.LEAD:
                self.db.publish(LeadsCreated((_created(person_id, inp, source, now),)))
            return person_id, "created"
        await self._merge(conn, match, inp, now)
        self.db.numbers_changed(await numbers_of_people(conn, [match]))
        return match, "updated"

    async def bulk_create(
        self,
        conn: aiosqlite.Connection,
        kind: PersonType,
        inputs: Sequence[PersonIn],
        *,
        source: str,
    ) -> list[str | FieldError]:
        """Many validated people under the dedupe rule, inside ``db.transaction()``: the outcome
        (``created``/``updated``) or the FieldError of each input, in order.

        Same result as calling :meth:`write_validated` for each input, with far fewer round
        trips: per batch, one query finds which numbers/e-mails already exist, the rows that
        match nothing (the usual case) are inserted with three ``executemany``, and only rows
        that match the store or an earlier row take the one-by-one path.
        """
        out: list[str | FieldError] = []
        for start in range(0, len(inputs), BULK_BATCH):
            out += await self._bulk_batch(conn, kind, inputs[start : start + BULK_BATCH], source)
        return out

    async def _bulk_batch(
        self, conn: aiosqlite.Connection, kind: PersonType, batch: Sequence[PersonIn], source: str
    ) -> list[str | FieldError]:
        e164s = list({p.e164 for inp in batch for p in inp.phones or []})
        lowers = list({e.email.lower() for inp in batch for e in inp.emails or []})
        accounts = list(
            {inp.columns["account_id"] for inp in batch if inp.columns.get("account_id")}
        )
        known: set[str] = set()
        if e164s:
            rows = await conn.execute_fetchall(
                f"SELECT e164 FROM phones WHERE person_id IS NOT NULL AND e164 IN"
                f" ({_placeholders(len(e164s))})",
                e164s,
            )
            known.update(r[0] for r in rows)
        if lowers:
            rows = await conn.execute_fetchall(
                f"SELECT email_lower FROM emails WHERE email_lower IN"
                f" ({_placeholders(len(lowers))})",
                lowers,
            )
            known.update("@" + r[0] for r in rows)
        known_accounts: set[int] = set()
        if accounts:
            rows = await conn.execute_fetchall(
                f"SELECT id FROM accounts WHERE id IN ({_placeholders(len(accounts))})", accounts
            )
            known_accounts.update(r[0] for r in rows)
        out: list[str | FieldError] = []
        pending: list[PersonIn] = []
        seen: set[str] = set()  # numbers and "@"e-mails of earlier rows of this batch
        for inp in batch:
            acc = inp.columns.get("account_id")
            if acc is not None and acc not in known_accounts:
                out.append(FieldError("account_id", f"no account with id {acc}"))
                continue
            keys = {p.e164 for p in inp.phones or []} | {
                "@" + e.email.lower() for e in inp.emails or []
            }
            if keys & seen or keys & known:
                await self._insert_many(conn, kind, pending, source)
                pending = []
                _, outcome = await self.write_validated(conn, kind, inp, source=source)
                out.append(outcome)
            else:
                pending.append(inp)
                out.append("created")
            seen |= keys
        await self._insert_many(conn, kind, pending, source)
        return out

    async def _insert_many(
        self, conn: aiosqlite.Connection, kind: PersonType, inputs: Sequence[PersonIn], source: str
    ) -> None:
        if not inputs:
            return
        # we hold the write transaction (BEGIN IMMEDIATE), so nobody else can take these ids
        rows = list(await conn.execute_fetchall("SELECT coalesce(max(id), 0) FROM people"))
        next_id = rows[0][0] + 1
        now = self.db.clock()
        lead = kind is PersonType.LEAD
        people, phones, emails, numbers = [], [], [], []
        tags: list[tuple[int, str]] = []
        for offset, inp in enumerate(inputs):
            pid = next_id + offset
            c = inp.columns
            people.append(
                (
                    pid,
                    kind.value,
                    c.get("first_name", ""),
                    c.get("last_name", ""),
                    c.get("company", ""),
                    c.get("title", ""),
                    c.get("lost_reason", ""),
                    c.get("account_id"),
                    c.get("owner"),
                    c.get("status", "new") if lead else None,
                    c.get("source", source) if lead else None,
                    c.get("score"),
                    c.get("country", ""),
                    int(bool(c.get("do_not_call"))),
                    int(bool(c.get("email_opt_out"))),
                    now,
                    now,
                    c.get("language", ""),
                    now if lead and c.get("status") == "lost" else None,
                )
            )
            tags.extend((pid, t) for t in inp.tags or [])
            have: set[str] = set()
            for p in inp.phones or []:
                if p.e164 not in have:
                    have.add(p.e164)
                    phones.append((pid, p.raw, p.e164, p.type, int(p.do_not_call)))
                    numbers.append(p.e164)
            for e in inp.emails or []:
                low = e.email.lower()
                if low not in have:
                    have.add(low)
                    emails.append((pid, e.email, low, e.type, int(e.opted_out)))
        await conn.executemany(
            "INSERT INTO people (id, kind, first_name, last_name, company, title, lost_reason,"
            " account_id, owner, status, source, score, country, do_not_call, email_opt_out,"
            " created_at, updated_at, language, lost_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            people,
        )
        if tags:
            await conn.executemany(
                "INSERT OR IGNORE INTO person_tags (person_id, tag) VALUES (?,?)", tags
            )
        if phones:
            await conn.executemany(
                "INSERT INTO phones (person_id, raw, e164, type, do_not_call) VALUES (?,?,?,?,?)",
                phones,
            )
        if emails:
            await conn.executemany(
                "INSERT INTO emails (person_id, email, email_lower, type, opted_out)"
                " VALUES (?,?,?,?,?)",
                emails,
            )
        self.db.numbers_changed(numbers)
        if lead:  # after the commit, all of this batch at once
            self.db.publish(
                LeadsCreated(
                    tuple(
                        _created(next_id + offset, inp, source, now)
                        for offset, inp in enumerate(inputs)
                    )
                )
            )

    async def _match(
        self, conn: aiosqlite.Connection, phones: Sequence[PhoneIn], emails: Sequence[EmailIn]
    ) -> int | None:
        e164s = [p.e164 for p in phones]
        lowers = [e.email.lower() for e in emails]
        if not e164s and not lowers:
            return None
        rows = list(
            await conn.execute_fetchall(
                "SELECT min(person_id) FROM (SELECT person_id FROM phones"
                f" WHERE person_id IS NOT NULL AND e164 IN ({_placeholders(len(e164s))})"
                " UNION ALL SELECT person_id FROM emails"
                f" WHERE email_lower IN ({_placeholders(len(lowers))})) AS found",
                [*e164s, *lowers],
            )
        )
        return rows[0][0] if rows else None

    async def _insert(
        self, conn: aiosqlite.Connection, kind: PersonType, inp: PersonIn, source: str, now: float
    ) -> int:
        cols = dict(inp.columns)
        if kind is PersonType.LEAD:
            cols.setdefault("status", "new")
            cols.setdefault("source", source)
            if cols["status"] == "lost":
                cols["lost_at"] = now
        cols["kind"] = kind.value
        cols["created_at"] = cols["updated_at"] = now
        names = list(cols)
        cur = await conn.execute(
            f"INSERT INTO people ({','.join(names)}) VALUES ({_placeholders(len(names))})",
            [cols[n] for n in names],
        )
        person_id = cur.lastrowid
        assert person_id is not None
        await self._add_phones(conn, person_id, inp.phones or [], set())
        await self._add_emails(conn, person_id, inp.emails or [], set())
        await _add_tags(conn, person_id, inp.tags or [])
        return person_id

    async def _merge(
        self, conn: aiosqlite.Connection, person_id: int, inp: PersonIn, now: float
    ) -> None:
        rows = list(await conn.execute_fetchall("SELECT * FROM people WHERE id = ?", (person_id,)))
        existing = rows[0]
        fill: dict[str, Any] = {}
        for col, value in inp.columns.items():
            if col in ("status", "source"):
                continue
            if col in _BOOL_COLUMNS:
                if value and not existing[col]:
                    fill[col] = 1
            elif existing[col] in (None, "") and value not in (None, ""):
                fill[col] = value
        before = await _snapshot(conn, person_id)
        after = Snapshot(
            bool(fill.get("do_not_call", before.do_not_call)),
            bool(fill.get("email_opt_out", before.email_opt_out)),
            fill.get("owner", before.owner),
            {**{p.e164: p.do_not_call for p in inp.phones or []}, **before.numbers_dnc},
            {**{e.email.lower(): e.opted_out for e in inp.emails or []}, **before.emails_out},
        )
        await _audit(conn, existing["kind"], person_id, before, after, now)
        fill["updated_at"] = now
        await conn.execute(
            f"UPDATE people SET {', '.join(f'{c} = ?' for c in fill)} WHERE id = ?",
            [*fill.values(), person_id],
        )
        have_phones = {
            r[0]
            for r in await conn.execute_fetchall(
                "SELECT e164 FROM phones WHERE person_id = ?", (person_id,)
            )
        }
        have_emails = {
            r[0]
            for r in await conn.execute_fetchall(
                "SELECT email_lower FROM emails WHERE person_id = ?", (person_id,)
            )
        }
        await self._add_phones(conn, person_id, inp.phones or [], have_phones)
        await self._add_emails(conn, person_id, inp.emails or [], have_emails)
        await _add_tags(conn, person_id, inp.tags or [])  # new tags join the ones it has

    async def _add_phones(
        self, conn: aiosqlite.Connection, person_id: int, phones: Sequence[PhoneIn], have: set[str]
    ) -> None:
        rows = []
        for p in phones:
            if p.e164 not in have:
                have.add(p.e164)
                rows.append((person_id, p.raw, p.e164, p.type, int(p.do_not_call)))
        if rows:
            await conn.executemany(
                "INSERT INTO phones (person_id, raw, e164, type, do_not_call) VALUES (?,?,?,?,?)",
                rows,
            )

    async def _add_emails(
        self, conn: aiosqlite.Connection, person_id: int, emails: Sequence[EmailIn], have: set[str]
    ) -> None:
        rows = []
        for e in emails:
            low = e.email.lower()
            if low not in have:
                have.add(low)
                rows.append((person_id, e.email, low, e.type, int(e.opted_out)))
        if rows:
            await conn.executemany(
                "INSERT INTO emails (person_id, email, email_lower, type, opted_out)"
                " VALUES (?,?,?,?,?)",
                rows,
            )

    async def _check_account(self, conn: aiosqlite.Connection, account_id: int | None) -> None:
        if account_id is None:
            return
        rows = await conn.execute_fetchall("SELECT 1 FROM accounts WHERE id = ?", (account_id,))
        if not rows:
            raise FieldError("account_id", f"no account with id {account_id}")

    # -- read -------------------------------------------------------------------------------

    async def get(self, person_id: int, kind: PersonType | None = None) -> Person | None:
        person = await self._load(self.db.conn, person_id)
        if person is None or (kind is not None and person.kind != kind.value):
            return None
        return person

    async def find_by_number(self, raw: str, region: str | None = None) -> Person | None:
        """The person a number belongs to (oldest first), or None; bad numbers find nobody."""
        person_id = await self.id_by_number(raw, region)
        return None if person_id is None else await self._load(self.db.conn, person_id)

    async def id_by_number(self, raw: str, region: str | None = None) -> int | None:
        """The id of :meth:`find_by_number`'s person, without loading it."""
        try:
            e164 = normalize(raw, region or self.default_region).e164
        except InvalidNumber:
            return None
        rows = list(
            await self.db.conn.execute_fetchall(
                "SELECT min(person_id) FROM phones WHERE e164 = ? AND person_id IS NOT NULL",
                (e164,),
            )
        )
        return None if not rows or rows[0][0] is None else int(rows[0][0])

    async def _load(self, conn: aiosqlite.Connection, person_id: int) -> Person | None:
        rows = await conn.execute_fetchall("SELECT * FROM people WHERE id = ?", (person_id,))
        if not rows:
            return None
        people = await self.hydrate(conn, rows)
        return people[0]

    async def hydrate(self, conn: aiosqlite.Connection, rows: Iterable[Any]) -> list[Person]:
        people = [_person_from_row(r) for r in rows]
        if not people:
            return people
        by_id = {p.id: p for p in people}
        marks = _placeholders(len(by_id))
        ids = list(by_id)
        for r in await conn.execute_fetchall(
            f"SELECT * FROM phones WHERE person_id IN ({marks}) ORDER BY id", ids
        ):
            by_id[r["person_id"]].phones.append(
                Phone(r["raw"], r["e164"], r["type"], bool(r["do_not_call"]), r["id"])
            )
        for r in await conn.execute_fetchall(
            f"SELECT * FROM emails WHERE person_id IN ({marks}) ORDER BY id", ids
        ):
            by_id[r["person_id"]].emails.append(
                Email(r["email"], r["type"], bool(r["opted_out"]), r["id"])
            )
        for r in await conn.execute_fetchall(
            f"SELECT person_id, tag FROM person_tags WHERE person_id IN ({marks}) ORDER BY tag",
            ids,
        ):
            by_id[r[0]].tags.append(r[1])
        return people

    async def list(
        self,
        *,
        kind: PersonType | None = None,
        status: str | None = None,
        owner: str | None = None,
        source: str | None = None,
        account_id: int | None = None,
        q: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[Person]:
        """Newest first; ``q`` searches name, company, e-mail and number (E.164 or as typed)."""
        limit, offset = clamp_page(limit, offset)
        where, args = ["1 = 1"], []
        for col, value in (
            ("kind", kind.value if kind else None),
            ("status", status),
            ("owner", owner),
            ("source", source),
            ("account_id", account_id),
        ):
            if value is not None:
                where.append(f"p.{col} = ?")
                args.append(value)
        if q:
            q = q.strip()[:100]
            pat = like_pattern(q.lower())
            clauses = [
                "lower(p.first_name || ' ' || p.last_name) LIKE ? ESCAPE '\\'",
                "lower(p.company) LIKE ? ESCAPE '\\'",
                "p.id IN (SELECT person_id FROM emails WHERE email_lower LIKE ? ESCAPE '\\')",
            ]
            args += [pat, pat, pat]
            try:
                e164 = normalize(q, self.default_region).e164
            except InvalidNumber:
                e164 = None
            if e164:
                clauses.append("p.id IN (SELECT person_id FROM phones WHERE e164 = ?)")
                args.append(e164)
            digits = "".join(ch for ch in q if ch.isdigit())
            if len(digits) >= 3:
                clauses.append(
                    "p.id IN (SELECT person_id FROM phones WHERE e164 LIKE ? AND person_id"
                    " IS NOT NULL)"
                )
                args.append(f"%{digits}%")
            where.append(f"({' OR '.join(clauses)})")
        rows = await self.db.conn.execute_fetchall(
            f"SELECT p.* FROM people p WHERE {' AND '.join(where)} ORDER BY p.id DESC"
            " LIMIT ? OFFSET ?",
            [*args, limit + 1, offset],
        )
        rows = list(rows)
        more = len(rows) > limit
        people = await self.hydrate(self.db.conn, rows[:limit])
        return Page(people, offset + limit if more else None)

    # -- update / delete --------------------------------------------------------------------

    async def update(
        self,
        person_id: int,
        data: Mapping[str, Any],
        kind: PersonType | None = None,
        *,
        actor: str | None = None,
    ) -> Person | None:
        """Change the given fields; ``phones``/``emails``/``tags`` when given replace the whole
        list. ``actor`` names who changes it in the lead events (``campaign:3``); by default
        the request's principal (``user:ana``, ``token:crm``), else ``system``."""
        current = await self.get(person_id, kind)
        if current is None:
            return None
        inp = person_input(
            data, PersonType(current.kind), partial=True, default_region=self.default_region
        )
        async with self.db.transaction() as conn:
            # the status as it is now, under the write lock: the event's "old" is the truth
            stored = list(
                await conn.execute_fetchall(
                    "SELECT status, lost_reason FROM people WHERE id = ?", (person_id,)
                )
            )
            if not stored:
                return None
            old_status, old_reason = stored[0][0], stored[0][1]
            await self._check_account(conn, inp.columns.get("account_id"))
            old = await _snapshot(conn, person_id)
            new = Snapshot(
                bool(inp.columns.get("do_not_call", old.do_not_call)),
                bool(inp.columns.get("email_opt_out", old.email_opt_out)),
                inp.columns.get("owner", old.owner),
                old.numbers_dnc
                if inp.phones is None
                else _flags((p.e164, p.do_not_call) for p in inp.phones),
                old.emails_out
                if inp.emails is None
                else _flags((e.email.lower(), e.opted_out) for e in inp.emails),
            )
            await _audit(conn, current.kind, person_id, old, new, self.db.clock())
            before = await numbers_of_people(conn, [person_id])
            cols = dict(inp.columns)
            if cols.get("status") == "lost" and not (cols.get("lost_reason") or old_reason):
                raise FieldError("lost_reason", "required when status is lost")
            now = self.db.clock()
            new_status = cols.get("status", old_status)
            if new_status != old_status and new_status == "lost":
                cols["lost_at"] = now
            cols["updated_at"] = now
            await conn.execute(
                f"UPDATE people SET {', '.join(f'{c} = ?' for c in cols)} WHERE id = ?",
                [*cols.values(), person_id],
            )
            if inp.phones is not None:
                await self._refuse_taken(conn, person_id, inp.phones)
                await conn.execute("DELETE FROM phones WHERE person_id = ?", (person_id,))
                await self._add_phones(conn, person_id, inp.phones, set())
            if inp.emails is not None:
                await conn.execute("DELETE FROM emails WHERE person_id = ?", (person_id,))
                await self._add_emails(conn, person_id, inp.emails, set())
            if inp.tags is not None:
                await conn.execute("DELETE FROM person_tags WHERE person_id = ?", (person_id,))
                await _add_tags(conn, person_id, inp.tags)
            person = await self._load(conn, person_id)
            assert person is not None
            self.db.numbers_changed([*before, *(p.e164 for p in person.phones)])
            if new_status != old_status:
                self.db.publish(  # after the commit
                    LeadStatusChanged(
                        person_id,
                        old_status,
                        new_status,
                        now,
                        actor_name(actor),
                        person.lost_reason if new_status == "lost" else "",
                    )
                )
        return person

    async def add_tags(self, person_id: int, new: Sequence[str]) -> bool:
        """Add tags (a campaign's "set" step), keeping the ones the person has; False when
        there is no such person."""
        checked = tags_input(list(new), "add_tags")
        async with self.db.transaction() as conn:
            rows = await conn.execute_fetchall("SELECT 1 FROM people WHERE id = ?", (person_id,))
            if not rows:
                return False
            await _add_tags(conn, person_id, checked)
        return True

    async def _refuse_taken(
        self, conn: aiosqlite.Connection, person_id: int, phones: Sequence[PhoneIn]
    ) -> None:
        for i, p in enumerate(phones):
            rows = list(
                await conn.execute_fetchall(
                    "SELECT person_id FROM phones WHERE e164 = ? AND person_id IS NOT NULL"
                    " AND person_id != ? LIMIT 1",
                    (p.e164, person_id),
                )
            )
            if rows:
                raise FieldError(
                    f"phones[{i}].number", f"{p.e164} already belongs to person {rows[0][0]}"
                )

    async def delete(self, person_id: int, kind: PersonType | None = None) -> bool:
        if await self.get(person_id, kind) is None:
            return False
        async with self.db.transaction() as conn:
            numbers = await numbers_of_people(conn, [person_id])
            await conn.execute("DELETE FROM people WHERE id = ?", (person_id,))
            self.db.numbers_changed(numbers)
        return True


def _created(person_id: int, inp: PersonIn, source: str, now: float) -> LeadCreated:
    """The event of a lead just inserted from ``inp`` (its defaults as :meth:`_insert` and
    :meth:`_insert_many` write them)."""
    status = str(inp.columns.get("status") or "new")
    return LeadCreated(
        person_id,
        status,
        str(inp.columns.get("source") or source),
        now,
        actor_name(),
        str(inp.columns.get("lost_reason") or "") if status == "lost" else "",
    )


def actor_name(actor: str | None = None) -> str:
    """Who a lead event names: ``actor`` when given, else the request's principal
    (``user:ana``, ``token:crm``), else ``system`` (CLI, workers)."""
    if actor:
        return actor
    who = access.acting()
    return who.actor if who is not None else "system"


async def _add_tags(conn: aiosqlite.Connection, person_id: int, tags: Sequence[str]) -> None:
    if tags:
        await conn.executemany(
            "INSERT OR IGNORE INTO person_tags (person_id, tag) VALUES (?,?)",
            [(person_id, t) for t in tags],
        )


def _flags(pairs: Iterable[tuple[str, bool]]) -> dict[str, bool]:
    """Key -> flag, the first of duplicates winning (as the phones and e-mails are written)."""
    out: dict[str, bool] = {}
    for key, flag in pairs:
        out.setdefault(key, bool(flag))
    return out


async def _snapshot(conn: aiosqlite.Connection, person_id: int) -> Snapshot:
    """What :func:`gateway.access.check_changes` protects, as stored now."""
    rows = list(
        await conn.execute_fetchall(
            "SELECT do_not_call, email_opt_out, owner FROM people WHERE id = ?", (person_id,)
        )
    )
    phones = await conn.execute_fetchall(
        "SELECT e164, do_not_call FROM phones WHERE person_id = ? ORDER BY id", (person_id,)
    )
    emails = await conn.execute_fetchall(
        "SELECT email_lower, opted_out FROM emails WHERE person_id = ? ORDER BY id", (person_id,)
    )
    return Snapshot(
        bool(rows[0][0]),
        bool(rows[0][1]),
        rows[0][2],
        _flags((r[0], r[1]) for r in phones),
        _flags((r[0], r[1]) for r in emails),
    )


async def _audit(
    conn: aiosqlite.Connection,
    kind: str,
    person_id: int,
    before: Snapshot,
    after: Snapshot,
    at: float,
) -> None:
    """Check the protected changes against the acting principal, then log them."""
    who = access.acting()
    changes = access.check_changes(who, before, after)
    await AuditRepository.write(conn, who, kind, person_id, changes, at)


def _person_from_row(r: Any) -> Person:
    return Person(
        id=r["id"],
        kind=r["kind"],
        first_name=r["first_name"],
        last_name=r["last_name"],
        company=r["company"],
        title=r["title"],
        account_id=r["account_id"],
        owner=r["owner"],
        status=r["status"],
        lost_reason=r["lost_reason"],
        source=r["source"],
        score=r["score"],
        country=r["country"],
        do_not_call=bool(r["do_not_call"]),
        email_opt_out=bool(r["email_opt_out"]),
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        language=r["language"],
        lost_at=r["lost_at"],
    )


class AccountRepository:
    """Companies; their switchboard numbers are looked up when no person has the number."""

    def __init__(self, db: Database, default_region: str = "ES") -> None:
        self.db = db
        self.default_region = default_region

    async def create(self, data: Mapping[str, Any]) -> Account:
        cols, phones = account_input(data, partial=False, default_region=self.default_region)
        async with self.db.transaction() as conn:
            now = self.db.clock()
            cols["created_at"] = cols["updated_at"] = now
            cur = await conn.execute(
                f"INSERT INTO accounts ({','.join(cols)}) VALUES ({_placeholders(len(cols))})",
                list(cols.values()),
            )
            account_id = cur.lastrowid
            assert account_id is not None
            await self._set_phones(conn, account_id, phones or [])
            account = await self._load(conn, account_id)
            assert account is not None
            self.db.numbers_changed(p.e164 for p in account.phones)
        return account

    async def _set_phones(
        self, conn: aiosqlite.Connection, account_id: int, phones: Sequence[PhoneIn]
    ) -> None:
        seen: set[str] = set()
        rows = []
        for p in phones:
            if p.e164 not in seen:
                seen.add(p.e164)
                rows.append((account_id, p.raw, p.e164, p.type, int(p.do_not_call)))
        await conn.executemany(
            "INSERT INTO phones (account_id, raw, e164, type, do_not_call) VALUES (?,?,?,?,?)", rows
        )

    async def get(self, account_id: int) -> Account | None:
        return await self._load(self.db.conn, account_id)

    async def _load(self, conn: aiosqlite.Connection, account_id: int) -> Account | None:
        rows = await conn.execute_fetchall("SELECT * FROM accounts WHERE id = ?", (account_id,))
        if not rows:
            return None
        return (await self.hydrate(conn, rows))[0]

    async def hydrate(self, conn: aiosqlite.Connection, rows: Iterable[Any]) -> list[Account]:
        accounts = [
            Account(
                r["id"],
                r["name"],
                r["domain"],
                r["country"],
                r["owner"],
                [],
                r["created_at"],
                r["updated_at"],
            )
            for r in rows
        ]
        by_id = {a.id: a for a in accounts}
        if by_id:
            for r in await conn.execute_fetchall(
                f"SELECT * FROM phones WHERE account_id IN ({_placeholders(len(by_id))})"
                " ORDER BY id",
                list(by_id),
            ):
                by_id[r["account_id"]].phones.append(
                    Phone(r["raw"], r["e164"], r["type"], bool(r["do_not_call"]), r["id"])
                )
        return accounts

    async def list(
        self, *, owner: str | None = None, q: str | None = None, limit: int = 50, offset: int = 0
    ) -> Page[Account]:
        limit, offset = clamp_page(limit, offset)
        where, args = ["1 = 1"], []
        if owner is not None:
            where.append("owner = ?")
            args.append(owner)
        if q:
            pat = like_pattern(q.strip()[:100].lower())
            where.append("(lower(name) LIKE ? ESCAPE '\\' OR lower(domain) LIKE ? ESCAPE '\\')")
            args += [pat, pat]
        rows = list(
            await self.db.conn.execute_fetchall(
                f"SELECT * FROM accounts WHERE {' AND '.join(where)} ORDER BY id DESC"
                " LIMIT ? OFFSET ?",
                [*args, limit + 1, offset],
            )
        )
        more = len(rows) > limit
        accounts = await self.hydrate(self.db.conn, rows[:limit])
        return Page(accounts, offset + limit if more else None)

    async def update(self, account_id: int, data: Mapping[str, Any]) -> Account | None:
        if await self.get(account_id) is None:
            return None
        cols, phones = account_input(data, partial=True, default_region=self.default_region)
        async with self.db.transaction() as conn:
            before = await self._card_numbers(conn, account_id)
            cols["updated_at"] = self.db.clock()
            await conn.execute(
                f"UPDATE accounts SET {', '.join(f'{c} = ?' for c in cols)} WHERE id = ?",
                [*cols.values(), account_id],
            )
            if phones is not None:
                await conn.execute("DELETE FROM phones WHERE account_id = ?", (account_id,))
                await self._set_phones(conn, account_id, phones)
            account = await self._load(conn, account_id)
            assert account is not None
            self.db.numbers_changed([*before, *await self._card_numbers(conn, account_id)])
        return account

    async def delete(self, account_id: int) -> bool:
        if await self.get(account_id) is None:
            return False
        async with self.db.transaction() as conn:
            numbers = await self._card_numbers(conn, account_id)
            await conn.execute("DELETE FROM accounts WHERE id = ?", (account_id,))
            self.db.numbers_changed(numbers)
        return True

    async def _card_numbers(
        self, conn: aiosqlite.Connection, account_id: int
    ) -> builtins.list[str]:  # the class's own ``list`` method shadows the builtin here
        """Numbers whose card shows this account: its own and its people's."""
        rows = await conn.execute_fetchall(
            "SELECT e164 FROM phones WHERE account_id = ? UNION SELECT ph.e164 FROM phones ph"
            " JOIN people p ON p.id = ph.person_id WHERE p.account_id = ?",
            (account_id, account_id),
        )
        return [r[0] for r in rows]


class ActivityRepository:
    """Calls, notes and e-mails on a person's timeline, newest first."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(
        self,
        person_id: int,
        kind: ActivityKind | str,
        summary: str,
        *,
        at: float | None = None,
        body: str = "",
        call_id: str | None = None,
        author: str | None = None,
    ) -> Activity | None:
        """Add one; returns None when this call is already on this person's timeline."""
        kind = ActivityKind(kind)
        summary = text(summary, "summary")
        body = text(body, "body", limit=10_000)
        when = self.db.clock() if at is None else at
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "INSERT OR IGNORE INTO activities (person_id, kind, at, summary, body, call_id,"
                " author) VALUES (?,?,?,?,?,?,?)",
                (person_id, kind.value, when, summary, body, call_id, author),
            )
            if not cur.rowcount:
                return None
            self.db.numbers_changed(await numbers_of_people(conn, [person_id]))
            activity_id = cur.lastrowid
        assert activity_id is not None
        return Activity(activity_id, person_id, kind.value, when, summary, body, call_id, author)

    async def for_person(
        self, person_id: int, limit: int = 50, *, viewer: Principal | None = None
    ) -> list[Activity]:
        """The timeline as ``viewer`` (by default: whoever the request is served to) may read
        it: :func:`gateway.access.note_condition` leaves out other people's call notes."""
        who = viewer if viewer is not None else access.acting()
        visible, args = access.note_condition(who)
        rows = await self.db.conn.execute_fetchall(
            f"SELECT *, {call_facts(self.db)} AS call_facts FROM activities"
            f" WHERE person_id = ? AND {visible}"
            " ORDER BY at DESC, id DESC LIMIT ?",
            (person_id, *args, max(1, min(limit, MAX_PAGE))),
        )
        return [_activity_from_row(r) for r in rows]


def _activity_from_row(r: Any) -> Activity:
    return Activity(
        r["id"],
        r["person_id"],
        r["kind"],
        r["at"],
        r["summary"],
        r["body"],
        r["call_id"],
        r["author"],
        CallFacts.from_json(r["call_facts"]),
    )


class FollowUpRepository:
    """Tasks to call someone back by a due date."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(
        self, person_id: int, due_at: float, title: str, owner: str | None = None
    ) -> FollowUpTask:
        title = text(title, "title")
        if not title:
            raise FieldError("title", "required")
        due_at = timestamp(due_at, "due_at")  # whoever calls: never NaN or Infinity stored
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "INSERT INTO follow_ups (person_id, due_at, title, owner, created_at)"
                " VALUES (?,?,?,?,?)",
                (person_id, due_at, title, owner, self.db.clock()),
            )
            self.db.numbers_changed(await numbers_of_people(conn, [person_id]))
            task_id = cur.lastrowid
        assert task_id is not None
        return FollowUpTask(task_id, person_id, due_at, title, owner)

    async def complete(self, task_id: int) -> bool:
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "UPDATE follow_ups SET done = 1, done_at = ? WHERE id = ? AND done = 0",
                (self.db.clock(), task_id),
            )
            if not cur.rowcount:
                return False
            rows = list(
                await conn.execute_fetchall(
                    "SELECT person_id FROM follow_ups WHERE id = ?", (task_id,)
                )
            )
            self.db.numbers_changed(await numbers_of_people(conn, [rows[0][0]]))
        return True

    async def open_for(self, person_id: int) -> list[FollowUpTask]:
        rows = await self.db.conn.execute_fetchall(
            "SELECT * FROM follow_ups WHERE person_id = ? AND done = 0 ORDER BY due_at",
            (person_id,),
        )
        return [_task_from_row(r) for r in rows]

    async def open_due(
        self, *, owner: str | None = None, before: float | None = None, limit: int = 100
    ) -> list[FollowUpTask]:
        """Open tasks by due date (the agent's worklist)."""
        where = ["done = 0"]
        args: builtins.list[SqlParam] = []
        if owner is not None:
            where.append("owner = ?")
            args.append(owner)
        if before is not None:
            where.append("due_at < ?")
            args.append(before)
        rows = await self.db.conn.execute_fetchall(
            f"SELECT * FROM follow_ups WHERE {' AND '.join(where)} ORDER BY due_at LIMIT ?",
            [*args, max(1, min(limit, MAX_PAGE))],
        )
        return [_task_from_row(r) for r in rows]


def _task_from_row(r: Any) -> FollowUpTask:
    return FollowUpTask(
        r["id"], r["person_id"], r["due_at"], r["title"], r["owner"], bool(r["done"]), r["done_at"]
    )


class AuditRepository:
    """The ``audit_log``: who changed a protected field of a person, when, old → new."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    async def write(
        conn: aiosqlite.Connection,
        who: Principal | None,
        kind: str,
        person_id: int,
        changes: Sequence[Change],
        at: float,
    ) -> None:
        """Inside the transaction that makes the changes, so neither exists without the other."""
        if not changes:
            return
        actor = who.actor if who is not None else "system"
        await conn.executemany(
            "INSERT INTO audit_log (at, actor, record_kind, record_id, field, old_value,"
            " new_value) VALUES (?,?,?,?,?,?,?)",
            [
                (at, actor, kind, person_id, c.field, json.dumps(c.old), json.dumps(c.new))
                for c in changes
            ],
        )

    async def list(
        self, *, record_id: int | None = None, limit: int = 50, offset: int = 0
    ) -> Page[dict[str, Any]]:
        """Newest first."""
        limit, offset = clamp_page(limit, offset)
        where, args = "1 = 1", []
        if record_id is not None:
            where, args = "record_id = ?", [record_id]
        rows = list(
            await self.db.conn.execute_fetchall(
                f"SELECT * FROM audit_log WHERE {where} ORDER BY at DESC, id DESC LIMIT ? OFFSET ?",
                [*args, limit + 1, offset],
            )
        )
        items = [
            {
                "id": r["id"],
                "at": r["at"],
                "actor": r["actor"],
                "record_kind": r["record_kind"],
                "record_id": r["record_id"],
                "field": r["field"],
                "old": json.loads(r["old_value"]),
                "new": json.loads(r["new_value"]),
            }
            for r in rows[:limit]
        ]
        return Page(items, offset + limit if len(rows) > limit else None)
