"""The supervisors' reports page in a real Chromium (issue 14): a supervisor opens the reports,
changes the range and the queue and sees the charts and figures change, downloads the XLSX and
reads it back; axe-core finds nothing serious in Spanish or English; screenshots of both go to
tests/artifacts/. Agents have no reports page."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from gateway.store.calllog import CallLog
from tests.browser.test_panel_browser import ARTIFACTS
from tests.browser.test_panel_desk import _axe, _axe_source, _sign_in
from tests.browser.test_panel_features import _to_english
from tests.test_panel_support import PanelWorld, open_world

pytestmark = pytest.mark.browser
MADRID = ZoneInfo("Europe/Madrid")


@pytest.fixture
async def report_world(aiohttp_server: Any, tmp_path: Path) -> AsyncIterator[PanelWorld]:
    gen = open_world(aiohttp_server, tmp_path)
    world = await gen.__anext__()
    today = datetime.now(MADRID).replace(hour=10, minute=0, second=0, microsecond=0)
    log = CallLog(world.gw.db)  # type: ignore[arg-type]
    # today: 3 calls to sales (2 answered), 2 to support (1 answered); three days ago: 4 more
    # to sales, all answered. The agent's name is hostile: it must show as text.
    calls = [(today, "sales", "101"), (today, "sales", "101"), (today, "sales", ""),
             (today, "support", "102"), (today, "support", "")]  # fmt: skip
    calls += [(today - timedelta(days=3), "sales", "102")] * 4
    for n, (day, queue, by) in enumerate(calls):
        at = day.timestamp() + n * 300
        await log.save({
            "id": f"lab:{n}", "pbx": "lab", "linkedid": str(n), "direction": "inbound",
            "caller": "+34911234567", "did": "+34910000000", "queue": queue,
            "agents_rang": ["101", "102"], "answered_by": by,
            "outcome": "answered" if by else "abandoned",
            "started_at": at, "answered_at": at + 8 if by else None, "ended_at": at + 120,
            "talk_seconds": 112.0 if by else 0.0,
        })  # fmt: skip
    yield world
    await gen.aclose()


async def _madrid_context(browser: Any, locale: str) -> Any:
    """A browser in the panel's time zone, so its "today" is the day the calls were made."""
    context = await browser.new_context(
        locale=locale, timezone_id="Europe/Madrid", viewport={"width": 1280, "height": 900}
    )
    source = _axe_source()
    await context.route(
        "**/panel/assets/axe.min.js",
        lambda route: route.fulfill(body=source, content_type="text/javascript"),
    )
    return context


async def _desc(page: Any, chart: str) -> str:
    await page.locator(f"#reports-{chart}[data-loaded='true'] svg").wait_for()
    return str(await page.locator(f"#reports-{chart} svg desc").text_content())


async def _settled(page: Any) -> None:
    """Every chart of the page drawn (none failed), and the page at its top."""
    await page.locator("#view-reports:not([aria-busy])").wait_for()
    for chart in ("calls", "heatmap", "agents", "dispositions", "funnel"):
        await page.locator(f"#reports-{chart}[data-loaded]").wait_for()
        assert await page.locator(f"#reports-{chart}").get_attribute("data-loaded") == "true", chart
    await page.evaluate("window.scrollTo(0, 0)")


async def test_supervisor_changes_range_and_queue_sees_charts_change_and_downloads_xlsx(
    browser: Any, report_world: PanelWorld
) -> None:
    world = report_world
    found: list[str] = []
    context = await _madrid_context(browser, "es-ES")
    page = await _sign_in(context, world, "sofia")
    await page.click(".nav-item[data-view='reports']")
    await _settled(page)
    # the last 7 days: all 9 calls
    assert "9 llamadas recibidas" in await _desc(page, "calls")
    assert (
        await page.locator("#reports-tiles [data-figure='offered'] .tile-value").text_content()
        == "9"
    )
    found += await _axe(page, "reports es")
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "reports-es.png"), full_page=True)

    # today only: 5 calls, 3 answered
    await page.select_option("#reports-preset", "today")
    await page.locator("#reports-range[data-offered='5']").wait_for()
    await _settled(page)
    assert "5 llamadas recibidas, 3 atendidas, 2 perdidas" in await _desc(page, "calls")

    # then the support queue: 2 calls, 1 answered; the picker lists the queues with calls
    assert set(await page.locator("#reports-queue option").all_inner_texts()) >= {
        "sales",
        "support",
    }
    await page.select_option("#reports-queue", "support")
    await page.locator("#reports-range[data-offered='2']").wait_for()
    await _settled(page)
    assert "2 llamadas recibidas, 1 atendidas, 1 perdidas" in await _desc(page, "calls")
    assert "2 llamadas perdidas" not in await _desc(page, "heatmap")
    assert "1 llamadas perdidas" in await _desc(page, "heatmap")

    # the XLSX of what is on screen
    async with page.expect_download() as info:
        await page.click("#reports-calls-xlsx")
    download = await info.value
    assert download.suggested_filename.endswith(".xlsx")
    data = await asyncio.to_thread(Path(await download.path()).read_bytes)
    book = openpyxl.load_workbook(io.BytesIO(data))
    ws = book["Llamadas"]
    headers = [c.value for c in ws[1]]
    total = next(
        r for r in ws.iter_rows(min_row=2, values_only=True) if r[headers.index("Grupo")] == "Total"
    )
    assert total[headers.index("Recibidas")] == 2 and total[headers.index("Atendidas")] == 1
    about = {r[0]: r[1] for r in book["Consulta"].iter_rows(values_only=True) if r[0]}
    assert about["Cola"] == "support"

    # English: the same page, its words and numbers
    await page.select_option("#reports-queue", "")
    await page.select_option("#reports-preset", "last7")
    await _to_english(page)
    await page.click(".nav-item[data-view='reports']")
    await _settled(page)
    assert "9 calls offered" in await _desc(page, "calls")
    assert await page.locator("#reports-table caption").text_content() == "Calls in the period"
    found += await _axe(page, "reports en")
    await page.screenshot(path=str(ARTIFACTS / "reports-en.png"), full_page=True)
    await context.close()
    assert found == []


async def test_agents_have_no_reports_page(browser: Any, report_world: PanelWorld) -> None:
    context = await _madrid_context(browser, "en-GB")
    page = await _sign_in(context, report_world, "ana")
    assert await page.locator(".nav-item[data-view='reports']").is_hidden()
    await context.close()
