"""Shared set-up of the panel tests: the real gateway, a real SQLite file, real HTTP sessions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from argon2 import PasswordHasher

from gateway.app import Gateway, create_app
from gateway.calls.events import CallAnswered, CallEnded, CallRinging
from gateway.calls.model import CallRecord, Direction, Outcome
from gateway.config import (
    ApiSettings,
    ApiToken,
    GatewayConfig,
    PbxSettings,
    RecordingSettings,
    StoreSettings,
)
from gateway.panel.routes import PANEL
from gateway.panel.service import PanelService
from gateway.panel.settings import PanelSettings

# real argon2id, with parameters cheap enough for a test suite
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
PASSWORD = "correct horse battery"
API_TOKEN = "crm-token-for-tests"
USERS = (
    ("ana", "agent", "101", "Ana García"),
    ("bruno", "agent", "102", "Bruno Silva"),
    ("sofia", "supervisor", "100", "Sofía Martín"),
)


def make_config(
    tmp_path: Path, pbx_port: int | None = None, panel: PanelSettings | None = None
) -> GatewayConfig:
    rec = tmp_path / "recordings"
    rec.mkdir(exist_ok=True)
    pbx = []
    if pbx_port is not None:
        pbx = [
            PbxSettings(
                name="sim",
                host="127.0.0.1",
                port=pbx_port,
                username="gateway",
                secret="gw-lab-secret",
                auth="md5",
            )
        ]
    return GatewayConfig(
        pbx=pbx,
        store=StoreSettings(path=str(tmp_path / "centralita.db")),
        recordings=RecordingSettings(directory=str(rec)),
        api=ApiSettings(tokens=[ApiToken(name="crm", token=API_TOKEN)]),
        panel=panel or PanelSettings(),
    )


class PanelWorld:
    """A running panel: the gateway, the service, the server's URL, one cookie jar per user."""

    def __init__(self, gw: Gateway, panel: PanelService, server: Any) -> None:
        self.gw = gw
        self.panel = panel
        self.server = server
        self.sessions: list[aiohttp.ClientSession] = []

    @property
    def origin(self) -> str:
        return f"http://{self.server.host}:{self.server.port}"

    def url(self, path: str) -> str:
        return self.origin + path

    async def browser(self) -> aiohttp.ClientSession:
        s = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True), headers={"Origin": self.origin}
        )
        self.sessions.append(s)
        return s

    async def sign_in(
        self, username: str, password: str = PASSWORD, extensions: Any = None
    ) -> aiohttp.ClientSession:
        s = await self.browser()
        body: dict[str, Any] = {"username": username, "password": password}
        if extensions is not None:
            body["extensions"] = extensions
        async with s.post(self.url("/panel/api/login"), json=body) as r:
            assert r.status == 200, await r.text()
        return s

    async def close(self) -> None:
        for s in self.sessions:
            await s.close()


async def open_world(
    aiohttp_server: Any,
    tmp_path: Path,
    *,
    pbx_port: int | None = None,
    settings: PanelSettings | None = None,
) -> AsyncIterator[PanelWorld]:
    gw = Gateway(make_config(tmp_path, pbx_port, settings))
    app = await create_app(gw.cfg, gw)  # the very app `centralita run` serves
    panel = app[PANEL]
    panel.users.hasher = FAST_HASHER
    for username, role, ext, name in USERS:
        await panel.users.add(username, PASSWORD, role, [ext], name)
    server = await aiohttp_server(app)
    world = PanelWorld(gw, panel, server)
    try:
        yield world
    finally:
        await world.close()


# -- domain events as the tracker would publish them ---------------------------------------------


def ringing(linkedid: str, exts: tuple[str, ...], caller: str = "+34911234567", **kw: Any) -> Any:
    base: dict[str, Any] = {
        "pbx": "sim",
        "linkedid": linkedid,
        "ringing": exts,
        "direction": Direction.INBOUND,
        "caller": caller,
        "caller_name": None,
        "did": "900100200",
        "dialed": None,
        "queue": None,
        "click_to_call": False,
        "call_id": None,
        "at": 1795346400.0,
    }
    base.update(kw)
    return CallRinging(**base)


def answered(linkedid: str, by: str, caller: str = "+34911234567") -> CallAnswered:
    return CallAnswered(
        pbx="sim",
        linkedid=linkedid,
        by=by,
        direction=Direction.INBOUND,
        caller=caller,
        did="900100200",
        dialed=None,
        queue=None,
        click_to_call=False,
        call_id=None,
        at=1795346403.0,
    )


def ended(
    linkedid: str,
    rang: list[str],
    by: str | None,
    caller: str = "+34911234567",
    recordings: list[str] | None = None,
    outcome: Outcome | None = None,
    started_at: float = 1795346400.0,
) -> CallEnded:
    return CallEnded(
        CallRecord(
            linkedid=linkedid,
            pbx="sim",
            direction=Direction.INBOUND,
            outcome=outcome or (Outcome.ANSWERED if by else Outcome.NOANSWER),
            started_at=started_at,
            ended_at=started_at + 30,
            caller=caller,
            did="900100200",
            agents_rang=list(rang),
            agents_answered=[by] if by else [],
            answered_by=by,
            answered_at=started_at + 3 if by else None,
            ring_seconds=3.0,
            talk_seconds=27.0 if by else 0.0,
            total_seconds=30.0,
            recordings=list(recordings or []),
        )
    )


async def receive_type(ws: aiohttp.ClientWebSocketResponse, type_: str) -> dict[str, Any]:
    """The next message of ``type_`` (skipping others such as presence)."""
    while True:
        msg = await ws.receive(timeout=5)
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        data = json.loads(msg.data)
        if data["type"] == type_:
            return data


async def until(condition: Any, what: str, tries: int = 500) -> None:
    """Let the loop run until ``condition()`` holds (bytes crossing a real socket take a few
    turns of the loop); fails with ``what`` if it never does."""
    for _ in range(tries):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")
