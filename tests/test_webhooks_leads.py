"""``lead.created`` webhooks against real HTTP receivers on loopback: a lead created through
the API, the panel or a CSV import reaches the receiver signed, with who created it and its
first status; contacts and rows a dedupe folds into an existing person send nothing; an
import's leads travel in a few documents, not one POST per lead; events of an import survive
a restart while the receiver is down, and a strict import that fails sends nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.app import Gateway, create_app
from gateway.campaigns.settings import WebhookSettings
from gateway.panel.routes import PANEL
from gateway.store.csv_io import import_csv
from gateway.store.repositories import BULK_BATCH
from tests.test_panel_support import API_TOKEN, FAST_HASHER, PASSWORD
from tests.test_webhooks import (
    SECRET,
    T0,
    Receiver,
    _all_delivered,
    config,
    free_port,
    outbox_rows,
    restarted_with_target,
    verified,
    wait_until,
)

TOKEN = {"Authorization": f"Bearer {API_TOKEN}"}


class World:
    """The application as ``centralita run`` serves it, with one webhook target."""

    def __init__(self, gw: Gateway, server: Any) -> None:
        self.gw = gw
        self.server = server
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    def url(self, path: str) -> str:
        return f"http://{self.server.host}:{self.server.port}{path}"

    async def call(self, method: str, path: str, status: int, **kw: Any) -> Any:
        headers = {"Origin": self.url(""), **kw.pop("headers", TOKEN)}
        async with self.http.request(method, self.url(path), headers=headers, **kw) as r:
            assert r.status == status, await r.text()
            return await r.json()


@pytest.fixture
async def world(aiohttp_server: Any, tmp_path: Path) -> AsyncIterator[tuple[World, Receiver]]:
    receiver = Receiver()
    target = await aiohttp_server(receiver.app)
    hook = WebhookSettings(
        name="crm",
        url=f"http://127.0.0.1:{target.port}/hook",
        secret=SECRET,
        events=["lead.created", "lead.status_changed"],
    )
    gw = Gateway(config(tmp_path, [hook]))
    app = await create_app(gw.cfg, gw)
    app[PANEL].users.hasher = FAST_HASHER
    await app[PANEL].users.add("ana", PASSWORD, "agent", ["101"], "Ana")
    w = World(gw, await aiohttp_server(app))
    yield w, receiver
    await w.http.close()


def created(receiver: Receiver) -> list[dict[str, Any]]:
    """Every lead the receiver was told about, in order, from the signed documents."""
    docs = [verified(h, b) for h, b in receiver.posts]
    return [lead for d in docs if d["type"] == "lead.created" for lead in d["data"]["leads"]]


async def test_leads_created_by_the_api_the_panel_and_an_import_reach_the_receiver(
    world: tuple[World, Receiver],
) -> None:
    w, receiver = world
    eva = await w.call("POST", "/api/v1/leads", 201, json={"name": "Eva", "phone": "+34600111222"})
    await w.call("POST", "/api/v1/contacts", 201, json={"name": "Otro", "phone": "+34600999888"})
    # the panel: an agent creates a lead from an unknown caller
    login = {"username": "ana", "password": PASSWORD}
    await w.call("POST", "/panel/api/login", 200, json=login, headers={})
    rosa = await w.call(
        "POST",
        "/panel/api/people",
        200,
        json={"kind": "lead", "name": "Rosa", "phone": "+34600222333"},
        headers={},
    )
    await w.call("POST", "/panel/api/logout", 200, json={}, headers={})
    csv = (
        "name,phone,status,lost_reason\n"
        "Luis,+34600333444,,\n"
        "Marta,+34600444555,lost,no_budget\n"
        "Eva otra vez,+34600111222,,\n"  # Eva's number: folded into Eva, nobody new
        "Sin numero,12,,\n"  # a bad row
    )
    report = await w.call(
        "POST", "/api/v1/import", 200, json={"kind": "leads", "csv": csv, "strict": False}
    )
    assert (report["created"], report["updated"], report["error_count"]) == (2, 1, 1)
    await w.call("PATCH", f"/api/v1/leads/{eva['id']}", 200, json={"status": "contacted"})

    await receiver.wait_for(4)  # Eva, Rosa, the import (one document), Eva's status change
    assert w.gw.webhooks is not None
    await w.gw.webhooks.flush()
    await wait_until(lambda: _all_delivered(w.gw))
    docs = [verified(h, b) for h, b in receiver.posts]
    assert [d["type"] for d in docs] == [
        "lead.created",
        "lead.created",
        "lead.created",
        "lead.status_changed",
    ]
    assert [len(d["data"]["leads"]) for d in docs[:3]] == [1, 1, 2]
    rows = await w.gw.db.conn.execute_fetchall(  # type: ignore[union-attr]
        "SELECT id, first_name FROM people WHERE first_name IN ('Luis', 'Marta') ORDER BY id"
    )
    luis, marta = (r[0] for r in rows)
    leads = created(receiver)
    at = [lead.pop("at") for lead in leads]
    assert all(isinstance(t, float) and t > 0 for t in at)
    assert leads == [
        {"person_id": eva["id"], "status": "new", "source": "api", "actor": "token:crm",
         "lost_reason": ""},
        {"person_id": rosa["person"]["id"], "status": "new", "source": "inbound_call",
         "actor": "user:ana", "lost_reason": ""},
        {"person_id": luis, "status": "new", "source": "import", "actor": "token:crm",
         "lost_reason": ""},
        {"person_id": marta, "status": "lost", "source": "import", "actor": "token:crm",
         "lost_reason": "no_budget"},
    ]  # fmt: skip
    change = docs[3]["data"]
    assert (change["person_id"], change["old"], change["new"]) == (eva["id"], "new", "contacted")
    assert len({d["id"] for d in docs}) == len(docs)


async def test_an_import_is_sent_in_batches_and_survives_a_restart_while_the_target_is_down(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens there yet: connection refused
    hook = WebhookSettings(
        name="crm", url=f"http://127.0.0.1:{port}/hook", secret=SECRET, events=["lead.created"]
    )
    cfg = config(tmp_path, [hook])
    n = 2 * BULK_BATCH + 7
    csv = "name,phone\n" + "".join(f"Lead {i},+3461{i:07d}\n" for i in range(n))
    gw = Gateway(cfg, clock=lambda: T0)
    await gw.start()
    assert gw.db is not None
    # strict, with one bad row: nothing imported, so nothing announced
    bad = await import_csv(gw.db, csv + "Mal,12\n", "leads", strict=True)
    assert bad.created == 0 and bad.errors
    report = await import_csv(gw.db, csv, "leads")
    assert report.created == n
    await import_csv(gw.db, "name,phone\nCliente,+34699000000\n", "contacts")
    assert gw.webhooks is not None
    await gw.webhooks.flush()
    # stored before any attempt: three documents, not one per lead
    assert [r["delivered_at"] for r in await outbox_rows(gw)] == [None] * 3
    await gw.stop()

    receiver = await restarted_with_target(aiohttp_server, cfg, port, 3)
    assert len(receiver.posts) == 3  # each document once
    leads = created(receiver)
    assert [len(json.loads(b)["data"]["leads"]) for _, b in receiver.posts] == [
        BULK_BATCH,
        BULK_BATCH,
        7,
    ]
    ids = [lead["person_id"] for lead in leads]
    assert len(set(ids)) == n
    assert {(lead["source"], lead["actor"], lead["status"]) for lead in leads} == {
        ("import", "system", "new")
    }
