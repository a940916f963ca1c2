"""The embedded SQLite database: one file, WAL, schema migrations applied at open.

Two connections to the same file:

* ``conn`` (aiosqlite): every write and the ordinary reads (API, import, call log). aiosqlite
  runs SQLite in its own thread so a slow write never stalls the event loop.
* ``reader`` (plain ``sqlite3``, read-only, memory-mapped): the caller lookup only. A ring needs
  a card in well under a millisecond. Measured with ``bench/lookup.py`` (300k contacts, this
  2-core box): the card's two indexed queries take ~40 µs p50 called directly, while just the
  first of them takes ~65 µs p50 (p99 ~220 µs) through aiosqlite's thread hop and future, so
  the lookup calls this connection directly on the loop. WAL lets it read while the writer
  writes; each lookup reads a committed snapshot (every cursor is fully fetched, so no read
  transaction stays open and blocks checkpoints).

Migrations are numbered plain SQL files ``migrations/NNNN_name.sql``; the schema version is
``PRAGMA user_version``. At open every file above the current version is applied in order, each
in its own transaction with the version bump, so a crash mid-upgrade leaves the previous version
intact. A file whose version is newer than the newest migration this code ships is refused.

The store holds people's names and numbers: the file (and its -wal/-shm companions, which SQLite
creates with the file's mode) is 0600, a folder created for it 0700. A gateway opens the store
with ``single_instance=True``: a lock file beside it (``<store>.lock``, holding the pid) makes a
second gateway on the same store refuse to start instead of both writing. CLI commands (import,
export, user) open it without the lock, next to a running gateway, as WAL allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fcntl
import logging
import os
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast
from urllib.parse import urlsplit, urlunsplit

import aiosqlite
import asyncpg

from gateway.errors import GatewayError
from gateway.store import postgres
from gateway.store.postgres import PG_MIGRATIONS_DIR

if TYPE_CHECKING:
    from gateway.config import StoreSettings

log = logging.getLogger("gateway.store")

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_MIGRATION_NAME = re.compile(r"^(\d{4})_[A-Za-z0-9_]+\.sql$")
BUSY_TIMEOUT_MS = 5000
READER_MMAP_BYTES = 1 << 30  # address space only; the OS pages in what lookups touch

# a value sqlite3 binds to a ``?`` placeholder (queries built clause by clause collect these)
SqlParam = str | int | float | bytes | None


def redact_url(url: str) -> str:
    """``url`` with its password, if any, shown as ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


class StoreError(GatewayError):
    """The database file cannot be used as it is (wrong schema version, failed migration)."""


class StoreInUse(StoreError):
    """Another gateway holds the store's lock; ``pid`` is that process (None if unknown)."""

    def __init__(self, path: Path, pid: int | None, *, why: str = "") -> None:
        who = f"pid {pid}" if pid else "another process"
        super().__init__(
            f"store {str(path)!r} is in use: {why}"
            if why
            else f"store {str(path)!r} is in use by another gateway ({who}); stop it first, "
            "or give this one its own store.path"
        )
        self.pid = pid


class InstanceLock:
    """An exclusive ``flock`` on ``<store>.lock`` holding the owner's pid; the kernel drops
    it when the process dies, so a crash never leaves a stale lock behind."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, store: Path) -> InstanceLock:
        path = store.with_name(store.name + ".lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            raise StoreInUse(store, int(text) if text.isdigit() else None) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing drops the flock


def _private_file(path: Path) -> None:
    """Create the store file 0600 (or take an existing one down to 0600) before SQLite opens
    it; a folder created for it is 0700."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for companion in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            if companion.stat().st_mode & 0o077:
                companion.chmod(0o600)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    path: Path


def discover_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every ``NNNN_name.sql`` in ``directory``, ordered; two files with one number is an error."""
    found: dict[int, Migration] = {}
    for p in sorted(directory.iterdir()):
        m = _MIGRATION_NAME.match(p.name)
        if not m:
            continue
        version = int(m.group(1))
        if version in found:
            raise StoreError(
                f"two migrations share number {version:04d}: {found[version].name} and {p.name}"
            )
        found[version] = Migration(version, p.name, p)
    return [found[v] for v in sorted(found)]


def migrate(path: Path, migrations: list[Migration], upto: int | None = None) -> int:
    """Bring the file at ``path`` up to date (or up to ``upto``); return the version it is at."""
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        con.execute("PRAGMA journal_mode = WAL")
        current: int = con.execute("PRAGMA user_version").fetchone()[0]
        newest = migrations[-1].version if migrations else 0
        if current > newest:
            raise StoreError(
                f"database {str(path)!r} has schema version {current}, newer than version "
                f"{newest} that this Centralita knows; upgrade Centralita or use a backup "
                f"made with this version"
            )
        for mig in migrations:
            if mig.version <= current or (upto is not None and mig.version > upto):
                continue
            sql = mig.path.read_text(encoding="utf-8")
            try:
                # one transaction per file with its version bump: all of it or nothing
                con.executescript(f"BEGIN IMMEDIATE;\n{sql}\n;PRAGMA user_version = {mig.version};")
                con.execute("COMMIT")
            except sqlite3.Error as e:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise StoreError(
                    f"migration {mig.name} failed on {str(path)!r}: {e}; the file stays at "
                    f"schema version {current}"
                ) from e
            log.info("store %s migrated to schema version %d (%s)", path, mig.version, mig.name)
            current = mig.version
        return current
    finally:
        con.close()


_tx_depth: contextvars.ContextVar[int] = contextvars.ContextVar("store_tx_depth", default=0)

NumberListener = Callable[[str], None]


class Database:
    """The open store: the write connection, the hot-path reader and the change hooks."""

    def __init__(
        self,
        path: Path,
        conn: aiosqlite.Connection,
        reader: sqlite3.Connection | None,
        version: int,
        clock: Callable[[], float],
        lock: InstanceLock | None = None,
        *,
        engine: str = "sqlite",
    ) -> None:
        self.path = path
        self.lock = lock
        self.conn = conn
        self.engine = engine  # "sqlite" or "postgresql"
        self._reader = reader
        self._lookup_conn: aiosqlite.Connection | None = None  # PostgreSQL: see lookup_conn
        self.version = version
        self.clock = clock
        self._write_lock = asyncio.Lock()
        self._listeners: list[NumberListener] = []
        self._pending_numbers: set[str] = set()
        self._savepoints = 0
        self._tx_task: asyncio.Task[object] | None = None  # the task whose transaction is open
        # domain events (gateway/store/events.py) go here after the commit that made them
        # true; the gateway points it at its bus (None: nobody listens, e.g. the CLI)
        self.event_sink: Callable[[object], None] | None = None
        self._pending_events: list[object] = []

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        migrations_dir: Path = MIGRATIONS_DIR,
        upto: int | None = None,
        clock: Callable[[], float] = time.time,
        single_instance: bool = False,
    ) -> Database:
        """Open (creating folder and file if needed) and migrate; ``upto`` is for tests only.
        ``single_instance``: take the store's lock (a gateway), or raise StoreInUse."""
        p = Path(path)
        migrations = discover_migrations(migrations_dir)
        _private_file(p)
        lock = InstanceLock.acquire(p) if single_instance else None
        try:
            version = await asyncio.to_thread(migrate, p, migrations, upto)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        pending = aiosqlite.connect(p, isolation_level=None)
        # a command that dies with this connection still open must exit, not wait forever on
        # the connection's (non-daemon) thread; SQLite's journal keeps the file whole
        with contextlib.suppress(AttributeError):
            pending._thread.daemon = True
        try:
            conn = await pending
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        try:
            conn.row_factory = sqlite3.Row
            for pragma in (
                "journal_mode = WAL",
                "foreign_keys = ON",
                f"busy_timeout = {BUSY_TIMEOUT_MS}",
                "synchronous = NORMAL",  # safe with WAL: a power cut loses at most the last commit
            ):
                await conn.execute(f"PRAGMA {pragma}")
            reader = sqlite3.connect(p, isolation_level=None, check_same_thread=False)
        except BaseException:
            await conn.close()
            if lock is not None:
                lock.release()
            raise
        reader.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        reader.execute("PRAGMA query_only = ON")
        # map the file instead of read() per page: a cold lookup touches ~10 pages
        reader.execute(f"PRAGMA mmap_size = {READER_MMAP_BYTES}")
        return cls(p, conn, reader, version, clock, lock)

    @classmethod
    async def open_postgres(
        cls,
        url: str,
        *,
        migrations_dir: Path = PG_MIGRATIONS_DIR,
        upto: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> Database:
        """Open a PostgreSQL database (``postgresql://user@host/db``) and migrate it with
        ``migrations_pg/``; see gateway/store/postgres.py. Several gateways may share it."""
        migrations = discover_migrations(migrations_dir)
        where = redact_url(url)
        try:
            raw = await postgres.connect(url)
        except (OSError, asyncpg.PostgresError) as e:
            raise StoreError(f"cannot connect to PostgreSQL at {where}: {e}") from e
        try:
            version = await postgres.migrate(
                raw, migrations, upto=upto, where=where, error=StoreError
            )
            schema = await postgres.read_schema(raw)
        except BaseException:
            await raw.close()
            raise
        # PgConnection speaks the part of aiosqlite.Connection the store uses (execute,
        # execute_fetchall, executemany, total_changes; cursors with fetchone/fetchall,
        # rowcount, lastrowid), so the store's code and its annotations stay engine-neutral
        conn = cast(aiosqlite.Connection, postgres.PgConnection(raw, schema))
        try:
            lookup_raw = await postgres.connect(url)
        except BaseException:
            await raw.close()
            raise
        db = cls(Path(where), conn, None, version, clock, engine="postgresql")
        # a statement of a task outside the open transaction gets a savepoint (postgres.py)
        cast(postgres.PgConnection, conn).owns_transaction = db._owns_transaction
        db._lookup_conn = cast(
            aiosqlite.Connection, postgres.PgConnection(lookup_raw, schema, keep_plans=True)
        )
        return db

    @classmethod
    async def open_configured(
        cls,
        store: StoreSettings,
        *,
        clock: Callable[[], float] = time.time,
        gateway: Literal["alone", "cluster"] | None = None,
    ) -> Database:
        """The store the config names (``store.url``: PostgreSQL, else the SQLite file at
        ``store.path``), migrated. ``gateway``: this process is a gateway, the only one on the
        store (``"alone"``) or one of a cluster's instances; it raises StoreInUse when that
        cannot be. None: a command (import, user...) beside the running gateways."""
        if not store.url:
            # a file is one machine's: each instance of a cluster has its own, locked as alone
            return await cls.open(store.path, clock=clock, single_instance=gateway is not None)
        db = await cls.open_postgres(store.url, clock=clock)
        if gateway is None:
            return db
        conn = cast(postgres.PgConnection, db.conn)
        if not await conn.hold_gateway_lock(shared=gateway == "cluster"):
            await db.close()
            raise StoreInUse(
                Path(store.where),
                None,
                why=(
                    "another gateway is running on it without a cluster: section; give every "
                    "instance that shares the database a cluster: section (docs/scale-out.md)"
                    if gateway == "cluster"
                    else "gateway instances of a cluster share it; a gateway alone on a shared "
                    "database would track and write every call a second time: give this one a "
                    "cluster: section too (docs/scale-out.md), or a store of its own"
                ),
            )
        return db

    @property
    def lookup_conn(self) -> aiosqlite.Connection:
        """PostgreSQL's counterpart of ``reader``, for the caller lookup: a connection of its
        own, so a lookup never queues behind the writer's statements and reads committed data
        only, as SQLite's reader does."""
        if self._lookup_conn is None:
            raise StoreError("lookup_conn is PostgreSQL's; on SQLite the lookup uses reader")
        return self._lookup_conn

    @property
    def reader(self) -> sqlite3.Connection:
        """The synchronous read-only SQLite connection of the caller lookup (SQLite only)."""
        if self._reader is None:
            raise StoreError(
                "the synchronous lookup reader exists on SQLite only; on PostgreSQL the "
                "lookup goes through conn"
            )
        return self._reader

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        if self._lookup_conn is not None:
            await self._lookup_conn.close()
        try:
            await self.conn.close()
        finally:
            if self.lock is not None:
                self.lock.release()

    # -- transactions -----------------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """Writes inside commit together. Nested use (same task) becomes a savepoint, so a
        caller can undo one row of a bigger import without losing the rest."""
        depth = _tx_depth.get()
        if depth:
            self._savepoints += 1
            name = f"sp{self._savepoints}"
            await self.conn.execute(f"SAVEPOINT {name}")
            token = _tx_depth.set(depth + 1)
            events_before = len(self._pending_events)
            try:
                yield self.conn
            except BaseException:
                del self._pending_events[events_before:]  # their writes are undone too
                await self.conn.execute(f"ROLLBACK TO {name}")
                await self.conn.execute(f"RELEASE {name}")
                raise
            else:
                await self.conn.execute(f"RELEASE {name}")
            finally:
                _tx_depth.reset(token)
            return
        async with self._write_lock:
            token = _tx_depth.set(1)
            self._tx_task = asyncio.current_task()
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                await self.conn.execute("ROLLBACK")
                self._pending_numbers.clear()
                self._pending_events.clear()
                raise
            else:
                await self.conn.execute("COMMIT")
            finally:
                _tx_depth.reset(token)
                self._tx_task = None
        pending, self._pending_numbers = self._pending_numbers, set()
        self._fire(pending)
        events, self._pending_events = self._pending_events, []
        for event in events:
            self._emit(event)

    def _owns_transaction(self) -> bool:
        """Whether the running task is the one whose transaction is open (not another task
        sharing the connection meanwhile, nor one it started)."""
        return self._tx_task is not None and asyncio.current_task() is self._tx_task

    @asynccontextmanager
    async def one_statement(self) -> AsyncIterator[aiosqlite.Connection]:
        """For a write of one statement. SQLite makes a statement atomic by itself, so inside
        an open transaction it needs no savepoint of its own (each savepoint costs two round
        trips to the store's thread, most of a campaign batch's time); outside one, it gets
        its own transaction."""
        if _tx_depth.get():
            yield self.conn
            return
        async with self.transaction() as conn:
            yield conn

    @asynccontextmanager
    async def exclusive(self, key: str) -> AsyncIterator[bool]:
        """Whether this gateway, among all that share the store, may do the work named
        ``key`` now (e.g. deliver one CRM's outbox in order); held until the block ends.
        SQLite: always, a store has one gateway (its lock file). PostgreSQL: an advisory
        lock, which the server drops if this gateway dies."""
        if not isinstance(self.conn, postgres.PgConnection):
            yield True
            return
        got = await self.conn.try_lock(key)
        try:
            yield got
        finally:
            if got:
                await self.conn.unlock(key)

    # -- change hooks -----------------------------------------------------------------------

    def watch_numbers(self, listener: NumberListener) -> None:
        """Call ``listener(e164)`` after a commit that changed what a lookup of it returns."""
        self._listeners.append(listener)

    def numbers_changed(self, e164s: Iterable[str]) -> None:
        """Repositories report touched numbers here; listeners run after the commit."""
        if _tx_depth.get():
            self._pending_numbers.update(e164s)
        else:
            self._fire(set(e164s))

    def publish(self, event: object) -> None:
        """Hand a domain event to ``event_sink`` once the write that made it true is
        committed (at once outside a transaction); a rollback drops it."""
        if self.event_sink is None:
            return
        if _tx_depth.get():
            self._pending_events.append(event)
        else:
            self._emit(event)

    def _emit(self, event: object) -> None:
        if self.event_sink is None:
            return
        try:
            self.event_sink(event)
        except Exception:  # a broken listener must not undo a committed write
            log.exception("event sink failed for %s", type(event).__name__)

    def _fire(self, numbers: set[str]) -> None:
        for number in numbers:
            for listener in self._listeners:
                try:
                    listener(number)
                except Exception:  # a broken listener must not undo a committed write
                    log.exception("number change listener failed for %s", number)
