"""Click-to-call from a CRM through the REST API, against the simulated PBX over real AMI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient

from gateway.app import Gateway, create_app
from gateway.calls.events import CallEnded
from gateway.config import ApiSettings, ApiToken
from gateway.panel.users import add_user
from gateway.sim.pbx import Phone, SimulatedPbx
from tests.test_panel_support import make_config

CRM = {"Authorization": "Bearer crm-originate-token"}
READER = {"Authorization": "Bearer read-only-api-token"}


@pytest.fixture
async def world(
    aiohttp_client: Any, tmp_path: Path, pbx: SimulatedPbx
) -> AsyncIterator[tuple[TestClient, Gateway]]:
    tokens = [
        ApiToken(name="crm", token="crm-originate-token", scopes=["originate", "calls:read"]),
        ApiToken(name="reader", token="read-only-api-token", scopes=["calls:read"]),
        ApiToken(name="other-crm", token="other-crm-api-token", scopes=["originate"]),
    ]
    cfg = msgspec.structs.replace(make_config(tmp_path, pbx.port), api=ApiSettings(tokens=tokens))
    gw = Gateway(cfg)
    client = await aiohttp_client(await create_app(cfg, gw))
    assert gw.db is not None
    await add_user(gw.db, "ana", "a long enough password 42", "agent", ["101"])
    for _ in range(500):
        if gw.links["sim"].health().logged_in:
            break
        await asyncio.sleep(0.01)
    yield client, gw


def originates(pbx: SimulatedPbx) -> list[dict[str, str]]:
    return [a for a in pbx.received_actions if a.get("Action") == "Originate"]


async def _state(client: TestClient, call_id: str) -> dict[str, Any]:
    resp = await client.get(f"/api/v1/originate/{call_id}", headers=CRM)
    assert resp.status == 200
    doc: dict[str, Any] = await resp.json()
    return doc


async def test_a_crm_places_a_call_and_follows_it_to_the_end(
    world: tuple[TestClient, Gateway], pbx: SimulatedPbx
) -> None:
    client, gw = world
    ended: list[CallEnded] = []
    gw.bus.subscribe(CallEnded, ended.append)
    resp = await client.post(
        "/api/v1/originate", json={"extension": "101", "number": "+34 600 111 222"}, headers=CRM
    )
    assert resp.status == 202, await resp.text()
    attempt = await resp.json()
    assert attempt["state"] == "calling_agent" and attempt["number"] == "+34600111222"
    for _ in range(200):
        if originates(pbx):
            break
        await asyncio.sleep(0.01)
    (action,) = originates(pbx)
    assert action["Channel"] == "PJSIP/101" and action["Exten"] == "+34600111222"
    assert f"GATEWAY_CALL_ID={attempt['call_id']}" in action["Variable"]
    await pbx.advance(60)
    for _ in range(300):
        if ended and (await _state(client, attempt["call_id"]))["state"] == "ended":
            break
        await asyncio.sleep(0.01)
    assert (await _state(client, attempt["call_id"]))["state"] == "ended"
    other = {"Authorization": "Bearer other-crm-api-token"}
    assert (
        await client.get(f"/api/v1/originate/{attempt['call_id']}", headers=other)
    ).status == 404
    record = ended[0].record
    assert record.click_to_call is True and record.call_id == attempt["call_id"]
    assert record.outcome.value == "answered"


async def test_agent_not_answering_is_reported(
    world: tuple[TestClient, Gateway], pbx: SimulatedPbx
) -> None:
    client, _ = world
    pbx.phones["101"] = Phone(answer="noanswer")
    resp = await client.post(
        "/api/v1/originate", json={"extension": "101", "number": "600111222"}, headers=CRM
    )
    call_id = (await resp.json())["call_id"]
    for _ in range(200):
        if originates(pbx):
            break
        await asyncio.sleep(0.01)
    await pbx.advance(60)
    for _ in range(300):
        state = await _state(client, call_id)
        if state["state"] == "failed":
            break
        await asyncio.sleep(0.01)
    assert state["state"] == "failed" and state["reason"] == "agent_noanswer"


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"extension": "101", "number": "600111222&PJSIP/999"}, 400, "invalid_number"),
        ({"extension": "101", "number": "${SHELL(id)}"}, 400, "invalid_number"),
        ({"extension": "PJSIP/101", "number": "600111222"}, 422, "invalid_field"),
        ({"extension": "101"}, 422, "invalid_field"),
        (["not", "an", "object"], 422, "invalid_field"),
    ],
)
async def test_bad_requests_never_reach_the_pbx(
    world: tuple[TestClient, Gateway], pbx: SimulatedPbx, body: Any, status: int, error: str
) -> None:
    client, _ = world
    resp = await client.post("/api/v1/originate", json=body, headers=CRM)
    assert resp.status == status
    assert (await resp.json())["error"]["id"] == error
    await asyncio.sleep(0.05)
    assert originates(pbx) == []


async def test_originate_needs_its_own_scope(world: tuple[TestClient, Gateway]) -> None:
    client, _ = world
    body = {"extension": "101", "number": "600111222"}
    assert (await client.post("/api/v1/originate", json=body)).status == 401
    assert (await client.post("/api/v1/originate", json=body, headers=READER)).status == 403
    assert (await client.get("/api/v1/originate/nope", headers=CRM)).status == 404
