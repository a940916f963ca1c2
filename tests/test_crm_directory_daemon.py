"""The assembled daemon against stand-ins that answer as the recorded SuiteCRM 7.14.6 and
vTiger 8.0.0 do, seeded like the recording lab (numbers stored as people typed them):

- at start, each CRM's phone book is pulled into the caller directory (``/health`` says so);
- every typed spelling is then found with no CRM round trip, names shown as typed;
- a finished call is written back linked to the right record, its start time in UTC;
- a call the CRM refuses does not hold back the calls behind it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from connectors.settings import SuiteCrmSettings, VtigerSettings
from gateway.app import Gateway, create_app
from gateway.calls.events import CallEnded
from gateway.config import WritebackSettings
from gateway.lookup.card import PersonKind
from gateway.sim.pbx import SimulatedPbx
from tests.fakes import sugarcrm as suite_lab
from tests.fakes.sugarcrm import SugarCrm
from tests.fakes.vtiger import Vtiger
from tests.test_app import _config, _until

# (number as the PBX sends it, SuiteCRM record, vTiger record, name as typed in both CRMs)
CALLERS = [
    ("+34911234567", suite_lab.ANA, "12x4", "Ana García"),  # typed "+34 911 234 567"
    ("911234568", suite_lab.BOB, "12x5", "Bob Martín"),  # typed "0034911234568"
    ("0034911234569", suite_lab.CARLA, "12x6", "Carla Ruiz"),  # typed "911234569"
    ("+12125550100", suite_lab.DAN, "12x7", "Dan Jones"),  # typed "+1 (212) 555-0100"
    ("+34911234571", suite_lab.ZOE, "12x8", "Zoë Ñúñez-O'Hara"),  # HTML-encoded by SuiteCRM
]


@pytest.fixture
async def daemon(tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any, sim: SimulatedPbx):
    suite, vtiger = SugarCrm.lab(), Vtiger.lab()
    s_srv = await aiohttp_server(suite.app())
    v_srv = await aiohttp_server(vtiger.app())
    connectors = [
        SuiteCrmSettings(
            name="suite",
            url=f"http://127.0.0.1:{s_srv.port}",
            username=suite.username,
            password=suite.password,
        ),
        VtigerSettings(
            name="vtiger",
            url=f"http://127.0.0.1:{v_srv.port}",
            username=vtiger.username,
            access_key=vtiger.access_key,
            modules=["Contacts", "Leads"],
        ),
    ]
    cfg = msgspec.structs.replace(
        _config(tmp_path, sim.port),
        connectors=connectors,
        writeback=WritebackSettings(hold_seconds=0),
    )
    gw = Gateway(cfg)
    client = await aiohttp_client(await create_app(cfg, gw))
    await _until(lambda: gw.links["lab"].health().logged_in)
    return gw, client, suite, vtiger


async def _synced(client: Any) -> list[dict[str, Any]]:
    """/health's directories once every CRM module has been pulled (the first sync)."""
    for _ in range(500):
        dirs: list[dict[str, Any]] = (await (await client.get("/health")).json())["directories"]
        if len(dirs) == 5 and all(d["last_sync_at"] for d in dirs):
            return dirs
        await asyncio.sleep(0.02)
    raise AssertionError(f"the directories were never synced: {dirs}")


async def test_the_directory_is_pulled_at_start_and_shown_in_health(daemon):
    gw, client, suite, vtiger = daemon
    dirs = await _synced(client)
    counts = {(d["connector"], d["module"]): d["records"] for d in dirs}
    assert counts == {
        ("suite", "Accounts"): 2,
        ("suite", "Contacts"): 5,  # the deleted one is not there
        ("suite", "Leads"): 3,
        ("vtiger", "Contacts"): 6,
        ("vtiger", "Leads"): 2,
    }
    assert all(d["last_error"] is None and d["lag_seconds"] < 60 for d in dirs)
    metrics = await (await client.get("/metrics")).text()
    assert 'centralita_directory_records{connector="suite",module="Contacts"} 5' in metrics

    suite_before, vtiger_before = len(suite.faults.requests), len(vtiger.faults.requests)
    assert gw.lookup is not None
    for number, suite_id, _, name in CALLERS:
        card = await gw.lookup.lookup(number)
        assert (card.display_name, card.source, card.person_id) == (name, "suite", suite_id)
    card = await gw.lookup.lookup("+34911234572")  # a lead known only by its fax
    assert (card.display_name, card.kind, card.lead_status) == (
        "Fax Only",
        PersonKind.LEAD,
        "In Process",
    )
    card = await gw.lookup.lookup("+34913000223")
    assert (card.display_name, card.kind) == ("O'Brien & Sons ", PersonKind.ACCOUNT)
    card = await gw.lookup.lookup("+34911234573")  # an assistant's phone only vTiger has
    assert (card.display_name, card.source) == ("Ramón Assistant", "vtiger")
    # found in the directory: not one request reached either CRM while the phones rang
    assert len(suite.faults.requests) == suite_before
    assert len(vtiger.faults.requests) == vtiger_before


async def test_each_call_is_written_back_linked_in_utc_and_a_refusal_holds_nothing(
    daemon,
    sim: SimulatedPbx,
):
    gw, client, suite, vtiger = daemon
    ended: list[CallEnded] = []
    gw.bus.subscribe(CallEnded, ended.append)
    await _synced(client)

    suite.refuse["set_entry"] = 40  # SuiteCRM refuses the first call (fault 40)...
    sim.start_call("inbound_answered", caller="+12125550100")
    await sim.advance(30)
    await _until(lambda: "set_entry" in suite.faults.requests, 10)
    del suite.refuse["set_entry"]  # ...and accepts the ones after it
    for number, *_ in CALLERS[:3]:
        sim.start_call("inbound_answered", caller=number)
        await sim.advance(30)
    # a call is written (set_entry) before it is linked (set_relationship): wait for both
    await _until(lambda: len(suite.relationships) == 3, 10)
    await _until(lambda: len(vtiger.tables["Events"]) == 4, 10)

    by_parent = {row["parent_id"]: row for row in suite.tables["Calls"]}
    assert set(by_parent) == {c[1] for c in CALLERS[:3]}  # Dan's refused call is not among them
    start_of = {e.record.caller: e.record.started_at for e in ended}
    for number, suite_id, vtiger_id, _ in CALLERS[:3]:
        utc = datetime.fromtimestamp(start_of[number], UTC)
        assert by_parent[suite_id]["date_start"] == utc.strftime("%Y-%m-%d %H:%M:%S")
        assert (by_parent[suite_id]["parent_type"], by_parent[suite_id]["status"]) == (
            "Contacts",
            "Held",
        )
        (event,) = [e for e in vtiger.tables["Events"] if e.get("contact_id") == vtiger_id]
        assert (event["date_start"], event["time_start"]) == (
            utc.strftime("%Y-%m-%d"),
            utc.strftime("%H:%M:%S"),
        )
    links = {(link, rid) for _, link, rid in suite.relationships}
    assert links == {("contacts", c[1]) for c in CALLERS[:3]}

    async def suite_queue() -> dict[str, Any]:
        (queue,) = [q for q in await gw.outbox_health() if q["connector"] == "suite"]
        return queue

    for _ in range(200):  # the outbox marks a row delivered once the CRM's answer is in
        suite_q = await suite_queue()
        if suite_q["delivered"] == 3:
            break
        await asyncio.sleep(0.05)
    assert (suite_q["delivered"], suite_q["pending"]) == (3, 1)  # Dan's waits on its own
    assert "Access Denied" in suite_q["last_error"]
