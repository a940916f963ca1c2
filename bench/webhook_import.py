"""Webhooks on a CSV import: 10,000 new leads, a real HTTP receiver on loopback.

    python bench/webhook_import.py                  # 10,000 rows
    python bench/webhook_import.py --rows 50000

Imports ``--rows`` leads with a ``lead.created`` target configured, then prints the import's
time, the time until every event is stored in the outbox (``Webhooks.flush``), and the time
until the receiver has every lead, with the number of POSTs it took (one document per batch
of the import, not one per lead).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from aiohttp import web

from gateway.app import Gateway
from gateway.campaigns.settings import WebhookSettings
from gateway.config import GatewayConfig, StoreSettings
from gateway.store.csv_io import import_csv


async def run(rows: int) -> None:
    received = 0
    posts = 0
    everything = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        nonlocal received, posts
        document = json.loads(await request.read())
        posts += 1
        received += len(document["data"]["leads"])
        if received >= rows:
            everything.set()
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    with tempfile.TemporaryDirectory() as tmp:
        hook_settings = WebhookSettings(
            name="crm", url=f"http://127.0.0.1:{port}/hook", secret="s", events=["lead.created"]
        )
        cfg = GatewayConfig(
            store=StoreSettings(path=str(Path(tmp) / "store.db")), webhooks=[hook_settings]
        )
        gw = Gateway(cfg)
        await gw.start()
        assert gw.db is not None and gw.webhooks is not None
        csv = "name,phone\n" + "".join(f"Lead {i},+346{i:08d}\n" for i in range(rows))
        t0 = time.perf_counter()
        report = await import_csv(gw.db, csv, "leads")
        t1 = time.perf_counter()
        await gw.webhooks.flush()
        t2 = time.perf_counter()
        await asyncio.wait_for(everything.wait(), 600)
        t3 = time.perf_counter()
        await gw.stop()
    await runner.cleanup()
    print(
        f"{report.created:,} leads imported in {t1 - t0:.2f} s; events stored in"
        f" {t2 - t1:.3f} s more; the receiver had every lead {t3 - t2:.3f} s later,"
        f" in {posts} POSTs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    asyncio.run(run(parser.parse_args().rows))


if __name__ == "__main__":
    main()
