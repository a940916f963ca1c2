"""What the desk must not lose to a reload (F5, a crashed tab): the wrap-ups the agent still
owes, with the call they belong to and what was typed into them, and a pause chosen during a
call that waits for the call's end."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.browser.test_panel_desk import _sign_in
from tests.browser.test_panel_features import _context
from tests.test_panel_support import answered, ended, ringing

pytestmark = pytest.mark.browser


def _call(world: Any, linkedid: str, caller: str, end: bool = True) -> None:
    world.gw.bus.publish(ringing(linkedid, ("101",), caller=caller))
    world.gw.bus.publish(answered(linkedid, "101", caller=caller))
    if end:
        world.gw.bus.publish(ended(linkedid, ["101"], "101", caller=caller))


async def _reload(page: Any) -> None:
    await page.reload()
    await page.wait_for_selector("body[data-socket='live']")


async def _pending_rows(world: Any) -> list[str]:
    rows = await world.gw.db.conn.execute_fetchall(
        "SELECT call_id FROM pending_wrapups WHERE username = 'ana' ORDER BY ended_at, call_id"
    )
    return [r["call_id"] for r in rows]


async def _rows_settle(world: Any, count: int) -> None:
    """The rows are written by a task the call's end starts; poll the table itself."""
    for _ in range(500):
        if len(await _pending_rows(world)) == count:
            return
        await asyncio.sleep(0.01)
    assert len(await _pending_rows(world)) == count


async def test_a_reload_keeps_the_pending_wrap_ups_with_their_calls_and_notes(
    browser: Any, world: Any
) -> None:
    context = await _context(browser, "en-GB")
    page = await _sign_in(context, world)
    for i in range(5):
        _call(world, f"r{i}", f"+3460022200{i}")
    newest = page.locator(".popup[data-call-id='sim:r4'][data-state='ended']")
    await newest.locator(".wrapup").wait_for()
    await newest.locator("textarea.notes").fill("Wants a callback about the invoice")
    await newest.locator("[data-disposition='interested']").click()
    await _rows_settle(world, 5)

    await _reload(page)
    back = page.locator(".popup[data-call-id='sim:r4'][data-state='ended']")
    await back.locator(".wrapup").wait_for()
    assert "+34600222004" in await back.locator(".caller-title").text_content()
    assert "talked" in await back.locator(".status-text").text_content()
    assert await back.locator("textarea.notes").input_value() == (
        "Wants a callback about the invoice"
    )
    assert (
        await back.locator("[data-disposition='interested']").get_attribute("aria-checked")
        == "true"
    )
    # the newest three as cards, the two older ones in the pending list
    assert await page.locator(".popup[data-state='ended'] .wrapup").count() == 3
    parked = page.locator("#parked")
    await parked.wait_for()
    assert "2 wrap-ups pending" in await parked.text_content()
    assert await parked.locator("li[data-call-id='sim:r0']").count() == 1

    await back.get_by_role("button", name="Save").click()
    await back.locator(".wrapup.saved").wait_for()
    # the save answers after the row is gone (same request): nothing to wait for
    assert await _pending_rows(world) == ["sim:r0", "sim:r1", "sim:r2", "sim:r3"]

    await _reload(page)  # the saved one does not come back; the others do
    await page.locator(".popup[data-call-id='sim:r3'] .wrapup").wait_for()
    assert await page.locator(".popup[data-call-id='sim:r4']").count() == 0
    await parked.locator("li[data-call-id='sim:r0'] button").click()
    await page.locator(".popup[data-call-id='sim:r0'] .wrapup").wait_for()
    await context.close()


async def test_a_pause_chosen_during_a_call_is_still_pending_after_a_reload(
    browser: Any, world: Any
) -> None:
    context = await _context(browser, "es-ES")
    page = await _sign_in(context, world)
    _call(world, "p1", "+34600333111", end=False)
    await page.locator(".popup[data-call-id='sim:p1'][data-state='answered']").wait_for()
    await page.click("#presence-button")
    await page.click("#presence-menu [data-status='paused']")
    note = page.locator("#presence-note")
    await page.wait_for_function(
        "() => document.getElementById('presence-note').textContent.includes('al terminar')"
    )
    before = await note.text_content()
    assert "En pausa al terminar esta llamada" in before, before

    await _reload(page)
    await page.wait_for_function(
        "() => document.getElementById('presence-note').textContent.includes('al terminar')"
    )
    assert await note.text_content() == before
    assert await page.get_attribute("#presence", "data-status") == "on_call"

    world.gw.bus.publish(ended("p1", ["101"], "101", caller="+34600333111"))
    # the call's end starts the after-call work; the pause still waits, said so
    await page.locator("#presence[data-status='after_call_work']").wait_for()
    assert "En pausa al terminar" in await note.text_content()
    await context.close()
