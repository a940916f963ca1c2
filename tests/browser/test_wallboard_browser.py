"""The wallboard in a real Chromium: TV mode (large type, no controls) with every agent's time in
state counting up, in Spanish and in English; and a supervisor's Listen reaching the agent's
desk as "a supervisor is listening" (ChanSpy on the simulated PBX), gone when they hang up."""

from __future__ import annotations

import time
from typing import Any

import pytest

from gateway.ami.events import AmiEvent
from gateway.panel.wallboard_feed import FEED
from gateway.sim.pbx import SimulatedPbx
from gateway.sim.state import Phone
from tests.browser.test_panel_browser import ARTIFACTS
from tests.browser.test_panel_desk import CATALOGS, _english_on_screen, _sign_in
from tests.browser.test_panel_features import _answered_call, _context, _spanish_on_screen
from tests.test_panel_support import until

pytestmark = pytest.mark.browser

TIME_IN_STATE = "#wallboard-agents tr[data-agent='{}'] td:nth-of-type(2)"


def _ami(world: Any, at: float, **frame: str) -> None:
    world.gw.bus.publish(AmiEvent("sim", {**frame, "Timestamp": f"{at:.6f}"}, at))


def _queue_now(world: Any) -> None:
    """ana (101) takes a queue call now, bruno (102) waits for one: the server's clock is the
    wall clock, so their time in state starts at zero."""
    now = time.time()
    for ext in ("101", "102"):
        _ami(world, now - 1, Event="QueueMemberStatus", Queue="ventas", MemberName=f"Agent {ext}",
             Interface=f"PJSIP/{ext}", Status="1", Paused="0")  # fmt: skip
    _ami(world, now - 1, Event="QueueCallerJoin", Queue="ventas", Uniqueid="u1")
    _ami(world, now, Event="QueueCallerLeave", Queue="ventas", Uniqueid="u1")
    _ami(world, now, Event="AgentConnect", Queue="ventas", Uniqueid="u1",
         Interface="PJSIP/101", MemberName="Agent 101", HoldTime="1")  # fmt: skip


async def _counts_up(world: Any, page: Any, agent: str) -> None:
    """The agent's time in state moves on its own (the feed's push loop is stopped)."""
    cell = page.locator(TIME_IN_STATE.format(agent))
    first = await cell.text_content()
    assert first is not None and first.endswith(" s")
    await page.wait_for_function(
        "([sel, first]) => { const el = document.querySelector(sel);"
        " return el && el.textContent !== first && parseInt(el.textContent) > parseInt(first); }",
        arg=[TIME_IN_STATE.format(agent), first],
    )
    assert world.server.app[FEED].pushes == 0


async def _tv(page: Any) -> None:
    """Large type, and nothing to press or tab to: a wall screen."""
    await page.wait_for_selector("body.tv #wallboard-queues tr[data-queue='ventas']")
    assert await page.locator(".sidebar").is_hidden()
    assert (
        await page.locator("button:visible, a:visible, input:visible, select:visible").count() == 0
    )
    assert await page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)") >= 24
    assert (
        await page.evaluate(
            "parseFloat(getComputedStyle(document.querySelector('#wallboard-agents td')).fontSize)"
        )
        >= 24
    )


async def test_tv_mode_counts_time_in_state_up_in_spanish_and_english(
    browser: Any, world: Any
) -> None:
    feed = world.server.app[FEED]
    await feed.stop()  # no pushes: whatever moves on the screen moves in the browser
    feed.attach()
    await world.sign_in("ana")
    _queue_now(world)
    spanish = await _context(browser, "es-ES")
    page = await _sign_in(spanish, world, "sofia")
    await page.goto(world.url("/panel/#wallboard?tv=1"))
    await _tv(page)
    ana = page.locator("#wallboard-agents tr[data-agent='ana']")
    bruno = page.locator("#wallboard-agents tr", has_text="Bruno Silva")
    assert "En llamada" in await ana.text_content()
    assert "Disponible" in await bruno.text_content()
    headers = await page.locator("#wallboard-agents thead th").all_text_contents()
    assert headers == ["Agente", "Estado", "Tiempo en el estado", "Colas"]  # no actions column
    await _counts_up(world, page, "ana")
    assert await _english_on_screen(page) == []
    await page.screenshot(path=str(ARTIFACTS / "wallboard-tv-time-es.png"), full_page=True)
    await spanish.close()

    english = await _context(browser, "en-GB")
    page = await _sign_in(english, world, "sofia")
    await page.goto(world.url("/panel/#wallboard?tv=1"))
    await _tv(page)
    assert "On a call" in await ana_row(page).text_content()
    headers = await page.locator("#wallboard-agents thead th").all_text_contents()
    assert headers == ["Agent", "State", "Time in state", "Queues"]
    await _counts_up(world, page, "ana")
    assert await _spanish_on_screen(page) == []
    await page.screenshot(path=str(ARTIFACTS / "wallboard-tv-time-en.png"), full_page=True)
    await english.close()


def ana_row(page: Any) -> Any:
    return page.locator("#wallboard-agents tr[data-agent='ana']")


async def test_the_agent_sees_that_a_supervisor_listens(
    browser: Any, world: Any, pbx: SimulatedPbx
) -> None:
    agent_context = await _context(browser, "es-ES")
    desk = await _sign_in(agent_context, world, "ana")
    await _answered_call(world, pbx, desk)
    note = desk.locator("#spy-note")
    assert await note.is_hidden()

    boss_context = await _context(browser, "es-ES")
    board = await _sign_in(boss_context, world, "sofia")
    await board.click(".nav-item[data-view='wallboard']")
    pbx.phones["100"] = Phone(ring=1.0, answer=True)  # the supervisor's phone picks up
    await ana_row(board).get_by_role("button", name="Escuchar: Ana García").click()
    await note.wait_for(state="visible")
    assert await note.text_content() == CATALOGS["es"]["spy.agent_note"].replace(
        "{mode}", "Escuchar"
    )
    # the supervisors see it too, by name
    await ana_row(board).locator(".spy-badge", has_text="Escucha: Sofía Martín").wait_for()
    await desk.screenshot(path=str(ARTIFACTS / "desk-listened-es.png"), full_page=True)

    await pbx.advance(1.5)
    await until(lambda: pbx.spies and world.panel.controls.spies, "the supervisor to answer")
    (spyer,) = pbx.spies
    pbx.end_spy(spyer)  # the supervisor hangs up: the agent is told at once
    await note.wait_for(state="hidden")
    await ana_row(board).locator(".spy-badge").wait_for(state="detached")
    await agent_context.close()
    await boss_context.close()
