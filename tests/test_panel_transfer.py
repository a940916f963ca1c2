"""Attended transfers from the panel against the simulated PBX over real AMI: the agent starts
one (``Atxfer``), then completes it (``Hangup`` of the agent's leg: the customer goes on with
the target) or cancels it (``CancelAtxfer``; a ``Hangup`` of the consultation leg where the PBX
refuses that); a consultation the target ends is cleared and the agent's tab told."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.sim.clock import ManualClock
from gateway.sim.state import Phone
from gateway.sim.transfer import AttendedTransferPbx
from tests.test_panel_support import open_world, until


@pytest.fixture
async def pbx() -> AsyncIterator[AttendedTransferPbx]:
    sim = AttendedTransferPbx(clock=ManualClock(), flavour="pjsip")
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
async def world(aiohttp_server: Any, tmp_path: Path, pbx: AttendedTransferPbx) -> Any:
    gen = open_world(aiohttp_server, tmp_path, pbx_port=pbx.port)
    w = await gen.__anext__()
    link = w.gw.links["sim"]
    await until(lambda: link.health().logged_in, "the AMI link to log in")
    yield w
    await gen.aclose()


def sent(pbx: AttendedTransferPbx, action: str) -> list[dict[str, str]]:
    return [a for a in pbx.received_actions if a.get("Action") == action]


async def post(session: Any, world: Any, path: str, body: Any = None) -> tuple[int, Any]:
    async with session.post(world.url(path), json=body if body is not None else {}) as r:
        return r.status, await r.json()


async def state(session: Any, world: Any) -> dict[str, Any]:
    async with session.get(world.url("/panel/api/state")) as r:
        return await r.json()  # type: ignore[no-any-return]


async def consulting(world: Any, pbx: AttendedTransferPbx, ana: Any, to: str = "102") -> str:
    """ana (101) answers an inbound call and starts an attended transfer to ``to``."""
    pbx.phones["101"] = Phone(ring=1.0, answer=True)
    pbx.phones[to] = Phone(ring=1.0, answer=True)
    key = "sim:" + pbx.start_call("inbound", agent="101", talk_seconds=120)
    for _ in range(3):
        await pbx.advance(1)
    await until(lambda: key in world.panel.board.agents["ana"].calls, "ana to answer")
    status, body = await post(
        ana, world, f"/panel/api/calls/{key}/transfer", {"to": to, "mode": "attended"}
    )
    assert status == 200, body
    assert body["consulting"]["to"] == to
    return key


def agent_leg(pbx: AttendedTransferPbx) -> str:
    return next(n for n in pbx.channels if n.startswith("PJSIP/101-"))


async def test_complete_hands_the_customer_to_the_target(
    world: Any, pbx: AttendedTransferPbx
) -> None:
    ana = await world.sign_in("ana")
    await world.sign_in("bruno")
    key = await consulting(world, pbx, ana)
    leg = agent_leg(pbx)
    (atxfer,) = sent(pbx, "Atxfer")
    assert (atxfer["Channel"], atxfer["Context"], atxfer["Exten"]) == (
        leg, "centralita-transfer", "102"
    )  # fmt: skip
    assert (await state(ana, world))["consulting"][key]["to"] == "102"  # a reloading tab
    # while consulting, hold and another transfer would confuse the PBX: refused
    status, body = await post(ana, world, f"/panel/api/calls/{key}/hold")
    assert (status, body["error"]["id"]) == (409, "transfer_in_progress")

    status, body = await post(ana, world, f"/panel/api/calls/{key}/transfer/complete")
    assert (status, body["to"]) == (200, "102"), body
    assert [a["Channel"] for a in sent(pbx, "Hangup")] == [leg]
    assert pbx.consultations == {}
    assert not any(n.startswith("Local/102@") for n in pbx.channels)
    assert (await state(ana, world))["consulting"] == {}
    for _ in range(4):  # the target rings and answers: the customer talks to bruno
        await pbx.advance(1)
    await until(
        lambda: key in world.panel.board.agents["bruno"].calls, "bruno to take the customer"
    )
    assert key in world.panel.board.calls


async def test_cancel_brings_the_agent_back_to_the_customer(
    world: Any, pbx: AttendedTransferPbx
) -> None:
    ana = await world.sign_in("ana")
    key = await consulting(world, pbx, ana)
    leg = agent_leg(pbx)
    customer_bridge = next(c.bridge for c in pbx.consultations.values())
    status, body = await post(ana, world, f"/panel/api/calls/{key}/transfer/cancel")
    assert (status, body["action"]) == (200, "transfer_cancel"), body
    (cancel,) = sent(pbx, "CancelAtxfer")
    assert cancel["Channel"] == leg
    assert sent(pbx, "Hangup") == []  # nobody was hung up: the call goes on
    assert pbx.channels[leg].bridge == customer_bridge
    assert key in world.panel.board.agents["ana"].calls
    # free to act on the call again
    status, body = await post(ana, world, f"/panel/api/calls/{key}/hold")
    assert status == 200, body
    status, body = await post(ana, world, f"/panel/api/calls/{key}/transfer/cancel")
    assert (status, body["error"]["id"]) == (409, "no_transfer")


async def test_cancel_without_atxferabort_hangs_up_the_consultation_leg(
    world: Any, pbx: AttendedTransferPbx
) -> None:
    pbx.atxfer_abort = ""  # features.conf without atxferabort: CancelAtxfer is refused
    ana = await world.sign_in("ana")
    key = await consulting(world, pbx, ana)
    local = next(c.local for c in pbx.consultations.values())
    assert local.startswith("Local/102@centralita-transfer-") and local.endswith(";1")
    status, body = await post(ana, world, f"/panel/api/calls/{key}/transfer/cancel")
    assert status == 200, body
    assert len(sent(pbx, "CancelAtxfer")) == 1
    assert [a["Channel"] for a in sent(pbx, "Hangup")] == [local]
    assert pbx.consultations == {} and key in world.panel.board.calls


async def test_the_target_hanging_up_ends_the_consultation_in_the_agents_tab(
    world: Any, pbx: AttendedTransferPbx
) -> None:
    ana = await world.sign_in("ana")
    ws = await ana.ws_connect(world.url("/panel/ws"))
    try:
        key = await consulting(world, pbx, ana)
        pbx.target_hangs_up(agent_leg(pbx))
        messages = []
        while True:
            msg = await ws.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.TEXT, msg
            data = json.loads(msg.data)
            if data["type"] == "controls":
                messages.append(data["data"])
                if data["data"]["consulting"] is None:
                    break
        assert messages == [
            {"call_id": key, "consulting": messages[0]["consulting"], "reason": "started"},
            {"call_id": key, "consulting": None, "reason": "target_left"},
        ]
        assert messages[0]["consulting"]["to"] == "102"
    finally:
        await ws.close()
    assert (await state(ana, world))["consulting"] == {}
    assert sent(pbx, "Hangup") == []


async def test_only_the_agent_on_the_call_completes_or_cancels(
    world: Any, pbx: AttendedTransferPbx
) -> None:
    ana = await world.sign_in("ana")
    bruno = await world.sign_in("bruno")
    key = await consulting(world, pbx, ana, to="103")
    for action in ("complete", "cancel"):
        status, body = await post(bruno, world, f"/panel/api/calls/{key}/transfer/{action}")
        assert (status, body["error"]["id"]) == (403, "not_your_call")
    assert sent(pbx, "Hangup") == [] and sent(pbx, "CancelAtxfer") == []
    assert pbx.consultations
