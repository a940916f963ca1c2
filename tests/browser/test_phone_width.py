"""Every view of the panel on a phone (390 x 844, the size of a common phone): nothing wider
than the screen, so nothing needs sideways scrolling and no button is cut off. Checked with a
live call on the desk (its controls, an attended transfer's buttons, a supervisor listening),
the worklist, the contact search and a record, and (for a supervisor) the wallboard."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.sim.pbx import SimulatedPbx
from gateway.sim.state import Phone
from tests.browser.test_panel_browser import ARTIFACTS
from tests.browser.test_panel_desk import _lucia
from tests.browser.test_panel_features import _answered_call
from tests.test_panel_support import PASSWORD

pytestmark = pytest.mark.browser
PHONE = {"width": 390, "height": 844}

# what sticks out past the right edge, to say what to fix when the check fails
OVERFLOW = """() => {
  const width = window.innerWidth;
  const out = [];
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (r.width && r.right > width + 0.5 && getComputedStyle(el).position !== 'fixed') {
      out.push(`${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}.${[...el.classList].join('.')} right=${Math.round(r.right)}`);
    }
  }
  return { scroll: document.documentElement.scrollWidth, inner: width, out: out.slice(0, 8) };
}"""


async def _fits(page: Any, where: str, shots: bool = True) -> list[str]:
    m = await page.evaluate(OVERFLOW)
    if shots:
        await page.screenshot(path=str(ARTIFACTS / f"phone-{where}.png"), full_page=True)
    if m["scroll"] <= m["inner"]:
        return []
    return [f"{where}: {m['scroll']}px wide on a {m['inner']}px screen: {m['out']}"]


async def _phone(browser: Any, world: Any, username: str) -> Any:
    ARTIFACTS.mkdir(exist_ok=True)
    context = await browser.new_context(locale="es-ES", viewport=PHONE, has_touch=True)
    page = await context.new_page()
    await page.goto(world.url("/panel/login"))
    await page.wait_for_selector("body[data-lang]")
    problems = await _fits(page, "login")
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("#login-button")
    await page.wait_for_selector("body[data-socket='live']")
    page.problems = problems
    return page


async def _view(page: Any, view: str) -> None:
    await page.evaluate("(v) => { window.location.hash = v; }", view)
    await page.wait_for_selector(f"body[data-view='{view}']")


async def test_every_view_fits_a_phone_screen(browser: Any, world: Any, pbx: SimulatedPbx) -> None:
    lead = await _lucia(world)
    page = await _phone(browser, world, "ana")
    problems: list[str] = page.problems
    problems += await _fits(page, "desk-empty")
    await _answered_call(world, pbx, page)
    problems += await _fits(page, "desk-call")
    # the caller's name keeps its width (the badges go below it, not beside)
    title = await page.locator(".popup[data-state='answered'] .caller-title").bounding_box()
    assert title["width"] >= 200, title

    card = page.locator(".popup[data-state='answered']")
    await card.get_by_role("button", name="Transferir", exact=True).click()
    problems += await _fits(page, "desk-transfer-form")
    await card.get_by_role("button", name="Cancelar", exact=True).click()

    supervisor = await world.sign_in("sofia")
    pbx.phones["100"] = Phone(ring=1.0, answer=True)
    async with supervisor.post(
        world.url("/panel/api/spy"), json={"agent": "ana", "mode": "listen"}
    ) as r:
        assert r.status == 200, await r.text()
    await page.locator("#spy-note:not([hidden])").wait_for()
    problems += await _fits(page, "desk-listened-to")

    await _view(page, "worklist")
    await page.locator(f"#worklist-table tr[data-person-id='{lead.id}']").wait_for()
    problems += await _fits(page, "worklist")
    await _view(page, "search")
    await page.get_by_label("Nombre, empresa, número o correo").fill("911 23 45 67")
    await page.locator("#search-form").get_by_role("button", name="Buscar").click()
    result = page.locator(f"#search-results li[data-person-id='{lead.id}']")
    await result.wait_for()
    problems += await _fits(page, "search")
    await result.get_by_role("button", name="Abrir la ficha de Lucía Martín").click()
    await page.locator(".record").wait_for()
    problems += await _fits(page, "record")
    for view in ("history", "missed", "followups"):
        await _view(page, view)
        problems += await _fits(page, view)

    boss = await _phone(browser, world, "sofia")
    problems += boss.problems
    await _view(boss, "wallboard")
    await boss.locator("#wallboard-agents tr", has_text="Ana").first.wait_for()
    problems += await _fits(boss, "wallboard")
    await _view(boss, "board")
    problems += await _fits(boss, "board")
    await boss.context.close()
    await page.context.close()
    assert problems == [], "\n".join(problems)
