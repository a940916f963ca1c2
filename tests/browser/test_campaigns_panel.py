"""The supervisors' campaigns page in a real Chromium (issue 13): a supervisor builds a lost-deal
campaign in Spanish, sees the segment's live count (and the count per lost reason), previews an
e-mail in a sandboxed frame, starts the campaign and watches the funnel move as the gateway's
fake clock advances and the scheduler ticks; the e-mails reach a real SMTP server on loopback.
Checked with axe-core in both languages; agents have no campaigns page."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from gateway.app import Gateway, create_app
from gateway.campaigns.settings import MailSettings
from gateway.panel.routes import PANEL
from gateway.store.models import PersonType
from tests.browser.test_panel_browser import ARTIFACTS, HOSTILE
from tests.browser.test_panel_desk import _axe, _english_on_screen
from tests.browser.test_panel_features import _context, _sign_in, _spanish_on_screen, _to_english
from tests.campaign_fixtures import SmtpSink, smtp_sink  # noqa: F401  (pytest fixture)
from tests.test_panel_support import FAST_HASHER, PASSWORD, USERS, PanelWorld, make_config

pytestmark = pytest.mark.browser
T0 = 1796029200.0  # Monday 30 November 2026, 10:00 in Madrid: inside business hours
DAY = 86400.0


class FakeClock:
    """The gateway's time: moves only when the test says so."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def campaign_world(
    aiohttp_server: Any,
    tmp_path: Path,
    smtp_sink: SmtpSink,  # noqa: F811
) -> AsyncIterator[tuple[PanelWorld, FakeClock]]:
    clock = FakeClock(T0)
    base = make_config(tmp_path)
    cfg = msgspec.structs.replace(
        base,
        mail=MailSettings(host="127.0.0.1", port=smtp_sink.port, from_address="ventas@example.com"),
        # the fake clock moves days ahead: the supervisor's session must outlive it
        panel=msgspec.structs.replace(base.panel, session_hours=24 * 30),
    )
    gw = Gateway(cfg, clock=clock)
    app = await create_app(cfg, gw)
    panel = app[PANEL]
    panel.users.hasher = FAST_HASHER
    for username, role, ext, name in USERS:
        await panel.users.add(username, PASSWORD, role, [ext], name)
    world = PanelWorld(gw, panel, await aiohttp_server(app))
    try:
        yield world, clock
    finally:
        await world.close()


# the lost leads: three lost for lack of budget, two to a competitor, one not ready (not in the
# segment), one new lead (not lost at all)
LEADS = [
    ("Lucía", "Martín", "no_budget"),
    ("Javier", "López", "no_budget"),
    ("Marta", "Gil", "no_budget"),
    ("Carlos", "Romero", "competitor"),
    ("Elena", "Navarro", "competitor"),
    ("Pablo", "Torres", "not_ready"),
]


async def _leads(world: PanelWorld) -> None:
    people = world.panel.people
    for i, (first, last, reason) in enumerate(LEADS):
        await people.create(
            PersonType.LEAD,
            {"first_name": first, "last_name": last, "status": "lost", "lost_reason": reason,
             "country": "ES", "owner": "ana", "phones": [f"+3491123450{i}"],
             "emails": [f"lead{i}@example.com"]},
        )  # fmt: skip
    await people.create(
        PersonType.LEAD,
        {"first_name": "Diego", "last_name": "Sánchez", "status": "new", "country": "ES",
         "emails": ["diego@example.com"]},
    )  # fmt: skip


async def _tick(world: PanelWorld) -> None:
    campaigns = world.gw.campaigns
    assert campaigns is not None
    await campaigns.tick()


async def _mails(sink: SmtpSink, n: int) -> None:
    for _ in range(500):
        if len(sink.messages) >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"expected {n} e-mails, the sink has {len(sink.messages)}")


async def _reached(page: Any, step: int, n: int) -> None:
    """Refresh the results until the funnel's row for ``step`` shows ``n`` leads."""
    row = page.locator(f"#camp-funnel tr[data-step='{step}']")
    for _ in range(50):
        await page.click("#camp-refresh")
        await page.wait_for_timeout(100)
        if await row.get_attribute("data-reached") == str(n):
            return
    raise AssertionError(f"step {step}: {await row.get_attribute('data-reached')} reached, not {n}")


async def test_supervisor_builds_a_lost_deal_campaign_starts_it_and_sees_the_funnel_move(
    browser: Any,
    campaign_world: tuple[PanelWorld, FakeClock],
    smtp_sink: SmtpSink,  # noqa: F811
) -> None:
    world, clock = campaign_world
    await _leads(world)
    found: list[str] = []
    context = await _context(browser, "es-ES")
    page = await _sign_in(context, world, "sofia")

    await page.click(".nav-item[data-view='campaigns']")
    await page.locator("#campaigns-table").wait_for()
    assert "Aún no hay campañas" in await page.locator("#campaigns-table").text_content()
    await page.click("#camp-new")

    # the segment: lost leads, lost for lack of budget or to a competitor
    await page.get_by_label("Nombre", exact=True).fill(
        "Recuperar perdidos: presupuesto y competencia"
    )
    count = page.locator("#camp-count")
    await page.locator("#camp-statuses").get_by_label("perdido").check()
    await page.locator("#camp-count[data-total='6']").wait_for()
    # each lost reason says how many leads it would bring
    reasons = page.locator("#camp-lost-reasons")
    await reasons.locator("[data-reason='no_budget'][data-count='3']").wait_for()
    assert await reasons.locator("[data-reason='no_budget']").text_content() == "(3)"
    assert await reasons.locator("[data-reason='competitor']").text_content() == "(2)"
    assert await reasons.locator("[data-reason='not_ready']").text_content() == "(1)"
    await reasons.get_by_label("Sin presupuesto").check()
    await reasons.get_by_label("Eligió a la competencia").check()
    await page.locator("#camp-count[data-total='5']").wait_for()
    assert "5 leads cumplen el segmento" in await count.text_content()
    assert "5 con correo" in await count.text_content()

    # the steps: an e-mail (the form starts with one), wait two days, a second e-mail
    first = page.locator("#camp-step-list > li").nth(0)
    es = first.locator("fieldset[data-lang='es']")
    await es.get_by_label("Asunto").fill("{{ lead.first_name }}, tenemos un plan nuevo")
    await es.get_by_label("Cuerpo (HTML)").fill(
        "<p>Hola {{ lead.first_name }}:</p><p>Hay un plan por módulos.</p>"
        "<script>parent.document.body.dataset.hacked = '1'</script>"
    )
    await es.get_by_role("button", name="Vista previa de la versión en español").click()
    frame = es.locator("iframe.mail-frame")
    await frame.wait_for()
    assert await frame.get_attribute("sandbox") == ""  # no scripts, no forms, nothing
    srcdoc = await frame.get_attribute("srcdoc")
    assert "Lucía" in srcdoc  # the sample lead
    assert (
        "plan por módulos"
        in await page.frame_locator("iframe.mail-frame").locator("body").text_content()
    )
    assert await page.get_attribute("body", "data-hacked") is None

    await page.select_option("#camp-add-kind", "wait")
    await page.click("#camp-add-step")
    await page.select_option("#camp-add-kind", "call")
    await page.click("#camp-add-step")
    await page.select_option("#camp-add-kind", "email")
    await page.click("#camp-add-step")
    steps = page.locator("#camp-step-list > li")
    assert [await s.get_attribute("data-kind") for s in await steps.all()] == [
        "email",
        "wait",
        "call",
        "email",
    ]
    # its pool offers everyone who takes calls, signed in or not (only Sofía is, here)
    call_step = steps.nth(2)
    await call_step.get_by_label("A quién se asigna").select_option("pool")
    pool = call_step.locator("fieldset", has_text="Grupo de agentes").first
    await pool.get_by_label("Ana García (ana)").wait_for()
    assert await pool.get_by_label("Bruno Silva (bruno)").count() == 1
    assert await pool.get_by_label("Sofía Martín (sofia)").count() == 1
    # the call task goes: removed with its own button; the focus stays in the list
    await page.get_by_role("button", name="Quitar Paso 3: Tarea de llamada").click()
    assert [await s.get_attribute("data-kind") for s in await steps.all()] == [
        "email",
        "wait",
        "email",
    ]
    assert await page.evaluate("document.activeElement.id.endsWith('-title')")
    # reordering: the second e-mail up above the wait, and back down
    await page.get_by_role("button", name="Subir Paso 3: Enviar correo").click()
    assert [await s.get_attribute("data-kind") for s in await steps.all()] == [
        "email",
        "email",
        "wait",
    ]
    await page.get_by_role("button", name="Bajar Paso 2: Enviar correo").click()
    assert [await s.get_attribute("data-kind") for s in await steps.all()] == [
        "email",
        "wait",
        "email",
    ]
    wait = steps.nth(1)
    await wait.get_by_label("Días").fill("2")
    last = steps.nth(2).locator("fieldset[data-lang='es']")
    await last.get_by_label("Asunto").fill("Una prueba de 30 días, {{ lead.first_name }}")
    await last.get_by_label("Cuerpo (HTML)").fill("<p>Te proponemos una prueba sin coste.</p>")

    assert await _english_on_screen(page) == []
    found += await _axe(page, "campaign form es")
    await page.screenshot(path=str(ARTIFACTS / "campaigns-form-es.png"), full_page=True)

    await page.click("#camp-save")
    row = page.locator("#campaigns-table tr[data-status]")
    await row.wait_for()
    assert await row.get_attribute("data-status") == "draft"
    name = "Recuperar perdidos: presupuesto y competencia"
    await page.get_by_role("button", name=f"Iniciar la campaña {name}").click()
    await page.wait_for_selector("#campaigns-table tr[data-status='running']")

    await page.get_by_role("button", name=f"Ver los resultados de {name}").click()
    await page.locator("#camp-funnel").wait_for()
    assert await page.locator("#camp-funnel tr[data-step='0']").get_attribute("data-reached") == "0"

    # the scheduler's first tick: the five enter and get the first e-mail, at once (10:00)
    await _tick(world)
    await _mails(smtp_sink, 5)
    await _reached(page, 0, 5)
    assert await page.locator(".camp-tile[data-figure='entered'] .tile-value").text_content() == "5"
    assert await page.locator(".camp-tile[data-figure='sent'] .tile-value").text_content() == "5"
    subjects = sorted(str(m["Subject"]) for m in smtp_sink.messages)
    assert subjects[0] == "Carlos, tenemos un plan nuevo"
    assert all(m["List-Unsubscribe"] for m in smtp_sink.messages)
    # the lost reasons of who entered
    revived = page.locator("#camp-revived")
    assert "Sin presupuesto" in await revived.text_content()
    assert "0 de 3" in await revived.locator("tr[data-reason='no_budget']").text_content()

    # a day later the wait still holds; two days later the second e-mail goes out
    clock.now = T0 + DAY
    await _tick(world)
    assert len(smtp_sink.messages) == 5
    clock.now = T0 + 2 * DAY + 60
    await _tick(world)
    await _mails(smtp_sink, 10)
    await _reached(page, 2, 5)
    assert "Una prueba de 30 días, Lucía" in {str(m["Subject"]) for m in smtp_sink.messages}

    assert await _english_on_screen(page) == []
    found += await _axe(page, "campaign results es")
    await page.screenshot(path=str(ARTIFACTS / "campaigns-results-es.png"), full_page=True)
    await page.click("#camp-back")
    await page.wait_for_selector("#campaigns-table tr[data-status='running']")
    assert await page.locator("#campaigns-table td[data-figure='sent']").text_content() == "10"
    found += await _axe(page, "campaign list es")
    await page.screenshot(path=str(ARTIFACTS / "campaigns-es.png"), full_page=True)

    # the same in English
    await _to_english(page)
    await page.wait_for_selector("#campaigns-table tr[data-status='running']")
    assert await _spanish_on_screen(page) == []
    found += await _axe(page, "campaign list en")
    await page.screenshot(path=str(ARTIFACTS / "campaigns-en.png"), full_page=True)
    await page.get_by_role("button", name=f"See the results of {name}").click()
    await page.locator("#camp-funnel tr[data-step='2'][data-reached='5']").wait_for()
    assert await _spanish_on_screen(page) == []
    found += await _axe(page, "campaign results en")
    await page.screenshot(path=str(ARTIFACTS / "campaigns-results-en.png"), full_page=True)
    await page.get_by_role("button", name=f"Pause the campaign {name}").click()
    await page.locator("#camp-results-heading[data-status='paused']").wait_for()
    await page.click("#camp-edit")
    await page.locator("#camp-form").wait_for()
    assert await page.get_by_label("Name", exact=True).input_value() == name
    found += await _axe(page, "campaign form en")
    await page.screenshot(path=str(ARTIFACTS / "campaigns-form-en.png"), full_page=True)
    assert found == []
    await context.close()


async def test_agents_have_no_campaigns_page(
    browser: Any, campaign_world: tuple[PanelWorld, FakeClock]
) -> None:
    world, _ = campaign_world
    context = await _context(browser, "en-GB")
    page = await _sign_in(context, world, "ana")
    assert await page.locator(".nav-item[data-view='campaigns']").is_hidden()
    assert await page.locator(".nav-item[data-view='mailbox']").is_hidden()  # not a demo
    await page.goto(world.url("/panel/#campaigns"))
    await page.wait_for_selector("body[data-socket='live']")
    assert await page.get_attribute("body", "data-view") == "live"
    await context.close()


async def test_the_demo_mailbox_lists_the_campaigns_mail_and_shows_it_sandboxed(
    browser: Any, aiohttp_server: Any, tmp_path: Path
) -> None:
    from gateway.demo import DEMO_CAMPAIGNS, demo_mail_settings
    from gateway.demo_mailbox import DemoMailbox
    from gateway.store.seed import seed_demo_campaigns

    mailbox = DemoMailbox()
    await mailbox.start()
    clock = FakeClock(T0)
    cfg = msgspec.structs.replace(
        make_config(tmp_path), campaigns=DEMO_CAMPAIGNS, mail=demo_mail_settings(mailbox.port)
    )
    gw = Gateway(cfg, clock=clock)
    gw.demo_mailbox = mailbox
    app = await create_app(cfg, gw)
    panel = app[PANEL]
    panel.users.hasher = FAST_HASHER
    for username, role, ext, name in USERS:
        await panel.users.add(username, PASSWORD, role, [ext], name)
    world = PanelWorld(gw, panel, await aiohttp_server(app))
    try:
        await _leads(world)
        await panel.people.create(
            PersonType.LEAD,
            {"first_name": "Oliver", "last_name": "Smith", "status": "new", "source": "web_form",
             "country": "GB", "emails": ["oliver@example.com"]},
        )  # fmt: skip
        await panel.people.create(  # a hostile name: text in the list, escaped in the mail
            PersonType.LEAD,
            {"first_name": HOSTILE, "last_name": "X", "status": "new", "source": "web_form",
             "country": "GB", "emails": ["hostile@example.com"]},
        )  # fmt: skip
        assert gw.db is not None
        await seed_demo_campaigns(gw.db, now=T0)
        await _tick(world)
        await mailbox.wait_for(7)  # five lost leads revived, two web leads welcomed

        found: list[str] = []
        context = await _context(browser, "es-ES")
        page = await _sign_in(context, world, "sofia")
        await page.click(".nav-item[data-view='mailbox']")
        rows = page.locator("#mailbox-table tbody tr[data-mail-id]")
        await rows.first.wait_for()
        assert await rows.count() == 7
        hostile = page.get_by_role("button", name=f"{HOSTILE}, thanks for your interest")
        assert await hostile.count() == 1  # the subject shown as the characters it has
        assert await _english_on_screen(page) == []
        found += await _axe(page, "mailbox es")
        await page.screenshot(path=str(ARTIFACTS / "mailbox-es.png"), full_page=True)

        await page.get_by_role("button", name="Oliver, thanks for your interest").click()
        frame = page.locator("#mail-html")
        await frame.wait_for()
        assert await frame.get_attribute("sandbox") == ""
        body = page.frame_locator("#mail-html").locator("body")
        assert "Hi Oliver" in await body.text_content()
        await page.click("#mail-back")
        await hostile.click()
        assert HOSTILE in await page.frame_locator("#mail-html").locator("body").text_content()
        assert await page.frame_locator("#mail-html").locator("img[src='x']").count() == 0
        assert "List-Unsubscribe" in await page.locator(".mail-meta").text_content()
        found += await _axe(page, "one mail es")
        await page.screenshot(path=str(ARTIFACTS / "mailbox-mail-es.png"), full_page=True)
        await page.click("#mail-plain")
        assert await page.locator("#mail-text").is_visible() and await frame.is_hidden()
        assert f"Hi {HOSTILE}," in await page.locator("#mail-text").text_content()
        await page.click("#mail-back")
        await page.locator("#mailbox-table").wait_for()
        assert found == []
        await context.close()
    finally:
        await world.close()
        await mailbox.close()


async def test_supervisor_sees_who_replied_and_opens_their_record(
    browser: Any, campaign_world: tuple[PanelWorld, FakeClock]
) -> None:
    """Who left, and why: each count of the results' "left" is a button that lists, below,
    who left for that reason (a hostile name as its characters), with when they left; a name
    opens that lead's record. The list outlives the page's refresh, and follows it."""
    from gateway.campaigns.model import CampaignIn
    from gateway.campaigns.store import CampaignStore

    world, _ = campaign_world
    people = world.panel.people
    pid: dict[str, int] = {}
    for first, last in [("Lucía", "Martín"), (HOSTILE, ""), ("Javier", "López"),
                        ("Marta", "Gil"), ("Carlos", "Romero")]:  # fmt: skip
        written = await people.create(
            PersonType.LEAD,
            {"first_name": first, "last_name": last, "status": "qualified", "country": "ES",
             "emails": [f"{len(pid)}@example.com"]},
        )  # fmt: skip
        pid[f"{first} {last}".strip()] = written.person.id
    # many who could not be reached: more than one page of them
    for i in range(26):
        written = await people.create(
            PersonType.LEAD, {"first_name": f"Sin contacto {i:02}", "status": "qualified"}
        )
        pid[f"Sin contacto {i:02}"] = written.person.id
    assert world.gw.db is not None
    store = CampaignStore(world.gw.db)
    name = "Reactivar cualificados"
    definition = msgspec.convert(
        {"name": name, "segment": {"statuses": ["qualified"]}, "steps": [{"kind": "stop"}]},
        CampaignIn,
    )
    campaign = await store.create(definition, "user:sofia", T0)
    await store.set_status(campaign.id, "running", T0)
    ids = list(pid.values())
    assert await store.enroll(campaign, ids, T0, T0, dict.fromkeys(ids, "Europe/Madrid")) == 31
    member = {m.person_id: m.id for m in await store.members(campaign.id)}
    await store.leave(member[pid["Lucía Martín"]], "replied", T0 + 3600)
    await store.leave(member[pid[HOSTILE]], "replied", T0 + DAY + 600)
    await store.leave(member[pid["Javier López"]], "converted", T0 + 2 * DAY)
    for i in range(26):
        await store.leave(member[pid[f"Sin contacto {i:02}"]], "unreachable", T0 + 60)
    await store.set_status(campaign.id, "paused", T0 + 2 * DAY)  # the scheduler leaves it be
    # Javier was won: the lead became a contact (its record is a contact's now)
    sofia = await world.sign_in("sofia")
    async with sofia.post(
        world.url(f"/panel/api/people/{pid['Javier López']}/convert"), json={"kind": "b2c"}
    ) as r:
        assert r.status == 200, await r.text()

    found: list[str] = []
    context = await _context(browser, "es-ES")
    page = await _sign_in(context, world, "sofia")
    alerts: list[str] = []
    page.on("dialog", lambda d: (alerts.append(d.message), asyncio.ensure_future(d.dismiss())))
    await page.click(".nav-item[data-view='campaigns']")
    await page.get_by_role("button", name=f"Ver los resultados de {name}").click()
    replied = page.locator("#camp-left-replied")
    await replied.wait_for()
    assert await replied.get_attribute("aria-expanded") == "false"
    assert "2 respondieron" in await replied.text_content()

    await replied.click()
    assert await replied.get_attribute("aria-expanded") == "true"
    listed = page.locator("#camp-left-list")
    rows = listed.locator("tbody tr")
    await page.locator("#camp-left-list[data-reason='replied'][data-shown='2']").wait_for()
    assert await listed.locator("h4").text_content() == "Leads que salieron: respondieron"
    assert "llámales antes que a nadie" in await listed.locator(".camp-left-hint").text_content()
    assert await rows.locator("th").all_text_contents() == ["Lucía Martín", HOSTILE]
    assert await listed.locator("img").count() == 0  # the hostile name is its characters
    when = rows.nth(0).locator("time")
    assert await when.get_attribute("datetime") == "2026-11-30T10:00:00.000Z"
    assert "30 nov 2026" in await when.text_content()  # with the date even today
    assert await listed.locator("#camp-left-more").count() == 0  # one page holds them

    # the page refreshes every 4 s: the list stays open, the focus where it was, and a third
    # lead who replies meanwhile joins it
    hostile = page.get_by_role("button", name=f"Abrir la ficha de {HOSTILE}")
    await hostile.focus()
    hostile_id = await hostile.get_attribute("id")
    await store.leave(member[pid["Marta Gil"]], "replied", T0 + 2 * DAY + 60)
    await page.locator("#camp-left-replied[data-count='3']").wait_for(timeout=15_000)
    await page.locator("#camp-left-list[data-shown='3']").wait_for(timeout=15_000)
    assert await rows.locator("th").all_text_contents() == ["Lucía Martín", HOSTILE, "Marta Gil"]
    assert await replied.get_attribute("aria-expanded") == "true"
    assert await page.evaluate("document.activeElement.id") == hostile_id

    assert await _english_on_screen(page) == []
    found += await _axe(page, "campaign who left es")
    await page.evaluate("window.scrollTo(0, 0)")  # the focus scrolled it: the whole page
    await page.screenshot(path="/tmp/who_left.png", full_page=True)
    await page.screenshot(path=str(ARTIFACTS / "campaigns-who-left-es.png"), full_page=True)

    # the hostile name opens that lead's record
    await hostile.click()
    title = page.locator("#record-title")
    await title.wait_for()
    assert await title.text_content() == HOSTILE
    record = page.locator("article.record")
    assert await record.get_attribute("data-person-id") == str(pid[HOSTILE])
    assert await record.get_attribute("data-kind") == "lead"

    # back on the campaigns page, the list is still open; the won lead opens as a contact
    await page.click(".nav-item[data-view='campaigns']")
    await page.locator("#camp-left-list[data-reason='replied'][data-shown='3']").wait_for()
    await page.click("#camp-left-converted")
    assert await replied.get_attribute("aria-expanded") == "false"
    await page.locator("#camp-left-list[data-reason='converted'][data-shown='1']").wait_for()
    assert await listed.locator(".camp-left-hint").count() == 0
    await page.get_by_role("button", name="Abrir la ficha de Javier López").click()
    await page.locator("#record-title").wait_for()
    assert await title.text_content() == "Javier López"
    assert await record.get_attribute("data-kind") == "contact"

    # 26 who could not be reached: a page of 25, then "more" brings the last and moves the
    # focus to it
    await page.click(".nav-item[data-view='campaigns']")
    await page.click("#camp-left-unreachable")
    await page.locator("#camp-left-list[data-reason='unreachable'][data-shown='25']").wait_for()
    assert "Se muestran 25 de 26." in await listed.text_content()
    await page.click("#camp-left-more")
    await page.locator("#camp-left-list[data-shown='26']").wait_for()
    assert await page.locator("#camp-left-more").count() == 0
    assert await page.evaluate("document.activeElement.textContent") == "Sin contacto 25"
    # and closed with the same button
    await page.click("#camp-left-unreachable")
    assert await listed.count() == 0
    assert await page.locator("#camp-left-unreachable").get_attribute("aria-expanded") == "false"
    assert alerts == [] and found == []
    await context.close()
