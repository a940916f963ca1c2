"""Do-not-call set on the person (not on the number) is honoured everywhere the suppression
is read: click-to-call from the panel and from the API, the caller card, and a CSV export and
import round trip (which also keeps a single number's own flag)."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import pytest

from gateway.panel.service import card_to_json
from gateway.sim.pbx import SimulatedPbx
from gateway.store.csv_io import export_csv, import_csv
from gateway.store.db import Database
from gateway.store.models import PersonType
from gateway.store.repositories import PersonRepository
from tests.test_panel_support import API_TOKEN, open_world


@pytest.fixture
async def world(aiohttp_server: Any, tmp_path: Path, pbx: SimulatedPbx) -> Any:
    gen = open_world(aiohttp_server, tmp_path, pbx_port=pbx.port)
    w = await gen.__anext__()
    for _ in range(500):
        if w.gw.links["sim"].health().logged_in:
            break
        await asyncio.sleep(0.01)
    # the person says "never call me"; the number itself carries no flag
    await w.panel.people.create(
        PersonType.LEAD,
        {"name": "Quiet Person", "phones": ["+34 600 000 002"], "do_not_call": True},
    )
    yield w
    await gen.aclose()


def originates(pbx: SimulatedPbx) -> list[dict[str, str]]:
    return [a for a in pbx.received_actions if a.get("Action") == "Originate"]


async def test_the_panel_refuses_to_call_a_person_marked_do_not_call(
    world: Any, pbx: SimulatedPbx
) -> None:
    ana = await world.sign_in("ana")
    async with ana.post(world.url("/panel/api/originate"), json={"number": "600 000 002"}) as r:
        assert r.status == 403
        err = (await r.json())["error"]
    assert err["id"] == "do_not_call"
    assert originates(pbx) == []


async def test_the_api_refuses_to_call_a_person_marked_do_not_call(
    world: Any, pbx: SimulatedPbx
) -> None:
    crm = await world.browser()
    async with crm.post(
        world.url("/api/v1/originate"),
        json={"extension": "101", "number": "+34600000002"},
        headers={"Authorization": f"Bearer {API_TOKEN}"},
    ) as r:
        assert r.status == 403, await r.text()
        assert (await r.json())["error"]["id"] == "do_not_call"
    assert originates(pbx) == []


async def test_the_caller_card_shows_the_person_s_do_not_call(world: Any) -> None:
    card = await world.gw.lookup.lookup("+34600000002")
    assert card_to_json(card)["do_not_call"] is True
    other = await world.panel.people.create(
        PersonType.LEAD, {"name": "Chatty", "phones": ["+34 600 000 003"]}
    )
    assert other is not None
    assert card_to_json(await world.gw.lookup.lookup("+34600000003"))["do_not_call"] is False


async def test_csv_export_and_import_keep_every_do_not_call_flag(tmp_path: Path) -> None:
    source = await Database.open(tmp_path / "a.db")
    target = await Database.open(tmp_path / "b.db")
    try:
        people = PersonRepository(source)
        await people.create(
            PersonType.LEAD,
            {"name": "Whole Person", "phone": "+34 600 000 010", "do_not_call": True},
        )
        await people.create(
            PersonType.LEAD,
            {
                "name": "One Number",
                "phones": [
                    {"number": "+34 600 000 011", "type": "mobile", "do_not_call": True},
                    {"number": "+34 911 000 012", "type": "work"},
                ],
            },
        )
        await people.create(PersonType.LEAD, {"name": "Free", "phone": "+34 600 000 013"})
        out = io.StringIO()
        assert await export_csv(source, "leads", out) == 3
        report = await import_csv(target, out.getvalue(), "leads")
        assert (report.created, report.errors) == (3, [])

        async def flags(db: Database) -> dict[str, tuple[bool, bool]]:
            rows = await db.conn.execute_fetchall(
                "SELECT ph.e164, p.do_not_call, ph.do_not_call FROM phones ph"
                " JOIN people p ON p.id = ph.person_id ORDER BY ph.e164"
            )
            return {r[0]: (bool(r[1]), bool(r[2])) for r in rows}

        before = await flags(source)
        assert before["+34600000010"] == (True, False)
        assert before["+34600000011"] == (False, True)
        assert await flags(target) == before
    finally:
        await source.close()
        await target.close()
