"""Caller lookup benchmark: a store with a million contacts, then lookups through the chain.

    python bench/lookup.py                   # 1,000,000 contacts, 3 numbers each
    python bench/lookup.py --contacts 20000  # a quick run

Prints the build time, lookups per second and p50/p99/max latency of the whole chain
(normalize + cache + store, no connectors) with the cache cold (every number looked up for the
first time) and warm (the same numbers again), the parts alone (normalize, store query), unknown
numbers, and CSV import rows per second. Goal: p99 under 1 ms cold.

    python bench/lookup.py --contacts 300000 --keep /tmp/l.db --postgres postgresql://me@/bench

builds the SQLite file as usual, copies it into that (empty) PostgreSQL database with
``centralita migrate-store``'s code (timed), and measures the lookups there; a database that
already holds the contacts (an earlier run with the same --keep file) is reused as it is. On
PostgreSQL it also measures a bare ``SELECT 1`` on the lookup's connection: the round trip
that no card can beat.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import inspect
import io
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.lookup.chain import LookupChain
from gateway.lookup.numbers import normalize
from gateway.lookup.settings import LookupSettings
from gateway.store.cards import _FIND, StoreCardSource
from gateway.store.copy import copy_store
from gateway.store.csv_io import import_csv
from gateway.store.db import Database

FIRST = ["Lucía", "Javier", "Marta", "Carlos", "Elena", "Oliver", "Amelia", "James", "Emma"]
LAST = ["García", "Martín", "López", "Smith", "Jones", "Müller", "Dubois", "Hernández"]
OWNERS = ["ana", "bruno", "carla", None]
STATUSES = ["new", "contacted", "qualified", "nurturing", "won", "lost"]
CARD_JSON = (
    '[["rfm_segment", 432, "loyal", "rfm.scores", {"r": 4, "f": 3, "m": 2, "days": 50}],'
    ' ["clv_historic", 1250.0, "EUR", "clv.historic", {"amount": 1250.0, "currency": "EUR"}],'
    ' ["churn_30", 0.42, "medium", "churn.own", {"days": 50, "gap_days": 30, "percent": 42}],'
    ' ["data_quality", 80, "good", "data_quality.missing", {"missing": ["valid_email"]}],'
    ' ["next_best", null, "call_back", "next.churn", {"percent": 42, "channel": "phone"}]]'
)


def numbers_of(i: int) -> list[tuple[str, str, str]]:
    """(raw as typed, E.164, type) for contact ``i``: unique by construction."""
    m = f"{i:08d}"
    w = f"{i:07d}"
    return [
        (f"6{m[:2]} {m[2:4]} {m[4:6]} {m[6:]}", f"+346{m}", "mobile"),
        (f"+34 91{w[0]} {w[1:3]} {w[3:5]} {w[5:]}", f"+3491{w}", "work"),
        (f"0044 20 7{w[:3]} {w[3:]}", f"+44207{w}", "home"),
    ]


def build(path: Path, contacts: int, per_contact: int) -> float:
    """Fill a migrated file with executemany in one transaction; returns seconds taken."""
    t0 = time.perf_counter()
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA synchronous = OFF")
    con.execute("PRAGMA cache_size = -200000")
    con.execute("BEGIN")
    now = time.time()
    rng = random.Random(1)
    batch = 100_000
    has_metrics = bool(
        con.execute("SELECT 1 FROM sqlite_master WHERE name = 'person_metrics'").fetchall()
    )
    for start in range(0, contacts, batch):
        ids = range(start + 1, min(start + batch, contacts) + 1)
        people, phones, emails, acts, tasks = [], [], [], [], []
        metrics = []  # the card's precomputed customer metrics (gateway/intel), one row a person
        for i in ids:
            lead = i % 3 == 0
            people.append(
                (
                    i,
                    "lead" if lead else "contact",
                    FIRST[i % 9],
                    LAST[i % 8],
                    f"Company {i % 5000}",
                    OWNERS[i % 4],
                    STATUSES[i % 6] if lead else None,
                    "import" if lead else None,
                    "price" if lead and i % 6 == 5 else "",
                    round(rng.random() * 10, 1) if lead else None,
                    now,
                    now,
                )
            )
            for raw, e164, typ in numbers_of(i)[:per_contact]:
                phones.append((i, raw, e164, typ))
            emails.append((i, f"person{i}@example.com", f"person{i}@example.com"))
            if i % 10 == 0:
                acts.append((i, "call", now - 86400, "inbound call, answered"))
                acts.append((i, "note", now - 3600, "asked for a quote"))
            if i % 20 == 0:
                tasks.append((i, now + 86400, "call back", now))
            if has_metrics:  # the card's row (gateway/intel/service.py writes it)
                metrics.append((i, "card", None, None, "card", CARD_JSON, now))
        con.executemany(
            "INSERT INTO people (id, kind, first_name, last_name, company, owner, status, source,"
            " lost_reason, score, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            people,
        )
        con.executemany("INSERT INTO phones (person_id, raw, e164, type) VALUES (?,?,?,?)", phones)
        con.executemany("INSERT INTO emails (person_id, email, email_lower) VALUES (?,?,?)", emails)
        con.executemany(
            "INSERT INTO activities (person_id, kind, at, summary) VALUES (?,?,?,?)", acts
        )
        con.executemany(
            "INSERT INTO follow_ups (person_id, due_at, title, created_at) VALUES (?,?,?,?)",
            tasks,
        )
        con.executemany(
            "INSERT INTO person_metrics (person_id, metric, value, label, reason, params,"
            " computed_at) VALUES (?,?,?,?,?,?,?)",
            metrics,
        )
    con.execute("COMMIT")
    con.execute("ANALYZE")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return time.perf_counter() - t0


async def _people_in(url: str) -> int:
    """How many people the PostgreSQL database holds (0 when it is not migrated yet)."""
    conn = await asyncpg.connect(url)
    try:
        if not await conn.fetchval("SELECT to_regclass('people') IS NOT NULL"):
            return 0
        return int(await conn.fetchval("SELECT count(*) FROM people"))
    finally:
        await conn.close()


class _Undo(Exception):
    """Rolls the import back after it was measured."""


def report(name: str, samples_ns: list[int]) -> None:
    s = sorted(samples_ns)
    n = len(s)
    if not n:
        print(f"  {name:<34} skipped (too few --lookups for this part)")
        return
    p50 = s[n // 2] / 1000
    p99 = s[min(n - 1, int(n * 0.99))] / 1000
    mean = statistics.fmean(s) / 1000
    print(
        f"  {name:<34} {n:>7} ops  {1e6 / mean:>9,.0f}/s  p50 {p50:7.1f} µs  "
        f"p99 {p99:7.1f} µs  max {s[-1] / 1000:8.1f} µs"
    )


async def measure(chain: LookupChain, raws: list[str]) -> list[int]:
    out = []
    clock = time.perf_counter_ns
    for raw in raws:
        t = clock()
        await chain.lookup(raw)
        out.append(clock() - t)
    return out


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--contacts", type=int, default=1_000_000)
    ap.add_argument("--numbers", type=int, default=3, choices=(1, 2, 3), help="per contact")
    ap.add_argument("--lookups", type=int, default=20_000, help="at least 1")
    ap.add_argument("--import-rows", type=int, default=20_000)
    ap.add_argument("--dir", type=Path, default=None, help="where to build (default: a temp dir)")
    ap.add_argument("--keep", type=Path, default=None, help="build here once and reuse it")
    ap.add_argument("--gc-off", action="store_true", help="disable the garbage collector")
    ap.add_argument("--postgres", metavar="URL", help="copy into this empty database, measure it")
    args = ap.parse_args()
    for name in ("contacts", "lookups", "import_rows"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")

    tmp = tempfile.TemporaryDirectory(dir=args.dir)
    path = args.keep or Path(tmp.name) / "bench.db"
    if args.keep and path.exists():
        print(f"reusing {path} (built earlier with --contacts {args.contacts:,})")
    else:
        db = await Database.open(path)
        await db.close()
        print(f"building {args.contacts:,} contacts x {args.numbers} numbers in {path} ...")
        secs = build(path, args.contacts, args.numbers)
        rows = args.contacts * args.numbers
        print(
            f"  built in {secs:.1f} s ({args.contacts / secs:,.0f} contacts/s, {rows:,} numbers),"
            f" file {path.stat().st_size / 1e6:,.0f} MB"
        )
    if args.gc_off:
        gc.disable()

    if args.postgres:
        if await _people_in(args.postgres):
            print("  reusing the contacts already in PostgreSQL")
        else:
            t0 = time.perf_counter()
            counts = await copy_store(path, args.postgres)
            secs = time.perf_counter() - t0
            rows = sum(counts.values())
            print(
                f"  copied to PostgreSQL in {secs:.1f} s ({rows / secs:,.0f} rows/s, {rows:,} rows)"
            )
        db = await Database.open_postgres(args.postgres)
    else:
        db = await Database.open(path)
    try:
        await measure_all(args, db)
    finally:
        # an error on the way must not leave the store's connection thread keeping us alive
        await db.close()
        tmp.cleanup()


async def measure_all(args: argparse.Namespace, db: Database) -> None:
    rng = random.Random(2)
    picks = [rng.randrange(1, args.contacts + 1) for _ in range(args.lookups)]
    raws = [numbers_of(i)[rng.randrange(args.numbers)][0] for i in picks]
    settings = LookupSettings(default_region="ES", cache_size=args.lookups * 2)
    gc.collect()
    print("lookups (no connectors; numbers as typed, e.g. '612 34 56 78'):")
    t = time.perf_counter_ns
    parts = []
    for raw in raws[:5000]:
        t0 = t()
        normalize(raw, "ES")
        parts.append(t() - t0)
    report("normalize only", parts)
    source = StoreCardSource(db)
    e164s = [normalize(r, "ES").e164 for r in raws]
    parts = []
    for e in e164s[5000:10000]:
        t0 = t()
        found = source.find(e)
        if inspect.isawaitable(found):  # PostgreSQL
            await found
        parts.append(t() - t0)
    report("store query only (E.164)", parts)
    parts = []
    if db.engine == "sqlite":
        for e in e164s[5000:7000]:  # the card's first query through db.conn, for comparison
            t0 = t()
            await db.conn.execute_fetchall(_FIND, (e,))
            parts.append(t() - t0)
        report("same query via aiosqlite (1 of 2)", parts)
    else:
        for _ in range(5000):  # the floor: one round trip that does nothing
            t0 = t()
            await db.lookup_conn.execute_fetchall("SELECT 1")
            parts.append(t() - t0)
        report("SELECT 1 on the lookup connection", parts)

    chain = LookupChain(source, [], settings)
    cold_raws = raws[10000:] if len(raws) > 15000 else raws
    cold = await measure(chain, cold_raws)
    report("chain, cache cold", cold)
    warm = await measure(chain, cold_raws)
    report("chain, cache warm", warm)
    unknown = [f"+34 7{rng.randrange(10**7, 10**8)}" for _ in range(5000)]
    report("chain, unknown number (cold)", await measure(chain, unknown))
    nocache = LookupChain(
        source, [], LookupSettings(default_region="ES", cache_ttl=0, negative_ttl=0)
    )
    report("chain, cache disabled", await measure(nocache, raws[:10000]))
    hits = sum(1 for c in [await chain.lookup(r) for r in raws[:100]] if c.known)
    print(f"  sanity: {hits}/100 sampled numbers found a person")

    n = args.import_rows
    buf = io.StringIO()
    buf.write("first_name,last_name,mobile_phone,email,status\n")
    for k in range(n):
        buf.write(f"Imp{k},Row,+34 7{k:08d},imp{k}@example.org,new\n")
    t0 = time.perf_counter()
    try:
        async with db.transaction():  # measured, then undone so a --keep file stays the same
            rep = await import_csv(db, buf.getvalue(), "leads", strict=True)
            secs = time.perf_counter() - t0
            raise _Undo
    except _Undo:
        pass
    print(f"import into the {args.contacts:,}-contact store:")
    print(
        f"  {rep.created:,} rows created, {len(rep.errors)} errors in {secs:.2f} s:"
        f" {n / secs:,.0f} rows/s"
    )


if __name__ == "__main__":
    asyncio.run(main())
