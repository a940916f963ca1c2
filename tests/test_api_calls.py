"""The call log API over real HTTP: filters, pagination, one call, notes; scopes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.api import keys, setup_api
from gateway.config import config_from_dict
from gateway.lookup.chain import LookupChain
from gateway.store.cards import StoreCardSource
from gateway.store.db import Database

READ = {"Authorization": "Bearer calls-read-token"}
WRITE = {"Authorization": "Bearer calls-write-token"}
CRM = {"Authorization": "Bearer crm-only-api-token"}
T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def record(n: int, **over: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "id": f"lab:{T0 + n}",
        "linkedid": f"{T0 + n}",
        "pbx": "lab",
        "direction": "inbound",
        "caller": "+34911234567",
        "did": "+34910000000",
        "queue": "sales",
        "agents_rang": ["101", "102"],
        "answered_by": "101",
        "outcome": "answered",
        "started_at": T0 + n * 3600,
        "answered_at": T0 + n * 3600 + 4,
        "ended_at": T0 + n * 3600 + 60,
        "ring_seconds": 4.0,
        "talk_seconds": 56.0,
        "total_seconds": 60.0,
        "recordings": [],
    }
    r.update(over)
    return r


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> Any:
    cfg = config_from_dict(
        {
            "api": {
                "tokens": [
                    {"name": "reports", "token": "calls-read-token", "scopes": ["calls:read"]},
                    {"name": "panel", "token": "calls-write-token", "scopes": ["calls:write"]},
                    {"name": "crm", "token": "crm-only-api-token", "scopes": ["crm:read"]},
                ]
            }
        }
    )
    db = await Database.open(tmp_path / "crm.db")
    app = web.Application()
    setup_api(app, db=db, lookup=LookupChain(StoreCardSource(db), [], cfg.lookup), config=cfg)
    log = app[keys.CALL_LOG]
    assert await log.save(record(1))
    assert await log.save(record(2, outcome="noanswer", answered_by="", agents_rang=["103"]))
    assert await log.save(
        record(
            3,
            direction="outbound",
            caller="102",
            did="",
            dialed="0044 20 7946 0018",
            agents_rang=[],
            answered_by="102",
        )
    )
    assert await log.save(record(4, outcome="abandoned", answered_by="", agents_rang=["101"]))
    assert not await log.save(record(4))  # the same call end reported twice

    async def close_db(_: web.Application) -> None:
        await db.close()

    app.on_cleanup.append(close_db)
    return await aiohttp_client(app)


async def ids(client: Any, query: str = "") -> list[int]:
    resp = await client.get(f"/api/v1/calls?{query}", headers=READ)
    assert resp.status == 200, await resp.text()
    return [round(float(c["linkedid"]) - T0) for c in (await resp.json())["items"]]


async def test_list_newest_first_and_filters(client: Any) -> None:
    assert await ids(client) == [4, 3, 2, 1]
    assert await ids(client, "outcome=noanswer") == [2]
    assert await ids(client, "direction=outbound") == [3]
    assert await ids(client, "extension=101") == [4, 1]
    assert await ids(client, "extension=102") == [3, 1]
    assert await ids(client, "number=%2B442079460018") == [3]
    assert await ids(client, "number=911234567") == [4, 2, 1]
    # time range: epoch seconds or ISO 8601 (UTC without offset); until is exclusive
    assert await ids(client, f"since={T0 + 2 * 3600}&until={T0 + 4 * 3600}") == [3, 2]
    assert await ids(client, "since=2023-11-15T00:13:20&until=2023-11-15T02:13:20%2B00:00") == [
        3,
        2,
    ]


async def test_cursor_pagination(client: Any) -> None:
    resp = await client.get("/api/v1/calls?limit=3", headers=READ)
    first = await resp.json()
    assert len(first["items"]) == 3 and first["next_cursor"]
    resp = await client.get(
        "/api/v1/calls", params={"limit": 3, "cursor": first["next_cursor"]}, headers=READ
    )
    second = await resp.json()
    assert [c["id"] for c in second["items"]] == [f"lab:{T0 + 1}"]
    assert second["next_cursor"] is None


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("outcome=lost", "outcome"),
        ("direction=sideways", "direction"),
        ("limit=1000", "limit"),
        ("cursor=garbage", "cursor"),
        ("since=yesterday", "since"),
        (f"since={T0 + 10}&until={T0}", "until"),
    ],
)
async def test_bad_filters_name_the_parameter(client: Any, query: str, field: str) -> None:
    resp = await client.get(f"/api/v1/calls?{query}", headers=READ)
    assert resp.status == 400
    assert (await resp.json())["error"]["details"]["field"] == field


async def test_get_one_call(client: Any) -> None:
    resp = await client.get(f"/api/v1/calls/lab:{T0 + 3}", headers=READ)
    assert resp.status == 200
    call = await resp.json()
    assert (call["direction"], call["dialed"], call["answered_by"], call["agents_rang"]) == (
        "outbound",
        "0044 20 7946 0018",
        "102",
        [],
    )
    resp = await client.get("/api/v1/calls/lab:nope", headers=READ)
    assert resp.status == 404
    assert (await resp.json())["error"]["id"] == "not_found"


async def test_notes_and_disposition(client: Any) -> None:
    url = f"/api/v1/calls/lab:{T0 + 1}"
    resp = await client.patch(
        url, json={"notes": "wants a quote", "disposition": "call_back"}, headers=WRITE
    )
    assert resp.status == 200
    assert (await resp.json())["notes"] == "wants a quote"
    # the panel's rule: a disposition is one of panel.dispositions, over the API too
    resp = await client.patch(url, json={"disposition": "callback"}, headers=WRITE)
    assert resp.status == 422
    err = (await resp.json())["error"]
    assert err["details"]["field"] == "disposition" and "call_back" in err["message"]
    resp = await client.get(url, headers=READ)
    assert (await resp.json())["disposition"] == "call_back"
    resp = await client.patch(url, json={"outcome": "won"}, headers=WRITE)
    assert resp.status == 422
    assert (await client.patch(url, json={"notes": "x"}, headers=READ)).status == 403


async def test_scopes(client: Any) -> None:
    assert (await client.get("/api/v1/calls", headers=CRM)).status == 403
    assert (await client.get("/api/v1/calls")).status == 401
    assert (await client.get("/api/v1/calls", headers=WRITE)).status == 200  # write implies read
