"""User administration over real HTTP: /api/v1/users as an admin, a token and an agent see it,
and what the people whose account changes notice (sessions, open panel tabs, sign-in)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from openapi_spec_validator import validate

from gateway.api import openapi
from gateway.api import users as users_api
from gateway.api.openapi import build_document
from gateway.app import Gateway, create_app
from gateway.config import ApiToken
from gateway.panel.routes import PANEL
from gateway.panel.sessions import MAX_SESSIONS_PER_USER
from tests.test_panel_support import (
    FAST_HASHER,
    PASSWORD,
    USERS,
    PanelWorld,
    make_config,
)

ROOT = Path(__file__).resolve().parent.parent
READ_TOKEN = "users-read-token"
CRM_TOKEN = "crm-only-token"
NEW_PASSWORD = "lighthouse marmalade tuba"


@pytest.fixture
async def world(
    aiohttp_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[PanelWorld]:
    cfg = make_config(tmp_path)
    tokens = [
        *cfg.api.tokens,
        ApiToken(name="directory", token=READ_TOKEN, scopes=["users:read"]),
        ApiToken(name="crm-only", token=CRM_TOKEN, scopes=["crm:write"]),
    ]
    cfg = msgspec.structs.replace(cfg, api=msgspec.structs.replace(cfg.api, tokens=tokens))
    gw = Gateway(cfg)
    app = await create_app(cfg, gw)
    panel = app[PANEL]
    panel.users.hasher = FAST_HASHER
    for username, role, ext, name in (*USERS, ("root", "admin", "109", "Rosa Ortiz")):
        await panel.users.add(username, PASSWORD, role, [ext], name)
    w = PanelWorld(gw, panel, await aiohttp_server(app))
    yield w
    await w.close()


async def call(
    s: aiohttp.ClientSession, method: str, url: str, body: Any = None, token: str | None = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with s.request(method, url, json=body, headers=headers) as r:
        text = await r.text()
        return r.status, json.loads(text) if text else None


async def closed_with(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    """Read until the server closes the socket; its close code."""
    while True:
        msg = await ws.receive(timeout=5)
        if msg.type is aiohttp.WSMsgType.CLOSE:
            return int(msg.data)
        if msg.type is aiohttp.WSMsgType.CLOSED:
            return None


async def test_admin_lists_users_with_their_state_and_sessions(world: PanelWorld) -> None:
    admin = await world.sign_in("root")
    await world.sign_in("ana")
    status, body = await call(admin, "GET", world.url("/api/v1/users"))
    assert status == 200
    by_name = {u["username"]: u for u in body["items"]}
    assert set(by_name) == {"ana", "bruno", "sofia", "root"}
    assert by_name["ana"] == {
        "username": "ana",
        "display_name": "Ana García",
        "role": "agent",
        "extensions": ["101"],
        "disabled": False,
        "sessions": 1,
    }
    assert by_name["bruno"]["sessions"] == 0
    assert "password" not in json.dumps(body) and "hash" not in json.dumps(body)


async def test_a_supervisor_sees_the_team_to_hand_work_to_but_not_the_accounts(
    world: PanelWorld,
) -> None:
    """The campaign editor's call pool lists everyone who takes calls, online or not: enabled
    agents and supervisors by name, without sessions or administrators; agents may not read
    it, and /api/v1/users stays the admins'."""
    admin = await world.sign_in("root")
    status, _ = await call(admin, "PATCH", world.url("/api/v1/users/bruno"), {"disabled": True})
    assert status == 200
    supervisor = await world.sign_in("sofia")
    status, body = await call(supervisor, "GET", world.url("/api/v1/agents"))
    assert status == 200
    assert body["items"] == [
        {"username": "ana", "display_name": "Ana García", "role": "agent", "extensions": ["101"]},
        {
            "username": "sofia",
            "display_name": "Sofía Martín",
            "role": "supervisor",
            "extensions": ["100"],
        },
    ]
    assert (await call(supervisor, "GET", world.url("/api/v1/users")))[0] == 403
    agent = await world.sign_in("ana")
    assert (await call(agent, "GET", world.url("/api/v1/agents")))[0] == 403


async def test_only_admins_and_scoped_tokens_manage_users(world: PanelWorld) -> None:
    anon = await world.browser()
    url = world.url("/api/v1/users")
    status, _ = await call(anon, "GET", url, token=READ_TOKEN)
    assert status == 200
    status, body = await call(anon, "POST", url, {"username": "x1", "password": NEW_PASSWORD},
                              token=READ_TOKEN)  # fmt: skip
    assert status == 403 and body["error"]["details"] == {"scope": "users:write"}
    status, _ = await call(anon, "GET", url, token=CRM_TOKEN)
    assert status == 403
    for name in ("ana", "sofia"):  # an agent, and a supervisor
        s = await world.sign_in(name)
        status, body = await call(s, "GET", url)
        assert (status, body["error"]["id"]) == (403, "forbidden")
        status, _ = await call(s, "PATCH", world.url("/api/v1/users/bruno"), {"disabled": True})
        assert status == 403
    status, _ = await call(anon, "GET", url)
    assert status == 401


async def test_admin_creates_a_user_who_can_then_sign_in(world: PanelWorld) -> None:
    admin = await world.sign_in("root")
    status, body = await call(
        admin,
        "POST",
        world.url("/api/v1/users"),
        {"username": "Dario", "password": NEW_PASSWORD, "extensions": ["104"],
         "display_name": "Darío Vega"},
    )  # fmt: skip
    assert status == 201
    assert (body["username"], body["role"], body["extensions"]) == ("dario", "agent", ["104"])
    s = await world.sign_in("dario", NEW_PASSWORD)
    status, me = await call(s, "GET", world.url("/panel/api/state"))
    assert me["me"]["extensions"] == ["104"]
    status, body = await call(
        admin, "POST", world.url("/api/v1/users"), {"username": "dario", "password": NEW_PASSWORD}
    )
    assert (status, body["error"]["id"]) == (409, "username_taken")


@pytest.mark.parametrize(
    ("password", "code"),
    [
        ("password123", "password_common"),
        ("qwertyuiop", "password_common"),
        ("Dario.Vega-2024", "password_like_name"),  # the display name, accent dropped
        ("darío1987!", "password_like_name"),
        ("short", "password_too_short"),
        ("x" * 1025, "invalid_field"),  # over the body's limit, refused before hashing
    ],
)
async def test_weak_passwords_are_refused_with_a_reason(
    world: PanelWorld, password: str, code: str
) -> None:
    admin = await world.sign_in("root")
    body = {"username": "dario", "password": password, "display_name": "Darío Vega"}
    status, answer = await call(admin, "POST", world.url("/api/v1/users"), body)
    assert status == 422 and answer["error"]["id"] == code, answer
    assert password not in answer["error"]["message"]
    status, _ = await call(admin, "GET", world.url("/api/v1/users/dario"))
    assert status == 404


async def test_disabling_ends_sessions_closes_the_tab_and_refuses_sign_in(
    world: PanelWorld,
) -> None:
    admin = await world.sign_in("root")
    sofia = await world.sign_in("sofia")
    ana = await world.sign_in("ana")
    tab = await ana.ws_connect(world.url("/panel/ws"))
    board = await sofia.ws_connect(world.url("/panel/ws"))
    status, body = await call(admin, "PATCH", world.url("/api/v1/users/ana"), {"disabled": True})
    assert status == 200 and body["disabled"] is True and body["sessions"] == 0
    assert await closed_with(tab) == 4001  # the panel goes to the login page
    status, _ = await call(ana, "GET", world.url("/panel/api/state"))
    assert status == 401
    async with ana.post(
        world.url("/panel/api/login"), json={"username": "ana", "password": PASSWORD}
    ) as r:
        assert r.status == 401
    while True:  # the supervisor's board shows her signed out
        msg = json.loads((await board.receive(timeout=5)).data)
        if msg["type"] == "presence" and msg["data"]["username"] == "ana":
            assert msg["data"]["status"] == "offline"
            break
    status, body = await call(admin, "PATCH", world.url("/api/v1/users/ana"), {"disabled": False})
    assert status == 200 and body["disabled"] is False
    await world.sign_in("ana")


async def test_admin_changes_role_extensions_and_name(world: PanelWorld) -> None:
    admin = await world.sign_in("root")
    bruno = await world.sign_in("bruno")
    status, body = await call(
        admin,
        "PATCH",
        world.url("/api/v1/users/bruno"),
        {"role": "supervisor", "extensions": ["102", "112"], "display_name": "Bruno S."},
    )
    assert status == 200
    assert (body["role"], body["extensions"], body["display_name"]) == (
        "supervisor", ["102", "112"], "Bruno S."
    )  # fmt: skip
    status, _ = await call(bruno, "GET", world.url("/panel/api/board"))
    assert status == 200  # a supervisor's page, on his open session
    for bad, field in (({"role": "boss"}, "role"), ({"extensions": ["1;2"]}, "extensions"),
                       ({"nickname": "b"}, "nickname")):  # fmt: skip
        status, body = await call(admin, "PATCH", world.url("/api/v1/users/bruno"), bad)
        assert status == 422 and field in body["error"]["message"], body
    status, body = await call(admin, "PATCH", world.url("/api/v1/users/nobody"), {})
    assert (status, body["error"]["id"]) == (404, "user_not_found")


async def test_password_reset_by_an_admin_ends_every_session(world: PanelWorld) -> None:
    admin = await world.sign_in("root")
    ana_desk = await world.sign_in("ana")
    ana_phone = await world.sign_in("ana")
    url = world.url("/api/v1/users/ana/password")
    status, body = await call(admin, "POST", url, {"password": "password123"})
    assert (status, body["error"]["id"]) == (422, "password_common")
    status, _ = await call(ana_desk, "GET", world.url("/panel/api/state"))
    assert status == 200  # a refused password changes nothing
    status, body = await call(admin, "POST", url, {"password": NEW_PASSWORD})
    assert (status, body) == (200, {"sessions_ended": 2})
    for s in (ana_desk, ana_phone):
        status, _ = await call(s, "GET", world.url("/panel/api/state"))
        assert status == 401
    async with ana_desk.post(
        world.url("/panel/api/login"), json={"username": "ana", "password": PASSWORD}
    ) as r:
        assert r.status == 401
    await world.sign_in("ana", NEW_PASSWORD)


async def test_a_user_changes_their_own_password_and_stays_signed_in_there(
    world: PanelWorld,
) -> None:
    here = await world.sign_in("ana")
    elsewhere = await world.sign_in("ana")
    url = world.url("/api/v1/users/ana/password")
    status, body = await call(here, "POST", url, {"password": NEW_PASSWORD})
    assert (status, body["error"]["id"]) == (403, "wrong_current_password")
    status, body = await call(
        here, "POST", url, {"password": NEW_PASSWORD, "current_password": "not it at all"}
    )
    assert (status, body["error"]["id"]) == (403, "wrong_current_password")
    status, body = await call(
        here, "POST", url, {"password": NEW_PASSWORD, "current_password": PASSWORD}
    )
    assert (status, body) == (200, {"sessions_ended": 1})
    status, _ = await call(here, "GET", world.url("/panel/api/state"))
    assert status == 200
    status, _ = await call(elsewhere, "GET", world.url("/panel/api/state"))
    assert status == 401
    status, _ = await call(  # nobody else's, though
        here, "POST", world.url("/api/v1/users/bruno/password"), {"password": NEW_PASSWORD}
    )
    assert status == 403


async def test_the_last_admin_cannot_lock_everyone_out(world: PanelWorld) -> None:
    admin = await world.sign_in("root")
    me = world.url("/api/v1/users/root")
    for method, body in (("PATCH", {"disabled": True}), ("PATCH", {"role": "agent"}),
                         ("DELETE", None)):  # fmt: skip
        status, answer = await call(admin, method, me, body)
        assert (status, answer["error"]["id"]) == (409, "last_admin"), answer
        assert "only enabled admin" in answer["error"]["message"]
    status, _ = await call(admin, "PATCH", world.url("/api/v1/users/sofia"), {"role": "admin"})
    assert status == 200
    status, body = await call(admin, "PATCH", me, {"disabled": True})
    assert status == 200 and body["disabled"] is True


async def test_deleting_a_user_ends_their_session(world: PanelWorld) -> None:
    admin = await world.sign_in("root")
    bruno = await world.sign_in("bruno")
    tab = await bruno.ws_connect(world.url("/panel/ws"))
    async with admin.delete(world.url("/api/v1/users/bruno")) as r:
        assert r.status == 204
    assert await closed_with(tab) == 4001
    status, _ = await call(bruno, "GET", world.url("/panel/api/state"))
    assert status == 401
    status, body = await call(admin, "GET", world.url("/api/v1/users/bruno"))
    assert (status, body["error"]["id"]) == (404, "user_not_found")
    async with admin.delete(world.url("/api/v1/users/bruno")) as r:
        assert r.status == 404


async def test_a_sign_in_over_the_cap_ends_the_oldest_session(world: PanelWorld) -> None:
    oldest = await world.sign_in("ana")
    tab = await oldest.ws_connect(world.url("/panel/ws"))
    others = [await world.sign_in("ana") for _ in range(MAX_SESSIONS_PER_USER)]
    assert await closed_with(tab) == 4001
    status, _ = await call(oldest, "GET", world.url("/panel/api/state"))
    assert status == 401
    for s in others:
        status, _ = await call(s, "GET", world.url("/panel/api/state"))
        assert status == 200
    admin = await world.sign_in("root")
    _, body = await call(admin, "GET", world.url("/api/v1/users/ana"))
    assert body["sessions"] == MAX_SESSIONS_PER_USER


async def test_bad_bodies_get_clear_errors(world: PanelWorld) -> None:
    admin = await world.sign_in("root")
    url = world.url("/api/v1/users")
    async with admin.post(
        url, data=b"{not json", headers={"Content-Type": "application/json"}
    ) as r:
        assert r.status == 400 and (await r.json())["error"]["id"] == "invalid_json"
    status, body = await call(admin, "POST", url, {"username": "x y", "password": NEW_PASSWORD})
    assert (status, body["error"]["id"]) == (422, "invalid_username")
    status, body = await call(admin, "POST", url, [1, 2])
    assert status == 422 and body["error"]["id"] == "invalid_field"


async def test_a_user_disabled_from_the_command_line_loses_the_panel(
    world: PanelWorld, tmp_path: Path
) -> None:
    ana = await world.sign_in("ana")
    tab = await ana.ws_connect(world.url("/panel/ws"))
    config = tmp_path / "gw.yaml"
    config.write_text(f"store:\n  path: {world.gw.cfg.store.path}\n")
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "user", "disable", "ana", "-c", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    out, err = await cli.communicate()
    assert cli.returncode == 0, err
    assert b"1 session(s) ended" in out
    status, _ = await call(ana, "GET", world.url("/panel/api/state"))
    assert status == 401  # at once: the session is gone from the store
    await world.panel.check_sessions()  # what the gateway runs every SESSION_CHECK_SECONDS
    assert await closed_with(tab) == 4001
    assert world.panel.board.agents["ana"].signed_in is False


def test_the_openapi_document_describes_the_user_routes() -> None:
    doc = build_document()
    for path, item in users_api.openapi_paths().items():  # as openapi.py will merge them
        for method, op in item.items():
            if method != "parameters":
                op["operationId"] = openapi._operation_id(method, path)
        doc["paths"][path] = item
    doc["components"]["schemas"].update(users_api.schemas())
    validate(doc)
    ops = {(m, p) for p, item in doc["paths"].items() for m in item if p.startswith("/api/v1/u")}
    assert {(m, p) for m, p in ops if m != "parameters"} == {
        ("get", "/api/v1/users"),
        ("post", "/api/v1/users"),
        ("get", "/api/v1/users/{username}"),
        ("patch", "/api/v1/users/{username}"),
        ("delete", "/api/v1/users/{username}"),
        ("post", "/api/v1/users/{username}/password"),
    }
    new_user = doc["components"]["schemas"]["NewUser"]
    assert new_user["required"] == ["username", "password"]
    assert new_user["additionalProperties"] is False
