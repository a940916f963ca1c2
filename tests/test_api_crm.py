"""The CRM API over real HTTP on a real SQLite file: auth, lookup, CRUD, lists, import."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.api import setup_api
from gateway.config import config_from_dict
from gateway.lookup.chain import LookupChain
from gateway.store.cards import StoreCardSource
from gateway.store.db import Database

ADMIN = {"Authorization": "Bearer admin-secret-token"}
READER = {"Authorization": "Bearer reader-secret-token"}
WRITER = {"Authorization": "Bearer writer-secret-token"}
CALLS = {"Authorization": "Bearer calls-secret-token"}


def make_config() -> Any:
    return config_from_dict(
        {
            "lookup": {"default_region": "ES"},
            "api": {
                "tokens": [
                    {"name": "admin", "token": "admin-secret-token"},
                    {
                        "name": "panel",
                        "token": "reader-secret-token",
                        "scopes": ["crm:read", "lookup"],
                    },
                    {"name": "crm-sync", "token": "writer-secret-token", "scopes": ["crm:write"]},
                    {"name": "reports", "token": "calls-secret-token", "scopes": ["calls:read"]},
                ]
            },
        }
    )


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> Any:
    cfg = make_config()
    db = await Database.open(tmp_path / "crm.db")
    chain = LookupChain(StoreCardSource(db), [], cfg.lookup)
    app = web.Application()
    setup_api(app, db=db, lookup=chain, config=cfg)

    async def close_db(_: web.Application) -> None:
        await db.close()

    app.on_cleanup.append(close_db)
    return await aiohttp_client(app)


async def error_of(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert set(body["error"]) == {"id", "message", "details"}
    return body["error"]


# -- auth ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer admin-secret-token-and-more"},
    ],
)
async def test_missing_or_wrong_token_is_401(client: Any, headers: dict[str, str]) -> None:
    resp = await client.get("/api/v1/contacts", headers=headers)
    err = await error_of(resp, 401)
    assert err["id"] == "unauthorized"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_unknown_api_route_needs_auth_too(client: Any) -> None:
    await error_of(await client.get("/api/v1/secrets"), 401)
    err = await error_of(await client.get("/api/v1/secrets", headers=ADMIN), 404)
    assert err["id"] == "not_found"
    err = await error_of(await client.put("/api/v1/contacts", headers=ADMIN), 405)
    assert err["id"] == "method_not_allowed"


async def test_missing_scope_is_403(client: Any) -> None:
    err = await error_of(
        await client.post("/api/v1/contacts", json={"name": "X"}, headers=READER), 403
    )
    assert (err["id"], err["details"]) == ("forbidden", {"scope": "crm:write"})
    await error_of(await client.get("/api/v1/lookup?number=1", headers=CALLS), 403)
    await error_of(await client.get("/api/v1/contacts", headers=CALLS), 403)
    # write implies read
    assert (await client.get("/api/v1/contacts", headers=WRITER)).status == 200


async def test_tokens_never_reach_the_log(client: Any, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    await client.get("/api/v1/contacts", headers={"Authorization": "Bearer guessed-token-xyz"})
    await client.get("/api/v1/contacts", headers=ADMIN)
    assert "guessed-token-xyz" not in caplog.text
    assert "admin-secret-token" not in caplog.text


# -- lookup -------------------------------------------------------------------------------


async def test_lookup_returns_the_card(client: Any) -> None:
    await client.post(
        "/api/v1/leads",
        json={
            "name": "Lucía Martín",
            "phone": "+34 911 23 45 67",
            "status": "qualified",
            "score": 8,
            "owner": "ana",
        },
        headers=ADMIN,
    )
    resp = await client.get("/api/v1/lookup", params={"number": "911 23 45 67"}, headers=READER)
    assert resp.status == 200
    card = await resp.json()
    assert (card["kind"], card["known"], card["display_name"], card["number"]) == (
        "lead",
        True,
        "Lucía Martín",
        "+34911234567",
    )
    assert (card["lead_status"], card["lead_score"], card["owner"]) == ("qualified", 8.0, "ana")


async def test_lookup_of_unknown_and_invalid_numbers(client: Any) -> None:
    resp = await client.get(
        "/api/v1/lookup", params={"number": "0044 20 7946 0018"}, headers=READER
    )
    card = await resp.json()
    assert (card["kind"], card["country"], card["line_type"]) == ("unknown", "GB", "fixed_line")
    resp = await client.get("/api/v1/lookup", params={"number": "call me"}, headers=READER)
    assert resp.status == 200
    assert "letters" in (await resp.json())["extra"]["invalid"]
    err = await error_of(await client.get("/api/v1/lookup", headers=READER), 400)
    assert err["details"]["field"] == "number"


# -- CRUD ---------------------------------------------------------------------------------


async def test_contact_crud(client: Any) -> None:
    resp = await client.post(
        "/api/v1/contacts",
        json={
            "first_name": "Ana",
            "last_name": "<script>alert(1)</script>",
            "phones": [{"number": "612 34 56 78", "type": "mobile"}],
            "email": "ana@x.example",
        },
        headers=WRITER,
    )
    assert resp.status == 201
    created = await resp.json()
    assert created["outcome"] == "created"
    assert created["last_name"] == "<script>alert(1)</script>"  # data, stored as given
    assert created["phones"][0]["e164"] == "+34612345678"
    pid = created["id"]

    dup = await client.post(
        "/api/v1/contacts", json={"name": "Ana Dup", "phone": "+34612345678"}, headers=WRITER
    )
    assert dup.status == 200
    assert ((await dup.json())["outcome"], (await dup.json())["id"]) == ("updated", pid)

    resp = await client.patch(f"/api/v1/contacts/{pid}", json={"title": "CTO"}, headers=WRITER)
    assert (await resp.json())["title"] == "CTO"
    resp = await client.get(f"/api/v1/contacts/{pid}", headers=READER)
    got = await resp.json()
    assert (got["title"], got["activities"], got["follow_ups"]) == ("CTO", [], [])
    # a contact is not a lead
    await error_of(await client.get(f"/api/v1/leads/{pid}", headers=READER), 404)
    assert (await client.delete(f"/api/v1/contacts/{pid}", headers=WRITER)).status == 204
    await error_of(await client.get(f"/api/v1/contacts/{pid}", headers=READER), 404)
    await error_of(await client.delete(f"/api/v1/contacts/{pid}", headers=WRITER), 404)
    await error_of(await client.get("/api/v1/contacts/abc", headers=READER), 404)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "X", "phones": ["abc"]}, "phones[0].number"),
        ({"name": "X", "emails": [{"email": "nope"}]}, "emails[0].email"),
        ({"name": "X", "status": "won"}, "status"),
        ({"name": "X", "shoe_size": 44}, "shoe_size"),
        ({"name": "X", "do_not_call": "perhaps"}, "do_not_call"),
        ({"name": "X", "account_id": 12345}, "account_id"),
        ({}, "name"),
        (["not", "an", "object"], "body"),
    ],
)
async def test_validation_errors_name_the_field(client: Any, body: Any, field: str) -> None:
    err = await error_of(await client.post("/api/v1/contacts", json=body, headers=ADMIN), 422)
    assert err["id"] == "invalid_field"
    assert err["details"]["field"] == field
    assert field in err["message"]


async def test_bad_json_is_400(client: Any) -> None:
    for data in ("{not json", "", "\xff"):
        resp = await client.post(
            "/api/v1/leads", data=data, headers={**ADMIN, "Content-Type": "application/json"}
        )
        assert (await error_of(resp, 400))["id"] == "invalid_json"


async def test_lead_lists_filter_and_paginate(client: Any) -> None:
    for i, (status, owner, source) in enumerate(
        [
            ("new", "ana", "web_form"),
            ("won", "bruno", "api"),
            ("lost", "ana", "import"),
            ("new", "carla", "web_form"),
            ("new", "ana", "inbound_call"),
        ]
    ):
        body = {
            "name": f"Lead{i} Test",
            "status": status,
            "owner": owner,
            "source": source,
            "company": "Northwind" if i == 3 else "",
            "phone": f"61200000{i}",
        }
        if status == "lost":
            body["lost_reason"] = "price"
        assert (await client.post("/api/v1/leads", json=body, headers=ADMIN)).status == 201

    async def names(query: str) -> list[str]:
        resp = await client.get(f"/api/v1/leads?{query}", headers=READER)
        assert resp.status == 200, await resp.text()
        return [p["first_name"] for p in (await resp.json())["items"]]

    assert await names("status=new") == ["Lead4", "Lead3", "Lead0"]
    assert await names("owner=ana") == ["Lead4", "Lead2", "Lead0"]
    assert await names("source=web_form&owner=carla") == ["Lead3"]
    assert await names("q=northwind") == ["Lead3"]
    assert await names("q=%2B34612000002") == ["Lead2"]
    assert await names("q=lead1") == ["Lead1"]
    seen: list[str] = []
    cursor = ""
    for _ in range(3):  # 5 leads, 2 a page: the third page is the last
        page = await (await client.get(f"/api/v1/leads?limit=2{cursor}", headers=READER)).json()
        seen += [p["first_name"] for p in page["items"]]
        cursor = f"&cursor={page['next_cursor']}" if page["next_cursor"] else ""
    assert (seen, cursor) == (["Lead4", "Lead3", "Lead2", "Lead1", "Lead0"], "")
    for query, field in [
        ("status=sold", "status"),
        ("limit=0", "limit"),
        ("limit=x", "limit"),
        ("offset=2", "offset"),  # one paging style: the cursor
        ("cursor=bm90LWEtY3Vyc29y", "cursor"),
        ("source=fax", "source"),
        ("stauts=new", "stauts"),  # a typo is refused, not ignored
    ]:
        err = await error_of(await client.get(f"/api/v1/leads?{query}", headers=READER), 400)
        assert err["details"]["field"] == field


async def test_lead_activities_and_follow_ups_show_on_the_card(client: Any) -> None:
    resp = await client.post(
        "/api/v1/leads", json={"name": "Max", "phone": "699000000"}, headers=ADMIN
    )
    pid = (await resp.json())["id"]
    resp = await client.post(
        f"/api/v1/leads/{pid}/activities",
        json={"kind": "note", "summary": "wants a demo"},
        headers=WRITER,
    )
    assert resp.status == 201 and (await resp.json())["author"] == "crm-sync"
    resp = await client.post(
        f"/api/v1/leads/{pid}/follow-ups",
        json={"due_at": 1_900_000_000, "title": "demo"},
        headers=WRITER,
    )
    assert resp.status == 201
    err = await error_of(
        await client.post(f"/api/v1/leads/{pid}/follow-ups", json={"title": "x"}, headers=WRITER),
        422,
    )
    assert err["details"]["field"] == "due_at"
    card = await (await client.get("/api/v1/lookup?number=699000000", headers=READER)).json()
    assert [i["summary"] for i in card["interactions"]] == ["wants a demo"]
    assert [f["title"] for f in card["follow_ups"]] == ["demo"]


async def test_account_crud(client: Any) -> None:
    resp = await client.post(
        "/api/v1/accounts", json={"name": "Acme", "country": "es"}, headers=WRITER
    )
    assert resp.status == 201
    acc = await resp.json()
    assert acc["country"] == "ES"
    err = await error_of(
        await client.post("/api/v1/accounts", json={"country": "es"}, headers=WRITER), 422
    )
    assert err["details"]["field"] == "name"
    resp = await client.patch(
        f"/api/v1/accounts/{acc['id']}", json={"name": "Acme SL"}, headers=WRITER
    )
    assert (await resp.json())["name"] == "Acme SL"
    listed = await (await client.get("/api/v1/accounts?q=acme", headers=READER)).json()
    assert [a["name"] for a in listed["items"]] == ["Acme SL"]
    assert (await client.delete(f"/api/v1/accounts/{acc['id']}", headers=WRITER)).status == 204
    await error_of(await client.get(f"/api/v1/accounts/{acc['id']}", headers=READER), 404)


# -- import -------------------------------------------------------------------------------

CSV = "Nombre,Tel\nAna,612345678\nBad,call me\nLuis,911234567\n"


async def test_import_strict_rejects_everything_with_line_numbers(client: Any) -> None:
    resp = await client.post(
        "/api/v1/import",
        json={
            "kind": "leads",
            "csv": CSV,
            "strict": True,
            "mapping": {"Nombre": "first_name", "Tel": "phone"},
        },
        headers=WRITER,
    )
    err = await error_of(resp, 422)
    assert err["id"] == "import_rejected"
    assert [(e["line"], e["field"]) for e in err["details"]["errors"]] == [(3, "Tel")]
    listed = await (await client.get("/api/v1/leads", headers=READER)).json()
    assert listed["items"] == []


async def test_import_csv_body_keeps_good_rows(client: Any) -> None:
    resp = await client.post(
        "/api/v1/import",
        params={"kind": "contacts", "mapping": '{"Nombre": "first_name", "Tel": "phone"}'},
        data=CSV.encode(),
        headers={**WRITER, "Content-Type": "text/csv"},
    )
    assert resp.status == 200, await resp.text()
    report = await resp.json()
    assert (report["created"], report["error_count"]) == (2, 1)
    assert report["errors"][0]["line"] == 3


async def test_import_bad_requests_name_the_field(client: Any) -> None:
    for body, field in [
        ({"kind": "leads"}, "csv"),
        ({"kind": "boats", "csv": CSV}, "kind"),
        ({"kind": "leads", "csv": CSV, "mapping": {"Nope": "first_name"}}, "mapping.Nope"),
        ({"kind": "leads", "csv": CSV, "strict": "yes"}, "strict"),
    ]:
        resp = await client.post("/api/v1/import", json=body, headers=WRITER)
        err = await error_of(resp, 422)
        assert err["details"]["field"] == field
    await error_of(await client.post("/api/v1/import", json={"csv": CSV}, headers=READER), 403)


async def test_nan_and_infinity_are_refused_as_invalid_json(client: Any) -> None:
    auth = {"Authorization": "Bearer admin-secret-token", "Content-Type": "application/json"}
    created = await client.post("/api/v1/contacts", json={"name": "Ana"}, headers=auth)
    pid = (await created.json())["id"]
    for path, raw in (
        ("/api/v1/contacts", '{"name": "x", "score": NaN}'),
        (f"/api/v1/contacts/{pid}/follow-ups", '{"due_at": NaN, "title": "t"}'),
        (f"/api/v1/contacts/{pid}/follow-ups", '{"due_at": -Infinity, "title": "t"}'),
    ):
        err = await error_of(await client.post(path, data=raw, headers=auth), 400)
        assert err["id"] == "invalid_json" and "not valid JSON" in err["message"]
