"""The desk an agent lives in all day, in a real Chromium: Spanish and English, accessibility
(axe-core on every view, keyboard only), and a page that stays the same size while hundreds
of calls pass through it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.sim.pbx import SimulatedPbx
from gateway.store.models import PersonType
from tests.browser.test_panel_browser import ARTIFACTS
from tests.test_panel_support import PASSWORD, answered, ended, ringing

pytestmark = pytest.mark.browser
PANEL = Path(__file__).resolve().parent.parent.parent / "web" / "panel"
CATALOGS = {p.stem: json.loads(p.read_text()) for p in (PANEL / "assets" / "i18n").glob("*.json")}


def _axe_source() -> str:
    import axe_playwright_python

    return (Path(axe_playwright_python.__file__).parent / "axe.min.js").read_text()


async def _sign_in(context: Any, world: Any, username: str = "ana") -> Any:
    page = await context.new_page()
    await page.goto(world.url("/panel/login"))
    await page.wait_for_selector("body[data-lang]")
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("#login-button")
    await page.wait_for_selector("body[data-socket='live']")
    return page


async def _lucia(world: Any) -> Any:
    lead = (
        await world.panel.people.create(
            PersonType.LEAD,
            {"first_name": "Lucía", "last_name": "Martín", "company": "Acme Renovables",
             "phones": ["+34911234567"], "status": "qualified", "score": 8.2, "owner": "ana",
             "country": "ES"},
        )
    ).person  # fmt: skip
    await world.panel.follow_ups.add(lead.id, 1000, "Send the quote", "ana")  # overdue
    return lead


# -- languages ------------------------------------------------------------------------------------

ENGLISH_ONLY = {
    v
    for k, v in CATALOGS["en"].items()
    if isinstance(v, str) and v != CATALOGS["es"].get(k) and len(v) > 3
}
VISIBLE_TEXTS = """() => {
  const out = [];
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walk.nextNode()) {
    const el = walk.currentNode.parentElement;
    const text = walk.currentNode.textContent.trim();
    if (!text || !el || el.closest('[hidden], script, style, template')) continue;
    const style = getComputedStyle(el);
    if (style.display === 'none' || style.visibility === 'hidden') continue;
    if (el.closest('dialog') && !el.closest('dialog').open) continue;
    out.push(text);
  }
  for (const el of document.querySelectorAll('[aria-label], [placeholder]')) {
    if (el.closest('[hidden]')) continue;
    for (const a of ['aria-label', 'placeholder']) if (el.getAttribute(a)) out.push(el.getAttribute(a));
  }
  return out;
}"""


async def _english_on_screen(page: Any) -> list[str]:
    texts = await page.evaluate(VISIBLE_TEXTS)
    return sorted({t for t in texts if t in ENGLISH_ONLY})


async def _views(page: Any, lang: str, shots: list[str]) -> None:
    for view in ("live", "history", "missed", "followups"):
        await page.click(f".nav-item[data-view='{view}']")
        await page.wait_for_timeout(150)
        name = f"desk-{lang}-{view}.png"
        await page.screenshot(path=str(ARTIFACTS / name), full_page=True)
        shots.append(name)
    await page.click(".nav-item[data-view='live']")


async def test_spanish_browser_gets_a_spanish_panel_and_english_is_one_setting_away(
    browser: Any, world: Any, pbx: SimulatedPbx
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await _lucia(world)
    context = await browser.new_context(locale="es-ES", viewport={"width": 1280, "height": 860})
    login = await context.new_page()
    await login.goto(world.url("/panel/login"))
    await login.wait_for_selector("body[data-lang='es']")
    assert await login.get_attribute("html", "lang") == "es"
    assert await login.locator("#login-button").text_content() == "Entrar"
    assert await _english_on_screen(login) == []
    await login.screenshot(path=str(ARTIFACTS / "login-es.png"))
    await login.fill("#username", "ana")
    await login.fill("#password", "wrong-password-here")
    await login.click("#login-button")
    await login.locator("#login-error:not([hidden])").wait_for()
    assert await login.locator("#login-error").text_content() == "Usuario o contraseña incorrectos."
    await login.close()

    page = await _sign_in(context, world)
    assert await page.get_attribute("html", "lang") == "es"
    pbx.start_call(
        "inbound_answered", caller="+34911234567", agent="101", ring_seconds=5, talk_seconds=65
    )
    await pbx.advance(0.01)
    popup = page.locator(".popup[data-state='ringing']")
    await popup.wait_for()
    assert "Llamada entrante" in await popup.locator(".status-text").text_content()
    assert await page.title() == "(1) Llamada entrante · Centralita"
    assert await popup.get_by_role("button", name="Llamar a Lucía Martín").count() == 1
    assert "España" in await popup.text_content()
    assert "Vencido" in await popup.text_content()  # overdue follow-up: said, not only coloured
    await pbx.advance(5.5)
    await pbx.advance(66)
    ended_card = page.locator(".popup[data-state='ended']")
    await ended_card.locator(".wrapup").wait_for()
    text = await ended_card.text_content()
    assert "¿Cómo fue?" in text and "Interesado" in text and "habló 1 min 05 s" in text
    assert await _english_on_screen(page) == []
    shots: list[str] = []
    await page.screenshot(path=str(ARTIFACTS / "desk-es-wrapup.png"), full_page=True)
    await _views(page, "es", shots)
    for view in ("history", "missed", "followups"):
        await page.click(f".nav-item[data-view='{view}']")
        await page.wait_for_timeout(200)
        assert await _english_on_screen(page) == [], view
    await page.click(".nav-item[data-view='live']")

    # English, chosen in the settings: every label changes; what was typed stays
    notes = ended_card.locator("textarea.notes")
    await notes.fill("Quiere 12 paneles")
    await page.click("#open-settings")
    await page.select_option("#settings-language", "en")
    await page.click("#settings-save")
    await page.wait_for_selector("body[data-lang='en']")
    assert await page.get_attribute("html", "lang") == "en"
    assert "How did it go?" in await ended_card.text_content()
    assert await notes.input_value() == "Quiere 12 paneles"
    assert await page.locator(".nav-item[data-view='history']").text_content() == "Call history"
    spanish_only = {
        v
        for k, v in CATALOGS["es"].items()
        if isinstance(v, str) and v != CATALOGS["en"][k] and len(v) > 3
    }
    texts = await page.evaluate(VISIBLE_TEXTS)
    assert sorted({t for t in texts if t in spanish_only}) == []
    await page.screenshot(path=str(ARTIFACTS / "desk-en-wrapup.png"), full_page=True)
    await _views(page, "en", shots)
    rows = await world.gw.db.conn.execute_fetchall(
        "SELECT language FROM users WHERE username = 'ana'"
    )
    assert rows[0]["language"] == "en"
    # the choice is the account's: a new tab in the Spanish browser opens in English
    again = await context.new_page()
    await again.goto(world.url("/panel/"))
    await again.wait_for_selector("body[data-lang='en']")
    await context.close()


async def _ringing_in_spanish(
    browser: Any, world: Any, pbx: SimulatedPbx, caller: str
) -> tuple[Any, Any]:
    """Ana's desk in a Spanish browser, with ``caller`` ringing at her extension."""
    context = await browser.new_context(locale="es-ES", viewport={"width": 1280, "height": 860})
    page = await _sign_in(context, world)
    pbx.start_call("inbound_answered", caller=caller, agent="101", ring_seconds=30)
    await pbx.advance(0.01)
    await page.locator(".popup[data-state='ringing']").wait_for()
    return context, page


async def test_a_past_call_reads_in_the_agents_language_on_the_pop_up_and_the_record(
    browser: Any, world: Any, pbx: SimulatedPbx
) -> None:
    """The call log keeps an English line for CRMs; an agent reads the call in their own
    language, from what the log says of it (direction, outcome, who answered, talk time)."""
    from gateway.store.calllog import CallLog

    lead = await _lucia(world)
    await CallLog(world.gw.db, "ES").save(
        {"id": "lab:past", "pbx": "lab", "linkedid": "past", "direction": "inbound",
         "caller": "+34911234567", "outcome": "answered", "answered_by": "102",
         "started_at": 1_700_000_000.0, "answered_at": 1_700_000_006.0,
         "ended_at": 1_700_000_101.0, "talk_seconds": 95.0}
    )  # fmt: skip
    context, page = await _ringing_in_spanish(browser, world, pbx, "+34911234567")
    popup = page.locator(".popup[data-state='ringing']")
    line = popup.locator(".timeline .tl-text").first
    assert await line.text_content() == "Llamada entrante, contestada por 102, 1 min 35 s"
    assert await _english_on_screen(page) == []

    await page.click(".nav-item[data-view='search']")
    await page.get_by_label("Nombre, empresa, número o correo").fill("911 23 45 67")
    await page.locator("#search-form").get_by_role("button", name="Buscar").click()
    result = page.locator(f"#search-results li[data-person-id='{lead.id}']")
    await result.get_by_role("button", name="Abrir la ficha de Lucía Martín").click()
    timeline = page.locator(".record .timeline .tl-text").first
    assert await timeline.text_content() == "Llamada entrante, contestada por 102, 1 min 35 s"

    await page.click("#open-settings")
    await page.select_option("#settings-language", "en")
    await page.click("#settings-save")
    await page.wait_for_selector("body[data-lang='en']")
    english = await context.new_page()
    await english.goto(world.url("/panel/"))
    await english.wait_for_selector("body[data-socket='live']")
    await english.locator(".popup[data-state='ringing']").wait_for()
    assert (
        await english.locator(".popup .timeline .tl-text").first.text_content()
        == "Inbound call, answered by 102, 1 min 35 s"
    )
    await context.close()


async def test_a_badge_is_worded_as_spanish_writes_it(
    browser: Any, world: Any, pbx: SimulatedPbx
) -> None:
    """Only a label's first letter is capitalised on screen: Spanish writes "Llamante nuevo",
    not "Llamante Nuevo" (what ``text-transform: capitalize`` showed)."""
    context, page = await _ringing_in_spanish(browser, world, pbx, "+34600111222")
    badge = page.locator(".popup[data-state='ringing'] .badge.kind-unknown")
    assert await badge.inner_text() == "Llamante nuevo"  # as rendered, CSS applied
    await context.close()


# -- axe-core on every view ------------------------------------------------------------------------


async def _axe(page: Any, where: str) -> list[str]:
    """axe-core, served from the panel's own origin (the CSP allows only 'self' scripts)."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.add_script_tag(url="/panel/assets/axe.min.js")
    # a card fading in is measured at its final colours, not half-way through the animation
    await page.evaluate(
        "Promise.all(document.getAnimations()"
        ".filter(a => a.effect.getTiming().iterations !== Infinity).map(a => a.finished.catch(() => null)))"
    )
    result = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{where}: {v['id']} ({v['impact']}) {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


async def test_axe_finds_no_serious_violation_on_any_view(
    browser: Any, world: Any, pbx: SimulatedPbx
) -> None:
    await _lucia(world)
    source = _axe_source()
    found: list[str] = []
    for scheme in ("light", "dark"):
        context = await browser.new_context(
            color_scheme=scheme, viewport={"width": 1280, "height": 860}
        )
        await context.route(
            "**/panel/assets/axe.min.js",
            lambda route: route.fulfill(body=source, content_type="text/javascript"),
        )
        login = await context.new_page()
        await login.goto(world.url("/panel/login"))
        await login.wait_for_selector("body[data-lang]")
        found += await _axe(login, f"{scheme} login")
        await login.close()
        page = await _sign_in(context, world, "sofia" if scheme == "dark" else "ana")
        found += await _axe(page, f"{scheme} empty desk")
        if scheme == "light":
            pbx.start_call(
                "inbound_answered",
                caller="+34911234567",
                caller_name="<b>x</b>",
                agent="101",
                ring_seconds=5,
                talk_seconds=10,
            )
            pbx.start_call(
                "inbound_answered",
                caller="+34600999888",
                agent="101",
                ring_seconds=5,
                talk_seconds=10,
            )
            await pbx.advance(0.01)
            await page.locator(".popup[data-state='ringing']").first.wait_for()
            await page.locator(".popup >> nth=1").wait_for()
            found += await _axe(page, "ringing cards (one unknown: create form)")
            await pbx.advance(5.5)
            await pbx.advance(11)
            await page.locator(".popup[data-state='ended'] .wrapup").first.wait_for()
            found += await _axe(page, "wrap-up")
            await page.fill("#dial-number", "600111222;1")
            await page.click("#dial-button")
            await page.locator("#c2c[data-state='failed']").wait_for()
            found += await _axe(page, "click-to-call failed")
        for view in ("history", "missed", "followups", *(("board",) if scheme == "dark" else ())):
            await page.click(f".nav-item[data-view='{view}']")
            await page.wait_for_timeout(300)
            found += await _axe(page, f"{scheme} {view}")
        await page.click("#open-settings")
        found += await _axe(page, f"{scheme} settings")
        await page.keyboard.press("Escape")
        await page.click("#open-help")
        found += await _axe(page, f"{scheme} shortcuts")
        await page.keyboard.press("Escape")
        await context.close()
    assert found == [], "\n".join(found)


# -- keyboard only -----------------------------------------------------------------------------------


async def _focused(page: Any) -> str:
    return str(
        await page.evaluate(
            "document.activeElement === document.body ? 'BODY' : (document.activeElement.id || document.activeElement.className || document.activeElement.tagName)"
        )
    )


async def test_keyboard_only_notes_disposition_save_call_and_pause(
    browser: Any, world: Any, pbx: SimulatedPbx
) -> None:
    await _lucia(world)
    context = await browser.new_context(viewport={"width": 1280, "height": 860})
    page = await context.new_page()
    kb = page.keyboard
    await page.goto(world.url("/panel/login"))
    await page.wait_for_selector("body[data-lang]")
    await kb.type("ana")  # the user name field has autofocus
    await kb.press("Tab")
    await kb.type(PASSWORD)
    await kb.press("Enter")
    await page.wait_for_selector("body[data-socket='live']")

    pbx.start_call(
        "inbound_answered", caller="+34911234567", agent="101", ring_seconds=5, talk_seconds=30
    )
    await pbx.advance(0.01)
    card = page.locator(".popup[data-state='ringing']")
    await card.wait_for()
    # screen readers hear the ring (the toasts are not the only live region any more)
    await page.locator(
        "#announcer[aria-live='assertive']", has_text="Incoming call from Lucía Martín"
    ).wait_for(state="attached")
    await kb.press("n")  # the notes of the call in focus
    await kb.type("Wants 12 ")
    await pbx.advance(5.5)  # answered while typing: the card updates, the keystrokes stay
    await page.locator(".popup[data-state='answered']").wait_for()
    await kb.type("panels")
    notes = page.locator(".popup textarea.notes")
    assert await notes.input_value() == "Wants 12 panels"
    assert await notes.evaluate("n => n === document.activeElement")
    await pbx.advance(31)
    await page.locator(".popup[data-state='ended'] .wrapup").wait_for()
    assert await notes.evaluate("n => n === document.activeElement")  # the end did not steal focus
    await kb.type(", call Friday")
    await kb.press("Tab")  # into the dispositions: one tab stop, arrows inside
    assert await page.evaluate("document.activeElement.dataset.disposition") == "interested"
    await kb.press("ArrowRight")
    assert await page.evaluate("document.activeElement.dataset.disposition") == "call_back"
    assert (
        await page.locator("[data-disposition='call_back']").get_attribute("aria-checked") == "true"
    )
    for _ in range(5):  # through the follow-up date (Chromium tabs through its day/month/year)
        await kb.press("Tab")
        assert await _focused(page) != "BODY"
        if await page.evaluate("document.activeElement.textContent") == "Save":
            break
    assert await page.evaluate("document.activeElement.textContent") == "Save"
    await kb.press("Enter")
    await page.locator(".wrapup.saved").wait_for()
    assert await _focused(page) != "BODY"
    rows = await world.gw.db.conn.execute_fetchall("SELECT notes, disposition FROM calls")
    assert [tuple(r) for r in rows] == [("Wants 12 panels, call Friday", "call_back")]

    await kb.press("d")
    await kb.type("+34 911 234 567")
    await kb.press("Enter")
    await page.locator("#c2c[data-state='calling_agent']").wait_for()
    await kb.press("Escape")
    await kb.press("Tab")  # out of the dialer
    await kb.press("p")  # presence menu: arrows move, nothing is committed yet
    await kb.press("ArrowDown")
    await asyncio.sleep(0.2)
    assert await page.get_attribute("#presence", "data-status") == "available"
    assert _breaks(pbx) == 0
    await kb.press("Enter")
    await page.locator("#presence[data-status='paused']").wait_for()
    assert _breaks(pbx) == 1  # paused in the queues once, on Enter
    assert await _focused(page) == "presence-button"
    await kb.press("?")
    assert await page.locator("#help[open]").count() == 1
    await kb.press("Escape")
    assert await page.locator("#help[open]").count() == 0
    await context.close()


def _breaks(pbx: SimulatedPbx) -> int:
    return sum(
        1
        for a in pbx.received_actions
        if a.get("Action") == "QueuePause"
        and a.get("Paused") == "true"
        and a.get("Reason") == "Break"
    )


# -- a desk that stays the same size ----------------------------------------------------------------


async def test_desk_dom_stays_bounded_while_500_calls_pass(browser: Any, world: Any) -> None:
    context = await browser.new_context(viewport={"width": 1280, "height": 860})
    requests: list[str] = []
    # listening from the start: the desk's first load (which counts the missed calls) may still
    # be on its way when the socket says "live"
    context.on("request", lambda r: requests.append(r.url))
    page = await _sign_in(context, world)
    sizes = []
    for batch in range(20):
        for i in range(25):
            lid = f"{batch}.{i}"
            world.gw.bus.publish(ringing(lid, ("101",), caller=f"+346001{batch:02d}{i:03d}"))
            if i % 3:
                world.gw.bus.publish(answered(lid, "101"))
                world.gw.bus.publish(ended(lid, ["101"], "101"))
            else:
                world.gw.bus.publish(ended(lid, ["101"], None))
            await asyncio.sleep(0)
        await page.locator(f".popup[data-call-id='sim:{batch}.24'][data-state='ended']").wait_for()
        sizes.append(await page.evaluate("document.getElementsByTagName('*').length"))
    cards = await page.locator(".popup").count()
    assert cards <= 6, cards
    assert max(sizes[2:]) <= sizes[1] * 1.1, sizes  # flat after the first batches
    # the missed-calls list is fetched once, for the desk's first count, and never again while
    # nobody looks at it
    assert len([u for u in requests if "missed=1" in u]) == 1
    assert int(await page.locator("#missed-count span[aria-hidden]").text_content()) >= 100
    await context.close()


# -- phone width -------------------------------------------------------------------------------------


async def test_phone_width_top_bar_and_create_form_fit(
    browser: Any, world: Any, pbx: SimulatedPbx
) -> None:
    context = await browser.new_context(viewport={"width": 375, "height": 740})
    page = await _sign_in(context, world)
    pbx.start_call(
        "inbound_answered", caller="+34600999888", agent="101", ring_seconds=5, talk_seconds=10
    )
    await pbx.advance(0.01)
    await page.locator(".popup .create-form").wait_for()
    for selector in (
        "#dial-button",
        "#link-state",
        "#presence-button",
        ".create-form button >> nth=1",
        ".create-form input[name='email']",
    ):
        box = await page.locator(selector).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375, (selector, box)
    assert await page.evaluate("document.documentElement.scrollWidth") <= 375
    await page.screenshot(path=str(ARTIFACTS / "phone-en.png"), full_page=True)
    await context.close()
