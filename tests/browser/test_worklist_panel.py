"""The worklist in a real Chromium, in Spanish and English, checked with axe-core:

* the best hour: two leads with the same score, one who answers at this very hour and one who
  answers three hours from now; the first is listed first with a "now" mark;
* the customer metrics: each row's segment (with its value), churn risk and next step, or why
  there is none; the segment and next-step filters change the list, and the order by churn
  risk puts the customer about to leave first.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.intel.api import INTEL, DealInput, save_deal
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


DAY = 86400.0


async def _customers(world: Any) -> dict[str, int]:
    """Three leads whose metrics the intel service computes from their purchases (whole days
    plus an hour ago): Rosa bought every 60 days and not for 200 days (at risk, 100 % churn
    risk: call back); Nadia never bought (a prospect, a new lead: call); Carla bought every 30
    days, the last 5 days ago (a champion, no risk, nothing urgent). Scores put Nadia first."""
    now = time.time()
    db = world.gw.db
    ids = {}
    for name, number, score, won in [
        ("Rosa", "+34600000201", 5.0, [(200, 500.0), (260, 500.0), (320, 500.0)]),
        ("Nadia", "+34600000202", 9.0, []),
        ("Carla", "+34600000203", 8.0, [(d, 200.0) for d in (5, 35, 65, 95, 125)]),
    ]:
        person = (
            await world.panel.people.create(
                PersonType.LEAD,
                {"first_name": name, "last_name": "Cliente", "phones": [number],
                 "status": "contacted", "score": score, "owner": "ana", "country": "ES"},
            )
        ).person  # fmt: skip
        ids[name] = person.id
        for days, amount in won:
            deal = DealInput(
                title=f"{name} {days}",
                amount=amount,
                person_id=person.id,
                closed_at=now - days * DAY - 3600,
            )
            await save_deal(db, deal, tz=MADRID, region="ES", by="test", now=now)
    assert await world.server.app[INTEL].recompute_many(ids.values()) == 3
    return ids


async def test_the_worklist_shows_and_filters_by_segment_churn_risk_and_next_step(
    browser: Any, world: Any
) -> None:
    ids = await _customers(world)
    found: list[str] = []
    context = await _context(browser)
    page = await _sign_in(context, world)
    await page.click(".nav-item[data-view='worklist']")
    rows = page.locator("#worklist-table tbody tr")
    await rows.first.wait_for()

    async def listed() -> list[int]:
        return [int(i) for i in await rows.evaluate_all("rs => rs.map(r => r.dataset.personId)")]

    def row(name: str) -> Any:
        return page.locator(f"#worklist-table tr[data-person-id='{ids[name]}']")

    async def shown(name: str, metric: str, part: str = ".metric-value") -> str:
        """What the cell shows (its reason is for the tooltip and screen readers)."""
        cell = row(name).locator(f"[data-metric='{metric}'] {part}")
        return str(await cell.inner_text()).replace("\xa0", " ")

    assert await listed() == [ids["Nadia"], ids["Carla"], ids["Rosa"]]  # by score
    for header in ("Segmento", "Riesgo de abandono", "Siguiente paso"):
        assert await page.locator("#worklist-table th", has_text=header).count() == 1
    assert await shown("Rosa", "rfm_segment") == "En riesgo"
    assert await shown("Rosa", "rfm_segment", ".metric-money") == "1500 €"
    assert await shown("Rosa", "churn_30", ".badge.risk-high") == "100 % · Alto"
    assert await shown("Rosa", "next_best") == "Devolver la llamada"
    assert await shown("Nadia", "rfm_segment") == "Potencial"
    assert await row("Nadia").locator(".metric-money").count() == 0  # nothing bought
    # no purchase: no figure, and the reason instead (on hover, and read by screen readers)
    assert await shown("Nadia", "churn_30") == "—"
    churn = row("Nadia").locator("[data-metric='churn_30']")
    assert await churn.get_attribute("title") == "Todavía no ha comprado."
    assert "Todavía no ha comprado." in await churn.locator(".sr-only").text_content()
    assert await shown("Carla", "churn_30", ".badge.risk-low") == "0 % · Bajo"
    assert await _english_on_screen(page) == []
    found += await _axe(page, "worklist metrics es")
    await page.screenshot(path=str(ARTIFACTS / "worklist-metrics-es.png"), full_page=True)

    async def choose(name: str, value: str, expected: list[str]) -> None:
        await page.select_option(f"#worklist-filters select[name='{name}']", value)
        want = [ids[n] for n in expected]
        await page.wait_for_function(
            "want => JSON.stringify([...document.querySelectorAll('#worklist-table tbody tr')]"
            ".map(r => Number(r.dataset.personId))) === JSON.stringify(want)",
            arg=want,
        )
        assert await listed() == want

    # customers drifting away: only Rosa; then nobody among those with nothing urgent to do
    await choose("rfm_segments", "at_risk,about_to_sleep,hibernating", ["Rosa"])
    await page.select_option("#worklist-filters select[name='next_best']", "no_action")
    await page.locator(
        "#worklist-table tbody td", has_text="Ningún lead cumple estos filtros."
    ).wait_for()
    await choose("rfm_segments", "", ["Carla"])
    await choose("next_best", "call_back", ["Nadia", "Rosa"])
    await choose("sort", "-churn_risk", ["Rosa", "Nadia"])
    await choose("next_best", "", ["Rosa", "Carla", "Nadia"])
    found += await _axe(page, "worklist filtered es")
    await page.screenshot(path=str(ARTIFACTS / "worklist-churn-es.png"), full_page=True)

    await _to_english(page)
    await page.click(".nav-item[data-view='worklist']")
    await page.locator("#worklist-table th", has_text="Churn risk").wait_for()
    assert await page.locator("#worklist-filters", has_text="Highest churn risk first").count() == 1
    await choose("sort", "-value", ["Rosa", "Carla", "Nadia"])
    assert await shown("Rosa", "churn_30") == "100% · High"
    assert await shown("Nadia", "next_best") == "Call back"
    await choose("rfm_segments", "champions", ["Carla"])
    assert await _spanish_on_screen(page) == []
    await choose("rfm_segments", "", ["Rosa", "Carla", "Nadia"])
    found += await _axe(page, "worklist metrics en")
    await page.screenshot(path=str(ARTIFACTS / "worklist-metrics-en.png"), full_page=True)
    await context.close()
    assert found == []
