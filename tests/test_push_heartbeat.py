"""The hub's heartbeat: live sockets stay, dead ones go, and pings are spread out in time.

A browser answers a websocket ping on its own; a tab whose machine went to sleep or lost its
network does not, and must stop counting as connected. 1,000 tabs that connected together
(a server restart) must not all be pinged in the same instant: that pass held every pop-up.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import WSMsgType

from tests.test_push_hub import connect, make_client, receive, ring


async def until(check: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_a_tab_that_answers_pings_stays_connected(aiohttp_client: Any) -> None:
    client, hub = await make_client(aiohttp_client, heartbeat=0.2)
    ws = await connect(client)  # aiohttp's client answers pings, as browsers do
    assert (await receive(ws))["type"] == "hello"
    reader = asyncio.create_task(ws.receive())  # something must read, to answer pings
    started = time.monotonic()
    while time.monotonic() - started < 1.0:  # five heartbeats
        await asyncio.sleep(0.05)
        assert hub.connections("ana") == 1
    hub.publish(["ana"], ring(1))
    msg = await asyncio.wait_for(reader, 5)
    assert msg.type is WSMsgType.TEXT and '"seq":1' in msg.data
    await ws.close()


async def test_a_tab_that_never_answers_is_dropped(aiohttp_client: Any) -> None:
    client, hub = await make_client(aiohttp_client, heartbeat=0.2)
    ws = await client.ws_connect(
        "/panel/ws",
        headers={"Origin": f"http://{client.host}:{client.port}", "X-Test-Agent": "ana"},
        autoping=False,  # and nothing reads: the pings go unanswered
    )
    await until(lambda: hub.connections("ana") == 1, "the tab to join")
    await until(lambda: hub.connections("ana") == 0, "the silent tab to be dropped")
    await ws.close()


async def test_tabs_that_connect_together_are_pinged_at_different_times(
    aiohttp_client: Any,
) -> None:
    client, hub = await make_client(aiohttp_client, heartbeat=2.0)
    tabs = [
        await client.ws_connect(
            "/panel/ws",
            headers={"Origin": f"http://{client.host}:{client.port}", "X-Test-Agent": f"a{i}"},
            autoping=False,
        )
        for i in range(10)
    ]

    async def first_ping(ws: Any) -> float:
        while True:
            msg = await ws.receive(timeout=10)
            if msg.type is WSMsgType.PING:
                await ws.pong(msg.data)
                return time.monotonic()

    times = await asyncio.gather(*(first_ping(ws) for ws in tabs))
    # each socket's first ping falls at its own random point of [1 s, 2 s] after it joined:
    # ten of them within 0.1 s of each other would be a ~1e-8 coincidence
    assert max(times) - min(times) > 0.1
    assert hub.connections() == 10  # and they answered: all still there
    for ws in tabs:
        await ws.close()
