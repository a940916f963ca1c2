"""The OpenAPI document against the real application: valid 3.1, every /api/v1 route and only
those, the scope each route really enforces, and real responses in their documented shape."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from gateway.api.openapi import OPENAPI_PATH, build_document
from gateway.app import Gateway, create_app
from gateway.config import ApiSettings, ApiToken
from gateway.panel.users import add_user
from tests.test_panel_support import make_config

ADMIN = {"Authorization": "Bearer openapi-admin-token"}
NOBODY = {"Authorization": "Bearer openapi-no-scope-token"}
METHODS = ("get", "post", "put", "patch", "delete")
DOC_URI = "urn:centralita:openapi"


async def build(tmp_path: Path) -> tuple[web.Application, Gateway]:
    tokens = [
        ApiToken(name="admin", token="openapi-admin-token"),
        ApiToken(name="nobody", token="openapi-no-scope-token", scopes=[]),
    ]
    cfg = msgspec.structs.replace(make_config(tmp_path), api=ApiSettings(tokens=tokens))
    gw = Gateway(cfg)
    app = await create_app(cfg, gw)
    return app, gw


@pytest.fixture
async def world(aiohttp_client: Any, tmp_path: Path) -> AsyncIterator[tuple[TestClient, Gateway]]:
    app, gw = await build(tmp_path)
    yield await aiohttp_client(app), gw


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return build_document()


def closed(document: dict[str, Any]) -> dict[str, Any]:
    """A copy whose response objects refuse fields the document does not name, so a field
    added to a response without documenting it fails the shape checks below."""
    out = copy.deepcopy(document)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                node.setdefault("additionalProperties", False)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(out["components"]["schemas"])
    return out


def documented_routes(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    }


def check_response(
    document: dict[str, Any], method: str, path: str, status: int, body: Any
) -> dict[str, Any]:
    """Validate ``body`` against what the document says ``method path`` answers with
    ``status``; fails when that status is not documented for the operation."""
    responses = document["paths"][path][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {path} answered {status}, not documented"
    response = responses[str(status)]
    if "$ref" in response:
        response = document["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    if "content" not in response:
        assert body is None
        return response
    schema = response["content"]["application/json"]["schema"]
    registry: Registry[Any] = Registry().with_resource(
        DOC_URI, Resource.from_contents(document, default_specification=DRAFT202012)
    )
    if "$ref" in schema:
        schema = {"$ref": DOC_URI + schema["$ref"]}
    jsonschema.Draft202012Validator(schema, registry=registry).validate(body)
    return response


async def call(
    client: TestClient,
    document: dict[str, Any],
    method: str,
    template: str,
    status: int,
    *,
    path: str | None = None,
    headers: dict[str, str] | None = None,
    **kw: Any,
) -> Any:
    resp = await client.request(method, path or template, headers=headers or ADMIN, **kw)
    assert resp.status == status, await resp.text()
    body = await resp.json() if resp.content_type == "application/json" else None
    check_response(closed(document), method, template, status, body)
    return body


def test_the_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


async def test_it_documents_every_api_route_and_nothing_else(tmp_path: Path) -> None:
    app, gw = await build(tmp_path)
    try:
        registered = {
            (route.method, route.resource.canonical)
            for route in app.router.routes()
            if route.resource is not None
            and route.resource.canonical.startswith("/api/v1/")
            and route.method != "HEAD"  # aiohttp adds one to every GET
        }
        assert documented_routes(build_document()) == registered
    finally:
        assert gw.db is not None
        await gw.db.close()


def test_every_operation_names_its_scope_and_errors(doc: dict[str, Any]) -> None:
    ids = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            ids.append(op["operationId"])
            if path == OPENAPI_PATH:
                assert op["security"] == [] and op["x-scopes"] == []
                continue
            (scope,) = op["x-scopes"]
            assert f"`{scope}`" in op["description"]
            assert {"bearerAuth": [scope]} in op["security"]
            assert {"401", "403"} <= set(op["responses"]), f"{method} {path}"
            if "requestBody" in op:
                assert {"400", "422"} <= set(op["responses"]), f"{method} {path}"
    assert len(ids) == len(set(ids))


async def test_each_route_refuses_a_token_without_the_documented_scope(
    world: tuple[TestClient, Gateway], doc: dict[str, Any]
) -> None:
    client, _ = world
    checked = 0
    for method, template in sorted(documented_routes(doc)):
        op = doc["paths"][template][method.lower()]
        if not op["x-scopes"]:
            continue
        path = (
            template.replace("{id}", "1")
            .replace("{call_id}", "gw-c2c-0")
            .replace("{username}", "nobody")
            .replace("{member_id}", "1")
            .replace("{name}", "calls")
            .replace("{format}", "csv")
        )
        body = await call(client, doc, method, template, 403, path=path, headers=NOBODY, json={})
        assert body["error"]["id"] == "forbidden"
        assert body["error"]["details"] == {"scope": op["x-scopes"][0]}, f"{method} {template}"
        checked += 1
    assert checked == len(documented_routes(doc)) - 1


async def test_the_document_is_served_to_anyone(world: tuple[TestClient, Gateway]) -> None:
    client, _ = world
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        resp = await client.get(OPENAPI_PATH, headers=headers)
        assert resp.status == 200
        served = await resp.json()
        assert served == build_document()
    # the public door opens on the document only
    resp = await client.get("/api/v1/contacts")
    assert resp.status == 401
    check_response(build_document(), "GET", "/api/v1/contacts", 401, await resp.json())
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_crm_responses_have_their_documented_shape(
    world: tuple[TestClient, Gateway], doc: dict[str, Any]
) -> None:
    client, _ = world
    ana = {"name": "Ana <b>Ruiz</b>", "company": "Acme", "phones": ["+34 600 111 222"]}
    created = await call(client, doc, "POST", "/api/v1/contacts", 201, json=ana)
    assert created["outcome"] == "created" and created["phones"][0]["e164"] == "+34600111222"
    again = {"first_name": "Ana", "phones": [{"number": "600111222", "type": "mobile"}]}
    folded = await call(client, doc, "POST", "/api/v1/contacts", 200, json=again)
    assert folded["outcome"] == "updated" and folded["id"] == created["id"]
    one = f"/api/v1/contacts/{created['id']}"
    await call(
        client, doc, "POST", "/api/v1/contacts/{id}/activities", 201,
        path=one + "/activities", json={"kind": "note", "summary": "wants a quote"},
    )  # fmt: skip
    await call(
        client, doc, "POST", "/api/v1/contacts/{id}/follow-ups", 201,
        path=one + "/follow-ups", json={"due_at": 1_900_000_000, "title": "send the quote"},
    )  # fmt: skip
    detail = await call(client, doc, "GET", "/api/v1/contacts/{id}", 200, path=one)
    assert detail["activities"][0]["summary"] == "wants a quote" and detail["follow_ups"]
    page = await call(client, doc, "GET", "/api/v1/contacts", 200, path="/api/v1/contacts?limit=1")
    assert [p["id"] for p in page["items"]] == [created["id"]]
    changed = await call(
        client, doc, "PATCH", "/api/v1/contacts/{id}", 200, path=one, json={"title": "CTO"}
    )
    assert changed["title"] == "CTO"

    card = await call(
        client, doc, "GET", "/api/v1/lookup", 200, path="/api/v1/lookup?number=%2B34600111222"
    )
    assert card["known"] is True and card["display_name"] == "Ana <b>Ruiz</b>"
    unknown = await call(
        client, doc, "GET", "/api/v1/lookup", 200, path="/api/v1/lookup?number=%2B34911000999"
    )
    assert unknown["known"] is False

    lead = {"name": "Luis", "status": "lost", "lost_reason": "price", "email": "l@example.com"}
    await call(client, doc, "POST", "/api/v1/leads", 201, json=lead)
    leads = "/api/v1/leads?status=lost&source=api"
    assert len((await call(client, doc, "GET", "/api/v1/leads", 200, path=leads))["items"]) == 1
    account = await call(client, doc, "POST", "/api/v1/accounts", 201, json={"name": "Acme"})
    await call(client, doc, "GET", "/api/v1/accounts", 200)
    await call(
        client,
        doc,
        "DELETE",
        "/api/v1/accounts/{id}",
        204,
        path=f"/api/v1/accounts/{account['id']}",
    )
    report = await call(
        client, doc, "POST", "/api/v1/import", 200,
        json={"kind": "leads", "csv": "name,phone\nEva,+34 600 333 444\nBad,12\n"},
    )  # fmt: skip
    assert report["created"] == 1 and report["errors"][0]["line"] == 3
    await call(client, doc, "DELETE", "/api/v1/contacts/{id}", 204, path=one)


async def test_errors_have_the_documented_shape(
    world: tuple[TestClient, Gateway], doc: dict[str, Any]
) -> None:
    client, _ = world
    bad_phone = {"name": "Ana", "phones": ["+34 600 111 222", "call me"]}
    err = await call(client, doc, "POST", "/api/v1/contacts", 422, json=bad_phone)
    assert err["error"]["id"] == "invalid_field"
    assert err["error"]["details"]["field"] == "phones[1].number"
    err = await call(client, doc, "POST", "/api/v1/contacts", 422, json={"nickname": "x"})
    assert err["error"]["details"] == {"field": "nickname", "reason": "unknown field"}
    err = await call(client, doc, "POST", "/api/v1/contacts", 400, data=b"{not json")
    assert err["error"]["id"] == "invalid_json"
    err = await call(client, doc, "GET", "/api/v1/contacts", 400, path="/api/v1/contacts?limit=0")
    assert err["error"]["details"]["field"] == "limit"
    err = await call(client, doc, "GET", "/api/v1/leads/{id}", 404, path="/api/v1/leads/987654")
    assert err["error"]["id"] == "not_found"
    strict = {"kind": "contacts", "csv": "name,phone\nBad,12\n", "strict": True}
    err = await call(client, doc, "POST", "/api/v1/import", 422, json=strict)
    assert err["error"]["id"] == "import_rejected" and err["error"]["details"]["error_count"] == 1


async def test_calls_and_originate_have_their_documented_shape(
    world: tuple[TestClient, Gateway], doc: dict[str, Any]
) -> None:
    client, gw = world
    assert gw.call_log is not None
    record = {
        "id": "lab:1700000000.1",
        "linkedid": "1700000000.1",
        "pbx": "lab",
        "direction": "inbound",
        "caller": "+34600111222",
        "caller_name": "<script>x</script>",
        "did": "+34911000000",
        "agents_rang": ["101", "102"],
        "answered_by": "101",
        "transfers": [{"kind": "blind", "from": "101", "to": "102"}],
        "outcome": "transferred",
        "started_at": 1_700_000_000.0,
        "answered_at": 1_700_000_004.0,
        "ended_at": 1_700_000_064.0,
        "ring_seconds": 4.0,
        "talk_seconds": 60.0,
        "total_seconds": 64.0,
        "recordings": ["in-1700000000.1.wav"],
    }
    assert await gw.call_log.save(record)
    page = await call(
        client, doc, "GET", "/api/v1/calls", 200, path="/api/v1/calls?outcome=transferred"
    )
    assert [c["id"] for c in page["items"]] == [record["id"]] and page["next_cursor"] is None
    one = "/api/v1/calls/lab:1700000000.1"
    await call(client, doc, "GET", "/api/v1/calls/{id}", 200, path=one)
    noted = await call(
        client, doc, "PATCH", "/api/v1/calls/{id}", 200, path=one, json={"notes": "call back"}
    )
    assert noted["notes"] == "call back"
    err = await call(client, doc, "GET", "/api/v1/calls", 400, path="/api/v1/calls?cursor=forged")
    assert err["error"]["details"]["field"] == "cursor"

    # no PBX in this config: a good request is refused before anything is dialed
    assert gw.db is not None
    await add_user(gw.db, "ana", "a long enough password 42", "agent", ["101"])
    c2c = {"extension": "101", "number": "+34 600 111 222"}
    err = await call(client, doc, "POST", "/api/v1/originate", 503, json=c2c)
    assert err["error"]["id"] == "pbx_down"
    injected = {"extension": "101", "number": "600111222&PJSIP/evil"}
    err = await call(client, doc, "POST", "/api/v1/originate", 400, json=injected)
    assert err["error"]["id"] == "invalid_number"
    err = await call(client, doc, "POST", "/api/v1/originate", 422, json={"number": "600111222"})
    assert err["error"]["details"]["field"] == "extension"
    await call(
        client, doc, "GET", "/api/v1/originate/{call_id}", 404, path="/api/v1/originate/gw-c2c-0"
    )


def test_the_documented_call_record_is_the_trackers_record(doc: dict[str, Any]) -> None:
    """One record shape: every field ``centralita replay`` prints is documented (and so sent:
    responses are encoded through the same struct), with the log's fields on top."""
    from gateway.calls.model import CallRecord, Direction, Outcome

    replay = CallRecord("1.1", "lab", Direction.INBOUND, Outcome.ANSWERED, 1.0, 2.0).to_json()
    schema = doc["components"]["schemas"]["CallRecord"]
    assert set(schema["properties"]) == {*replay, "id", "caller_e164", "notes", "disposition",
                                         "person_id"}  # fmt: skip
    assert set(schema["required"]) == set(schema["properties"])


def test_every_body_schema_comes_from_a_struct(doc: dict[str, Any]) -> None:
    """The components are msgspec's own output for the structs the handlers decode and
    encode with, not a hand-written copy that could drift."""
    from gateway.api import schemas

    for name, schema in doc["components"]["schemas"].items():
        struct = getattr(schemas, name, None)
        if struct is None:
            continue  # an enum or the outbox's, emitted the same way by gateway/api/outbox.py
        _, components = msgspec.json.schema_components(
            (struct,), ref_template="#/components/schemas/{name}"
        )
        assert components[name] == schema, name
    for path, item in doc["paths"].items():
        for op in (v for k, v in item.items() if k in METHODS):
            for param in op.get("parameters", []):
                assert "$ref" not in param or param["$ref"].endswith("/Id"), (path, param)
