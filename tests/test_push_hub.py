"""AgentHub over real websockets: numbering, catch-up after reconnect, handshake checks."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from gateway.push.hub import SLOW_CLIENT_CLOSE, AgentHub
from gateway.push.messages import CALL_RINGING, encode


async def _by_header(request: web.Request) -> str | None:
    # stands in for the session cookie check: the panel's own tests cover real sessions
    return request.headers.get("X-Test-Agent")


async def make_client(aiohttp_client: Any, **kw: Any) -> tuple[Any, AgentHub]:
    hub = AgentHub(_by_header, **kw)
    app = web.Application()
    app.router.add_get("/panel/ws", hub.handle)
    client = await aiohttp_client(app)
    return client, hub


def origin(client: Any) -> str:
    return f"http://{client.host}:{client.port}"


async def connect(
    client: Any, agent: str = "ana", query: str = ""
) -> aiohttp.ClientWebSocketResponse:
    return await client.ws_connect(
        "/panel/ws" + query, headers={"Origin": origin(client), "X-Test-Agent": agent}
    )


async def receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await ws.receive(timeout=5)
    assert msg.type is WSMsgType.TEXT, msg
    return json.loads(msg.data)


def ring(n: int) -> Any:
    return encode(CALL_RINGING, {"linkedid": f"call-{n}", "caller_name": "<b>x</b>"})


async def test_each_agent_numbers_its_own_messages(aiohttp_client: Any) -> None:
    client, hub = await make_client(aiohttp_client)
    ana, bruno = await connect(client, "ana"), await connect(client, "bruno")
    assert (await receive(ana))["type"] == "hello"
    assert (await receive(bruno))["type"] == "hello"
    hub.publish(["ana", "bruno"], ring(1))
    hub.publish(["ana"], ring(2))
    first, second = await receive(ana), await receive(ana)
    assert [first["seq"], second["seq"]] == [1, 2]
    assert second["data"]["linkedid"] == "call-2"
    assert first["data"]["caller_name"] == "<b>x</b>"  # text stays text on the wire
    only = await receive(bruno)
    assert (only["seq"], only["data"]["linkedid"]) == (1, "call-1")
    await ana.close()
    await bruno.close()


async def test_two_tabs_of_one_agent_both_get_every_message(aiohttp_client: Any) -> None:
    client, hub = await make_client(aiohttp_client)
    tab1, tab2 = await connect(client), await connect(client)
    await receive(tab1)
    await receive(tab2)
    hub.publish(["ana"], ring(1))
    assert (await receive(tab1))["seq"] == (await receive(tab2))["seq"] == 1
    await tab1.close()
    await tab2.close()


async def test_reconnecting_tab_gets_what_it_missed(aiohttp_client: Any) -> None:
    client, hub = await make_client(aiohttp_client)
    ws = await connect(client)
    hello = await receive(ws)
    for n in range(1, 4):
        hub.publish(["ana"], ring(n))
    seen = [(await receive(ws))["seq"] for _ in range(3)]
    assert seen == [1, 2, 3]
    await ws.close()
    hub.publish(["ana"], ring(4))
    hub.publish(["ana"], ring(5))
    ws = await connect(client, query=f"?since=3&epoch={hello['data']['epoch']}")
    assert (await receive(ws))["type"] == "hello"
    missed = [await receive(ws), await receive(ws)]
    assert [(m["seq"], m["data"]["linkedid"]) for m in missed] == [(4, "call-4"), (5, "call-5")]
    hub.publish(["ana"], ring(6))
    assert (await receive(ws))["seq"] == 6  # live again, no duplicate and no gap
    await ws.close()


async def test_tab_too_far_behind_is_told_to_refresh(aiohttp_client: Any) -> None:
    client, hub = await make_client(aiohttp_client, buffer_size=5)
    ws = await connect(client)
    epoch = (await receive(ws))["data"]["epoch"]
    await ws.close()
    for n in range(1, 11):
        hub.publish(["ana"], ring(n))
    ws = await connect(client, query=f"?since=2&epoch={epoch}")
    await receive(ws)
    refresh = await receive(ws)
    assert refresh["type"] == "refresh"
    assert refresh["seq"] == 10  # after reloading, the tab continues from here
    hub.publish(["ana"], ring(11))
    assert (await receive(ws))["seq"] == 11
    await ws.close()


async def test_tab_from_before_a_server_restart_is_told_to_refresh(aiohttp_client: Any) -> None:
    client, hub = await make_client(aiohttp_client)
    hub.publish(["ana"], ring(1))
    ws = await connect(client, query="?since=1&epoch=not-this-server")
    await receive(ws)
    assert (await receive(ws))["type"] == "refresh"
    await ws.close()


async def test_cross_origin_socket_is_refused(aiohttp_client: Any) -> None:
    client, hub = await make_client(aiohttp_client)
    for bad in ("https://evil.example", None):
        headers = {"X-Test-Agent": "ana"}
        if bad:
            headers["Origin"] = bad
        try:
            await client.ws_connect("/panel/ws", headers=headers)
        except aiohttp.WSServerHandshakeError as e:
            assert e.status == 403
        else:
            raise AssertionError(f"socket with Origin {bad!r} was accepted")
    assert hub.connections() == 0


async def test_socket_without_session_is_refused(aiohttp_client: Any) -> None:
    client, hub = await make_client(aiohttp_client)
    try:
        await client.ws_connect("/panel/ws", headers={"Origin": origin(client)})
    except aiohttp.WSServerHandshakeError as e:
        assert e.status == 401
    else:
        raise AssertionError("socket without a session was accepted")
    assert hub.connections() == 0


async def test_client_that_cannot_keep_up_is_disconnected_and_can_catch_up(
    aiohttp_client: Any,
) -> None:
    client, hub = await make_client(aiohttp_client, max_pending=3, buffer_size=100)
    slow = await connect(client)
    epoch = (await receive(slow))["data"]["epoch"]
    fast = await connect(client, "bruno")
    await receive(fast)
    # published in one go: the writer cannot drain in between, so the queue overflows
    for n in range(1, 11):
        hub.publish(["ana"], ring(n))
    hub.publish(["bruno"], ring(11))
    got = []
    while True:
        msg = await slow.receive(timeout=5)
        if msg.type is not WSMsgType.TEXT:
            break
        got.append(json.loads(msg.data)["seq"])
    assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
    assert slow.close_code == SLOW_CLIENT_CLOSE
    assert len(got) < 10
    assert hub.slow_disconnects == 1
    # the other agent is not affected
    assert (await receive(fast))["data"]["linkedid"] == "call-11"
    assert hub.connections("bruno") == 1
    # the dropped tab reconnects and gets the rest from the buffer
    last = got[-1] if got else 0
    again = await connect(client, query=f"?since={last}&epoch={epoch}")
    await receive(again)
    rest = [(await receive(again))["seq"] for _ in range(10 - last)]
    assert rest == list(range(last + 1, 11))
    await again.close()
    await fast.close()


async def test_connection_listener_sees_tabs_come_and_go(aiohttp_client: Any) -> None:
    client, hub = await make_client(aiohttp_client)
    seen: list[tuple[str, int]] = []
    gone = asyncio.Event()

    def listener(agent: str, n: int) -> None:
        seen.append((agent, n))
        if n == 0:
            gone.set()

    hub.listeners.append(listener)
    ws = await connect(client)
    await receive(ws)
    await ws.close()
    await asyncio.wait_for(gone.wait(), 5)
    assert seen == [("ana", 1), ("ana", 0)]
