"""The access table of gateway/access.py, walked over real HTTP: every registered route, every
kind of caller, the status the table promises; plus the docs' copy of the table."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from gateway import access
from gateway.app import Gateway, create_app
from gateway.config import ApiSettings, ApiToken
from gateway.demo_mailbox import DemoMailbox
from gateway.panel.routes import PANEL
from tests.test_panel_support import FAST_HASHER, PASSWORD, USERS, PanelWorld, make_config

DOCS = Path(__file__).resolve().parent.parent / "docs" / "api.md"
SCOPED = sorted(access.TOKEN_SCOPES)


def token_for(scope: str | None) -> str:
    return f"token-with-{scope or 'nothing'}-0123456789"


async def open_access_world(
    aiohttp_server: Any, tmp_path: Path, tokens: list[ApiToken] | None = None
) -> PanelWorld:
    """The real application with the demo users, an admin ``root``, and ``tokens``."""
    cfg = make_config(tmp_path)
    if tokens is not None:
        cfg = msgspec.structs.replace(cfg, api=ApiSettings(tokens=tokens))
    gw = Gateway(cfg)
    gw.demo_mailbox = DemoMailbox()  # the demo-only routes are in the table too
    app = await create_app(cfg, gw)
    panel = app[PANEL]
    panel.users.hasher = FAST_HASHER
    for username, role, ext, name in USERS:
        await panel.users.add(username, PASSWORD, role, [ext], name)
    await panel.users.add("root", PASSWORD, "admin", ["109"], "Root")
    return PanelWorld(gw, panel, await aiohttp_server(app))


@pytest.fixture
async def world(aiohttp_server: Any, tmp_path: Path) -> AsyncIterator[PanelWorld]:
    tokens = [ApiToken(name=f"t-{s}", token=token_for(s), scopes=[s]) for s in SCOPED]
    tokens.append(ApiToken(name="t-none", token=token_for(None), scopes=[]))
    w = await open_access_world(aiohttp_server, tmp_path, tokens)
    yield w
    await w.close()


def registered(world: PanelWorld) -> set[tuple[str, str]]:
    app = world.server.app
    out = set()
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue  # HEAD follows GET
        out.add((route.method, route.resource.canonical))
    return out


async def test_every_registered_route_has_an_entry_and_every_entry_a_route(
    world: PanelWorld,
) -> None:
    routes = registered(world)
    assert sorted(routes - set(access.ROUTES)) == []  # a new route needs its line in the table
    assert sorted(set(access.ROUTES) - routes) == []


def concrete(path: str) -> str:
    return (
        path.replace("{id}", "999999")
        .replace("{call_id}", "sim:nothing")
        .replace("{index}", "0")
        .replace("{username}", "nobody")
        .replace("{member_id}", "999999")
        .replace("{name}", "calls")
        .replace("{format}", "csv")
        .replace("/panel/assets", "/panel/assets/app.js")
        .replace("/static", "/static/missing.css")
    )


async def test_every_route_answers_every_caller_as_the_table_says(world: PanelWorld) -> None:
    callers: dict[str, tuple[access.Principal | None, aiohttp.ClientSession]] = {}
    for name, role in (("ana", "agent"), ("sofia", "supervisor"), ("root", "admin")):
        s = await world.sign_in(name)
        callers[role] = (access.Principal(name, "user", frozenset(), role), s)
    for scope in [*SCOPED, None]:
        s = aiohttp.ClientSession(headers={"Authorization": f"Bearer {token_for(scope)}"})
        world.sessions.append(s)
        scopes = frozenset({scope} if scope else set())
        callers[f"token {scope}"] = (access.Principal("t", "token", scopes), s)
    callers["nobody"] = (None, await world.browser())
    # signing out ends the session the other requests need: it goes last
    order = sorted(access.ROUTES, key=lambda k: k == ("POST", "/panel/api/logout"))
    checked = 0
    for method, path in order:
        rule = access.ROUTES[(method, path)]
        for label, (who, session) in callers.items():
            kw: dict[str, Any] = {"headers": {"Origin": world.origin}, "allow_redirects": False}
            if method in ("POST", "PUT", "PATCH"):
                kw["json"] = {}
            async with session.request(method, world.url(concrete(path)), **kw) as r:
                status = r.status
                body = await r.text()
            if rule.allows(who, {"username": "nobody"}):
                assert status not in (401, 403), (method, path, label, status, body)
            else:
                want = 401 if who is None else 403
                assert status == want, (method, path, label, status, body)
            checked += 1
    assert checked == len(access.ROUTES) * len(callers)


@pytest.mark.parametrize(
    ("role", "method", "path", "status"),
    [
        ("agent", "DELETE", "/api/v1/contacts/{id}", 403),
        ("agent", "POST", "/api/v1/import", 403),
        ("agent", "GET", "/api/v1/audit", 403),
        ("agent", "GET", "/panel/api/board", 403),
        ("supervisor", "GET", "/api/v1/outbox", 403),
        ("supervisor", "GET", "/api/v1/audit", 200),
        ("admin", "GET", "/api/v1/outbox", 200),
    ],
)
def test_the_table_says_what_the_docs_promise(role: str, method: str, path: str, status: int):
    who = access.Principal("x", "user", frozenset(), role)
    assert access.ROUTES[(method, path)].allows(who) is (status == 200)


def test_every_role_holds_the_scopes_its_routes_ask_handlers_for() -> None:
    # handlers still call require(scope): a role the table lets through must pass it too
    for (method, path), rule in access.ROUTES.items():
        for role in rule.roles:
            if rule.scope:
                who = access.Principal("x", "user", access.ROLE_SCOPES[role], role)
                assert who.allows(rule.scope), (method, path, role)


def test_scopes_imply_lesser_levels_only() -> None:
    admin = access.Principal("t", "token", frozenset({"crm:admin"}))
    assert admin.allows("crm:write") and admin.allows("crm:read")
    writer = access.Principal("t", "token", frozenset({"crm:write"}))
    assert writer.allows("crm:read") and not writer.allows("crm:admin")
    assert not writer.allows("calls:read") and not writer.allows("crm")


def test_docs_hold_the_table_the_gateway_enforces() -> None:
    text = DOCS.read_text(encoding="utf-8")
    start = text.index("<!-- access-table:start -->")
    end = text.index("<!-- access-table:end -->")
    table = re.sub(r"^<!--.*-->\n", "", text[start:end], flags=re.M).strip()
    assert table == access.markdown_table()
