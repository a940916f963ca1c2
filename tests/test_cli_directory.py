"""``centralita directory sync`` and ``status`` against a SuiteCRM stand-in over real HTTP: the
phone book and, with ``deals: {enabled: true}``, the deals, whose customers' metrics are
recomputed before the command ends (no daemon needed to see them)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import yaml

from gateway.__main__ import main
from gateway.store.db import Database
from gateway.store.models import PersonType
from gateway.store.repositories import PersonRepository
from tests.fakes import sugarcrm as suite_lab
from tests.fakes.sugarcrm import SugarCrm


def _config(tmp_path: Path, url: str, crm: SugarCrm) -> Path:
    path = tmp_path / "gateway.yaml"
    doc = {
        "pbx": [
            {"name": "lab", "host": "127.0.0.1", "port": 5038, "username": "gw", "secret": "x"}
        ],
        "store": {"path": str(tmp_path / "store.db")},
        "connectors": [
            {
                "type": "suitecrm",
                "name": "suite",
                "url": url,
                "username": crm.username,
                "password": crm.password,
                "deals": {"enabled": True, "currency": "EUR"},
            }
        ],
    }
    path.write_text(yaml.safe_dump(doc))
    return path


async def _cli(*args: str) -> tuple[int, str]:
    """The command as a user runs it (its own event loop, in a thread: the stand-in CRM keeps
    answering on this one)."""
    out = io.StringIO()

    def run() -> int:
        with contextlib.redirect_stdout(out):
            return main(list(args))

    code = await asyncio.to_thread(run)
    return code, out.getvalue()


async def test_directory_sync_pulls_phone_book_and_deals_and_recomputes_metrics(
    tmp_path: Path, aiohttp_server: Any
) -> None:
    crm = SugarCrm.lab()
    won = crm.add(
        "Opportunities",
        name="Ana's order",
        amount="1500.000000",
        currency_id="-99",
        date_closed=(date.today() - timedelta(days=20)).isoformat(),
        sales_stage="Closed Won",
    )
    crm.link(won, "contacts", suite_lab.ANA)
    server = await aiohttp_server(crm.app())
    config = _config(tmp_path, f"http://127.0.0.1:{server.port}", crm)
    db = await Database.open(tmp_path / "store.db")
    try:  # Ana is in the store too, her number typed another way
        ana = await PersonRepository(db).create(
            PersonType.CONTACT, {"first_name": "Ana", "phones": ["911234567"]}
        )
    finally:
        await db.close()

    code, out = await _cli("directory", "sync", "-c", str(config), "--full")
    assert code == 0, out
    lines = out.splitlines()
    assert any(ln.startswith("suite Contacts: full") for ln in lines), out
    assert "suite Opportunities (deals): full 1 deals, 0 waiting for their customer" in out
    assert lines[-1] == "customer metrics recomputed for 1 people whose deals changed"

    db = await Database.open(tmp_path / "store.db")
    try:
        deals = await db.conn.execute_fetchall(
            "SELECT person_id, amount, currency, stage FROM deals"
        )
        assert [tuple(r) for r in deals] == [(ana.person.id, 1500.0, "EUR", "won")]
        monetary = await db.conn.execute_fetchall(
            "SELECT value FROM person_metrics WHERE person_id = ? AND metric = 'monetary'",
            (ana.person.id,),
        )
        assert [r[0] for r in monetary] == [1500.0]
    finally:
        await db.close()

    code, out = await _cli("directory", "status", "-c", str(config))
    assert code == 0
    rows = [json.loads(ln) for ln in out.splitlines()]
    assert {r["module"] for r in rows} >= {"Contacts", "Leads", "Accounts"}
    assert any(r["module"].startswith("deals:") and r["records"] == 1 for r in rows), rows
