"""The panel in a real browser: Debian's Chromium driven by Playwright, against a real gateway
talking AMI to the simulated PBX (manual clock: the test decides when phones answer)."""

from __future__ import annotations

import asyncio
import math
import os
import struct
import wave
from pathlib import Path
from typing import Any

import pytest

from gateway.sim.pbx import Phone, SimulatedPbx
from gateway.store.models import PersonType
from tests.test_panel_support import PASSWORD, open_world, ringing, until

pytestmark = pytest.mark.browser
# CI sets CENTRALITA_REQUIRE_BROWSER=1: there a missing browser is a failure, not a skip
REQUIRED = os.environ.get("CENTRALITA_REQUIRE_BROWSER") == "1"
if REQUIRED:
    import playwright.async_api as playwright_api
else:
    playwright_api = pytest.importorskip("playwright.async_api")
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
HOSTILE = "<img src=x onerror=alert(1)>"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]

if not CHROMIUM.exists():
    if REQUIRED:
        raise RuntimeError("CENTRALITA_REQUIRE_BROWSER=1 but /usr/bin/chromium is missing")
    pytest.skip("Debian's chromium is not installed", allow_module_level=True)


@pytest.fixture
async def world(aiohttp_server: Any, tmp_path: Path, pbx: SimulatedPbx) -> Any:
    gen = open_world(aiohttp_server, tmp_path, pbx_port=pbx.port)
    w = await gen.__anext__()
    link = w.gw.links["sim"]
    for _ in range(500):  # the AMI link logs in on its own; wait until it is up
        if link.health().logged_in:
            break
        await asyncio.sleep(0.01)
    assert link.health().logged_in
    yield w
    await gen.aclose()


@pytest.fixture
async def browser() -> Any:
    async with playwright_api.async_playwright() as p:
        b = await p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        await b.close()


async def signed_in_page(browser: Any, world: Any, username: str = "ana") -> Any:
    page = await browser.new_page(viewport={"width": 1280, "height": 860})
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), asyncio.ensure_future(d.dismiss())))
    page.dialogs = dialogs
    await page.goto(world.url("/panel/"))
    assert page.url.endswith("/panel/login")  # not signed in: the login page
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("#login-button")
    await page.wait_for_selector("body[data-socket='live']")
    return page


async def test_pop_up_while_ringing_hostile_name_is_text_notes_and_disposition_saved(
    browser: Any, world: Any, pbx: SimulatedPbx
) -> None:
    people = world.panel.people
    lead = (
        await people.create(
            PersonType.LEAD,
            {"first_name": "Lucía", "last_name": "Pérez", "company": "Acme Renovables",
             "phones": ["+34911234567"], "status": "qualified", "score": 8.2, "owner": "ana"},
        )
    ).person  # fmt: skip
    await world.panel.activities.add(lead.id, "email", "Sent the solar panel quote", at=1795000000)
    await world.panel.follow_ups.add(lead.id, 1795500000, "Confirm installation date", "ana")
    page = await signed_in_page(browser, world)

    pbx.start_call(
        "inbound_answered", caller="+34911234567", caller_name=HOSTILE, agent="101",
        ring_seconds=20, talk_seconds=30,
    )  # fmt: skip
    await pbx.advance(0.01)
    popup = page.locator(".popup[data-state='ringing']")
    await popup.wait_for()
    assert await popup.locator(".caller-title").text_content() == "Lucía Pérez"
    assert await popup.locator(".company").text_content() == "Acme Renovables"
    assert await popup.locator(".callerid-name").text_content() == HOSTILE
    assert "Confirm installation date" in await popup.text_content()
    assert "Sent the solar panel quote" in await popup.text_content()
    assert await page.locator(".popups img").count() == 0
    assert page.dialogs == []
    ARTIFACTS.mkdir(exist_ok=True)
    await popup.screenshot(path=str(ARTIFACTS / "popup.png"))
    await page.screenshot(path=str(ARTIFACTS / "panel.png"))

    await popup.locator("textarea.notes").fill("Wants 12 panels, call Friday")
    await pbx.advance(20.5)
    await page.locator(".popup[data-state='answered']").wait_for()
    await pbx.advance(31)
    ended = page.locator(".popup[data-state='ended']")
    await ended.wait_for()
    await ended.locator("[data-disposition='interested']").click()
    await ended.locator("input[name='follow_up_at']").fill("2030-01-15")
    await ended.get_by_role("button", name="Save").click()
    await ended.locator(".wrapup.saved").wait_for()
    await ended.screenshot(path=str(ARTIFACTS / "popup-ended.png"))
    rows = await world.gw.db.conn.execute_fetchall("SELECT notes, disposition FROM calls")
    assert [tuple(r) for r in rows] == [("Wants 12 panels, call Friday", "interested")]
    notes = [a for a in await world.panel.activities.for_person(lead.id) if a.kind == "note"]
    assert notes and notes[0].body == "Wants 12 panels, call Friday"
    assert page.dialogs == []


async def test_click_to_call_drives_the_pbx_through_the_whole_flow(
    browser: Any, world: Any, pbx: SimulatedPbx
) -> None:
    dnc = await world.panel.people.create(
        PersonType.CONTACT, {"name": "No Calls", "phones": ["+34600000001"], "do_not_call": True}
    )
    assert dnc.person.do_not_call
    pbx.phones["101"] = Phone(ring=1.0, answer=True)
    page = await signed_in_page(browser, world)
    box = page.locator("#c2c")

    await page.fill("#dial-number", "+34 600 000 001")
    await page.click("#dial-button")
    await page.locator("#c2c[data-state='failed'][data-reason='do_not_call']").wait_for()
    assert "do-not-call" in await box.locator("#c2c-message").text_content()
    await page.fill("#dial-number", "600111222;1")
    await page.click("#dial-button")
    await page.locator("#c2c[data-reason='invalid_number']").wait_for()

    await page.fill("#dial-number", "+34 911 234 567")
    await page.click("#dial-button")
    await page.locator("#c2c[data-state='calling_agent']").wait_for()
    await until(lambda: _originates(pbx) == 1, "the Originate to reach the PBX")
    originate = next(a for a in pbx.received_actions if a.get("Action") == "Originate")
    assert originate["Channel"] == "PJSIP/101" and originate["Exten"] == "+34911234567"
    await pbx.advance(1.2)
    await page.locator("#c2c[data-state='calling_customer']").wait_for()
    await pbx.advance(2.5)
    await page.locator("#c2c[data-state='connected']").wait_for()
    await pbx.advance(4)
    await page.locator("#c2c[data-state='ended']").wait_for()

    pbx.phones["101"] = Phone(answer="noanswer")
    await page.click("#dial-button")
    await page.locator("#c2c[data-state='calling_agent']").wait_for()
    await until(lambda: _originates(pbx) == 2, "the second Originate to reach the PBX")
    await pbx.advance(31)
    await page.locator("#c2c[data-state='failed'][data-reason='agent_noanswer']").wait_for()
    assert "did not answer" in await box.locator("#c2c-message").text_content()


def _originates(pbx: SimulatedPbx) -> int:
    return sum(1 for a in pbx.received_actions if a.get("Action") == "Originate")


def _tone(path: Path, seconds: float = 1.0, rate: int = 8000) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        frames = b"".join(
            struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * n / rate)))
            for n in range(int(seconds * rate))
        )
        w.writeframes(frames)


async def test_recording_plays_in_history_and_reconnecting_tab_catches_up(
    browser: Any, world: Any
) -> None:
    _tone(Path(world.gw.cfg.recordings.directory) / "in-7.1.wav")
    await world.gw.call_log.save(
        {"id": "sim:7.1", "linkedid": "7.1", "pbx": "sim", "direction": "inbound",
         "caller": "+34911234567", "outcome": "answered", "started_at": 1795346400.0,
         "talk_seconds": 42.0, "answered_by": "101", "recordings": ["in-7.1.wav"]}
    )  # fmt: skip
    async with world.gw.db.transaction() as conn:
        await conn.execute("INSERT INTO call_users VALUES ('sim:7.1', 'ana')")
    page = await signed_in_page(browser, world)
    await page.click("[data-view='history']")
    audio = page.locator("tr[data-call-id='sim:7.1'] audio")
    await audio.wait_for()
    played = await audio.evaluate(
        """a => new Promise((ok, fail) => {
            a.addEventListener('timeupdate', () => a.currentTime > 0.2 && ok(a.currentTime));
            a.addEventListener('error', () => fail(new Error('audio error ' + a.error.code)));
            a.play().catch(fail);
        })"""
    )
    assert played > 0.2
    await page.screenshot(path=str(ARTIFACTS / "history.png"))

    # the tab's socket drops; calls ring meanwhile; the tab reconnects and shows them
    await page.click("[data-view='live']")
    seq_before = int(await page.evaluate("document.body.dataset.seq"))
    await world.panel.hub.disconnect("ana", code=1012)  # "service restart"
    world.gw.bus.publish(ringing("8.1", ("101",), caller="+34600555444"))
    world.gw.bus.publish(ringing("8.2", ("101",), caller="+34600555333"))
    await page.locator(".popup[data-call-id='sim:8.1']").wait_for()
    await page.locator(".popup[data-call-id='sim:8.2']").wait_for()
    await page.wait_for_selector("body[data-socket='live']")
    assert int(await page.evaluate("document.body.dataset.seq")) == seq_before + 2
    assert await page.locator(".popup").count() == 2
