"""Customer metrics where an agent reads them, in a real Chromium: the few that matter on the
ringing pop-up (segment, value, churn risk, data quality, next step) and all of them on the
record view, with the reasons, in Spanish and in English, numbers and money as each reader
writes them. Screenshots in tests/artifacts/ (insight-*.png)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from gateway.intel.api import INTEL
from gateway.store.models import PersonType
from tests.browser.test_panel_browser import ARTIFACTS
from tests.browser.test_panel_desk import CATALOGS, _axe, _english_on_screen, _sign_in
from tests.browser.test_panel_features import _context, _to_english
from tests.test_panel_support import API_TOKEN, ringing

pytestmark = pytest.mark.browser
DAY = 86400.0
MADRID = ZoneInfo("Europe/Madrid")  # the panel's zone: the day a purchase was made there
MONTHS_ES = ["ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sept", "oct", "nov", "dic"]
CARD = ("rfm_segment", "clv_historic", "churn_30", "data_quality", "next_best")


async def _customer(world: Any) -> int:
    """Lucía, who bought 3 times in the last year for 12,500 € in all, the last a month ago."""
    person = (
        await world.panel.people.create(
            PersonType.CONTACT,
            {"first_name": "Lucía", "last_name": "Martín", "company": "Acme Renovables",
             "phones": ["+34911234567"], "emails": ["lucia@acme.example"], "country": "ES",
             "owner": "ana"},
        )
    ).person  # fmt: skip
    now = time.time()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_TOKEN}"}) as s:
        for n, (amount, days) in enumerate([(5000, 300), (4500, 150), (3000, 30)]):
            body = {
                "person_id": person.id,
                "title": f"Pedido {n + 1}",
                "amount": amount,
                "currency": "EUR",
                "closed_at": now - days * DAY,
                "external_id": f"shop:{n}",
            }
            async with s.post(world.url("/api/v1/deals"), json=body) as r:
                assert r.status == 201, await r.text()
    await world.server.app[INTEL].settled()
    return person.id


async def _metric(scope: Any, name: str) -> tuple[str, str, str]:
    row = scope.locator(f".insight [data-metric='{name}']")
    return (
        (await row.locator("dt").text_content() or "").strip(),
        (await row.locator(".insight-value").text_content() or "").strip(),
        (await row.locator(".insight-reason").text_content() or "").strip(),
    )


async def test_metrics_on_the_pop_up_and_the_record_in_both_languages(
    browser: Any, world: Any
) -> None:
    pid = await _customer(world)
    es, en = CATALOGS["es"], CATALOGS["en"]
    context = await _context(browser)
    page = await _sign_in(context, world)
    found: list[str] = []

    world.gw.bus.publish(ringing("i1", ("101",)))
    popup = page.locator(".popup[data-state='ringing']")
    await popup.locator(".insight").wait_for()
    names = await popup.locator(".insight [data-metric]").evaluate_all(
        "els => els.map(e => e.dataset.metric)"
    )
    assert names == list(CARD)  # the few that matter, in that order
    title, value, reason = await _metric(popup, "clv_historic")
    assert (title, value) == (es["intel.metric.clv_historic"], "12.500\xa0€")
    assert reason == "Todo lo comprado hasta hoy: 12.500\xa0€."
    title, value, _ = await _metric(popup, "rfm_segment")
    assert title == es["intel.metric.rfm_segment"] and value in {
        v for k, v in es.items() if k.startswith("intel.segment.")
    }
    assert await _english_on_screen(page) == []
    found += await _axe(page, "pop-up with metrics es")
    await page.screenshot(path=str(ARTIFACTS / "insight-popup-es.png"), full_page=True)

    await page.click(".nav-item[data-view='search']")
    await page.locator("#search-q").fill("911 23 45 67")
    await page.locator("#search-form button[type='submit']").click()
    await page.locator(f"#search-results li[data-person-id='{pid}'] .result-name").click()
    record = page.locator("#record-insight")
    await record.locator(".insight [data-metric]").first.wait_for()
    all_names = await record.locator(".insight [data-metric]").evaluate_all(
        "els => els.map(e => e.dataset.metric)"
    )
    assert set(CARD) < set(all_names) and {"recency", "frequency", "monetary"} <= set(all_names)
    _, value, reason = await _metric(record, "frequency")
    first = datetime.fromtimestamp(time.time() - 300 * DAY, MADRID)
    assert (
        value == "3"
        and reason == f"3 compras desde el {first.day} {MONTHS_ES[first.month - 1]} {first.year}."
    )
    assert (await _metric(record, "monetary"))[1] == "12.500\xa0€"
    assert (await _metric(record, "recency"))[0] == es["intel.metric.recency"]
    found += await _axe(page, "record with metrics es")
    await page.screenshot(path=str(ARTIFACTS / "insight-record-es.png"), full_page=True)

    await _to_english(page)
    await page.click(".nav-item[data-view='search']")
    await record.locator(".insight-value").first.wait_for()
    assert (await _metric(record, "monetary"))[:2] == (en["intel.metric.monetary"], "€12,500")
    title, value, _ = await _metric(record, "next_best")
    assert title == en["intel.metric.next_best"] and value in {
        v for k, v in en.items() if k.startswith("intel.action.")
    }
    found += await _axe(page, "record with metrics en")
    await page.screenshot(path=str(ARTIFACTS / "insight-record-en.png"), full_page=True)
    assert found == []
    await context.close()
