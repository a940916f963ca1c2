"""CRM deals benchmark: a SuiteCRM stand-in with N contacts and N opportunities (one each, half
of them won) in another process, and a store that knows half of those contacts.

    python bench/crm_deals.py                  # 20,000 contacts and opportunities
    python bench/crm_deals.py --deals 2000     # a quick run

Prints the first sync (the directory's full pass, then the deals'), an incremental sync of
1,000 changed opportunities, an incremental sync with nothing changed (the waiting deals are
not tried again), and how long the metrics service takes to recompute everyone the deals
touched. The stand-in answers as SuiteCRM 7.14.6 does; a real CRM adds its own time per page.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
from aiohttp import web

from connectors.settings import DealSettings, DirectorySettings, SuiteCrmSettings
from connectors.sugarcrm import SugarCrmConnector
from gateway.bus import Bus
from gateway.directory import DirectoryStore, DirectorySync
from gateway.intel.service import IntelService
from gateway.store.db import Database
from tests.fakes.sugarcrm import SugarCrm

TZ = ZoneInfo("Europe/Madrid")


def number(i: int) -> tuple[str, str]:
    """(as typed in the CRM, E.164) of contact ``i``."""
    m = f"{i:08d}"
    return f"+34 6{m[:2]} {m[2:5]} {m[5:]}", f"+346{m}"


def seed(n: int) -> tuple[SugarCrm, Any]:
    crm = SugarCrm()
    start = datetime(2024, 1, 1)
    contacts, opportunities = [], []
    for i in range(n):
        stamp = (start + timedelta(seconds=i // 100)).strftime("%Y-%m-%d %H:%M:%S")
        contacts.append(
            {
                "id": f"c{i:07d}",
                "date_modified": stamp,
                "first_name": "Ana",
                "last_name": f"Pérez {i}",
                "phone_mobile": number(i)[0],
            }
        )
        won = i % 2 == 0
        opportunities.append(
            {
                "id": f"o{i:07d}",
                "date_modified": stamp,
                "name": f"Order {i}",
                "amount": f"{100 + i % 900}.000000",
                "currency_id": "-99",
                "date_closed": (start + timedelta(days=i % 365)).strftime("%Y-%m-%d"),
                "sales_stage": "Closed Won" if won else "Proposal/Price Quote",
            }
        )
        crm.link(f"o{i:07d}", "contacts", f"c{i:07d}")
    crm.add_many("Contacts", contacts)
    crm.add_many("Opportunities", opportunities)

    def change(k: int) -> None:
        for row in random.Random(2).sample(crm.tables["Opportunities"], k):
            row["amount"] = "999.000000"
            row["date_modified"] = crm._tick()
        crm.touch("Opportunities")

    return crm, change


def serve(n: int, port: int, ready: Any) -> None:
    crm, change_some = seed(n)

    async def change(request: web.Request) -> web.Response:
        k = int(request.query.get("n", "1000"))
        change_some(k)
        return web.json_response({"changed": k})

    async def main() -> None:
        app = crm.app()
        app.router.add_post("/bench/change", change)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


async def run(args: argparse.Namespace) -> None:
    port = 18_000 + random.randrange(1000)
    ready = multiprocessing.Event()
    proc = multiprocessing.Process(target=serve, args=(args.deals, port, ready), daemon=True)
    proc.start()
    ready.wait(120)
    url = f"http://127.0.0.1:{port}"
    policy = DirectorySettings(page_size=args.page, full_every_s=86_400)
    crm = SugarCrm()
    settings = SuiteCrmSettings(
        name="suite",
        url=url,
        username=crm.username,
        password=crm.password,
        timeout_ms=10_000,
        write_timeout_ms=60_000,
        directory=policy,
        deals=DealSettings(enabled=True),
    )
    with tempfile.TemporaryDirectory() as tmp:
        db = await Database.open(Path(tmp) / "store.db")
        now = time.time()
        async with db.transaction() as conn:  # the store knows every other contact
            for i in range(0, args.deals, 2):
                cur = await conn.execute(
                    "INSERT INTO people (kind, first_name, last_name, created_at, updated_at)"
                    " VALUES ('contact', 'Ana', ?, ?, ?)",
                    (f"Pérez {i}", now, now),
                )
                await conn.execute(
                    "INSERT INTO phones (person_id, raw, e164) VALUES (?, ?, ?)",
                    (cur.lastrowid, number(i)[0], number(i)[1]),
                )
        bus = Bus()
        db.event_sink = bus.publish
        intel = IntelService(db, tz=TZ)
        intel.subscribe(bus)
        worker = asyncio.create_task(intel.run())
        conn = SugarCrmConnector(settings)
        await conn.start()
        store = DirectoryStore(db, "ES")
        sync = DirectorySync(store, [(conn, policy)], deals=[(conn, settings.deals, policy)], tz=TZ)
        try:
            t0 = time.perf_counter()
            await sync.sync_source(conn, policy)
            t1 = time.perf_counter()
            (first,) = await sync.sync_deals(conn, settings.deals, policy)
            t2 = time.perf_counter()
            await intel.settled()
            t3 = time.perf_counter()
            print(
                f"first sync: directory {args.deals} contacts {t1 - t0:.1f} s; deals"
                f" {first.stored} attached + {first.waiting} waiting in {t2 - t1:.1f} s"
                f" ({args.deals / (t2 - t1):.0f} deals/s); metrics of {first.people} people"
                f" recomputed {t3 - t2:.1f} s later"
            )
            async with aiohttp.ClientSession() as http:
                await http.post(f"{url}/bench/change", params={"n": "1000"})
            t0 = time.perf_counter()
            (inc,) = await sync.sync_deals(conn, settings.deals, policy)
            t1 = time.perf_counter()
            await intel.settled()
            t2 = time.perf_counter()
            print(
                f"1,000 changed opportunities: {inc.stored} attached + waiting in"
                f" {t1 - t0:.2f} s; metrics of {inc.people} people {t2 - t1:.2f} s later"
            )
            t0 = time.perf_counter()
            (idle,) = await sync.sync_deals(conn, settings.deals, policy)
            print(
                f"nothing changed: {time.perf_counter() - t0:.3f} s"
                f" ({idle.waiting} deals waiting, not tried again)"
            )
        finally:
            await conn.close()
            worker.cancel()
            await db.close()
            proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=20_000)
    parser.add_argument("--page", type=int, default=200)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
