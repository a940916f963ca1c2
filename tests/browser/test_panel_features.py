"""The desk features in a real Chromium (issue #12): call controls that reach the simulated PBX,
after-call work with its countdown, the supervisors' wallboard (and its TV mode), the worklist,
contact search, the record view with the qualification script and the conversion, and the
paged call history; each in Spanish and English, each checked with axe-core."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.ami.events import AmiEvent
from gateway.sim.pbx import SimulatedPbx
from gateway.sim.state import Phone
from tests.browser.test_panel_browser import ARTIFACTS
from tests.browser.test_panel_desk import (
    CATALOGS,
    VISIBLE_TEXTS,
    _axe,
    _axe_source,
    _english_on_screen,
    _lucia,
    _sign_in,
)
from tests.test_panel_support import answered, ended, ringing, until

pytestmark = pytest.mark.browser
T0 = 1796028600.0


def _sent(pbx: SimulatedPbx, action: str) -> list[dict[str, str]]:
    return [a for a in pbx.received_actions if a.get("Action") == action]


async def _context(browser: Any, locale: str = "es-ES", scheme: str = "light") -> Any:
    ARTIFACTS.mkdir(exist_ok=True)
    context = await browser.new_context(
        locale=locale, color_scheme=scheme, viewport={"width": 1280, "height": 900}
    )
    source = _axe_source()
    await context.route(
        "**/panel/assets/axe.min.js",
        lambda route: route.fulfill(body=source, content_type="text/javascript"),
    )
    return context


async def _answered_call(world: Any, pbx: SimulatedPbx, page: Any) -> str:
    pbx.phones["101"] = Phone(ring=1.0, answer=True)
    key = "sim:" + pbx.start_call("inbound", caller="+34911234567", agent="101", talk_seconds=600)
    for _ in range(3):
        await pbx.advance(1)
    await until(lambda: key in world.panel.board.agents["ana"].calls, "ana to answer")
    await page.locator(f".popup[data-call-id='{key}'][data-state='answered']").wait_for()
    return key


async def _to_english(page: Any) -> None:
    await page.click("#open-settings")
    await page.select_option("#settings-language", "en")
    await page.click("#settings-save")
    await page.wait_for_selector("body[data-lang='en']")


async def _spanish_on_screen(page: Any) -> list[str]:
    spanish_only = {
        v
        for k, v in CATALOGS["es"].items()
        if isinstance(v, str) and v != CATALOGS["en"][k] and len(v) > 3
    }
    return sorted({t for t in await page.evaluate(VISIBLE_TEXTS) if t in spanish_only})


# -- call controls ----------------------------------------------------------------------------------


async def test_hold_resume_and_transfer_clicked_in_the_panel_reach_the_pbx(
    browser: Any, world: Any, pbx: SimulatedPbx
) -> None:
    await _lucia(world)
    context = await _context(browser)
    page = await _sign_in(context, world)
    key = await _answered_call(world, pbx, page)
    card = page.locator(f".popup[data-call-id='{key}']")
    agent_leg = next(n for n in pbx.channels if n.startswith("PJSIP/101-"))
    customer_leg = next(n for n in pbx.channels if n.startswith("PJSIP/trunk-"))
    # a lead's card carries the qualification script, folded
    assert await card.locator("details.qualify summary").text_content() == "Cualificación"
    found = await _axe(page, "answered call with controls")

    await card.get_by_role("button", name="Poner en espera").click()
    await card.locator(".held-note", has_text="Llamada en espera").wait_for()
    (redirect,) = _sent(pbx, "Redirect")
    assert (redirect["Channel"], redirect["ExtraChannel"]) == (customer_leg, agent_leg)
    assert "En espera" in await card.locator(".status-text").text_content()
    await card.get_by_role("button", name="Recuperar").click()
    await card.get_by_role("button", name="Poner en espera").wait_for()
    (bridge,) = _sent(pbx, "Bridge")
    assert (bridge["Channel1"], bridge["Channel2"]) == (agent_leg, customer_leg)

    await card.get_by_role("button", name="Transferir", exact=True).click()
    form = card.locator(".transfer-form")
    await form.get_by_label("Transferir a (extensión o número)").fill("101")  # herself
    found += await _axe(page, "transfer form")
    await page.screenshot(path=str(ARTIFACTS / "controls-es.png"), full_page=True)
    await form.get_by_role("button", name="Transferir ahora").click()
    error = form.locator(".form-error")
    await error.wait_for()
    assert await error.text_content() == CATALOGS["es"]["error.bad_target"]
    assert _sent(pbx, "BlindTransfer") == []
    await form.get_by_label("Transferir a (extensión o número)").fill("102")
    await form.get_by_role("button", name="Transferir ahora").click()
    await form.wait_for(state="hidden")
    (xfer,) = _sent(pbx, "BlindTransfer")
    assert (xfer["Channel"], xfer["Exten"]) == (agent_leg, "102")
    assert await _english_on_screen(page) == []
    await context.close()
    assert found == [], "\n".join(found)


async def test_hang_up_starts_the_wrap_up_timer_and_saving_it_makes_the_agent_available(
    browser: Any, world: Any, pbx: SimulatedPbx
) -> None:
    context = await _context(browser, "en-GB")
    page = await _sign_in(context, world)
    key = await _answered_call(world, pbx, page)
    card = page.locator(f".popup[data-call-id='{key}']")
    agent_leg = next(n for n in pbx.channels if n.startswith("PJSIP/101-"))
    await card.get_by_role("button", name="Hang up the call with +34911234567").click()
    await until(lambda: _sent(pbx, "Hangup"), "the Hangup to reach the PBX")
    assert [a["Channel"] for a in _sent(pbx, "Hangup")] == [agent_leg]
    for _ in range(2):
        await pbx.advance(1)
    await card.locator(".wrapup").wait_for()
    timer = page.locator("#acw-timer")
    await timer.wait_for()
    assert (await timer.text_content()).startswith("Wrap-up 0:")
    assert await page.get_attribute("#presence", "data-status") == "after_call_work"
    countdown = card.locator(".acw-countdown")
    assert "Wrap-up time left: 0:" in await countdown.text_content()
    first = await timer.text_content()
    await page.wait_for_function(  # it counts down
        "t => document.getElementById('acw-timer').textContent !== t", arg=first, timeout=5000
    )
    found = await _axe(page, "after-call work")
    await page.screenshot(path=str(ARTIFACTS / "acw-en.png"), full_page=True)
    await card.locator("[data-disposition='interested']").click()
    await card.get_by_role("button", name="Save").click()
    await page.locator("#presence[data-status='available']").wait_for()
    assert await timer.is_hidden()
    assert await page.locator("#presence-button").text_content() == "Available ▾"
    await context.close()
    assert found == [], "\n".join(found)


# -- after-call work keeps unsaved wrap-ups reachable --------------------------------------------


async def test_a_wrap_up_pushed_off_the_desk_waits_in_the_pending_list(
    browser: Any, world: Any
) -> None:
    context = await _context(browser, "en-GB")
    page = await _sign_in(context, world)
    for i in range(8):  # eight answered-and-ended calls: more than the desk's six cards
        world.gw.bus.publish(ringing(f"w{i}", ("101",), caller=f"+3460011100{i}"))
        world.gw.bus.publish(answered(f"w{i}", "101", caller=f"+3460011100{i}"))
        world.gw.bus.publish(ended(f"w{i}", ["101"], "101"))
    await page.locator(".popup[data-call-id='sim:w7'][data-state='ended']").wait_for()
    assert await page.locator(".popup").count() <= 6
    parked = page.locator("#parked")
    await parked.wait_for()
    assert "2 wrap-ups pending" in await parked.text_content()
    await parked.locator("li[data-call-id='sim:w0'] button").click()
    back = page.locator(".popup[data-call-id='sim:w0'] .wrapup")
    await back.wait_for()
    assert "How did it go?" in await back.text_content()
    await context.close()


# -- wallboard ---------------------------------------------------------------------------------------


def _ami(world: Any, at: float, **frame: str) -> None:
    world.gw.bus.publish(AmiEvent("sim", {**frame, "Timestamp": f"{at:.6f}"}, at))


def _known_stream(world: Any) -> None:
    for ext in ("101", "102"):
        _ami(world, T0, Event="QueueMemberStatus", Queue="ventas", MemberName=f"Agent {ext}",
             Interface=f"PJSIP/{ext}", Status="1", Paused="0")  # fmt: skip
    _ami(world, T0 + 1, Event="QueueCallerJoin", Queue="ventas", Uniqueid="u1")
    _ami(world, T0 + 2, Event="AgentCalled", Queue="ventas", Uniqueid="u1",
         Interface="PJSIP/101", MemberName="Agent 101")  # fmt: skip
    _ami(world, T0 + 4, Event="QueueCallerLeave", Queue="ventas", Uniqueid="u1")
    _ami(world, T0 + 4, Event="AgentConnect", Queue="ventas", Uniqueid="u1",
         Interface="PJSIP/101", MemberName="Agent 101", HoldTime="3")  # fmt: skip
    _ami(world, T0 + 5, Event="QueueCallerJoin", Queue="ventas", Uniqueid="u2")


async def test_wallboard_shows_the_figures_of_a_known_stream_in_both_languages_and_on_a_tv(
    browser: Any, world: Any
) -> None:
    await world.sign_in("ana")
    _known_stream(world)
    found: list[str] = []
    context = await _context(browser)
    page = await _sign_in(context, world, "sofia")
    await page.click(".nav-item[data-view='wallboard']")
    row = page.locator("#wallboard-queues tr[data-queue='ventas']")
    await row.wait_for()
    assert await row.locator("[data-figure='waiting']").text_content() == "1"
    assert await row.locator("[data-figure='answered']").text_content() == "1"
    assert (await row.locator("[data-figure='service_level']").text_content()).startswith(
        "100\u00a0%"
    )
    assert await row.locator("[data-figure='asa']").text_content() == "3 s"
    ana = page.locator("#wallboard-agents tr[data-agent='ana']")
    assert "En llamada" in await ana.text_content()  # the state in words, not only a colour
    bruno = page.locator("#wallboard-agents tr", has_text="Bruno Silva")
    assert "sin sesión" in await bruno.text_content()
    assert await page.locator("#view-heading").text_content() == "Panel de colas"
    assert await _english_on_screen(page) == []
    found += await _axe(page, "wallboard es")
    await page.screenshot(path=str(ARTIFACTS / "wallboard-es.png"), full_page=True)
    # a listen click answers in Spanish when the server refuses (ana's call is only in the queue log)
    await ana.get_by_role("button", name="Escuchar: Ana García").click()
    await page.locator(".toast", has_text=CATALOGS["es"]["error.agent_not_on_call"]).wait_for()

    # live: a new caller joins, the push updates the figure
    _ami(world, T0 + 6, Event="QueueCallerJoin", Queue="ventas", Uniqueid="u3")
    await row.locator("[data-figure='waiting']", has_text="2").wait_for()

    # TV mode from a link: no sidebar, no buttons, large type; Escape leaves it
    tv = await context.new_page()
    await tv.goto(world.url("/panel/#wallboard?tv=1"))
    await tv.wait_for_selector("body.tv #wallboard-queues tr[data-queue='ventas']")
    assert await tv.locator(".sidebar").is_hidden()
    assert await tv.locator("[data-spy]").count() == 0
    assert await tv.evaluate("parseFloat(getComputedStyle(document.body).fontSize)") >= 24
    found += await _axe(tv, "wallboard TV es")
    await tv.screenshot(path=str(ARTIFACTS / "wallboard-tv-es.png"), full_page=True)
    await tv.keyboard.press("Escape")
    await tv.wait_for_selector("body:not(.tv) .sidebar")
    await tv.close()

    # a toast says what happened in the language of that moment; it is not relabelled
    await page.evaluate("document.getElementById('toasts').replaceChildren()")
    await _to_english(page)
    await page.click(".nav-item[data-view='wallboard']")
    await ana.wait_for()
    assert "On a call" in await ana.text_content()
    assert await _spanish_on_screen(page) == []
    found += await _axe(page, "wallboard en")
    await page.screenshot(path=str(ARTIFACTS / "wallboard-en.png"), full_page=True)
    await context.close()
    dark = await _context(browser, "en-GB", "dark")
    page = await _sign_in(dark, world, "sofia")
    await page.goto(world.url("/panel/#wallboard?tv=1"))
    await page.wait_for_selector("body.tv #wallboard-queues tr[data-queue='ventas']")
    found += await _axe(page, "wallboard TV dark")
    await page.screenshot(path=str(ARTIFACTS / "wallboard-tv-en-dark.png"), full_page=True)
    await dark.close()
    assert found == [], "\n".join(found)


async def test_agents_have_no_wallboard(browser: Any, world: Any) -> None:
    context = await _context(browser, "en-GB")
    page = await _sign_in(context, world)
    assert await page.locator(".nav-item[data-view='wallboard']").is_hidden()
    await page.goto(world.url("/panel/#wallboard?tv=1"))
    await page.wait_for_selector("body[data-socket='live']")
    assert await page.get_attribute("body", "data-view") == "live"
    await context.close()


# -- worklist, search, record, qualification, conversion -------------------------------------------


async def test_worklist_search_record_qualification_and_conversion(
    browser: Any, world: Any, pbx: SimulatedPbx
) -> None:
    lead = await _lucia(world)
    found: list[str] = []
    context = await _context(browser)
    page = await _sign_in(context, world)

    await page.click(".nav-item[data-view='worklist']")
    item = page.locator(f"#worklist-table tr[data-person-id='{lead.id}']")
    await item.wait_for()
    assert "Lucía Martín" in await item.text_content()
    assert await item.get_by_role("button", name="Llamar a Lucía Martín").count() == 1
    assert await _english_on_screen(page) == []
    found += await _axe(page, "worklist es")
    await page.screenshot(path=str(ARTIFACTS / "worklist-es.png"), full_page=True)

    await page.click(".nav-item[data-view='search']")
    await page.get_by_label("Nombre, empresa, número o correo").fill("911 23 45 67")
    await page.locator("#search-form").get_by_role("button", name="Buscar").click()
    result = page.locator(f"#search-results li[data-person-id='{lead.id}']")
    await result.wait_for()
    found += await _axe(page, "search es")
    await page.screenshot(path=str(ARTIFACTS / "search-es.png"), full_page=True)
    await result.get_by_role("button", name="Abrir la ficha de Lucía Martín").click()
    record = page.locator(".record")
    await record.wait_for()
    await record.locator(".qualify select").first.wait_for()
    assert await _english_on_screen(page) == []
    found += await _axe(page, "record + qualification es")
    await page.screenshot(path=str(ARTIFACTS / "record-es.png"), full_page=True)

    # an answer is saved when chosen
    await record.get_by_label("Tamaño de la empresa").select_option("10_49")
    await record.locator(".qualify-status", has_text="Guardado").wait_for()

    # edit: the company
    await record.get_by_label("Empresa").first.fill("Acme Solar")
    await record.get_by_role("button", name="Guardar").click()
    await page.locator(".record-title", has_text="Lucía Martín").wait_for()
    await page.locator(".record dd", has_text="Acme Solar").wait_for()

    await _to_english(page)
    await page.click(".nav-item[data-view='search']")
    await page.locator(".record h3", has_text="Qualification").first.wait_for()
    assert await _spanish_on_screen(page) == []
    found += await _axe(page, "record en")
    await page.screenshot(path=str(ARTIFACTS / "record-en.png"), full_page=True)

    convert = page.locator("#record-convert")
    await convert.get_by_label("Deal title (optional)").fill("12 panels")
    await convert.get_by_label("Amount (optional)").fill("9600")
    await convert.get_by_role("button", name="Convert").click()
    await page.locator(".record[data-kind='contact']").wait_for()
    assert await page.locator("#record-convert").count() == 0
    person = await world.panel.people.get(lead.id)
    assert person is not None and person.kind == "contact"
    rows = await world.gw.db.conn.execute_fetchall("SELECT title, amount FROM deals")
    assert [tuple(r) for r in rows] == [("12 panels", 9600.0)]

    await page.click(".nav-item[data-view='worklist']")
    await page.locator("#worklist-table tbody tr").first.wait_for()
    found += await _axe(page, "worklist en")
    await page.screenshot(path=str(ARTIFACTS / "worklist-en.png"), full_page=True)
    await page.click(".nav-item[data-view='search']")
    await page.click("#record-back")
    found += await _axe(page, "search en")
    await page.screenshot(path=str(ARTIFACTS / "search-en.png"), full_page=True)
    await context.close()
    assert found == [], "\n".join(found)


# -- history: names, formatted numbers, paging ----------------------------------------------------


async def test_history_shows_names_and_formatted_numbers_and_pages_with_more(
    browser: Any, world: Any
) -> None:
    await _lucia(world)
    context = await _context(browser)
    page = await _sign_in(context, world)
    for i in range(55):
        world.gw.bus.publish(ringing(f"h{i}", ("101",), caller="+34911234567"))
        world.gw.bus.publish(answered(f"h{i}", "101"))
        world.gw.bus.publish(ended(f"h{i}", ["101"], "101"))
    await page.locator(".popup[data-call-id='sim:h54'][data-state='ended']").wait_for()
    await until(
        lambda: world.panel.board.calls.get("sim:h54") is None, "the last call to be logged"
    )
    await page.click(".nav-item[data-view='history']")
    rows = page.locator("#history-table tbody tr")
    await rows.first.wait_for()
    first = rows.first
    assert "Lucía Martín" in await first.text_content()
    assert "911 23 45 67" in await first.text_content()  # as the server formats it
    assert "Ana García" in await first.text_content()
    count = await rows.count()
    assert count == 50
    await page.get_by_role("button", name="Ver más").click()
    await page.locator("#history-table tbody tr >> nth=54").wait_for()
    assert await rows.count() == 55
    assert await page.locator("#history-more").is_hidden()
    await page.screenshot(path=str(ARTIFACTS / "history-es.png"), full_page=True)
    await context.close()
