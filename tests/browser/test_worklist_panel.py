"""The worklist's best hour in a real Chromium: two leads with the same score, one who answers
at this very hour and one who answers three hours from now; the first is listed first with a
"now" mark, each shows its hour, in Spanish and English, checked with axe-core."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.intel.api import INTEL
from gateway.store.calllog import CallLog
from gateway.store.models import PersonType
from tests.browser.test_panel_browser import ARTIFACTS
from tests.browser.test_panel_desk import _axe, _english_on_screen, _sign_in
from tests.browser.test_panel_features import _context, _spanish_on_screen, _to_english

pytestmark = pytest.mark.browser

MADRID = ZoneInfo("Europe/Madrid")  # the panel's zone (PanelSettings' default)


async def _leads(world: Any) -> tuple[int, int, int]:
    """(later's id, now's id, the hour now): leads scored alike; calls answered on the two days
    before at this hour (now) and at three hours from it (later)."""
    now = datetime.now(MADRID)
    if now.minute == 59 and now.second > 30:  # do not let the hour turn during the test
        await asyncio.sleep(61 - now.second)
        now = datetime.now(MADRID)
    ids = []
    log = CallLog(world.gw.db)
    for n, (name, number, hour) in enumerate(
        [("Luis", "+34600000101", (now.hour + 3) % 24), ("Ahora", "+34600000102", now.hour)]
    ):
        person = (
            await world.panel.people.create(
                PersonType.LEAD,
                {"first_name": name, "last_name": "Prueba", "phones": [number], "status": "new",
                 "score": 7.0, "owner": "ana", "country": "ES"},
            )
        ).person  # fmt: skip
        ids.append(person.id)
        for days in (1, 2):
            start = (now - timedelta(days=days)).replace(hour=hour, minute=5).timestamp()
            assert await log.save({
                "id": f"bh:{n}:{days}", "pbx": "sim", "linkedid": f"bh{n}{days}",
                "direction": "outbound", "caller": "101", "dialed": number,
                "outcome": "answered", "started_at": start, "answered_at": start + 5,
                "ended_at": start + 65,
            })  # fmt: skip
    await world.server.app[INTEL].recompute_many(ids)
    return ids[0], ids[1], now.hour


async def test_the_worklist_shows_each_leads_best_hour_and_puts_now_first(
    browser: Any, world: Any
) -> None:
    later, now_id, hour = await _leads(world)
    found: list[str] = []
    context = await _context(browser)
    page = await _sign_in(context, world)
    await page.click(".nav-item[data-view='worklist']")
    rows = page.locator("#worklist-table tbody tr")
    await rows.first.wait_for()
    # same score: the one whose best hour is now comes first (by id it would come second)
    assert await rows.nth(0).get_attribute("data-person-id") == str(now_id)
    assert await rows.nth(1).get_attribute("data-person-id") == str(later)
    first = rows.nth(0).locator(".best-hour")
    assert await first.get_attribute("data-now") == "true"
    assert f"{hour:02d}:00" in await first.text_content()
    assert await first.locator(".best-now").text_content() == "ahora"
    assert "Contesta el 100 % de las veces a esta hora" in await first.get_attribute("title")
    second = rows.nth(1).locator(".best-hour")
    assert await second.get_attribute("data-now") == "false"
    assert f"{(hour + 3) % 24:02d}:00" in await second.text_content()
    assert await page.locator("#worklist-table th", has_text="Mejor hora").count() == 1
    assert await _english_on_screen(page) == []
    found += await _axe(page, "worklist best hour es")
    await page.screenshot(path=str(ARTIFACTS / "worklist-best-hour-es.png"), full_page=True)

    await _to_english(page)
    await page.click(".nav-item[data-view='worklist']")
    await page.locator("#worklist-table th", has_text="Best hour").wait_for()
    assert await page.locator("#worklist-table .best-now").first.text_content() == "now"
    assert await _spanish_on_screen(page) == []
    found += await _axe(page, "worklist best hour en")
    await page.screenshot(path=str(ARTIFACTS / "worklist-best-hour-en.png"), full_page=True)
    await context.close()
    assert found == []
