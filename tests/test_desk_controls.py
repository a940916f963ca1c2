"""The agent's call controls and the supervisors' listen/whisper/barge against the simulated
PBX over real AMI: each button reaches the PBX as the right AMI action on the right channel,
only for the agent's own call, with numbers checked like click-to-call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.sim.pbx import Phone, SimulatedPbx
from tests.test_panel_support import open_world, until


@pytest.fixture
async def world(aiohttp_server: Any, tmp_path: Path, pbx: SimulatedPbx) -> Any:
    gen = open_world(aiohttp_server, tmp_path, pbx_port=pbx.port)
    w = await gen.__anext__()
    link = w.gw.links["sim"]
    await until(lambda: link.health().logged_in, "the AMI link to log in")
    yield w
    await gen.aclose()


def sent(pbx: SimulatedPbx, action: str) -> list[dict[str, str]]:
    return [a for a in pbx.received_actions if a.get("Action") == action]


async def answered_call(world: Any, pbx: SimulatedPbx) -> str:
    """An inbound call ana (101) answered and is talking on; returns its call id."""
    pbx.phones["101"] = Phone(ring=1.0, answer=True)
    key = "sim:" + pbx.start_call("inbound", agent="101", talk_seconds=60)
    for _ in range(3):
        await pbx.advance(1)
    await until(lambda: key in world.panel.board.agents["ana"].calls, "ana to answer")
    return key


def legs(pbx: SimulatedPbx) -> tuple[str, str]:
    agent = next(n for n in pbx.channels if n.startswith("PJSIP/101-"))
    customer = next(n for n in pbx.channels if n.startswith("PJSIP/trunk-"))
    return agent, customer


async def post(session: Any, world: Any, path: str, body: Any = None) -> tuple[int, Any]:
    async with session.post(world.url(path), json=body if body is not None else {}) as r:
        return r.status, await r.json()


async def test_hang_up_reaches_the_pbx_and_ends_the_call(world: Any, pbx: SimulatedPbx) -> None:
    ana = await world.sign_in("ana")
    key = await answered_call(world, pbx)
    agent_leg, _ = legs(pbx)
    status, body = await post(ana, world, f"/panel/api/calls/{key}/hangup")
    assert status == 200, body
    assert [a["Channel"] for a in sent(pbx, "Hangup")] == [agent_leg]
    for _ in range(3):
        await pbx.advance(1)
    await until(lambda: key not in world.panel.board.calls, "the call to end")


async def test_another_agents_call_is_refused(world: Any, pbx: SimulatedPbx) -> None:
    await world.sign_in("ana")
    bruno = await world.sign_in("bruno")
    key = await answered_call(world, pbx)
    for action in ("hangup", "hold"):
        status, body = await post(bruno, world, f"/panel/api/calls/{key}/{action}")
        assert (status, body["error"]["id"]) == (403, "not_your_call")
    status, body = await post(bruno, world, "/panel/api/calls/sim:nope/hangup")
    assert (status, body["error"]["id"]) == (404, "no_live_call")
    assert sent(pbx, "Hangup") == [] and sent(pbx, "Redirect") == []


async def test_blind_transfer_to_an_extension(world: Any, pbx: SimulatedPbx) -> None:
    ana = await world.sign_in("ana")
    key = await answered_call(world, pbx)
    agent_leg, _ = legs(pbx)
    status, body = await post(
        ana, world, f"/panel/api/calls/{key}/transfer", {"to": "102", "mode": "blind"}
    )
    assert status == 200, body
    (action,) = sent(pbx, "BlindTransfer")
    assert (action["Channel"], action["Context"], action["Exten"]) == (
        agent_leg, "centralita-transfer", "102"
    )  # fmt: skip


async def test_attended_transfer_to_a_formatted_number(world: Any, pbx: SimulatedPbx) -> None:
    ana = await world.sign_in("ana")
    key = await answered_call(world, pbx)
    agent_leg, _ = legs(pbx)
    status, body = await post(
        ana,
        world,
        f"/panel/api/calls/{key}/transfer",
        {"to": "+1 (415) 555-0132", "mode": "attended"},
    )
    assert status == 200, body
    (action,) = sent(pbx, "Atxfer")
    assert (action["Channel"], action["Exten"]) == (agent_leg, "+14155550132")


@pytest.mark.parametrize("to", ["600111222&PJSIP/999", "600,20,tT", "${SHELL(id)}", "call me"])
async def test_transfer_refuses_what_click_to_call_refuses(
    world: Any, pbx: SimulatedPbx, to: str
) -> None:
    ana = await world.sign_in("ana")
    key = await answered_call(world, pbx)
    status, body = await post(ana, world, f"/panel/api/calls/{key}/transfer", {"to": to})
    assert (status, body["error"]["id"]) == (400, "invalid_number")
    assert sent(pbx, "BlindTransfer") == []


async def test_transfer_body_is_checked(world: Any, pbx: SimulatedPbx) -> None:
    ana = await world.sign_in("ana")
    key = await answered_call(world, pbx)
    status, body = await post(
        ana, world, f"/panel/api/calls/{key}/transfer", {"to": "102", "mode": "sideways"}
    )
    assert status == 400 and "mode" in body["error"]["message"]


async def test_hold_and_resume(world: Any, pbx: SimulatedPbx) -> None:
    ana = await world.sign_in("ana")
    key = await answered_call(world, pbx)
    agent_leg, customer_leg = legs(pbx)
    status, body = await post(ana, world, f"/panel/api/calls/{key}/hold")
    assert (status, body["held"]) == (200, True)
    (redirect,) = sent(pbx, "Redirect")
    assert (redirect["Channel"], redirect["Context"], redirect["Exten"]) == (
        customer_leg, "centralita-hold", "hold"
    )  # fmt: skip
    assert (redirect["ExtraChannel"], redirect["ExtraExten"]) == (agent_leg, "wait")
    async with ana.get(world.url("/panel/api/state")) as r:
        assert (await r.json())["held"] == [key]
    status, body = await post(ana, world, f"/panel/api/calls/{key}/hold")
    assert (status, body["error"]["id"]) == (409, "already_on_hold")
    status, body = await post(ana, world, f"/panel/api/calls/{key}/resume")
    assert (status, body["held"]) == (200, False)
    (bridge,) = sent(pbx, "Bridge")
    assert (bridge["Channel1"], bridge["Channel2"]) == (agent_leg, customer_leg)
    assert pbx.held == set()


async def test_supervisor_listens_and_the_board_shows_it(world: Any, pbx: SimulatedPbx) -> None:
    ana = await world.sign_in("ana")
    sofia = await world.sign_in("sofia")
    key = await answered_call(world, pbx)
    agent_leg, _ = legs(pbx)
    pbx.phones["100"] = Phone(ring=1.0, answer=True)
    status, body = await post(sofia, world, "/panel/api/spy", {"agent": "ana", "mode": "whisper"})
    assert status == 200, body
    await until(lambda: sent(pbx, "Originate"), "the Originate to reach the PBX")
    (orig,) = sent(pbx, "Originate")
    assert (orig["Channel"], orig["Context"], orig["Exten"]) == (
        "PJSIP/100", "centralita-spy", "whisper"
    )  # fmt: skip
    assert orig["Variable"] == f"CENTRALITA_SPY={agent_leg}"
    async with sofia.get(world.url("/panel/api/board")) as r:
        board = {a["username"]: a for a in (await r.json())["agents"]}
    assert board["ana"]["spy"] == {"by": "sofia", "mode": "whisper"}
    async with ana.get(world.url("/panel/api/state")) as r:
        assert (await r.json())["presence"]["spy"]["mode"] == "whisper"  # the agent sees it
    await pbx.advance(1.5)
    await until(lambda: pbx.spies and world.panel.controls.spies, "the supervisor to answer")
    (spyer,) = pbx.spies
    pbx.end_spy(spyer)  # the supervisor hangs up
    await until(lambda: world.panel.board.agents["ana"].spied_by is None, "the spy to end")
    assert key in world.panel.board.calls  # the agent's call goes on


async def test_agents_cannot_listen_in(world: Any, pbx: SimulatedPbx) -> None:
    await world.sign_in("ana")
    bruno = await world.sign_in("bruno")
    await answered_call(world, pbx)
    status, body = await post(bruno, world, "/panel/api/spy", {"agent": "ana", "mode": "listen"})
    assert (status, body["error"]["id"]) == (403, "forbidden")
    assert sent(pbx, "Originate") == []


async def test_call_back_on_a_number_with_brackets(world: Any, pbx: SimulatedPbx) -> None:
    ana = await world.sign_in("ana")
    status, body = await post(ana, world, "/panel/api/originate", {"number": "+1 (415) 555-0132"})
    assert status == 200, body
    await until(lambda: sent(pbx, "Originate"), "the Originate to reach the PBX")
    assert sent(pbx, "Originate")[0]["Exten"] == "+14155550132"


@pytest.mark.parametrize("raw", ["(415) 555-0132 !", "+1 (415) 555?0132"])
def test_one_message_about_what_a_number_may_contain(raw: str) -> None:
    from gateway.errors import InvalidNumber
    from gateway.lookup.numbers import ALLOWED_CHARACTERS, dial_safe, normalize

    messages = []
    for check in (dial_safe, lambda r: normalize(r, "US")):
        with pytest.raises(InvalidNumber) as e:
            check(raw)
        messages.append(str(e.value))
    assert all(ALLOWED_CHARACTERS in m and "not allowed" not in m for m in messages), messages
