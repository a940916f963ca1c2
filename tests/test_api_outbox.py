"""``/api/v1/outbox`` over real HTTP: a parked call is listed and re-driven; scopes hold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aiohttp import web

from gateway.api import setup_api
from gateway.api.openapi import build_document
from gateway.api.outbox import setup_outbox_api
from gateway.config import config_from_dict
from gateway.lookup.chain import LookupChain
from gateway.store.cards import StoreCardSource
from gateway.store.db import Database
from gateway.writeback.outbox import Outbox
from tests.test_outbox import Clock
from tests.test_outbox_rules import ScriptedCrm, rec

OPS = {"Authorization": "Bearer ops-token-0123456789abcdef"}
READER = {"Authorization": "Bearer reader-token-0123456789abcdef"}
CRM = {"Authorization": "Bearer crm-token-0123456789abcdef"}


@pytest.fixture
async def setup(aiohttp_client: Any, tmp_path: Path) -> Any:
    cfg = config_from_dict(
        {
            "api": {
                "tokens": [
                    {
                        "name": "ops",
                        "token": "ops-token-0123456789abcdef",
                        "scopes": ["outbox:write"],
                    },
                    {
                        "name": "mon",
                        "token": "reader-token-0123456789abcdef",
                        "scopes": ["outbox:read"],
                    },
                    {"name": "crm", "token": "crm-token-0123456789abcdef", "scopes": ["crm:write"]},
                ]
            }
        }
    )
    db = await Database.open(tmp_path / "store.db")
    crm, clock = ScriptedCrm(), Clock()
    outbox = Outbox(db.conn, [crm], clock, reject_limit=1, transaction=db.transaction)
    app = web.Application()
    setup_api(app, db=db, lookup=LookupChain(StoreCardSource(db), [], cfg.lookup), config=cfg)
    setup_outbox_api(app, outbox)
    client = await aiohttp_client(app)
    yield client, outbox, crm
    await db.close()


def _valid(doc: Any, schema_name: str) -> None:
    spec = build_document()
    schema = {**spec["components"]["schemas"][schema_name], "components": spec["components"]}
    jsonschema.validate(doc, schema)


async def test_a_parked_call_is_listed_then_re_driven_through_the_api(setup):
    client, outbox, crm = setup
    crm.refuse.add("lab:1")
    await outbox.enqueue(rec("lab:1"))
    await outbox.enqueue(rec("lab:2"))
    assert await outbox.deliver_due("crm") == 1
    resp = await client.get("/api/v1/outbox", headers=READER)
    assert resp.status == 200
    doc = await resp.json()
    _valid(doc, "OutboxDoc")
    assert [(q["connector"], q["delivered"], q["parked"]) for q in doc["queues"]] == [("crm", 1, 1)]
    (parked,) = doc["parked"]
    assert parked["record_id"] == "lab:1" and "fault 40" in parked["last_error"]

    crm.refuse.clear()
    resp = await client.post("/api/v1/outbox/retry", json={"ids": [parked["id"]]}, headers=OPS)
    assert (resp.status, await resp.json()) == (200, {"requeued": 1})
    assert await outbox.deliver_due("crm") == 1 and crm.accepted == ["lab:2", "lab:1"]


@pytest.mark.parametrize(
    ("headers", "method", "path", "status"),
    [
        (CRM, "get", "/api/v1/outbox", 403),
        (READER, "post", "/api/v1/outbox/retry", 403),  # reading is not re-driving
        ({}, "get", "/api/v1/outbox", 401),
    ],
)
async def test_scopes(setup, headers, method, path, status):
    client, *_ = setup
    resp = await getattr(client, method)(path, headers=headers, json={})
    assert resp.status == status


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"connector": "nope"}, 404, "not_found"),
        ({"ids": ["1"]}, 422, "invalid_field"),
        ({"id": [1]}, 422, "invalid_field"),  # unknown field: refused, not ignored
        ("{not json", 400, "invalid_json"),
    ],
)
async def test_bad_retry_bodies_are_refused_with_a_reason(setup, body, status, error):
    client, *_ = setup
    kw = {"data": body} if isinstance(body, str) else {"json": body}
    resp = await client.post("/api/v1/outbox/retry", headers=OPS, **kw)
    assert resp.status == status
    assert (await resp.json())["error"]["id"] == error
