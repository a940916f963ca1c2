"""``centralita migrate-store``: copy a SQLite store into an empty PostgreSQL database.

Both are first brought to the newest schema (the same migration numbers on either engine), so
every table exists on both sides with the same columns. The copy is one PostgreSQL
transaction: the foreign keys are set aside, every table's rows go in with ``COPY`` (each value
converted to its column's type, as the store does for parameters), the keys are put back
(which checks every row against them), the generated ids continue after the largest copied
one, and each table's row count is compared. Anything wrong and nothing stays in PostgreSQL.

The SQLite store is opened with the gateway's lock: a gateway still running on it makes the
command refuse, so the copy is of a store nobody is writing to.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.store import postgres
from gateway.store.db import Database, StoreError

SCHEMA_TABLE = "centralita_schema"
BATCH = 5000  # rows per COPY


async def copy_store(
    source: Path, url: str, progress: Callable[[str, int], None] | None = None
) -> dict[str, int]:
    """Copy every table of the SQLite store ``source`` into the PostgreSQL database at ``url``
    (empty, or only migrated); returns {table: rows copied}."""
    src = await Database.open(source, single_instance=True)
    try:
        dst = await Database.open_postgres(url)
        try:
            if src.version != dst.version:
                raise StoreError(
                    f"schema versions differ: {source} is at {src.version}, PostgreSQL at "
                    f"{dst.version}"
                )
            assert isinstance(dst.conn, postgres.PgConnection)
            return await _copy(src, dst.conn, progress)
        finally:
            await dst.close()
    finally:
        await src.close()


async def _copy(
    src: Database, dst: postgres.PgConnection, progress: Callable[[str, int], None] | None
) -> dict[str, int]:
    raw = dst.raw
    types: dict[str, dict[str, str]] = {}
    for r in await raw.fetch(
        "SELECT c.table_name, c.column_name, c.udt_name FROM information_schema.columns c"
        " JOIN information_schema.tables t"
        " ON t.table_schema = c.table_schema AND t.table_name = c.table_name"
        " WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'"
    ):
        types.setdefault(r["table_name"], {})[r["column_name"]] = r["udt_name"]
    tables = sorted(t for t in types if t != SCHEMA_TABLE)
    have = {
        name
        for (name,) in src.reader.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    missing = [t for t in tables if t not in have]
    if missing:
        raise StoreError(f"tables missing from the SQLite store: {', '.join(missing)}")
    counts: dict[str, int] = {}
    async with raw.transaction():
        for table in tables:
            # rows written by the migrations themselves (settings, fixed lists) are copied over
            # from the source, so an otherwise empty database counts as empty
            if await raw.fetchval(f"SELECT count(*) FROM {table}") and not _seeded(table):
                raise StoreError(
                    f"the PostgreSQL database already holds data (table {table}); "
                    "migrate-store copies into an empty one only"
                )
        keys = await raw.fetch(
            "SELECT conrelid::regclass::text AS tab, conname, pg_get_constraintdef(oid) AS def"
            " FROM pg_constraint WHERE contype = 'f'"
            " AND connamespace = current_schema()::regnamespace"
        )
        for k in keys:
            await raw.execute(f'ALTER TABLE {k["tab"]} DROP CONSTRAINT "{k["conname"]}"')
        # the report tables are copied as they are: the triggers that derive them from the
        # calls (migrations 0014, 0016) stay off until every row is in
        for table in tables:
            await raw.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        for table in tables:
            if _seeded(table):
                await raw.execute(f"DELETE FROM {table}")
            counts[table] = await _copy_table(src, raw, table, types[table])
            if progress is not None:
                progress(table, counts[table])
        for k in keys:
            await raw.execute(f'ALTER TABLE {k["tab"]} ADD CONSTRAINT "{k["conname"]}" {k["def"]}')
        for table in tables:
            await raw.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
        for table in tables:
            if "id" in types[table] and table in dst.schema.generated_ids:
                await raw.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                    f" coalesce((SELECT max(id) FROM {table}), 0) + 1, false)"
                )
            copied = await raw.fetchval(f"SELECT count(*) FROM {table}")
            if copied != counts[table]:
                raise StoreError(
                    f"table {table}: {counts[table]} rows read, {copied} in PostgreSQL"
                )
    # the planner's statistics now, rather than whenever autovacuum comes by
    await raw.execute("ANALYZE")
    return counts


def _seeded(table: str) -> bool:
    """Tables whose rows the migrations write (copied over from the source like the rest)."""
    return table in {"report_rollup_settings", "report_kinds"}


async def _copy_table(src: Database, raw: Any, table: str, types: dict[str, str]) -> int:
    columns = list(types)
    convert = [postgres.converter(types[c]) for c in columns]
    names = ", ".join(f'"{c}"' for c in columns)
    cursor = src.reader.execute(f"SELECT {names} FROM {table}")
    total = 0
    while batch := cursor.fetchmany(BATCH):
        records = [
            tuple(v if v is None or f is None else f(v) for f, v in zip(convert, row, strict=True))
            for row in batch
        ]
        await raw.copy_records_to_table(table, records=records, columns=columns)
        total += len(records)
    return total
