"""The store on PostgreSQL: one asyncpg connection that speaks the store's SQLite dialect.

The store's code (repositories, call log, outbox, campaigns...) is written against
``Database.conn``, an aiosqlite connection, in SQLite's SQL. On PostgreSQL ``Database.conn`` is
a :class:`PgConnection` instead: the same few methods the store calls (``execute`` awaited or
used as ``async with``, ``execute_fetchall``, ``executemany``, ``total_changes``) and cursors
with ``fetchone``/``fetchall``/``rowcount``/``lastrowid``. **This module is the one place that
knows how the two dialects differ**; :func:`translate` turns a statement into PostgreSQL once
and the result is cached per statement text. What it translates:

* ``?`` placeholders become ``$1, $2, ...`` (not inside quotes);
* ``INSERT OR IGNORE`` becomes ``INSERT ... ON CONFLICT DO NOTHING``, ``INSERT OR REPLACE``
  an upsert on the table's primary key that sets every inserted column;
* an ``INSERT`` into a table whose ``id`` is generated gets ``RETURNING id``, which is where
  the cursor's ``lastrowid`` comes from;
* ``LIKE`` becomes ``ILIKE`` (SQLite's LIKE ignores ASCII case);
* ``IN ()`` (an empty list, which PostgreSQL's grammar refuses) becomes an empty subquery, so
  ``x IN ()`` stays false and ``x NOT IN ()`` true;
* ``json_each(X) j`` (a JSON array as a list parameter) becomes
  ``json_array_elements_text(CAST(X AS json)) AS j(value)``: ``j.value`` is text, so a
  comparison with an integer column needs ``CAST(j.value AS BIGINT)`` in the statement (which
  SQLite reads the same);
* ``INDEXED BY <index>`` (a SQLite planner hint) is dropped;
* ``json_extract(X, '$[N]')`` and ``json_extract(X, '$.key')`` become ``->>`` on ``X`` as
  json: **text** on PostgreSQL, where SQLite gives numbers as numbers (so a number is better
  read in Python from the whole JSON);
* ``group_concat(X)`` becomes ``string_agg(CAST(X AS text), ',')``;
* ``CAST(X AS INTEGER)`` truncates toward zero, as SQLite's does (PostgreSQL's would round);
* ``:name`` parameters (given as a mapping) become ``$n`` too;
* ``BEGIN IMMEDIATE`` becomes ``BEGIN``.

SQLite's ``total()`` and ``sum()`` of a comparison exist on PostgreSQL as aggregates of the
same name (migrations_pg/0016). What it does not translate fails loudly at PostgreSQL (an
unknown function such as ``strftime``, an integer column used as a boolean); those statements
need a neutral form in the calling code.

Values: PostgreSQL types strictly (asyncpg refuses a ``str`` for an ``int8`` parameter, where
SQLite converts by column affinity), so each parameter is converted to the type PostgreSQL
inferred for it, as SQLite would have stored it: that is also cached per statement. Results of
``numeric`` arithmetic (``SUM`` over integers, ``AVG``) come back as ``int`` or ``float``
rather than ``Decimal``, as SQLite gives them. Booleans stay integers 0/1 in the tables, as in
SQLite (a comparison in a ``SELECT`` list comes back as ``True``/``False``, which equal 1/0).

Statements run one at a time on the connection (an ``asyncio.Lock``), as aiosqlite runs them
one at a time on its thread: a transaction (``Database.transaction``) and the reads other tasks
make meanwhile share the connection exactly as they share SQLite's writer. Errors from
PostgreSQL's integrity checks are raised as ``sqlite3.IntegrityError``, so store code catches
one exception whichever engine runs.

The schema comes from ``migrations_pg/``: the same numbers as ``migrations/``, written for
PostgreSQL (identity ids, ``BIGINT``, ``DOUBLE PRECISION``). The version lives in the table
``centralita_schema``; instances that start together take an advisory lock to migrate one at a
time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
from collections.abc import (
    AsyncIterator,
    Callable,
    Coroutine,
    Generator,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import asyncpg

log = logging.getLogger("gateway.store")
T = TypeVar("T")

PG_MIGRATIONS_DIR = Path(__file__).with_name("migrations_pg")
MIGRATION_LOCK_KEY = 0x43454E54  # pg_advisory_xact_lock key while migrating ("CENT")
GATEWAY_LOCK_KEY = 0x47415445  # held by every gateway on the store ("GATE"), see hold_gateway_lock
STATEMENT_CACHE = 4096  # distinct statement texts kept translated and prepared

# -- schema facts the translation needs ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Schema:
    """What :func:`translate` needs to know about the tables, read from the catalog."""

    columns: dict[str, tuple[str, ...]] = field(default_factory=dict)  # table -> its columns
    primary_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)
    generated_ids: frozenset[str] = frozenset()  # tables whose ``id`` PostgreSQL generates


async def read_schema(conn: asyncpg.Connection) -> Schema:
    columns: dict[str, list[str]] = {}
    generated: set[str] = set()
    for r in await conn.fetch(
        "SELECT table_name, column_name, is_identity FROM information_schema.columns"
        " WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
    ):
        columns.setdefault(r["table_name"], []).append(r["column_name"])
        if r["column_name"] == "id" and r["is_identity"] == "YES":
            generated.add(r["table_name"])
    keys: dict[str, list[str]] = {}
    for r in await conn.fetch(
        "SELECT tc.table_name, kcu.column_name FROM information_schema.table_constraints tc"
        " JOIN information_schema.key_column_usage kcu"
        " ON kcu.constraint_schema = tc.constraint_schema"
        " AND kcu.constraint_name = tc.constraint_name"
        " WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = current_schema()"
        " ORDER BY tc.table_name, kcu.ordinal_position"
    ):
        keys.setdefault(r["table_name"], []).append(r["column_name"])
    return Schema(
        {t: tuple(c) for t, c in columns.items()},
        {t: tuple(c) for t, c in keys.items()},
        frozenset(generated),
    )


# -- translation --------------------------------------------------------------------------------


class UnsupportedStatement(sqlite3.NotSupportedError):
    """A statement in SQLite's dialect that :func:`translate` cannot carry to PostgreSQL."""


@dataclass(frozen=True, slots=True)
class Translated:
    text: str  # the PostgreSQL statement
    returns_id: bool  # RETURNING id was added for lastrowid
    control: bool  # BEGIN/COMMIT/ROLLBACK/SAVEPOINT/RELEASE: no parameters, no rows
    names: tuple[str, ...] = ()  # ``:name`` parameters, in the order of $1, $2...


# a quoted string, a quoted identifier or a comment: never rewritten
_OPAQUE = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/", re.S)
_INSERT_OR = re.compile(
    r"^\s*INSERT\s+OR\s+(IGNORE|REPLACE)\s+INTO\s+(\w+)\s*(\(([^)]*)\))?", re.I | re.S
)
_INSERT = re.compile(r"^\s*INSERT\s+INTO\s+(\w+)", re.I)
_RETURNING = re.compile(r"\bRETURNING\b", re.I)
_LIKE = re.compile(r"\bLIKE\b", re.I)
_EMPTY_IN = re.compile(r"\b(IN)\s*\(\s*\)", re.I)
_INDEXED_BY = re.compile(r"\s+INDEXED\s+BY\s+\w+", re.I)
_GROUP_CONCAT = re.compile(r"\bgroup_concat\(([^(),]*)\)", re.I)
# json_extract's path is a quoted string: matched on the whole statement, before quotes are
# set aside
_JSON_EXTRACT = re.compile(
    r"\bjson_extract\(([^(),]*),\s*'\$(?:\[(\d+)\]|\.([A-Za-z_][A-Za-z0-9_]*))'\)", re.I
)


def _json_extract(m: re.Match[str]) -> str:
    key = m.group(2) if m.group(2) is not None else f"'{m.group(3)}'"
    return f"(CAST({m.group(1)} AS json) ->> {key})"


_JSON_EACH = re.compile(r"\bjson_each\(((?:[^()]|\([^()]*\))*)\)(?:\s+(?:AS\s+)?(\w+))?", re.I)
_KEYWORDS = frozenset(
    [
        "where",
        "join",
        "cross",
        "left",
        "inner",
        "on",
        "group",
        "order",
        "limit",
        "union",
        "natural",
        "using",
    ]
)


def _json_each(m: re.Match[str]) -> str:
    alias = m.group(2)
    if alias is None or alias.lower() in _KEYWORDS:
        tail = f" {alias}" if alias else ""
        alias = "json_each"
    else:
        tail = ""
    return f"json_array_elements_text(CAST({m.group(1)} AS json)) AS {alias}(value){tail}"


_CAST = re.compile(r"\bCAST\s*\(", re.I)
_AS_INTEGER = re.compile(r"\s+AS\s+INTEGER\s*$", re.I)


def _casts_to_integer(sql: str) -> str:
    """``CAST(X AS INTEGER)`` as SQLite means it, truncated toward zero (PostgreSQL's cast
    rounds a fraction to the nearest integer)."""
    out: list[str] = []
    pos = 0
    for m in _CAST.finditer(sql):
        if m.start() < pos:
            continue  # inside a cast already rewritten
        depth, i, quote = 1, m.end(), ""
        while i < len(sql) and depth:
            ch = sql[i]
            if quote:
                quote = "" if ch == quote else quote
            elif ch in "'\"":
                quote = ch
            elif ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            i += 1
        if depth:
            break  # unbalanced: PostgreSQL will say so
        inner = sql[m.end() : i - 1]
        found = _AS_INTEGER.search(inner)
        if found is None:
            continue
        out.append(sql[pos : m.start()])
        operand = _casts_to_integer(inner[: found.start()])
        out.append(f"CAST(trunc(CAST({operand} AS double precision)) AS BIGINT)")
        pos = i
    out.append(sql[pos:])
    return "".join(out)


_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_CONTROL = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|END)\b", re.I)
_UNSUPPORTED = re.compile(r"^\s*PRAGMA\b", re.I)


def _rewrite_code(sql: str, rewrite: Callable[[str], str]) -> str:
    """Apply ``rewrite`` to the parts of ``sql`` outside quotes and comments."""
    out: list[str] = []
    pos = 0
    for m in _OPAQUE.finditer(sql):
        out.append(rewrite(sql[pos : m.start()]))
        out.append(m.group(0))
        pos = m.end()
    out.append(rewrite(sql[pos:]))
    return "".join(out)


def translate(sql: str, schema: Schema, *, want_id: bool = True) -> Translated:
    """One SQLite-dialect statement as PostgreSQL (see the module's docstring for the rules)."""
    text = sql.strip().rstrip(";").rstrip()
    if _UNSUPPORTED.match(text):
        raise UnsupportedStatement(f"not available on PostgreSQL: {text[:60]!r}")
    if _CONTROL.match(text):
        return Translated(re.sub(r"(?i)^\s*BEGIN\s+IMMEDIATE\b", "BEGIN", text), False, True)
    conflict = ""
    table = ""
    m = _INSERT_OR.match(text)
    if m:
        mode, table, cols = m.group(1).upper(), m.group(2), m.group(4)
        text = f"INSERT INTO {table}{' (' + cols + ')' if cols else ''}" + text[m.end() :]
        if mode == "IGNORE":
            conflict = " ON CONFLICT DO NOTHING"
        else:
            key = schema.primary_keys.get(table)
            if not key:
                raise UnsupportedStatement(f"INSERT OR REPLACE into {table}: no primary key")
            names = (
                [c.strip().strip('"') for c in cols.split(",")]
                if cols
                else list(schema.columns.get(table, ()))
            )
            sets = ", ".join(f"{c} = excluded.{c}" for c in names if c not in key)
            action = f"DO UPDATE SET {sets}" if sets else "DO NOTHING"
            conflict = f" ON CONFLICT ({', '.join(key)}) {action}"
    else:
        m = _INSERT.match(text)
        table = m.group(1) if m else ""
    counter = 0
    params: list[str] = []  # the :name parameters, in order

    def code(part: str) -> str:
        nonlocal counter

        def number(_: re.Match[str]) -> str:
            nonlocal counter
            counter += 1
            return f"${counter}"

        def named(m: re.Match[str]) -> str:
            if m.group(1) not in params:
                params.append(m.group(1))
            return f"${params.index(m.group(1)) + 1}"

        part = re.sub(r"\?", number, part)
        part = _NAMED.sub(named, part)
        part = _EMPTY_IN.sub(r"\1 (SELECT NULL WHERE FALSE)", part)
        part = _INDEXED_BY.sub("", part)
        part = _GROUP_CONCAT.sub(r"string_agg(CAST(\1 AS text), ',')", part)
        return _LIKE.sub("ILIKE", part)

    text = _JSON_EXTRACT.sub(_json_extract, text)
    text = _JSON_EACH.sub(_json_each, text)  # its argument may hold a quoted string
    text = _casts_to_integer(text)
    text = _rewrite_code(text, code)
    if params and counter:
        raise UnsupportedStatement(f"both ? and :name parameters: {text[:60]!r}")
    returning = _RETURNING.search(text) if table else None
    returns_id = False
    if table:
        if returning and conflict:
            text = text[: returning.start()] + conflict.strip() + " " + text[returning.start() :]
        else:
            text += conflict
        if want_id and not returning and table in schema.generated_ids:
            text += " RETURNING id"
            returns_id = True
    return Translated(text, returns_id, False, tuple(params))


# -- values -------------------------------------------------------------------------------------


def _to_int(v: Any) -> Any:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, str):
        try:
            return int(v)
        except ValueError:
            return v  # PostgreSQL says what was wrong with it
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def _to_float(v: Any) -> Any:
    if isinstance(v, int | str) and not isinstance(v, bool):
        try:
            return float(v)
        except ValueError:
            return v
    return v


def _to_numeric(v: Any) -> Any:
    if isinstance(v, int | float | str) and not isinstance(v, bool):
        try:
            return Decimal(str(v))
        except ArithmeticError:
            return v
    return v


def _to_text(v: Any) -> Any:
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, int | float):
        return str(v)
    return v


def _to_bool(v: Any) -> Any:
    if isinstance(v, int | float):
        return bool(v)
    return v


_CONVERT: dict[str, Callable[[Any], Any]] = {
    "int2": _to_int,
    "int4": _to_int,
    "int8": _to_int,
    "float4": _to_float,
    "float8": _to_float,
    "numeric": _to_numeric,
    "text": _to_text,
    "varchar": _to_text,
    "bpchar": _to_text,
    "json": _to_text,
    "jsonb": _to_text,
    "bool": _to_bool,
}


def converter(type_name: str) -> Callable[[Any], Any] | None:
    """How a value is made fit for a column or parameter of PostgreSQL type ``type_name``
    (None: as it is)."""
    return _CONVERT.get(type_name)


def _numeric_out(text: str) -> int | float:
    """``numeric`` results as SQLite gives them: integers stay ``int``."""
    try:
        return int(text)
    except ValueError:
        return float(text)


# -- the connection -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Statement:
    translated: Translated
    prepared: asyncpg.prepared_stmt.PreparedStatement | None
    convert: tuple[Callable[[Any], Any] | None, ...]


def _described_otherwise(e: asyncpg.ProtocolError) -> bool:
    """asyncpg's refusal of a result row whose columns are not those the statement was
    described with when prepared (its message is the only thing that tells it apart)."""
    return "is different from what was described" in str(e)


def _rowcount(status: str) -> int:
    """``UPDATE 3`` / ``INSERT 0 1`` / ``DELETE 0`` -> 3 / 1 / 0; -1 for anything else."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else -1


class PgCursor:
    """The result of one statement, shaped like aiosqlite's cursor."""

    def __init__(self, rows: list[asyncpg.Record], rowcount: int, lastrowid: int | None) -> None:
        self._rows = rows
        self._next = 0
        self.rowcount = rowcount
        self.lastrowid = lastrowid

    async def fetchone(self) -> asyncpg.Record | None:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    async def fetchall(self) -> list[asyncpg.Record]:
        rest, self._next = self._rows[self._next :], len(self._rows)
        return rest

    async def fetchmany(self, size: int = 1) -> list[asyncpg.Record]:
        chunk = self._rows[self._next : self._next + size]
        self._next += len(chunk)
        return chunk

    def __aiter__(self) -> AsyncIterator[asyncpg.Record]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[asyncpg.Record]:
        while (row := await self.fetchone()) is not None:
            yield row

    async def close(self) -> None:
        self._rows = []


class _Pending:
    """``await conn.execute(...)`` and ``async with conn.execute(...) as cur`` both work."""

    def __init__(self, run: Callable[[], Any]) -> None:
        self._run = run

    def __await__(self) -> Generator[Any, None, PgCursor]:
        cursor: PgCursor = yield from self._run().__await__()
        return cursor

    async def __aenter__(self) -> PgCursor:
        cursor: PgCursor = await self._run()
        return cursor

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


async def _to_the_end(statement: Coroutine[Any, Any, T]) -> T:
    """Run a statement to its end even if the awaiting task is cancelled meanwhile (then
    raise the cancellation after it), as a statement on aiosqlite's thread finishes: asyncpg
    would cancel it on the server and refuse the next statement (the ROLLBACK of the
    cancelled task's transaction) while that cancellation is under way."""
    task = asyncio.ensure_future(statement)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await task
        raise


class PgConnection:
    """The PostgreSQL stand-in for ``Database.conn`` (see the module's docstring)."""

    def __init__(
        self, conn: asyncpg.Connection, schema: Schema, *, keep_plans: bool = False
    ) -> None:
        self.raw = conn
        self.schema = schema
        # asyncpg prepares a statement unnamed when its own cache is off (``connect``), so the
        # server parses and plans it again at every run: 0.2-0.3 ms of a card's 0.4 ms. With
        # ``keep_plans`` (the lookup's connection: a few reads by key, which a generic plan
        # serves as well as a custom one) each statement is a named one, planned once
        self.keep_plans = keep_plans
        self.total_changes = 0
        self._lock = asyncio.Lock()
        self._statements: dict[tuple[str, bool], _Statement] = {}
        # whether the task running a statement is the one whose transaction is open (set by
        # Database): another task's statement then runs in a savepoint of its own
        self.owns_transaction: Callable[[], bool] = lambda: True

    async def _statement(self, sql: str, want_id: bool) -> _Statement:
        key = (sql, want_id)
        found = self._statements.get(key)
        if found is not None:
            return found
        translated = translate(sql, self.schema, want_id=want_id)
        if translated.control:
            st = _Statement(translated, None, ())
        else:
            prepared = await self.raw.prepare(translated.text, name=self.keep_plans or None)
            convert = tuple(_CONVERT.get(t.name) for t in prepared.get_parameters())
            st = _Statement(translated, prepared, convert)
        if len(self._statements) >= STATEMENT_CACHE:
            self._statements.clear()
        self._statements[key] = st
        return st

    async def _run(self, st: _Statement, parameters: Sequence[Any] | Mapping[str, Any]) -> PgCursor:
        if st.prepared is None:
            await _to_the_end(self.raw.execute(st.translated.text))
            return PgCursor([], -1, None)
        if isinstance(parameters, Mapping):
            try:
                parameters = [parameters[name] for name in st.translated.names]
            except KeyError as e:
                raise sqlite3.ProgrammingError(f"no value for parameter :{e.args[0]}") from e
        if len(parameters) != len(st.convert):
            raise sqlite3.ProgrammingError(
                f"{len(st.convert)} parameters expected, {len(parameters)} given"
            )
        args = [
            c(v) if c is not None and v is not None else v
            for c, v in zip(st.convert, parameters, strict=True)
        ]
        try:
            rows: list[asyncpg.Record] = await _to_the_end(st.prepared.fetch(*args))
        except asyncpg.IntegrityConstraintViolationError as e:
            raise sqlite3.IntegrityError(str(e)) from e
        status = st.prepared.get_statusmsg() or ""
        count = _rowcount(status)
        if status.startswith(("INSERT", "UPDATE", "DELETE")) and count > 0:
            self.total_changes += count
        lastrowid = int(rows[-1][0]) if st.translated.returns_id and rows else None
        return PgCursor([] if st.translated.returns_id else rows, count, lastrowid)

    async def _execute(self, sql: str, parameters: Sequence[Any] | Mapping[str, Any]) -> PgCursor:
        async with self._lock, self._guard(sql):
            st = await self._statement(sql, True)
            try:
                return await self._run(st, parameters)
            except asyncpg.InvalidCachedStatementError:
                # a kept plan (keep_plans) whose result changed shape under it: another
                # instance migrated the schema. Prepared again; run again unless the error
                # ended a transaction
                self._statements.pop((sql, True), None)
                if self.raw.is_in_transaction():
                    raise
                return await self._run(await self._statement(sql, True), parameters)
            except asyncpg.ProtocolError as e:
                if not _described_otherwise(e):
                    raise
                # an unnamed statement's rows no longer match what it was described as when
                # prepared (a ``SELECT *`` of a table another instance gave a column: an
                # upgrade one instance at a time). The server ran it and the transaction is
                # whole: only this side's description is stale, so describe it again and run
                # it again
                self._statements.pop((sql, True), None)
                return await self._run(await self._statement(sql, True), parameters)

    @contextlib.asynccontextmanager
    async def _guard(self, sql: str) -> AsyncIterator[None]:
        """On PostgreSQL a statement that fails inside a transaction aborts all of it (SQLite
        fails that statement only). The transaction's own task lets its errors end it, as
        the store's code expects (nothing in it catches a store error and carries on but
        through a nested transaction, a savepoint); a statement another task runs meanwhile
        on the shared connection (a read from the API, say) gets a savepoint of its own, so
        its failure stays its own."""
        if (
            not self.raw.is_in_transaction()
            or self.owns_transaction()
            or _CONTROL.match(sql) is not None
        ):
            yield
            return
        await _to_the_end(self.raw.execute("SAVEPOINT centralita_guard"))
        try:
            yield
        except BaseException:
            await _to_the_end(
                self.raw.execute(
                    "ROLLBACK TO SAVEPOINT centralita_guard; RELEASE SAVEPOINT centralita_guard"
                )
            )
            raise
        await _to_the_end(self.raw.execute("RELEASE SAVEPOINT centralita_guard"))

    def execute(self, sql: str, parameters: Sequence[Any] | Mapping[str, Any] = ()) -> _Pending:
        return _Pending(lambda: self._execute(sql, parameters))

    async def execute_fetchall(
        self, sql: str, parameters: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[asyncpg.Record]:
        cursor = await self._execute(sql, parameters)
        return await cursor.fetchall()

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> PgCursor:
        """One statement per parameter row (so ``total_changes`` counts what was written)."""
        total = 0
        async with self._lock, self._guard(sql):
            st = await self._statement(sql, False)
            for row in parameters:
                total += max((await self._run(st, row)).rowcount, 0)
        return PgCursor([], total, None)

    async def commit(self) -> None:
        """Nothing to do: outside ``Database.transaction`` every statement commits by itself,
        as on the store's SQLite connection (autocommit, where aiosqlite's commit is moot)."""

    async def try_lock(self, key: str) -> bool:
        """Take the advisory lock named ``key`` for this connection unless another holds it;
        PostgreSQL drops it if this connection dies."""
        async with self._lock:
            got = await self.raw.fetchval(
                "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", key
            )
        return bool(got)

    async def hold_gateway_lock(self, *, shared: bool) -> bool:
        """Take the store's gateway lock for this connection's life: shared by the instances of
        a cluster, exclusive for a gateway alone (so neither can join the other); False if it
        is held the other way. PostgreSQL drops it when the gateway dies."""
        take = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
        async with self._lock:
            got = await self.raw.fetchval(f"SELECT {take}($1)", GATEWAY_LOCK_KEY)
        return bool(got)

    async def unlock(self, key: str) -> None:
        async with self._lock:
            await self.raw.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", key)

    async def close(self) -> None:
        async with self._lock:  # after the statement under way, as aiosqlite's close
            await self.raw.close()


async def connect(url: str) -> asyncpg.Connection:
    # no JIT: the store's statements (and the report triggers they fire, a row at a time)
    # are small, and compiling one took 0.3-0.7 s where running it takes a millisecond
    conn: asyncpg.Connection = await asyncpg.connect(
        url, statement_cache_size=0, server_settings={"jit": "off"}
    )
    await conn.set_type_codec(
        "numeric", encoder=str, decoder=_numeric_out, schema="pg_catalog", format="text"
    )
    return conn


# -- migrations ---------------------------------------------------------------------------------


async def migrate(
    conn: asyncpg.Connection,
    migrations: Sequence[Any],
    *,
    upto: int | None,
    where: str,
    error: Callable[[str], Exception],
) -> int:
    """Apply every migration above the database's version (each with its version bump in one
    transaction), one instance at a time; return the version it is at."""
    await conn.execute("CREATE TABLE IF NOT EXISTS centralita_schema (version BIGINT NOT NULL)")
    newest = migrations[-1].version if migrations else 0
    while True:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
            current = await conn.fetchval("SELECT max(version) FROM centralita_schema") or 0
            if current > newest:
                raise error(
                    f"database {where} has schema version {current}, newer than version "
                    f"{newest} that this Centralita knows; upgrade Centralita or use a backup "
                    f"made with this version"
                )
            todo = [
                m for m in migrations if m.version > current and (upto is None or m.version <= upto)
            ]
            if not todo:
                return int(current)
            mig = todo[0]
            try:
                await conn.execute(mig.path.read_text(encoding="utf-8"))
                await conn.execute("DELETE FROM centralita_schema")
                await conn.execute("INSERT INTO centralita_schema VALUES ($1)", mig.version)
            except asyncpg.PostgresError as e:
                raise error(
                    f"migration {mig.name} failed on {where}: {e}; the database stays at "
                    f"schema version {current}"
                ) from e
        log.info("store %s migrated to schema version %d (%s)", where, mig.version, mig.name)
