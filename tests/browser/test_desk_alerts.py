"""A call ringing while the panel's tab is in the background: a desktop notification naming the
caller and a ring tone (WebAudio), both stopped when the call stops ringing, and both off when
the agent turns them off in the settings.

Headless Chromium keeps every tab visible, so the test makes the page hidden the way a browser
would tell the panel: ``document.hidden`` / ``visibilityState`` and a ``visibilitychange``
event (the panel reads exactly these). Notifications and oscillators are the browser's own,
wrapped only to count them."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.sim.pbx import SimulatedPbx
from tests.browser.test_panel_desk import _lucia, _sign_in
from tests.browser.test_panel_features import _context

pytestmark = pytest.mark.browser

SPIES = """
(() => {
  window.__hidden = false;
  Object.defineProperty(Document.prototype, 'hidden', { configurable: true, get: () => window.__hidden });
  Object.defineProperty(Document.prototype, 'visibilityState', { configurable: true, get: () => (window.__hidden ? 'hidden' : 'visible') });
  window.__setHidden = (v) => { window.__hidden = v; document.dispatchEvent(new Event('visibilitychange')); };
  const Real = window.Notification;
  window.__notes = [];
  class Counted extends Real {
    constructor(title, options) {
      super(title, options);
      const note = { title, body: options && options.body, closed: false };
      window.__notes.push(note);
      const close = this.close.bind(this);
      this.close = () => { note.closed = true; close(); };
    }
  }
  Object.defineProperty(Counted, 'permission', { get: () => Real.permission });
  Counted.requestPermission = (...a) => Real.requestPermission(...a);
  window.Notification = Counted;
  window.__tones = 0;
  const start = OscillatorNode.prototype.start;
  OscillatorNode.prototype.start = function (...a) { window.__tones += 1; return start.apply(this, a); };
})();
"""


async def _ring(page: Any, pbx: SimulatedPbx, caller: str = "+34911234567") -> str:
    linkedid = pbx.start_call(
        "inbound_answered", caller=caller, agent="101", ring_seconds=30, talk_seconds=5
    )
    await pbx.advance(0.01)
    await page.locator(f".popup[data-call-id='sim:{linkedid}'][data-state='ringing']").wait_for()
    return linkedid


async def test_background_ring_notifies_with_the_callers_name_and_rings_until_turned_off(
    browser: Any, world: Any, pbx: SimulatedPbx
) -> None:
    await _lucia(world)
    context = await _context(browser, "es-ES")
    await context.grant_permissions(["notifications"], origin=world.origin)
    await context.add_init_script(SPIES)
    page = await _sign_in(context, world)
    assert await page.evaluate("Notification.permission") == "granted"

    # in front, the card is the alert: no notification, no tone
    await _ring(page, pbx)
    assert await page.evaluate("[window.__notes.length, window.__tones]") == [0, 0]
    await pbx.advance(31)  # answered
    await page.locator(".popup[data-state='answered']").wait_for()

    await page.evaluate("window.__setHidden(true)")
    linkedid = await _ring(page, pbx, "+34911234567")
    await page.wait_for_function("() => window.__notes.length === 1 && window.__tones >= 1")
    note = await page.evaluate("window.__notes[0]")
    assert (note["title"], note["body"]) == ("Llamada entrante", "Lucía Martín")
    assert await page.evaluate("document.body.dataset.ringTone") == "on"
    assert await page.title() == "(1) Llamada entrante · Centralita"
    await pbx.advance(31)  # answered: the ring and the notification stop
    await page.locator(f".popup[data-call-id='sim:{linkedid}'][data-state='answered']").wait_for()
    await page.wait_for_function("() => window.__notes[0].closed === true")
    assert await page.evaluate("document.body.dataset.ringTone") == "off"

    # ringing again in the background, the agent turns the ring tone off: it stops at once
    await _ring(page, pbx, "+34600444555")
    await page.wait_for_function("() => document.body.dataset.ringTone === 'on'")
    await page.click("#open-settings")
    await page.uncheck("#settings-ring")
    await page.uncheck("#settings-notifications")
    await page.click("#settings-save")
    await page.wait_for_function("() => document.body.dataset.ringTone === 'off'")
    await page.wait_for_function("() => window.__notes.every((n) => n.closed)")
    tones = await page.evaluate("window.__tones")
    notes = await page.evaluate("window.__notes.length")
    await pbx.advance(31)
    await page.locator(".popup[data-state='ringing']").wait_for(state="detached")

    # off: the next background ring neither notifies nor sounds (both happen, or not, in the
    # same turn that shows the card)
    await _ring(page, pbx, "+34600444666")
    assert await page.evaluate("[window.__notes.length, window.__tones]") == [notes, tones]
    assert await page.evaluate("document.body.dataset.ringTone") == "off"
    saved = await world.panel.users.preferences("ana")
    assert (saved.notifications, saved.ring_sound) == (False, False)
    await context.close()
