"""An attended transfer clicked through in a real Chromium: started from the card, shown while
the agent talks to the target (also after a reload), cancelled back to the caller and then
completed, each reaching the simulated PBX as the AMI action Asterisk expects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.sim.clock import ManualClock
from gateway.sim.state import Phone
from gateway.sim.transfer import AttendedTransferPbx
from tests.browser.test_panel_browser import ARTIFACTS
from tests.browser.test_panel_desk import _axe, _english_on_screen, _sign_in
from tests.browser.test_panel_features import _answered_call, _context, _sent
from tests.test_panel_support import until

pytestmark = pytest.mark.browser


@pytest.fixture
async def pbx() -> AsyncIterator[AttendedTransferPbx]:
    sim = AttendedTransferPbx(clock=ManualClock(), flavour="pjsip")
    await sim.start()
    yield sim
    await sim.stop()


async def _start_attended(card: Any, to: str) -> None:
    await card.get_by_role("button", name="Transferir", exact=True).click()
    form = card.locator(".transfer-form")
    await form.get_by_label("Transferir a (extensión o número)").fill(to)
    await form.get_by_label("Cómo").select_option("attended")
    await form.get_by_role("button", name="Transferir ahora").click()
    await form.wait_for(state="hidden")


async def test_attended_transfer_cancelled_then_completed_from_the_card(
    browser: Any, world: Any, pbx: AttendedTransferPbx
) -> None:
    context = await _context(browser)
    page = await _sign_in(context, world)
    pbx.phones["102"] = Phone(ring=1.0, answer=True)
    key = await _answered_call(world, pbx, page)
    card = page.locator(f".popup[data-call-id='{key}']")
    agent_leg = next(n for n in pbx.channels if n.startswith("PJSIP/101-"))

    await _start_attended(card, "102")
    consult = card.locator(".consult")
    await consult.wait_for()
    assert await consult.locator(".consult-note").text_content() == (
        "Consultando con 102: el cliente espera"
    )
    (atxfer,) = _sent(pbx, "Atxfer")
    assert (atxfer["Channel"], atxfer["Exten"]) == (agent_leg, "102")
    # hanging up would complete the transfer on the PBX: not offered while consulting
    assert await card.get_by_role("button", name="Colgar", exact=True).is_hidden()
    assert "Consultando con 102" in await card.locator(".status-text").text_content()
    found = await _axe(page, "attended transfer in progress")
    await page.screenshot(path=str(ARTIFACTS / "transfer-consulting-es.png"), full_page=True)
    assert await _english_on_screen(page) == []

    # a reload keeps the consultation and its buttons
    await page.reload()
    await page.wait_for_selector("body[data-socket='live']")
    await consult.wait_for()

    back = "Cancelar la transferencia y volver con +34911234567"
    await consult.get_by_role("button", name=back).click()
    await card.get_by_role("button", name="Poner en espera").wait_for()
    assert await consult.is_hidden()
    (cancel,) = _sent(pbx, "CancelAtxfer")
    assert cancel["Channel"] == agent_leg
    assert _sent(pbx, "Hangup") == []
    assert pbx.consultations == {}
    assert key in world.panel.board.agents["ana"].calls  # back with the caller

    await _start_attended(card, "102")
    await consult.wait_for()
    await consult.get_by_role("button", name="Pasar la llamada con +34911234567 a 102").click()
    await until(lambda: _sent(pbx, "Hangup"), "the Hangup to reach the PBX")
    assert [a["Channel"] for a in _sent(pbx, "Hangup")] == [agent_leg]
    await consult.wait_for(state="hidden")
    for _ in range(4):
        await pbx.advance(1)
    await until(lambda: world.panel.board.calls[key].answered_by == "102", "102 to take it")
    await context.close()
    assert found == [], "\n".join(found)
